-- tests/pg/t/15_impact.sql -- migrate_impact: one row per statement of the
-- pending migrations with the relation as the statement resolves it (the
-- search_path, relations the plan creates or renames), the lock from the
-- server's rules, rewrites and scans, sizes, the advice; and the impact
-- policy as migrate_apply, migrate_plan and migrate_validate enforce it:
-- its options and settings, the -- migrate:accept markers, its errors.
-- (The forms table against real locks and file nodes, blocked_by, and what
-- needs commits are in tests/pg/impact.sh.)
BEGIN;
SELECT plan(52);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

-- The error a statement raises: sqlstate, message, detail, hint, context.
CREATE FUNCTION pg_temp.err(sql text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hin text; ctx text;
BEGIN
	EXECUTE sql;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
		hin = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
	RETURN ARRAY[st, msg, NULLIF(det, ''), NULLIF(hin, ''), split_part(ctx, E'\n', 1)];
END
$$;

CREATE TABLE imp_big (id int PRIMARY KEY, v int, s text);
INSERT INTO imp_big SELECT g, g, md5(g::text) FROM generate_series(1, 10000) g;
CREATE TABLE imp_small (id int, v int);
INSERT INTO imp_small SELECT g, g FROM generate_series(1, 10) g;
ANALYZE imp_big;
ANALYZE imp_small;

-- ---- the rows ----
CREATE TEMP TABLE i AS SELECT * FROM migrate_impact(pg_temp.fx('impact_basic'));
SELECT results_eq('SELECT version, file, line, statement, relation, lock_mode, rewrites, scans FROM i',
	$$VALUES ('1', '1_create.up.sql', 1, 'CREATE TABLE imp_new (id int PRIMARY KEY)', NULL, NULL, false, false),
	         ('1', '1_create.up.sql', 2, 'CREATE INDEX imp_new_id ON imp_new (id)', NULL, 'ShareLock', false, true),
	         ('2', '2_alter.up.sql', 2, 'ALTER TABLE imp_big ADD COLUMN c int DEFAULT 0', 'public.imp_big', 'AccessExclusiveLock', false, false),
	         ('2', '2_alter.up.sql', 3, 'ALTER TABLE imp_big ALTER COLUMN v TYPE bigint', 'public.imp_big', 'AccessExclusiveLock', true, true),
	         ('2', '2_alter.up.sql', 5, 'CREATE INDEX imp_big_v ON imp_big (v)', 'public.imp_big', 'ShareLock', false, true),
	         ('2', '2_alter.up.sql', 6, 'ALTER TABLE imp_new ADD COLUMN x int', NULL, 'AccessExclusiveLock', false, false),
	         ('3', '3_cic.up.sql', 1, 'CREATE INDEX CONCURRENTLY imp_big_c ON imp_big (c)', 'public.imp_big', 'ShareUpdateExclusiveLock', false, true)$$,
	'one row per statement, in order, with its line, first words, relation, lock, rewrite and scan; NULL for what the plan creates');
SELECT ok((SELECT bool_and(relation_bytes = pg_relation_size('imp_big') AND relation_rows = 10000) FROM i WHERE relation = 'public.imp_big'),
          'relation_bytes is the size of its files now, relation_rows its rows');
SELECT ok((SELECT bool_and(relation_bytes IS NULL AND relation_rows IS NULL AND blocked_by IS NULL) FROM i WHERE relation IS NULL),
          'a relation created earlier in the plan has no size');
SELECT is((SELECT advice FROM i WHERE statement LIKE 'CREATE INDEX imp_big%'),
          'CREATE INDEX CONCURRENTLY, in a migration of its own (CALL migrate_run runs it outside a transaction), lets writes go on while it builds.',
          'the advice of a plain index build is CONCURRENTLY');
SELECT alike((SELECT advice FROM i WHERE rewrites AND relation IS NOT NULL), 'Add a new column of the new type, fill it in batches%',
            'the advice of a type change that rewrites is a new column filled in batches');
SELECT ok((SELECT advice IS NULL AND policy IS NULL FROM i WHERE statement LIKE 'CREATE INDEX CONCURRENTLY%'),
          'no advice for the safe form; no policy, no verdict');
SELECT ok(to_regclass('imp_new') IS NULL AND NOT EXISTS (SELECT FROM migrate_history)
          AND (SELECT atttypid = 'int4'::regtype FROM pg_attribute WHERE attrelid = 'imp_big'::regclass AND attname = 'v'),
          'migrate_impact ran nothing and recorded nothing');

-- ---- no code runs: functions in a default, a check, a domain ----
CREATE SEQUENCE imp_probe_seq;
CREATE FUNCTION imp_probe(int) RETURNS int IMMUTABLE LANGUAGE plpgsql
AS $$ BEGIN PERFORM nextval('imp_probe_seq'); RETURN $1; END $$;
ALTER TABLE imp_big ADD CONSTRAINT imp_code CHECK (v > imp_probe(-1));
CREATE DOMAIN imp_dom AS int CHECK (VALUE > imp_probe(0));
CREATE TEMP TABLE probe_before AS SELECT last_value FROM imp_probe_seq;
SELECT results_eq(format('SELECT statement, rewrites, scans FROM migrate_impact(%L)', pg_temp.fx('impact_nocode')),
	$$VALUES ('ALTER TABLE imp_big ADD COLUMN z int DEFAULT imp_probe(1)', false, false),
	         ('ALTER TABLE imp_big ALTER COLUMN v SET NOT NULL', false, false),
	         ('ALTER TABLE imp_big ADD COLUMN d imp_dom', true, true)$$,
	'an immutable default adds no rewrite; a strict check on v proves it NOT NULL (as the server proves it); a domain with a check rewrites');
SELECT is((SELECT last_value FROM imp_probe_seq), (SELECT last_value FROM probe_before),
          'no function of the default, the table''s checks or the domain ran');
ALTER TABLE imp_big DROP CONSTRAINT imp_code;

-- ---- names as the statements resolve them ----
CREATE SCHEMA imp_s;
CREATE TABLE imp_s.imp_big (id int);
CREATE TABLE imp_s.shadow (id int);
CREATE TABLE public.shadow (id int);
SELECT results_eq(format('SELECT version, line, relation FROM migrate_impact(%L)', pg_temp.fx('impact_path')),
	$$VALUES ('0', 1, 'imp_s.imp_big'), ('1', 1, 'public.imp_big'), ('1', 2, NULL),
	         ('1', 3, 'public.imp_big'), ('1', 4, 'imp_s.imp_renamed')$$,
	'the caller''s search_path, a SET search_path of the plan, a table the plan renamed away and its new name');
SELECT is(current_setting('search_path'), '"$user", public', 'the SET of the plan did not run');

-- ---- SET NOT NULL after a check the plan validates ----
SELECT results_eq(format('SELECT version, lock_mode, scans FROM migrate_impact(%L)', pg_temp.fx('impact_notnull')),
	$$VALUES ('1', 'AccessExclusiveLock', false), ('2', 'ShareUpdateExclusiveLock', true), ('3', 'AccessExclusiveLock', false)$$,
	'CHECK (v IS NOT NULL) NOT VALID, VALIDATE, then SET NOT NULL scans nothing');
SELECT is(migrate_apply(pg_temp.fx('impact_notnull'), 'target=2'), 2::bigint, 'the check and its validation, applied');
SELECT is((SELECT scans FROM migrate_impact(pg_temp.fx('impact_notnull'))), false,
          'SET NOT NULL proven by the table''s valid check (the server''s own proof) scans nothing');
ALTER TABLE imp_big DROP CONSTRAINT imp_v_nn;
SELECT is((SELECT scans FROM migrate_impact(pg_temp.fx('impact_notnull'))), true,
          'without it, SET NOT NULL scans the table');
SELECT alike((SELECT advice FROM migrate_impact(pg_temp.fx('impact_notnull'))), 'Add CHECK (column IS NOT NULL) NOT VALID%',
            'and the advice says how to avoid that');
DELETE FROM migrate_history WHERE version IN ('1', '2');

-- ---- the policy: apply refuses, before anything runs ----
CREATE TEMP TABLE e AS SELECT pg_temp.err(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('impact_policy'),
                                                 'no_rewrite=true, max_size=64kB')) AS e;
