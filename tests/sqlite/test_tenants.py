#!/usr/bin/python3
"""Tenants on SQLite (issue 22): schema=S on every function (the database
attached as S migrated as if it were main, on a connection of its own),
the fan-out migrate_apply_each over tenant database files, and
migrate_status_each.  Real databases, the real sqlite3 shell and Python's
sqlite3; every refusal with its exact error and nothing changed.

    tests/sqlite/test_tenants.py [build/migrate] [name-filter]
"""
import fcntl
import hashlib
import io
import json
import os
import subprocess
import sqlite3
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EXT, main, test  # noqa: E402

PY = sys.executable


def connect(c, db=None):
    con = sqlite3.connect(db or c.db, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    return con


def three(c):
    """Three migrations, each with a down file."""
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("1_a.down.sql", "DROP TABLE a;\n")
    c.put("2_b.up.sql", "CREATE TABLE b(x);\nINSERT INTO b VALUES (2);\n")
    c.put("2_b.down.sql", "DROP TABLE b;\n")
    c.put("3_c.up.sql", "CREATE TABLE c(x);\n")
    c.put("3_c.down.sql", "DROP TABLE c;\n")


def tenant(c, name, make=True):
    """The path of tenant file name (an empty database when make)."""
    path = os.path.join(c.root, name)
    if make:
        sqlite3.connect(path).execute("VACUUM").connection.close()
    return path


def rows(path, sql):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def tables(path):
    return sorted(r[0] for r in rows(path, "SELECT name FROM sqlite_schema WHERE type = 'table'"
                                     " AND name NOT LIKE 'sqlite_%'"))


def history(path):
    try:
        return [r[0] for r in rows(path, "SELECT version FROM migrate_history ORDER BY installed_rank")]
    except sqlite3.OperationalError:
        return None


def digest(path):
    """The bytes of a file, and its modification time."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns


def fails(con, sql, args, *needles):
    try:
        con.execute(sql, args).fetchall()
    except sqlite3.Error as e:
        for n in needles:
            assert n in str(e), "expected %r in %s" % (n, e)
        return str(e)
    raise AssertionError("%s succeeded" % sql)


def each(con, source, tenants, options=None):
    """migrate_apply_each's rows: (tenant name, applied, status, sqlstate,
    error)."""
    lst = tenants if isinstance(tenants, str) else json.dumps(tenants)
    if options is None:
        out = con.execute("SELECT * FROM migrate_apply_each(?, ?)", (source, lst)).fetchall()
    else:
        out = con.execute("SELECT * FROM migrate_apply_each(?, ?, ?)", (source, lst, options)).fetchall()
    return [(os.path.basename(r[0]),) + tuple(r[1:]) for r in out]


def statuses(out):
    return [(r[0], r[1], r[2]) for r in out]


class Holder:
    """Another process holding a tenant's write lock (BEGIN IMMEDIATE)
    until release()."""

    def __init__(self, path):
        self.p = subprocess.Popen(
            [PY, "-c", "import sqlite3, sys\n"
             "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "con.execute('BEGIN IMMEDIATE')\n"
             "print('held', flush=True)\n"
             "sys.stdin.read()\n", path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "held"

    def release(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


# ---- schema=S ----

@test
def apply_with_schema_migrates_the_attached_database_as_main(c):
    """Tables, history and call log land in S's file; main is untouched;
    the caller's connection sees the new tables at once."""
    three(c)
    t1 = tenant(c, "t1.db")
    con = connect(c)
    con.execute("ATTACH ? AS t1", (t1,))
    assert con.execute("SELECT migrate_apply(?, 'schema=t1')", (c.dir,)).fetchone()[0] == 3
    assert tables(t1) == ["a", "b", "c", "migrate_calls", "migrate_history"], tables(t1)
    assert history(t1) == ["1", "2", "3"]
    assert tables(c.db) == [], "main unaffected: %s" % tables(c.db)
    # the caller's connection sees S's new schema without anything more
    assert con.execute("SELECT x FROM t1.b").fetchall() == [(2,)]
    assert rows(t1, "SELECT function, migrations, outcome, options FROM migrate_calls") == \
        [("migrate_apply", 3, "ok", "schema=t1")]
    # again: nothing to do, in S
    assert con.execute("SELECT migrate_apply(?, 'schema=t1')", (c.dir,)).fetchone()[0] == 0
    # main is its own: all three pending there
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 3
    assert history(c.db) == ["1", "2", "3"]


