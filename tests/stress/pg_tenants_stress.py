#!/usr/bin/python3
"""Tenants stress of the PostgreSQL extension (issue 22): 16 racing fan-outs
over the same 200 tenant schemas, each tenant's migrations applied exactly
once.  Prints TAP.  Run by tests/stress/pg_stress.sh --tenants (make stress),
which starts a throwaway cluster of its own (the environment described in
pg_stress.py, whose psql helpers and wire-protocol client this reuses).

    tests/stress/pg_stress.sh --tenants [--rounds N] [--seed S] [name-filter]

A folder of four migrations, each of which INSERTs its number into the
tenant's own applied_log (with the backend's pid), so that a migration
applied twice shows as a second row even where it would not fail: the
second one only UPDATEs a counter.  200 empty schemas t000..t199 and a
reference schema applied on its own.  16 sessions connect, queue behind an
advisory lock the test holds, and once pg_locks shows all 16 waiting the
test releases them into SELECT ... FROM migrate_apply_each(folder, tenants,
options) at once.  Each variant checks every caller's 200 rows, then runs a
final serial fan-out, then checks every tenant: the history holds each
version once, applied_log holds 1, 2, 3, 4 once each, written by one
backend, the counter is 1, and the columns, indexes and view are the
reference's; the callers' rows say each tenant was applied (4 migrations)
by exactly one call; no tenant lock is left in pg_locks.

- same_order: every caller the tenants in the same order, waiting for
  each tenant's lock (the default): no caller fails.
- own_order: each caller its own shuffled order, waiting, on_error=continue.
  Each call holds its tenants' locks until it commits, so two calls that
  met in opposite orders deadlock: PostgreSQL's detector fails one tenant of
  one of them (40P01, its subtransaction rolled back), which the final
  serial run applies; any other failure fails the test.
- half_skip: 8 callers with wait=0, if_locked=skip in their own shuffled
  orders, 8 waiting in the same order: skipped_locked rows allowed, no
  failure; the final serial run completes whatever was left.

--rounds N repeats each variant (default 1).
"""
import os
import random
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg_stress as ps  # noqa: E402  (reads the same arguments: --seed, --rounds, a filter)

CALLERS = 16
TENANTS = ["t%03d" % i for i in range(200)]
ROUNDS = ps._opts["rounds"] or 1
SEED = ps._opts["seed"]
FILTER = ps.FILTER
DB = "pgstress_tenants"
BARRIER_KEY = 4242425
# MIGRATE_TENANT_KEY of pg_ext/pg_host.h, as pg_locks shows it
TENANT_LOCK = "locktype = 'advisory' AND classid = 1835624308 AND objsubid = 2"

MIGRATIONS = [
    ("log",
     "CREATE TABLE applied_log (m int NOT NULL, pid int NOT NULL DEFAULT pg_backend_pid());\n"
     "INSERT INTO applied_log (m) VALUES (1);\n"
     "CREATE TABLE items (id int PRIMARY KEY, n int NOT NULL);\n"
     "INSERT INTO items VALUES (1, 0);\n", None),
    ("bump",
     "INSERT INTO applied_log (m) VALUES (2);\n"
     "UPDATE items SET n = n + 1;\n", None),
    ("note",
     "ALTER TABLE items ADD COLUMN note text;\n"
     "UPDATE items SET note = 'noted';\n"
     "INSERT INTO applied_log (m) VALUES (3);\n", None),
    ("index",
     "CREATE INDEX items_note ON items (note);\n"
     "CREATE VIEW item_notes AS SELECT id, note FROM items;\n"
     "INSERT INTO applied_log (m) VALUES (4);\n", None),
]
N = len(MIGRATIONS)

# One line per tenant schema s: its history, applied_log, counter, columns,
# indexes and view, with s's own name written S.
STATE = r"""
CREATE FUNCTION pgstress.tenant_state(s text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
  log text; pids bigint; items text; cols text; idx text; views text; hist text;
BEGIN
  SELECT count(*) || ' ' || coalesce(string_agg(version, ',' ORDER BY installed_rank), '')
    INTO hist FROM public.migrate_history WHERE tenant = s;
  IF to_regclass(format('%I.applied_log', s)) IS NOT NULL THEN
    EXECUTE format('SELECT string_agg(m::text, '','' ORDER BY m), count(DISTINCT pid) FROM %I.applied_log', s)
      INTO log, pids;
  END IF;
  IF to_regclass(format('%I.items', s)) IS NOT NULL THEN
    EXECUTE format('SELECT string_agg(t::text, '','' ORDER BY id) FROM %I.items t', s) INTO items;
  END IF;
  SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, ', '
                    ORDER BY table_name, ordinal_position)
    INTO cols FROM information_schema.columns WHERE table_schema = s;
  SELECT string_agg(replace(indexdef, ' ' || quote_ident(s) || '.', ' S.'), ', ' ORDER BY indexname)
    INTO idx FROM pg_indexes WHERE schemaname = s;
  SELECT string_agg(viewname || ': ' || replace(definition, quote_ident(s) || '.', 'S.'), ', '
                    ORDER BY viewname)
    INTO views FROM pg_views WHERE schemaname = s;
  RETURN regexp_replace(format('history %s | log %s by %s backends | items %s | columns %s | indexes %s | views %s',
                                hist, log, pids, items, cols, idx, views), '\s+', ' ', 'g');
END $f$;
"""

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def setup(folder):
    """A database from pg_stress's template with the 200 empty tenants and
    the reference schema "ref", migrated on its own."""
    ps.new_db(DB)
    ps.q(DB, STATE,
         "DO $$ BEGIN FOR i IN 0..199 LOOP EXECUTE format('CREATE SCHEMA t%s', lpad(i::text, 3, '0'));"
         " END LOOP; END $$",
         "CREATE SCHEMA ref")
    assert ps.q(DB, "SELECT migrate_apply('%s', 'schema=ref')" % folder) == str(N)
    ref = ps.q(DB, "SELECT pgstress.tenant_state('ref')")
    assert ref.startswith("history %d 1,2,3,4 | log 1,2,3,4 by 1 backends | items (1,1,noted) |" % N), ref
    return ref