SELECT is((SELECT e[1] FROM e), '55000', 'migrate_apply refuses a rewrite of a relation larger than max_size (55000)');
SELECT is((SELECT e[2] FROM e),
          format('the migration policy refuses "ALTER TABLE imp_big ALTER COLUMN v TYPE bigint": it rewrites public.imp_big (%s, 10000 rows) under AccessExclusiveLock',
                 pg_size_pretty(pg_relation_size('imp_big'))),
          'the error names the statement, relation, size, rows and lock');
SELECT is((SELECT e[5] FROM e), 'migration 2 (2_big.up.sql), line 3', 'and the file and line');
SELECT is((SELECT e[3] FROM e), 'The policy refuses, on a relation larger than 64 kB (max_size=), a rewrite (no_rewrite=true). Nothing was applied.',
          'the detail says which rule');
SELECT alike((SELECT e[4] FROM e), 'Add a new column of the new type%-- migrate:accept rewrite public.imp_big, or run it off-hours: migrate_script with only=flagged%',
            'the hint gives the safer form, the marker that accepts it and the off-hours script');
SELECT ok(to_regclass('imp_log') IS NULL AND NOT EXISTS (SELECT FROM migrate_history)
          AND (SELECT atttypid = 'int4'::regtype FROM pg_attribute WHERE attrelid = 'imp_small'::regclass AND attname = 'v'),
          'nothing ran: not the small table''s migration before it, not the statement before it in its file');
