-- tests/pg/t/06_layouts_pg.sql -- every layout on PostgreSQL (golang-migrate,
-- Flyway, diesel, dbmate, goose, sqlx simple): apply, migrate_status, roll
-- everything back, apply again, with fixtures (tests/pg/fixtures.sh,
-- layout_fixtures) holding dollar-quoted bodies ($$ and $tag$) with
-- semicolons inside, DO blocks, semicolons and quotes in comments, files
-- without a final newline, empty and comment-only downs, and CRLF.
BEGIN;
SELECT plan(107);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;
CREATE FUNCTION pg_temp.reset() RETURNS void LANGUAGE sql
AS $$ DELETE FROM migrate_history $$;
CREATE FUNCTION pg_temp.versions() RETURNS text[] LANGUAGE sql
AS $$ SELECT coalesce(array_agg(version ORDER BY installed_rank), '{}') FROM migrate_history $$;
-- every object named (a relation or a function) exists, or none does
CREATE FUNCTION pg_temp.all_exist(objs text[]) RETURNS boolean LANGUAGE sql
AS $$ SELECT bool_and(to_regclass(o) IS NOT NULL OR to_regproc(o) IS NOT NULL) FROM unnest(objs) o $$;
CREATE FUNCTION pg_temp.none_exist(objs text[]) RETURNS boolean LANGUAGE sql
AS $$ SELECT bool_and(to_regclass(o) IS NULL AND to_regproc(o) IS NULL) FROM unnest(objs) o $$;

