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
from harness import main, test  # noqa: E402

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


if __name__ == "__main__":
    sys.exit(main("layouts"))
