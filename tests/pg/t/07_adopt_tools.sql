-- tests/pg/t/07_adopt_tools.sql -- migrate_adopt on PostgreSQL for each
-- tool: its history table as the tool defines it on PostgreSQL, with
-- realistic rows, and the schema its applied migrations made; adopt, check
-- our history and that the other table is untouched, then migrate_apply
-- applies exactly the rest.  Folders: tests/pg/fixtures.sh, adopt_fixtures.
BEGIN;
SELECT plan(80);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;
CREATE FUNCTION pg_temp.reset() RETURNS void LANGUAGE sql
AS $$ DELETE FROM migrate_history $$;
CREATE FUNCTION pg_temp.versions() RETURNS text[] LANGUAGE sql
AS $$ SELECT coalesce(array_agg(version ORDER BY installed_rank), '{}') FROM migrate_history $$;
-- Flyway's checksum of a file of ad_flyway, computed by fixtures.sh
CREATE FUNCTION pg_temp.flyway_sum(file text) RETURNS int LANGUAGE sql
AS $$ SELECT btrim(pg_read_file(pg_temp.fx('flyway_sums/ad_flyway/' || file)), E' \n')::int $$;
-- the whole content of a table, as text
CREATE FUNCTION pg_temp.snap(tbl text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	EXECUTE format('SELECT string_agg(t::text, %L ORDER BY t::text) FROM %I t', ' | ', tbl) INTO s;
	RETURN s;
END $$;

-- adopt_then_apply FOLDER TABLE ADOPTED REST VERSIONS (7 tests), then
-- drops TABLE and clears our history for the next tool
CREATE FUNCTION pg_temp.adopt_then_apply(folder text, tbl text, adopted int, rest int, versions text[],
                                         drop_after boolean DEFAULT true)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	before text := pg_temp.snap(tbl);
BEGIN
	RETURN NEXT is(migrate_adopt(pg_temp.fx(folder)), adopted::bigint,
	               folder || ': migrate_adopt takes over ' || adopted);
	RETURN NEXT is(pg_temp.snap(tbl), before, folder || ': ' || tbl || ' is left as it was');
	RETURN NEXT is(pg_temp.versions(), versions[1:adopted], folder || ': migrate_history holds the adopted versions');
	RETURN NEXT is(migrate_apply(pg_temp.fx(folder)), rest::bigint,
	               folder || ': migrate_apply applies exactly the rest');
	RETURN NEXT is(pg_temp.versions(), versions, folder || ': history holds every version in order');
	RETURN NEXT is((SELECT array_agg(DISTINCT state) FROM migrate_status(pg_temp.fx(folder))), '{applied}',
	               folder || ': migrate_status says applied for each');
	RETURN NEXT throws_ok(format('SELECT migrate_adopt(%L)', pg_temp.fx(folder)), '55000', NULL,
	                      folder || ': a second migrate_adopt is refused');
	IF drop_after THEN
		EXECUTE format('DROP TABLE %I', tbl);
		PERFORM pg_temp.reset();
	END IF;
END $$;

-- Flyway
CREATE TABLE flyway_schema_history (
	installed_rank integer NOT NULL,
	version varchar(50),
	description varchar(200) NOT NULL,
	type varchar(20) NOT NULL,
	script varchar(1000) NOT NULL,
	checksum integer,
	installed_by varchar(100) NOT NULL,
	installed_on timestamp NOT NULL DEFAULT now(),
	execution_time integer NOT NULL,
	success boolean NOT NULL,
	CONSTRAINT flyway_schema_history_pk PRIMARY KEY (installed_rank)
);
CREATE INDEX flyway_schema_history_s_idx ON flyway_schema_history (success);
INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum,
                                   installed_by, execution_time, success)
VALUES (1, '1', 'create users', 'SQL', 'V1__create_users.sql', pg_temp.flyway_sum('V1__create_users.sql'),
        'app', 12, true),
       (2, '1.1', 'seed', 'SQL', 'V1_1__seed.sql', pg_temp.flyway_sum('V1_1__seed.sql'), 'app', 3, true);
CREATE TABLE af_users (id int PRIMARY KEY, name text);
INSERT INTO af_users VALUES (1, 'ann');

SELECT throws_like(format('SELECT migrate_adopt(%L)', pg_temp.fx('ad_flyway_changed')),
                   '%1 file changed since Flyway applied it%',
                   'Flyway: a file whose checksum differs from the recorded one is refused');
SELECT is(migrate_adopt(pg_temp.fx('ad_flyway_crlf')), 2::bigint,
          'Flyway: CRLF instead of LF keeps the checksum, as in Flyway');
SELECT pg_temp.reset();
SELECT * FROM pg_temp.adopt_then_apply('ad_flyway', 'flyway_schema_history', 2, 1, '{1,1.1,2}', false);
SELECT is((SELECT down_sql FROM migrate_history WHERE version = '1.1'), E'DELETE FROM af_users;\n',
          'Flyway: the undo file is the adopted down script');
SELECT is(migrate_down(2), 2::bigint, 'Flyway: the adopted migration rolls back');
SELECT is((SELECT count(*)::int FROM af_users), 0, 'Flyway: its undo script ran');
SELECT pg_temp.reset();

INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum,
                                   installed_by, execution_time, success)
