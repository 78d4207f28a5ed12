-- tests/pg/t/01_basic.sql -- function mode: apply, no-op, status, history,
-- migrate_down from the stored scripts, and the extension's own objects.
-- Fixtures: tests/pg/run.sh writes them under migrate_test.dir.
BEGIN;
SELECT plan(37);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

-- the extension's objects
SELECT has_table('migrate_history', 'migrate_history exists');
SELECT col_is_pk('migrate_history', 'installed_rank', 'installed_rank is the primary key');
SELECT has_function('migrate_apply', ARRAY['text'], 'migrate_apply(text) exists');
SELECT has_function('migrate_down', ARRAY['bigint'], 'migrate_down(bigint) exists');
SELECT has_function('migrate_status', ARRAY['text'], 'migrate_status(text) exists');
SELECT ok(EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'migrate_run' AND prokind = 'p'),
          'migrate_run is a procedure');
SELECT is((SELECT count(*)::int FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
            JOIN pg_extension e ON e.oid = d.refobjid
           WHERE e.extname = 'migrate' AND p.prosecdef), 0, 'no SECURITY DEFINER function');
SELECT is((SELECT count(*)::int FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
            JOIN pg_extension e ON e.oid = d.refobjid
           WHERE e.extname = 'migrate'
             AND has_function_privilege('public', p.oid, 'EXECUTE')), 0,
          'no function executable by PUBLIC');
SELECT is((SELECT array_agg(DISTINCT trusted) FROM pg_available_extension_versions
            WHERE name = 'migrate'), '{f}', 'the extension is not trusted, in any version');
-- the no-op shortcut (0.2)
SELECT has_table('migrate_verified', 'migrate_verified exists');
SELECT has_sequence('migrate_history_gen', 'migrate_history_gen exists');
SELECT is((SELECT tgenabled::text || (tgtype & 2 > 0)::text FROM pg_trigger
            WHERE tgrelid = 'migrate_history'::regclass AND tgname = 'migrate_history_changed'),
          'Atrue', 'the history''s trigger fires ALWAYS, BEFORE each statement');
SELECT ok(NOT has_table_privilege('public', 'migrate_verified', 'SELECT')
          AND NOT has_sequence_privilege('public', 'migrate_history_gen', 'USAGE'),
          'PUBLIC cannot read migrate_verified or use migrate_history_gen');
SELECT ok((SELECT 'migrate_history'::regclass = ANY (extconfig) FROM pg_extension
            WHERE extname = 'migrate'), 'history registered with pg_extension_config_dump');

-- apply, then nothing to do
SELECT is(migrate_apply(pg_temp.fx('empty')), 0::bigint, 'an empty folder applies nothing');
SELECT is(migrate_apply(pg_temp.fx('basic')), 3::bigint, 'applies three pending migrations');
SELECT is((SELECT array_agg(id ORDER BY id) FROM t1), ARRAY[1, 2, 3], 'their statements ran in order');
SELECT is(migrate_apply(pg_temp.fx('basic')), 0::bigint, 'a second call applies nothing');
SELECT results_eq(
	$$SELECT installed_rank - (SELECT min(installed_rank) FROM migrate_history) + 1,
	         version, name, up_file, down_file, checksum ~ '^crc32:[0-9a-f]{8}$',
	         applied_by = current_user, execution_ms >= 0
	    FROM migrate_history ORDER BY installed_rank$$,
	$$VALUES (1::bigint, '1'::text, 'create_t1'::text, '1_create_t1.up.sql'::text,
	          '1_create_t1.down.sql'::text, true, true, true),
	         (2, '2', 'create_t2', '2_create_t2.up.sql', '2_create_t2.down.sql', true, true, true),
	         (3, '3', 'seed', '3_seed.up.sql', NULL, true, true, true)$$,
	'the history records version, name, files, checksum, user and time');
SELECT is((SELECT up_sql FROM migrate_history WHERE version = '2'),
          E'CREATE TABLE t2 (id int);\nINSERT INTO t2 VALUES (10), (20);\n',
          'the up script is stored as applied');
SELECT is((SELECT down_sql FROM migrate_history WHERE version = '2'), E'DROP TABLE t2;\n',
          'the down script is stored as applied');
SELECT results_eq(
	$$SELECT version, name, state, file, checksum = applied_checksum, applied_at IS NOT NULL,
	         installed_rank - (SELECT min(installed_rank) FROM migrate_history) + 1, has_down
	    FROM migrate_status(pg_temp.fx('basic'))$$,
	$$VALUES ('1'::text, 'create_t1'::text, 'applied'::text, '1_create_t1.up.sql'::text, true, true, 1::bigint, true),
	         ('2', 'create_t2', 'applied', '2_create_t2.up.sql', true, true, 2, true),
	         ('3', 'seed', 'applied', '3_seed.up.sql', true, true, 3, true)$$,
	'migrate_status lists the applied migrations');

-- versions compare as numbers: 9 < 10 < 000011
SELECT is(migrate_apply(pg_temp.fx('numeric')), 3::bigint, 'numeric versions apply');
SELECT is((SELECT array_agg(version ORDER BY installed_rank) FROM migrate_history),
          ARRAY['1', '2', '3', '9', '10', '11'], 'in numeric order, not text order');

-- roll back from the stored scripts (migrate_down needs no folder)
SELECT throws_ok($$SELECT migrate_down(7)$$, '22023', NULL, 'rolling back more than applied is refused');
SELECT throws_ok($$SELECT migrate_down(-1)$$, '22023', NULL, 'a negative count is refused');
SELECT is(migrate_down(0), 0::bigint, 'migrate_down(0) does nothing');
SELECT is(migrate_down(3), 3::bigint, 'rolls back the numeric migrations');
SELECT is((SELECT down FROM migrate_status(pg_temp.fx('basic')) WHERE version = '3'), 'noop',
          'a migration without a down file rolls back as a no-op (golang-migrate''s rule)');
SELECT is(migrate_down(), 1::bigint, 'migrate_down() rolls back one: the seed, without a down file');
SELECT is((SELECT count(*)::int FROM t1 WHERE id = 3), 1, 'which ran nothing, as golang-migrate does');
SELECT lives_ok($$DELETE FROM t1 WHERE id = 3$$, 'undo the seed by hand');
SELECT is(migrate_down(), 1::bigint, 'migrate_down() rolls back the next');
SELECT hasnt_table('t2', 'its down script ran');
SELECT is((SELECT state FROM migrate_status(pg_temp.fx('basic')) WHERE version = '2'), 'pending',
          'the rolled-back migration is pending again');
SELECT is(migrate_apply(pg_temp.fx('basic')), 2::bigint, 'and applies again with the seed');

-- paths
SELECT throws_like($$SELECT migrate_apply('no_such_folder')$$,
                   '%/no_such_folder%', 'a relative path is relative to the data directory');

SELECT * FROM finish();
ROLLBACK;
