"""Migrations that run outside a transaction on SQLite: the documented
table rebuild under PRAGMA foreign_keys=off, resuming at the failed
statement, the lock file, and the refusals.

    python3 tests/sqlite/test_outside.py [build/migrate] [name-filter]
"""
import fcntl
import multiprocessing
import os
import signal
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


def down(c, n=1, con=None):
    own = con is None
    con = con or connect(c)
    try:
        return con.execute("SELECT migrate_down(?)", (n,)).fetchone()[0]
    finally:
        if own:
            con.close()


def down_fails(c, *needles, con=None, n=1):
    try:
        down(c, n, con)
    except sqlite3.OperationalError as e:
        for needle in needles:
            assert needle in str(e), "expected %r in %s" % (needle, e)
        return str(e)
    raise AssertionError("migrate_down succeeded")


def columns(c, table):
    return [r[1] for r in c.query("PRAGMA table_info(%s)" % table)]


@test
def down_sections_of_goose_no_transaction_files_run_outside_a_transaction(c):
    """goose runs both sections of a NO TRANSACTION file without a
    transaction (https://pressly.github.io/goose/documentation/annotations/)."""
    c.put("1_a.sql", "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE a(x);\n"
                     "-- +goose Down\nDROP TABLE a;\n")
    assert apply(c) == 1
    assert c.query("SELECT down_mode FROM migrate_history") == [("outside",)]
    assert down(c) == 1
    assert "a" not in c.tables()
    assert progress(c) == []
    assert not lock_file_held(c)


REBUILD_BOTH_WAYS = """-- +goose NO TRANSACTION
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
-- +goose Down
PRAGMA foreign_keys=off;
BEGIN;
CREATE TABLE parent_old(id INTEGER PRIMARY KEY);
INSERT INTO parent_old(id) SELECT id FROM parent;
DROP TABLE parent;
ALTER TABLE parent_old RENAME TO parent;
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys=on;
"""


@test
def rolling_back_a_table_rebuild_keeps_child_rows(c):
    """The down script of a NO TRANSACTION rebuild runs outside a
    transaction too, so its PRAGMA foreign_keys=off takes effect: the
    DROP TABLE of the parent does not cascade to the child."""
    c.put("1_init.sql", INIT)
    c.put("2_rebuild.sql", REBUILD_BOTH_WAYS)
    con = connect(c, fk=True)
    assert apply(c, con) == 2
    assert columns(c, "parent") == ["id", "name"]
    assert down(c, 1, con) == 1
    assert c.query("SELECT id, p FROM child") == [(10, 1)], "the rollback cascaded"
    assert columns(c, "parent") == ["id"]
    assert c.history() == [("1", "init")]
    assert progress(c) == []
    assert con.execute("PRAGMA foreign_keys").fetchone() == (1,), "foreign keys left off"
    con.close()
    assert c.query("PRAGMA integrity_check") == [("ok",)]
    assert c.query("PRAGMA foreign_key_check") == []


FAILING_DOWN = """-- migrate:up
CREATE TABLE a(x);
CREATE TABLE b(x);
-- migrate:down transaction:false
DROP TABLE b;
INSERT INTO audit_log VALUES ('rolled back');
DROP TABLE a;
"""


def status(c):
    con = connect(c)
    try:
        return con.execute("SELECT version, state, statements_done, last_error IS NOT NULL"
                           " FROM migrate_status(?)", (c.dir,)).fetchall()
    finally:
        con.close()


@test
def a_failing_down_resumes_at_the_failed_statement(c):
    c.put("20240101000000_ab.sql", FAILING_DOWN)
    assert apply(c) == 1
    assert c.query("SELECT down_mode FROM migrate_history") == [("outside",)]
    down_fails(c, "migrate_down: rollback of migration 20240101000000 (20240101000000_ab.sql),"
                  " line 6: no such table: audit_log")
    # the statement before the failure stays done, nothing after it ran
    assert "b" not in c.tables() and "a" in c.tables()
    assert c.history() == [("20240101000000", "ab")]
    assert status(c) == [("20240101000000", "partial_down", 1, 1)]
    # applying now would skip what the half rollback undid: refused
    fails(c, "migration 20240101000000 is half rolled back: 1 statement of its down script ran"
             " outside a transaction", "HINT:  Finish rolling it back first")
    c.query("CREATE TABLE audit_log(msg)")
    # DROP TABLE b would fail if it ran again
    assert down(c) == 1
    assert c.query("SELECT msg FROM audit_log") == [("rolled back",)]
    assert "a" not in c.tables()
    assert c.history() == []
    assert progress(c) == []
    assert status(c) == [("20240101000000", "pending", None, 0)]
    assert apply(c) == 1


