-- Authors of the blog.  Portable SQL: runs on SQLite and PostgreSQL.
CREATE TABLE authors (
    id    integer PRIMARY KEY,
    name  text NOT NULL UNIQUE,
    email text
);

INSERT INTO authors (id, name, email) VALUES
    (1, 'Ada', 'ada@example.org'),
    (2, 'Grace', 'grace@example.org');
