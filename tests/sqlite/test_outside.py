"""Migrations that run outside a transaction on SQLite: the documented
table rebuild under PRAGMA foreign_keys=off, resuming at the failed
statement, the lock file, and the refusals.

    python3 tests/sqlite/test_outside.py [build/migrate] [name-filter]
"""
import fcntl
import multiprocessing
import os
import sqlite3
import sys
import threading
import time

from harness import EXT, main, test

INIT = """-- +goose Up
CREATE TABLE parent(id INTEGER PRIMARY KEY);
CREATE TABLE child(id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id) ON DELETE CASCADE);
INSERT INTO parent VALUES (1);
INSERT INTO child VALUES (10, 1);
"""

REBUILD = """-- +goose NO TRANSACTION
-- +goose Up
PRAGMA foreign_keys=off;
BEGIN;
CREATE TABLE parent_new(id INTEGER PRIMARY KEY, name TEXT DEFAULT 'x');
INSERT INTO parent_new(id) SELECT id FROM parent;
DROP TABLE parent;
ALTER TABLE parent_new RENAME TO parent;
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys=on;
"""


def connect(c, fk=True):
    con = sqlite3.connect(c.db, isolation_level=None, timeout=5)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    if fk:
        con.execute("PRAGMA foreign_keys=on")
    return con


def apply(c, con=None):
    own = con is None
    con = con or connect(c)
    try:
        return con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0]
    finally:
        if own:
            con.close()


def fails(c, *needles, con=None):
    try:
        apply(c, con)
    except sqlite3.OperationalError as e:
        for n in needles:
            assert n in str(e), "expected %r in %s" % (n, e)
        return str(e)
    raise AssertionError("migrate_apply succeeded")


def progress(c):
    try:
        return c.query("SELECT version, statements_done, last_error IS NOT NULL"
                       " FROM migrate_progress")
    except sqlite3.OperationalError:
        return None


