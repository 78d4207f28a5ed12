#!/usr/bin/python3
"""SQLite extension tests, against the real engine.

Every test builds a migration folder in a temporary directory, runs the
real sqlite3 shell with `.load` (or Python's sqlite3 module, a real client
library), and asserts real outcomes: the schema that exists afterwards, the
rows in migrate_history, and the exact error text.  Prints TAP.

    tests/sqlite/test_sqlite.py [build/migrate] [name-filter]
"""
import multiprocessing
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EXT, main, test  # noqa: E402


def base(c):
    c.put("1_users.up.sql", "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\n")
    c.put("1_users.down.sql", "DROP TABLE users;\n")
    c.put("2_posts.up.sql", "CREATE TABLE posts(id INTEGER PRIMARY KEY, body TEXT);\n")
    c.put("2_posts.down.sql", "DROP TABLE posts;\n")


# ---- the main path ----

@test
def apply_status_down_history(c):
    base(c)
    assert c.apply() == 2
    assert c.tables() == ["migrate_history", "posts", "users"]
    assert c.history() == [("1", "users"), ("2", "posts")]
    assert c.apply() == 0, "second call applies nothing"
    rows = c.query("SELECT version, name, up_file, down_file, checksum, up_sql, down_sql,"
                   " applied_at, execution_ms FROM migrate_history ORDER BY installed_rank")
    v, name, up, down, sumv, up_sql, down_sql, at, ms = rows[0]
    assert (up, down) == ("1_users.up.sql", "1_users.down.sql")
    assert sumv.startswith("crc32:") and len(sumv) == 14, sumv
    assert up_sql.startswith("CREATE TABLE users") and down_sql == "DROP TABLE users;\n"
    assert at.endswith("Z") and ms >= 0
    st = c.ok("SELECT version, name, state, file, checksum = applied_checksum, has_down"
              " FROM migrate_status('%s')" % c.dir)
    assert st.splitlines() == ["1|users|applied|1_users.up.sql|1|1",
                               "2|posts|applied|2_posts.up.sql|1|1"], st
    assert c.ok("SELECT migrate_down(1)") == "1"
    assert c.tables() == ["migrate_history", "users"]
    assert c.history() == [("1", "users")]
    assert c.ok("SELECT migrate_down()") == "1", "migrate_down() rolls back one"
    assert c.tables() == ["migrate_history"] and c.history() == []
    assert c.apply() == 2, "apply again after rolling back"


@test
def example_folder_applies(c):
    root = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "blog")
    out = c.ok("SELECT migrate_apply('%s')" % os.path.abspath(root))
    assert out == "4", out
    assert c.query("SELECT * FROM post_counts ORDER BY name") == [("Ada", 1), ("Grace", 1)]
    assert [r[0] for r in c.query("SELECT version FROM migrate_history ORDER BY installed_rank")] \
        == ["1", "2", "3", "10"]


@test
def versions_are_numbers(c):
    for v in ("10", "9", "000011", "2"):
        c.put("%s_t%s.up.sql" % (v, v), "CREATE TABLE t%s(x);" % v)
    assert c.apply() == 4
    assert [r[0] for r in c.history()] == ["2", "9", "10", "11"]
    assert c.query("SELECT up_file FROM migrate_history WHERE version = '11'") == [("000011_t000011.up.sql",)]


@test
def status_states(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);")
    c.put("2_b.up.sql", "CREATE TABLE b(x);")
    c.put("4_d.up.sql", "CREATE TABLE d(x);")
    assert c.apply() == 3
    c.put("1_a.up.sql", "CREATE TABLE a(x, y);")
    c.rm("2_b.up.sql")
    c.put("3_c.up.sql", "CREATE TABLE c(x);")
    c.put("5_e.up.sql", "CREATE TABLE e(x);")
    out = c.ok("SELECT version, state, file IS NULL, applied_at IS NULL FROM migrate_status('%s')" % c.dir)
    assert out.splitlines() == ["1|changed|0|0", "2|missing|1|0", "3|out_of_order|0|1",
                                "4|applied|0|0", "5|pending|0|1"], out
    c.fails("SELECT * FROM migrate_status", "give the migration folder")