def call(folder, tenants, options):
    arr = "ARRAY[%s]" % ", ".join("'%s'" % t for t in tenants)
    return ("SELECT tenant || '|' || applied || '|' || status || '|' || coalesce(sqlstate, '')"
            " || '|' || coalesce(replace(error, E'\\n', ' '), '')"
            " FROM migrate_apply_each('%s', %s, %s)"
            % (folder, arr, "'%s'" % options if options else "NULL"))


def parse(rows):
    """Rows of call(): [(tenant, applied, status, sqlstate, error)]."""
    out = []
    for r in rows:
        tenant, applied, status, sqlstate, error = r.split("|", 4)
        out.append((tenant, int(applied), status, sqlstate, error))
    return out


def race_round(folder, plans, where):
    """plans: per caller (tenants in its order, options).  Releases them
    together; returns per caller (its rows, errors), and the tenant locks
    left once every caller has its result."""
    holder = ps.Conn(DB, "pgstress-holder")
    conns = []
    waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0"
               " AND objid = %d AND objsubid = 1 AND NOT granted AND mode = 'ShareLock'"
               " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
               % BARRIER_KEY)
    try:
        holder.query("SELECT pg_advisory_lock(%d)" % BARRIER_KEY)
        for _ in plans:
            conns.append(ps.Conn(DB, "pgstress-tenants", wait=False))
        for c, (tenants, options) in zip(conns, plans):
            c.started()
            c.query("SET deadlock_timeout = '10ms'")
            c.send("SELECT pg_advisory_lock_shared(%d)" % BARRIER_KEY)
            c.send(call(folder, tenants, options))
        deadline = time.monotonic() + 120
        while int(holder.query(waiting)[0]) != len(plans):
            assert time.monotonic() < deadline, "%s: not every caller reached the barrier" % where
            time.sleep(0.005)
        holder.query("SELECT pg_advisory_unlock(%d)" % BARRIER_KEY)
        results = []
        for c in conns:
            first, second = c.result(), c.result()
            errors = first["errors"] + second["errors"] + [
                n for n in first["notices"] + second["notices"] if n.get("S") not in ("NOTICE", "INFO")]
            results.append((parse(second["rows"]), errors))
        left = holder.query("SELECT count(*) FROM pg_locks WHERE " + TENANT_LOCK)[0]
    finally:
        for c in conns:
            c.close()
        holder.close()
    return results, left


def check_rows(where, results, plans, allowed):
    """Every caller's rows: one per tenant in its order, each status
    allowed (allowed: status -> SQLSTATEs accepted, None for none); returns
    per tenant how many calls applied it."""
    applied = dict.fromkeys(TENANTS, 0)
    counts = {}
    for k, ((rows, errors), (tenants, options)) in enumerate(zip(results, plans)):
        assert not errors, "%s: caller %d (%s): %s" % (where, k, options, errors[:3])
        assert [r[0] for r in rows] == tenants, "%s: caller %d: rows not one per tenant in order" % (where, k)
        for tenant, n, status, sqlstate, error in rows:
            assert status in allowed[k], "%s: caller %d: %s %s %s %s" % (where, k, tenant, status, sqlstate, error)
            ok_states = allowed[k][status]
            assert (sqlstate or None) in ok_states, \
                "%s: caller %d: %s %s with %s: %s" % (where, k, tenant, status, sqlstate, error)
            assert n == (N if status == "applied" else 0), \
                "%s: caller %d: %s %s applied %d" % (where, k, tenant, status, n)
            applied[tenant] += status == "applied"
            counts[status] = counts.get(status, 0) + 1
    return applied, counts


