#!/usr/bin/python3
"""migrate_adopt through the real SQLite extension: for each tool, the
database state that tool leaves behind (its history table with realistic
rows, and the schema its migrations made), then adopt, check our history
and that the other table is untouched, and apply exactly the rest.
Prints TAP.

    tests/sqlite/test_adopt.py [build/migrate] [name-filter]
"""
import os
import sqlite3
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import main, test  # noqa: E402


def flyway_checksum(data):
    """Flyway's: CRC-32 of the lines without terminators, BOM left out,
    as a signed 32-bit number."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    crc = 0
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        crc = zlib.crc32(line, crc)
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def setup(c, files, applied_sql, table_sql, rows_sql):
    """Writes the files; plays the schema the old tool applied and its
    history table."""
    for name, text in files.items():
        if "/" in name:
            os.makedirs(os.path.join(c.dir, os.path.dirname(name)), exist_ok=True)
        c.put(name, text)
    con = sqlite3.connect(c.db)
    con.executescript(applied_sql + table_sql + rows_sql)
    con.commit()
    con.close()


def adopt_then_apply(c, table, adopted, rest, versions):
    before = c.query("SELECT * FROM %s" % table)
    assert c.ok("SELECT migrate_adopt('%s')" % c.dir) == str(adopted)
    assert c.query("SELECT * FROM %s" % table) == before, "the other tool's table is untouched"
    assert [r[0] for r in c.history()] == versions[:adopted]
    assert c.query("SELECT count(*) FROM migrate_history WHERE execution_ms = 0") == [(adopted,)]
    assert c.apply() == rest, "apply runs exactly what the old tool had not"
    assert [r[0] for r in c.history()] == versions
    st = c.ok("SELECT group_concat(state) FROM migrate_status('%s')" % c.dir)
    assert set(st.split(",")) == {"applied"}, st
    c.fails("SELECT migrate_adopt('%s')" % c.dir, "migrate_history already records")


FLYWAY_TABLE = """
CREATE TABLE "flyway_schema_history" ("installed_rank" INT NOT NULL PRIMARY KEY,
  "version" VARCHAR(50), "description" VARCHAR(200) NOT NULL, "type" VARCHAR(20) NOT NULL,
  "script" VARCHAR(1000) NOT NULL, "checksum" INT, "installed_by" VARCHAR(100) NOT NULL,
  "installed_on" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')),
  "execution_time" INT NOT NULL, "success" BOOLEAN NOT NULL);