@test
def status_before_first_apply(c):
    base(c)
    out = c.ok("SELECT version, state FROM migrate_status('%s')" % c.dir)
    assert out.splitlines() == ["1|pending", "2|pending"]
    assert c.tables() == [], "status creates nothing"


@test
def rollback_after_files_are_gone(c):
    base(c)
    c.apply()
    shutil.rmtree(c.dir)
    assert c.ok("SELECT migrate_down(2)") == "2"
    assert c.tables() == ["migrate_history"] and c.history() == []


@test
def rollback_refusals_change_nothing(c):
    base(c)
    c.put("3_nodown.up.sql", "CREATE TABLE nodown(x);")
    c.apply()
    # a row without a down script (adopted from a tool that keeps none)
    con = sqlite3.connect(c.db)
    con.execute("UPDATE migrate_history SET down_sql = NULL, down_mode = NULL WHERE version = '3'")
    con.commit()
    con.close()
    before = c.snapshot()
    err = c.fails("SELECT migrate_down(2)", "migrate_down: migration 3 has no down script",
                  "Nothing was rolled back")
    assert c.snapshot() == before
    c.fails("SELECT migrate_down(4)", "cannot roll back 4 migrations: only 3 are applied")
    c.fails("SELECT migrate_down(-1)", "must not be negative")
    c.fails("SELECT migrate_down('x')", "must be an integer")
    assert c.ok("SELECT migrate_down(0)") == "0"
    assert c.snapshot() == before


@test
def failing_down_script_rolls_back(c):
    base(c)
    c.apply()
    c.query("SELECT 1")
    con = sqlite3.connect(c.db)
    con.execute("UPDATE migrate_history SET down_sql = 'DROP TABLE posts;\n\nDROP TABLE nope;' WHERE version = '2'")
    con.commit()
    con.close()
    before = c.snapshot()
    c.fails("SELECT migrate_down(1)",
            "migrate_down: rollback of migration 2 (2_posts.down.sql), line 3: no such table: nope")
    assert c.snapshot() == before


@test
def first_call_trusts_only_unchanged_files(c):
    """The history keeps each applied file's identity, so a first call on a
    new connection need not read unchanged files; an edit is still caught,
    and a file written just before it was applied gets no identity."""
    base(c)
    time.sleep(0.3)
    assert c.apply() == 2
    ids = c.query("SELECT file_id FROM migrate_history ORDER BY installed_rank")
    assert all(r[0] and r[0].count(":") == 4 for r in ids), ids
    c.put("3_fresh.up.sql", "CREATE TABLE fresh(x);")
    assert c.apply() == 1
    assert c.query("SELECT file_id FROM migrate_history WHERE version = '3'") == [(None,)]
    c.put("1_users.up.sql", "CREATE TABLE users(id INTEGER PRIMARY KEY, namf TEXT);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "applied migration 1 has changed since it was applied")


@test
def cache_never_hides_an_edit(c):
    """Later calls on a connection check applied files through a checksum
    cache; an edit that keeps the size must still be caught."""
    base(c)
    time.sleep(0.3)
    con = sqlite3.connect(c.db, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 2
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 0
    c.put("2_posts.up.sql", "CREATE TABLE posts(id INTEGER PRIMARY KEY, bodx TEXT);\n")
    try:
        con.execute("SELECT migrate_apply(?)", (c.dir,))
        raise AssertionError("edit not noticed")
    except sqlite3.OperationalError as e:
        assert "applied migration 2 has changed since it was applied" in str(e), str(e)
    con.close()


@test
def apply_options(c):
    """migrate_apply(path, options): a target, out-of-order files applied on
    request, missing files accepted on request; bad options refused."""
    for v in (1, 2, 3, 4):
        c.put("%d_t%d.up.sql" % (v, v), "CREATE TABLE t%d(x);" % v)
    assert c.ok("SELECT migrate_apply('%s', 'target=02')" % c.dir) == "2"
    assert [r[0] for r in c.history()] == ["1", "2"]
    assert c.ok("SELECT migrate_apply('%s', '  target=2 ,')" % c.dir) == "0"
    c.rm("3_t3.up.sql")
    assert c.apply() == 1, "4 applied; 3 not yet written"
    c.put("3_t3.up.sql", "CREATE TABLE t3(x);")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "pending migration 3 (3_t3.up.sql) is older",
            "out_of_order=true")
    assert c.ok("SELECT migrate_apply('%s', 'out_of_order=true')" % c.dir) == "1"
    assert [r[0] for r in c.history()] == ["1", "2", "4", "3"], "in order of application"
    c.rm("1_t1.up.sql")
    c.put("5_t5.up.sql", "CREATE TABLE t5(x);")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "applied migration 1 (1_t1.up.sql) is missing",
            "ignore_missing=true")
    assert c.ok("SELECT migrate_apply('%s', 'ignore_missing=on')" % c.dir) == "1"
    assert c.ok("SELECT state FROM migrate_status('%s') WHERE version = '1'" % c.dir) == "missing"
    before = c.snapshot()
    c.fails("SELECT migrate_apply('%s', 'targett=3')" % c.dir, "unknown option \"targett\"",
            "HINT:  The options are target, out_of_order, ignore_missing, wait, if_locked, lock_timeout, lock_retries, schema, verbose, max_lock, no_rewrite and max_size.")
    c.fails("SELECT migrate_apply('%s', 'target=x')" % c.dir, "target \"x\" is not a migration version")
    c.fails("SELECT migrate_apply('%s', 'out_of_order=maybe')" % c.dir,
            "option out_of_order takes true or false, not \"maybe\"")
    c.fails("SELECT migrate_apply('%s', 'target')" % c.dir, "option \"target\" has no value")
    c.fails("SELECT migrate_apply('%s', 'target=1 target=2')" % c.dir, "option \"target\" is given twice")
    assert c.snapshot() == before


