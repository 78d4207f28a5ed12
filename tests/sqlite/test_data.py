#!/usr/bin/python3
"""The folder sent as data on SQLite: an archive (tar, tar.gz, zip) as a
BLOB or a JSON object as TEXT, through the real sqlite3 shell (readfile,
json_object) and Python's sqlite3 module (a bytes parameter), for every
function that takes a folder; the same history as the folder's, switching
between them, resuming a migration outside a transaction, and the call
log naming the archive.

    python3 tests/sqlite/test_data.py [build/migrate] [name-filter]
"""
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import tarfile
import zipfile

from harness import EXT, main, test

FILES = {
    "1_users.up.sql": "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);\r\n",
    "1_users.down.sql": "DROP TABLE users;\n",
    "2_email.up.sql": "\ufeffALTER TABLE users ADD COLUMN email TEXT; -- caf\u00e9\n",
    "2_email.down.sql": "ALTER TABLE users DROP COLUMN email;\n",
    "10_posts.up.sql": "CREATE TABLE posts(id INTEGER PRIMARY KEY);\nCREATE INDEX p ON posts(id);",
    "README.md": "# not a migration\n",
}


def write(c, files):
    for name, text in files.items():
        path = os.path.join(c.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)


def tar_of(folder, mode="w:gz"):
    """What `tar czf - -C folder .` writes (the real tar, as a user runs it)."""
    args = ["tar", "czf" if mode == "w:gz" else "cf", "-", "-C", folder, "."]
    return subprocess.run(args, check=True, capture_output=True).stdout


def zip_of(files):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return b.getvalue()


def connect(c, db=None):
    con = sqlite3.connect(db or c.db, isolation_level=None, timeout=5)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    return con


def one(con, sql, *args):
    return con.execute(sql, args).fetchone()[0]


def history(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT version, name, up_file, down_file, checksum, checksum_norm,"
                           " up_sql, down_sql, down_mode FROM migrate_history"
                           " ORDER BY installed_rank").fetchall()
    finally:
        con.close()


@test
def shell_readfile_applies_a_tar_gz(c):
    write(c, FILES)
    with open(os.path.join(c.root, "m.tar.gz"), "wb") as f:
        f.write(tar_of(c.dir))
    rc, out, err = c.shell("SELECT migrate_apply(readfile('%s/m.tar.gz'))" % c.root)
    assert rc == 0 and out == "3", (rc, out, err)
    assert c.tables() == ["migrate_history", "migrate_repairs", "posts", "users"] or \
        c.tables() == ["migrate_history", "posts", "users"], c.tables()
    rc, out, err = c.shell("SELECT version || ' ' || state FROM migrate_status(readfile('%s/m.tar.gz'))"
                           % c.root)
    assert out.splitlines() == ["1 applied", "2 applied", "10 applied"], out


@test
def python_bytes_parameter_and_the_same_history_as_the_folder(c):
    write(c, FILES)
    folder_db = os.path.join(c.root, "folder.db")
    con = connect(c, folder_db)
    assert one(con, "SELECT migrate_apply(?)", c.dir) == 3
    con.close()
    for kind, data in (("tar.gz", tar_of(c.dir)), ("tar", tar_of(c.dir, "w")), ("zip", zip_of(FILES))):
        db = os.path.join(c.root, "%s.db" % kind)
        con = connect(c, db)
        assert one(con, "SELECT migrate_apply(?)", data) == 3, kind
        assert history(db) == history(folder_db), kind
        # the same database switches to the folder, and back: nothing to do
        assert one(con, "SELECT migrate_apply(?)", c.dir) == 0, kind
        assert one(con, "SELECT migrate_apply(?)", data) == 0, kind
        assert con.execute("SELECT count(*) FROM migrate_validate(?)", (data,)).fetchone()[0] == 0
        con.close()
    con = connect(c, folder_db)
    assert one(con, "SELECT migrate_apply(?)", tar_of(c.dir)) == 0, "the folder's database takes the archive"
    con.close()


@test
def json_object_from_the_shell_and_from_python(c):
    write(c, {"1_a.up.sql": "CREATE TABLE a(x);", "1_a.down.sql": "DROP TABLE a;"})
    rc, out, err = c.shell("SELECT migrate_apply(json_object('1_a.up.sql', 'CREATE TABLE a(x);',"
                           " '1_a.down.sql', 'DROP TABLE a;'))")
    assert rc == 0 and out == "1", (out, err)
    con = connect(c)
    files = {"1_a.up.sql": "CREATE TABLE a(x);", "1_a.down.sql": "DROP TABLE a;",
             "2_b.up.sql": "CREATE TABLE b(x);"}
    assert one(con, "SELECT migrate_apply(?)", json.dumps(files)) == 1
    write(c, {"2_b.up.sql": "CREATE TABLE b(x);"})
    assert one(con, "SELECT migrate_apply(?)", c.dir) == 0, "the folder of the same files"
    assert one(con, "SELECT migrate_down(2)") == 2
    con.close()


