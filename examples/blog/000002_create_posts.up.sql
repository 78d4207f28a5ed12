CREATE TABLE posts (
    id        integer PRIMARY KEY,
    author_id integer NOT NULL REFERENCES authors (id),
    title     text NOT NULL,
    body      text NOT NULL DEFAULT ''
);
CREATE INDEX posts_author_id ON posts (author_id);

INSERT INTO posts (id, author_id, title) VALUES
    (1, 1, 'Notes on the analytical engine'),
    (2, 2, 'A bug; in the relay');   -- a semicolon inside a string
