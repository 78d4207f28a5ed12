#!/usr/bin/python3
"""Every migration layout through the real SQLite extension: apply, status,
roll back and apply again, with the tricky parts real projects have
(trigger bodies, semicolons and quotes in comments, no final newline,
comment-only downs, CRLF), plus per-engine folders, mixed folders and
non-transactional markers.  Prints TAP.

    tests/sqlite/test_layouts.py [build/migrate] [name-filter]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EXT, main, test  # noqa: E402

TRIGGER = ("CREATE TABLE audit(msg TEXT);\n"
           "CREATE TRIGGER users_ins AFTER INSERT ON users BEGIN\n"
           "  INSERT INTO audit VALUES ('added; ' || new.name);  -- it's a ; in a comment\n"
           "END;\n")


def cycle(c, versions, downs_ok=True):
    """apply, status, roll back everything, apply again."""
    n = len(versions)
    assert c.apply() == n
    assert [r[0] for r in c.history()] == versions, c.history()
    st = c.ok("SELECT group_concat(version || '=' || state, ' ') FROM migrate_status('%s')" % c.dir)
    assert st == " ".join(v + "=applied" for v in versions), st
    if downs_ok:
        assert c.ok("SELECT migrate_down(%d)" % n) == str(n)
        assert c.tables() == ["migrate_history"], c.tables()
        assert c.apply() == n


@test
def flyway(c):
    c.put("V1__create_users.sql", "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\n" + TRIGGER)
    c.put("U1__create_users.sql", "DROP TABLE audit;\nDROP TABLE users;\n")
    c.put("V1.1__seed.sql", "INSERT INTO users(name) VALUES ('ann');")  # no final newline
    c.put("U1.1__seed.sql", "DELETE FROM users;\n")
    c.put("V1_2__index.sql", "/* ; */ CREATE INDEX users_name ON users(name);\r\n")
    c.put("U1_2__index.sql", "DROP INDEX users_name;\r\n")
    c.put("V10__more.sql", "CREATE TABLE more(x);\n")
    c.put("U10__more.sql", "-- nothing to undo but the table\nDROP TABLE more;\n")
    cycle(c, ["1", "1.1", "1.2", "10"])
    assert c.query("SELECT msg FROM audit") == [("added; ann",)]
    assert c.query("SELECT up_file, down_file FROM migrate_history WHERE version = '1.2'") == \
        [("V1_2__index.sql", "U1_2__index.sql")]


@test
def flyway_duplicate(c):
    c.put("V1__a.sql", "CREATE TABLE a(x);")
    c.put("V1.0__b.sql", "CREATE TABLE b(x);")
    c.fails("SELECT migrate_apply('%s')" % c.dir,
            "more than one file for migration version 1 (V1.0__b.sql, V1__a.sql)")
    assert c.tables() == []


@test
def flyway_repeatable(c):
    """R__ files run after the versioned ones, again whenever they change,
    and are never rolled back."""
    c.put("V1__t.sql", "CREATE TABLE t(x);")
    c.put("U1__t.sql", "DROP VIEW IF EXISTS v_t; DROP TABLE t;")
    c.put("R__v_t.sql", "DROP VIEW IF EXISTS v_t;\nCREATE VIEW v_t AS SELECT x FROM t;\n")
    c.put("R__a_first.sql", "CREATE TABLE IF NOT EXISTS runs(n);\nINSERT INTO runs VALUES (1);\n")
    assert c.apply() == 3
    assert [r[0] for r in c.history()] == ["1", "R__a_first", "R__v_t"], "versioned first, then by name"
    assert c.apply() == 0
    c.put("R__v_t.sql", "DROP VIEW IF EXISTS v_t;\nCREATE VIEW v_t AS SELECT x, x AS y FROM t;\n")
    c.put("V2__u.sql", "CREATE TABLE u(x);")
    c.put("U2__u.sql", "DROP TABLE u;")
    st = c.ok("SELECT group_concat(version || '=' || state, ' ') FROM migrate_status('%s')" % c.dir)
    assert st == "1=applied 2=pending R__a_first=applied R__v_t=outdated", st
    assert c.apply() == 2, "V2 and the changed view"
    assert [r[0] for r in c.history()] == ["1", "R__a_first", "2", "R__v_t"]
    assert c.query("SELECT count(*) FROM runs") == [(1,)], "an unchanged repeatable does not run again"
    assert "y" in c.ok("SELECT sql FROM sqlite_schema WHERE name = 'v_t'")
    assert c.ok("SELECT migrate_down(1)") == "1", "rolls back V2, not the repeatable applied after it"
    assert c.tables() == ["migrate_history", "runs", "t", "v_t"]
    c.rm("R__a_first.sql")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "applied migration R__a_first (R__a_first.sql) is missing")


@test
def diesel(c):
    for d, up, down in [
        ("2018-01-14-171611_create_users", "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\n" + TRIGGER,
         "DROP TABLE audit;\nDROP TABLE users;\n"),
        ("2018-01-15-093000_seed", "INSERT INTO users(name) VALUES ('a;b');", "DELETE FROM users;"),
    ]:
        os.mkdir(os.path.join(c.dir, d))
        c.put(d + "/up.sql", up)
        c.put(d + "/down.sql", down)
    c.put("2018-01-15-093000_seed/metadata.toml", "run_in_transaction = true\n")
    c.put(".keep", "")
    cycle(c, ["20180114171611", "20180115093000"])
    assert c.query("SELECT up_file FROM migrate_history ORDER BY installed_rank") == \
        [("2018-01-14-171611_create_users/up.sql",), ("2018-01-15-093000_seed/up.sql",)]
    os.mkdir(os.path.join(c.dir, "2018-01-16-000000_empty"))
    c.fails("SELECT migrate_apply('%s')" % c.dir, "2018-01-16-000000_empty/up.sql (missing)")


@test
def dbmate(c):
    c.put("20240101120000_create_users.sql",
          "-- migrate:up\nCREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\n" + TRIGGER +
          "\n-- migrate:down\nDROP TABLE audit;\nDROP TABLE users;\n")
    c.put("20240102000000_seed.sql",
          "-- migrate:up\r\nINSERT INTO users(name) VALUES ('x'); -- migrate:down in a comment\r\n"
          "-- migrate:down\r\n-- nothing to undo: the table goes in the previous down\r\n")
    cycle(c, ["20240101120000", "20240102000000"])
    row = c.query("SELECT up_sql, down_sql FROM migrate_history WHERE version = '20240101120000'")[0]
    assert row[0].startswith("CREATE TABLE users") and "migrate:" not in row[0], row[0]
    assert row[1] == "DROP TABLE audit;\nDROP TABLE users;\n", row[1]


@test
def dbmate_errors_name_the_file_line(c):
    c.put("20240101120000_a.sql", "-- migrate:up\nCREATE TABLE a(x);\n\nSELECT * FROM nope;\n-- migrate:down\nDROP TABLE a;\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir,
            "migration 20240101120000 (20240101120000_a.sql), line 4: no such table: nope")
    c.put("20240101120000_a.sql", "-- migrate:down\nDROP TABLE a;\n-- migrate:up\nCREATE TABLE a(x);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir,
            "has -- migrate:down before -- migrate:up", "line 1")
    c.put("20240101120000_a.sql", "-- migrate:up transaction:false\nCREATE TABLE a(x);\n")
    # marked to run outside a transaction: refused inside one, run outside
    c.fails("BEGIN; SELECT migrate_apply('%s');" % c.dir,
            "migration 20240101120000 (20240101120000_a.sql): it must run outside a transaction",
            "It is marked to run outside a transaction (-- migrate:up transaction:false)")
    assert c.tables() == []
    assert c.apply() == 1


@test
def goose(c):
    c.put("00001_create_users.sql",
          "-- +goose Up\nCREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\n"
          "-- +goose StatementBegin\n" + TRIGGER + "-- +goose StatementEnd\n"
          "-- +goose Down\nDROP TABLE audit;\nDROP TABLE users;\n")
    c.put("00002_seed.sql", "-- +goose up\nINSERT INTO users(name) VALUES ('it''s');\n-- +GOOSE DOWN\n")
    c.put("00010_more.sql", "-- a header comment\n-- +goose Up\nCREATE TABLE more(x)")
    cycle(c, ["1", "2", "10"], downs_ok=False)
    assert c.query("SELECT version, down_sql, down_mode FROM migrate_history WHERE version IN ('2', '10')"
                   " ORDER BY installed_rank") == [("2", "", "noop"), ("10", "", "noop")], \
        "an empty Down section and no Down annotation are both no-ops, as goose has them"
    st = c.ok("SELECT group_concat(version || '=' || down, ' ') FROM migrate_status('%s')" % c.dir)
    assert st == "1=script 2=noop 10=noop", st
    # goose rolls back a file without a Down section by running nothing
    # and forgetting it: its table stays
    assert c.ok("SELECT migrate_down(1)") == "1"
    assert "more" in c.tables()
    c.rm("00010_more.sql")
    c.query("DROP TABLE more")
    assert c.ok("SELECT migrate_down(2)") == "2"
    assert c.tables() == ["migrate_history"]


@test
def goose_failing_down_names_the_line_in_the_file(c):
    """Issue 18.7: a goose file's Down runs in a transaction; its error
    names the file and the line counted in the file (8), not in the Down
    section (3), and nothing is rolled back."""
    c.put("1_a.sql", "-- +goose Up\nCREATE TABLE a(x);\nCREATE TABLE b(x);\n\n"
          "-- +goose Down\nDROP TABLE b;\n\nDROP TABLE nope;\nDROP TABLE a;\n")
    assert c.apply() == 1
    c.fails("SELECT migrate_down(1)",
            "rollback of migration 1 (1_a.sql), line 8: no such table: nope")
    assert c.tables() == ["a", "b", "migrate_history"], c.tables()
    assert [r[0] for r in c.history()] == ["1"]


@test
def dbmate_without_migrate_down_has_no_down_script(c):
    """Issue 18.6: the tools that have no rollback for a migration without a
    down part -- dbmate without -- migrate:down (ErrParseMissingDown), diesel
    without down.sql (NoMigrationRevertFile, next test), Flyway without its
    U file (the one after) -- are refused by migrate_down, naming the
    version; nothing is rolled back."""
    hint = "A down script is stored when a migration is applied with one"
    c.put("20240101120000_a.sql", "-- migrate:up\nCREATE TABLE a(x);\n")
    assert c.apply() == 1
    assert c.ok("SELECT down FROM migrate_status('%s')" % c.dir) == "none"
    c.fails("SELECT migrate_down(1)", "migration 20240101120000 has no down script",
            "Nothing was rolled back.", hint)
    assert c.tables() == ["a", "migrate_history"]
    assert [r[0] for r in c.history()] == ["20240101120000"]


@test
def diesel_without_down_sql_has_no_down_script(c):
    os.mkdir(os.path.join(c.dir, "2018-01-14-171611_a"))
    c.put("2018-01-14-171611_a/up.sql", "CREATE TABLE a(x);\n")
    assert c.apply() == 1
    assert c.ok("SELECT down FROM migrate_status('%s')" % c.dir) == "none"
    c.fails("SELECT migrate_down(1)", "migration 20180114171611 has no down script",
            "Nothing was rolled back.")
    assert c.tables() == ["a", "migrate_history"]
    assert [r[0] for r in c.history()] == ["20180114171611"]


@test
def flyway_without_an_undo_file_has_no_down_script(c):
    c.put("V1__a.sql", "CREATE TABLE a(x);\n")
    c.put("V2__b.sql", "CREATE TABLE b(x);\n")
    c.put("U2__b.sql", "DROP TABLE b;\n")
    assert c.apply() == 2
    st = c.ok("SELECT group_concat(version || '=' || down, ' ') FROM migrate_status('%s')" % c.dir)
    assert st == "1=none 2=script", st
    c.fails("SELECT migrate_down(2)", "migration 1 has no down script", "Nothing was rolled back.")
    assert c.tables() == ["a", "b", "migrate_history"], "not even V2, which has a U file"
    assert c.ok("SELECT migrate_down(1)") == "1"
    assert c.tables() == ["a", "migrate_history"]


@test
def goose_refusals(c):
    c.put("1_a.sql", "-- +goose Up\n-- +goose NO TRANSACTION\nCREATE TABLE a(x);\n")
    c.fails("BEGIN; SELECT migrate_apply('%s');" % c.dir, "(-- +goose NO TRANSACTION)")
    c.put("1_a.sql", "-- +goose Up\n-- +goose ENVSUB ON\nCREATE TABLE a(x);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "has the goose annotation \"-- +goose ENVSUB ON\", which is not supported",
            "line 2")
    c.put("1_a.sql", "-- +goose Down\nDROP TABLE a;\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "has -- +goose Down before -- +goose Up")
    c.put("1_a.sql", "-- +goose Up\nCREATE TABLE a(x);\n-- +goose Up\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "has a second -- +goose Up annotation", "line 3")
    c.put("1_a.sql", "-- +goose Up\nCREATE TABLE a(x);\n-- migrate:down\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "mixes goose and dbmate markers")
    assert c.tables() == []


@test
def sqlx(c):
    c.put("20210422143411_create_users.sql", "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\n" + TRIGGER)
    c.put("20210422143412_seed.sql", "INSERT INTO users(name) VALUES ('x');\n")
    cycle(c, ["20210422143411", "20210422143412"], downs_ok=False)
    c.fails("SELECT migrate_down(1)", "migration 20210422143412 has no down script")
    c.put("20210422143413_concurrently.sql", "-- no-transaction\nCREATE TABLE t(x);\n")
    c.fails("BEGIN; SELECT migrate_apply('%s');" % c.dir, "(-- no-transaction)")
    assert c.apply() == 1


@test
def sqlx_reversible_and_morph_marker(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("1_a.down.sql", "DROP TABLE a;\n")
    assert c.apply() == 1
    c.put("2_b.up.sql", "-- no-transaction\nCREATE TABLE b(x);\n")
    c.fails("BEGIN; SELECT migrate_apply('%s');" % c.dir, "migration 2 (2_b.up.sql): it must run outside a transaction")
    c.put("2_b.up.sql", "-- morph:nontransactional\nCREATE TABLE b(x);\n")
    c.fails("BEGIN; SELECT migrate_apply('%s');" % c.dir, "(-- morph:nontransactional)")
    c.put("2_b.up.sql", "SELECT 1; -- no-transaction is only a marker on line one\n-- no-transaction\n")
    assert c.apply() == 1


@test
def per_engine_folders(c):
    os.mkdir(os.path.join(c.dir, "postgres"))
    os.mkdir(os.path.join(c.dir, "sqlite"))
    c.put("postgres/000001_a.up.sql", "CREATE TABLE a(x serial);\nDO $$ BEGIN END $$;\n")
    c.put("sqlite/000001_a.up.sql", "CREATE TABLE a(x INTEGER PRIMARY KEY AUTOINCREMENT);\n")
    c.put("sqlite/000001_a.down.sql", "DROP TABLE a;\n")
    c.put("README.md", "one folder per engine\n")
    assert c.apply() == 1
    assert c.query("SELECT up_file FROM migrate_history") == [("sqlite/000001_a.up.sql",)]
    assert c.ok("SELECT file FROM migrate_status('%s')" % c.dir) == "sqlite/000001_a.up.sql"


@test
def only_another_engines_folder(c):
    os.mkdir(os.path.join(c.dir, "postgresql"))
    c.put("postgresql/1_a.up.sql", "CREATE TABLE a(x serial);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir,
            "has a folder for another engine (postgresql/) but none for sqlite")


@test
def mixed_layouts_refused(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);")
    c.put("1_a.down.sql", "DROP TABLE a;")
    c.put("V2__b.sql", "CREATE TABLE b(x);")
    c.put("V3__c.sql", "CREATE TABLE c(x);")
    c.fails("SELECT migrate_apply('%s')" % c.dir,
            "migration folder mixes the golang-migrate and Flyway layouts",
            "DETAIL:  golang-migrate: 1_a.up.sql and 1_a.down.sql. Flyway: V2__b.sql and V3__c.sql.")
    assert c.tables() == []


# ---- each tool's own order and names ----

def mkdirs(c, *names):
    for d in names:
        os.makedirs(os.path.join(c.dir, d), exist_ok=True)


def ext_query(c, sql):
    """Rows of sql on a connection with the extension loaded."""
    import sqlite3
    con = sqlite3.connect(c.db)
    try:
        con.enable_load_extension(True)
        con.load_extension(EXT)
        return con.execute(sql).fetchall()
    finally:
        con.close()


def history_files(c):
    return [r[0] for r in c.query("SELECT up_file FROM migrate_history ORDER BY installed_rank")]


@test
def diesel_orders_versions_as_text(c):
    """diesel sorts migrations by version text (the folder name up to its
    first '_', dashes removed) compared as strings: 20240313 comes after
    20240306170000, 10 before 9, 0002 before 0010; the history keeps the
    version text as before (leading zeros dropped)."""
    dirs = [("00000000000000_diesel_initial_setup", "CREATE TABLE setup(x);"),
            ("2024-03-06-170000_add_users", "CREATE TABLE users(id INTEGER PRIMARY KEY);"),
            ("2024-03-13_170000_users_cascade", "CREATE INDEX users_id ON users(id);")]
    for d, up in dirs:
        mkdirs(c, d)
        c.put(d + "/up.sql", up + "\n")
        c.put(d + "/down.sql", "SELECT 1;\n")
    assert c.apply() == 3
    assert [r[0] for r in c.history()] == ["0", "20240306170000", "20240313"], c.history()
    st = c.ok("SELECT group_concat(version, ' ') FROM migrate_status('%s')" % c.dir)
    assert st == "0 20240306170000 20240313", st
    c.put("2024-03-13_170000_users_cascade/up.sql", "CREATE INDEX users_id ON users(id);\n")
    assert c.apply() == 0


@test
def diesel_text_order_of_short_versions(c):
    for d in ("9_nine", "10_ten", "0002_two", "0030_thirty"):
        mkdirs(c, d)
        c.put(d + "/up.sql", "CREATE TABLE t_%s(x);\n" % d.split("_", 1)[1])
    assert c.apply() == 4
    assert history_files(c) == ["0002_two/up.sql", "0030_thirty/up.sql", "10_ten/up.sql",
                                "9_nine/up.sql"], history_files(c)
    mkdirs(c, "11_eleven")
    c.put("11_eleven/up.sql", "CREATE TABLE t_eleven(x);\n")
    st = c.ok("SELECT group_concat(file || '=' || state, ' ') FROM migrate_status('%s')" % c.dir)
    assert st.endswith("10_ten/up.sql=applied 11_eleven/up.sql=out_of_order 9_nine/up.sql=applied"), st
    c.fails("SELECT migrate_apply('%s')" % c.dir, "pending migration 11 (11_eleven/up.sql) is older than")
    assert c.ok("SELECT migrate_apply('%s', 'out_of_order=true')" % c.dir) == "1"


@test
def dbmate_names_and_order(c):
    """dbmate takes any name matching ^(\\d+).*\\.sql$ and runs files in
    the order of their names."""
    c.put("00000000000000-initial-schema.sql", "-- migrate:up\nCREATE TABLE s(x);\n-- migrate:down\nDROP TABLE s;\n")
    c.put("20240101120000_a.sql", "-- migrate:up\nCREATE TABLE a(x);\n")
    c.put("20240102000000.sql", "-- migrate:up\nCREATE TABLE b(x);\n-- migrate:down\nDROP TABLE b;\n")
    assert c.apply() == 3
    assert history_files(c) == ["00000000000000-initial-schema.sql", "20240101120000_a.sql",
                                "20240102000000.sql"], history_files(c)
    assert [r[0] for r in c.history()] == ["0", "20240101120000", "20240102000000"]
    assert c.ok("SELECT migrate_down(1)") == "1" and "b" not in c.tables()


@test
def dbmate_mixed_widths_run_in_name_order(c):
    for n in ("1_a", "9_b", "10_c"):
        c.put(n + ".sql", "-- migrate:up\nCREATE TABLE t%s(x);\n" % n)
    assert c.apply() == 3
    assert history_files(c) == ["10_c.sql", "1_a.sql", "9_b.sql"], history_files(c)


@test
def goose_mixed_widths_run_in_number_order(c):
    for n in ("1_a", "9_b", "10_c"):
        c.put(n + ".sql", "-- +goose Up\nCREATE TABLE t%s(x);\n" % n)
    assert c.apply() == 3
    assert history_files(c) == ["1_a.sql", "9_b.sql", "10_c.sql"], history_files(c)


PG_ONLY = "CREATE TABLE never(x);\n"


@test
def mongooseim_upgrade_scripts(c):
    """{engine}_{from}_{to}.sql: this engine's scripts by target release,
    other engines' twins and the fresh-install files left alone."""
    c.put("pg.sql", PG_ONLY)
    c.put("mysql.sql", PG_ONLY)
    c.put("sqlite.sql", "CREATE TABLE fresh(x);\n")
    for eng in ("pgsql", "mysql", "mssql", "cockroachdb"):
        for f, t in (("4.2.0", "5.0.0"), ("5.0.0", "5.1.0"), ("5.1.0", "5.10.0")):
            c.put("%s_%s_%s.sql" % (eng, f, t), PG_ONLY)
    c.put("sqlite_4.2.0_5.0.0.sql", "CREATE TABLE m500(x);\n")
    c.put("sqlite_5.1.0_5.10.0.sql", "CREATE TABLE m5100(x);\n")
    c.put("sqlite_5.0.0_5.1.0.sql", "CREATE TABLE m510(x);\n")
    assert c.apply() == 3
    assert history_files(c) == ["sqlite_4.2.0_5.0.0.sql", "sqlite_5.0.0_5.1.0.sql", "sqlite_5.1.0_5.10.0.sql"]
    assert [r[0] for r in c.history()] == ["5", "5.1", "5.10"], c.history()
    assert c.tables() == ["m500", "m510", "m5100", "migrate_history"], c.tables()
    # a release without schema changes has no script: a gap is fine (a warning)
    c.put("sqlite_6.1.0_6.2.0.sql", "CREATE TABLE m620(x);\n")
    rows = ext_query(c, "SELECT problem, severity, message FROM migrate_validate('%s')" % c.dir)
    assert [r[:2] for r in rows] == [("gap", "warning")], rows
    assert "sqlite_5.1.0_5.10.0.sql" in rows[0][2] and "sqlite_6.1.0_6.2.0.sql" in rows[0][2], rows
    assert c.apply() == 1
    # overlapping scripts are an error naming both
    c.put("sqlite_6.1.0_6.3.0.sql", "CREATE TABLE bad(x);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "sqlite_6.1.0_6.2.0.sql", "sqlite_6.1.0_6.3.0.sql",
            "upgrade scripts overlap")
    c.rm("sqlite_6.1.0_6.3.0.sql")
    c.put("sqlite_6.3.0_6.2.5.sql", "CREATE TABLE bad(x);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "sqlite_6.3.0_6.2.5.sql")


@test
def mongooseim_other_engines_only(c):
    c.put("pgsql_4.2.0_5.0.0.sql", PG_ONLY)
    c.put("mysql_4.2.0_5.0.0.sql", PG_ONLY)
    c.fails("SELECT migrate_apply('%s')" % c.dir, "upgrade scripts for other engines",
            "pgsql_4.2.0_5.0.0.sql", "none for sqlite")


@test
def version_folders(c):
    """memos: {version}/{NN}__{name}.sql, ordered by folder version then
    number; the fresh-install LATEST.sql is not a migration."""
    mkdirs(c, "0.2", "0.10", "0.31")
    c.put("LATEST.sql", "CREATE TABLE fresh(x);\n")
    c.put("0.2/00__init.sql", "CREATE TABLE a(x);\n")
    c.put("0.2/01__x.sql", "CREATE TABLE b(x);\n")
    c.put("0.10/00__y.sql", "CREATE TABLE c(x);\n")
    c.put("0.31/00__z.sql", "CREATE TABLE d(x);\n")
    c.put("0.31/02__w.sql", "CREATE TABLE e(x);\n")
    c.put("0.31/notes.md", "ignored\n")
    assert c.apply() == 5
    assert [r[0] for r in c.history()] == ["0.2.1", "0.2.2", "0.10.1", "0.31.1", "0.31.3"], c.history()
    assert history_files(c) == ["0.2/00__init.sql", "0.2/01__x.sql", "0.10/00__y.sql", "0.31/00__z.sql",
                                "0.31/02__w.sql"]
    assert "fresh" not in c.tables()
    assert c.ok("SELECT migrate_apply('%s', 'target=0.31.1')" % c.dir) == "0"
    mkdirs(c, "1.0.0")
    c.put("1.0.0/00__v.sql", "CREATE TABLE v(x);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "1.0.0", "0.2")


@test
def version_folders_per_engine(c):
    for eng in ("mysql", "postgres", "sqlite"):
        mkdirs(c, eng + "/0.22", eng + "/0.23")
        c.put(eng + "/LATEST.sql", "CREATE TABLE fresh(x);\n")
        c.put(eng + "/0.22/00__a.sql", "CREATE TABLE t_%s_a(x);\n" % eng)
        c.put(eng + "/0.23/00__b.sql", "CREATE TABLE t_%s_b(x);\n" % eng)
    assert c.apply() == 2
    assert history_files(c) == ["sqlite/0.22/00__a.sql", "sqlite/0.23/00__b.sql"]


@test
def subfolder_never_skipped_silently(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    mkdirs(c, "archive")
    c.put("archive/2_b.up.sql", "CREATE TABLE b(x);\n")
    c.fails("SELECT migrate_apply('%s')" % c.dir, "archive")
    rows = ext_query(c, "SELECT problem, file FROM migrate_validate('%s')" % c.dir)
    assert rows and "archive" in rows[0][1], rows
    assert c.tables() == []


@test
def goose_go_migrations(c):
    c.put("00001_a.sql", "-- +goose Up\nCREATE TABLE a(x);\n-- +goose Down\nDROP TABLE a;\n")
    c.put("00002_backfill.go", "package migrations\n")
    c.put("00003_c.sql", "-- +goose Up\nCREATE TABLE c(x);\n-- +goose Down\nDROP TABLE c;\n")
    c.put("helpers.go", "package migrations\n")
    c.put("00002_backfill_test.go", "package migrations\n")
    err = c.fails("SELECT migrate_apply('%s')" % c.dir, "00002_backfill.go", "migrate_record")
    assert c.tables() == ["a", "migrate_history"], "the SQL migration before it was applied"
    c.fails("SELECT migrate_apply('%s')" % c.dir, "00002_backfill.go", "migrate_record")
    st = c.ok("SELECT group_concat(version || '=' || state || '=' || file, ' ') FROM migrate_status('%s')" % c.dir)
    assert st == "1=applied=00001_a.sql 2=pending=00002_backfill.go 3=pending=00003_c.sql", st
    rows = ext_query(c, "SELECT version, file, severity FROM migrate_validate('%s')" % c.dir)
    assert rows == [("2", "00002_backfill.go", "error")], rows
    c.fails("SELECT migrate_record('%s', '3')" % c.dir, "migration 3", "is not the next")
    assert c.ok("SELECT migrate_record('%s', '2')" % c.dir) == "1"
    assert c.query("SELECT version, new_checksum IS NOT NULL, action FROM migrate_repairs") == [("2", 1, "record")]
    assert c.apply() == 1
    assert c.tables() == ["a", "c", "migrate_history", "migrate_repairs"]
    c.fails("SELECT migrate_down(2)", "migration 2 has no down script")
    c.fails("SELECT migrate_record('%s', '2')" % c.dir, "migration 2", "already applied")
    c.put("00002_backfill.go", "package migrations\n\n// refactored since it ran\n")
    assert c.ok("SELECT state FROM migrate_status('%s') WHERE version = '2'" % c.dir) == "applied", \
        "an applied Go migration's file is not held against what ran"
    assert c.apply() == 0


@test
def mongooseim_fresh_install_then_baseline(c):
    """README: a new database runs the fresh-install file, then records
    the scripts up to its release with migrate_baseline."""
    c.put("sqlite.sql", "CREATE TABLE m500(x); CREATE TABLE m510(x);\n")
    c.put("sqlite_4.2.0_5.0.0.sql", "CREATE TABLE m500(x);\n")
    c.put("sqlite_5.0.0_5.1.0.sql", "CREATE TABLE m510(x);\n")
    c.put("sqlite_5.1.0_5.10.0.sql", "CREATE TABLE m5100(x);\n")
    c.query("SELECT 1")
    import sqlite3
    con = sqlite3.connect(c.db)
    con.executescript(open(os.path.join(c.dir, "sqlite.sql")).read())
    con.close()
    assert c.ok("SELECT migrate_baseline('%s', '5.1.0')" % c.dir) == "2"
    assert c.apply() == 1
    assert [r[0] for r in c.history()] == ["5", "5.1", "5.10"]


@test
def diesel_in_per_engine_folders(c):
    """A diesel folder per engine (its migrations read from this engine's
    folder: the path used to name the engine's folder twice)."""
    for eng in ("postgres", "sqlite"):
        mkdirs(c, eng + "/2018-01-01-000000_a")
        c.put(eng + "/2018-01-01-000000_a/up.sql", "CREATE TABLE %s_a(x);\n" % eng[:2])
        c.put(eng + "/2018-01-01-000000_a/down.sql", "DROP TABLE %s_a;\n" % eng[:2])
    assert c.apply() == 1
    assert history_files(c) == ["sqlite/2018-01-01-000000_a/up.sql"]
    assert c.tables() == ["migrate_history", "sq_a"]


if __name__ == "__main__":
    sys.exit(main("layouts"))
