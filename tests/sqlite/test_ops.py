"""The operator's functions on SQLite: migrate_validate, migrate_repair,
migrate_plan, migrate_script, whitespace-only edits, and the lock options
(wait, if_locked) of migrate_apply.

    python3 tests/sqlite/test_ops.py [build/migrate] [name-filter]
"""
import getpass
import os
import sqlite3
import subprocess
import sys
import threading
import time

from harness import EXT, main, test


def three(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("1_a.down.sql", "DROP TABLE a;\n")
    c.put("2_b.up.sql", "CREATE TABLE b(x);\nINSERT INTO b VALUES ('it''s');\n")
    c.put("2_b.down.sql", "DROP TABLE b;\n")
    c.put("3_c.up.sql", "CREATE TABLE c(x);\n-- a last line comment without newline")
    c.put("3_c.down.sql", "DROP TABLE c;\n")


def connect(c, timeout=5.0):
    con = sqlite3.connect(c.db, timeout=timeout, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    return con


def validate(c):
    return c.query_ext("SELECT version, file, problem, severity, sqlstate, message"
                       " FROM migrate_validate('%s')" % c.dir)


def rows(c, sql):
    con = connect(c)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# Case.query cannot load the extension; give every case a loader.
def _query_ext(self, sql):
    return rows(self, sql)


import harness  # noqa: E402
harness.Case.query_ext = _query_ext


# ---- migrate_validate ----

@test
def validate_lists_every_problem_in_one_call(c):
    three(c)
    c.put("4_d.up.sql", "CREATE TABLE d(x);\n")
    assert c.ok("SELECT migrate_apply('%s', 'target=2')" % c.dir) == "2"
    c.ok("SELECT migrate_apply('%s')" % c.dir)
    # 1 changed, 2 reformatted, 3 missing, 4 applied; then new files
    c.put("1_a.up.sql", "CREATE TABLE a(x, y);\n")
    c.put("2_b.up.sql", "CREATE TABLE b(x);  \r\nINSERT INTO b VALUES ('it''s');\r\n\r\n")
    c.rm("3_c.up.sql")
    c.rm("3_c.down.sql")
    c.put("0_early.up.sql", "CREATE TABLE early(x);\n")     # out of order
    c.put("5_e.up.sql", "CREATE TABLE e(x);\nCOMMIT;\n")   # not allowed
    c.put("6_f.up.sql", b"CREATE TABLE f(x);\x00\n")      # NUL byte
    c.put("7_g.up.sql", "CREATE TABLE g(x);\n")
    c.put("07_h.up.sql", "CREATE TABLE h(x);\n")          # duplicate of 7
    c.put("notes.sql", "-- not a migration\n")            # bad name
    c.put("8_i.down.sql", "DROP TABLE i;\n")              # orphan down
    before = c.snapshot()
    got = validate(c)
    assert c.snapshot() == before, "validate changed the database"
    kinds = sorted((r[0] or "", r[2]) for r in got)
    assert kinds == sorted([
        ("", "bad_name"), ("", "orphan_down"), ("7", "duplicate"),
        ("1", "changed"), ("2", "reformatted"), ("3", "missing"),
        ("0", "out_of_order"), ("5", "not_allowed"), ("6", "bad_file"),
    ]), got
    by = {(r[0] or r[1]): r for r in got}
    assert by["notes.sql"][5] == 'file name "notes.sql" does not fit any migration layout', by
    assert by["8_i.down.sql"][5] == 'down file "8_i.down.sql" has no matching up file', by
    assert by["7"][1] == "07_h.up.sql, 7_g.up.sql", by["7"]
    assert by["7"][4] == "42710"
    assert by["1"][5] == "applied migration 1 has changed since it was applied", by["1"]
    assert by["1"][3:5] == ("error", "55000")
    assert by["2"][3:5] == ("warning", "01000"), by["2"]
    assert "missing from" in by["3"][5] and by["3"][1] == "3_c.up.sql", by["3"]
    assert by["0"][5] == ("pending migration 0 (0_early.up.sql) is older than the latest"
                          " applied migration 4"), by["0"]
    assert by["5"][5].startswith("migration 5 (5_e.up.sql), line 2: migration files must not"
                                 " control transactions: COMMIT"), by["5"]
    assert by["5"][4] == "0A000"
    assert by["6"][4] == "22021" and "6_f.up.sql" in by["6"][5], by["6"]


@test
def validate_clean_folder_has_no_rows(c):
    three(c)
    assert validate(c) == []
    c.apply()
    assert validate(c) == []
    assert c.history() == [("1", "a"), ("2", "b"), ("3", "c")]


@test
def validate_missing_folder_is_one_problem(c):
    got = c.query_ext("SELECT problem, severity, message FROM migrate_validate('%s/nope')" % c.root)
    assert len(got) == 1 and got[0][0] == "folder" and got[0][1] == "error", got
    assert 'could not open directory "%s/nope": No such file or directory' % c.root in got[0][2], got
    assert c.tables() == [], "validate created a table"


@test
def validate_needs_a_folder(c):
    err = c.fails("SELECT * FROM migrate_validate", "migrate_validate: give the migration folder")
    assert "migrate_validate('db/migrations')" in err


# ---- whitespace-only edits ----

@test
def whitespace_only_edit_is_reformatted_not_changed(c):
    three(c)
    c.ok("SELECT migrate_apply('%s', 'target=2')" % c.dir)
    c.put("1_a.up.sql", b"\xef\xbb\xbfCREATE TABLE a(x);   \r\n\r\n\n")
    states = dict(c.query_ext("SELECT version, state FROM migrate_status('%s')" % c.dir))
    assert states == {"1": "reformatted", "2": "applied", "3": "pending"}, states
    assert c.apply() == 1, "a whitespace-only edit must not stop apply"
    assert c.tables() == ["a", "b", "c", "migrate_history"]
    # a real edit still stops it
    c.put("2_b.up.sql", "CREATE TABLE b(y);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir,
            "applied migration 2 has changed since it was applied")


@test
def old_history_without_normalised_checksum_is_upgraded(c):
    three(c)
    c.query("CREATE TABLE migrate_history(installed_rank INTEGER PRIMARY KEY,"
            " version TEXT NOT NULL UNIQUE, name TEXT NOT NULL, up_file TEXT NOT NULL,"
            " down_file TEXT, checksum TEXT NOT NULL, applied_at TEXT NOT NULL,"
            " execution_ms REAL NOT NULL, file_id TEXT, up_sql TEXT NOT NULL, down_sql TEXT)")
    assert c.apply() == 3
    cols = [r[1] for r in c.query("PRAGMA table_info(migrate_history)")]
    assert "checksum_norm" in cols, cols
    assert c.query("SELECT count(*) FROM migrate_history WHERE checksum_norm LIKE 'crc32:%'") == [(3,)]


# ---- migrate_repair ----

@test
def repair_realigns_checksums_with_an_audit_row(c):
    three(c)
    c.apply()
    old = c.query("SELECT checksum FROM migrate_history WHERE version = '2'")[0][0]
    c.put("2_b.up.sql", "CREATE TABLE b(x); -- reviewed: comment added\n"
                        "INSERT INTO b VALUES ('it''s');\n")
    c.put("2_b.down.sql", "DROP TABLE IF EXISTS b;\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "applied migration 2 has changed")
    assert c.ok("SELECT migrate_repair('%s')" % c.dir) == "1"
    new, down = c.query("SELECT checksum, down_sql FROM migrate_history WHERE version = '2'")[0]
    assert new != old and down == "DROP TABLE IF EXISTS b;\n", (new, down)
    audit = c.query("SELECT version, old_checksum, new_checksum, repaired_by, repaired_at"
                    " FROM migrate_repairs")
    assert len(audit) == 1 and audit[0][:3] == ("2", old, new), audit
    assert audit[0][3] == getpass.getuser(), audit
    assert audit[0][4].startswith(time.strftime("%Y-", time.gmtime())), audit
    assert c.apply() == 0
    assert c.ok("SELECT migrate_repair('%s')" % c.dir) == "0"
    assert validate(c) == []
    # the repaired down script is the one used to roll back
    assert c.ok("SELECT migrate_down(2)") == "2"
    assert c.tables() == ["a", "migrate_history", "migrate_repairs"]


@test
def repair_leaves_missing_migrations_alone(c):
    three(c)
    c.apply()
    c.rm("3_c.up.sql")
    c.rm("3_c.down.sql")
    assert c.ok("SELECT migrate_repair('%s')" % c.dir) == "0"
    assert c.history() == [("1", "a"), ("2", "b"), ("3", "c")]
    c.fails("SELECT migrate_repair('%s/nope')" % c.root, "could not open directory")


# ---- migrate_plan ----

@test
def plan_lists_pending_with_their_sql_and_changes_nothing(c):
    c.put("V1__a.sql", "CREATE TABLE a(x);\n")
    c.put("U1__a.sql", "DROP TABLE a;\n")
    c.put("V2__b.sql", "CREATE TABLE b(x);\nINSERT INTO b VALUES ('it''s');\n")
    c.put("U2__b.sql", "DROP TABLE b;\n")
    c.put("V3__c.sql", "CREATE TABLE c(x);\n")
    c.put("R__view.sql", "CREATE VIEW IF NOT EXISTS v AS SELECT 1;\n")
    got = c.query_ext("SELECT version, name, file, kind, sql, down_sql, checksum"
                      " FROM migrate_plan('%s')" % c.dir)
    assert [r[0] for r in got] == ["1", "2", "3", "R__view"], got
    assert got[0][1:3] == ("a", "V1__a.sql"), got
    assert got[1][4] == "CREATE TABLE b(x);\nINSERT INTO b VALUES ('it''s');\n"
    assert got[1][5] == "DROP TABLE b;\n" and got[1][3] == "versioned"
    assert got[3][3] == "repeatable" and got[3][5] is None
    assert all(r[6].startswith("crc32:") for r in got)
    assert c.tables() == [], "plan changed the database"
    got = c.query_ext("SELECT version FROM migrate_plan('%s', 'target=2')" % c.dir)
    assert got == [("1",), ("2",), ("R__view",)], got
    c.apply()
    assert c.query_ext("SELECT * FROM migrate_plan('%s')" % c.dir) == []
    c.put("R__view.sql", "CREATE VIEW IF NOT EXISTS v AS SELECT 2;\n")
    got = c.query_ext("SELECT version, kind FROM migrate_plan('%s')" % c.dir)
    assert got == [("R__view", "rerun")], got
    assert c.query("SELECT count(*) FROM migrate_history") == [(4,)]


@test
def plan_refuses_what_apply_refuses(c):
    three(c)
    c.apply()
    c.put("1_a.up.sql", "CREATE TABLE a(z);\n")
    c.fails("SELECT * FROM migrate_plan('%s')" % c.dir,
            "migrate_plan: applied migration 1 has changed since it was applied")
    c.fails("SELECT * FROM migrate_plan('%s', 'target=x')" % c.dir,
            'migrate_plan: target "x" is not a migration version')


# ---- migrate_script ----

def run_script(c, text):
    p = subprocess.run(["sqlite3", "-bail", c.db], input=text, capture_output=True, text=True)
    return p.returncode, p.stderr


@test
def script_applies_and_records_so_apply_is_a_no_op(c):
    three(c)
    c.ok("SELECT migrate_apply('%s', 'target=1')" % c.dir)
    text = c.ok("SELECT migrate_script('%s')" % c.dir)
    assert text.count("INSERT INTO main.migrate_history") == 2, text
    assert c.history() == [("1", "a")], "migrate_script must not apply"
    rc, err = run_script(c, text)
    assert rc == 0, err
    assert c.tables() == ["a", "b", "c", "migrate_history"]
    assert c.query("SELECT x FROM b") == [("it's",)]
    assert c.history() == [("1", "a"), ("2", "b"), ("3", "c")]
    assert c.apply() == 0
    states = {r[1] for r in c.query_ext("SELECT version, state FROM migrate_status('%s')" % c.dir)}
    assert states == {"applied"}, states
    # run twice: the first record fails, nothing changes
    before = c.snapshot()
    rc, err = run_script(c, text)
    assert rc != 0 and "UNIQUE constraint failed: migrate_history.version" in err, err
    assert c.snapshot() == before
    # and the recorded down scripts roll back
    assert c.ok("SELECT migrate_down(2)") == "2"
    assert c.tables() == ["a", "migrate_history"]


@test
def script_with_nothing_pending_is_an_empty_transaction(c):
    three(c)
    c.apply()
    text = c.ok("SELECT migrate_script('%s')" % c.dir)
    assert "INSERT" not in text and "BEGIN IMMEDIATE;" in text and "COMMIT;" in text, text
    assert run_script(c, text)[0] == 0


@test
def script_refuses_what_apply_refuses(c):
    three(c)
    c.put("4_d.up.sql", "CREATE TABLE d(x);\nCOMMIT;\n")
    c.fails("SELECT migrate_script('%s')" % c.dir,
            "migrate_script: migration 4 (4_d.up.sql), line 2: migration files must not control transactions")
    c.fails("SELECT migrate_script('%s', 'bogus=1')" % c.dir, 'unknown option "bogus"')


# ---- lock options ----

@test
def wait_zero_fails_at_once_and_skip_returns_zero(c):
    three(c)
    holder = sqlite3.connect(c.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    con = connect(c, timeout=30)
    try:
        t0 = time.monotonic()
        try:
            con.execute("SELECT migrate_apply(?, 'wait=0')", (c.dir,))
            raise AssertionError("applied under a held lock")
        except sqlite3.OperationalError as e:
            assert "could not take the migration lock: database is locked" in str(e), str(e)
        assert time.monotonic() - t0 < 5, "wait=0 waited for the 30 s busy timeout"
        t0 = time.monotonic()
        got = con.execute("SELECT migrate_apply(?, 'wait=300ms, if_locked=skip')",
                          (c.dir,)).fetchone()[0]
        took = time.monotonic() - t0
        assert got == 0, got
        assert 0.25 < took < 5, took
    finally:
        holder.rollback()
        holder.close()
    # the connection's own busy timeout is back, and the lock is free now
    assert con.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert con.execute("SELECT migrate_apply(?, 'wait=0')", (c.dir,)).fetchone()[0] == 3
    con.close()


@test
def wait_forever_outlasts_the_busy_timeout(c):
    three(c)
    holder = sqlite3.connect(c.db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    con = connect(c, timeout=0.1)
    threading.Timer(1.0, holder.rollback).start()
    t0 = time.monotonic()
    try:
        assert con.execute("SELECT migrate_apply(?, 'wait=forever')", (c.dir,)).fetchone()[0] == 3
        assert time.monotonic() - t0 >= 0.9, "the lock was not held"
    finally:
        holder.close()
    assert con.execute("PRAGMA busy_timeout").fetchone()[0] == 100
    con.close()


@test
def bad_lock_options_are_refused_before_anything(c):
    three(c)
    for opt, needle in [
        ("wait=soon", 'option wait takes a duration such as 0, 500ms, 30s or 2min, or forever, not "soon"'),
        ("wait=5h", 'option wait takes a duration'),
        ("if_locked=maybe", 'option if_locked takes skip or error, not "maybe"'),
        ("lock_timeout=forever", 'option lock_timeout takes a duration such as 0 (none), 200ms or 5s'),
        ("lock_retries=-1", 'option lock_retries takes a number of retries from 0 to 1000, not "-1"'),
        ("lock_retries=1001", 'option lock_retries takes a number of retries from 0 to 1000'),
        ("wait=1s, wait=2s", 'option "wait" is given twice'),
    ]:
        c.fails("SELECT migrate_apply('%s', '%s')" % (c.dir, opt), needle)
    assert c.tables() == []
    # accepted (lock_timeout and lock_retries matter on PostgreSQL only)
    assert c.ok("SELECT migrate_apply('%s', 'wait=forever, if_locked=error,"
                " lock_timeout=200ms, lock_retries=3')" % c.dir) == "3"



# ---- migrations that stopped half way (issue 17.4, 17.8) ----

def half_way(c):
    """Migration 1 creates t; migration 2, outside a transaction, adds an
    index on it, then fails; its first statement stays done."""
    c.put("1_t.sql", "-- +goose Up\nCREATE TABLE t(a);\n-- +goose Down\nDROP TABLE t;\n")
    c.put("2_idx.sql", "-- +goose NO TRANSACTION\n-- +goose Up\n"
          "CREATE INDEX t_a ON t(a);\nINSERT INTO nope VALUES (1);\n"
          "-- +goose Down\nDROP INDEX t_a;\n")
    con = connect(c)
    try:
        con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
        raise AssertionError("applied")
    except sqlite3.OperationalError as e:
        assert "no such table: nope" in str(e), str(e)
    con.close()


@test
def a_half_way_migration_is_shown_partial_everywhere(c):
    half_way(c)
    st = rows(c, "SELECT version, state, statements_done, last_error IS NOT NULL"
                 " FROM migrate_status('%s')" % c.dir)
    assert st == [("1", "applied", None, 0), ("2", "partial", 1, 1)], st
    v = validate(c)
    assert [(r[0], r[2], r[3]) for r in v] == [("2", "partial", "warning")], v
    assert "1 statement ran outside a transaction" in v[0][5], v
    p = rows(c, "SELECT version, outside, statements_done FROM migrate_plan('%s')" % c.dir)
    assert p == [("2", 1, 1)], p
    # an edit of the statement that ran is an error for validate
    c.put("2_idx.sql", "-- +goose NO TRANSACTION\n-- +goose Up\n"
          "CREATE INDEX t_a ON t(a) WHERE a > 0;\nINSERT INTO nope VALUES (1);\n")
    v = validate(c)
    assert [(r[0], r[2], r[3]) for r in v] == [("2", "partial_changed", "error")], v


@test
def script_refuses_a_migration_that_stopped_half_way(c):
    """Issue 17.9: a script cannot resume half way, so migrate_script refuses
    the folder while migration 2's progress says 1 statement ran."""
    half_way(c)
    before = c.snapshot()
    c.fails("SELECT migrate_script('%s')" % c.dir,
            "migration 2 (2_idx.sql) stopped half way: 1 of its statements ran outside a transaction",
            "A script cannot resume half way")
    assert c.snapshot() == before


@test
def adopt_forgets_the_progress_of_what_it_records(c):
    """Issue 17.4: migration 2 stopped half way; goose's own table says 2 is
    applied (it was finished by hand).  migrate_adopt records 1 and 2 as
    applied in full, so their progress no longer describes them: it is gone."""
    half_way(c)
    assert rows(c, "SELECT version, statements_done FROM migrate_progress") == [("2", 1)]
    con = sqlite3.connect(c.db)
    con.executescript(
        "DELETE FROM migrate_history;"
        "CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL,"
        " is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')));"
        "INSERT INTO goose_db_version(version_id, is_applied) VALUES (0, 1), (1, 1), (2, 1);")
    con.close()
    assert c.ok("SELECT migrate_adopt('%s')" % c.dir) == "2"
    assert rows(c, "SELECT version FROM migrate_history ORDER BY version") == [("1",), ("2",)]
    assert rows(c, "SELECT count(*) FROM migrate_progress") == [(0,)]
    st = rows(c, "SELECT version, state FROM migrate_status('%s')" % c.dir)
    assert st == [("1", "applied"), ("2", "applied")], st


@test
def rolling_back_refuses_while_a_migration_is_half_way(c):
    """The repro of issue 17.4: migration 2 stopped half way; rolling back
    migration 1 would drop what 2's first statement made while the next
    apply would skip it.  Refused; after the statements are undone by hand
    and the progress discarded (audited), the fixed file applies in full."""
    half_way(c)
    before = c.snapshot()
    err = c.fails("SELECT migrate_down(1)", "migration 2 stopped half way",
                  "1 statement of it ran outside a transaction",
                  "partial=discard")
    assert c.snapshot() == before
    c.fails("SELECT migrate_down_to('0')", "migration 2 stopped half way")
    c.fails("SELECT migrate_repair('%s', 'partial=nope')" % c.dir,
            "option partial takes discard or keep")
    c.fails("SELECT migrate_apply('%s', 'partial=discard')" % c.dir, 'unknown option "partial"')
    # undo by hand what ran, then discard
    c.query("SELECT 1")
    con = sqlite3.connect(c.db)
    con.execute("DROP INDEX t_a")
    con.commit()
    con.close()
    assert c.ok("SELECT migrate_repair('%s', 'partial=discard')" % c.dir) == "1"
    audit = rows(c, "SELECT version, action FROM migrate_repairs")
    assert audit == [("2", "discard_partial")], audit
    c.put("2_idx.sql", "-- +goose NO TRANSACTION\n-- +goose Up\n"
          "CREATE INDEX t_a ON t(a);\nINSERT INTO t VALUES (1);\n-- +goose Down\nDROP INDEX t_a;\n")
    assert c.apply() == 1
    assert rows(c, "SELECT count(*) FROM sqlite_schema WHERE name = 't_a'") == [(1,)]
    assert c.ok("SELECT migrate_down(2)") == "2"


@test
def baseline_forgets_the_progress_of_what_it_records(c):
    half_way(c)
    c.query("SELECT 1")
    con = sqlite3.connect(c.db)
    con.execute("DELETE FROM migrate_history")
    con.commit()
    con.close()
    assert rows(c, "SELECT count(*) FROM migrate_progress") == [(1,)]
    assert c.ok("SELECT migrate_baseline('%s', '2')" % c.dir) == "2"
    assert rows(c, "SELECT count(*) FROM migrate_progress") == [(0,)], \
        "recorded as applied in full: no progress left that a later call would trust"


# ---- repair refuses another migration (issue 17.10) ----

@test
def repair_refuses_another_migration_with_the_same_version(c):
    """Two folders (an app's and a plugin's) each have a version 1: the
    plugin's is not an edit of the app's, and repair must not record it."""
    c.put("1_users.up.sql", "CREATE TABLE users(x);\n")
    c.put("1_users.down.sql", "DROP TABLE users;\n")
    assert c.apply() == 1
    plugin = os.path.join(c.root, "plugin")
    os.mkdir(plugin)
    with open(os.path.join(plugin, "1_plug.up.sql"), "w") as f:
        f.write("CREATE TABLE plug(x);\n")
    c.fails("SELECT migrate_apply('%s')" % plugin, "has changed since it was applied")
    before = c.snapshot()
    c.fails("SELECT migrate_repair('%s')" % plugin,
            'file "1_plug.up.sql" is not the migration 1 that was applied',
            'was applied from "1_users.up.sql" (users)')
    assert c.snapshot() == before
    assert rows(c, "SELECT name, up_file, down_sql FROM migrate_history") == \
        [("users", "1_users.up.sql", "DROP TABLE users;\n")]


# ---- a down file that changes while migrations are applied (17.11) ----

@test
def a_down_file_changed_during_the_apply_is_not_stored(c):
    """Beyond the 8 MiB the apply keeps in memory, files are read again
    when applied: a down file edited meanwhile must not be stored."""
    big = "-- " + "x" * 1000 + "\n"
    for v in range(1, 10):
        c.put("%d_m%d.up.sql" % (v, v), "CREATE TABLE m%d(x);\n" % v + big * 600)
        c.put("%d_m%d.down.sql" % (v, v), "DROP TABLE m%d;\n" % v + big * 600)
    con = connect(c)
    # a trigger-free way to edit during the apply: a slow first migration
    c.put("0_slow.up.sql", "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r"
          " WHERE i < 3000000) SELECT count(*) FROM r;\n")
    done = []

    def edit():
        time.sleep(0.3)
        c.put("9_m9.down.sql", "DROP TABLE m1;\n" + big * 600)
        done.append(1)

    t = threading.Thread(target=edit)
    t.start()
    try:
        con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
        applied = True
    except sqlite3.OperationalError as e:
        applied = False
        assert 'migration file "9_m9.down.sql" changed while migrations were being applied' in str(e), str(e)
    t.join()
    assert done
    if applied:
        # the edit landed before validation read the file (a slow machine):
        # what is stored is still what was validated
        stored = rows(c, "SELECT down_sql FROM migrate_history WHERE version = '9'")[0][0]
        assert stored.startswith("DROP TABLE m9;"), stored[:40]
    else:
        # the call changed nothing: no history (it would have been created
        # in the same transaction) and no table of its migrations
        assert rows(c, "SELECT count(*) FROM sqlite_schema WHERE name IN ('migrate_history', 'm1')") == [(0,)]


# ---- the off-hours script (17.9) ----

@test
def script_refuses_what_it_could_not_do_as_apply_would(c):
    c.put("1_a.sql", "-- +goose Up\nCREATE TABLE a(x);\n/* a comment left open")
    c.fails("SELECT migrate_script('%s')" % c.dir,
            "migration 1 (1_a.sql) ends inside a comment, a string or a trigger body")
    c.put("1_a.sql", "-- +goose Up\nCREATE TABLE a(x);\n")
    c.put("2_wal.sql", "-- +goose NO TRANSACTION\n-- +goose Up\nPRAGMA journal_mode=WAL;\n")
    c.fails("SELECT migrate_script('%s')" % c.dir,
            "migration 2 (2_wal.sql) must run outside a transaction",
            "target=")
    out = c.ok("SELECT migrate_script('%s', 'target=1')" % c.dir)
    assert "CREATE TABLE a(x);" in out and "journal_mode" not in out
    # mode=run: the marked migration's statements run outside a transaction
    c.put("3_t.sql", "-- +goose Up\nCREATE TABLE t(x);\n")
    script = c.ok("SELECT migrate_script('%s', 'mode=run')" % c.dir)
    assert "COMMIT;\n-- outside a transaction, one statement at a time (2_wal.sql)" in script, script
    p = subprocess.run(["sqlite3", "-bail", c.db], input=script, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert [r[0] for r in c.history()] == ["1", "2", "3"]
    assert c.query("PRAGMA journal_mode") == [("wal",)], "it ran outside a transaction"
    assert c.apply() == 0


if __name__ == "__main__":
    sys.exit(main("ops"))