@test
def down_to_a_version(c):
    """migrate_down_to(V) rolls back everything above V, newest applied
    first (also after an out-of-order apply)."""
    for v in (1, 2, 3, 4):
        c.put("%d_t%d.up.sql" % (v, v), "CREATE TABLE t%d(x);" % v)
        c.put("%d_t%d.down.sql" % (v, v), "DROP TABLE t%d;" % v)
    c.rm("3_t3.up.sql")
    c.rm("3_t3.down.sql")
    assert c.apply() == 3
    c.put("3_t3.up.sql", "CREATE TABLE t3(x);")
    c.put("3_t3.down.sql", "DROP TABLE t3;")
    assert c.ok("SELECT migrate_apply('%s', 'out_of_order=true')" % c.dir) == "1"
    c.fails("SELECT migrate_down_to('two')", "\"two\" is not a migration version")
    assert c.ok("SELECT migrate_down_to('02')") == "2"
    assert [r[0] for r in c.history()] == ["1", "2"]
    assert c.tables() == ["migrate_history", "t1", "t2"]
    assert c.ok("SELECT migrate_down_to('2')") == "0", "nothing above 2"
    c.put("5_nodown.up.sql", "CREATE TABLE t5(x);")
    c.rm("3_t3.up.sql")
    c.rm("4_t4.up.sql")
    c.rm("3_t3.down.sql")
    c.rm("4_t4.down.sql")
    assert c.ok("SELECT migrate_apply('%s')" % c.dir) == "1"
    con = sqlite3.connect(c.db)
    con.execute("UPDATE migrate_history SET down_sql = NULL, down_mode = NULL WHERE version = '5'")
    con.commit()
    con.close()
    before = c.snapshot()
    c.fails("SELECT migrate_down_to('0')", "migration 5 has no down script", "Nothing was rolled back")
    assert c.snapshot() == before


# ---- bad input: each a clear error and nothing changed ----

def refused(c, *needles, sql=None):
    before = c.snapshot()
    c.fails(sql or "SELECT migrate_apply('%s')" % c.dir, *needles)
    assert c.snapshot() == before, "database changed"


@test
def bad_file_name(c):
    base(c)
    c.put("3-bad.sql", "SELECT 1;")
    refused(c, "file name \"3-bad.sql\" does not fit any migration layout",
            "HINT:  Migration files are named {version}_{name}.up.sql")
    assert c.tables() == []


@test
def duplicate_version(c):
    base(c)
    c.put("0002_again.up.sql", "CREATE TABLE again(x);")
    refused(c, "more than one file for migration version 2 "
               "(0002_again.up.sql, 2_posts.up.sql, 2_posts.down.sql)",
            "HINT:  Give every migration a version of its own.")