def finish(where, folder, ref, applied, counts, left):
    """The final serial run, then every tenant checked against the
    reference; returns a note."""
    assert left == "0", "%s: %s tenant locks left in pg_locks" % (where, left)
    rows = parse(ps.q(DB, call(folder, TENANTS, None)).splitlines())
    assert [r[0] for r in rows] == TENANTS, "%s: the serial run's rows" % where
    for tenant, n, status, sqlstate, error in rows:
        assert (status, n) in (("up_to_date", 0), ("applied", N)), \
            "%s: serial run: %s %s %s %s" % (where, tenant, status, sqlstate, error)
        applied[tenant] += status == "applied"
    rerun = sum(1 for r in rows if r[2] == "applied")
    twice = [t for t, n in applied.items() if n != 1]
    assert not twice, "%s: tenants not applied by exactly one call: %s" % (
        where, ["%s x%d" % (t, applied[t]) for t in twice[:5]])
    states = ps.q(DB, "SELECT s || ' ' || pgstress.tenant_state(s) FROM unnest(ARRAY[%s]) s ORDER BY s"
                  % ", ".join("'%s'" % t for t in TENANTS)).splitlines()
    bad = [s for s in states if s.split(" ", 1)[1] != ref]
    assert len(states) == len(TENANTS) and not bad, \
        "%s: %d tenants differ from the reference, first: %s\n  want %s" % (where, len(bad), bad[:1], ref)
    extra = ps.q(DB, "SELECT count(*) FROM migrate_progress",
                 "SELECT count(*) FROM migrate_history WHERE tenant ~ '^t[0-9]{3}$'").splitlines()
    assert extra == ["0", str(N * len(TENANTS))], "%s: progress rows, history rows: %s" % (where, extra)
    return "%s; serial rerun applied %d" % (", ".join("%s %d" % kv for kv in sorted(counts.items())), rerun)


def variant(t, name, plans_of, allowed_of):
    folder = ps.write_folder(os.path.join(t, "m"), MIGRATIONS)
    rng = random.Random(SEED)
    notes = []
    for r in range(ROUNDS):
        where = "%s, round %d" % (name, r + 1)
        ref = setup(folder)
        plans = plans_of(rng)
        t0 = time.monotonic()
        results, left = race_round(folder, plans, where)
        took = time.monotonic() - t0
        applied, counts = check_rows(where, results, plans, allowed_of(plans))
        notes.append("%s (race %.1f s)" % (finish(where, folder, ref, applied, counts, left), took))
        ps.drop_db(DB)
    return "%d rounds of %d callers x %d tenants x %d migrations: %s" % (
        ROUNDS, CALLERS, len(TENANTS), N, "; ".join(notes))


def shuffled(rng):
    order = list(TENANTS)
    rng.shuffle(order)
    return order


FINE = {"applied": (None,), "up_to_date": (None,)}


@test
def same_order_16_callers_wait(t):
    return variant(t, "same order",
                   lambda rng: [(list(TENANTS), None)] * CALLERS,
                   lambda plans: [FINE] * len(plans))


@test
def own_order_16_callers_wait(t):
    deadlocked = dict(FINE, failed=("40P01",))
    return variant(t, "own order",
                   lambda rng: [(shuffled(rng), "on_error=continue") for _ in range(CALLERS)],
                   lambda plans: [deadlocked] * len(plans))


@test
def half_skip_if_locked(t):
    skipping = dict(FINE, skipped_locked=(None,))
    return variant(t, "half skip",
                   lambda rng: [(shuffled(rng), "wait=0, if_locked=skip") if k % 2 == 0 else
                                (list(TENANTS), None) for k in range(CALLERS)],
                   lambda plans: [skipping if o else FINE for _, o in plans])


def main():
    run_tests = [f for f in TESTS if FILTER in f.__name__]
    failed = 0
    started = time.monotonic()
    print("# pg_tenants_stress: %d callers, %d tenants, %d rounds per variant, seed %d"
          % (CALLERS, len(TENANTS), ROUNDS, SEED))
    sys.stdout.flush()
    try:
        ps.make_template()
    except Exception:
        print("not ok 1 - pg-tenants-stress: a template database with the extension")
        for ln in traceback.format_exc().splitlines()[-8:]:
            print("#   " + ln)
        return 1
    for i, f in enumerate(run_tests, 1):
        t = tempfile.mkdtemp(prefix="fx_", dir=ps.TMP)
        os.chmod(t, 0o755)
        t0 = time.monotonic()
        try:
            note = f(t)
            print("ok %d - pg-tenants-stress: %s" % (i, f.__name__))
            print("#   %s (%.1f s)" % (note, time.monotonic() - t0))
        except Exception:
            failed += 1
            print("not ok %d - pg-tenants-stress: %s" % (i, f.__name__))
            for ln in traceback.format_exc().splitlines()[-12:]:
                print("#   " + ln)
        finally:
            shutil.rmtree(t, ignore_errors=True)
        sys.stdout.flush()
    print("1..%d" % len(run_tests))
    print("# pg-tenants-stress: %d passed, %d failed, %.1f s" % (len(run_tests) - failed, failed,
                                                                time.monotonic() - started))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