@test
def every_function_takes_schema(c):
    """status, validate, plan, script, down, down_to, repair, baseline,
    record and adopt act on the tenant, and main stays as it was."""
    three(c)
    t1 = tenant(c, "t1.db")
    con = connect(c)
    con.execute("ATTACH ? AS t1", (t1,))
    q = lambda sql, *a: con.execute(sql, a).fetchall()  # noqa: E731
    # baseline records 1 in S only
    assert q("SELECT migrate_baseline(?, '1', 'schema=t1')", c.dir) == [(1,)]
    assert history(t1) == ["1"] and history(c.db) is None
    assert q("SELECT version, state FROM migrate_status(?, 'schema=t1')", c.dir) == \
        [("1", "applied"), ("2", "pending"), ("3", "pending")]
    assert q("SELECT version FROM migrate_plan(?, 'schema=t1, target=2')", c.dir) == [("2",)]
    script = q("SELECT migrate_script(?, 'schema=t1')", c.dir)[0][0]
    assert "CREATE TABLE b(x);" in script and "CREATE TABLE a(x);" not in script
    assert q("SELECT migrate_apply(?, 'schema=t1')", c.dir) == [(2,)]
    assert q("SELECT migrate_down(1, 'schema=t1')") == [(1,)]
    assert history(t1) == ["1", "2"]
    assert q("SELECT migrate_down_to('1', 'schema=t1')") == [(1,)]
    assert history(t1) == ["1"]
    # an applied file edited: validate and repair see it in S
    assert q("SELECT migrate_apply(?, 'schema=t1')", c.dir) == [(2,)]
    c.put("3_c.up.sql", "CREATE TABLE c(x, y);\n")
    assert q("SELECT version, problem FROM migrate_validate(?, 'schema=t1')", c.dir) == [("3", "changed")]
    assert q("SELECT * FROM migrate_validate(?)", c.dir) == [], "main has no history"
    assert q("SELECT migrate_repair(?, 'schema=t1')", c.dir) == [(1,)]
    assert rows(t1, "SELECT version, action FROM migrate_repairs") == [("3", "repair")]
    # record: a migration that ran elsewhere
    c.put("4_d.up.sql", "CREATE TABLE d(x);\n")
    assert q("SELECT migrate_record(?, '4', 'schema=t1')", c.dir) == [(1,)]
    assert history(t1) == ["1", "2", "3", "4"] and "d" not in tables(t1)
    # main never got anything
    assert tables(c.db) == [], tables(c.db)


@test
def adopt_takes_no_tenant_its_schema_is_the_other_tools(c):
    """For adopt, schema= names where the other tool's table is (the
    core's MIG_OPTIONS_ADOPT), never a tenant: the other tool's table is read in
    t1, the history is the caller's main, and t1 gets no history of ours."""
    three(c)
    t1 = tenant(c, "t1.db")
    o = sqlite3.connect(t1)
    o.execute("CREATE TABLE schema_migrations(version INTEGER, dirty INTEGER)")
    o.execute("INSERT INTO schema_migrations VALUES (2, 0)")
    o.commit()
    o.close()
    con = connect(c)
    con.execute("ATTACH ? AS t1", (t1,))
    assert con.execute("SELECT migrate_adopt(?, 'schema=t1')", (c.dir,)).fetchone()[0] == 2
    assert history(t1) is None and history(c.db) == ["1", "2"]


@test
def impact_with_schema_measures_the_tenant(c):
    """migrate_impact reads apply's options: with schema=S its pending
    migrations are S's and the relations it measures are S's (on S's own
    connection, where S is main)."""
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_i.up.sql", "CREATE INDEX ia ON a(x);\n")
    t1 = tenant(c, "t1.db")
    con = connect(c)
    con.execute("ATTACH ? AS t1", (t1,))
    assert con.execute("SELECT migrate_apply(?, 'schema=t1, target=1')", (c.dir,)).fetchone()[0] == 1
    con.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)"
                " INSERT INTO t1.a SELECT i FROM n")
    q = "SELECT version, relation, relation_rows FROM migrate_impact(?, ?)"
    assert con.execute(q, (c.dir, "schema=t1")).fetchall() == [("2", "main.a", 1000)]
    assert [r[0] for r in con.execute("SELECT version FROM migrate_impact(?)", (c.dir,))] == ["1", "2"]
    assert history(t1) == ["1"] and tables(c.db) == []


@test
def schema_main_is_the_default(c):
    three(c)
    con = connect(c)
    assert con.execute("SELECT migrate_apply(?, 'schema=main')", (c.dir,)).fetchone()[0] == 3
    assert history(c.db) == ["1", "2", "3"]
    # inside the caller's transaction, as without schema=: its COMMIT decides
    con.execute("BEGIN")
    assert con.execute("SELECT migrate_down(1, 'schema=MAIN')").fetchone()[0] == 1
    con.execute("ROLLBACK")
    assert history(c.db) == ["1", "2", "3"]


