-- tests/pg/t/13_outside.sql -- migrations that must run outside a
-- transaction, as far as one session in one transaction can see them:
-- SELECT migrate_apply (function mode) refuses them before anything runs,
-- with the file and a hint naming CALL migrate_run; what can never run
-- outside a transaction is refused in both modes; a down script recorded
-- to run outside one is refused by migrate_down; the progress table.
-- Running them (CALL migrate_run, migrate_run_down, background workers,
-- cancels, a writer beside a concurrent index build): run.sh.
BEGIN;
SELECT plan(19);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

CREATE TABLE ob_big (id int, v int);
CREATE TABLE mx_probe (id int);

-- a statement that cannot run in a transaction, found by the parser
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('out_cic')), '0A000',
                 'CREATE INDEX CONCURRENTLY cannot run in migration file "1_ob_idx.up.sql"',
                 'function mode refuses CREATE INDEX CONCURRENTLY, naming the statement and the file');
CREATE FUNCTION pg_temp.err(call text, OUT state text, OUT message text, OUT detail text,
                            OUT hint text, OUT context text) LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
	                        detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
	                        context = PG_EXCEPTION_CONTEXT;
END $$;
SELECT is((pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('out_cic')))).hint,
          'Use CALL migrate_run(...), which runs such a migration outside a transaction, one statement at a time.',
          'its hint says to use CALL migrate_run');
SELECT matches((pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('out_cic')))).context,
               'migration 1 \(1_ob_idx\.up\.sql\), line 2',
               'and its context names the version, the file and the line');

-- a migration marked to run outside a transaction
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('out_enum')), '0A000',
                 'migration 1 (00001_mood.sql) is marked to run outside a transaction (-- +goose NO TRANSACTION)',
                 'function mode refuses a goose NO TRANSACTION migration, naming the file and the marker');
SELECT is((pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('out_enum')))).hint,
          'Use CALL migrate_run(...), which runs such a migration outside a transaction, one statement at a time.',
          'its hint says to use CALL migrate_run');
SELECT is((pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('out_enum')))).detail,
          'Nothing was applied.', 'and that nothing was applied');

-- in a mixed folder nothing runs, not even the transactional first one
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('out_mixed')), '0A000',
                 'CREATE INDEX CONCURRENTLY cannot run in migration file "2_mx_idx.up.sql"',
                 'a mixed folder is refused at its first non-transactional migration');
SELECT ok(to_regclass('mx') IS NULL AND to_regtype('color') IS NULL
          AND NOT EXISTS (SELECT FROM migrate_history),
          'before anything ran: no table, no type, no history');

SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('out_detach')), '0A000',
                 'ALTER TABLE ... DETACH PARTITION CONCURRENTLY cannot run in migration file "1_d.up.sql"',
                 'function mode refuses DETACH PARTITION CONCURRENTLY before anything runs');

-- never, in either mode
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('out_commit')), '0A000',
                 'COMMIT cannot run in migration file "1_c.up.sql"',
                 'COMMIT in a marked migration is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L)', pg_temp.fx('out_copy')), '0A000',
                 'COPY FROM STDIN cannot run in migration file "1_c.up.sql"',
                 'COPY FROM STDIN is refused beside a CREATE INDEX CONCURRENTLY');

-- migrate_validate reports what only CALL migrate_run can apply, as that,
-- not as an error
SELECT is((SELECT array_agg(version || ' ' || problem || ' ' || severity)
             FROM migrate_validate(pg_temp.fx('out_mixed'))),
          '{"2 needs_migrate_run warning","3 needs_migrate_run warning"}',
          'migrate_validate lists the migrations only CALL migrate_run can apply, as warnings');

-- a down script that must run outside a transaction: applied in one, the
-- migration records it so, and migrate_down refuses it before anything runs
SELECT is(migrate_apply(pg_temp.fx('out_down_dbmate')), 1::bigint,
          'a dbmate migration whose down section is marked transaction:false applies in a transaction');
SELECT is((SELECT down_mode FROM migrate_history WHERE version = '20240101000000'), 'outside',
          'its down script is recorded to run outside a transaction');
SELECT throws_ok('SELECT migrate_down(1)', '0A000',
                 'the down script of migration 20240101000000 (20240101000000_dd.sql) must run outside a transaction',
                 'migrate_down refuses it (0A000), naming the migration and the file');
SELECT is((pg_temp.err('SELECT migrate_down(1)')).hint,
          'Use CALL migrate_run_down(n), which runs such a down script outside a transaction, one statement at a time.',
          'its hint names CALL migrate_run_down');

-- the progress table
SELECT has_table('migrate_progress', 'migrate_progress exists');
SELECT columns_are('migrate_progress',
                   ARRAY['version', 'done_checksum', 'next_offset', 'statements_done',
                         'updated_at', 'last_error', 'down', 'tenant'],
                   'migrate_progress has the columns of SQLite''s (and tenant, issue 22)');
SELECT ok(NOT has_table_privilege('public', 'migrate_progress', 'SELECT')
          AND (SELECT 'migrate_progress'::regclass = ANY (extconfig) FROM pg_extension WHERE extname = 'migrate'),
          'migrate_progress is revoked from PUBLIC; the extension registers its tables for pg_dump');

SELECT * FROM finish();
ROLLBACK;