VALUES (3, '2', 'posts', 'SQL', 'V2__posts.sql', pg_temp.flyway_sum('V2__posts.sql'), 'app', 1, false);
SELECT throws_like(format('SELECT migrate_adopt(%L)', pg_temp.fx('ad_flyway')),
                   '%Flyway recorded a failed migration (version 2)%', 'Flyway: a failed row is refused');
SELECT is(pg_temp.versions(), '{}', 'Flyway: and nothing was adopted');

DELETE FROM flyway_schema_history;
INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum,
                                   installed_by, execution_time, success)
VALUES (1, '1.1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'app', 0, true);
SELECT * FROM pg_temp.adopt_then_apply('ad_flyway', 'flyway_schema_history', 2, 1, '{1,1.1,2}');

-- golang-migrate
CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
INSERT INTO schema_migrations VALUES (2, true);
SELECT throws_like(format('SELECT migrate_adopt(%L)', pg_temp.fx('ad_golang')),
                   '%golang-migrate marked version 2 dirty%', 'golang-migrate: a dirty version is refused');
UPDATE schema_migrations SET dirty = false;
CREATE TABLE ag_users (id int PRIMARY KEY);
CREATE TABLE ag_posts (id int PRIMARY KEY);
SELECT * FROM pg_temp.adopt_then_apply('ad_golang', 'schema_migrations', 2, 1, '{1,2,3}');

-- morph
CREATE TABLE db_migrations (version bigint NOT NULL PRIMARY KEY, name varchar(64) NOT NULL);
INSERT INTO db_migrations VALUES (1, 'a'), (2, 'b');
CREATE TABLE am_a (x int);
CREATE TABLE am_b (x int);
SELECT * FROM pg_temp.adopt_then_apply('ad_morph', 'db_migrations', 2, 1, '{1,2,3}');

-- dbmate
CREATE TABLE schema_migrations (version varchar(128) NOT NULL PRIMARY KEY);
INSERT INTO schema_migrations VALUES ('20240101120000');
CREATE TABLE ad_a (x int);
SELECT * FROM pg_temp.adopt_then_apply('ad_dbmate', 'schema_migrations', 1, 1,
                                       '{20240101120000,20240102120000}', false);
SELECT is((SELECT down_sql FROM migrate_history WHERE version = '20240101120000'), E'DROP TABLE ad_a;\n',
          'dbmate: the adopted migration has its down section');
DROP TABLE schema_migrations;
SELECT pg_temp.reset();

-- goose: version 3 applied, then rolled back
CREATE TABLE goose_db_version (id serial NOT NULL PRIMARY KEY, version_id bigint NOT NULL,
                               is_applied boolean NOT NULL, tstamp timestamp NULL DEFAULT now());
INSERT INTO goose_db_version (version_id, is_applied)
VALUES (0, true), (1, true), (2, true), (3, true), (3, false);
CREATE TABLE ao_a (x int);
CREATE TABLE ao_b (x int);
SELECT * FROM pg_temp.adopt_then_apply('ad_goose', 'goose_db_version', 2, 1, '{1,2,3}');

-- sqlx
CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,
                               installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL,
                               checksum bytea NOT NULL, execution_time bigint NOT NULL);
INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
VALUES (20210422143411, 'a', true, sha384(E'CREATE TABLE as_a (x int);\n'::bytea), 5123456);
CREATE TABLE as_a (x int);
SELECT * FROM pg_temp.adopt_then_apply('ad_sqlx', '_sqlx_migrations', 1, 1, '{20210422143411,20210422143412}');

-- diesel
CREATE TABLE __diesel_schema_migrations (version varchar(50) PRIMARY KEY NOT NULL,
                                         run_on timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP);
INSERT INTO __diesel_schema_migrations (version) VALUES ('20180114171611');
CREATE TABLE ae_a (x int);
SELECT * FROM pg_temp.adopt_then_apply('ad_diesel', '__diesel_schema_migrations', 1, 1,
                                       '{20180114171611,20180115000000}');

-- goose recorded the version of a Go migration it ran: a file of the
-- folder, adopted without SQL
CREATE TABLE goose_db_version (id serial NOT NULL PRIMARY KEY, version_id bigint NOT NULL,
                               is_applied boolean NOT NULL, tstamp timestamp NULL DEFAULT now());
INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true);
CREATE TABLE aog_a (x int);
SELECT * FROM pg_temp.adopt_then_apply('ad_goose_go', 'goose_db_version', 2, 1, '{1,2,3}', false);
SELECT is((SELECT up_file || ' ' || up_sql || ' ' || coalesce(down_sql, '(no down)')
           FROM migrate_history WHERE version = '2'), '00002_b.go  (no down)',
          'goose: the Go migration is adopted without SQL');
DROP TABLE goose_db_version;
SELECT pg_temp.reset();

-- diesel ran 00000000000000 and 2024-03-06-170000; 2024-03-13_170000
-- (version 20240313, the smaller number) comes after them in its order
CREATE TABLE __diesel_schema_migrations (version varchar(50) PRIMARY KEY NOT NULL,
                                         run_on timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP);
INSERT INTO __diesel_schema_migrations (version) VALUES ('00000000000000'), ('20240306170000');
CREATE TABLE aet_setup (x int);
CREATE TABLE aet_users (id int PRIMARY KEY);
SELECT * FROM pg_temp.adopt_then_apply('ad_diesel_text', '__diesel_schema_migrations', 2, 1,
                                       '{0,20240306170000,20240313}');

SELECT * FROM finish();
ROLLBACK;
