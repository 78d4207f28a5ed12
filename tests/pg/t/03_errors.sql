-- tests/pg/t/03_errors.sql -- a failing migration keeps its own SQLSTATE and
-- message, names the file, the version and the line, and leaves nothing
-- behind (function mode is all-or-nothing).
BEGIN;
SELECT plan(14);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

-- The SQLSTATE, message and context of the error raised by query.
CREATE FUNCTION pg_temp.err(query text, OUT state text, OUT message text, OUT context text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE query;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
	                        context = PG_EXCEPTION_CONTEXT;
END $$;

CREATE TEMP TABLE e AS
SELECT 'fail' AS k, * FROM pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('fail')))
UNION ALL
SELECT 'syntax', * FROM pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('syntax')))
UNION ALL
SELECT 'vacuum', * FROM pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('vacuum')))
UNION ALL
SELECT 'crlf', * FROM pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('crlf_fail')))
UNION ALL
SELECT 'unicode', * FROM pg_temp.err(format('SELECT migrate_apply(%L)', pg_temp.fx('unicode_syntax')));

SELECT is((SELECT state FROM e WHERE k = 'fail'), '22012', 'a failing statement keeps its SQLSTATE');
SELECT is((SELECT message FROM e WHERE k = 'fail'), 'division by zero', 'and its message');
SELECT matches((SELECT context FROM e WHERE k = 'fail'),
               'migration 2 \(2_fails\.up\.sql\), line 4',
               'the context names version, file and the first line of the failing statement');
SELECT ok(NOT EXISTS (SELECT FROM pg_class WHERE relname IN ('f1', 'f2')) AND
          NOT EXISTS (SELECT FROM migrate_history),
          'nothing of the failed call remains');

SELECT is((SELECT state FROM e WHERE k = 'syntax'), '42601', 'a syntax error is 42601');
SELECT matches((SELECT context FROM e WHERE k = 'syntax'),
               'migration 2 \(2_bad\.up\.sql\), line 3',
               'a syntax error names the file and its line');
SELECT is((SELECT state FROM e WHERE k = 'vacuum'), '0A000', 'VACUUM is refused with 0A000');
SELECT matches((SELECT context FROM e WHERE k = 'vacuum'),
               'migration 2 \(2_vacuum\.up\.sql\), line 3',
               'the refusal names the file and the line of the statement');
SELECT matches((SELECT context FROM e WHERE k = 'crlf'),
               'migration 1 \(1_crlf\.up\.sql\), line 3',
               'CRLF line ends count as lines');

-- an error in a down script names the rollback
SELECT is(migrate_apply(pg_temp.fx('down_fails')), 1::bigint, 'apply a migration whose down fails');
SELECT is((pg_temp.err('SELECT migrate_down(1)')).state, '42P01', 'its rollback keeps the SQLSTATE');
SELECT matches((pg_temp.err('SELECT migrate_down(1)')).context,
               'rollback of migration 1 \([^)]*\), line 2',
               'and names the rollback, version and line');
SELECT is((SELECT count(*)::int FROM migrate_history), 1, 'the failed rollback changed nothing');

-- Unicode before the error does not shift the line
SELECT matches((SELECT context FROM e WHERE k = 'unicode'),
               'migration 1 \(1_u\.up\.sql\), line 4',
               'multi-byte characters before a syntax error keep the line right');

SELECT * FROM finish();
ROLLBACK;