@test
def schema_refusals_change_nothing(c):
    """temp, an unknown name, an in-memory attachment, a transaction of the
    caller on S, an option the function does not take: each refused with
    its error, S's file byte for byte as before."""
    three(c)
    t1 = tenant(c, "t1.db")
    before = digest(t1)
    con = connect(c)
    con.execute("ATTACH ? AS t1", (t1,))
    con.execute("ATTACH ':memory:' AS mem")
    con.execute("ATTACH '' AS anon")
    ap = "SELECT migrate_apply(?, ?)"
    fails(con, ap, (c.dir, "schema=temp"), 'migrate_apply: database "temp" cannot be a tenant')
    fails(con, ap, (c.dir, "schema=nope"), 'migrate_apply: database "nope" is not attached',
          'ATTACH the tenant\'s database file AS "nope" first.')
    fails(con, ap, (c.dir, "schema=mem"), 'database "mem" cannot be a tenant: it is in memory')
    fails(con, ap, (c.dir, "schema=anon"), 'database "anon" cannot be a tenant: it is in memory')
    fails(con, "SELECT * FROM migrate_status(?, ?)", (c.dir, "schema=nope"),
          'migrate_status: database "nope" is not attached')
    fails(con, "SELECT migrate_down(1, ?)", ("target=3",), 'migrate_down: unknown option "target"',
          "The options are schema.")
    fails(con, ap, (c.dir, "schema="), "option schema takes a schema name of 1 to 63 bytes")
    # the caller reads S in a transaction: the tenant's connection would
    # wait for it; refused
    con.execute("BEGIN")
    con.execute("SELECT count(*) FROM t1.sqlite_schema").fetchall()
    fails(con, ap, (c.dir, "schema=t1"),
          'migrate_apply: this connection has a read transaction open on database "t1"')
    con.execute("CREATE TABLE main.w(x)")
    fails(con, "SELECT migrate_down(1, 'schema=t1')", (),
          'this connection has a read transaction open on database "t1"')
    con.execute("ROLLBACK")
    assert digest(t1) == before, "nothing changed in S"
    assert tables(c.db) == []
    # a transaction on main only: S commits on its own connection
    con.execute("BEGIN")
    con.execute("CREATE TABLE main.w(x)")
    assert con.execute(ap, (c.dir, "schema=t1")).fetchone()[0] == 3
    con.execute("ROLLBACK")
    assert history(t1) == ["1", "2", "3"] and tables(c.db) == []


@test
def the_same_file_attached_twice_in_a_transaction_is_refused(c):
    """S is main's own file attached again, and the caller writes main:
    the tenant's connection would wait for the caller."""
    three(c)
    con = connect(c)
    con.execute("ATTACH ? AS again", (c.db,))
    con.execute("BEGIN")
    con.execute("CREATE TABLE w(x)")
    fails(con, "SELECT migrate_apply(?, 'schema=again')", (c.dir,),
          'is database "main" of this connection, which has a transaction open on it')
    con.execute("ROLLBACK")


@test
def the_callers_busy_timeout_and_lock_options_are_carried_over(c):
    three(c)
    t1 = tenant(c, "t1.db")
    con = connect(c)
    con.execute("ATTACH ? AS t1", (t1,))
    con.execute("PRAGMA busy_timeout = 300")
    h = Holder(t1)
    try:
        t0 = time.monotonic()
        fails(con, "SELECT migrate_apply(?, 'schema=t1')", (c.dir,),
              "could not take the migration lock", "for more than 300 ms")
        took = time.monotonic() - t0
        assert 0.25 < took < 5, took
        assert con.execute("SELECT migrate_apply(?, 'schema=t1, wait=0, if_locked=skip')",
                           (c.dir,)).fetchone()[0] == 0
    finally:
        h.release()
    assert con.execute("PRAGMA busy_timeout").fetchone()[0] == 300
    assert con.execute("SELECT migrate_apply(?, 'schema=t1')", (c.dir,)).fetchone()[0] == 3
    # the rows of the calls that failed or skipped could not be written
    # while the other process held the database (best effort, no wait)
    assert [r[0] for r in rows(t1, "SELECT outcome FROM migrate_calls ORDER BY id")] == ["ok"]


@test
def the_callers_foreign_keys_setting_is_the_tenants(c):
    """A migration on S behaves as on main: with foreign keys on in the
    caller's connection, a violation fails on S too."""
    c.put("1_p.up.sql", "CREATE TABLE p(id INTEGER PRIMARY KEY);\n"
          "CREATE TABLE k(p INTEGER REFERENCES p(id));\nINSERT INTO k VALUES (7);\n")
    t1 = tenant(c, "t1.db")
    t2 = tenant(c, "t2.db")
    con = connect(c)
    con.execute("ATTACH ? AS t1", (t1,))
    con.execute("ATTACH ? AS t2", (t2,))
    assert con.execute("SELECT migrate_apply(?, 'schema=t1')", (c.dir,)).fetchone()[0] == 1
    con.execute("PRAGMA foreign_keys = ON")
    fails(con, "SELECT migrate_apply(?, 'schema=t2')", (c.dir,), "FOREIGN KEY constraint failed")
    assert history(t2) is None


