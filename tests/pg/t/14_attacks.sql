-- tests/pg/t/14_attacks.sql -- the attack catalogue, PostgreSQL part: what
-- a less privileged role could plant so that a superuser's (or another
-- role's) call of a migrate function runs its code with the caller's
-- rights, or writes history that a later call trusts.  Each case plants,
-- calls, and checks that nothing ran with the caller's rights (the planted
-- function would make its owner superuser) and nothing was recorded.
-- The SQLite part is tests/sqlite/test_attacks.py; the background
-- worker's login is in run.sh (outside a transaction).
BEGIN;
SELECT plan(28);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;
CREATE FUNCTION pg_temp.super(r text) RETURNS boolean LANGUAGE sql
AS $$ SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = r $$;
CREATE TEMP TABLE paths AS
	SELECT pg_temp.fx('att_flyway') AS flyway, pg_temp.fx('att_evil_down') AS evil,
	       pg_temp.fx('att_plain') AS plain;
GRANT SELECT ON paths TO PUBLIC;

-- A database user who is not superuser: it owns objects in public and
-- writes a function that makes it superuser when a superuser runs it.
CREATE ROLE att_owner;
GRANT CREATE ON SCHEMA public TO att_owner;
SET ROLE att_owner;
CREATE FUNCTION public.att_evil(v text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	ALTER ROLE att_owner SUPERUSER;
	RETURN v;
END $$;
CREATE TABLE public.att_fsh (installed_rank int, version text, description text, type text,
	script text, checksum int, installed_by text, installed_on timestamp,
	execution_time int, success boolean);
INSERT INTO public.att_fsh VALUES (1, '1', 'one', 'SQL', 'V1__one.sql', NULL, 'x', now(), 1, true);
RESET ROLE;

-- ---- 1. migrate_adopt reads only a plain table, never running its code ----

-- a view whose version column calls the function
SET ROLE att_owner;
CREATE VIEW public.flyway_schema_history AS
	SELECT installed_rank, public.att_evil(version) AS version, description, type, script,
	       checksum, installed_by, installed_on, execution_time, success
	  FROM public.att_fsh;
RESET ROLE;
SELECT throws_ok($$SELECT migrate_adopt((SELECT flyway FROM paths))$$, '42809',
                 '"public"."flyway_schema_history" is not a table migrate_adopt reads: it is a view',
                 'adopt: a view as the other tool''s table is refused');
SELECT ok(NOT pg_temp.super('att_owner'), 'adopt: and its function did not run as the caller');
SELECT is((SELECT count(*)::int FROM migrate_history), 0, 'adopt: nothing was recorded');

-- row level security with a policy that calls it
SET ROLE att_owner;
DROP VIEW public.flyway_schema_history;
CREATE TABLE public.flyway_schema_history (LIKE public.att_fsh);
INSERT INTO public.flyway_schema_history SELECT * FROM public.att_fsh;
ALTER TABLE public.flyway_schema_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON public.flyway_schema_history USING (public.att_evil(version) IS NOT NULL);
RESET ROLE;
SELECT throws_ok($$SELECT migrate_adopt((SELECT flyway FROM paths))$$, '42809',
                 '"public"."flyway_schema_history" is not a table migrate_adopt reads: it has row level security',
                 'adopt: a table with row level security is refused');
SELECT ok(NOT pg_temp.super('att_owner'), 'adopt: and its policy did not run');

-- a rule
SET ROLE att_owner;
ALTER TABLE public.flyway_schema_history DISABLE ROW LEVEL SECURITY;
DROP POLICY p ON public.flyway_schema_history;
CREATE RULE r AS ON INSERT TO public.flyway_schema_history DO ALSO SELECT public.att_evil('x');
RESET ROLE;
SELECT throws_ok($$SELECT migrate_adopt((SELECT flyway FROM paths))$$, '42809',
                 '"public"."flyway_schema_history" is not a table migrate_adopt reads: it has rules',
                 'adopt: a table with rules is refused');

-- a column of a type that is not built in (its cast or output could be
-- anybody's code)
SET ROLE att_owner;
DROP TABLE public.flyway_schema_history;	-- (relhasrules stays set until VACUUM)
CREATE DOMAIN public.att_text AS text;
CREATE TABLE public.flyway_schema_history (LIKE public.att_fsh);
ALTER TABLE public.flyway_schema_history ALTER COLUMN version TYPE public.att_text;
RESET ROLE;
SELECT throws_like($$SELECT migrate_adopt((SELECT flyway FROM paths))$$,
                   '%its column "version" has a type that is not built in%',
                   'adopt: a column of a type that is not built in is refused');

-- a partitioned table (its partitions could be anything) and a foreign
-- table (reading it runs its wrapper's code): refused before any read
SET ROLE att_owner;
DROP TABLE public.flyway_schema_history;
CREATE TABLE public.flyway_schema_history (LIKE public.att_fsh) PARTITION BY RANGE (installed_rank);
RESET ROLE;
SELECT throws_ok($$SELECT migrate_adopt((SELECT flyway FROM paths))$$, '42809',
                 '"public"."flyway_schema_history" is not a table migrate_adopt reads: it is not a plain table',
                 'adopt: a partitioned table is refused');
CREATE FOREIGN DATA WRAPPER att_fdw;
CREATE SERVER att_srv FOREIGN DATA WRAPPER att_fdw;
GRANT USAGE ON FOREIGN SERVER att_srv TO att_owner;
SET ROLE att_owner;
DROP TABLE public.flyway_schema_history;
CREATE FOREIGN TABLE public.flyway_schema_history (installed_rank int, version text) SERVER att_srv;
RESET ROLE;
SELECT throws_ok($$SELECT migrate_adopt((SELECT flyway FROM paths))$$, '42809',
                 '"public"."flyway_schema_history" is not a table migrate_adopt reads: it is a foreign table',
                 'adopt: a foreign table is refused');
SET ROLE att_owner;
DROP FOREIGN TABLE public.flyway_schema_history;
CREATE TABLE public.flyway_schema_history (LIKE public.att_fsh);
RESET ROLE;

-- shadowing through search_path: a table in a schema the caller searches
-- first is not the one read; public is, or the schema named
SET ROLE att_owner;
DROP TABLE public.flyway_schema_history;
RESET ROLE;
CREATE SCHEMA att_shadow AUTHORIZATION att_owner;
SET ROLE att_owner;
CREATE TABLE att_shadow.flyway_schema_history (LIKE public.att_fsh);
INSERT INTO att_shadow.flyway_schema_history SELECT * FROM public.att_fsh;
RESET ROLE;
SET LOCAL search_path = att_shadow, public;
SELECT throws_ok($$SELECT public.migrate_adopt((SELECT flyway FROM public.paths))$$, '42P01', NULL,
                 'adopt: a table found through the caller''s search_path is not read');
RESET search_path;
SELECT is(migrate_adopt((SELECT flyway FROM paths), 'schema=att_shadow'), 1::bigint,
          'adopt: schema= names where the table is; read as its owner, it adopts');
SELECT ok(NOT pg_temp.super('att_owner'), 'adopt: and nothing of att_owner''s ran as the caller');
DELETE FROM migrate_history;

-- ---- 2. the history is written only through the functions ----

CREATE ROLE att_deployer;
GRANT pg_read_server_files TO att_deployer;
GRANT EXECUTE ON FUNCTION migrate_apply(text), migrate_down(bigint), migrate_status(text)
	TO att_deployer;
GRANT SELECT ON paths TO att_deployer;
GRANT CREATE ON SCHEMA public TO att_deployer;

-- a write privilege granted on the history (as deploy set-ups of 0.2 did)
GRANT INSERT, UPDATE, DELETE ON migrate_history, migrate_progress, migrate_verified TO att_deployer;
SET ROLE att_deployer;
SELECT throws_ok($$INSERT INTO migrate_history (version, name, checksum, down_sql, applied_by)
                   VALUES ('9', 'x', 'c', 'ALTER ROLE att_deployer SUPERUSER', 'nobody')$$,
                 '42501', 'permission denied to write to migrate_history',
                 'history: a granted INSERT cannot plant a down script');
SELECT throws_ok($$INSERT INTO migrate_progress (version, done_checksum, next_offset, statements_done)
                   VALUES ('9', 'crc32:00000000', 0, 5)$$,
                 '42501', 'permission denied to write to migrate_progress',
                 'history: nor progress that a resume would trust');
SELECT throws_ok($$INSERT INTO migrate_verified (digest, history_gen, trigger_xmin) VALUES ('d', 0, '0')$$,
                 '42501', 'permission denied to write to migrate_verified',
                 'history: nor a no-op digest that would skip migrations');
RESET ROLE;
REVOKE INSERT, UPDATE, DELETE ON migrate_history, migrate_progress, migrate_verified FROM att_deployer;

-- the functions work with no grant on any of the extension's tables, and
-- record the calling role
SET ROLE att_deployer;
SELECT is(migrate_apply((SELECT evil FROM paths)), 1::bigint,
          'history: a deploy role with no table grant applies through the function');
RESET ROLE;
SELECT is((SELECT applied_by::text || '/' || down_by::text FROM migrate_history WHERE version = '1'),
          'att_deployer/att_deployer', 'history: applied_by and down_by are the calling role');
SELECT is((SELECT tableowner::text FROM pg_tables WHERE tablename = 'att_a'), 'att_deployer',
          'history: the migration ran with the caller''s rights, not the owner''s');

-- ---- 3. stored SQL never runs with more rights than its author had ----

-- the deploy role's down script would make it superuser: rolled back by a
-- superuser, it runs as the deploy role and fails
SELECT throws_ok($$SELECT migrate_down(1)$$, '42501', NULL,
                 'down: a superuser rolling back runs the stored down script with its author''s rights');
SELECT ok(NOT pg_temp.super('att_deployer'), 'down: and its author did not become superuser');
SELECT is((SELECT count(*)::int FROM migrate_history), 1, 'down: nothing was rolled back');
SELECT isnt((SELECT to_regclass('public.att_a')), NULL, 'down: att_a is still there');

-- a role cannot roll back what a role it is not a member of stored
DELETE FROM migrate_history;
DROP TABLE att_a;
SELECT is(migrate_apply((SELECT plain FROM paths)), 1::bigint, 'down: a superuser applies att_plain');
SET ROLE att_deployer;
SELECT throws_ok($$SELECT migrate_down(1)$$, '42501',
                 'permission denied to roll back migration 1',
                 'down: the deploy role may not run a down script stored by a superuser');
RESET ROLE;
SELECT isnt((SELECT to_regclass('public.att_p')), NULL, 'down: and it did not run');

-- a member of the author's role may (it has that role's rights anyway)
GRANT att_deployer TO att_owner;
UPDATE migrate_history SET down_by = 'att_deployer';	-- a superuser's hand edit
GRANT EXECUTE ON FUNCTION migrate_down(bigint) TO att_owner;
ALTER TABLE att_p OWNER TO att_deployer;
SET ROLE att_owner;
SELECT is(migrate_down(1), 1::bigint, 'down: a member of the author''s role rolls back');
RESET ROLE;
SELECT is((SELECT to_regclass('public.att_p')), NULL, 'down: as the author');

-- the guard lets a superuser's hand edit through (superusers can do
-- anything), and only that
SELECT lives_ok($$UPDATE migrate_history SET name = name$$, 'guard: a superuser may still edit by hand');

SELECT * FROM finish();
ROLLBACK;
