/* Posts get a publication time; existing ones count as published now. */
ALTER TABLE posts ADD COLUMN published_at text;
UPDATE posts SET published_at = '2024-01-01T00:00:00Z';