@test
def two_downs_outside_a_transaction_in_one_call(c):
    for v in (1, 2):
        c.put("%d_t%d.sql" % (v, v), "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE t%d(x);\n"
                                     "-- +goose Down\nDROP TABLE t%d;\n" % (v, v))
    c.put("3_t3.sql", "-- +goose Up\nCREATE TABLE t3(x);\n-- +goose Down\nDROP TABLE t3;\n")
    assert apply(c) == 3
    assert down(c, 3) == 3
    assert c.tables() == ["migrate_history", "migrate_progress"]
    assert c.history() == [] and progress(c) == []
    assert apply(c) == 3


@test
def rolling_back_inside_a_callers_transaction_is_refused(c):
    c.put("1_a.sql", "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE a(x);\n"
                     "-- +goose Down\nDROP TABLE a;\n")
    c.put("2_b.sql", "-- +goose Up\nCREATE TABLE b(x);\n-- +goose Down\nDROP TABLE b;\n")
    assert apply(c) == 2
    con = connect(c)
    con.execute("BEGIN")
    con.execute("CREATE TABLE mine(x)")
    down_fails(c, "migrate_down: rollback of migration 1 (1_a.sql): its down script must run outside"
                  " a transaction, and migrate_down was called inside one",
               "nothing was rolled back", "HINT:  Call migrate_down in autocommit mode", con=con, n=2)
    assert con.in_transaction, "the caller's transaction was ended"
    con.execute("COMMIT")
    con.close()
    # migration 2's rollback, before it in the same call, was undone too
    assert c.tables() == ["a", "b", "migrate_history", "migrate_progress", "mine"]
    assert c.history() == [("1", "a"), ("2", "b")]


@test
def a_marked_down_section_is_recorded_inside_a_callers_transaction(c):
    """Whether a down script can run is decided when it runs: applying a
    migration whose down section is marked transaction:false inside the
    caller's transaction is fine."""
    c.put("20240101000000_a.sql", "-- migrate:up\nCREATE TABLE a(x);\n"
                                  "-- migrate:down transaction:false\nDROP TABLE a;\n")
    con = connect(c)
    con.execute("BEGIN")
    assert apply(c, con) == 1
    con.execute("COMMIT")
    assert c.query("SELECT down_mode FROM migrate_history") == [("outside",)]
    assert down(c, 1, con) == 1
    con.close()
    assert "a" not in c.tables()


SETTINGS = ["foreign_keys", "recursive_triggers", "legacy_alter_table", "reverse_unordered_selects",
            "automatic_index", "cache_size", "busy_timeout", "locking_mode", "defer_foreign_keys",
            "ignore_check_constraints", "cell_size_check", "synchronous", "temp_store"]

# journal_mode first: a database that enters WAL mode under
# locking_mode=exclusive keeps it until it leaves WAL mode (SQLite's rule)
SETTING_PRAGMAS = ("PRAGMA journal_mode=wal;\nPRAGMA foreign_keys=off;\nPRAGMA recursive_triggers=on;\n"
                   "PRAGMA legacy_alter_table=on;\nPRAGMA reverse_unordered_selects=on;\n"
                   "PRAGMA automatic_index=off;\nPRAGMA cache_size=123;\nPRAGMA busy_timeout=1;\n"
                   "PRAGMA main.locking_mode=exclusive;\nPRAGMA ignore_check_constraints=on;\n"
                   "PRAGMA cell_size_check=on;\nPRAGMA synchronous=off;\nPRAGMA temp_store=memory;\n"
                   "PRAGMA user_version=7;\n")


def settings(con):
    return {name: con.execute("PRAGMA %s" % name).fetchone()[0] for name in SETTINGS}