"""
FLYWAY_FILES = {
    "V1__create_users.sql": "\ufeffCREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\r\n",
    "V1_1__seed.sql": "INSERT INTO users(name) VALUES ('ann');\n-- no final newline",
    "U1_1__seed.sql": "DELETE FROM users;\n",
    "V2__posts.sql": "CREATE TABLE posts(id INTEGER PRIMARY KEY);\n",
    "U2__posts.sql": "DROP TABLE posts;\n",
}


def flyway_rows(c, extra=""):
    sums = {n: flyway_checksum(open(os.path.join(c.dir, n), "rb").read()) for n in FLYWAY_FILES}
    return ("INSERT INTO flyway_schema_history VALUES"
            " (1, '1', 'create users', 'SQL', 'V1__create_users.sql', %d, 'app', '2024-01-01', 12, 1),"
            " (2, '1.1', 'seed', 'SQL', 'V1_1__seed.sql', %d, 'app', '2024-01-01', 3, 1);%s"
            % (sums["V1__create_users.sql"], sums["V1_1__seed.sql"], extra))


@test
def flyway(c):
    setup(c, FLYWAY_FILES, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);"
          "INSERT INTO users(name) VALUES ('ann');", FLYWAY_TABLE, "")
    con = sqlite3.connect(c.db)
    con.executescript(flyway_rows(c))
    con.close()
    adopt_then_apply(c, "flyway_schema_history", 2, 1, ["1", "1.1", "2"])
    assert c.query("SELECT down_sql FROM migrate_history WHERE version = '1.1'") == [("DELETE FROM users;\n",)]
    assert c.ok("SELECT migrate_down(2)") == "2", "the adopted undo script works"
    assert c.query("SELECT count(*) FROM users") == [(0,)]


@test
def flyway_checksum_mismatch_and_failures(c):
    setup(c, FLYWAY_FILES, "", FLYWAY_TABLE, "")
    con = sqlite3.connect(c.db)
    con.executescript(flyway_rows(c))
    con.close()
    c.put("V1_1__seed.sql", "INSERT INTO users(name) VALUES ('bob');\n")
    c.fails("SELECT migrate_adopt('%s')" % c.dir, "1 file changed since Flyway applied it",
            "V1_1__seed.sql (Flyway recorded")
    c.put("V1_1__seed.sql", FLYWAY_FILES["V1_1__seed.sql"].replace("\n", "\r\n"))
    assert c.ok("SELECT migrate_adopt('%s')" % c.dir) == "2", "line endings do not count, as in Flyway"
    c2 = c
    con = sqlite3.connect(c2.db)
    con.executescript("DELETE FROM migrate_history;"
                      "INSERT INTO flyway_schema_history VALUES (3, '2', 'posts', 'SQL', 'V2__posts.sql', 0,"
                      " 'app', '2024-01-01', 1, 0);")
    con.close()
    c.fails("SELECT migrate_adopt('%s')" % c.dir, "Flyway recorded a failed migration (version 2)",
            "Nothing was adopted")


@test
def flyway_repeatables(c):
    files = dict(FLYWAY_FILES)
    files["R__view.sql"] = "CREATE VIEW IF NOT EXISTS v AS SELECT 1;\n"
    files["R__other.sql"] = "CREATE TABLE IF NOT EXISTS other(x);\n"
    setup(c, files, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); CREATE VIEW v AS SELECT 1;",
          FLYWAY_TABLE, "")
    view = flyway_checksum(files["R__view.sql"].encode())
    con = sqlite3.connect(c.db)
    con.executescript(flyway_rows(c, " INSERT INTO flyway_schema_history VALUES"
                                     " (3, NULL, 'view', 'SQL', 'R__view.sql', %d, 'app', '2024-01-01', 1, 1),"
                                     " (4, NULL, 'other', 'SQL', 'R__other.sql', 12345, 'app', '2024-01-01', 1, 1);"
                                     % view))
    con.close()
    assert c.ok("SELECT migrate_adopt('%s')" % c.dir) == "3", "1, 1.1 and the unchanged R__view"
    assert [r[0] for r in c.history()] == ["1", "1.1", "R__view"]
    assert c.apply() == 2, "V2, and R__other which changed since Flyway ran it"
    assert c.query("SELECT count(*) FROM other") == [(0,)]


@test
def flyway_baseline(c):
    setup(c, FLYWAY_FILES, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);", FLYWAY_TABLE,
          "INSERT INTO flyway_schema_history VALUES (1, '1.1', '<< Flyway Baseline >>', 'BASELINE',"
          " '<< Flyway Baseline >>', NULL, 'app', '2024-01-01', 0, 1);")
    adopt_then_apply(c, "flyway_schema_history", 2, 1, ["1", "1.1", "2"])


@test
def golang_migrate(c):
    setup(c, {"000001_users.up.sql": "CREATE TABLE users(id INTEGER PRIMARY KEY);\n",
              "000001_users.down.sql": "DROP TABLE users;\n",
              "000002_posts.up.sql": "CREATE TABLE posts(id INTEGER PRIMARY KEY);\n",
              "000003_tags.up.sql": "CREATE TABLE tags(id INTEGER PRIMARY KEY);\n"},
          "CREATE TABLE users(id INTEGER PRIMARY KEY); CREATE TABLE posts(id INTEGER PRIMARY KEY);",
          "CREATE TABLE schema_migrations (version uint64, dirty bool);"
          "CREATE UNIQUE INDEX version_unique ON schema_migrations (version);",
          "INSERT INTO schema_migrations VALUES (2, 0);")
    adopt_then_apply(c, "schema_migrations", 2, 1, ["1", "2", "3"])


@test
def golang_migrate_dirty_refused(c):
    setup(c, {"1_a.up.sql": "CREATE TABLE a(x);", "2_b.up.sql": "CREATE TABLE b(x);"}, "",
          "CREATE TABLE schema_migrations (version uint64, dirty bool);",
          "INSERT INTO schema_migrations VALUES (2, 1);")
    c.fails("SELECT migrate_adopt('%s')" % c.dir, "golang-migrate marked version 2 dirty: it failed half way",
            "Nothing was adopted")
    assert c.history() is None, "even our history table was rolled back"


@test
def morph(c):
    setup(c, {"000001_a.up.sql": "CREATE TABLE a(x);", "000002_b.up.sql": "CREATE TABLE b(x);",
              "000003_c.up.sql": "CREATE TABLE c(x);"},
          "CREATE TABLE a(x); CREATE TABLE b(x);",
          "CREATE TABLE db_migrations (Version bigint NOT NULL PRIMARY KEY, Name varchar(64) NOT NULL);",
          "INSERT INTO db_migrations VALUES (1, 'a'), (2, 'b');")
    adopt_then_apply(c, "db_migrations", 2, 1, ["1", "2", "3"])


@test
def dbmate(c):
    setup(c, {"20240101120000_a.sql": "-- migrate:up\nCREATE TABLE a(x);\n-- migrate:down\nDROP TABLE a;\n",
              "20240102120000_b.sql": "-- migrate:up\nCREATE TABLE b(x);\n-- migrate:down\nDROP TABLE b;\n"},
          "CREATE TABLE a(x);",
          'CREATE TABLE "schema_migrations" (version varchar(128) primary key);',
          "INSERT INTO schema_migrations VALUES ('20240101120000');")
    adopt_then_apply(c, "schema_migrations", 1, 1, ["20240101120000", "20240102120000"])
    assert c.query("SELECT down_sql FROM migrate_history WHERE version = '20240101120000'") == [("DROP TABLE a;\n",)]


@test
def goose(c):
    setup(c, {"00001_a.sql": "-- +goose Up\nCREATE TABLE a(x);\n-- +goose Down\nDROP TABLE a;\n",
              "00002_b.sql": "-- +goose Up\nCREATE TABLE b(x);\n",
              "00003_c.sql": "-- +goose Up\nCREATE TABLE c(x);\n"},
          "CREATE TABLE a(x); CREATE TABLE b(x);",
          "CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL,"
          " is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')));",
          "INSERT INTO goose_db_version(version_id, is_applied) VALUES (0, 1), (1, 1), (2, 1), (3, 1), (3, 0);")
    adopt_then_apply(c, "goose_db_version", 2, 1, ["1", "2", "3"])


@test
def sqlx(c):
    setup(c, {"20210422143411_a.sql": "CREATE TABLE a(x);", "20210422143412_b.sql": "CREATE TABLE b(x);"},
          "CREATE TABLE a(x);",
          "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,"
          " installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,"
          " checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);",
          "INSERT INTO _sqlx_migrations(version, description, success, checksum, execution_time)"
          " VALUES (20210422143411, 'a', 1, x'00', 5);")
    adopt_then_apply(c, "_sqlx_migrations", 1, 1, ["20210422143411", "20210422143412"])


@test
def diesel(c):
    setup(c, {"2018-01-14-171611_a/up.sql": "CREATE TABLE a(x);", "2018-01-14-171611_a/down.sql": "DROP TABLE a;",
              "2018-01-15-000000_b/up.sql": "CREATE TABLE b(x);"},
          "CREATE TABLE a(x);",
          "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL,"
          " run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);",
          "INSERT INTO __diesel_schema_migrations(version) VALUES ('20180114171611');")
    adopt_then_apply(c, "__diesel_schema_migrations", 1, 1, ["20180114171611", "20180115000000"])


@test
def baseline(c):
    """An existing deployment adopting versioned migrations: everything up
    to the baseline is recorded (with its down SQL), nothing runs."""
    for v in (1, 2, 3):
        c.put("%d_t%d.up.sql" % (v, v), "CREATE TABLE t%d(x);" % v)
        c.put("%d_t%d.down.sql" % (v, v), "DROP TABLE t%d;" % v)
    c.query("CREATE TABLE t1(x)")
    c.query("SELECT 1")
    con = sqlite3.connect(c.db)
    con.executescript("CREATE TABLE t2(x);")
    con.close()
    c.fails("SELECT migrate_baseline('%s', 'x.y')" % c.dir, "\"x.y\" is not a migration version")
    assert c.ok("SELECT migrate_baseline('%s', '02')" % c.dir) == "2"
    assert [r[0] for r in c.history()] == ["1", "2"]
    assert c.tables() == ["migrate_history", "t1", "t2"], "nothing ran"
    assert c.apply() == 1
    c.fails("SELECT migrate_baseline('%s', '3')" % c.dir, "migrate_history already records 3 migrations")
    assert c.ok("SELECT migrate_down(3)") == "3", "baselined migrations roll back with their down files"
    assert c.tables() == ["migrate_history"]


@test
def refusals(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);")
    c.fails("SELECT migrate_adopt('%s')" % c.dir, "no other tool's history found for a golang-migrate folder",
            "schema_migrations (golang-migrate), db_migrations (morph)")
    con = sqlite3.connect(c.db)
    con.executescript("CREATE TABLE schema_migrations (version uint64, dirty bool);"
                      "INSERT INTO schema_migrations VALUES (5, 0);")
    con.close()
    c.fails("SELECT migrate_adopt('%s')" % c.dir, "golang-migrate applied 1 migration that the folder does not have",
            "Versions: 5.")
    con = sqlite3.connect(c.db)
    con.executescript("UPDATE schema_migrations SET version = 1;"
                      "CREATE TABLE db_migrations (Version bigint, Name varchar(64));")
    con.close()
    c.fails("SELECT migrate_adopt('%s')" % c.dir, "more than one tool's history found")
    con = sqlite3.connect(c.db)
    con.executescript("DROP TABLE db_migrations;")
    con.close()
    c.put("2_b.up.sql", "CREATE TABLE b(x);")
    con = sqlite3.connect(c.db)
    con.executescript("UPDATE schema_migrations SET version = 2;")
    con.close()
    assert c.ok("SELECT migrate_adopt('%s')" % c.dir) == "2"


GOOSE_TABLE = ("CREATE TABLE goose_db_version (id INTEGER PRIMARY KEY AUTOINCREMENT, version_id INTEGER NOT NULL,"
               " is_applied INTEGER NOT NULL, tstamp TIMESTAMP DEFAULT (datetime('now')));")


@test
def goose_with_go_migrations(c):
    """goose records the versions of its Go migrations too: they are files
    of the folder, adopted as applied without SQL."""
    setup(c, {"00001_a.sql": "-- +goose Up\nCREATE TABLE a(x);\n-- +goose Down\nDROP TABLE a;\n",
              "00002_backfill.go": "package migrations\n",
              "00003_c.go": "package migrations\n",
              "00004_d.sql": "-- +goose Up\nCREATE TABLE d(x);\n",
              "main.go": "package main\n"},
          "CREATE TABLE a(x);", GOOSE_TABLE,
          "INSERT INTO goose_db_version(version_id, is_applied) VALUES (0, 1), (1, 1), (2, 1), (3, 1);")
    adopt_then_apply(c, "goose_db_version", 3, 1, ["1", "2", "3", "4"])
    assert c.query("SELECT up_file, up_sql, down_sql FROM migrate_history WHERE version = '2'") == \
        [("00002_backfill.go", "", None)]


@test
def diesel_in_its_own_order(c):
    """diesel ran 2024-03-06-170000 then 00000000000000 before it; the
    folder's 2024-03-13_170000 comes after both in diesel's order (text),
    though its version 20240313 is the smaller number."""
    setup(c, {"00000000000000_diesel_initial_setup/up.sql": "CREATE TABLE s(x);",
              "2024-03-06-170000_users/up.sql": "CREATE TABLE users(id INTEGER PRIMARY KEY);",
              "2024-03-06-170000_users/down.sql": "DROP TABLE users;",
              "2024-03-13_170000_cascade/up.sql": "CREATE INDEX users_id ON users(id);"},
          "CREATE TABLE s(x); CREATE TABLE users(id INTEGER PRIMARY KEY);",
          "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL,"
          " run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);",
          "INSERT INTO __diesel_schema_migrations(version) VALUES ('00000000000000'), ('20240306170000');")
    adopt_then_apply(c, "__diesel_schema_migrations", 2, 1, ["0", "20240306170000", "20240313"])


if __name__ == "__main__":
    sys.exit(main("adopt"))
