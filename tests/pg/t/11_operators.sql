-- tests/pg/t/11_operators.sql -- the operator's functions: migrate_validate
-- lists every problem in one call, migrate_plan is a dry run, migrate_script
-- writes the SQL (running it is in run.sh), migrate_repair realigns edited
-- files with an audit row; none of the first three changes anything.
BEGIN;
SELECT plan(29);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

SELECT is(migrate_apply(pg_temp.fx('ops_base')), 4::bigint, 'ops_base applies 4');
SELECT ok((SELECT bool_and(checksum_norm IS NOT NULL) FROM migrate_history),
          'each history row keeps the normalised checksum');
SELECT ok(EXISTS (SELECT FROM pg_extension WHERE extname = 'migrate'
                  AND 'migrate_repairs'::regclass = ANY (extconfig)),
          'migrate_repairs is kept by pg_dump (pg_extension_config_dump)');

-- ---- validate ----
CREATE TEMP TABLE v AS SELECT * FROM migrate_validate(pg_temp.fx('ops_bad'));
SELECT set_eq('SELECT coalesce(version, ''-''), problem, severity, sqlstate FROM v',
              $$VALUES ('-', 'bad_name', 'error', '42602'), ('7', 'duplicate', 'error', '42710'),
                       ('-', 'orphan_down', 'error', '42602'), ('0', 'out_of_order', 'error', '55000'),
                       ('1', 'changed', 'error', '55000'), ('2', 'reformatted', 'warning', '01000'),
                       ('3', 'missing', 'error', '55000'), ('5', 'not_allowed', 'error', '0A000'),
                       ('6', 'syntax_error', 'error', '42601')$$,
              'migrate_validate lists every problem of the folder in one call');
SELECT is((SELECT message FROM v WHERE problem = 'syntax_error'),
          'migration 6 (6_f.up.sql), line 3: syntax error at or near "CREAT"',
          'a syntax error names the file and the line, as migrate_apply would');
SELECT is((SELECT message FROM v WHERE problem = 'not_allowed'),
          'migration 5 (5_e.up.sql), line 2: COMMIT cannot run in migration file "5_e.up.sql"',
          'so does a statement that cannot run in a migration');
SELECT is((SELECT file FROM v WHERE problem = 'duplicate'), '07_h.up.sql, 7_g.up.sql',
          'a duplicate version names both files');
SELECT is((SELECT file FROM v WHERE problem = 'bad_name'), 'notes.sql', 'a bad name names the file');
SELECT is((SELECT count(*)::int FROM migrate_history), 4, 'validate changed nothing');
SELECT is_empty(format('SELECT * FROM migrate_validate(%L)', pg_temp.fx('ops_base')),
                'a folder in line with the history has no problem');
SELECT results_eq(format('SELECT problem, severity, sqlstate FROM migrate_validate(%L)',
                         pg_temp.fx('no_such_folder')),
                  $$VALUES ('folder', 'error', '58P01')$$,
                  'a folder that cannot be listed is the one problem');

-- ---- plan ----
SELECT results_eq(format('SELECT version, name, file, kind, down_sql FROM migrate_plan(%L)',
                         pg_temp.fx('ops_more')),
                  $$VALUES ('5', 'e', '5_e.up.sql', 'versioned', E'DROP TABLE op_e;\n'),
                           ('6', 'f', '6_f.up.sql', 'versioned', '')$$,
                  'migrate_plan lists the pending migrations in order (6 has no down file: a no-op)');
SELECT is((SELECT sql FROM migrate_plan(pg_temp.fx('ops_more')) WHERE version = '5'),
          pg_read_file(pg_temp.fx('ops_more/5_e.up.sql')), 'with the SQL it would run');
SELECT is((SELECT checksum FROM migrate_plan(pg_temp.fx('ops_more')) WHERE version = '6'),
          (SELECT checksum FROM migrate_status(pg_temp.fx('ops_more')) WHERE version = '6'),
          'and the checksum it would record');
SELECT results_eq(format('SELECT version FROM migrate_plan(%L, %L)', pg_temp.fx('ops_more'), 'target=5'),
                  $$VALUES ('5')$$, 'it takes the options of migrate_apply (target=5)');
SELECT ok(to_regclass('op_e') IS NULL AND (SELECT count(*) FROM migrate_history) = 4,
          'the plan ran nothing and recorded nothing');
SELECT throws_ok(format('SELECT * FROM migrate_plan(%L)', pg_temp.fx('ops_bad')), '42602', NULL,
                 'a folder migrate_apply would refuse fails the plan the same way');
SELECT throws_ok(format('SELECT * FROM migrate_plan(%L, %L)', pg_temp.fx('ops_more'), 'nope=1'), '22023',
                 'unknown option "nope"', 'an unknown option is refused');

-- ---- script (its run through psql is in run.sh) ----
CREATE TEMP TABLE s AS SELECT migrate_script(pg_temp.fx('ops_more')) AS sql;
SELECT ok((SELECT sql LIKE E'BEGIN;\n%' AND sql LIKE E'%\nCOMMIT;\n' FROM s),
          'the script is one transaction');
SELECT ok((SELECT sql LIKE '%SELECT pg_catalog.pg_advisory_xact_lock(30796665482998885);%' FROM s),
          'under the migration lock');
SELECT ok((SELECT sql LIKE E'%\nSELECT public.migrate_script_record(''6'', ''f'', ''6_f.up.sql'', NULL, %' FROM s),
          'it records each migration through the schema-qualified function');
SELECT ok((SELECT sql LIKE E'%\n$migrate_1$-- a body quoted%' FROM s),
          'a text holding $migrate$ is quoted with another tag');
SELECT is((SELECT count(*)::int FROM migrate_history), 4, 'writing the script changed nothing');

-- ---- repair ----
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('ops_edit')), '55000',
                 'applied migration 1 has changed since it was applied', 'an edited applied file is refused');
CREATE TEMP TABLE before AS SELECT version, checksum FROM migrate_history;
SELECT is(migrate_repair(pg_temp.fx('ops_edit')), 2::bigint,
          'migrate_repair realigns the changed and the reformatted migration');
SELECT results_eq('SELECT r.version, r.old_checksum, r.new_checksum, r.repaired_by, r.repaired_at = now()
                     FROM migrate_repairs r ORDER BY r.version',
                  format($$SELECT b.version, b.checksum, s.checksum, %L::name, true
                            FROM before b JOIN migrate_status(%L) s USING (version)
                           WHERE b.version IN ('1', '2') ORDER BY b.version$$,
                         current_user, pg_temp.fx('ops_edit')),
                  'an audit row each: old and new checksum, who, when');
SELECT is(migrate_apply(pg_temp.fx('ops_edit')), 0::bigint, 'then migrate_apply accepts the folder');
SELECT is((SELECT down_sql FROM migrate_history WHERE version = '1'), E'DROP TABLE op_a; -- reviewed\n',
          'the stored down script follows the file');
SELECT is(migrate_repair(pg_temp.fx('ops_edit')), 0::bigint, 'a second repair has nothing to do');

SELECT * FROM finish();
ROLLBACK;
