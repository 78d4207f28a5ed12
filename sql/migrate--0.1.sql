/* sql/migrate--0.1.sql -- install script of the migrate extension, 0.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION migrate" to load this file. \quit

-- One row per applied migration, in order of application.  up_sql and
-- down_sql keep the scripts as they were applied, so that migrate_down works
-- after the files have changed or gone.  file_id is the identity (device,
-- inode, size, mtime, ctime) of the up file when it was read: a later call
-- trusts an unchanged file after one lstat instead of reading it again.
-- checksum_norm is the checksum of the file normalised (no BOM, \n line
-- ends, no trailing white space): equal to the file's now while checksum
-- differs means a whitespace-only edit.
CREATE TABLE @extschema@.migrate_history (
	installed_rank	pg_catalog.int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	version			pg_catalog.text NOT NULL UNIQUE,
	name			pg_catalog.text NOT NULL,
	up_file			pg_catalog.text,
	down_file		pg_catalog.text,
	checksum		pg_catalog.text NOT NULL,
	checksum_norm	pg_catalog.text,
	applied_at		pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
	applied_by		pg_catalog.name NOT NULL DEFAULT CURRENT_USER,
	execution_ms	pg_catalog.float8,
	up_sql			pg_catalog.text,
	down_sql		pg_catalog.text,
	file_id			pg_catalog.text
);

COMMENT ON TABLE @extschema@.migrate_history IS
'migrations applied by migrate_apply and migrate_run, with the up and down SQL as applied';

-- Keep the history (and the position of its identity sequence) in pg_dump
-- output: a restored database must not apply everything again.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.migrate_history', '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('@extschema@.migrate_history', 'installed_rank'), '');

REVOKE ALL ON TABLE @extschema@.migrate_history FROM PUBLIC;

-- One row per history row that migrate_repair brought in line with its
-- edited file: which, the checksums before and after, who and when.
CREATE TABLE @extschema@.migrate_repairs (
	version			pg_catalog.text NOT NULL,
	old_checksum	pg_catalog.text,
	new_checksum	pg_catalog.text,
	repaired_by		pg_catalog.name NOT NULL DEFAULT CURRENT_USER,
	repaired_at		pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE @extschema@.migrate_repairs IS
'audit of migrate_repair: history rows brought in line with edited migration files';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.migrate_repairs', '');

REVOKE ALL ON TABLE @extschema@.migrate_repairs FROM PUBLIC;

-- How far CALL migrate_run got with a migration that runs outside a
-- transaction, one statement at a time: the checksum of its text up to
-- next_offset (the end of the last statement done, in bytes of the text in
-- the database encoding), how many statements ran, and the error that
-- stopped it.  The next call resumes at the failed statement when that
-- text is unchanged; the row goes when the migration is recorded in
-- migrate_history.  Kept by pg_dump with the history: a dump taken after a
-- failure half way holds the effects of the statements done, so the
-- restored database must resume where this one would rather than run them
-- again.
CREATE TABLE @extschema@.migrate_progress (
	version			pg_catalog.text PRIMARY KEY,
	done_checksum	pg_catalog.text NOT NULL,
	next_offset		pg_catalog.int8 NOT NULL,
	statements_done	pg_catalog.int8 NOT NULL,
	updated_at		pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_error		pg_catalog.text
);

COMMENT ON TABLE @extschema@.migrate_progress IS
'progress of migrations run outside a transaction by migrate_run, statement by statement, for resuming at the failed one';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.migrate_progress', '');

REVOKE ALL ON TABLE @extschema@.migrate_progress FROM PUBLIC;

CREATE FUNCTION @extschema@.migrate_apply(path pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_apply'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_apply(pg_catalog.text) IS
'applies every pending migration of a server folder inside the current transaction; returns how many were applied';

CREATE FUNCTION @extschema@.migrate_apply(path pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_apply'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_apply(pg_catalog.text, pg_catalog.text) IS
'migrate_apply with options: target=V, out_of_order=true, ignore_missing=true, wait=5s (0: no wait; forever), if_locked=skip, lock_timeout=200ms (of migration statements; 0: none), lock_retries=N';

CREATE FUNCTION @extschema@.migrate_adopt(path pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_adopt'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_adopt(pg_catalog.text) IS
'records as applied the migrations of a server folder that another tool (Flyway, golang-migrate, goose...) applied; runs nothing; returns how many';

CREATE FUNCTION @extschema@.migrate_baseline(path pg_catalog.text, version pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_baseline'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_baseline(pg_catalog.text, pg_catalog.text) IS
'marks a database that already has the schema of the folder''s migrations up to version: records them as applied, runs nothing; returns how many';

CREATE FUNCTION @extschema@.migrate_down(n pg_catalog.int8 DEFAULT 1)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_down'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_down(pg_catalog.int8) IS
'rolls back the last n applied migrations with the down SQL stored in the history; returns how many were rolled back';

CREATE FUNCTION @extschema@.migrate_down_to(version pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_down_to'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_down_to(pg_catalog.text) IS
'rolls back every applied migration above version, newest applied first, with the down SQL stored in the history; returns how many were rolled back';

CREATE FUNCTION @extschema@.migrate_status(path pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	name				pg_catalog.text,
	state				pg_catalog.text,
	file				pg_catalog.text,
	checksum			pg_catalog.text,
	applied_checksum	pg_catalog.text,
	applied_at			pg_catalog.timestamptz,
	execution_ms		pg_catalog.float8,
	installed_rank		pg_catalog.int8,
	has_down			pg_catalog.bool
)
AS 'MODULE_PATHNAME', 'migrate_status'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_status(pg_catalog.text) IS
'lists the migrations of a server folder and of the history: applied, pending, changed, missing or out_of_order';

CREATE PROCEDURE @extschema@.migrate_run(path pg_catalog.text)
AS 'MODULE_PATHNAME', 'migrate_run'
LANGUAGE C;

COMMENT ON PROCEDURE @extschema@.migrate_run(pg_catalog.text) IS
'applies every pending migration of a server folder, committing after each one; call it outside a transaction block';

CREATE PROCEDURE @extschema@.migrate_run(path pg_catalog.text, options pg_catalog.text)
AS 'MODULE_PATHNAME', 'migrate_run'
LANGUAGE C;

COMMENT ON PROCEDURE @extschema@.migrate_run(pg_catalog.text, pg_catalog.text) IS
'migrate_run with options: target=V, out_of_order=true, ignore_missing=true, wait=5s (0: no wait; forever), if_locked=skip, lock_timeout=200ms (of migration statements; 0: none), lock_retries=N';

CREATE FUNCTION @extschema@.migrate_validate(path pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	file				pg_catalog.text,
	problem				pg_catalog.text,
	severity			pg_catalog.text,
	sqlstate			pg_catalog.text,
	message				pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_validate'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_validate(pg_catalog.text) IS
'lists every problem of a server folder against the history (changed, missing, out of order, duplicate, bad names, syntax errors...) in one call; takes no lock, changes nothing';

CREATE FUNCTION @extschema@.migrate_repair(path pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_repair'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_repair(pg_catalog.text) IS
'accepts edited applied migration files: brings their history rows in line with the files, with an audit row each in migrate_repairs; runs nothing; returns how many';

CREATE FUNCTION @extschema@.migrate_plan(path pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	name				pg_catalog.text,
	file				pg_catalog.text,
	kind				pg_catalog.text,
	sql					pg_catalog.text,
	down_sql			pg_catalog.text,
	checksum			pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_plan'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_plan(pg_catalog.text) IS
'a dry run of migrate_apply: the migrations it would apply, in order, with their SQL; runs nothing';

CREATE FUNCTION @extschema@.migrate_plan(path pg_catalog.text, options pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	name				pg_catalog.text,
	file				pg_catalog.text,
	kind				pg_catalog.text,
	sql					pg_catalog.text,
	down_sql			pg_catalog.text,
	checksum			pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_plan'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_plan(pg_catalog.text, pg_catalog.text) IS
'migrate_plan with the options of migrate_apply (target=V, out_of_order=true, ignore_missing=true)';

CREATE FUNCTION @extschema@.migrate_script(path pg_catalog.text)
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'migrate_script'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_script(pg_catalog.text) IS
'the pending migrations as one SQL script to run with psql off-hours: one transaction, the migration lock, the history recorded as migrate_apply would; changes nothing itself';

CREATE FUNCTION @extschema@.migrate_script(path pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'migrate_script'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_script(pg_catalog.text, pg_catalog.text) IS
'migrate_script with the options of migrate_apply (target=V, out_of_order=true, ignore_missing=true)';

CREATE FUNCTION @extschema@.migrate_lock_holder()
RETURNS TABLE (
	pid					pg_catalog.int4,
	usename				pg_catalog.name,
	application_name	pg_catalog.text,
	since				pg_catalog.timestamptz,
	state				pg_catalog.text,
	query				pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_lock_holder'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_lock_holder() IS
'the session holding the migration lock in this database, none when it is free; since: start of its current statement when active, else of its open transaction, else of its last statement';

-- These read server files or change the schema: superusers only, unless
-- granted (all but migrate_down, migrate_down_to and migrate_lock_holder
-- also require pg_read_server_files, checked in C like pg_read_file).
REVOKE ALL ON FUNCTION @extschema@.migrate_apply(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_apply(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_adopt(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_baseline(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_down(pg_catalog.int8) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_down_to(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_status(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.migrate_run(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.migrate_run(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_validate(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_repair(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_plan(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_plan(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_script(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_script(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
-- It shows the query text of the holder's session (as pg_stat_activity
-- shows it to the caller): kept from PUBLIC too.
REVOKE ALL ON FUNCTION @extschema@.migrate_lock_holder() FROM PUBLIC;
