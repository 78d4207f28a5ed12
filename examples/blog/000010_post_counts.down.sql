DROP VIEW post_counts;