@test
def outside_a_transaction_a_tenant_has_its_own_lock_file(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_b.up.sql", "-- no-transaction\nPRAGMA foreign_keys=OFF;\nCREATE TABLE b(x);\n")
    t1 = tenant(c, "t1.db")
    con = connect(c)
    con.execute("ATTACH ? AS t1", (t1,))
    assert con.execute("SELECT migrate_apply(?, 'schema=t1')", (c.dir,)).fetchone()[0] == 2
    assert os.path.exists(t1 + "-migrate-lock")
    assert not os.path.exists(c.db + "-migrate-lock")
    assert tables(t1) == ["a", "b", "migrate_calls", "migrate_history", "migrate_progress"]
    # another process holding S's lock file: the caller waits within wait=
    with open(t1 + "-migrate-lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        c.put("3_c.up.sql", "CREATE TABLE c(x);\n")
        fails(con, "SELECT migrate_apply(?, 'schema=t1, wait=100ms')", (c.dir,),
              "another connection is applying a migration outside a transaction")
        # main's own lock is another file: main applies meanwhile
        assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 3


@test
def an_attached_uri_with_parameters_is_opened_as_the_file_sqlite_opened(c):
    """A database attached with a URI (file:...?mode=rw&cache=shared) is
    opened as the file SQLite resolved, without its parameters."""
    three(c)
    t1 = tenant(c, "t1.db")
    con = sqlite3.connect("file:%s?mode=rwc" % c.db, uri=True, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    con.execute("ATTACH ? AS t1", ("file:%s?mode=rw" % t1,))
    assert con.execute("SELECT migrate_apply(?, 'schema=t1')", (c.dir,)).fetchone()[0] == 3
    assert history(t1) == ["1", "2", "3"]
    # read-only attached: the tenant's own connection is read-write (the
    # file's rights decide), as for main
    con.execute("DETACH t1")
    con.execute("ATTACH ? AS t1", ("file:%s?mode=ro" % t1,))
    assert con.execute("SELECT migrate_down(1, 'schema=t1')").fetchone()[0] == 1


# ---- the fan-out ----

@test
def apply_each_reports_every_status(c):
    """applied, up_to_date, failed (a failing migration, a missing file),
    skipped_locked, in one call with on_error=continue."""
    three(c)
    a, b, bad, locked = (tenant(c, n) for n in ("a.db", "b.db", "bad.db", "locked.db"))
    missing = tenant(c, "missing.db", make=False)
    con = connect(c)
    assert each(con, c.dir, [b]) == [("b.db", 3, "applied", None, None)]
    sqlite3.connect(bad).execute("CREATE TABLE c(x)").connection.close()
    h = Holder(locked)
    try:
        out = each(con, c.dir, [a, b, bad, missing, locked], "on_error=continue, wait=0, if_locked=skip")
    finally:
        h.release()
    assert out == [
        ("a.db", 3, "applied", None, None),
        ("b.db", 0, "up_to_date", None, None),
        ("bad.db", 0, "failed", "42000", "migration 3 (3_c.up.sql), line 1: table c already exists"),
        ("missing.db", 0, "failed", "58P01", 'tenant database "%s" does not exist' % missing),
        ("locked.db", 0, "skipped_locked", None, None),
    ], out
    assert not os.path.exists(missing), "a missing tenant is never created"
    # a failed tenant is as before: the whole call of it rolled back
    assert history(bad) is None and tables(bad) == ["c", "migrate_calls"]
    assert history(a) == ["1", "2", "3"]
    # its call log row is its own
    assert rows(bad, "SELECT function, outcome, sqlstate FROM migrate_calls") == \
        [("migrate_apply_each", "error", "42000")]
    # the skipped call's row could not be written while the other process
    # held the database (best effort, no wait): nothing at all there
    assert tables(locked) == []
    assert rows(a, "SELECT function, migrations, versions, outcome FROM migrate_calls") == \
        [("migrate_apply_each", 3, "1, 2, 3", "ok")]
    assert tables(c.db) == [], "the caller's database got nothing"


@test
def on_error_stop_leaves_the_rest_not_reached_and_a_rerun_picks_them_up(c):
    three(c)
    ts = [tenant(c, "t%d.db" % i) for i in range(5)]
    sqlite3.connect(ts[2]).execute("CREATE TABLE b(x)").connection.close()
    con = connect(c)
    out = each(con, c.dir, ts)
    assert statuses(out) == [("t0.db", 3, "applied"), ("t1.db", 3, "applied"),
                             ("t2.db", 0, "failed"), ("t3.db", 0, "not_reached"),
                             ("t4.db", 0, "not_reached")], out
    assert out[2][4] == "migration 2 (2_b.up.sql), line 1: table b already exists"
    assert out[3][3] is None and out[3][4] is None
    assert [history(t) for t in ts] == [["1", "2", "3"], ["1", "2", "3"], None, None, None]
    assert rows(ts[3], "SELECT count(*) FROM sqlite_schema") == [(0,)], "not reached: not opened for writing"
    # fixed, the second call applies to exactly the failed and unreached
    sqlite3.connect(ts[2]).execute("DROP TABLE b").connection.close()
    out = each(con, c.dir, ts)
    assert statuses(out) == [("t0.db", 0, "up_to_date"), ("t1.db", 0, "up_to_date"),
                             ("t2.db", 3, "applied"), ("t3.db", 3, "applied"),
                             ("t4.db", 3, "applied")], out
    for t in ts:
        assert history(t) == ["1", "2", "3"]
        assert rows(t, "SELECT count(*) FROM migrate_history") == [(3,)]


@test
def canary_stops_after_the_first_n_when_one_failed(c):
    three(c)
    ts = [tenant(c, "t%d.db" % i) for i in range(5)]
    sqlite3.connect(ts[0]).execute("CREATE TABLE a(x)").connection.close()
    con = connect(c)
    out = each(con, c.dir, ts, "canary=2, on_error=continue")
    assert statuses(out) == [("t0.db", 0, "failed"), ("t1.db", 3, "applied"),
                             ("t2.db", 0, "not_reached"), ("t3.db", 0, "not_reached"),
                             ("t4.db", 0, "not_reached")], out
    # the canaries pass: all of them
    sqlite3.connect(ts[0]).execute("DROP TABLE a").connection.close()
    out = each(con, c.dir, ts, "canary=2")
    assert [r[2] for r in out] == ["applied", "up_to_date", "applied", "applied", "applied"], out
    # with on_error=continue a failure after the canaries does not stop it
    c.put("4_d.up.sql", "CREATE TABLE d(x);\n")
    sqlite3.connect(ts[3]).execute("CREATE TABLE d(x)").connection.close()
    out = each(con, c.dir, ts, "canary=1, on_error=continue")
    assert [r[2] for r in out] == ["applied", "applied", "applied", "failed", "applied"], out


@test
def apply_each_options_and_arguments(c):
    """Argument errors raise (nothing opened); the apply options reach
    each tenant."""
    three(c)
    a = tenant(c, "a.db")
    before = digest(a)
    con = connect(c)
    q = "SELECT * FROM migrate_apply_each(?, ?, ?)"
    fails(con, q, (c.dir, json.dumps([a]), "parallel=2"),
          "migrate_apply_each: parallel=2 is not available on SQLite",
          "run it in several processes")
    fails(con, q, (c.dir, json.dumps([a]), "schema=x"), 'unknown option "schema"')
    fails(con, q, (c.dir, json.dumps([a]), "on_error=maybe"),
          "option on_error takes stop or continue")
    fails(con, q, (c.dir, json.dumps([a, 3]), ""), "tenant 2 of the list is integer, not a database file path")
    fails(con, q, (c.dir, "[1,", ""), "the list of tenants is not valid JSON")
    fails(con, q, (c.dir, 42, ""), "the tenants must be a JSON array of database file paths")
    fails(con, q, (c.dir, "", ""), "a tenant's database path is empty")
    fails(con, "SELECT * FROM migrate_apply_each(?)", (c.dir,), "give the tenants")
    assert digest(a) == before
    assert each(con, c.dir, []) == []
    # parallel=1: one at a time, which is what it does
    assert each(con, c.dir, a, "parallel=1, target=2") == [("a.db", 2, "applied", None, None)]
    assert history(a) == ["1", "2"]


@test
def a_bad_folder_raises_before_any_tenant_is_opened(c):
    three(c)
    c.put("2_dup.up.sql", "CREATE TABLE dup(x);\n")
    a = tenant(c, "a.db")
    before = digest(a)
    con = connect(c)
    fails(con, "SELECT * FROM migrate_apply_each(?, ?)", (c.dir, json.dumps([a])),
          "migrate_apply_each: ", "2_b.up.sql", "2_dup.up.sql", "No tenant was opened.")
    assert digest(a) == before


@test
def apply_each_takes_the_folder_as_data(c):
    three(c)
    ts = [tenant(c, "t%d.db" % i) for i in range(3)]
    con = connect(c)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(c.dir, arcname=".")
    out = each(con, buf.getvalue(), ts[:2])
    assert [r[2] for r in out] == ["applied", "applied"], out
    src = json.dumps({"1_a.up.sql": "CREATE TABLE a(x);\n"})
    assert each(con, src, ts[2]) == [("t2.db", 1, "applied", None, None)]
    assert rows(ts[0], "SELECT source FROM migrate_calls")[0][0].startswith("archive sha256:")
    # the checksums are the folder's: the folder finds them up to date
    assert [r[2] for r in each(con, c.dir, ts[:2])] == ["up_to_date", "up_to_date"]


@test
def outside_a_transaction_each_tenant_has_its_own_lock_file(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_b.up.sql", "-- no-transaction\nPRAGMA foreign_keys=OFF;\nBEGIN;\n"
          "CREATE TABLE b(x);\nCOMMIT;\n")
    ts = [tenant(c, "t%d.db" % i) for i in range(3)]
    con = connect(c)
    with open(ts[1] + "-migrate-lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        out = each(con, c.dir, ts, "on_error=continue, wait=100ms")
    assert [r[2] for r in out] == ["applied", "failed", "applied"], out
    assert out[1][3] == "55P03" and "another connection is applying" in out[1][4], out
    assert history(ts[1]) is None, "a held lock file: nothing applied"
    for t in (ts[0], ts[2]):
        assert history(t) == ["1", "2"] and os.path.exists(t + "-migrate-lock")
    assert [r[2] for r in each(con, c.dir, ts)] == ["up_to_date", "applied", "up_to_date"]


@test
def a_tenant_path_that_is_not_a_regular_file_fails(c):
    three(c)
    real = tenant(c, "real.db")
    link = os.path.join(c.root, "link.db")
    os.symlink(real, link)
    d = os.path.join(c.root, "dir.db")
    os.mkdir(d)
    fifo = os.path.join(c.root, "fifo.db")
    os.mkfifo(fifo)
    con = connect(c)
    out = each(con, c.dir, [link, d, fifo], "on_error=continue")
    assert out == [
        ("link.db", 0, "failed", "42501", 'tenant database "%s" is a symbolic link' % link),
        ("dir.db", 0, "failed", "42501", 'tenant database "%s" is a directory' % d),
        ("fifo.db", 0, "failed", "42501", 'tenant database "%s" is not a regular file' % fifo),
    ], out
    assert history(real) is None


@test
def the_callers_own_database_in_a_transaction_is_refused(c):
    three(c)
    con = connect(c)
    con.execute("BEGIN")
    con.execute("CREATE TABLE w(x)")
    out = each(con, c.dir, [c.db])
    con.execute("ROLLBACK")
    assert out[0][2] == "failed" and out[0][3] == "25001", out
    assert out[0][4] == 'tenant "%s" is database "main" of this connection, which has a transaction' \
        ' open on it' % c.db, out
    # the statement reading migrate_apply_each holds main's read lock
    # itself: waiting for it would never end
    out = each(con, c.dir, [c.db])
    assert out[0][2:4] == ("failed", "25001"), out
    assert history(c.db) is None


@test
def verbose_shows_a_line_per_tenant(c):
    three(c)
    a, b = tenant(c, "a.db"), tenant(c, "b.db")
    rc, out, err = c.shell("SELECT status FROM migrate_apply_each('%s', json_array('%s', '%s'),"
                           " 'verbose=true')" % (c.dir, a, b))
    assert rc == 0, err
    assert out.split() == ["applied", "applied"]
    assert "migrate_apply_each: tenant 1 of 2, %s: applied 3" % a in err, err
    assert "migrate_apply_each: tenant 2 of 2, %s: applied 3" % b in err, err
    rc, out, err = c.shell("SELECT status FROM migrate_apply_each('%s', json_array('%s'),"
                           " 'verbose=false')" % (c.dir, a))
    assert rc == 0 and out == "up_to_date" and err == "", err


@test
def the_sqlite3_shell_fans_out_over_a_table_of_tenants(c):
    three(c)
    ts = [tenant(c, "t%d.db" % i) for i in range(3)]
    c.ok("CREATE TABLE tenants(path TEXT)")
    for t in ts:
        c.ok("INSERT INTO tenants VALUES ('%s')" % t)
    out = c.ok("SELECT count(*), sum(applied) FROM migrate_apply_each('%s',"
               " (SELECT json_group_array(path) FROM tenants))" % c.dir)
    assert out == "3|9", out


@test
def an_up_to_date_tenant_is_read_and_not_written(c):
    """The no-op of the fan-out: a tenant with every migration applied and
    unchanged is checked in a read transaction and left byte for byte as it
    was (no write lock, no journal, no call log row); another connection
    holding its write lock does not make it skipped_locked.  A tenant with
    anything to do (pending, changed) still goes the whole way, under the
    lock."""
    three(c)
    a, b = tenant(c, "a.db"), tenant(c, "b.db")
    con = connect(c)
    assert statuses(each(con, c.dir, [a, b])) == [("a.db", 3, "applied"), ("b.db", 3, "applied")]
    before = [digest(a), digest(b)]
    time.sleep(0.01)  # a write would show in the mtime
    assert each(con, c.dir, [a, b]) == [("a.db", 0, "up_to_date", None, None),
                                        ("b.db", 0, "up_to_date", None, None)]
    assert [digest(a), digest(b)] == before, "a no-op writes nothing"
    assert rows(a, "SELECT count(*) FROM migrate_calls") == [(1,)]
    # another connection holds a's write lock: reading it is still fine
    h = Holder(a)
    try:
        out = each(con, c.dir, [a, b], "wait=0, if_locked=skip")
    finally:
        h.release()
    assert statuses(out) == [("a.db", 0, "up_to_date"), ("b.db", 0, "up_to_date")], out
    assert [digest(a), digest(b)] == before
    # something pending: the lock, then applied exactly once, and logged
    c.put("4_d.up.sql", "CREATE TABLE d(x);\n")
    h = Holder(a)
    try:
        out = each(con, c.dir, [a, b], "wait=0, if_locked=skip")
    finally:
        h.release()
    assert statuses(out) == [("a.db", 0, "skipped_locked"), ("b.db", 1, "applied")], out
    assert history(a) == ["1", "2", "3"] and history(b) == ["1", "2", "3", "4"]
    assert rows(b, "SELECT migrations, versions, outcome FROM migrate_calls ORDER BY id") == \
        [(3, "1, 2, 3", "ok"), (1, "4", "ok")]
    # an applied file changed: refused as before, not up to date
    sqlite3.connect(b).execute("UPDATE migrate_history SET checksum = 'crc32:00000000',"
                               " checksum_norm = NULL, file_id = NULL"
                               " WHERE version = '2'").connection.commit()
    out = each(con, c.dir, [a, b], "on_error=continue")
    assert statuses(out) == [("a.db", 1, "applied"), ("b.db", 0, "failed")], out
    assert out[1][3:] == ("55000", "applied migration 2 has changed since it was applied"), out


# ---- migrate_status_each ----

@test
def status_each_says_where_every_tenant_stands(c):
    three(c)
    up, pend, new, part, chg = (tenant(c, n) for n in ("up.db", "pend.db", "new.db", "part.db", "chg.db"))
    missing = tenant(c, "missing.db", make=False)
    con = connect(c)
    each(con, c.dir, [up, chg])
    each(con, c.dir, pend, "target=1")
    # part: a migration outside a transaction stopped half way
    sqlite3.connect(part).execute("CREATE TABLE z(x)").connection.close()
    c.put("4_d.up.sql", "-- no-transaction\nCREATE TABLE d(x);\nCREATE TABLE z(x);\n")
    each(con, c.dir, part)
    sqlite3.connect(chg).execute("UPDATE migrate_history SET checksum = 'crc32:00000000',"
                                 " checksum_norm = NULL, file_id = NULL"
                                 " WHERE version = '2'").connection.commit()
    out = con.execute("SELECT * FROM migrate_status_each(?, ?)",
                      (c.dir, json.dumps([up, pend, new, part, chg, missing]))).fetchall()
    out = [(os.path.basename(r[0]),) + tuple(r[1:]) for r in out]
    assert out == [
        ("up.db", 3, 1, "3", "pending", None, None),
        ("pend.db", 1, 3, "1", "pending", None, None),
        ("new.db", 0, 4, None, "pending", None, None),
        ("part.db", 3, 1, "3", "partial", None, None),
        ("chg.db", 3, 1, "3", "changed", None, None),
        ("missing.db", None, None, None, "failed", "58P01",
         'tenant database "%s" does not exist' % missing),
    ], out
    each(con, c.dir, up)
    assert con.execute("SELECT state FROM migrate_status_each(?, ?)", (c.dir, up)).fetchall() == \
        [("up_to_date",)]


@test
def status_each_takes_no_lock_and_writes_nothing(c):
    three(c)
    a, b = tenant(c, "a.db"), tenant(c, "b.db")
    con = connect(c)
    each(con, c.dir, [a, b], "target=2")
    before = [digest(a), digest(b)]
    h = Holder(a)
    try:
        with open(b + "-migrate-lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            t0 = time.monotonic()
            out = con.execute("SELECT tenant, applied, pending, state FROM migrate_status_each(?, ?)",
                              (c.dir, json.dumps([a, b]))).fetchall()
            assert time.monotonic() - t0 < 2
    finally:
        h.release()
    assert [r[1:] for r in out] == [(2, 1, "pending"), (2, 1, "pending")], out
    assert [digest(a), digest(b)] == before, "not a byte written"
    # a fresh file gets nothing either (no history created)
    n = tenant(c, "n.db")
    before = digest(n)
    con.execute("SELECT * FROM migrate_status_each(?, ?)", (c.dir, n)).fetchall()
    assert digest(n) == before



# ---- attacks on the fan-out ----

@test
def a_symlink_to_another_tenant_is_refused_and_a_file_listed_twice_applies_once(c):
    """A tenant path that is a symbolic link (here to another tenant) is
    refused (42501) and nothing is opened through it; the same file listed
    twice is migrated once, the later entry finds it up to date."""
    three(c)
    a, b = tenant(c, "a.db"), tenant(c, "b.db")
    link = os.path.join(c.root, "link.db")
    os.symlink(a, link)
    con = connect(c)
    out = each(con, c.dir, [a, link, b, a], "on_error=continue")
    assert out == [("a.db", 3, "applied", None, None),
                   ("link.db", 0, "failed", "42501", 'tenant database "%s" is a symbolic link' % link),
                   ("b.db", 3, "applied", None, None), ("a.db", 0, "up_to_date", None, None)], out
    assert history(a) == ["1", "2", "3"] and history(b) == ["1", "2", "3"]
    assert os.path.islink(link) and rows(a, "SELECT count(*) FROM migrate_history") == [(3,)]


@test
def a_trigger_planted_on_a_tenants_history_fails_that_tenant_only(c):
    """A tenant file whose owner planted a trigger on migrate_history (to
    run code with the migrator's rights) is refused, unchanged; the other
    tenants are applied per on_error=continue."""
    three(c)
    a, evil, b = tenant(c, "a.db"), tenant(c, "evil.db"), tenant(c, "b.db")
    con = connect(c)
    assert statuses(each(con, c.dir, [evil])) == [("evil.db", 3, "applied")]
    c.put("4_d.up.sql", "CREATE TABLE d(x);\n")
    e = sqlite3.connect(evil)
    e.execute("CREATE TABLE loot(x)")
    e.execute("CREATE TRIGGER t_evil AFTER INSERT ON migrate_history"
              " BEGIN INSERT INTO loot VALUES (new.version); END")
    e.commit()
    e.close()
    before = digest(evil)
    out = each(con, c.dir, [a, evil, b], "on_error=continue")
    assert statuses(out) == [("a.db", 4, "applied"), ("evil.db", 0, "failed"),
                             ("b.db", 4, "applied")], out
    assert out[1][3:] == ("42501", 'tenant "%s": migrate_history has a trigger' % evil), out[1]
    assert digest(evil) == before, "the refused tenant is byte for byte as before"
    assert rows(evil, "SELECT count(*) FROM loot") == [(0,)]
    assert history(evil) == ["1", "2", "3"]


@test
def a_failing_migration_in_tenant_k_leaves_k_exactly_as_before(c):
    """Tenant k fails in its second migration: its file is byte for byte
    as before (the whole call of it rolled back, nothing logged outside a
    transaction either), those before it applied, those after it not
    reached (on_error=stop)."""
    three(c)
    ts = [tenant(c, "t%d.db" % i) for i in range(4)]
    k = sqlite3.connect(ts[1])
    k.execute("CREATE TABLE b(x)")
    k.commit()
    k.close()
    con = connect(c)
    out = each(con, c.dir, ts)
    assert statuses(out) == [("t0.db", 3, "applied"), ("t1.db", 0, "failed"),
                             ("t2.db", 0, "not_reached"), ("t3.db", 0, "not_reached")], out
    assert tables(ts[1]) in (["b"], ["b", "migrate_calls"]), tables(ts[1])
    assert history(ts[1]) is None and rows(ts[1], "SELECT count(*) FROM b") == [(0,)]
    assert [tables(t) for t in ts[2:]] == [[], []]


@test
def kill_9_mid_fan_out_then_a_rerun_completes_every_tenant(c):
    """A process running migrate_apply_each over 12 tenants is killed with
    SIGKILL mid-way: every tenant is entirely before (no history, no
    tables) or entirely after (3 applied, 3 tables); the rerun applies
    exactly the rest and everything is then up to date."""
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_big.up.sql",
          "CREATE TABLE big(x);\n"
          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)"
          " INSERT INTO big SELECT randomblob(16) FROM n;\n")
    c.put("3_c.up.sql", "CREATE TABLE c(x);\n")
    ts = [tenant(c, "k%02d.db" % i) for i in range(12)]
    script = ("import sqlite3, sys, json\n"
              "con = sqlite3.connect(':memory:', isolation_level=None)\n"
              "con.enable_load_extension(True)\n"
              "con.load_extension(sys.argv[1])\n"
              "print(con.execute('SELECT count(*) FROM migrate_apply_each(?, ?)',"
              " (sys.argv[2], sys.argv[3])).fetchall())\n")
    p = subprocess.Popen([PY, "-c", script, EXT, c.dir, json.dumps(ts)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait until some tenant is done, then kill mid-way
    deadline = time.time() + 60
    while time.time() < deadline and not any(history(t) for t in ts):
        time.sleep(0.02)
    time.sleep(0.15)
    p.kill()
    p.wait()
    done = [t for t in ts if history(t)]
    for t in ts:
        h = history(t)
        if h:
            assert h == ["1", "2", "3"] and tables(t)[:3] == ["a", "big", "c"], (t, h, tables(t))
            assert rows(t, "SELECT count(*) FROM big") == [(300000,)]
        else:
            assert [x for x in tables(t) if x != "migrate_calls"] == [], (t, tables(t))
    assert 0 < len(done) < len(ts), "the kill landed mid fan-out (%d done)" % len(done)
    con = connect(c)
    out = each(con, c.dir, ts)
    assert [r[2] for r in out] == ["up_to_date" if t in done else "applied" for t in ts], out
    assert all(history(t) == ["1", "2", "3"] for t in ts)
    assert [r[2] for r in each(con, c.dir, ts)] == ["up_to_date"] * len(ts)

if __name__ == "__main__":
    sys.exit(main("tenants"))