SELECT results_eq(format('SELECT version, line, policy FROM migrate_impact(%L, %L)', pg_temp.fx('impact_policy'), 'no_rewrite=true, max_size=64kB'),
	$$VALUES ('1', 1, NULL), ('2', 1, NULL), ('2', 3, 'refused')$$,
	'migrate_impact with the policy says what it refuses (a small table is spared by max_size)');
SELECT is((pg_temp.err(format('SELECT * FROM migrate_plan(%L, %L)', pg_temp.fx('impact_policy'), 'no_rewrite=true')))[1],
          '55000', 'migrate_plan fails as migrate_apply would');
SELECT is((SELECT count(*)::int FROM migrate_plan(pg_temp.fx('impact_policy'), 'no_rewrite=true, max_size=10MB')), 2,
          'a max_size above the table''s size spares it');

-- max_lock
CREATE TEMP TABLE l AS SELECT pg_temp.err(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('impact_lock'),
                                                 'max_lock=ShareUpdateExclusiveLock')) AS e;
SELECT is((SELECT e[2] FROM l),
          format('the migration policy refuses "CREATE INDEX imp_big_v2 ON imp_big (v)": it takes ShareLock on public.imp_big (%s, 10000 rows)',
                 pg_size_pretty(pg_relation_size('imp_big'))),
          'max_lock refuses a stronger lock: the error names the lock');
SELECT is((SELECT e[3] FROM l), 'The policy refuses, on a relation larger than 0 bytes (max_size=), a lock stronger than ShareUpdateExclusiveLock (max_lock=ShareUpdateExclusiveLock). Nothing was applied.',
          'and the rule (max_size defaults to 0)');
SELECT alike((SELECT e[4] FROM l), 'CREATE INDEX CONCURRENTLY%-- migrate:accept lock public.imp_big,%', 'the hint: CONCURRENTLY, or accept the lock');
SELECT is(migrate_apply(pg_temp.fx('impact_lock'), 'max_lock=ShareLock, target=0'), 0::bigint,
          'a lock as strong as max_lock is allowed');
SELECT is((SELECT count(*)::int FROM migrate_plan(pg_temp.fx('impact_lock'), 'max_lock=ShareLock')), 1,
          '... the plan passes');

-- ---- the markers ----
SELECT is((SELECT policy FROM migrate_impact(pg_temp.fx('impact_accept'), 'no_rewrite=true')), 'accepted',
          '-- migrate:accept rewrite public.imp_big accepts the rewrite');
SELECT is((SELECT count(*)::int FROM migrate_plan(pg_temp.fx('impact_accept'), 'no_rewrite=true')), 1,
          '... and the plan passes');
SELECT is((pg_temp.err(format('SELECT * FROM migrate_plan(%L, %L)', pg_temp.fx('impact_accept'), 'no_rewrite=true, max_lock=ShareUpdateExclusiveLock')))[2],
          format('the migration policy refuses "ALTER TABLE imp_big ALTER COLUMN v TYPE bigint": it rewrites public.imp_big (%s, 10000 rows) under AccessExclusiveLock',
                 pg_size_pretty(pg_relation_size('imp_big'))),
          'it does not accept the lock it did not name');
SELECT is((SELECT policy FROM migrate_impact(pg_temp.fx('impact_accept_other'), 'no_rewrite=true')), 'refused',
          'a marker naming another relation accepts nothing here');
SELECT is((SELECT policy FROM migrate_impact(pg_temp.fx('impact_accept_lock'), 'no_rewrite=true')), 'refused',
          'accepting the lock does not accept the rewrite');
SELECT is((SELECT policy FROM migrate_impact(pg_temp.fx('impact_accept_lock'), 'max_lock=ShareLock')), 'accepted',
          '... it accepts the lock');