@test
def the_callers_connection_settings_are_put_back(c):
    """After a migration outside a transaction, failed or not, every
    connection setting it changed is as the caller had it; what it set in
    the database (journal_mode=wal, user_version) stays."""
    c.put("1_init.sql", INIT)
    c.put("2_settings.sql", "-- +goose NO TRANSACTION\n-- +goose Up\n" + SETTING_PRAGMAS +
          "INSERT INTO nosuch VALUES (1);\nCREATE TABLE after(x);\n")
    con = connect(c, fk=True)
    before = settings(con)
    fails(c, "no such table: nosuch", con=con)
    assert settings(con) == before, "changed: %s" % {
        k: v for k, v in settings(con).items() if before[k] != v}
    assert c.query("PRAGMA user_version") == [(7,)]
    assert c.query("PRAGMA journal_mode") == [("wal",)]
    # the exclusive lock is gone: another connection writes
    c.query("CREATE TABLE nosuch(x)")
    # resumed on the same connection: the PRAGMAs are replayed, then put back
    assert apply(c, con) == 1
    assert "after" in c.tables()
    assert settings(con) == before
    con.close()
    # and a migration that succeeds at once, on a new connection
    c.put("3_more.sql", "-- +goose NO TRANSACTION\n-- +goose Up\n" + SETTING_PRAGMAS +
          "CREATE TABLE three(x);\n")
    con = connect(c, fk=True)
    before = settings(con)
    assert apply(c, con) == 1
    assert settings(con) == before
    con.close()


@test
def resume_replays_pragmas_after_statements_that_no_longer_prepare(c):
    """The statements before the resume point are found with SQLite's
    tokenizer, not by preparing them again: CREATE TABLE p_new no longer
    prepares once it ran, and the PRAGMA foreign_keys=OFF after it must
    still be replayed, or the DROP TABLE cascades."""
    c.put("1_init.sql", INIT)
    rebuild = ("-- +goose NO TRANSACTION\n-- +goose Up\n"
               "CREATE TABLE p_new(id INTEGER PRIMARY KEY, name TEXT);\n"
               "PRAGMA foreign_keys=OFF;\n"
               "INSERT INTO p_new(id) SELECT %s FROM parent;\n"
               "DROP TABLE parent;\n"
               "ALTER TABLE p_new RENAME TO parent;\n"
               "PRAGMA foreign_keys=ON;\n")
    c.put("2_rebuild.sql", rebuild % "idd")
    fails(c, "migration 2 (2_rebuild.sql), line 5: no such column: idd")
    assert progress(c) == [("2", 2, 1)]
    c.put("2_rebuild.sql", rebuild % "id")
    con = connect(c, fk=True)
    assert apply(c, con) == 1
    assert con.execute("PRAGMA foreign_keys").fetchone() == (1,)
    con.close()
    assert c.query("SELECT id, p FROM child") == [(10, 1)], "DROP TABLE cascaded"
    assert columns(c, "parent") == ["id", "name"]


@test
def a_script_that_leaves_its_transaction_open_fails(c):
    c.put("1_a.up.sql", "-- no-transaction\nCREATE TABLE a(x);\nBEGIN;\nINSERT INTO a VALUES (1);\n")
    fails(c, "migration 1 (1_a.up.sql), line 5: it ends inside the transaction it opened")
    assert c.query("SELECT count(*) FROM a") == [(0,)]
    assert progress(c) == [("1", 1, 1)]
    c.put("1_a.up.sql", "-- no-transaction\nCREATE TABLE a(x);\nBEGIN;\nINSERT INTO a VALUES (1);\n"
                        "COMMIT;\n")
    assert apply(c) == 1
    assert c.query("SELECT x FROM a") == [(1,)]


def kill_when(c, folder_call, trigger):
    """Runs migrate_apply in a child process whose statement trace calls
    trigger(sql) for each statement; the child SIGKILLs itself when it
    returns True.  Returns how the child ended (-9: killed)."""
    pid = os.fork()
    if pid == 0:
        try:
            con = connect(c)
            con.set_trace_callback(lambda sql: os.kill(os.getpid(), signal.SIGKILL) if trigger(sql) else None)
            con.execute(folder_call, (c.dir,)).fetchall()
            os._exit(0)
        except BaseException:
            os._exit(3)
    _, st = os.waitpid(pid, 0)
    return -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)


EXACTLY_ONCE = ("-- no-transaction\nINSERT INTO t VALUES (1);\nALTER TABLE t ADD COLUMN y;\n"
                "INSERT INTO t VALUES (2, 2);\nINSERT INTO t VALUES (3, 3);\n")


