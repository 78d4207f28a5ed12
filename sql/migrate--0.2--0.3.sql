/* sql/migrate--0.2--0.3.sql -- the migrate extension from 0.2 to 0.3.
 * CREATE EXTENSION migrate runs 0.1, 0.1--0.2, then this. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION migrate UPDATE TO '0.3'" to load this file. \quit

-- ---- migrate_record: a migration that ran elsewhere ----

-- What each audit row of migrate_repairs is: 'repair' (migrate_repair
-- brought an applied migration's row in line with its edited file) or
-- 'record' (migrate_record recorded a pending migration as applied without
-- running it; old_checksum is NULL).
ALTER TABLE @extschema@.migrate_repairs
	ADD COLUMN action pg_catalog.text NOT NULL DEFAULT 'repair'
	CHECK (action OPERATOR(pg_catalog.=) ANY (ARRAY['repair', 'record']::pg_catalog.text[]));

COMMENT ON TABLE @extschema@.migrate_repairs IS
'audit of migrate_repair (history rows brought in line with edited migration files) and migrate_record (migrations recorded as applied without running them)';

CREATE FUNCTION @extschema@.migrate_record(path pg_catalog.text, version pg_catalog.text)
RETURNS pg_catalog.int8
AS 'MODULE_PATHNAME', 'migrate_record'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.migrate_record(pg_catalog.text, pg_catalog.text) IS
'records the next pending migration of a server folder, which ran elsewhere (a goose Go migration run by the application), as applied without running it, with an audit row in migrate_repairs; returns 1';

-- It reads server files and writes the history: as migrate_repair.
REVOKE ALL ON FUNCTION @extschema@.migrate_record(pg_catalog.text, pg_catalog.text) FROM PUBLIC;
