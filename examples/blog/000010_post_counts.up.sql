-- Version 10 sorts after 3: versions are numbers, not strings.
CREATE VIEW post_counts AS
    SELECT a.name, count(p.id) AS posts
    FROM authors a LEFT JOIN posts p ON p.author_id = a.id
    GROUP BY a.name;
