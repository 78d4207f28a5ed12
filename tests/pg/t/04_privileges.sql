-- tests/pg/t/04_privileges.sql -- reading server files needs a superuser or
-- pg_read_server_files, as pg_read_file; the functions are not PUBLIC.
BEGIN;
SELECT plan(12);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;
CREATE TEMP TABLE paths AS SELECT pg_temp.fx('basic') AS basic;
GRANT SELECT ON paths TO PUBLIC;

CREATE ROLE migrate_plain;
CREATE ROLE migrate_reader;
GRANT pg_read_server_files TO migrate_reader;
GRANT CREATE ON SCHEMA public TO migrate_reader;

SET ROLE migrate_plain;
SELECT throws_ok($$SELECT migrate_apply((SELECT basic FROM paths))$$, '42501', NULL,
                 'a plain user may not execute migrate_apply');
SELECT throws_ok($$SELECT * FROM migrate_status((SELECT basic FROM paths))$$, '42501', NULL,
                 'nor migrate_status');
SELECT throws_ok($$SELECT migrate_down(1)$$, '42501', NULL, 'nor migrate_down');
SELECT is((SELECT count(*)::int FROM pg_proc p, unnest(ARRAY['migrate_validate', 'migrate_repair',
             'migrate_plan', 'migrate_script', 'migrate_lock_holder']) AS f
            WHERE p.proname = f AND has_function_privilege(p.oid, 'EXECUTE')), 0,
          'nor any of migrate_validate, migrate_repair, migrate_plan, migrate_script, migrate_lock_holder');
RESET ROLE;

GRANT EXECUTE ON FUNCTION migrate_apply(text), migrate_status(text) TO migrate_plain;
SET ROLE migrate_plain;
SELECT throws_ok($$SELECT migrate_apply((SELECT basic FROM paths))$$, '42501',
                 'permission denied to read migration files',
                 'granted EXECUTE alone, migrate_apply still refuses a plain user');
SELECT throws_ok($$SELECT * FROM migrate_status((SELECT basic FROM paths))$$, '42501',
                 'permission denied to read migration files', 'so does migrate_status');
RESET ROLE;
GRANT EXECUTE ON FUNCTION migrate_validate(text), migrate_script(text) TO migrate_plain;
SET ROLE migrate_plain;
SELECT throws_ok($$SELECT * FROM migrate_validate((SELECT basic FROM paths))$$, '42501',
                 'permission denied to read migration files', 'so does migrate_validate');
SELECT throws_ok($$SELECT migrate_script((SELECT basic FROM paths))$$, '42501',
                 'permission denied to read migration files', 'and migrate_script');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM migrate_history), 0, 'nothing was applied');

GRANT EXECUTE ON FUNCTION migrate_apply(text), migrate_status(text) TO migrate_reader;
SET ROLE migrate_reader;
SELECT is(migrate_apply((SELECT basic FROM paths)), 3::bigint,
          'a member of pg_read_server_files with EXECUTE applies: no grant on the history is needed');
SELECT is((SELECT count(*)::int FROM migrate_status((SELECT basic FROM paths)) WHERE state = 'applied'),
          3, 'and reads the status');
RESET ROLE;
SELECT is((SELECT tableowner::text FROM pg_tables WHERE tablename = 't1'), 'migrate_reader',
          'migrations run as the caller (no SECURITY DEFINER)');

SELECT * FROM finish();
ROLLBACK;
