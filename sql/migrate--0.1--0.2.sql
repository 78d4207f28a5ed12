/* sql/migrate--0.1--0.2.sql -- the migrate extension from 0.1 to 0.2: the
 * no-op shortcut.  CREATE EXTENSION migrate runs 0.1, then this. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION migrate UPDATE TO '0.2'" to load this file. \quit

-- Counts changes to migrate_history: the trigger below takes a number
-- before any statement that writes to it.  A sequence, because its value
-- is seen at once by every session, whatever their snapshots.
CREATE SEQUENCE @extschema@.migrate_history_gen;

REVOKE ALL ON SEQUENCE @extschema@.migrate_history_gen FROM PUBLIC;

-- The digest of the last folder that migrate_apply found fully applied
-- (each migration's file names and up file identity), the count of history
-- changes it was checked against, and the xmin of the pg_trigger row of the
-- trigger that counts them (disabling it and enabling it again writes a
-- new row).  While both stand, a call on a folder with the same digest has
-- nothing to do and does not read the history.  Not kept by pg_dump: a
-- restored database checks in full once.
CREATE TABLE @extschema@.migrate_verified (
	digest			pg_catalog.text NOT NULL,
	history_gen		pg_catalog.int8 NOT NULL,
	trigger_xmin	pg_catalog.xid NOT NULL,
	verified_at		pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE @extschema@.migrate_verified IS
'the last migration folder found fully applied, for migrate_apply to skip reading the history while it stays unchanged';

REVOKE ALL ON TABLE @extschema@.migrate_verified FROM PUBLIC;

-- Before a statement writes to the history, by anyone: takes the migration
-- lock (so a hand edit waits for a running migrate_apply, and one that has
-- started makes migrate_apply wait until it commits) and counts the change
-- in migrate_history_gen.
CREATE FUNCTION @extschema@.migrate_history_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'migrate_history_changed'
LANGUAGE C;

REVOKE ALL ON FUNCTION @extschema@.migrate_history_changed() FROM PUBLIC;

CREATE TRIGGER migrate_history_changed
	BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.migrate_history
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.migrate_history_changed();

-- Also when changes arrive by logical replication (session_replication_role
-- replica), which fires only triggers enabled ALWAYS.
ALTER TABLE @extschema@.migrate_history ENABLE ALWAYS TRIGGER migrate_history_changed;
