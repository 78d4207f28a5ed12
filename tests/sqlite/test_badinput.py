#!/usr/bin/python3
"""Bad input, in one place: every kind of folder, file name and file
content migrate_apply must refuse (or accept), each a row of CASES with the
exact error the extension gives and a database left exactly as it was (its
schema, every row and its bytes).  Each call runs in a child process
(Python's sqlite3 with the extension loaded), so a call that blocks or
crashes fails its case only.  Prints TAP; a case whose right behaviour the
extension does not have yet is `not ok ... # TODO`, one that cannot run
here is `ok ... # SKIP`.

    tests/sqlite/test_badinput.py [build/migrate] [name-filter]
"""
import base64
import io
import json
import os
import tarfile
import sqlite3
import subprocess
import sys
import time
import traceback
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EXT, FILTER, Case  # noqa: E402

MAX_FILE = 64 * 1024 * 1024      # the size cap (README: at most 64 MiB)
LAYOUT_HINT = ("HINT:  Migration files are named {version}_{name}.up.sql and .down.sql (golang-migrate), "
               "V{version}__{name}.sql and U{version}__{name}.sql (Flyway), {version}_{name}.sql "
               "(dbmate, goose, sqlx), {version}_{name}/up.sql (diesel), {engine}_{from}_{to}.sql (MongooseIM) or "
               "{version}/{NN}__{name}.sql (version folders), where version is a number.")
REGULAR = "DETAIL:  Migration files must be regular files."

# The call, in a child process: prints {"result": ...} or {"error": text,
# "type": exception class}.  Error text that is not valid UTF-8 reaches
# Python as a UnicodeDecodeError: reported with its raw bytes escaped.
CHILD = r"""
import base64, json, sqlite3, sys
ext, db, sql, args = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
args = [base64.b64decode(a["b64"]) if isinstance(a, dict) else a for a in args]
con = sqlite3.connect(db, isolation_level=None, timeout=5)
con.enable_load_extension(True)
con.load_extension(ext)
if len(sys.argv) > 5:
    con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, int(sys.argv[5]))
try:
    out = {"result": con.execute(sql, args).fetchall()}
except UnicodeDecodeError as e:
    out = {"type": "UnicodeDecodeError", "error": e.object.decode("utf-8", "backslashreplace")}
except sqlite3.Error as e:
    out = {"type": type(e).__name__, "error": str(e)}
con.close()
print(json.dumps(out))
"""


class Refused:
    """The call fails with sqlite3.OperationalError: its message's first
    line is exactly `first` (starts with it when exact=False: for a TODO
    whose wording is not written yet), every one of `more` is in the
    message, none of `absent` is, and the database is unchanged.  {dir},
    {root} and {arg} stand for the folder, the case's temporary folder and
    the path given."""

    def __init__(self, first, *more, absent=(), exact=True):
        self.first, self.more, self.absent, self.exact = first, more, absent, exact


class Accepted:
    """The call returns count; afterwards the user tables and the history
    versions are these."""

    def __init__(self, count, tables, versions, check=None):
        self.count, self.tables, self.versions, self.check = count, tables, versions, check


def con(db):
    return sqlite3.connect(db, isolation_level=None)


def state(db):
    """The database's schema, every row, and the call log's failed calls.
    A failed call leaves everything as it was but the call log, which
    records it (main.migrate_calls: one row, outcome error)."""
    c = con(db)
    try:
        schema = c.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema"
                           " WHERE tbl_name <> 'migrate_calls' ORDER BY name").fetchall()
        rows = {n: sorted(c.execute('SELECT * FROM "%s"' % n).fetchall(), key=repr)
                for (n,) in c.execute("SELECT name FROM sqlite_schema WHERE type = 'table'"
                                      " AND name <> 'migrate_calls' ORDER BY name")}
        try:
            failed = c.execute("SELECT count(*) FROM migrate_calls WHERE outcome = 'error'").fetchone()[0]
        except sqlite3.OperationalError:
            failed = 0
    finally:
        c.close()
    return schema, rows, failed