SELECT is((SELECT policy FROM migrate_impact(pg_temp.fx('impact_accept_both'), 'no_rewrite=true, max_lock=RowExclusiveLock')), 'accepted',
          'lock, rewrite IMP_BIG: both risks, any case, any schema');
SELECT is(pg_temp.err(format('SELECT * FROM migrate_impact(%L, %L)', pg_temp.fx('impact_bad_marker'), 'no_rewrite=true')),
          ARRAY['22023', 'malformed -- migrate:accept line: it names no risk (rewrite or lock)', NULL,
                'Write it as -- migrate:accept rewrite public.users, or lock,rewrite and several relations separated by commas.',
                'migration 1 (1_big.up.sql), line 2'],
          'a malformed marker is an error naming its line');

-- ---- settings ----
SET LOCAL migrate.no_rewrite = on;
SET LOCAL migrate.max_size = '64kB';
SELECT is((pg_temp.err(format('SELECT * FROM migrate_plan(%L)', pg_temp.fx('impact_policy'))))[1], '55000',
          'migrate.no_rewrite and migrate.max_size are the defaults of the policy');
SELECT is((SELECT count(*)::int FROM migrate_plan(pg_temp.fx('impact_policy'), 'no_rewrite=false')), 2,
          'an option overrides a setting');
SELECT results_eq(format('SELECT version, file, problem, severity, sqlstate FROM migrate_validate(%L)', pg_temp.fx('impact_policy')),
	$$VALUES ('2', '2_big.up.sql', 'policy', 'error', '55000')$$,
	'migrate_validate reports what the policy refuses, as an error');
SELECT alike((SELECT message FROM migrate_validate(pg_temp.fx('impact_policy'))),
            'migration 2 (2_big.up.sql), line 3: the migration policy refuses "ALTER TABLE imp_big ALTER COLUMN v TYPE bigint": it rewrites public.imp_big %',
            'with apply''s message and context');
SET LOCAL migrate.max_lock = 'ShareUpdateExclusiveLock';
SELECT is((SELECT count(*)::int FROM migrate_validate(pg_temp.fx('impact_policy'), 'no_rewrite=false, max_lock=none')), 0,
          'migrate_validate(path, options): the options override the settings');
RESET migrate.no_rewrite;
RESET migrate.max_size;
RESET migrate.max_lock;
SELECT is((SELECT count(*)::int FROM migrate_validate(pg_temp.fx('impact_policy'))), 0, 'no policy, no problem');

-- ---- options ----
SELECT throws_ok(format('SELECT * FROM migrate_impact(%L, %L)', pg_temp.fx('impact_policy'), 'max_lock=Bogus'), '22023',
                 'option max_lock takes a lock mode as pg_locks names it, not "Bogus"', 'a lock mode that does not exist is refused');
SELECT throws_ok(format('SELECT * FROM migrate_impact(%L, %L)', pg_temp.fx('impact_policy'), 'max_size=12XB'), '22023',
                 'option max_size takes a size such as 100MB, 1GB or 500kB, not "12XB"', 'a size that is none is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('impact_policy'), 'only=flagged'), '22023',
                 'unknown option "only"', 'only= is migrate_script''s');
SELECT throws_ok(format('SELECT * FROM migrate_validate(%L, %L)', pg_temp.fx('impact_policy'), 'target=1'), '22023',
                 'unknown option "target"', 'migrate_validate takes only the policy''s options');
SELECT is((SELECT policy FROM migrate_impact(pg_temp.fx('impact_policy'), 'max_lock=shareupdateexclusivelock') WHERE line = 3),
          'refused', 'lock modes in any case');

-- ---- the off-hours script (its run is in impact.sh) ----
SELECT alike(migrate_script(pg_temp.fx('impact_policy'), 'only=flagged, no_rewrite=true, max_size=64kB'),
            E'%-- migration 2 (2_big.up.sql): the policy refuses 1 statement of it; recorded ahead of pending migrations left out of this script\n%migrate_script_ahead(''2'');%',
            'migrate_script only=flagged writes the refused migration, recorded ahead');
SELECT unalike(migrate_script(pg_temp.fx('impact_policy'), 'only=flagged, no_rewrite=true, max_size=64kB'),
              '%imp_small%', '... and not the others');

-- ---- who may call it ----
SELECT ok(NOT has_function_privilege('public', 'migrate_impact(text)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'migrate_impact(text, text)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'migrate_script_ahead(text)', 'EXECUTE'),
          'migrate_impact reads server files: revoked from PUBLIC');

SELECT * FROM finish();
ROLLBACK;