@test
def every_function_takes_the_data_forms(c):
    write(c, FILES)
    data = tar_of(c.dir)
    con = connect(c)
    plan = con.execute("SELECT version, kind FROM migrate_plan(?, 'target=2')", (data,)).fetchall()
    assert plan == [("1", "versioned"), ("2", "versioned")], plan
    script = one(con, "SELECT migrate_script(?)", data)
    assert "CREATE TABLE users" in script and "CREATE TABLE posts" in script
    con.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")   # there already
    assert one(con, "SELECT migrate_baseline(?, '1')", data) == 1
    assert one(con, "SELECT migrate_apply(?, 'target=2')", data) == 1
    # an edited applied file, then repaired from the data
    edited = dict(FILES)
    edited["1_users.up.sql"] = "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); -- reviewed\n"
    try:
        one(con, "SELECT migrate_apply(?)", zip_of(edited))
        raise AssertionError("an edited applied file was accepted")
    except sqlite3.OperationalError as e:
        assert "applied migration 1 has changed since it was applied" in str(e), e
    assert one(con, "SELECT migrate_repair(?)", zip_of(edited)) == 1
    assert one(con, "SELECT migrate_apply(?)", zip_of(edited)) == 1
    rows = con.execute("SELECT version, state FROM migrate_status(?)", (zip_of(edited),)).fetchall()
    assert rows == [("1", "applied"), ("2", "applied"), ("10", "applied")], rows
    con.close()


@test
def goose_go_migration_recorded_from_the_archive(c):
    write(c, {"00001_a.sql": "-- +goose Up\nCREATE TABLE a(x);\n",
              "00002_b.go": "package migrations\n",
              "00003_c.sql": "-- +goose Up\nCREATE TABLE c(x);\n"})
    data = tar_of(c.dir)
    con = connect(c)
    try:
        one(con, "SELECT migrate_apply(?)", data)
        raise AssertionError("applied past a Go migration")
    except sqlite3.OperationalError as e:
        assert "migrate_record(<the same archive>, '2')" in str(e), e
    assert one(con, "SELECT migrate_record(?, '2')", data) == 1
    assert one(con, "SELECT migrate_apply(?)", data) == 1
    con.close()


@test
def adopt_from_the_archive(c):
    write(c, {"1_a.up.sql": "CREATE TABLE a(x);", "2_b.up.sql": "CREATE TABLE b(x);"})
    con = connect(c)
    con.execute("CREATE TABLE schema_migrations(version INTEGER, dirty INTEGER)")
    con.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    con.execute("CREATE TABLE a(x)")
    assert one(con, "SELECT migrate_adopt(?)", tar_of(c.dir)) == 1
    assert one(con, "SELECT migrate_apply(?)", tar_of(c.dir)) == 1
    con.close()


@test
def a_failed_statement_outside_a_transaction_resumes_from_the_archive(c):
    write(c, {"1_init.sql": "-- +goose Up\nCREATE TABLE t(x);\n",
              "2_rebuild.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n"
                               "CREATE TABLE one(x);\nINSERT INTO nope VALUES (1);\nCREATE TABLE two(x);\n"})
    con = connect(c)
    try:
        one(con, "SELECT migrate_apply(?)", tar_of(c.dir))
        raise AssertionError("applied a failing migration")
    except sqlite3.OperationalError as e:
        assert "migration 2 (2_rebuild.sql), line 4: no such table: nope" in str(e), e
    assert c.query("SELECT version, statements_done FROM migrate_progress") == [("2", 1)]
    write(c, {"2_rebuild.sql": "-- +goose NO TRANSACTION\n-- +goose Up\n"
                               "CREATE TABLE one(x);\nCREATE TABLE nope(x);\nCREATE TABLE two(x);\n"})
    assert one(con, "SELECT migrate_apply(?)", tar_of(c.dir)) == 1, "resumed after the statement done"
    assert c.tables() == ["migrate_history", "migrate_progress", "nope", "one", "t", "two"], c.tables()
    con.close()


@test
def call_log_names_the_archive_by_its_sha256(c):
    write(c, FILES)
    data = tar_of(c.dir)
    con = connect(c)
    assert one(con, "SELECT migrate_apply(?)", data) == 3
    try:
        one(con, "SELECT migrate_apply(?)", data[:len(data) // 2])
    except sqlite3.OperationalError:
        pass
    con.close()
    rows = c.query("SELECT source, outcome, sqlstate FROM migrate_calls ORDER BY id")
    assert rows[0] == ("archive sha256:%s (tar.gz, 6 files)" % hashlib.sha256(data).hexdigest(),
                       "ok", None), rows
    assert rows[1] == ("archive (unreadable)", "error", "22P03"), rows


@test
def a_path_that_starts_like_json_is_still_a_path_with_dot_slash(c):
    os.makedirs(os.path.join(c.root, "{odd}"))
    with open(os.path.join(c.root, "{odd}", "1_a.up.sql"), "w") as f:
        f.write("CREATE TABLE a(x);")
    con = connect(c)
    os.chdir(c.root)
    try:
        assert one(con, "SELECT migrate_apply('./{odd}')") == 1
        try:
            one(con, "SELECT migrate_apply('{odd}')")
            raise AssertionError("'{odd}' read as a path")
        except sqlite3.OperationalError as e:
            assert "the migration folder given as JSON is not valid JSON" in str(e), e
    finally:
        os.chdir("/")
        con.close()


@test
def the_connection_length_limit_caps_what_an_archive_expands_to(c):
    write(c, {"1_a.up.sql": "CREATE TABLE a(x);\n" + "-- padding\n" * 20000})
    data = tar_of(c.dir)
    assert len(data) < 10000
    con = connect(c)
    con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100000)
    try:
        one(con, "SELECT migrate_apply(?)", data)
        raise AssertionError("a 220 kB archive passed a 100 kB limit")
    except sqlite3.OperationalError as e:
        assert "the files of the archive are too large" in str(e), e
    con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000000)
    assert one(con, "SELECT migrate_apply(?)", data) == 1
    con.close()


if __name__ == "__main__":
    raise SystemExit(main("data"))