def user_tables(db):
    c = con(db)
    try:
        return sorted(r[0] for r in c.execute(
            "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            " AND name NOT IN ('keep', 'migrate_history', 'migrate_calls')"))
    finally:
        c.close()


def versions(db):
    c = con(db)
    try:
        return [r[0] for r in c.execute("SELECT version FROM migrate_history ORDER BY installed_rank")]
    except sqlite3.OperationalError:
        return None
    finally:
        c.close()


def call(db, sql, args, timeout=30, limit=None):
    t0 = time.monotonic()
    args = [{"b64": base64.b64encode(a).decode()} if isinstance(a, bytes) else a for a in args]
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, EXT, db, sql, json.dumps(args)] +
                           ([str(limit)] if limit else []),
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the call did not return within %d s (it blocks)" % timeout)
    took = time.monotonic() - t0
    assert p.returncode == 0 and p.stdout.strip(), "the call crashed (exit %d):\n%s" % (
        p.returncode, p.stderr[-3000:])
    return json.loads(p.stdout), took


def applied(c):
    """Applies the folder as it is now (a history to compare against)."""
    out, _ = call(c.db, "SELECT migrate_apply(?)", [c.dir])
    assert "result" in out, out


def put_at(c, rel, text):
    path = os.path.join(c.root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    return path


# ---- the cases: (name, build(c) -> None or a path to give instead of c.dir,
#      expectation, options) ----

CASES = []


def case(name, expect, todo=None, skip=None, sql="SELECT migrate_apply(?)", max_seconds=None,
         limit=None):
    def register(build):
        CASES.append(dict(name=name, build=build, expect=expect, todo=todo, skip=skip, sql=sql,
                          max_seconds=max_seconds, limit=limit))
        return build
    return register


def first(c):
    """A good migration 1 beside the bad input: it must not be applied."""
    c.put("1_first.up.sql", "CREATE TABLE first(x);\n")
    c.put("1_first.down.sql", "DROP TABLE first;\n")


# path traversal and folders

@case("path_with_dotdot_to_a_missing_folder",
      Refused('migrate_apply: could not open directory "{root}/migrations/../nope/../missing": '
              'No such file or directory'))
def _(c):
    first(c)
    return os.path.join(c.dir, "..", "nope", "..", "missing")


@case("relative_path_with_dotdot_out_of_the_cwd",
      Refused('migrate_apply: could not open directory "../../../../../../../../nonexistent-mig": '
              'No such file or directory'))
def _(c):
    first(c)
    return "../../../../../../../../nonexistent-mig"


@case("path_with_dotdot_to_a_folder_that_exists",
      Accepted(1, ["first"], ["1"]))
def _(c):
    first(c)
    os.mkdir(os.path.join(c.root, "other"))
    return os.path.join(c.root, "other", "..", "migrations")


@case("missing_folder",
      Refused('migrate_apply: could not open directory "{root}/not-there": No such file or directory'))
def _(c):
    return os.path.join(c.root, "not-there")


@case("path_is_a_file_not_a_folder",
      Refused('migrate_apply: could not open directory "{root}/migrations/1_first.up.sql": Not a directory'))
def _(c):
    first(c)
    return os.path.join(c.dir, "1_first.up.sql")


@case("empty_path",
      Refused('migrate_apply: migration folder path must not be empty'))
def _(c):
    return ""


# The history is created on first use, as Flyway creates its table: empty.
@case("empty_folder", Accepted(0, [], []))
def _(c):
    pass


@case("folder_with_only_files_that_are_not_migrations",
      Refused("migrate_apply: file name \"notes.sql\" does not fit any migration layout"))
def _(c):
    c.put("README.md", "# notes\n")
    c.put(".hidden.sql", "garbage")
    c.put("1_x.up.sql~", "garbage")
    c.put("notes.sql", "-- not a migration\n")


@case("symlinked_folder_given_as_the_path", Accepted(1, ["first"], ["1"]))
def _(c):
    first(c)
    os.symlink(c.dir, os.path.join(c.root, "current"))
    return os.path.join(c.root, "current")


# symlinks inside the folder

@case("migration_file_is_a_symlink_to_a_file_outside",
      Refused('migrate_apply: file "{dir}/2_evil.up.sql" is a symbolic link', REGULAR))
def _(c):
    first(c)
    os.symlink(put_at(c, "outside/evil.sql", "CREATE TABLE evil(x);\n"), os.path.join(c.dir, "2_evil.up.sql"))


@case("migration_file_is_a_symlink_with_dotdot",
      Refused('migrate_apply: file "{dir}/2_evil.up.sql" is a symbolic link', REGULAR))
def _(c):
    first(c)
    put_at(c, "outside/evil.sql", "CREATE TABLE evil(x);\n")
    os.symlink("../outside/evil.sql", os.path.join(c.dir, "2_evil.up.sql"))


@case("migration_file_is_a_symlink_inside_the_folder",
      Refused('migrate_apply: file "{dir}/2_again.up.sql" is a symbolic link', REGULAR))
def _(c):
    first(c)
    os.symlink("1_first.up.sql", os.path.join(c.dir, "2_again.up.sql"))


@case("migration_file_is_a_dangling_symlink",
      Refused('migrate_apply: file "{dir}/2_gone.up.sql" is a symbolic link', REGULAR))
def _(c):
    first(c)
    os.symlink("/nonexistent/gone.sql", os.path.join(c.dir, "2_gone.up.sql"))


@case("down_file_is_a_symlink",
      Refused('migrate_apply: file "{dir}/2_b.down.sql" is a symbolic link', REGULAR))
def _(c):
    first(c)
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")
    os.symlink(put_at(c, "outside/drop.sql", "DROP TABLE keep;\n"), os.path.join(c.dir, "2_b.down.sql"))


@case("symlink_to_a_folder_named_like_a_file",
      Refused('migrate_apply: file "{dir}/2_dir.up.sql" is a symbolic link', REGULAR))
def _(c):
    first(c)
    os.makedirs(os.path.join(c.root, "outside"))
    os.symlink(os.path.join(c.root, "outside"), os.path.join(c.dir, "2_dir.up.sql"))


@case("diesel_up_sql_is_a_symlink",
      Refused('migrate_apply: file "{dir}/2018-01-15-000000_b/up.sql" is a symbolic link', REGULAR))
def _(c):
    os.makedirs(os.path.join(c.dir, "2018-01-14-171611_a"))
    c.put("2018-01-14-171611_a/up.sql", "CREATE TABLE a(x);\n")
    os.makedirs(os.path.join(c.dir, "2018-01-15-000000_b"))
    os.symlink(put_at(c, "outside/b.sql", "CREATE TABLE b(x);\n"),
               os.path.join(c.dir, "2018-01-15-000000_b", "up.sql"))


@case("diesel_migration_folder_is_a_symlink",
      Refused('migrate_apply: "{dir}/2018-01-15-000000_b" is a symbolic link',
              "Migration folders must be real folders"))
def _(c):
    os.makedirs(os.path.join(c.dir, "2018-01-14-171611_a"))
    c.put("2018-01-14-171611_a/up.sql", "CREATE TABLE a(x);\n")
    put_at(c, "outside/2018-01-15-000000_b/up.sql", "CREATE TABLE b(x);\n")
    os.symlink(os.path.join(c.root, "outside", "2018-01-15-000000_b"),
               os.path.join(c.dir, "2018-01-15-000000_b"))


@case("per_engine_folder_is_a_symlink",
      Refused('migrate_apply: "{dir}/sqlite" is a symbolic link'))
def _(c):
    put_at(c, "elsewhere/1_a.up.sql", "CREATE TABLE a(x);\n")
    os.symlink(os.path.join(c.root, "elsewhere"), os.path.join(c.dir, "sqlite"))


# files that are not regular, unreadable, too large

@case("fifo_named_like_a_migration",
      Refused('migrate_apply: "{dir}/2_fifo.up.sql" is not a regular file', REGULAR), max_seconds=5)
def _(c):
    first(c)
    os.mkfifo(os.path.join(c.dir, "2_fifo.up.sql"))


@case("fifo_as_a_diesel_up_sql",
      Refused('migrate_apply: "{dir}/2018-01-14-171611_a/up.sql" is not a regular file', REGULAR),
      max_seconds=5)
def _(c):
    os.makedirs(os.path.join(c.dir, "2018-01-14-171611_a"))
    os.mkfifo(os.path.join(c.dir, "2018-01-14-171611_a", "up.sql"))


@case("directory_named_like_a_migration",
      Refused('migrate_apply: "{dir}/2_dir.up.sql" is not a regular file', REGULAR))
def _(c):
    first(c)
    os.mkdir(os.path.join(c.dir, "2_dir.up.sql"))


def readable_anyway(path):
    """A SKIP reason when chmod 000 does not stop this process (root)."""
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb"):
                pass
    except PermissionError:
        return None
    return "running as uid %d: chmod 000 does not stop reads here" % os.geteuid()


@case("unreadable_file",
      Refused('migrate_apply: could not open file "{dir}/2_secret.up.sql": Permission denied'),
      skip=lambda c: readable_anyway(os.path.join(c.dir, "2_secret.up.sql")))
def _(c):
    first(c)
    c.put("2_secret.up.sql", "CREATE TABLE secret(x);\n", mode=0)


@case("unreadable_folder",
      Refused('migrate_apply: could not open directory "{dir}": Permission denied'),
      skip=lambda c: readable_anyway(c.dir))
def _(c):
    first(c)
    os.chmod(c.dir, 0)


@case("file_over_the_size_cap",
      Refused('migrate_apply: file "{dir}/2_huge.up.sql" is too large',
              "DETAIL:  It has %d bytes; the limit is %d bytes." % (MAX_FILE + 1, MAX_FILE)))
def _(c):
    first(c)
    with open(os.path.join(c.dir, "2_huge.up.sql"), "wb") as f:
        f.truncate(MAX_FILE + 1)      # sparse: nothing is written


@case("down_file_over_the_size_cap",
      Refused('migrate_apply: file "{dir}/2_b.down.sql" is too large',
              "DETAIL:  It has %d bytes; the limit is %d bytes." % (MAX_FILE + 1, MAX_FILE)))
def _(c):
    first(c)
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")
    with open(os.path.join(c.dir, "2_b.down.sql"), "wb") as f:
        f.truncate(MAX_FILE + 1)


# contents

@case("empty_file", Accepted(2, ["first"], ["1", "2"],
                             check=("SELECT up_sql, down_sql, down_mode FROM migrate_history WHERE version = '2'",
                                    [("", "", "noop")])))
def _(c):
    first(c)
    c.put("2_empty.up.sql", "")


@case("nul_byte",
      Refused('migrate_apply: migration 2 (2_nul.up.sql), line 2: '
              'migration file "2_nul.up.sql" contains a NUL byte'))
def _(c):
    first(c)
    c.put("2_nul.up.sql", b"CREATE TABLE a(x);\nCREATE TABLE b(x);\0CREATE TABLE c(x);\n")


@case("nul_byte_in_a_down_file",
      Refused('migrate_apply: rollback of migration 2 (2_b.down.sql), line 1: '
              'migration file "2_b.down.sql" contains a NUL byte'))
def _(c):
    first(c)
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")
    c.put("2_b.down.sql", b"DROP TABLE b;\0\n")


@case("invalid_utf8",
      Refused('migrate_apply: migration 2 (2_latin1.up.sql), line 2: '
              'migration file "2_latin1.up.sql" is not valid UTF-8',
              "DETAIL:  Byte 0xe9 at offset 45 starts no valid character."))
def _(c):
    first(c)
    c.put("2_latin1.up.sql", b"CREATE TABLE a(x);\nINSERT INTO a VALUES ('caf\xe9');\n")


@case("utf8_cut_short_at_the_end",
      Refused('migrate_apply: migration 2 (2_cut.up.sql), line 1: '
              'migration file "2_cut.up.sql" is not valid UTF-8',
              "DETAIL:  Byte 0xe2 at offset 20 starts no valid character."))
def _(c):
    first(c)
    c.put("2_cut.up.sql", b"CREATE TABLE a(x); -\xe2\x82")


@case("utf8_bom_is_stripped",
      Accepted(2, ["a", "first"], ["1", "2"],
               check=("SELECT up_sql FROM migrate_history WHERE version = '2'", [("CREATE TABLE a(x);\n",)])))
def _(c):
    first(c)
    c.put("2_bom.up.sql", b"\xef\xbb\xbfCREATE TABLE a(x);\n")


@case("crlf_line_endings",
      Accepted(2, ["a", "first"], ["1", "2"],
               check=("SELECT count(*) FROM a", [(1,)])))
def _(c):
    first(c)
    c.put("2_crlf.up.sql", b"CREATE TABLE a(x);\r\nINSERT INTO a\r\nVALUES ('x');\r\n")
    c.put("2_crlf.down.sql", b"DROP TABLE a;\r\n")


@case("crlf_error_line_is_right",
      Refused("migrate_apply: migration 2 (2_crlf.up.sql), line 3: no such table: nope"))
def _(c):
    first(c)
    c.put("2_crlf.up.sql", b"CREATE TABLE a(x);\r\n\r\nSELECT * FROM nope;\r\n")


# names and versions

@case("duplicate_versions",
      Refused("migrate_apply: more than one file for migration version 1 (01_b.up.sql, 1_a.up.sql)",
              "DETAIL:  Versions and files: 1 (01_b.up.sql, 1_a.up.sql).",
              "HINT:  Give every migration a version of its own."))
def _(c):
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("01_b.up.sql", "CREATE TABLE b(x);\n")


@case("duplicate_down_files",
      Refused("migrate_apply: more than one file for migration version 2 "
              "(2_b.up.sql, 02_c.down.sql, 2_b.down.sql)"))
def _(c):
    first(c)
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")
    c.put("2_b.down.sql", "DROP TABLE b;\n")
    c.put("02_c.down.sql", "DROP TABLE b;\n")


@case("gapped_versions", Accepted(3, ["t1", "t2", "t5"], ["1", "2", "5"]))
def _(c):
    for v in (1, 2, 5):
        c.put("%d_t%d.up.sql" % (v, v), "CREATE TABLE t%d(x);\n" % v)


@case("versions_past_64_bits_stay_apart",
      Accepted(2, ["a", "b"], ["18446744073709551616", "18446744073709551617"]))
def _(c):
    c.put("18446744073709551616_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("18446744073709551617_b.up.sql", "CREATE TABLE b(x);\n")


@case("down_file_without_up_file",
      Refused('migrate_apply: down file "2_b.down.sql" has no matching up file',
              "DETAIL:  Files: 2_b.down.sql.",
              "HINT:  Every down or undo file needs the up file of its version."))
def _(c):
    first(c)
    c.put("2_b.down.sql", "DROP TABLE b;\n")


@case("name_that_fits_no_layout",
      Refused('migrate_apply: file name "create_users.sql" does not fit any migration layout',
              "DETAIL:  Files: create_users.sql.", LAYOUT_HINT))
def _(c):
    first(c)
    c.put("create_users.sql", "CREATE TABLE users(x);\n")


@case("name_with_a_dash_instead_of_an_underscore",
      Refused('migrate_apply: file name "2-b.up.sql" does not fit any migration layout', LAYOUT_HINT))
def _(c):
    first(c)
    c.put("2-b.up.sql", "CREATE TABLE b(x);\n")


@case("diesel_folder_without_up_sql",
      Refused('migrate_apply: file name "2018-01-14-171611_a/up.sql (missing)" does not fit any '
              'migration layout'))
def _(c):
    os.makedirs(os.path.join(c.dir, "2018-01-14-171611_a"))
    c.put("2018-01-14-171611_a/down.sql", "DROP TABLE a;\n")


@case("folder_mixing_layouts",
      Refused("migrate_apply: migration folder mixes the golang-migrate and Flyway layouts",
              "DETAIL:  golang-migrate: 1_first.up.sql and 1_first.down.sql. Flyway: V2__b.sql.",
              "HINT:  Keep one layout per folder."))
def _(c):
    first(c)
    c.put("V2__b.sql", "CREATE TABLE b(x);\n")


LONG = "x" * (255 - len("1_.down.sql"))   # the down file's name is 255 bytes, NAME_MAX


@case("file_names_of_255_bytes",
      Accepted(1, ["a"], ["1"],
               check=("SELECT name, length(up_file), length(down_file) FROM migrate_history",
                      [(LONG, 253, 255)])))
def _(c):
    c.put("1_%s.up.sql" % LONG, "CREATE TABLE a(x);\n")
    c.put("1_%s.down.sql" % LONG, "DROP TABLE a;\n")


@case("version_of_201_digits",
      Refused('migrate_apply: ', "%s_a.up.sql" % ("9" * 201), "200 digits",
              absent=("does not fit any migration layout",), exact=False))
def _(c):
    c.put("%s_a.up.sql" % ("9" * 201), "CREATE TABLE a(x);\n")


@case("file_name_that_is_not_utf8",
      Refused('migrate_apply: file name "2_caf?.up.sql" in "{dir}" is not valid UTF-8',
              "Byte 6 of the name"))
def _(c):
    first(c)
    with open(os.path.join(c.dir.encode(), b"2_caf\xe9.up.sql"), "wb") as f:
        f.write(b"CREATE TABLE b(x);\n")


def deep_folder(c, length):
    """A folder whose absolute path is `length` bytes long (made through
    directory descriptors: mkdir of a path over PATH_MAX fails)."""
    path = c.root
    fd = os.open(path, os.O_RDONLY)
    while len(path) < length:
        part = "d" * min(200, length - len(path) - 1)
        os.mkdir(part, dir_fd=fd)
        nfd = os.open(part, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd, path = nfd, path + "/" + part
    return path, fd


@case("path_too_long_for_a_file_name",
      Refused('migrate_apply: ', "is too long", absent=('..."',), exact=False))
def _(c):
    path, fd = deep_folder(c, 3900)
    name = "1_%s.up.sql" % ("x" * 240)
    with open(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
        f.write("CREATE TABLE a(x);\n")
    os.close(fd)
    return path


@case("long_non_ascii_path_in_an_error",
      Refused('migrate_apply: could not open directory "/nonexistent/', "No such file or directory",
              exact=False))
def _(c):
    return "/nonexistent/" + "é" * 600


# history and scripts

@case("edited_applied_file",
      Refused("migrate_apply: applied migration 1 has changed since it was applied",
              'DETAIL:  File "1_first.up.sql" now has checksum crc32:%08x; crc32:%08x was recorded '
              'when it was applied.' % (zlib.crc32(b"CREATE TABLE first(x, y);\n"),
                                        zlib.crc32(b"CREATE TABLE first(x);\n")),
              "HINT:  Restore the files as they were applied and put the change in a new migration, "
              "or after a review record the files as they are with migrate_repair."))
def _(c):
    first(c)
    applied(c)
    c.put("1_first.up.sql", "CREATE TABLE first(x, y);\n")
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")


@case("whitespace_only_edit_of_an_applied_file",
      Accepted(1, ["b", "first"], ["1", "2"]))
def _(c):
    """CRLF line ends and trailing blanks (state 'reformatted'): goes on."""
    first(c)
    applied(c)
    c.put("1_first.up.sql", "CREATE TABLE first(x);  \r\n\r\n")
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")


@case("applied_file_replaced_by_a_symlink",
      Refused('migrate_apply: file "{dir}/1_first.up.sql" is a symbolic link', REGULAR))
def _(c):
    first(c)
    applied(c)
    target = put_at(c, "outside/first.sql", "CREATE TABLE first(x);\n")
    c.rm("1_first.up.sql")
    os.symlink(target, os.path.join(c.dir, "1_first.up.sql"))
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")


# a planted lock file ("{db}-migrate-lock", held while a migration runs
# outside a transaction): one that cannot be looked at is never taken as
# free, so every call refuses, changing nothing, and nothing is written
# through it

LOCK_HINT = "HINT:  Make it a regular file that every user who applies migrations can read"


def outside_second(c):
    first(c)
    c.put("2_b.up.sql", "-- no-transaction\nCREATE TABLE b(x);\n")


@case("lock_file_is_a_symlink",
      Refused('migrate_apply: could not open lock file "{root}/app.db-migrate-lock": it is a symbolic link',
              LOCK_HINT))
def _(c):
    outside_second(c)
    os.symlink(put_at(c, "outside/target", "keep me\n"), c.db + "-migrate-lock")


@case("lock_file_is_a_dangling_symlink",
      Refused('migrate_apply: could not open lock file "{root}/app.db-migrate-lock": it is a symbolic link'))
def _(c):
    outside_second(c)
    os.symlink(os.path.join(c.root, "nowhere"), c.db + "-migrate-lock")


@case("lock_file_is_a_fifo",
      Refused('migrate_apply: lock file "{root}/app.db-migrate-lock" is not a regular file with a single link'),
      max_seconds=10)
def _(c):
    outside_second(c)
    os.mkfifo(c.db + "-migrate-lock")


@case("lock_file_is_a_directory",
      Refused('migrate_apply: could not open lock file "{root}/app.db-migrate-lock": Is a directory'))
def _(c):
    outside_second(c)
    os.mkdir(c.db + "-migrate-lock")


@case("lock_file_is_a_hard_link_to_another_file",
      Refused('migrate_apply: lock file "{root}/app.db-migrate-lock" is not a regular file with a single link'))
def _(c):
    outside_second(c)
    os.link(put_at(c, "outside/target", "keep me\n"), c.db + "-migrate-lock")


@case("failing_script",
      Refused("migrate_apply: migration 2 (2_bad.up.sql), line 4: no such table: nope"))
def _(c):
    first(c)
    c.put("2_bad.up.sql", "CREATE TABLE ok2(x);\n-- a comment\n\nINSERT INTO nope\n  VALUES (1);\n")


@case("failing_script_syntax_error",
      Refused('migrate_apply: migration 2 (2_bad.up.sql), line 2: near "TABLEE": syntax error'))
def _(c):
    first(c)
    c.put("2_bad.up.sql", "CREATE TABLE ok2(x);\nCREATE TABLEE c(x);\n")


@case("failing_script_in_a_dbmate_section",
      Refused("migrate_apply: migration 20240102000000 (20240102000000_b.sql), line 4: "
              "no such table: nope"))
def _(c):
    c.put("20240101000000_a.sql", "-- migrate:up\nCREATE TABLE a(x);\n-- migrate:down\nDROP TABLE a;\n")
    c.put("20240102000000_b.sql", "-- migrate:up\nCREATE TABLE b(x);\n\nSELECT * FROM nope;\n"
                                  "-- migrate:down\nDROP TABLE b;\n")


@case("null_path", Refused("migrate_apply: the migration folder path must not be NULL"))
def _(c):
    first(c)
    c.null = True


# folders and names of other tools' layouts

@case("subfolder_that_holds_no_migrations",
      Refused('migrate_apply: subfolder "archive" holds no migrations',
              "HINT:  A migration folder may hold per-engine folders"))
def _(c):
    first(c)
    put_at(c, "migrations/archive/2_b.up.sql", "CREATE TABLE b(x);\n")


@case("version_folders_of_different_parts",
      Refused('migrate_apply: version folders "0.2" and "1" have versions of different numbers of parts'))
def _(c):
    put_at(c, "migrations/0.2/00__a.sql", "CREATE TABLE a(x);\n")
    put_at(c, "migrations/1/00__b.sql", "CREATE TABLE b(x);\n")


@case("version_folder_file_without_its_number",
      Refused('migrate_apply: file name "0.2/init.sql" does not fit any migration layout'))
def _(c):
    put_at(c, "migrations/0.2/00__a.sql", "CREATE TABLE a(x);\n")
    put_at(c, "migrations/0.2/init.sql", "CREATE TABLE b(x);\n")


@case("mongooseim_overlapping_scripts",
      Refused("migrate_apply: upgrade scripts overlap: sqlite_5.0.0_5.2.0.sql (it upgrades from a release "
              "before the one sqlite_5.0.0_5.1.0.sql upgraded to)",
              "HINT:  Each script must upgrade from the release the one before it upgraded to"))
def _(c):
    c.put("sqlite_5.0.0_5.1.0.sql", "CREATE TABLE a(x);\n")
    c.put("sqlite_5.0.0_5.2.0.sql", "CREATE TABLE b(x);\n")


@case("mongooseim_script_to_no_later_release",
      Refused("migrate_apply: upgrade scripts overlap: sqlite_5.1.0_5.0.0.sql (it does not upgrade to a "
              "later release)"))
def _(c):
    c.put("sqlite_5.1.0_5.0.0.sql", "CREATE TABLE a(x);\n")


@case("mongooseim_scripts_of_other_engines_only",
      Refused('migrate_apply: "{dir}" has upgrade scripts for other engines but none for sqlite',
              "DETAIL:  Files: mysql_4.2.0_5.0.0.sql and pgsql_4.2.0_5.0.0.sql."))
def _(c):
    c.put("pgsql_4.2.0_5.0.0.sql", "CREATE TABLE a(x);\n")
    c.put("mysql_4.2.0_5.0.0.sql", "CREATE TABLE a(x) ENGINE=InnoDB;\n")


@case("mongooseim_baseline_file_alone",
      Refused('migrate_apply: file name "pg.sql" does not fit any migration layout'))
def _(c):
    c.put("pg.sql", "CREATE TABLE fresh(x);\n")


@case("goose_go_migration_first_pending",
      Refused("migrate_apply: migration 1 (00001_backfill.go) is a goose Go migration, which migrate "
              "cannot run", "migrate_record("))
def _(c):
    c.put("00001_backfill.go", "package migrations\n")
    c.put("00002_b.sql", "-- +goose Up\nCREATE TABLE b(x);\n")


@case("record_a_migration_that_is_not_the_next",
      Refused("migrate_record: migration 2 (2_b.up.sql) is not the next migration to apply",
              "DETAIL:  Migration 1 (1_first.up.sql) comes before it and is pending."),
      sql="SELECT migrate_record(?, '2')")
def _(c):
    first(c)
    c.put("2_b.up.sql", "CREATE TABLE b(x);\n")


@case("record_a_version_the_folder_lacks",
      Refused('migrate_record: "{dir}" has no migration 9'), sql="SELECT migrate_record(?, '9')")
def _(c):
    first(c)


@case("record_something_that_is_no_version",
      Refused('migrate_record: "x.y" is not a migration version'), sql="SELECT migrate_record(?, 'x.y')")
def _(c):
    first(c)


# ---- runner ----

# the folder sent as data: an archive (a BLOB) or a JSON object (TEXT)

def tar(entries, mode="w:gz", fmt=tarfile.PAX_FORMAT):
    """An archive of entries: (name, text) for a file, or a TarInfo as it
    is (a link, a device...)."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=mode, format=fmt) as t:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                t.addfile(e)
                continue
            name, text = e
            data = text.encode() if isinstance(text, str) else text
            i = tarfile.TarInfo(name)
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
    return b.getvalue()


def special(name, kind, target=""):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.linkname = target
    return i


GOOD = ("1_first.up.sql", "CREATE TABLE first(x);\n")
ARCHIVE_HINT = ("HINT:  Send a tar, gzip-compressed tar or zip archive of the migration folder, "
                "such as tar czf - -C db/migrations . writes.")
OUTSIDE = "DETAIL:  Entry names must be paths relative to the migration folder; nothing outside it is read."
NOT_REGULAR = ("DETAIL:  Migration files must be regular files; links are never followed and nothing "
               "outside the archive is read.")


@case("archive_that_is_no_archive",
      Refused("migrate_apply: could not read the archive: Unrecognized archive format", ARCHIVE_HINT))
def _(c):
    return b"CREATE TABLE nope(x);\n" * 10


@case("archive_cut_short",
      Refused("migrate_apply: could not read the archive: ", ARCHIVE_HINT, exact=False))
def _(c):
    data = tar([GOOD, ("2_b.up.sql", "CREATE TABLE b(x);\n" * 500)])
    return data[:len(data) // 2]


@case("archive_corrupt_in_the_middle",
      Refused("migrate_apply: could not read the archive: ", ARCHIVE_HINT, exact=False))
def _(c):
    data = bytearray(tar([GOOD, ("2_b.up.sql", "CREATE TABLE b(x);\n" * 500)]))
    for i in range(40, 60):
        data[i] ^= 0xff
    return bytes(data)


@case("archive_entry_with_dotdot",
      Refused('migrate_apply: entry "../2_evil.up.sql" of the archive leads out of the folder ("..")',
              OUTSIDE))
def _(c):
    return tar([GOOD, ("../2_evil.up.sql", "CREATE TABLE evil(x);\n")])


@case("archive_entry_with_dotdot_inside",
      Refused('migrate_apply: entry "sqlite/../../2_evil.up.sql" of the archive leads out of the folder ("..")',
              OUTSIDE))
def _(c):
    return tar([GOOD, ("sqlite/../../2_evil.up.sql", "CREATE TABLE evil(x);\n")])


@case("archive_entry_with_an_absolute_path",
      Refused('migrate_apply: entry "/etc/2_evil.up.sql" of the archive has an absolute path', OUTSIDE))
def _(c):
    return tar([GOOD, ("/etc/2_evil.up.sql", "CREATE TABLE evil(x);\n")])


@case("archive_symlink_entry",
      Refused('migrate_apply: entry "2_evil.up.sql" of the archive is a symbolic link', NOT_REGULAR))
def _(c):
    return tar([GOOD, special("./2_evil.up.sql", tarfile.SYMTYPE, "/etc/passwd")])


@case("archive_hard_link_entry",
      Refused('migrate_apply: entry "2_again.up.sql" of the archive is a hard link', NOT_REGULAR))
def _(c):
    return tar([GOOD, special("2_again.up.sql", tarfile.LNKTYPE, "1_first.up.sql")])


@case("archive_device_entry",
      Refused('migrate_apply: entry "2_dev.up.sql" of the archive is a device', NOT_REGULAR))
def _(c):
    return tar([GOOD, special("2_dev.up.sql", tarfile.CHRTYPE)])


@case("archive_fifo_entry",
      Refused('migrate_apply: entry "2_fifo.up.sql" of the archive is a FIFO', NOT_REGULAR))
def _(c):
    return tar([GOOD, special("2_fifo.up.sql", tarfile.FIFOTYPE)])


@case("archive_duplicate_entries",
      Refused('migrate_apply: entry "2_b.up.sql" appears more than once in the archive',
              "DETAIL:  A folder holds one file of each name."))
def _(c):
    return tar([GOOD, ("2_b.up.sql", "CREATE TABLE b(x);\n"), ("./2_b.up.sql", "DROP TABLE keep;\n")])


@case("archive_entry_over_the_size_cap",
      Refused('migrate_apply: file "2_huge.up.sql" of the archive is too large',
              "DETAIL:  It has %d bytes; the limit is %d bytes." % (MAX_FILE + 1, MAX_FILE)))
def _(c):
    return tar([GOOD, ("2_huge.up.sql", b" " * (MAX_FILE + 1))])


@case("archive_bomb_past_the_total_limit",
      Refused("migrate_apply: the files of the archive are too large",
              "DETAIL:  They hold more than 1000000 bytes, the limit of all the files of one archive "
              "together; it stopped in \"4_d.up.sql\"."), limit=1000000, max_seconds=20)
def _(c):
    pad = b"-- " + b" " * 399996 + b"\n"
    return tar([GOOD] + [("%d_%s.up.sql" % (v, n), pad) for v, n in ((2, "b"), (3, "c"), (4, "d"))])


@case("archive_name_not_utf8",
      Refused('migrate_apply: entry name "2_caf\\xe9.up.sql" of the archive is not valid UTF-8',
              "HINT:  Rename the file: migration file names must be UTF-8."))
def _(c):
    i = tarfile.TarInfo("2_caf\udce9.up.sql")
    i.size = 3
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as t:
        t.addfile(tarfile.TarInfo(GOOD[0]), io.BytesIO(b""))
        t.addfile(i, io.BytesIO(b"x;\n"))
    return b.getvalue()


@case("archive_empty", Refused("migrate_apply: the archive is empty"))
def _(c):
    return b""


@case("archive_without_files", Refused("migrate_apply: the archive holds no files"))
def _(c):
    return tar([special("./", tarfile.DIRTYPE), special("./sqlite/", tarfile.DIRTYPE)])


@case("archive_with_a_bad_file_names_it_and_its_line",
      Refused('migrate_apply: migration 2 (sqlite/2_latin1.up.sql), line 2: '
              'migration file "sqlite/2_latin1.up.sql" is not valid UTF-8'))
def _(c):
    return tar([("sqlite/" + GOOD[0], GOOD[1]),
                ("sqlite/2_latin1.up.sql", b"CREATE TABLE a(x);\nINSERT INTO a VALUES ('caf\xe9');\n")])


@case("json_value_that_is_not_a_string",
      Refused('migrate_apply: the JSON value of "2_b.up.sql" is not a string',
              "DETAIL:  It is a number; each value must be the text of the file its name names."))
def _(c):
    return json.dumps({GOOD[0]: GOOD[1], "2_b.up.sql": 42})


@case("json_nested_object",
      Refused('migrate_apply: the JSON value of "sqlite" is not a string',
              "DETAIL:  It is an object;", 'HINT:  Name a file in a subfolder by its path'))
def _(c):
    return json.dumps({GOOD[0]: GOOD[1], "sqlite": {"2_b.up.sql": "CREATE TABLE b(x);"}})


@case("json_that_is_not_an_object",
      Refused("migrate_apply: the migration folder given as JSON is not valid JSON"))
def _(c):
    return '{"1_first.up.sql": "CREATE TABLE first(x);"'


@case("json_duplicate_names",
      Refused('migrate_apply: entry "2_b.up.sql" appears more than once in the JSON object'))
def _(c):
    return '{"1_first.up.sql": "CREATE TABLE first(x);", "2_b.up.sql": "x", "2_b.up.sql": "y"}'


@case("json_name_with_dotdot",
      Refused('migrate_apply: entry "../2_b.up.sql" of the JSON object leads out of the folder ("..")'))
def _(c):
    return json.dumps({GOOD[0]: GOOD[1], "../2_b.up.sql": "CREATE TABLE b(x);"})


@case("json_empty_object", Refused("migrate_apply: the JSON object holds no files"))
def _(c):
    return "{}"


def fill(text, fmt):
    for key, value in fmt.items():
        text = text.replace("{%s}" % key, value)
    return text


def run_case(c, k, arg):
    """Returns None (passed), or raises."""
    args = [None] if getattr(c, "null", False) else [arg]
    before = state(c.db)
    out, took = call(c.db, k["sql"], args, limit=k["limit"])
    if k["max_seconds"]:
        assert took < k["max_seconds"], "took %.1f s" % took
    e = k["expect"]
    fmt = {"dir": c.dir, "root": c.root, "arg": arg if isinstance(arg, str) else ""}
    if isinstance(e, Refused):
        assert "error" in out, "accepted: %r; tables now %s" % (out, user_tables(c.db))
        assert out["type"] == "OperationalError", "%s: %s" % (out["type"], out["error"])
        msg = out["error"]
        want = fill(e.first, fmt)
        line = msg.splitlines()[0] if msg else ""
        assert line == want if e.exact else line.startswith(want), \
            "first line:\n  got:  %s\n  want: %s%s" % (line, want, "" if e.exact else "...")
        for m in e.more:
            assert fill(m, fmt) in msg, "missing %r in:\n%s" % (m, msg)
        for m in e.absent:
            assert m not in msg, "%r in:\n%s" % (m, msg)
        after = state(c.db)
        assert after[:2] == before[:2], "the database changed: tables %s, history %s" % (
            user_tables(c.db), versions(c.db))
        # the call log records the failed call (not when the call could not
        # even start: a folder path that is NULL, a call inside another
        # statement, or no database to write)
        assert after[2] in (before[2], before[2] + 1), (after[2], before[2])
    else:
        assert "result" in out, "refused: %s" % out.get("error")
        assert out["result"] == [[e.count]], out
        assert user_tables(c.db) == sorted(e.tables), user_tables(c.db)
        assert versions(c.db) == e.versions, versions(c.db)
        if e.check:
            rows = [tuple(r) for r in con(c.db).execute(e.check[0]).fetchall()]
            assert rows == e.check[1], rows
        if e.versions is None:
            assert state(c.db)[:2] == before[:2], "the database changed"


def main():
    run = [k for k in CASES if FILTER in k["name"]]
    failed = todo = 0
    for i, k in enumerate(run, 1):
        c = Case()
        c.query("PRAGMA journal_mode")
        db = con(c.db)
        db.execute("CREATE TABLE keep(x TEXT)")
        db.execute("INSERT INTO keep VALUES ('mine'), (NULL), (x'00ff')")
        db.close()
        name = "badinput: %s" % k["name"]
        try:
            arg = k["build"](c)
            arg = c.dir if arg is None else arg
            reason = k["skip"](c) if k["skip"] else None
            if reason:
                print("ok %d - %s # SKIP %s" % (i, name, reason))
                continue
            run_case(c, k, arg)
            if k["todo"]:
                print("ok %d - %s # TODO %s (passes now: remove the mark)" % (i, name, k["todo"]))
            else:
                print("ok %d - %s" % (i, name))
        except Exception:
            if k["todo"]:
                todo += 1
                print("not ok %d - %s # TODO %s" % (i, name, k["todo"]))
            else:
                failed += 1
                print("not ok %d - %s" % (i, name))
            for line in traceback.format_exc().splitlines()[-4:]:
                print("#   " + line)
        finally:
            restore_modes(c.root)
            c.cleanup()
        sys.stdout.flush()
    print("1..%d" % len(run))
    print("badinput: %d passed, %d failed, %d todo" % (len(run) - failed - todo, failed, todo))
    return 1 if failed else 0


def restore_modes(root):
    """chmod 000 folders and files back, so that they can be removed."""
    for d in (root, os.path.join(root, "migrations")):
        try:
            os.chmod(d, 0o755)
        except OSError:
            pass
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o755)
                except OSError:
                    pass
    try:
        os.chmod(root, 0o755)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
