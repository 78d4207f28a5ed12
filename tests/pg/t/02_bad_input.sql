-- tests/pg/t/02_bad_input.sql -- every bad folder or file is refused with
-- its SQLSTATE before anything runs.
--
-- Each bad folder starts with 1_probe.up.sql, which calls nextval('probe'):
-- sequences ignore rollback, so an untouched probe proves that not even the
-- first migration ran.
BEGIN;
SELECT plan(66);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;
CREATE SEQUENCE public.probe;

-- refused(folder, sqlstate, what): the call fails with sqlstate, and neither
-- the history, the schema nor the probe changed.
CREATE FUNCTION pg_temp.refused(folder text, state text, what text)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	tables_before int := (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace);
BEGIN
	RETURN NEXT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx(folder)), state, NULL,
	                      what || ': ' || state);
	RETURN NEXT ok((SELECT count(*) = 0 FROM migrate_history)
	               AND (SELECT NOT is_called FROM public.probe)
	               AND (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace) = tables_before,
	               what || ': nothing ran, nothing changed');
END $$;

-- names and versions
SELECT pg_temp.refused('bad_name', '42602', 'a .sql file that fits no layout');
SELECT pg_temp.refused('dup_version', '42710', 'two files for one version');
SELECT pg_temp.refused('down_only', '42602', 'a down file without an up file');
SELECT pg_temp.refused('missing_folder', '58P01', 'a missing folder');
SELECT pg_temp.refused('basic/1_create_t1.up.sql', '58P01', 'a file given as the folder');

-- unsafe files
SELECT pg_temp.refused('symlink', '42501', 'a symbolic link');
SELECT pg_temp.refused('symlink_down', '42501', 'a symbolic link as the down file');
SELECT pg_temp.refused('fifo', '42501', 'a FIFO');
SELECT pg_temp.refused('dir_sql', '42501', 'a directory named like a migration');
SELECT pg_temp.refused('group_writable', '42501', 'a group-writable file');
SELECT pg_temp.refused('world_writable', '42501', 'a world-writable file');
SELECT pg_temp.refused('oversized', '54000', 'a file over the size limit');
SET LOCAL migrate.max_file_size = '1kB';
SELECT pg_temp.refused('over_setting', '54000', 'a 2 kB file over migrate.max_file_size = 1kB');
RESET migrate.max_file_size;

-- unsafe content
SELECT pg_temp.refused('nul_byte', '22021', 'a NUL byte');
SELECT pg_temp.refused('bad_utf8', '22021', 'invalid UTF-8');
SELECT pg_temp.refused('bad_utf8_down', '22021', 'invalid UTF-8 in a down file');

-- statements that cannot run in a migration
SELECT pg_temp.refused('txn_commit', '0A000', 'COMMIT');
SELECT pg_temp.refused('txn_begin', '0A000', 'BEGIN');
SELECT pg_temp.refused('txn_rollback', '0A000', 'ROLLBACK');
SELECT pg_temp.refused('txn_savepoint', '0A000', 'SAVEPOINT');
SELECT pg_temp.refused('txn_down', '0A000', 'COMMIT in a down file');
SELECT pg_temp.refused('vacuum', '0A000', 'VACUUM');
SELECT pg_temp.refused('cic', '0A000', 'CREATE INDEX CONCURRENTLY');
SELECT pg_temp.refused('createdb', '0A000', 'CREATE DATABASE');
SELECT pg_temp.refused('tablespace', '0A000', 'CREATE TABLESPACE');
SELECT pg_temp.refused('copy_stdin', '0A000', 'COPY FROM STDIN');
SELECT pg_temp.refused('syntax', '42601', 'a syntax error');

SELECT throws_like(format('SELECT migrate_apply(%L)', pg_temp.fx('txn_commit')),
                   'COMMIT cannot run in migration file "2_commit.up.sql"',
                   'the refusal names the statement and the file');

-- the history as applied is protected
SELECT lives_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('states_a')), 'apply 1, 2 and 4');
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('edited')), '55000', NULL,
                 'an applied file that changed: 55000');
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('missing')), '55000', NULL,
                 'an applied file that is gone: 55000');
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('out_of_order')), '55000', NULL,
                 'a pending version below the highest applied: 55000');
SELECT ok((SELECT count(*) = 3 FROM migrate_history) AND (SELECT NOT is_called FROM public.probe),
          'none of them changed anything');
SELECT results_eq(
	$$SELECT version, state FROM migrate_status(pg_temp.fx('states_b'))$$,
	$$VALUES ('1'::text, 'applied'::text), ('2', 'changed'), ('3', 'out_of_order'),
	         ('4', 'missing'), ('5', 'pending')$$,
	'migrate_status shows applied, changed, out_of_order, missing and pending');
SELECT is((SELECT file FROM migrate_status(pg_temp.fx('states_b')) WHERE version = '4'), NULL,
          'a missing migration has no file');

-- a UTF-8 byte order mark is stripped, not refused
DELETE FROM migrate_history;
SELECT is(migrate_apply(pg_temp.fx('bom')), 1::bigint, 'a file with a UTF-8 BOM applies');
SELECT has_table('bom_t', 'its statement ran');
SELECT is((SELECT left(up_sql, 6) FROM migrate_history WHERE version = '1'), 'CREATE',
          'the BOM is not stored');
SELECT is((SELECT checksum FROM migrate_history WHERE version = '1'),
          (SELECT checksum FROM migrate_status(pg_temp.fx('bom')) WHERE version = '1'),
          'and its checksum matches the file');

SELECT * FROM finish();
ROLLBACK;