@test
def edited_applied_migration(c):
    base(c)
    c.apply()
    c.put("1_users.up.sql", "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, x);\n")
    c.put("3_more.up.sql", "CREATE TABLE more(x);")
    refused(c, "applied migration 1 has changed since it was applied", "1_users.up.sql")


@test
def missing_applied_migration(c):
    base(c)
    c.apply()
    c.rm("2_posts.up.sql")
    c.rm("2_posts.down.sql")
    c.put("3_more.up.sql", "CREATE TABLE more(x);")
    refused(c, "applied migration 2 (2_posts.up.sql) is missing from")


@test
def out_of_order(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);")
    c.put("3_c.up.sql", "CREATE TABLE c(x);")
    c.apply()
    c.put("2_b.up.sql", "CREATE TABLE b(x);")
    refused(c, "pending migration 2 (2_b.up.sql) is older than the latest applied migration 3")


@test
def each_migration_has_its_own_time_and_end(c):
    """Issue 19: execution_ms is each migration's own time, to the
    microsecond (three decimals), and applied_at is when each one ended:
    migration 1 spins about 50 ms, migration 2 as long again, so 2 ends
    after 1 by about its own time."""
    spin = ("CREATE TABLE %s AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
            " WHERE i < 300000) SELECT count(*) AS c FROM n;\n")
    c.put("1_spin.up.sql", spin % "s1")
    c.put("2_spin.up.sql", spin % "s2")
    assert c.apply() == 2
    (ms1, ms2, gap), = c.query(
        "SELECT (SELECT execution_ms FROM migrate_history WHERE version = '1'),"
        " (SELECT execution_ms FROM migrate_history WHERE version = '2'),"
        " ((SELECT julianday(applied_at) FROM migrate_history WHERE version = '2')"
        "  - (SELECT julianday(applied_at) FROM migrate_history WHERE version = '1')) * 86400000.0")
    for ms in (ms1, ms2):
        assert 5 <= ms < 5000, (ms1, ms2)
        assert ms == round(ms, 3), ms
    assert gap >= 0.9 * ms2 - 2, (gap, ms2)
    assert c.query("SELECT applied_at < (SELECT applied_at FROM migrate_history WHERE version = '2')"
                   " FROM migrate_history WHERE version = '1'") == [(1,)]


@test
def failing_script_is_atomic_and_located(c):
    base(c)
    c.put("3_bad.up.sql", "CREATE TABLE ok3(x);\n-- a comment\nINSERT INTO nope VALUES (1);\n")
    refused(c, "migrate_apply: migration 3 (3_bad.up.sql), line 3: no such table: nope",
            "The 2 migrations this call applied were rolled back with it.")
    assert c.tables() == [], "migrations 1 and 2 of the same call were rolled back too"


@test
def syntax_error_line(c):
    c.put("1_syntax.up.sql", "CREATE TABLE a(x);\nCREATE TABLE b(x);\nCREATE TABLEE c(x);\n")
    refused(c, "migration 1 (1_syntax.up.sql), line 3: near \"TABLEE\": syntax error")


@test
def missing_folder(c):
    refused(c, "could not open directory \"/nonexistent/dir\": No such file or directory",
            sql="SELECT migrate_apply('/nonexistent/dir')")
    c.fails("SELECT * FROM migrate_status('/nonexistent/dir')", "could not open directory")
    c.fails("SELECT migrate_apply(NULL)", "must not be NULL")


@test
def transaction_control_refused(c):
    cases = {
        "BEGIN;": "BEGIN", "begin transaction;": "begin", "COMMIT;": "COMMIT", "END;": "END",
        "ROLLBACK;": "ROLLBACK", "SAVEPOINT s;": "SAVEPOINT", "RELEASE s;": "RELEASE",
        "VACUUM;": "VACUUM", "ATTACH 'x.db' AS x;": "ATTACH", "DETACH x;": "DETACH",
    }
    c.put("1_first.up.sql", "CREATE TABLE first(x);")
    for stmt, word in cases.items():
        c.put("2_txn.up.sql", "CREATE TABLE t(x);\n/* comment */ %s\n" % stmt)
        refused(c, "migration 2 (2_txn.up.sql), line 2: migration files must not control "
                   "transactions: %s is not allowed" % word)
    assert c.tables() == [], "refused before anything ran"


