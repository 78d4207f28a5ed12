"""Migrations that run outside a transaction on SQLite: the documented
table rebuild under PRAGMA foreign_keys=off, resuming at the failed
statement, the lock file, and the refusals.

    python3 tests/sqlite/test_outside.py [build/migrate] [name-filter]
"""
import fcntl
import os
import sqlite3
import sys

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


@test
def another_caller_in_the_middle_is_refused_cleanly(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_b.up.sql", "-- no-transaction\nCREATE TABLE b(x);\n")
    with open(c.db + "-migrate-lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)   # as a caller running migration 2 would
        fails(c, "migration 2 (2_b.up.sql): another connection is applying it outside a"
                 " transaction", "-migrate-lock")
        assert c.history() is None or c.history() == [], "migration 1 was committed"
        assert "a" not in c.tables()
    assert apply(c) == 2


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
