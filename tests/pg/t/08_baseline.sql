-- tests/pg/t/08_baseline.sql -- migrate_baseline: a database that already has
-- the schema of a folder's first migrations starts using them; nothing runs.
BEGIN;
SELECT plan(7);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

SELECT throws_ok(format('SELECT migrate_baseline(%L, %L)', pg_temp.fx('ly_golang'), 'x.y'),
                 '22023', '"x.y" is not a migration version', 'a version that is none is refused');
SELECT is(migrate_baseline(pg_temp.fx('ly_golang'), '02'), 2::bigint,
          'versions 1 and 2 are recorded as applied');
SELECT is((SELECT array_agg(version ORDER BY installed_rank) FROM migrate_history), '{1,2}',
          'the history holds them');
SELECT ok(to_regclass('gl_items') IS NULL, 'and nothing ran');
SELECT throws_ok(format('SELECT migrate_baseline(%L, %L)', pg_temp.fx('ly_golang'), '3'),
                 '55000', NULL, 'a second baseline is refused');
SELECT is((SELECT count(*)::int FROM migrate_status(pg_temp.fx('ly_golang')) WHERE state = 'pending'),
          1, 'version 3 is pending');
SELECT throws_ok(format('SELECT migrate_baseline(%L, %L)', pg_temp.fx('nope'), '1'),
                 '58P01', NULL, 'a missing folder is refused');

SELECT * FROM finish();
ROLLBACK;