-- up FOLDER VERSIONS: apply applies them all, in order; status says applied (3 tests)
CREATE FUNCTION pg_temp.up(folder text, versions text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
	RETURN NEXT is(migrate_apply(pg_temp.fx(folder)), cardinality(versions)::bigint,
	               folder || ': migrate_apply applies every migration');
	RETURN NEXT is(pg_temp.versions(), versions, folder || ': history holds the versions in order');
	RETURN NEXT is((SELECT array_agg(s.version || '=' || s.state ORDER BY s.installed_rank)
	                FROM migrate_status(pg_temp.fx(folder)) s),
	               (SELECT array_agg(v || '=applied') FROM unnest(versions) v),
	               folder || ': migrate_status says applied for each');
END $$;

-- down_up FOLDER N OBJECTS: roll all N back, the objects go; apply again,
-- they come back; then clear the history for the next folder (5 tests)
CREATE FUNCTION pg_temp.down_up(folder text, n int, objs text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
	RETURN NEXT is(migrate_down(n), n::bigint, folder || ': migrate_down rolls every migration back');
	RETURN NEXT is(pg_temp.versions(), '{}'::text[], folder || ': the history is empty');
	RETURN NEXT ok(pg_temp.none_exist(objs), folder || ': the down scripts dropped everything');
	RETURN NEXT is(migrate_apply(pg_temp.fx(folder)), n::bigint, folder || ': applies again');
	RETURN NEXT ok(pg_temp.all_exist(objs), folder || ': and everything is back');
	PERFORM pg_temp.reset();
END $$;

-- Nested block comments before a statement, which PostgreSQL allows: the
-- comments skipped before each statement nest as the server's do (this cut
-- statements in the middle before mig_first_word learned to nest).
SELECT is(migrate_apply(pg_temp.fx('ly_nested')), 1::bigint, 'ly_nested: applies');
SELECT ok(to_regclass('nc_one') IS NOT NULL AND to_regclass('nc_two') IS NOT NULL,
          'ly_nested: both statements after nested comments ran whole');
SELECT pg_temp.reset();

-- golang-migrate: a CRLF plpgsql trigger function with $body$, a DO block
-- without final newline, a comment-only down
SELECT * FROM pg_temp.up('ly_golang', '{1,2,3}');
SELECT is(gl_item_count(), 3::bigint, 'ly_golang: the DO block inserted its rows, the $$ function counts them');
SELECT is((SELECT array_agg(msg ORDER BY msg) FROM gl_audit),
          '{"added; item 1;","added; item 2;","added; item 3;"}',
          'ly_golang: the trigger from the CRLF file fired for each');
SELECT is((SELECT down_sql FROM migrate_history WHERE version = '3'),
          E'-- nothing to undo; the rows go with the table\n', 'ly_golang: the comment-only down is stored');
SELECT is((SELECT up_file || ' ' || down_file FROM migrate_history WHERE version = '2'),
          '000002_audit.up.sql 000002_audit.down.sql', 'ly_golang: file names recorded');
SELECT * FROM pg_temp.down_up('ly_golang', 3, '{gl_items,gl_audit,gl_item_count,gl_audit_fn}');

-- Flyway: V/U, 1.1 and 1_2 (= 1.2) before 10
SELECT * FROM pg_temp.up('ly_flyway', '{1,1.1,1.2,10}');
SELECT is(fl_owner(1), 'o''brien; jr', 'ly_flyway: the $fn$ function from the CRLF V1_2 file works');
SELECT is((SELECT up_file || ' ' || down_file FROM migrate_history WHERE version = '1.2'),
          'V1_2__function.sql U1_2__function.sql', 'ly_flyway: V1_2 is version 1.2 with its undo file');
SELECT lives_ok('SELECT fl_more_add(5)', 'ly_flyway: the BEGIN ATOMIC function of V10 was created whole');
SELECT is((SELECT array_agg(x ORDER BY x) FROM fl_more), '{5,6}', 'ly_flyway: and runs both its statements');
SELECT * FROM pg_temp.down_up('ly_flyway', 4, '{fl_accounts,fl_owner,fl_more,fl_more_add}');

-- diesel: folders, metadata.toml ignored, an empty down
SELECT * FROM pg_temp.up('ly_diesel', '{20180114171611,20180115093000}');
SELECT is((SELECT title FROM ds_posts), 'A;B', 'ly_diesel: the trigger ran on the seed without final newline');
SELECT is((SELECT array_agg(up_file ORDER BY installed_rank) FROM migrate_history),
          '{2018-01-14-171611_create_posts/up.sql,2018-01-15-093000_seed/up.sql}',
          'ly_diesel: up files recorded with their folder');
SELECT is((SELECT down_sql FROM migrate_history WHERE version = '20180115093000'), '',
          'ly_diesel: the empty down.sql is an empty down script');
SELECT * FROM pg_temp.down_up('ly_diesel', 2, '{ds_posts,ds_title_upper}');

-- dbmate: sections, $q$ function, a CRLF file with a DO block and a
-- comment-only down section
SELECT * FROM pg_temp.up('ly_dbmate', '{20240101120000,20240102000000}');
SELECT is(dm_label(1), 'x', 'ly_dbmate: the $q$ function and the CRLF seed ran');
SELECT ok((SELECT up_sql NOT LIKE '%migrate:%' AND up_sql LIKE 'CREATE TABLE dm_tags%'
           FROM migrate_history WHERE version = '20240101120000'), 'ly_dbmate: the up section alone is stored');
SELECT is((SELECT down_sql FROM migrate_history WHERE version = '20240101120000'),
          E'DROP FUNCTION dm_label(int);\nDROP TABLE dm_tags;\n', 'ly_dbmate: the down section is stored');
SELECT * FROM pg_temp.down_up('ly_dbmate', 2, '{dm_tags,dm_label}');

-- goose: StatementBegin/End around a plpgsql function, annotations in any
-- case, an empty Down section, CRLF without final newline
SELECT * FROM pg_temp.up('ly_goose', '{1,2,10}');
SELECT is((SELECT msg FROM gs_log), 'added; it''s', 'ly_goose: the function between StatementBegin/End works');
SELECT is((SELECT down_sql FROM migrate_history WHERE version = '2'), '',
          'ly_goose: an empty -- +GOOSE DOWN section is an empty down script');
SELECT * FROM pg_temp.down_up('ly_goose', 3, '{gs_users,gs_log,gs_log_fn,gs_more}');

-- sqlx simple: no down scripts
SELECT * FROM pg_temp.up('ly_sqlx', '{20210422143411,20210422143412}');
SELECT is((SELECT body FROM sx_notes), 'it''s; fine', 'ly_sqlx: the $$ string without final newline');
SELECT throws_like('SELECT migrate_down(2)', '%have no down script%', 'ly_sqlx: migrate_down refuses: no down scripts');
SELECT is(pg_temp.versions(), '{20210422143411,20210422143412}', 'ly_sqlx: and changes nothing');
DROP TABLE sx_notes;
SELECT pg_temp.reset();
SELECT is(migrate_apply(pg_temp.fx('ly_sqlx')), 2::bigint, 'ly_sqlx: applies again on an empty history');
SELECT pg_temp.reset();

-- Each tool's own order and names.  diesel orders by version text:
-- 2024-03-13_170000 (20240313) runs after 2024-03-06-170000, whose table
-- it references; the history keeps the version text (leading zeros
-- dropped) as before.
SELECT * FROM pg_temp.up('ly_diesel_text', '{0,20240306170000,20240313}');
SELECT * FROM pg_temp.down_up('ly_diesel_text', 3, '{dt_setup,dt_users,dt_posts}');

-- dbmate takes any name matching ^(\d+).*\.sql$
SELECT * FROM pg_temp.up('ly_dbmate_names', '{0,20240101120000}');
SELECT * FROM pg_temp.down_up('ly_dbmate_names', 2, '{dn_schema,dn_next}');

-- MongooseIM: this engine's scripts by target release (5.1 < 5.10), the
-- other engines' twins and the fresh-install pg.sql left alone
SELECT * FROM pg_temp.up('ly_mongooseim', '{5,5.1,5.10,6.2}');
SELECT is((SELECT array_agg(up_file ORDER BY installed_rank) FROM migrate_history),
          '{pgsql_4.2.0_5.0.0.sql,pgsql_5.0.0_5.1.0.sql,pgsql_5.1.0_5.10.0.sql,pgsql_6.1.0_6.2.0.sql}',
          'ly_mongooseim: the pgsql_ scripts, in release order');
SELECT ok(to_regclass('mi_fresh_never') IS NULL, 'ly_mongooseim: pg.sql is not a migration');
SELECT is((SELECT array_agg(problem || ' ' || severity) FROM migrate_validate(pg_temp.fx('ly_mongooseim'))),
          '{"gap warning"}', 'ly_mongooseim: a release without a script is a warning of migrate_validate');
SELECT pg_temp.reset();
SELECT throws_like(format('SELECT migrate_apply(%L)', pg_temp.fx('ly_mongooseim_other')),
                   '%has upgrade scripts for other engines but none for postgres%',
                   'ly_mongooseim_other: only other engines'' scripts are refused');
SELECT throws_like(format('SELECT migrate_apply(%L)', pg_temp.fx('ly_mongooseim_overlap')),
                   '%upgrade scripts overlap: pgsql_5.0.0_5.2.0.sql (it upgrades from a release before the one pgsql_5.0.0_5.1.0.sql upgraded to)%',
                   'ly_mongooseim_overlap: overlapping scripts are refused, naming both');

-- memos: per-engine folders of version folders; 0.9 before 0.10
SELECT * FROM pg_temp.up('ly_memos', '{0.9.1,0.10.1,0.10.2}');
SELECT is((SELECT array_agg(up_file ORDER BY installed_rank) FROM migrate_history),
          '{postgres/0.9/00__memo.sql,postgres/0.10/00__tag.sql,postgres/0.10/01__tag_memo.sql}',
          'ly_memos: file names are paths inside the folder');
SELECT is(migrate_apply(pg_temp.fx('ly_memos'), 'target=0.10.1'), 0::bigint,
          'ly_memos: a version round-trips as target=');
SELECT pg_temp.reset();

-- a subfolder is never skipped without a word
SELECT throws_like(format('SELECT migrate_apply(%L)', pg_temp.fx('ly_subdir')),
                   '%subfolder "archive" holds no migrations%', 'ly_subdir: a subfolder that is no migration is refused');
SELECT is((SELECT array_agg(problem || ' ' || file) FROM migrate_validate(pg_temp.fx('ly_subdir'))),
          '{"bad_name archive"}', 'ly_subdir: migrate_validate names it');

-- goose: a Go migration stops apply before it (in function mode the error
-- rolls the call back); target= applies the SQL before it; status and
-- validate show it; migrate_record records it after the application ran it
SELECT throws_like(format('SELECT migrate_apply(%L)', pg_temp.fx('ly_goose_go')),
                   'migration 2 (00002_backfill.go) is a goose Go migration, which migrate cannot run',
                   'ly_goose_go: apply stops at the Go migration, naming it');
SELECT is(migrate_apply(pg_temp.fx('ly_goose_go'), 'target=1'), 1::bigint,
          'ly_goose_go: the SQL migration before it applies with target=');
SELECT is((SELECT array_agg(version || '=' || state || '=' || file ORDER BY version)
           FROM migrate_status(pg_temp.fx('ly_goose_go'))),
          '{1=applied=00001_users.sql,2=pending=00002_backfill.go,3=pending=00003_posts.sql}',
          'ly_goose_go: migrate_status shows the Go migration pending');
SELECT is((SELECT array_agg(problem || ' ' || file) FROM migrate_validate(pg_temp.fx('ly_goose_go'))),
          '{"go_migration 00002_backfill.go"}', 'ly_goose_go: migrate_validate reports it');
SELECT throws_like(format('SELECT migrate_record(%L, %L)', pg_temp.fx('ly_goose_go'), '3'),
                   'migration 3 (00003_posts.sql) is not the next migration to apply',
                   'ly_goose_go: migrate_record takes only the next migration');
SELECT is(migrate_record(pg_temp.fx('ly_goose_go'), '2'), 1::bigint, 'ly_goose_go: migrate_record records it');
SELECT is((SELECT array_agg(version || ' ' || action || ' ' || (old_checksum IS NULL)::text
                            || ' ' || (repaired_by = current_user)::text)
           FROM migrate_repairs), '{"2 record true true"}', 'ly_goose_go: with an audit row');
SELECT is((SELECT up_sql || coalesce(down_sql, '(none)') FROM migrate_history WHERE version = '2'), '(none)',
          'ly_goose_go: no SQL kept for it');
SELECT is(migrate_apply(pg_temp.fx('ly_goose_go')), 1::bigint, 'ly_goose_go: apply goes on after it');
SELECT throws_like('SELECT migrate_down(2)', '%migration 2 has no down script%',
                   'ly_goose_go: rolling back stops at the Go migration');
SELECT throws_like(format('SELECT migrate_record(%L, %L)', pg_temp.fx('ly_goose_go'), '2'),
                   'migration 2 (00002_backfill.go) is already applied', 'ly_goose_go: and it is recorded once');

SELECT * FROM finish();
ROLLBACK;