@test
def trigger_bodies_and_semicolons_in_strings(c):
    c.put("1_trig.up.sql",
          "CREATE TABLE t(x TEXT);\nCREATE TABLE log(msg TEXT);\n"
          "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN\n"
          "  INSERT INTO log VALUES ('begin; commit; end;');\n"
          "END;\n"
          "-- COMMIT; in a comment\n/* ROLLBACK; */\n"
          "INSERT INTO t VALUES ('a;b'), ('--not a comment'), ('/*x*/')")  # no final newline
    c.put("1_trig.down.sql", "-- nothing to do\n")
    assert c.apply() == 1
    assert c.query("SELECT x FROM t ORDER BY rowid") == [("a;b",), ("--not a comment",), ("/*x*/",)]
    assert c.query("SELECT count(*) FROM log") == [(3,)]
    assert c.ok("SELECT migrate_down(1)") == "1", "a comment-only down script runs"


@test
def nul_byte_refused(c):
    c.put("1_nul.up.sql", b"CREATE TABLE a(x);\nCREATE TABLE b(x);\0CREATE TABLE c(x);\n")
    refused(c, "migration file \"1_nul.up.sql\" contains a NUL byte", "line 2")


@test
def invalid_utf8_refused(c):
    c.put("1_latin1.up.sql", b"CREATE TABLE a(x);\nINSERT INTO a VALUES ('caf\xe9');\n")
    refused(c, "migration file \"1_latin1.up.sql\" is not valid UTF-8", "line 2")


@test
def bom_and_crlf(c):
    c.put("1_bom.up.sql", b"\xef\xbb\xbfCREATE TABLE a(x);\r\nINSERT INTO a VALUES ('x');\r\n")
    assert c.apply() == 1
    assert c.query("SELECT up_sql FROM migrate_history") == [("CREATE TABLE a(x);\r\nINSERT INTO a VALUES ('x');\r\n",)]
    c.put("2_crlf_err.up.sql", b"CREATE TABLE b(x);\r\n\r\nSELECT * FROM nope;\r\n")
    refused(c, "migration 2 (2_crlf_err.up.sql), line 3: no such table: nope")


@test
def empty_and_comment_only_files(c):
    c.put("1_empty.up.sql", "")
    c.put("2_comment.up.sql", "-- nothing yet\n")
    assert c.apply() == 2
    assert c.history() == [("1", "empty"), ("2", "comment")]


@test
def unsafe_files_refused(c):
    base(c)
    target = os.path.join(c.root, "elsewhere.sql")
    with open(target, "w") as f:
        f.write("CREATE TABLE evil(x);")
    os.symlink(target, os.path.join(c.dir, "3_link.up.sql"))
    refused(c, "file \"%s/3_link.up.sql\" is a symbolic link" % c.dir)
    c.rm("3_link.up.sql")
    os.mkdir(os.path.join(c.dir, "3_dir.up.sql"))
    refused(c, "\"%s/3_dir.up.sql\" is not a regular file" % c.dir)
    os.rmdir(os.path.join(c.dir, "3_dir.up.sql"))
    os.mkfifo(os.path.join(c.dir, "3_fifo.up.sql"))
    refused(c, "\"%s/3_fifo.up.sql\" is not a regular file" % c.dir)


@test
def ignored_files(c):
    base(c)
    c.put(".3_hidden.up.sql", "garbage")
    c.put("3_x.up.sql~", "garbage")
    c.put("#3_x.up.sql#", "garbage")
    c.put("README.md", "notes")
    c.put("2_posts.up.sql.orig", "garbage")
    assert c.apply() == 2


# ---- transactions, locks and calling context ----

