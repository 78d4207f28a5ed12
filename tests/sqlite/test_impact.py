"""migrate_impact on SQLite, where one writer locks the whole database:
which statements rebuild or copy a table (the 12-step rebuild, DROP COLUMN,
VACUUM), which read a whole one (a new index, a CHECK tested on existing
rows, an UPDATE of every row), each table's size (pages, bytes, rows); and
the impact policy (no_rewrite=, max_size=) as migrate_apply, migrate_plan,
migrate_validate and migrate_script (only=flagged) apply it.

    python3 tests/sqlite/test_impact.py [build/migrate] [name-filter]
"""
import hashlib
import os
import sqlite3
import subprocess
import sys

from harness import EXT, main, test


def connect(c):
    con = sqlite3.connect(c.db, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    return con


def rows(c, sql, args=()):
    con = connect(c)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def fails(c, sql, args=()):
    con = connect(c)
    try:
        con.execute(sql, args).fetchall()
    except sqlite3.Error as e:
        return str(e)
    finally:
        con.close()
    raise AssertionError("%s succeeded" % sql)


def populate(c, n=10000):
    con = sqlite3.connect(c.db)
    con.executescript("""
        CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, s TEXT);
        WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < %d)
        INSERT INTO t SELECT i, i, hex(randomblob(16)) FROM g;
        CREATE TABLE u(id INTEGER PRIMARY KEY, v INTEGER, s TEXT);
        INSERT INTO u SELECT id, v, s FROM t;
        CREATE TABLE small(id INTEGER PRIMARY KEY, v INTEGER);
        INSERT INTO small VALUES (1, 1), (2, 2);
    """ % n)
    con.commit()
    con.close()


def size_of(c, table):
    return rows(c, "SELECT pageno, pgsize FROM dbstat WHERE name = ? AND aggregate = 1", (table,))[0]


def folder(c):
    c.put("1_idx.up.sql", "CREATE INDEX t_v ON t(v);\n")
    c.put("2_new.up.sql", "CREATE TABLE n(x);\nCREATE INDEX n_x ON n(x);\n")
    c.put("3_check.up.sql", "ALTER TABLE t ADD COLUMN c INTEGER CHECK (c IS NULL OR c > 0);\n"
          "ALTER TABLE t ADD COLUMN d TEXT;\n")
    c.put("4_rebuild.up.sql", "-- no-transaction\nPRAGMA foreign_keys=off;\nBEGIN;\n"
          "CREATE TABLE new_t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, s TEXT);\n"
          "INSERT INTO new_t(id, v, s)\n  SELECT id, v, s FROM t;\n"
          "DROP TABLE t;\nALTER TABLE new_t RENAME TO t;\nCOMMIT;\nPRAGMA foreign_keys=on;\n")
    c.put("5_drop.up.sql", "ALTER TABLE u DROP COLUMN s;\n")
    c.put("6_update.up.sql", "UPDATE u SET v = v + 1;\nUPDATE u SET v = 0 WHERE id = 1;\n"
          "DELETE FROM small WHERE id = 2;\n")
    c.put("7_vacuum.up.sql", "-- no-transaction\nVACUUM;\n")


IMPACT = ("SELECT version, file, line, statement, relation, rewrites, scans, relation_pages,"
          " relation_bytes, relation_rows, advice, policy FROM migrate_impact(?%s)")


def impact(c, options=None):
    if options is None:
        return rows(c, IMPACT % "", (c.dir,))
    return rows(c, IMPACT % ", ?", (c.dir, options))


@test
def rows_name_each_statement_its_table_and_size(c):
    populate(c)
    folder(c)
    got = [(r[0], r[2], r[3], r[4], r[5], r[6]) for r in impact(c)]
    assert got == [
        ("1", 1, "CREATE INDEX t_v ON t(v)", "main.t", 0, 1),
        ("2", 1, "CREATE TABLE n(x)", None, 0, 0),
        ("2", 2, "CREATE INDEX n_x ON n(x)", None, 0, 1),
        ("3", 1, "ALTER TABLE t ADD COLUMN c INTEGER CHECK (c IS NULL OR c > ...", "main.t", 0, 1),
        ("3", 2, "ALTER TABLE t ADD COLUMN d TEXT", "main.t", 0, 0),
        ("4", 2, "PRAGMA foreign_keys=off", None, 0, 0),
        ("4", 3, "BEGIN", None, 0, 0),
        ("4", 4, "CREATE TABLE new_t(id INTEGER PRIMARY KEY, v INTEGER NOT ...", None, 0, 0),
        ("4", 5, "INSERT INTO new_t(id, v, s) SELECT id, v, s FROM t", "main.t", 1, 1),
        ("4", 7, "DROP TABLE t", "main.t", 0, 0),
        ("4", 8, "ALTER TABLE new_t RENAME TO t", None, 0, 0),
        ("4", 9, "COMMIT", None, 0, 0),
        ("4", 10, "PRAGMA foreign_keys=on", None, 0, 0),
        ("5", 1, "ALTER TABLE u DROP COLUMN s", "main.u", 1, 1),
        ("6", 1, "UPDATE u SET v = v + 1", "main.u", 0, 1),
        ("6", 2, "UPDATE u SET v = 0 WHERE id = 1", "main.u", 0, 0),
        ("6", 3, "DELETE FROM small WHERE id = 2", "main.small", 0, 0),
        ("7", 2, "VACUUM", "main", 1, 1),
    ], got
    r = impact(c)
    pages, nbytes = size_of(c, "t")
    assert (r[0][7], r[0][8], r[0][9]) == (pages, nbytes, 10000), r[0]
    assert r[0][1] == "1_idx.up.sql"
    assert r[1][7] is None and r[1][8] is None and r[1][9] is None, r[1]
    page_count = rows(c, "PRAGMA page_count")[0][0]
    assert r[-1][7] == page_count and r[-1][9] is None, r[-1]
    assert "write lock" in r[0][10], r[0][10]
    assert r[8][10].startswith("The copy holds the database's write lock"), r[8][10]
    assert r[14][10].startswith("Update in batches"), r[14][10]
    assert all(x[11] is None for x in r), "no policy, no verdict"


@test
def nothing_changes_the_database_file(c):
    populate(c)
    folder(c)
    before = hashlib.sha256(open(c.db, "rb").read()).hexdigest()
    n = len(impact(c, "no_rewrite=true"))
    after = hashlib.sha256(open(c.db, "rb").read()).hexdigest()
    assert n == 18 and before == after
    assert not os.path.exists(c.db + "-journal")
    assert rows(c, "SELECT count(*) FROM sqlite_schema WHERE name IN ('migrate_history', 't_v', 'n')") == [(0,)]


@test
def apply_refuses_a_rewrite_before_anything_runs(c):
    populate(c)
    folder(c)
    err = fails(c, "SELECT migrate_apply(?, 'no_rewrite=true, max_size=64kB')", (c.dir,))
    pages, nbytes = size_of(c, "t")
    kb = ((nbytes >> 9) + 1) // 2
    want = ('migrate_apply: migration 4 (4_rebuild.up.sql), line 5: the migration policy refuses'
            ' "INSERT INTO new_t(id, v, s) SELECT id, v, s FROM t": it rewrites main.t'
            ' (%d pages, %d kB, 10000 rows)\nDETAIL:  The policy refuses, on a relation larger than'
            ' 64 kB (max_size=), a rewrite (no_rewrite=true). Nothing was applied.\nHINT:  The copy holds'
            % (pages, kb))
    assert err.startswith(want), err
    assert "-- migrate:accept rewrite main.t" in err, err
    # nothing ran: not the index of migration 1, which comes before it
    assert rows(c, "SELECT count(*) FROM sqlite_schema WHERE name IN ('migrate_history', 't_v', 'n')") == [(0,)]
    # the plan fails the same way; a larger max_size spares the table
    assert "the migration policy refuses" in fails(c, "SELECT * FROM migrate_plan(?, 'no_rewrite=true')", (c.dir,))
    assert len(rows(c, "SELECT * FROM migrate_plan(?, 'no_rewrite=true, max_size=100MB')", (c.dir,))) == 7
    # max_lock has no meaning where one writer locks the whole database
    assert len(rows(c, "SELECT * FROM migrate_plan(?, 'max_lock=AccessShareLock')", (c.dir,))) == 7


@test
def the_policy_column_and_markers(c):
    populate(c)
    c.put("1_drop.up.sql", "ALTER TABLE u DROP COLUMN s;\nALTER TABLE small DROP COLUMN v;\n")
    got = [(r[3], r[11]) for r in impact(c, "no_rewrite=true, max_size=8kB")]
    assert got == [("ALTER TABLE u DROP COLUMN s", "refused"), ("ALTER TABLE small DROP COLUMN v", None)], got
    c.put("1_drop.up.sql", "-- migrate:accept rewrite u\nALTER TABLE u DROP COLUMN s;\n")
    assert [r[11] for r in impact(c, "no_rewrite=true")] == ["accepted"]
    assert rows(c, "SELECT migrate_apply(?, 'no_rewrite=true')", (c.dir,)) == [(1,)]
    assert rows(c, "SELECT count(*) FROM pragma_table_info('u') WHERE name = 's'") == [(0,)]


@test
def a_marker_naming_another_table_or_malformed(c):
    populate(c)
    c.put("1_drop.up.sql", "-- migrate:accept rewrite main.small\nALTER TABLE u DROP COLUMN s;\n")
    assert [r[11] for r in impact(c, "no_rewrite=true")] == ["refused"]
    c.put("1_drop.up.sql", "ALTER TABLE u DROP COLUMN s;\n--migrate:accept\n")
    err = fails(c, "SELECT * FROM migrate_impact(?, 'no_rewrite=true')", (c.dir,))
    assert err.startswith("migrate_impact: migration 1 (1_drop.up.sql), line 2: malformed -- migrate:accept line:"
                          " it names no risk (rewrite or lock)"), err


@test
def validate_reports_what_the_policy_refuses(c):
    populate(c)
    folder(c)
    got = rows(c, "SELECT version, file, problem, severity, sqlstate, message FROM migrate_validate(?, ?)",
               (c.dir, "no_rewrite=true, max_size=64kB"))
    assert [g[:5] for g in got] == [("4", "4_rebuild.up.sql", "policy", "error", "55000"),
                                    ("5", "5_drop.up.sql", "policy", "error", "55000"),
                                    ("7", "7_vacuum.up.sql", "policy", "error", "55000")], got
    assert got[0][5].startswith("migration 4 (4_rebuild.up.sql), line 5: the migration policy refuses"), got[0][5]
    assert rows(c, "SELECT count(*) FROM migrate_validate(?)", (c.dir,)) == [(0,)]
    assert "unknown option \"target\"" in fails(c, "SELECT * FROM migrate_validate(?, 'target=1')", (c.dir,))


@test
def bad_policy_options_are_refused(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    assert 'option max_size takes a size such as 100MB, 1GB or 500kB, not "lots"' in \
        fails(c, "SELECT * FROM migrate_impact(?, 'max_size=lots')", (c.dir,))
    assert 'option max_lock takes a lock mode as pg_locks names it, not "big"' in \
        fails(c, "SELECT migrate_apply(?, 'max_lock=big')", (c.dir,))
    assert "option only=flagged needs an impact policy" in \
        fails(c, "SELECT migrate_script(?, 'only=flagged')", (c.dir,))
    assert 'unknown option "only"' in fails(c, "SELECT migrate_apply(?, 'only=flagged')", (c.dir,))


def off_hours_folder(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("1_a.down.sql", "DROP TABLE a;\n")
    c.put("2_b.up.sql", "ALTER TABLE u DROP COLUMN s;\n")
    c.put("3_c.up.sql", "CREATE TABLE cc(x);\n")


@test
def off_hours_script_holds_only_the_refused_migrations(c):
    populate(c)
    off_hours_folder(c)
    script = rows(c, "SELECT migrate_script(?, 'only=flagged, no_rewrite=true')", (c.dir,))[0][0]
    assert "-- migration 2 (2_b.up.sql): the policy refuses 1 statement of it; recorded ahead" in script, script
    assert "CREATE TABLE a(x)" not in script and "CREATE TABLE cc(x)" not in script, script
    p = subprocess.run(["sqlite3", "-bail", c.db], input=script, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert rows(c, "SELECT version, ahead FROM migrate_history") == [("2", 1)]
    assert rows(c, "SELECT count(*) FROM pragma_table_info('u') WHERE name = 's'") == [(0,)]
    # the apply after it runs the others, with the same policy: not out of order
    assert rows(c, "SELECT migrate_apply(?, 'no_rewrite=true')", (c.dir,)) == [(2,)]
    assert rows(c, "SELECT version FROM migrate_history ORDER BY installed_rank") == [("2",), ("1",), ("3",)]
    assert rows(c, "SELECT count(*) FROM migrate_status(?) WHERE state <> 'applied'", (c.dir,)) == [(0,)]
    # a second run of the script stops at the recorded version
    p = subprocess.run(["sqlite3", "-bail", c.db], input=script, capture_output=True, text=True)
    assert p.returncode != 0 and "UNIQUE" in p.stderr, p.stderr


@test
def without_the_mark_the_older_ones_are_out_of_order(c):
    populate(c)
    off_hours_folder(c)
    script = rows(c, "SELECT migrate_script(?, 'only=flagged, no_rewrite=true')", (c.dir,))[0][0]
    subprocess.run(["sqlite3", "-bail", c.db], input=script, check=True, capture_output=True, text=True)
    con = sqlite3.connect(c.db)
    con.execute("UPDATE migrate_history SET ahead = 0")
    con.commit()
    con.close()
    err = fails(c, "SELECT migrate_apply(?)", (c.dir,))
    assert "out of order" in err or "older than" in err, err


@test
def only_flagged_with_nothing_flagged(c):
    populate(c)
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    script = rows(c, "SELECT migrate_script(?, 'only=flagged, no_rewrite=true')", (c.dir,))[0][0]
    assert "-- no pending migration is refused by the policy: nothing to run off-hours" in script, script
    assert "CREATE TABLE a" not in script


@test
def an_older_history_gains_the_column(c):
    populate(c)
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_b.up.sql", "ALTER TABLE u DROP COLUMN s;\n")
    c.put("3_c.up.sql", "CREATE TABLE cc(x);\n")
    # the history of the build before this one: every column but ahead
    con = sqlite3.connect(c.db)
    con.execute("CREATE TABLE migrate_history(installed_rank INTEGER PRIMARY KEY, version TEXT NOT NULL UNIQUE,"
                " name TEXT NOT NULL, up_file TEXT NOT NULL, down_file TEXT, checksum TEXT NOT NULL,"
                " checksum_norm TEXT, applied_at TEXT NOT NULL, execution_ms REAL NOT NULL, file_id TEXT,"
                " applied_by TEXT, down_mode TEXT, down_line INTEGER, up_sql TEXT NOT NULL, down_sql TEXT)")
    con.commit()
    con.close()
    script = rows(c, "SELECT migrate_script(?, 'only=flagged, no_rewrite=true')", (c.dir,))[0][0]
    subprocess.run(["sqlite3", "-bail", c.db], input=script, check=True, capture_output=True, text=True)
    assert rows(c, "SELECT version, ahead FROM migrate_history") == [("2", 1)]
    assert rows(c, "SELECT migrate_apply(?)", (c.dir,)) == [(2,)]


@test
def needs_a_folder(c):
    assert "give the migration folder" in fails(c, "SELECT * FROM migrate_impact")


if __name__ == "__main__":
    sys.exit(main("impact"))