@test
def a_kill_after_a_statement_before_its_progress_does_not_run_it_again(c):
    """Each statement and the progress that covers it commit together: a
    kill -9 when the progress row is about to be written (a statement done,
    its progress not) leaves neither, and the next call runs the statement
    once."""
    c.put("1_t.up.sql", "CREATE TABLE t(x);\n")
    c.put("2_ins.up.sql", EXACTLY_ONCE)
    for after in ("INSERT INTO t VALUES (1)", "ALTER TABLE t ADD COLUMN y", "INSERT INTO t VALUES (2, 2)"):
        seen = [False]

        def trigger(sql, after=after, seen=seen):
            if after in sql:
                seen[0] = True
                return False
            return seen[0] and "UPDATE main.migrate_progress SET done_checksum" in sql
        for suffix in ("", "-journal", "-migrate-lock"):
            if os.path.exists(c.db + suffix):
                os.unlink(c.db + suffix)
        assert kill_when(c, "SELECT migrate_apply(?)", trigger) == -signal.SIGKILL, after
        assert c.history() == [("1", "t")], after
        assert apply(c) == 1, after
        assert c.query("SELECT * FROM t ORDER BY x") == [(1, None), (2, 2), (3, 3)], \
            "killed after %s: %s" % (after, c.query("SELECT * FROM t"))
        assert progress(c) == []


def cpu(fn):
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


@test
def scripts_of_many_statements_run_in_linear_time(c):
    """Preparing statement after statement must not copy the rest of the
    script each time (quadratic: 160,000 INSERTs took 18 s, a 48 MB file
    65 s).  The shape, not the time: applying a file of 12,000 statements (7 MB)
    costs a small multiple of running the same SQL with executescript in
    this process (the quadratic build: 10-16x), in a transaction, in a
    goose section (followed by its Down section: copied once) and outside
    a transaction (where each statement commits: against the same
    statements in autocommit mode)."""
    n = 12000
    body = "".join("INSERT INTO big VALUES (%d, '%s');\n" % (i, "v" * 600) for i in range(n))
    cases = [
        ("1_big.up.sql", "CREATE TABLE big(i, v);\n" + body, "BEGIN;\n%sCOMMIT;\n"),
        ("1_big.sql", "-- +goose Up\nCREATE TABLE big(i, v);\n" + body + "-- +goose Down\nDROP TABLE big;\n",
         "BEGIN;\n%sCOMMIT;\n"),
        ("1_big.sql", "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE big(i, v);\n" + body, "%s"),
    ]
    ratios = []
    for name, text, floor_sql in cases:
        for f in os.listdir(c.dir):
            os.unlink(os.path.join(c.dir, f))
        for db in (c.db, c.db + ".floor"):
            for suffix in ("", "-journal", "-wal"):
                if os.path.exists(db + suffix):
                    os.unlink(db + suffix)
        c.put(name, text)
        con = connect(c)
        con.execute("PRAGMA synchronous=off")     # both sides: CPU, not fsync
        ours = cpu(lambda: apply(c, con))
        con.close()
        floor = sqlite3.connect(c.db + ".floor", isolation_level=None)
        floor.execute("PRAGMA synchronous=off")
        floor.execute("CREATE TABLE big(i, v)")
        base = cpu(lambda: floor.executescript(floor_sql % body))
        floor.close()
        assert c.query("SELECT count(*) FROM big") == [(n,)]
        ratios.append(ours / max(base, 0.005))
    assert all(r < 5 for r in ratios), "not linear: %s times the floor" % ", ".join("%.1f" % r for r in ratios)


@test
def checking_a_big_file_holds_it_once(c):
    """The memory shape: migrate_validate checks each statement of a file
    through SQLite's tokenizer holding the file and one statement at a
    time (it copied the whole file first: twice the file).  Measured with
    SQLite's own allocator high-water mark, which counts the extension's
    memory too."""
    import ctypes
    lib = ctypes.CDLL("libsqlite3.so.0")
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    text = "CREATE TABLE big(v);\n" + "".join("INSERT INTO big VALUES ('%s');\n" % ("v" * 2000)
                                           for _ in range(2000))
    c.put("1_big.up.sql", text)
    con = connect(c)
    base = lib.sqlite3_memory_used()
    lib.sqlite3_memory_highwater(1)
    assert con.execute("SELECT count(*) FROM migrate_validate(?)", (c.dir,)).fetchone() == (0,)
    peak = lib.sqlite3_memory_highwater(0) - base
    con.close()
    assert peak < 1.3 * len(text), "peak %.1f MB for a %.1f MB file" % (peak / 1e6, len(text) / 1e6)


if __name__ == "__main__":
    sys.exit(main("outside"))