@test
def held_lock_times_out_clearly(c):
    base(c)
    holder = sqlite3.connect(c.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        con = sqlite3.connect(c.db, timeout=0.2, isolation_level=None)
        con.enable_load_extension(True)
        con.load_extension(EXT)
        try:
            con.execute("SELECT migrate_apply(?)", (c.dir,))
            raise AssertionError("applied under a held lock")
        except sqlite3.OperationalError as e:
            msg = str(e)
            assert "could not take the migration lock: database is locked" in msg, msg
            assert "more than 200 ms" in msg, msg
            if hasattr(e, "sqlite_errorcode"):
                assert e.sqlite_errorcode == sqlite3.SQLITE_BUSY
        con.close()
    finally:
        holder.rollback()
        holder.close()
    assert c.tables() == []


@test
def lock_failure_inside_callers_transaction_leaves_it_clean(c):
    base(c)
    c.query("CREATE TABLE mine(x)")
    holder = sqlite3.connect(c.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    con = sqlite3.connect(c.db, timeout=0.2, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    con.execute("BEGIN")
    con.execute("SELECT count(*) FROM mine").fetchone()
    try:
        con.execute("SELECT migrate_apply(?)", (c.dir,))
        raise AssertionError("applied under a held lock")
    except sqlite3.OperationalError as e:
        assert "could not take the migration lock" in str(e), str(e)
    try:
        con.execute("RELEASE migrate")
        raise AssertionError("the savepoint was left open")
    except sqlite3.OperationalError as e:
        assert "no such savepoint: migrate" in str(e), str(e)
    assert con.in_transaction, "the caller's transaction is still its own"
    con.execute("ROLLBACK")
    holder.rollback()
    holder.close()
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 2
    con.close()


@test
def callers_transaction_decides(c):
    base(c)
    con = sqlite3.connect(c.db, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    con.execute("CREATE TABLE mine(x)")
    con.execute("BEGIN")
    con.execute("INSERT INTO mine VALUES (1)")
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 2
    con.execute("ROLLBACK")
    assert c.tables() == ["mine"], "caller's ROLLBACK undid the migrations"
    con.execute("BEGIN")
    con.execute("INSERT INTO mine VALUES (2)")
    c.put("3_bad.up.sql", "SELECT * FROM nope;")
    try:
        con.execute("SELECT migrate_apply(?)", (c.dir,))
        raise AssertionError("bad migration applied")
    except sqlite3.OperationalError as e:
        assert "migration 3 (3_bad.up.sql), line 1: no such table: nope" in str(e), str(e)
    assert con.in_transaction, "caller's transaction still open"
    con.execute("COMMIT")
    assert c.query("SELECT x FROM mine") == [(2,)], "caller's own work kept"
    assert c.tables() == ["mine"], "failed migrations left nothing"
    con.close()


@test
def refuses_inside_a_reading_statement(c):
    base(c)
    c.query("SELECT 1")
    con = sqlite3.connect(c.db)
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    before = c.snapshot()
    c.fails("SELECT migrate_apply('%s') FROM t" % c.dir,
            "migrate_apply cannot run inside a statement that reads tables",
            "HINT:  Call it in a statement of its own")
    assert c.snapshot() == before
    con = sqlite3.connect(c.db, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    con.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])
    cur = con.execute("SELECT x FROM t")
    cur.fetchone()  # the SELECT stays busy
    try:
        con.execute("SELECT migrate_apply(?)", (c.dir,))
        raise AssertionError("applied while another statement ran")
    except sqlite3.OperationalError as e:
        assert "cannot run while another statement is running on this connection" in str(e), str(e)
    cur.close()
    con.close()
    assert c.tables() == ["t"]


@test
def direct_only(c):
    base(c)
    c.ok("CREATE TABLE t(x)")
    c.ok("CREATE VIEW v AS SELECT migrate_apply('%s')" % c.dir)
    c.fails("SELECT * FROM v", "unsafe use of migrate_apply()")
    c.ok("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT migrate_down(1); END")
    c.fails("INSERT INTO t VALUES (1)", "unsafe use of migrate_down()")
    c.ok("DROP VIEW v")
    c.ok("CREATE VIEW v AS SELECT * FROM migrate_status('%s')" % c.dir)
    c.fails("SELECT * FROM v", "unsafe use of virtual table \"migrate_status\"")


@test
def defensive_and_untrusted_schema(c):
    base(c)
    rc, out, err = c.shell(".dbconfig defensive on", "PRAGMA trusted_schema=OFF",
                           "SELECT migrate_apply('%s')" % c.dir)
    assert rc == 0 and out.splitlines()[-1] == "2", (out, err)


@test
def python_client(c):
    base(c)
    con = sqlite3.connect(c.db)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    con.enable_load_extension(False)
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone() == (2,)
    rows = con.execute("SELECT version, state FROM migrate_status(?)", (c.dir,)).fetchall()
    assert rows == [("1", "applied"), ("2", "applied")], rows
    assert con.execute("SELECT migrate_down(1)").fetchone() == (1,)
    assert con.execute("SELECT version FROM migrate_history").fetchall() == [("1",)]
    con.close()
    assert c.tables() == ["migrate_history", "users"]


def _racer(db, path, barrier, out):
    con = sqlite3.connect(db, timeout=60, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    barrier.wait()
    try:
        out.put(("ok", con.execute("SELECT migrate_apply(?)", (path,)).fetchone()[0]))
    except Exception as e:  # reported, must not happen
        out.put(("error", str(e)))
    con.close()


def race(c, journal, procs=16):
    for i in range(1, 41):
        c.put("%d_t%d.up.sql" % (i, i), "CREATE TABLE t%d(x);\nINSERT INTO t%d VALUES (%d);\n" % (i, i, i))
    con = sqlite3.connect(c.db)
    con.execute("PRAGMA journal_mode=%s" % journal)
    con.close()
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_racer, args=(c.db, c.dir, barrier, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    results = [out.get(timeout=120) for _ in ps]
    for p in ps:
        p.join()
    errors = [r for r in results if r[0] != "ok"]
    assert not errors, errors
    counts = sorted(r[1] for r in results)
    assert counts == [0] * (procs - 1) + [40], counts
    assert c.query("SELECT count(*), count(DISTINCT version) FROM migrate_history") == [(40, 40)]


@test
def race_16_processes_rollback_journal(c):
    race(c, "delete")


@test
def race_16_processes_wal(c):
    race(c, "wal")


def crash(c, journal, rounds=8):
    """kill -9 the applying sqlite3 process in the middle of a call (during
    a slow migration, after 74 others ran in the same transaction): the
    database is entirely as before, intact, and the next call completes
    with no manual step."""
    import random
    import signal
    n = 150
    for i in range(1, n + 1):
        slow = ("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 3000000)"
                " SELECT count(*) FROM r;\n" if i == 75 else "")
        c.put("%d_t%d.up.sql" % (i, i), "CREATE TABLE t%d(x);\nINSERT INTO t%d VALUES (%d);\n"
              "CREATE INDEX t%d_x ON t%d(x);\n%s" % (i, i, i, i, i, slow))
    rng = random.Random(7)
    for r in range(rounds):
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(c.db + suffix):
                os.unlink(c.db + suffix)
        c.query("PRAGMA journal_mode=%s" % journal)
        p = subprocess.Popen(["sqlite3", c.db, ".load " + EXT, "SELECT migrate_apply('%s')" % c.dir],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # wait until the transaction is open (a journal or WAL appears), then a little more
        deadline = time.time() + 10
        while not (os.path.exists(c.db + "-journal") or os.path.exists(c.db + "-wal")):
            assert time.time() < deadline and p.poll() is None, "the apply never started"
            time.sleep(0.002)
        time.sleep(rng.uniform(0.01, 0.08))
        assert p.poll() is None, "killed too late: the call had finished"
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert c.query("PRAGMA integrity_check") == [("ok",)]
        assert c.history() is None and c.tables() == [], "entirely as before: %r" % (c.tables()[:3],)
    assert c.apply() == n, "the next call completes"
    assert len(c.history()) == n and c.query("PRAGMA integrity_check") == [("ok",)]


@test
def crash_kill9_is_atomic_rollback_journal(c):
    crash(c, "delete")


@test
def crash_kill9_is_atomic_wal(c):
    crash(c, "wal")


@test
def valgrind_no_leaks_no_errors(c):
    """The shell under valgrind through success and error paths: no memory
    errors, nothing definitely lost."""
    if os.environ.get("LD_PRELOAD") or not shutil.which("valgrind"):
        return  # the sanitizer run covers memory errors instead
    base(c)
    c.put("3_trig.up.sql", "CREATE TABLE t(x);\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;\n")
    c.put("3_trig.down.sql", "DROP TABLE t;\n")
    bad = os.path.join(c.root, "bad")
    os.mkdir(bad)
    with open(os.path.join(bad, "1_x.up.sql"), "w") as f:
        f.write("CREATE TABLE z(x);\nSELECT * FROM nope;\n")
    with open(os.path.join(bad, "notes.sql"), "w") as f:
        f.write("x")
    script = "\n".join([
        ".load " + EXT,
        "SELECT migrate_apply('%s');" % c.dir,
        "SELECT count(*) FROM migrate_status('%s');" % c.dir,
        "SELECT migrate_apply('%s');" % bad,
        "SELECT * FROM migrate_status('%s');" % bad,
        "SELECT migrate_apply('/nonexistent');",
        "BEGIN; SELECT migrate_down(2); ROLLBACK;",
        "SELECT migrate_down(9);",
        "SELECT migrate_down(3);",
    ]) + "\n"
    p = subprocess.run(["valgrind", "-q", "--leak-check=full", "--errors-for-leak-kinds=definite",
                        "--error-exitcode=99", "sqlite3", c.db],
                       input=script, capture_output=True, text=True, timeout=300)
    assert p.returncode != 99, p.stderr
    assert "does not fit any migration layout" in p.stderr, p.stderr
    assert c.history() == [], "the script ended by rolling everything back"


# ---- the call log ----

@test
def every_writing_call_has_a_row_in_the_call_log(c):
    """main.migrate_calls: one row per call of a function that writes --
    the folder, which migrations, how it ended -- also for a call that
    failed (written after its rollback) or skipped."""
    base(c)
    assert c.apply() == 2
    assert c.apply() == 0
    c.put("3_bad.up.sql", "CREATE TABLE x(a);\nINSERT INTO nope VALUES (1);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "no such table: nope")
    c.rm("3_bad.up.sql")
    assert c.ok("SELECT migrate_down(1)") == "1"
    assert c.calls() == [("migrate_apply", 2, "1, 2", "ok", None),
                         ("migrate_apply", 0, None, "ok", None),
                         ("migrate_apply", 0, None, "error", "42000"),
                         ("migrate_down", 1, "2", "ok", None)], c.calls()
    rows = c.query("SELECT source, role IS NOT NULL, message LIKE '%no such table: nope%CONTEXT:  migration 3 (3_bad.up.sql), line 2'"
                   " FROM migrate_calls ORDER BY id")
    assert rows[0][:2] == (c.dir, 1) and rows[2][2] == 1, rows
    # a call that finds the database locked and skips says so, at once
    holder = sqlite3.connect(c.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    t0 = time.monotonic()
    assert c.ok("SELECT migrate_apply('%s', 'wait=0, if_locked=skip')" % c.dir) == "0"
    assert time.monotonic() - t0 < 3
    holder.execute("ROLLBACK")
    holder.close()
    # (its row could not be written while the other held the database)
    assert [r[3] for r in c.calls()][-1] in ("ok", "skipped")


# ---- what a person at the shell sees ----

@test
def the_shell_shows_each_migration_to_a_person(c):
    """At the sqlite3 shell (standard input and error are a terminal) each
    migration shows a line as it starts and as it ends, with its duration;
    an application (no terminal) sees nothing unless it asks with
    verbose=true."""
    import pty
    base(c)
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("sqlite3", ["sqlite3", c.db])
    os.write(fd, (".load %s\nSELECT migrate_apply('%s');\nSELECT migrate_down(1);\n.quit\n"
                  % (EXT, c.dir)).encode())
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert "migrate_apply: applying migration 1 (1_users.up.sql)" in text, text
    assert re.search(r"migrate_apply: applied migration 2 \(2_posts.up.sql\) in [0-9.]+ ms", text), text
    assert re.search(r"migrate_down: rolled back migration 2 \(posts\) in [0-9.]+ ms", text), text
    # no terminal: quiet
    rc, out, err = c.shell("SELECT migrate_apply('%s')" % c.dir)
    assert rc == 0 and err == "", err
    assert c.ok("SELECT migrate_down(1)") == "1"
    rc, out, err = c.shell("SELECT migrate_apply('%s', 'verbose=true')" % c.dir)
    assert rc == 0 and "migrate_apply: applied migration 2 (2_posts.up.sql) in" in err, err


if __name__ == "__main__":
    sys.exit(main("sqlite"))
