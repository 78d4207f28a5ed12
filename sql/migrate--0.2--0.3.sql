/* sql/migrate--0.2--0.3.sql -- the migrate extension from 0.2 to 0.3: the
 * history written only through the extension's functions, down scripts
 * that run outside a transaction, and scripts that stopped half way shown.
 * CREATE EXTENSION migrate runs 0.1, 0.1--0.2, then this. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION migrate UPDATE TO '0.3'" to load this file. \quit

-- ---- the history: how each down script runs ----

-- down_mode: how the stored down script runs -- 'transaction', 'outside'
-- (marked so, or holding a statement that cannot run in a transaction:
-- CALL migrate_run_down runs it, statement by statement), or 'noop' (it
-- holds no statement: the tool's rule for a missing down, or an empty
-- one); NULL when there is none.  down_line: the line of the down file it
-- starts at, for errors.  down_by: the role that stored the down script
-- (who applied the migration, or who repaired it since), written by the
-- functions as the role that called them: rolling back runs the down
-- script with that role's rights, never more.
ALTER TABLE @extschema@.migrate_history
	ADD COLUMN down_mode pg_catalog.text,
	ADD COLUMN down_line pg_catalog.int4,
	ADD COLUMN down_by pg_catalog.name,
	ADD CONSTRAINT migrate_history_down_mode_check
		CHECK (down_mode OPERATOR(pg_catalog.=) ANY (ARRAY['transaction', 'outside', 'noop']::pg_catalog.text[]));

UPDATE @extschema@.migrate_history
   SET down_by = applied_by,
	   down_mode = CASE WHEN pg_catalog.btrim(down_sql, E' \t\r\n') OPERATOR(pg_catalog.=) ''
						THEN 'noop' ELSE 'transaction' END
 WHERE down_sql IS NOT NULL;

-- ---- progress: up or down ----

-- A script that stopped half way outside a transaction: an up script (a
-- pending migration) or, with down set, a down script (an applied one).
-- One version never has both.
ALTER TABLE @extschema@.migrate_progress
	ADD COLUMN down pg_catalog.bool NOT NULL DEFAULT false;

-- ---- the audit: what each row records ----

-- action: repair (migrate_repair brought the row in line with an edited
-- file), discard_partial (migrate_repair 'partial=discard' forgot the
-- progress of a script that stopped half way), record (a migration
-- recorded as applied without running it, by migrate_record).
ALTER TABLE @extschema@.migrate_repairs
	ADD COLUMN action pg_catalog.text NOT NULL DEFAULT 'repair'
	CHECK (action OPERATOR(pg_catalog.=) ANY (ARRAY['repair', 'discard_partial', 'record']::pg_catalog.text[]));

COMMENT ON TABLE @extschema@.migrate_repairs IS
'audit of migrate_repair (history rows brought in line with edited migration files, progress discarded) and migrate_record (migrations recorded as applied without running them)';

-- ---- written only through the functions ----

-- The functions read and write these tables as their owner, whatever the
-- caller's rights: no role needs (or may keep) a privilege to write them.
-- Grants made on 0.2 (a deploy set-up that granted INSERT on the history,
-- say) are taken back; SELECT grants stay, for reading.
DO $$
DECLARE
	t pg_catalog.regclass;
	g record;
BEGIN
	FOREACH t IN ARRAY ARRAY['@extschema@.migrate_history', '@extschema@.migrate_repairs',
							 '@extschema@.migrate_progress', '@extschema@.migrate_verified']::pg_catalog.regclass[]
	LOOP
		FOR g IN
			SELECT DISTINCT a.grantee
			  FROM pg_catalog.pg_class c,
				   LATERAL pg_catalog.aclexplode(c.relacl) a
			 WHERE c.oid OPERATOR(pg_catalog.=) t
			   AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
			   AND a.privilege_type OPERATOR(pg_catalog.<>) 'SELECT'
		LOOP
			EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s FROM %s',
									  t, CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
											  ELSE pg_catalog.quote_ident(g.grantee::pg_catalog.regrole::pg_catalog.text) END);
		END LOOP;
	END LOOP;
END
$$;

-- And should a write privilege be granted again: before any statement that
-- writes to one of them, refuses it unless it comes from the extension's
-- functions or from a superuser (who could disable this trigger anyway).
-- Enabled ALWAYS, so that session_replication_role does not turn it off.
CREATE FUNCTION @extschema@.migrate_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'migrate_guard'
LANGUAGE C;

REVOKE ALL ON FUNCTION @extschema@.migrate_guard() FROM PUBLIC;

CREATE TRIGGER migrate_guard
	BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.migrate_history
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.migrate_guard();
CREATE TRIGGER migrate_guard
	BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.migrate_repairs
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.migrate_guard();
CREATE TRIGGER migrate_guard
	BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.migrate_progress
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.migrate_guard();
CREATE TRIGGER migrate_guard
	BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.migrate_verified
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.migrate_guard();
ALTER TABLE @extschema@.migrate_history ENABLE ALWAYS TRIGGER migrate_guard;
ALTER TABLE @extschema@.migrate_repairs ENABLE ALWAYS TRIGGER migrate_guard;
ALTER TABLE @extschema@.migrate_progress ENABLE ALWAYS TRIGGER migrate_guard;
ALTER TABLE @extschema@.migrate_verified ENABLE ALWAYS TRIGGER migrate_guard;

-- ---- functions whose result changed ----

DROP FUNCTION @extschema@.migrate_status(pg_catalog.text);
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
	has_down			pg_catalog.bool,
	down				pg_catalog.text,
	statements_done		pg_catalog.int8,
	last_error			pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_status(pg_catalog.text) IS
'lists the migrations of a server folder and of the history: applied, pending, changed, missing, out_of_order, partial (stopped half way outside a transaction)...; down: script, noop or none';

REVOKE ALL ON FUNCTION @extschema@.migrate_status(pg_catalog.text) FROM PUBLIC;

DROP FUNCTION @extschema@.migrate_plan(pg_catalog.text);
DROP FUNCTION @extschema@.migrate_plan(pg_catalog.text, pg_catalog.text);
CREATE FUNCTION @extschema@.migrate_plan(path pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	name				pg_catalog.text,
	file				pg_catalog.text,
	kind				pg_catalog.text,
	sql					pg_catalog.text,
	down_sql			pg_catalog.text,
	checksum			pg_catalog.text,
	outside				pg_catalog.bool,
	statements_done		pg_catalog.int8
)
AS 'MODULE_PATHNAME', 'migrate_plan'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_plan(pg_catalog.text) IS
'a dry run of migrate_apply: the migrations it would apply, in order, with their SQL; outside: run outside a transaction, statement by statement; statements_done: of one that stopped half way; runs nothing';

CREATE FUNCTION @extschema@.migrate_plan(path pg_catalog.text, options pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	name				pg_catalog.text,
	file				pg_catalog.text,
	kind				pg_catalog.text,
	sql					pg_catalog.text,
	down_sql			pg_catalog.text,
	checksum			pg_catalog.text,
	outside				pg_catalog.bool,
	statements_done		pg_catalog.int8
)
AS 'MODULE_PATHNAME', 'migrate_plan'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_plan(pg_catalog.text, pg_catalog.text) IS
'migrate_plan with the options of migrate_apply (target=V, out_of_order=true, ignore_missing=true)';

REVOKE ALL ON FUNCTION @extschema@.migrate_plan(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_plan(pg_catalog.text, pg_catalog.text) FROM PUBLIC;

CREATE FUNCTION @extschema@.migrate_repair(path pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_repair'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_repair(pg_catalog.text, pg_catalog.text) IS
'migrate_repair with options: partial=discard also forgets the progress of migrations that stopped half way outside a transaction (after their statements were undone by hand), audited; wait=, if_locked=';

REVOKE ALL ON FUNCTION @extschema@.migrate_repair(pg_catalog.text, pg_catalog.text) FROM PUBLIC;

-- ---- rolling back outside a transaction ----

CREATE PROCEDURE @extschema@.migrate_run_down(n pg_catalog.int8 DEFAULT 1)
AS 'MODULE_PATHNAME', 'migrate_run_down'
LANGUAGE C;

COMMENT ON PROCEDURE @extschema@.migrate_run_down(pg_catalog.int8) IS
'rolls back the last n applied migrations like migrate_down, committing after each, and runs a down script that must run outside a transaction statement by statement, resuming after a failure; call it outside a transaction block';

REVOKE ALL ON PROCEDURE @extschema@.migrate_run_down(pg_catalog.int8) FROM PUBLIC;

-- ---- the off-hours script's records ----

-- What migrate_script writes for each migration, in place of an INSERT
-- into the history (which no role but the owner may write): records the
-- migration as applied by the calling role, inside the script's
-- transaction, which must hold the migration lock.  replace: the row of a
-- repeatable that runs again is replaced.
CREATE FUNCTION @extschema@.migrate_script_record(
	version pg_catalog.text, name pg_catalog.text, up_file pg_catalog.text,
	down_file pg_catalog.text, checksum pg_catalog.text, checksum_norm pg_catalog.text,
	up_sql pg_catalog.text, down_sql pg_catalog.text, down_mode pg_catalog.text,
	down_line pg_catalog.int4, replace pg_catalog.bool)
RETURNS void
AS 'MODULE_PATHNAME', 'migrate_script_record'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_script_record(pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.int4, pg_catalog.bool) IS
'used by scripts that migrate_script writes: records one migration as applied by the calling role; needs the migration lock';

REVOKE ALL ON FUNCTION @extschema@.migrate_script_record(pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.int4, pg_catalog.bool) FROM PUBLIC;

-- ---- migrate_adopt: where the other tool's table is ----

CREATE FUNCTION @extschema@.migrate_adopt(path pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_adopt'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_adopt(pg_catalog.text, pg_catalog.text) IS
'migrate_adopt with options: schema=S reads the other tool''s table in schema S (default public, never through search_path); wait=, if_locked=';

REVOKE ALL ON FUNCTION @extschema@.migrate_adopt(pg_catalog.text, pg_catalog.text) FROM PUBLIC;

-- ---- the call log ----

-- One row per call of a function that writes (apply, run, down, run_down,
-- down_to, repair, adopt, baseline): when, who, what folder, with which
-- options, which migrations it applied, recorded, repaired or rolled back,
-- and how it ended -- so that a DBA can read what last night's scheduled
-- job did.  A call that succeeds writes its row in its own transaction (in
-- function mode the caller's: rolled back with it); a call that fails has
-- it written apart, by a background worker, so the row outlives the
-- failed transaction.  Kept migrate.call_log_days (default 90) days.
CREATE TABLE @extschema@.migrate_calls (
	id				pg_catalog.int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	started_at		pg_catalog.timestamptz NOT NULL,
	finished_at		pg_catalog.timestamptz NOT NULL,
	function		pg_catalog.text NOT NULL,
	role			pg_catalog.name NOT NULL,
	source			pg_catalog.text,
	options			pg_catalog.text,
	migrations		pg_catalog.int8 NOT NULL DEFAULT 0,
	versions		pg_catalog.text,
	outcome			pg_catalog.text NOT NULL
		CHECK (outcome OPERATOR(pg_catalog.=) ANY (ARRAY['ok', 'error', 'skipped']::pg_catalog.text[])),
	sqlstate		pg_catalog.text,
	message			pg_catalog.text,
	backend_pid		pg_catalog.int4
);

CREATE INDEX migrate_calls_finished_at ON @extschema@.migrate_calls (finished_at);

COMMENT ON TABLE @extschema@.migrate_calls IS
'one row per call of a migrate function that writes: when, who, what, which migrations, how it ended';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.migrate_calls', '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('@extschema@.migrate_calls', 'id'), '');

REVOKE ALL ON TABLE @extschema@.migrate_calls FROM PUBLIC;

CREATE TRIGGER migrate_guard
	BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.migrate_calls
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.migrate_guard();
ALTER TABLE @extschema@.migrate_calls ENABLE ALWAYS TRIGGER migrate_guard;

-- ---- migrate_record: a migration that ran elsewhere ----

CREATE FUNCTION @extschema@.migrate_record(path pg_catalog.text, version pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_record'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_record(pg_catalog.text, pg_catalog.text) IS
'records the next pending migration of a server folder, which ran elsewhere (a goose Go migration run by the application), as applied without running it, with an audit row in migrate_repairs; returns 1';

-- It reads server files and writes the history: as migrate_repair.
REVOKE ALL ON FUNCTION @extschema@.migrate_record(pg_catalog.text, pg_catalog.text) FROM PUBLIC;

-- ---- the folder as data ----

-- Every function that takes a server folder also takes the folder's
-- contents, for applications whose migrations live with them (a container
-- image, a CI checkout, a jar) on a host that is not the database server:
-- an archive (tar, gzip-compressed tar or zip) as bytea, or a JSON object
-- {"relative/path.sql": "file text", ...} as jsonb.  They read no server
-- file, so they need neither superuser nor pg_read_server_files: the
-- database's owner (pg_database_owner) may call them, and other roles what
-- they are granted (README: "Least privilege").  Migrations still run with
-- the caller's rights (nothing here is SECURITY DEFINER) and the history
-- is written only by the functions.  migrate.max_archive_size caps what an
-- archive expands to.

CREATE FUNCTION @extschema@.migrate_apply(archive pg_catalog.bytea, options pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_apply'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_apply(pg_catalog.bytea, pg_catalog.text) IS
'applies every pending migration of the folder sent as an archive (tar, tar.gz or zip), in the caller''s transaction; options as for a path';

REVOKE ALL ON FUNCTION @extschema@.migrate_apply(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_apply(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE PROCEDURE @extschema@.migrate_run(archive pg_catalog.bytea, options pg_catalog.text DEFAULT NULL)
AS 'MODULE_PATHNAME', 'migrate_run'
LANGUAGE C;

COMMENT ON PROCEDURE @extschema@.migrate_run(pg_catalog.bytea, pg_catalog.text) IS
'applies every pending migration of the folder sent as an archive (tar, tar.gz or zip), committing after each one; call it outside a transaction block';

REVOKE ALL ON PROCEDURE @extschema@.migrate_run(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.migrate_run(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_status(archive pg_catalog.bytea)
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
	has_down			pg_catalog.bool,
	down				pg_catalog.text,
	statements_done		pg_catalog.int8,
	last_error			pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_status(pg_catalog.bytea) IS
'lists the migrations of the folder sent as an archive (tar, tar.gz or zip) and of the history';

REVOKE ALL ON FUNCTION @extschema@.migrate_status(pg_catalog.bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_status(pg_catalog.bytea) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_validate(archive pg_catalog.bytea)
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

COMMENT ON FUNCTION @extschema@.migrate_validate(pg_catalog.bytea) IS
'lists every problem of the folder sent as an archive (tar, tar.gz or zip) against the history; takes no lock, changes nothing';

REVOKE ALL ON FUNCTION @extschema@.migrate_validate(pg_catalog.bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_validate(pg_catalog.bytea) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_plan(archive pg_catalog.bytea, options pg_catalog.text DEFAULT NULL)
RETURNS TABLE (
	version				pg_catalog.text,
	name				pg_catalog.text,
	file				pg_catalog.text,
	kind				pg_catalog.text,
	sql					pg_catalog.text,
	down_sql			pg_catalog.text,
	checksum			pg_catalog.text,
	outside				pg_catalog.bool,
	statements_done		pg_catalog.int8
)
AS 'MODULE_PATHNAME', 'migrate_plan'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_plan(pg_catalog.bytea, pg_catalog.text) IS
'a dry run of migrate_apply on the folder sent as an archive (tar, tar.gz or zip); runs nothing';

REVOKE ALL ON FUNCTION @extschema@.migrate_plan(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_plan(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_script(archive pg_catalog.bytea, options pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'migrate_script'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_script(pg_catalog.bytea, pg_catalog.text) IS
'the pending migrations of the folder sent as an archive (tar, tar.gz or zip) as one SQL script to run with psql; changes nothing itself';

REVOKE ALL ON FUNCTION @extschema@.migrate_script(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_script(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_repair(archive pg_catalog.bytea, options pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_repair'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_repair(pg_catalog.bytea, pg_catalog.text) IS
'accepts edited applied migration files of the folder sent as an archive (tar, tar.gz or zip), audited; runs nothing';

REVOKE ALL ON FUNCTION @extschema@.migrate_repair(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_repair(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_adopt(archive pg_catalog.bytea, options pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_adopt'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_adopt(pg_catalog.bytea, pg_catalog.text) IS
'takes over another tool''s history for the folder sent as an archive (tar, tar.gz or zip); runs nothing';

REVOKE ALL ON FUNCTION @extschema@.migrate_adopt(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_adopt(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_baseline(archive pg_catalog.bytea, version pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_baseline'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_baseline(pg_catalog.bytea, pg_catalog.text) IS
'records the migrations of the folder sent as an archive (tar, tar.gz or zip) up to version as applied, running nothing; only into an empty history';

REVOKE ALL ON FUNCTION @extschema@.migrate_baseline(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_baseline(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_record(archive pg_catalog.bytea, version pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_record'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_record(pg_catalog.bytea, pg_catalog.text) IS
'records the next pending migration of the folder sent as an archive (tar, tar.gz or zip), which ran elsewhere, as applied, audited';

REVOKE ALL ON FUNCTION @extschema@.migrate_record(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_record(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_apply(files pg_catalog.jsonb, options pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_apply'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_apply(pg_catalog.jsonb, pg_catalog.text) IS
'applies every pending migration of the folder sent as a JSON object of file names and texts, in the caller''s transaction; options as for a path';

REVOKE ALL ON FUNCTION @extschema@.migrate_apply(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_apply(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

CREATE PROCEDURE @extschema@.migrate_run(files pg_catalog.jsonb, options pg_catalog.text DEFAULT NULL)
AS 'MODULE_PATHNAME', 'migrate_run'
LANGUAGE C;

COMMENT ON PROCEDURE @extschema@.migrate_run(pg_catalog.jsonb, pg_catalog.text) IS
'applies every pending migration of the folder sent as a JSON object of file names and texts, committing after each one; call it outside a transaction block';

REVOKE ALL ON PROCEDURE @extschema@.migrate_run(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.migrate_run(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_status(files pg_catalog.jsonb)
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
	has_down			pg_catalog.bool,
	down				pg_catalog.text,
	statements_done		pg_catalog.int8,
	last_error			pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_status(pg_catalog.jsonb) IS
'lists the migrations of the folder sent as a JSON object of file names and texts and of the history';

REVOKE ALL ON FUNCTION @extschema@.migrate_status(pg_catalog.jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_status(pg_catalog.jsonb) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_validate(files pg_catalog.jsonb)
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

COMMENT ON FUNCTION @extschema@.migrate_validate(pg_catalog.jsonb) IS
'lists every problem of the folder sent as a JSON object of file names and texts against the history; takes no lock, changes nothing';

REVOKE ALL ON FUNCTION @extschema@.migrate_validate(pg_catalog.jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_validate(pg_catalog.jsonb) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_plan(files pg_catalog.jsonb, options pg_catalog.text DEFAULT NULL)
RETURNS TABLE (
	version				pg_catalog.text,
	name				pg_catalog.text,
	file				pg_catalog.text,
	kind				pg_catalog.text,
	sql					pg_catalog.text,
	down_sql			pg_catalog.text,
	checksum			pg_catalog.text,
	outside				pg_catalog.bool,
	statements_done		pg_catalog.int8
)
AS 'MODULE_PATHNAME', 'migrate_plan'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_plan(pg_catalog.jsonb, pg_catalog.text) IS
'a dry run of migrate_apply on the folder sent as a JSON object of file names and texts; runs nothing';

REVOKE ALL ON FUNCTION @extschema@.migrate_plan(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_plan(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_script(files pg_catalog.jsonb, options pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.text
AS 'MODULE_PATHNAME', 'migrate_script'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_script(pg_catalog.jsonb, pg_catalog.text) IS
'the pending migrations of the folder sent as a JSON object of file names and texts as one SQL script to run with psql; changes nothing itself';

REVOKE ALL ON FUNCTION @extschema@.migrate_script(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_script(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_repair(files pg_catalog.jsonb, options pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_repair'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_repair(pg_catalog.jsonb, pg_catalog.text) IS
'accepts edited applied migration files of the folder sent as a JSON object of file names and texts, audited; runs nothing';

REVOKE ALL ON FUNCTION @extschema@.migrate_repair(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_repair(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_adopt(files pg_catalog.jsonb, options pg_catalog.text DEFAULT NULL)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_adopt'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_adopt(pg_catalog.jsonb, pg_catalog.text) IS
'takes over another tool''s history for the folder sent as a JSON object of file names and texts; runs nothing';

REVOKE ALL ON FUNCTION @extschema@.migrate_adopt(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_adopt(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_baseline(files pg_catalog.jsonb, version pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_baseline'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_baseline(pg_catalog.jsonb, pg_catalog.text) IS
'records the migrations of the folder sent as a JSON object of file names and texts up to version as applied, running nothing; only into an empty history';

REVOKE ALL ON FUNCTION @extschema@.migrate_baseline(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_baseline(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_record(files pg_catalog.jsonb, version pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_record'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_record(pg_catalog.jsonb, pg_catalog.text) IS
'records the next pending migration of the folder sent as a JSON object of file names and texts, which ran elsewhere, as applied, audited';

REVOKE ALL ON FUNCTION @extschema@.migrate_record(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_record(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

-- Rolling back needs no folder, and is safe to grant: a stored down script
-- runs with the rights of the role that stored it, and a caller without
-- that role's privileges is refused (docs/security.md).  The off-hours
-- script of migrate_script records its migrations with
-- migrate_script_record, as its caller.  And the database's owner may read
-- what the functions wrote.
GRANT EXECUTE ON FUNCTION @extschema@.migrate_down(pg_catalog.int8) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_down_to(pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON PROCEDURE @extschema@.migrate_run_down(pg_catalog.int8) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_lock_holder() TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_script_record(pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.int4, pg_catalog.bool) TO pg_database_owner;
GRANT SELECT ON TABLE @extschema@.migrate_history, @extschema@.migrate_repairs,
	@extschema@.migrate_progress, @extschema@.migrate_calls TO pg_database_owner;

-- ---- impact: what a migration will do to the live database (issue 21) ----

-- ahead: the row was recorded by an off-hours script of the migrations the
-- impact policy refuses (migrate_script 'only=flagged') while migrations
-- before it were still pending: those apply later without being out of
-- order.
ALTER TABLE @extschema@.migrate_history
	ADD COLUMN ahead pg_catalog.bool NOT NULL DEFAULT false;

-- One row per top-level statement of the migrations migrate_apply would
-- apply, in order: the relation it touches (schema-qualified; NULL for one
-- created earlier in the plan), the strongest lock it takes on it (as
-- pg_locks.mode names it), whether it rewrites it or reads all of it under
-- that lock, its size and rows now, the sessions now in its way, the safer
-- form, and what the impact policy makes of it.  Nothing runs, no lock is
-- taken, nothing changes.
CREATE FUNCTION @extschema@.migrate_impact(path pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	file				pg_catalog.text,
	line				pg_catalog.int4,
	statement			pg_catalog.text,
	relation			pg_catalog.text,
	lock_mode			pg_catalog.text,
	rewrites			pg_catalog.bool,
	scans				pg_catalog.bool,
	relation_bytes		pg_catalog.int8,
	relation_rows		pg_catalog.int8,
	blocked_by			pg_catalog.text,
	advice				pg_catalog.text,
	policy				pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_impact'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_impact(path pg_catalog.text, options pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	file				pg_catalog.text,
	line				pg_catalog.int4,
	statement			pg_catalog.text,
	relation			pg_catalog.text,
	lock_mode			pg_catalog.text,
	rewrites			pg_catalog.bool,
	scans				pg_catalog.bool,
	relation_bytes		pg_catalog.int8,
	relation_rows		pg_catalog.int8,
	blocked_by			pg_catalog.text,
	advice				pg_catalog.text,
	policy				pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_impact'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_impact(pg_catalog.text) IS
'what each statement of the pending migrations of a server folder will do: relation, lock mode, rewrite, full scan, size and rows, sessions in the way, the safer form; runs nothing, takes no lock, changes nothing';
COMMENT ON FUNCTION @extschema@.migrate_impact(pg_catalog.text, pg_catalog.text) IS
'migrate_impact with the options of migrate_apply and of the impact policy (max_lock=, no_rewrite=, max_size=): the policy column says what the policy refuses';

-- migrate_validate with the impact policy's options: each statement the
-- policy refuses is a problem of kind policy.
CREATE FUNCTION @extschema@.migrate_validate(path pg_catalog.text, options pg_catalog.text)
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

COMMENT ON FUNCTION @extschema@.migrate_validate(pg_catalog.text, pg_catalog.text) IS
'migrate_validate with the impact policy''s options (max_lock=, no_rewrite=, max_size=): each statement the policy refuses is a problem of kind policy';

-- What an off-hours script of flagged migrations calls after recording one
-- ahead of older pending migrations; only for the row its own transaction
-- recorded, under the migration lock.
CREATE FUNCTION @extschema@.migrate_script_ahead(version pg_catalog.text)
RETURNS pg_catalog.void
AS 'MODULE_PATHNAME', 'migrate_script_ahead'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_script_ahead(pg_catalog.text) IS
'called by a script of migrate_script only=flagged: marks the migration it just recorded as recorded ahead of older pending ones';

-- They read server files (impact, validate) or write the history (ahead).
REVOKE ALL ON FUNCTION @extschema@.migrate_impact(pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_impact(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_validate(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_script_ahead(pg_catalog.text) FROM PUBLIC;

-- The same for the folder as data (archive or JSON object): they read no
-- server file, so the database's owner may call them.

CREATE FUNCTION @extschema@.migrate_impact(archive pg_catalog.bytea, options pg_catalog.text DEFAULT NULL)
RETURNS TABLE (
	version				pg_catalog.text,
	file				pg_catalog.text,
	line				pg_catalog.int4,
	statement			pg_catalog.text,
	relation			pg_catalog.text,
	lock_mode			pg_catalog.text,
	rewrites			pg_catalog.bool,
	scans				pg_catalog.bool,
	relation_bytes		pg_catalog.int8,
	relation_rows		pg_catalog.int8,
	blocked_by			pg_catalog.text,
	advice				pg_catalog.text,
	policy				pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_impact'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_impact(pg_catalog.bytea, pg_catalog.text) IS
'migrate_impact of the folder sent as an archive (tar, tar.gz or zip)';

REVOKE ALL ON FUNCTION @extschema@.migrate_impact(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_impact(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_validate(archive pg_catalog.bytea, options pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	file				pg_catalog.text,
	problem				pg_catalog.text,
	severity			pg_catalog.text,
	sqlstate			pg_catalog.text,
	message				pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_validate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_validate(pg_catalog.bytea, pg_catalog.text) IS
'migrate_validate of the folder sent as an archive (tar, tar.gz or zip), with the impact policy''s options';

REVOKE ALL ON FUNCTION @extschema@.migrate_validate(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_validate(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_impact(files pg_catalog.jsonb, options pg_catalog.text DEFAULT NULL)
RETURNS TABLE (
	version				pg_catalog.text,
	file				pg_catalog.text,
	line				pg_catalog.int4,
	statement			pg_catalog.text,
	relation			pg_catalog.text,
	lock_mode			pg_catalog.text,
	rewrites			pg_catalog.bool,
	scans				pg_catalog.bool,
	relation_bytes		pg_catalog.int8,
	relation_rows		pg_catalog.int8,
	blocked_by			pg_catalog.text,
	advice				pg_catalog.text,
	policy				pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_impact'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_impact(pg_catalog.jsonb, pg_catalog.text) IS
'migrate_impact of the folder sent as a JSON object of file names and texts';

REVOKE ALL ON FUNCTION @extschema@.migrate_impact(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_impact(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

CREATE FUNCTION @extschema@.migrate_validate(files pg_catalog.jsonb, options pg_catalog.text)
RETURNS TABLE (
	version				pg_catalog.text,
	file				pg_catalog.text,
	problem				pg_catalog.text,
	severity			pg_catalog.text,
	sqlstate			pg_catalog.text,
	message				pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_validate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_validate(pg_catalog.jsonb, pg_catalog.text) IS
'migrate_validate of the folder sent as a JSON object of file names and texts, with the impact policy''s options';

REVOKE ALL ON FUNCTION @extschema@.migrate_validate(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_validate(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;

-- An off-hours script run by the database's owner marks what it recorded,
-- as migrate_script_record lets it record.
GRANT EXECUTE ON FUNCTION @extschema@.migrate_script_ahead(pg_catalog.text) TO pg_database_owner;

-- ---- tenants: one folder, many schemas, a history each (issue 22) ----

-- A tenant is a schema, named by its name: the option schema=S of every
-- function, and the tenants of migrate_apply_each, migrate_run_each and
-- migrate_status_each.  Its migrations run with search_path set to S, its
-- history, progress, audit, no-op digest and call log rows are its own
-- (tenant = 'S'), and it has a migration lock of its own.  '' is no tenant:
-- the history of the calls without schema=, as before.  A tenant is its
-- name: rows stay with the name when the schema is renamed or dropped
-- (docs/tenants.md says how to move them).
ALTER TABLE @extschema@.migrate_history
	ADD COLUMN tenant pg_catalog.text NOT NULL DEFAULT '';
ALTER TABLE @extschema@.migrate_history
	DROP CONSTRAINT migrate_history_version_key,
	ADD CONSTRAINT migrate_history_tenant_version_key UNIQUE (tenant, version);

ALTER TABLE @extschema@.migrate_progress
	ADD COLUMN tenant pg_catalog.text NOT NULL DEFAULT '';
ALTER TABLE @extschema@.migrate_progress
	DROP CONSTRAINT migrate_progress_pkey,
	ADD CONSTRAINT migrate_progress_pkey PRIMARY KEY (tenant, version);

ALTER TABLE @extschema@.migrate_repairs
	ADD COLUMN tenant pg_catalog.text NOT NULL DEFAULT '';

-- A digest per tenant (0.2 kept one row in all); not unique: two no-op
-- calls of one tenant may store theirs at once, as before.
ALTER TABLE @extschema@.migrate_verified
	ADD COLUMN tenant pg_catalog.text NOT NULL DEFAULT '';
CREATE INDEX migrate_verified_tenant ON @extschema@.migrate_verified (tenant);

ALTER TABLE @extschema@.migrate_calls
	ADD COLUMN tenant pg_catalog.text NOT NULL DEFAULT '';
CREATE INDEX migrate_calls_tenant ON @extschema@.migrate_calls (tenant, id);

-- The history's change counter, per row: a write to a tenant's rows takes
-- that tenant's lock (a hand edit waits for a running migration of it, and
-- makes one wait), and the extension's own writes, made under that lock,
-- drop the tenant's digest themselves (pg_history.c) rather than count in
-- the sequence, which would turn off the shortcut of every other tenant.
-- TRUNCATE, which has no rows, takes the lock of every tenant in the
-- table.
DROP TRIGGER migrate_history_changed ON @extschema@.migrate_history;
CREATE TRIGGER migrate_history_changed
	BEFORE INSERT OR UPDATE OR DELETE ON @extschema@.migrate_history
	FOR EACH ROW EXECUTE FUNCTION @extschema@.migrate_history_changed();
CREATE TRIGGER migrate_history_truncated
	BEFORE TRUNCATE ON @extschema@.migrate_history
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.migrate_history_changed();
ALTER TABLE @extschema@.migrate_history ENABLE ALWAYS TRIGGER migrate_history_changed;
ALTER TABLE @extschema@.migrate_history ENABLE ALWAYS TRIGGER migrate_history_truncated;

-- The options of a tenant on the functions that took none (migrate_validate
-- has them already: the impact section above).
CREATE FUNCTION @extschema@.migrate_status(path pg_catalog.text, options pg_catalog.text)
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
	has_down			pg_catalog.bool,
	down				pg_catalog.text,
	statements_done		pg_catalog.int8,
	last_error			pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_status(archive pg_catalog.bytea, options pg_catalog.text)
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
	has_down			pg_catalog.bool,
	down				pg_catalog.text,
	statements_done		pg_catalog.int8,
	last_error			pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_status(files pg_catalog.jsonb, options pg_catalog.text)
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
	has_down			pg_catalog.bool,
	down				pg_catalog.text,
	statements_done		pg_catalog.int8,
	last_error			pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_down(n pg_catalog.int8, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_down'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_down_to(version pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_down_to'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE PROCEDURE @extschema@.migrate_run_down(n pg_catalog.int8, options pg_catalog.text)
AS 'MODULE_PATHNAME', 'migrate_run_down'
LANGUAGE C;

CREATE FUNCTION @extschema@.migrate_baseline(path pg_catalog.text, version pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_baseline'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_baseline(archive pg_catalog.bytea, version pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_baseline'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_baseline(files pg_catalog.jsonb, version pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_baseline'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_record(path pg_catalog.text, version pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_record'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_record(archive pg_catalog.bytea, version pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_record'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_record(files pg_catalog.jsonb, version pg_catalog.text, options pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_record'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_lock_holder(options pg_catalog.text)
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

COMMENT ON FUNCTION @extschema@.migrate_status(pg_catalog.text, pg_catalog.text) IS
'migrate_status of tenant schema=S';
COMMENT ON FUNCTION @extschema@.migrate_down(pg_catalog.int8, pg_catalog.text) IS
'migrate_down of tenant schema=S';
COMMENT ON FUNCTION @extschema@.migrate_down_to(pg_catalog.text, pg_catalog.text) IS
'migrate_down_to of tenant schema=S';
COMMENT ON PROCEDURE @extschema@.migrate_run_down(pg_catalog.int8, pg_catalog.text) IS
'migrate_run_down of tenant schema=S';
COMMENT ON FUNCTION @extschema@.migrate_baseline(pg_catalog.text, pg_catalog.text, pg_catalog.text) IS
'migrate_baseline of tenant schema=S';
COMMENT ON FUNCTION @extschema@.migrate_record(pg_catalog.text, pg_catalog.text, pg_catalog.text) IS
'migrate_record of tenant schema=S';
COMMENT ON FUNCTION @extschema@.migrate_lock_holder(pg_catalog.text) IS
'the session holding the migration lock of tenant schema=S';

-- As for the functions they fan out: the path forms read server files
-- (superuser or pg_read_server_files, checked in C); the data forms and
-- the rollbacks go to the database's owner.
REVOKE ALL ON FUNCTION @extschema@.migrate_status(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_status(pg_catalog.bytea, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_status(pg_catalog.jsonb, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_down(pg_catalog.int8, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_down_to(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.migrate_run_down(pg_catalog.int8, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_baseline(pg_catalog.text, pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_baseline(pg_catalog.bytea, pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_baseline(pg_catalog.jsonb, pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_record(pg_catalog.text, pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_record(pg_catalog.bytea, pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_record(pg_catalog.jsonb, pg_catalog.text, pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_lock_holder(pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_status(pg_catalog.bytea, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_status(pg_catalog.jsonb, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_down(pg_catalog.int8, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_down_to(pg_catalog.text, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON PROCEDURE @extschema@.migrate_run_down(pg_catalog.int8, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_baseline(pg_catalog.bytea, pg_catalog.text, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_baseline(pg_catalog.jsonb, pg_catalog.text, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_record(pg_catalog.bytea, pg_catalog.text, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_record(pg_catalog.jsonb, pg_catalog.text, pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_lock_holder(pg_catalog.text) TO pg_database_owner;

-- ---- the fan-out: every tenant, exactly once each ----

-- A row per tenant of migrate_apply_each.  status: applied, up_to_date, failed, skipped_locked
-- (if_locked=skip found another caller at it), not_reached (after a stop).
CREATE TYPE @extschema@.migrate_each_result AS (
	tenant		pg_catalog.text,
	applied		pg_catalog.int4,
	status		pg_catalog.text,
	sqlstate	pg_catalog.text,
	error		pg_catalog.text
);

CREATE FUNCTION @extschema@.migrate_apply_each(path pg_catalog.text, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL)
RETURNS SETOF @extschema@.migrate_each_result
AS 'MODULE_PATHNAME', 'migrate_apply_each'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_apply_each(archive pg_catalog.bytea, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL)
RETURNS SETOF @extschema@.migrate_each_result
AS 'MODULE_PATHNAME', 'migrate_apply_each'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_apply_each(files pg_catalog.jsonb, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL)
RETURNS SETOF @extschema@.migrate_each_result
AS 'MODULE_PATHNAME', 'migrate_apply_each'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Where every tenant stands, without taking a lock.  state: up_to_date,
-- pending, partial (a migration stopped half way outside a transaction),
-- changed (an applied file changed, is missing, or a pending one is out of
-- order: apply refuses), error (the tenant cannot be read: its schema is
-- gone, say; message says why).
CREATE FUNCTION @extschema@.migrate_status_each(path pg_catalog.text, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL)
RETURNS TABLE (
	tenant		pg_catalog.text,
	applied		pg_catalog.int4,
	pending		pg_catalog.int4,
	newest		pg_catalog.text,
	state		pg_catalog.text,
	message		pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status_each'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_status_each(archive pg_catalog.bytea, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL)
RETURNS TABLE (
	tenant		pg_catalog.text,
	applied		pg_catalog.int4,
	pending		pg_catalog.int4,
	newest		pg_catalog.text,
	state		pg_catalog.text,
	message		pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status_each'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION @extschema@.migrate_status_each(files pg_catalog.jsonb, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL)
RETURNS TABLE (
	tenant		pg_catalog.text,
	applied		pg_catalog.int4,
	pending		pg_catalog.int4,
	newest		pg_catalog.text,
	state		pg_catalog.text,
	message		pg_catalog.text
)
AS 'MODULE_PATHNAME', 'migrate_status_each'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_apply_each(pg_catalog.text, pg_catalog.text[], pg_catalog.text) IS
'applies a server folder to every tenant schema, in the caller''s transaction, each tenant in a subtransaction of its own: a row per tenant (applied, up_to_date, failed, skipped_locked, not_reached); options on_error=stop|continue, canary=N and those of migrate_apply';
COMMENT ON FUNCTION @extschema@.migrate_apply_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text) IS
'migrate_apply_each of the folder sent as an archive (tar, tar.gz or zip)';
COMMENT ON FUNCTION @extschema@.migrate_apply_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text) IS
'migrate_apply_each of the folder sent as a JSON object of file names and texts';
COMMENT ON FUNCTION @extschema@.migrate_status_each(pg_catalog.text, pg_catalog.text[], pg_catalog.text) IS
'where every tenant schema stands against a server folder, one row each; takes no lock, changes nothing';
COMMENT ON FUNCTION @extschema@.migrate_status_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text) IS
'migrate_status_each of the folder sent as an archive (tar, tar.gz or zip)';
COMMENT ON FUNCTION @extschema@.migrate_status_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text) IS
'migrate_status_each of the folder sent as a JSON object of file names and texts';

-- As for the functions they fan out: the path forms read server files
-- (superuser or pg_read_server_files, checked in C); the data forms go to
-- the database's owner.  Each tenant's rights are checked as the caller's.
REVOKE ALL ON FUNCTION @extschema@.migrate_apply_each(pg_catalog.text, pg_catalog.text[], pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_apply_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_apply_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_status_each(pg_catalog.text, pg_catalog.text[], pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_status_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.migrate_status_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_apply_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_apply_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_status_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text) TO pg_database_owner;
GRANT EXECUTE ON FUNCTION @extschema@.migrate_status_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text) TO pg_database_owner;

-- CALL migrate_run(source, 'schema=<tenant>, <options>') for each tenant in
-- turn: committing after each migration, migrations outside a transaction
-- allowed, each tenant's failure caught (rolled back to its last commit).
-- A procedure returns no set: the row of each tenant comes back in the
-- output parameter results, a jsonb array of {tenant, applied, status,
-- sqlstate, error} (jsonb_to_recordset makes rows of it), and in
-- migrate_calls (function 'migrate_run_each', a row per tenant that ran).
CREATE PROCEDURE @extschema@.migrate_run_each(path pg_catalog.text, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL, INOUT results pg_catalog.jsonb DEFAULT NULL)
AS 'MODULE_PATHNAME', 'migrate_run_each'
LANGUAGE C;

CREATE PROCEDURE @extschema@.migrate_run_each(archive pg_catalog.bytea, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL, INOUT results pg_catalog.jsonb DEFAULT NULL)
AS 'MODULE_PATHNAME', 'migrate_run_each'
LANGUAGE C;

CREATE PROCEDURE @extschema@.migrate_run_each(files pg_catalog.jsonb, tenants pg_catalog.text[],
	options pg_catalog.text DEFAULT NULL, INOUT results pg_catalog.jsonb DEFAULT NULL)
AS 'MODULE_PATHNAME', 'migrate_run_each'
LANGUAGE C;

COMMENT ON PROCEDURE @extschema@.migrate_run_each(pg_catalog.text, pg_catalog.text[], pg_catalog.text, pg_catalog.jsonb) IS
'CALL migrate_run for every tenant schema in turn, committing after each migration; results: a jsonb array of {tenant, applied, status, sqlstate, error}; options on_error=stop|continue, canary=N, parallel=N (N background workers, a transaction per tenant) and those of migrate_run; call it outside a transaction block';
COMMENT ON PROCEDURE @extschema@.migrate_run_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text, pg_catalog.jsonb) IS
'migrate_run_each of the folder sent as an archive (tar, tar.gz or zip)';
COMMENT ON PROCEDURE @extschema@.migrate_run_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text, pg_catalog.jsonb) IS
'migrate_run_each of the folder sent as a JSON object of file names and texts';

REVOKE ALL ON PROCEDURE @extschema@.migrate_run_each(pg_catalog.text, pg_catalog.text[], pg_catalog.text, pg_catalog.jsonb) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.migrate_run_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text, pg_catalog.jsonb) FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.migrate_run_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text, pg_catalog.jsonb) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.migrate_run_each(pg_catalog.bytea, pg_catalog.text[], pg_catalog.text, pg_catalog.jsonb) TO pg_database_owner;
GRANT EXECUTE ON PROCEDURE @extschema@.migrate_run_each(pg_catalog.jsonb, pg_catalog.text[], pg_catalog.text, pg_catalog.jsonb) TO pg_database_owner;
