-- tests/pg/t/09_options.sql -- migrate_apply(path, options) and
-- migrate_run(path, options): a target, out-of-order files on request,
-- missing files accepted on request, and bad options refused.
BEGIN;
SELECT plan(12);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

SELECT is(migrate_apply(pg_temp.fx('opt_b'), 'target=1'), 1::bigint, 'target=1 applies only version 1');
SELECT is(migrate_apply(pg_temp.fx('opt_a')), 1::bigint, 'then opt_a applies 3');
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('opt_b')), '55000',
                 'pending migration 2 (2_t2.up.sql) is older than the latest applied migration 3',
                 'version 2 is out of order');
SELECT is(migrate_apply(pg_temp.fx('opt_b'), 'out_of_order=true'), 1::bigint,
          'out_of_order=true applies it');
SELECT is((SELECT array_agg(version ORDER BY installed_rank) FROM migrate_history), '{1,3,2}',
          'in order of application');
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('opt_c')), '55000', NULL,
                 'versions 1 and 2 are missing from opt_c');
SELECT is(migrate_apply(pg_temp.fx('opt_c'), 'ignore_missing=on, target=4'), 1::bigint,
          'ignore_missing=on applies 4');
SELECT ok(to_regclass('opt_4') IS NOT NULL, 'its table exists');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('opt_c'), 'targett=3'), '22023',
                 'unknown option "targett"', 'an unknown option is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('opt_c'), 'target=x'), '22023',
                 'target "x" is not a migration version', 'a target that is no version is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('opt_c'), 'out_of_order=maybe'), '22023',
                 'option out_of_order takes true or false, not "maybe"', 'a bad boolean is refused');
SELECT is((SELECT count(*)::int FROM migrate_history), 4, 'the refusals changed nothing');

SELECT * FROM finish();
ROLLBACK;
