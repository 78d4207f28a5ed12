-- tests/pg/t/12_lock_options.sql -- the lock options of migrate_apply (wait,
-- if_locked, lock_timeout, lock_retries) and their settings, in one
-- session: bad values refused, migrate_lock_holder, the rail's lock_timeout
-- seen by migration statements only.  Several sessions: run.sh.
BEGIN;
SELECT plan(23);

CREATE FUNCTION pg_temp.fx(folder text) RETURNS text LANGUAGE sql
AS $$ SELECT pg_catalog.current_setting('migrate_test.dir') || '/' || folder $$;

-- ---- bad values ----
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('basic'), 'wait=soon'), '22023',
                 'option wait takes a duration such as 0, 500ms, 30s or 2min, or forever, not "soon"',
                 'wait=soon is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('basic'), 'wait=5h'), '22023',
                 'option wait takes a duration such as 0, 500ms, 30s or 2min, or forever, not "5h"',
                 'wait=5h is refused (units ms, s, min)');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('basic'), 'if_locked=maybe'), '22023',
                 'option if_locked takes skip or error, not "maybe"', 'if_locked=maybe is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('basic'), 'lock_timeout=-1'), '22023',
                 'option lock_timeout takes a duration such as 0 (none), 200ms or 5s, not "-1"',
                 'lock_timeout=-1 is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('basic'), 'lock_timeout=forever'), '22023',
                 'option lock_timeout takes a duration such as 0 (none), 200ms or 5s, not "forever"',
                 'lock_timeout=forever is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('basic'), 'lock_retries=1001'), '22023',
                 'option lock_retries takes a number of retries from 0 to 1000, not "1001"',
                 'lock_retries=1001 is refused');
SELECT throws_ok(format('SELECT migrate_apply(%L, %L)', pg_temp.fx('basic'), 'wait=1s, wait=2s'), '22023',
                 'option "wait" is given twice', 'an option given twice is refused');
SELECT throws_ok($$SET LOCAL migrate.lock_timeout = -1$$, '22023', NULL,
                 'migrate.lock_timeout = -1 is refused');
SELECT throws_ok($$SET LOCAL migrate.lock_retries = 1001$$, '22023', NULL,
                 'migrate.lock_retries = 1001 is refused');
SELECT is(current_setting('migrate.lock_timeout'), '2s', 'migrate.lock_timeout defaults to 2s');
SELECT is(current_setting('migrate.lock_retries'), '5', 'migrate.lock_retries defaults to 5');
SELECT is((SELECT count(*)::int FROM migrate_history), 0, 'the refusals changed nothing');

-- ---- the holder, and the rail's lock_timeout: migration statements only ----
SELECT is_empty('SELECT * FROM migrate_lock_holder()', 'a free lock has no holder');
SET LOCAL lock_timeout = '7s';
SELECT is(migrate_apply(pg_temp.fx('rail_seen'), 'wait=0, if_locked=skip, lock_timeout=250ms'), 1::bigint,
          'wait=0 takes a free lock at once (with lock_timeout=250ms)');
SELECT results_eq('SELECT pid, usename, state, since = statement_timestamp() FROM migrate_lock_holder()',
                  $$SELECT pg_backend_pid(), current_user::name, 'active'::text, true$$,
                  'this transaction holds it now, running a statement since it started');
SELECT is((SELECT v FROM rail_seen), '250ms', 'its statements ran with lock_timeout = 250ms');
SELECT is(current_setting('lock_timeout'), '7s', 'the session''s lock_timeout is back afterwards');
SELECT is(migrate_down(1), 1::bigint, 'roll it back');
SELECT is(migrate_apply(pg_temp.fx('rail_seen')), 1::bigint, 'apply without options');
SELECT is((SELECT v FROM rail_seen), '2s', 'migrate.lock_timeout applies by default');
SELECT lives_ok($$SELECT migrate_down(1); SET LOCAL migrate.lock_timeout = '300ms';
                  SELECT migrate_apply(pg_temp.fx('rail_seen'), 'lock_retries=0');
                  CREATE TEMP TABLE seen300 AS SELECT v FROM rail_seen;
                  SELECT migrate_down(1); SELECT migrate_apply(pg_temp.fx('rail_seen'), 'lock_timeout=0');$$,
                'apply with migrate.lock_timeout = 300ms and no retries, then with lock_timeout=0');
SELECT is((SELECT v FROM seen300) || ' ' || (SELECT v FROM rail_seen), '300ms 7s',
          'the setting is used, and lock_timeout=0 leaves the session''s own');
SELECT is(current_setting('lock_timeout'), '7s', 'which is still 7s');

SELECT * FROM finish();
ROLLBACK;
