-- tests/pg/t/05_layouts_adopt.sql -- the core's other layouts through the
-- PostgreSQL host (Flyway with a repeatable, dbmate and goose sections,
-- per-engine folders) and migrate_adopt taking over another tool's table.
BEGIN;
SELECT plan(28);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;
CREATE FUNCTION pg_temp.err(query text, OUT state text, OUT context text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE query;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, context = PG_EXCEPTION_CONTEXT;
END $$;
CREATE FUNCTION pg_temp.reset() RETURNS void LANGUAGE sql
AS $$ DELETE FROM migrate_history $$;

-- Flyway: versioned files, then the repeatable; it runs again when changed
SELECT is(migrate_apply(pg_temp.fx('flyway')), 3::bigint, 'Flyway: V1, V1.1 and R__view apply');
SELECT is((SELECT n FROM fw_v), 1::bigint, 'the repeatable ran after the versioned ones');
SELECT is(migrate_apply(pg_temp.fx('flyway')), 0::bigint, 'an unchanged repeatable does not run again');
SELECT is((SELECT state FROM migrate_status(pg_temp.fx('flyway_changed')) WHERE name = 'view'),
          'outdated', 'a changed repeatable is outdated');
SELECT is(migrate_apply(pg_temp.fx('flyway_changed')), 1::bigint, 'and runs again');
SELECT has_column('fw_v', 'k', 'its new text ran');
SELECT is((SELECT count(*)::int FROM migrate_history), 3, 'still one history row per migration');
SELECT pg_temp.reset();

-- dbmate: one file, up and down sections
SELECT is(migrate_apply(pg_temp.fx('dbmate')), 1::bigint, 'dbmate: the up section applies');
SELECT has_table('dm1', 'its table exists');
SELECT is((SELECT down_sql FROM migrate_history), E'DROP TABLE dm1;\n', 'the down section is stored');
SELECT is(migrate_down(1), 1::bigint, 'and rolls back');
SELECT hasnt_table('dm1', 'the down section ran');
SELECT is((pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('dbmate_fail')))).state,
          '22012', 'a failing dbmate section keeps its SQLSTATE');
SELECT matches((pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('dbmate_fail')))).context,
               'migration 20240101120000 \(20240101120000_bad\.sql\), line 3',
               'and names the line within the file, not the section');

-- goose
SELECT is(migrate_apply(pg_temp.fx('goose')), 2::bigint, 'goose: the Up sections apply');
SELECT is(migrate_down(2), 2::bigint, 'the Down sections roll back');
SELECT hasnt_table('gs1', 'gs1 is gone');
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('goose_notx')), '0A000', NULL,
                 'a NO TRANSACTION migration is refused');

-- per-engine folders
SELECT is(migrate_apply(pg_temp.fx('engines')), 1::bigint, 'a folder with postgres/ and sqlite/ applies postgres/');
SELECT ok(to_regclass('eng_pg') IS NOT NULL AND to_regclass('eng_lite') IS NULL, 'only the postgres migration ran');
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('engines_other')), '58P01', NULL,
                 'a folder with only sqlite/ is refused');
SELECT pg_temp.reset();

-- adopting golang-migrate's history
CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
INSERT INTO schema_migrations VALUES (2, true);
SELECT throws_ok(format('SELECT migrate_adopt(%L)', pg_temp.fx('golang')), '55000', NULL,
                 'adopt: a dirty golang-migrate version is refused');
UPDATE schema_migrations SET dirty = false;
CREATE TABLE ga_a (id int);
CREATE TABLE ga_b (id int);
SELECT is(migrate_adopt(pg_temp.fx('golang')), 2::bigint, 'adopt: versions 1 and 2 are taken over');
SELECT is(migrate_apply(pg_temp.fx('golang')), 1::bigint, 'then migrate_apply runs only version 3');
SELECT throws_ok(format('SELECT migrate_adopt(%L)', pg_temp.fx('golang')), '55000', NULL,
                 'adopt refuses when migrate_history is not empty');
SELECT is((SELECT count(*)::int FROM schema_migrations), 1, 'the other tool''s table is left as it was');

-- migrate_record has migrate_repair's privilege rules: not PUBLIC, and
-- EXECUTE alone does not let a role read server files
CREATE ROLE migrate_rec_plain;
CREATE TEMP TABLE rec_paths AS SELECT pg_temp.fx('golang') AS p;
GRANT SELECT ON rec_paths TO migrate_rec_plain;
SET ROLE migrate_rec_plain;
SELECT throws_ok($$SELECT migrate_record((SELECT p FROM rec_paths), '1')$$, '42501', NULL,
                 'a plain user may not execute migrate_record');
RESET ROLE;
GRANT EXECUTE ON FUNCTION migrate_record(text, text) TO migrate_rec_plain;
SET ROLE migrate_rec_plain;
SELECT throws_ok($$SELECT migrate_record((SELECT p FROM rec_paths), '1')$$, '42501',
                 'permission denied to read migration files',
                 'granted EXECUTE alone, migrate_record still refuses a plain user');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