@test
def table_rebuild_with_foreign_keys_off_keeps_child_rows(c):
    c.put("1_init.sql", INIT)
    c.put("2_rebuild.sql", REBUILD)
    c.put("3_more.sql", "-- +goose Up\nCREATE TABLE three(x);\n")
    assert apply(c) == 3
    assert c.query("SELECT id, p FROM child") == [(10, 1)], "the rebuild cascaded"
    assert [r[1] for r in c.query("PRAGMA table_info(parent)")] == ["id", "name"]
    assert c.history() == [("1", "init"), ("2", "rebuild"), ("3", "more")]
    assert progress(c) == []
    assert c.query("PRAGMA integrity_check") == [("ok",)]
    # the lock file is free again
    with open(c.db + "-migrate-lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert apply(c) == 0


@test
def failure_resumes_at_the_failed_statement(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_b.up.sql", "-- no-transaction\nCREATE TABLE b1(x);\n"
                        "INSERT INTO nosuch VALUES (1);\nCREATE TABLE b3(x);\n")
    c.put("2_b.down.sql", "DROP TABLE b3; DROP TABLE b1;\n")
    c.put("3_c.up.sql", "CREATE TABLE c(x);\n")
    c.put("3_c.down.sql", "DROP TABLE c;\n")
    err = fails(c, "migration 2 (2_b.up.sql), line 3: no such table: nosuch")
    # the migration before it is committed, the statement before the
    # failure stays done, nothing after it ran
    assert c.tables() == ["a", "b1", "migrate_history", "migrate_progress"], (c.tables(), err)
    assert c.history() == [("1", "a")]
    assert progress(c) == [("2", 1, 1)]
    # the failing statement is fixed; the statement that ran must not run
    # again (CREATE TABLE b1 would fail)
    c.put("2_b.up.sql", "-- no-transaction\nCREATE TABLE b1(x);\n"
                        "CREATE TABLE b2(x);\nCREATE TABLE b3(x);\n")
    assert apply(c) == 2
    assert c.tables() == ["a", "b1", "b2", "b3", "c", "migrate_history", "migrate_progress"]
    assert c.history() == [("1", "a"), ("2", "b"), ("3", "c")]
    assert progress(c) == []
    # recorded with the script as it ran to the end, and rolls back
    assert c.query("SELECT up_sql FROM migrate_history WHERE version = '2'")[0][0].endswith(
        "CREATE TABLE b3(x);\n")
    con = connect(c)
    assert con.execute("SELECT migrate_down(2)").fetchone()[0] == 2
    con.close()
    assert c.tables() == ["a", "b2", "migrate_history", "migrate_progress"]


@test
def an_edit_of_statements_that_ran_is_refused(c):
    c.put("1_b.up.sql", "-- no-transaction\nCREATE TABLE b1(x);\nINSERT INTO nosuch VALUES (1);\n")
    fails(c, "no such table: nosuch")
    c.put("1_b.up.sql", "-- no-transaction\nCREATE TABLE b1(y);\nCREATE TABLE b2(x);\n")
    fails(c, "migrate_apply: migration 1 (1_b.up.sql): its statements that ran outside a"
             " transaction have changed since",
          "1 of its statements ran (its first 37 bytes).")
    assert c.tables() == ["b1", "migrate_history", "migrate_progress"]


@test
def resuming_replays_the_pragmas_that_ran(c):
    c.put("1_init.sql", INIT)
    c.put("2_del.sql", "-- +goose NO TRANSACTION\n-- +goose Up\nPRAGMA foreign_keys=off;\n"
                       "INSERT INTO nosuch VALUES (1);\nDELETE FROM parent;\n")
    fails(c, "no such table: nosuch")
    c.query("CREATE TABLE nosuch(x)")
    con = connect(c, fk=True)       # a new connection, foreign keys on
    assert apply(c, con) == 1
    con.close()
    assert c.query("SELECT count(*) FROM parent") == [(0,)]
    assert c.query("SELECT id FROM child") == [(10,)], "DELETE cascaded: the PRAGMA was not replayed"


@test
def inside_a_callers_transaction_it_is_refused(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_b.up.sql", "-- no-transaction\nCREATE TABLE b(x);\n")
    con = connect(c)
    con.execute("BEGIN")
    fails(c, "migration 2 (2_b.up.sql): it must run outside a transaction, and migrate_apply was"
             " called inside one", "HINT:  Call migrate_apply in autocommit mode", con=con)
    con.execute("ROLLBACK")
    con.close()
    assert c.tables() == []


class Runner:
    """Holds the lock file as a connection running migration 2 outside a
    transaction does, until release()."""

    def __init__(self, c):
        self.f = open(c.db + "-migrate-lock", "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        self.f.write("migration 2 (2_b.up.sql) in process 4242")
        self.f.flush()

    def release(self):
        self.f.close()


def marked_second(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_b.up.sql", "-- no-transaction\nCREATE TABLE b(x);\n")


def timed_failure(c, options, *needles, con=None):
    own = con is None
    con = con or connect(c)
    t0 = time.monotonic()
    try:
        con.execute("SELECT migrate_apply(?, ?)", (c.dir, options)).fetchone()
    except sqlite3.OperationalError as e:
        for n in needles:
            assert n in str(e), "expected %r in %s" % (n, e)
        return time.monotonic() - t0
    finally:
        if own:
            con.close()
    raise AssertionError("migrate_apply succeeded")


@test
def a_caller_waits_for_a_migration_running_outside_a_transaction(c):
    marked_second(c)
    r = Runner(c)
    threading.Timer(0.4, r.release).start()
    t0 = time.monotonic()
    assert apply(c) == 2
    assert time.monotonic() - t0 >= 0.35, "it did not wait for the lock file"
    assert c.history() == [("1", "a"), ("2", "b")]


@test
def past_its_wait_a_caller_gets_55P03_naming_the_migration(c):
    marked_second(c)
    r = Runner(c)
    try:
        took = timed_failure(
            c, "wait=300ms",
            "migrate_apply: could not take the migration lock: another connection is applying"
            " migration 2 (2_b.up.sql) in process 4242 outside a transaction",
            "DETAIL:  Waited 300 ms for it to be done.", "HINT:  Retry later")
        assert 0.29 <= took < 3, took
        assert timed_failure(c, "wait=0", "in process 4242 outside a transaction") < 1
        # skip_if_locked: nothing to do here while it runs
        con = connect(c)
        assert con.execute("SELECT migrate_apply(?, 'wait=0, if_locked=skip')",
                           (c.dir,)).fetchone()[0] == 0
        con.close()
        # a roll back waits too: nothing may change under it
        con = connect(c)
        con.execute("PRAGMA busy_timeout=100")
        try:
            con.execute("SELECT migrate_down(1)").fetchone()
            raise AssertionError("migrate_down did not wait")
        except sqlite3.OperationalError as e:
            assert "another connection is applying migration 2" in str(e), e
        con.close()
    finally:
        r.release()
    assert c.history() in (None, []), "something was recorded"
    assert "a" not in c.tables()
    assert apply(c) == 2


@test
def inside_a_transaction_a_caller_does_not_wait(c):
    marked_second(c)
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")   # not marked: may run in a transaction
    r = Runner(c)
    con = connect(c)
    con.execute("BEGIN")
    try:
        took = timed_failure(
            c, "", "another connection is applying migration 2 (2_b.up.sql) in process 4242",
            "DETAIL:  Inside a transaction the call cannot wait for it",
            "HINT:  Call migrate_apply in autocommit mode", con=con)
        assert took < 2, took
        assert con.in_transaction, "the caller's transaction was ended"
        con.execute("ROLLBACK")
    finally:
        con.close()
        r.release()
    assert apply(c) == 2


def race(db, folder, barrier, out):
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    barrier.wait()
    try:
        out.put(con.execute("SELECT migrate_apply(?)", (folder,)).fetchone()[0])
    except Exception as e:      # reported, not raised, in the parent
        out.put(repr(e))
    con.close()


@test
def callers_at_once_one_applies_the_others_wait(c):
    c.put("1_init.sql", INIT)
    # a rebuild slow enough for every other caller to arrive in the middle
    c.put("2_rebuild.sql", REBUILD.replace(
        "PRAGMA foreign_key_check;",
        "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)"
        " INSERT INTO parent(id) SELECT i FROM n;\nPRAGMA foreign_key_check;"))
    c.put("3_more.sql", "-- +goose Up\nCREATE TABLE three(x);\n")
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=race, args=(c.db, c.dir, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    got = sorted((out.get(timeout=60) for _ in procs), key=str)
    for p in procs:
        p.join()
    assert got == [0] * (n - 1) + [3], got
    assert c.history() == [("1", "init"), ("2", "rebuild"), ("3", "more")]
    assert c.query("SELECT count(*) FROM parent") == [(200000,)]
    assert c.query("SELECT id, p FROM child") == [(10, 1)]


def lock_file_held(c):
    try:
        with open(c.db + "-migrate-lock") as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
    return False


@test
def a_waiting_caller_takes_over_when_the_runner_is_killed(c):
    rows = 4000000      # about a second of inserting here
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_big.up.sql", "-- no-transaction\nCREATE TABLE big(x);\n"
                          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                          " WHERE i < %d) INSERT INTO big SELECT i FROM n;\n"
                          "CREATE TABLE after_big(x);\n" % rows)
    c.put("3_c.up.sql", "CREATE TABLE c(x);\n")
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(1), ctx.Queue()
    runner = ctx.Process(target=race, args=(c.db, c.dir, barrier, out))
    runner.start()
    deadline = time.monotonic() + 20
    while not lock_file_held(c):
        assert time.monotonic() < deadline and runner.is_alive(), "the runner never took the lock file"
        time.sleep(0.005)
    waiter = ctx.Process(target=race, args=(c.db, c.dir, barrier, out))
    waiter.start()
    time.sleep(0.3)
    assert lock_file_held(c), "the insert was done before the kill"
    os.kill(runner.pid, 9)
    runner.join()
    assert out.get(timeout=60) == 2, "the waiter did not finish migrations 2 and 3"
    waiter.join()
    assert c.history() == [("1", "a"), ("2", "big"), ("3", "c")]
    assert c.query("SELECT count(*), max(x) FROM big") == [(rows, rows)]
    assert "after_big" in c.tables() and "c" in c.tables()
    assert progress(c) == []
    assert c.query("PRAGMA integrity_check") == [("ok",)]


@test
def down_sections_of_marked_migrations_run_in_a_transaction(c):
    c.put("1_a.sql", "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE a(x);\n"
                     "-- +goose Down\nDROP TABLE a;\n")
    assert apply(c) == 1
    con = connect(c)
    assert con.execute("SELECT migrate_down(1)").fetchone()[0] == 1
    con.close()
    assert "a" not in c.tables()


if __name__ == "__main__":
    sys.exit(main("outside"))
