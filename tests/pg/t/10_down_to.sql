-- tests/pg/t/10_down_to.sql -- migrate_down_to(version): everything above a
-- version is rolled back, newest applied first, with the stored down SQL.
BEGIN;
SELECT plan(6);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

SELECT is(migrate_apply(pg_temp.fx('ly_golang')), 3::bigint, 'three migrations applied');
SELECT throws_ok('SELECT migrate_down_to(''two'')', '22023', '"two" is not a migration version',
                 'a version that is none is refused');
SELECT is(migrate_down_to('1'), 2::bigint, 'down to 1 rolls back 3 and 2');
SELECT is((SELECT array_agg(version) FROM migrate_history), '{1}', 'version 1 remains');
SELECT ok(to_regclass('gl_items') IS NOT NULL AND to_regclass('gl_audit') IS NULL,
          'the schema of 1 stays, that of 2 and 3 is gone');
SELECT is(migrate_down_to('1'), 0::bigint, 'nothing above 1 is left');

SELECT * FROM finish();
ROLLBACK;
