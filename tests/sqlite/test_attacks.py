#!/usr/bin/python3
"""The attack catalogue, SQLite part: what another user of the same
database (or of the same machine) could plant so that a call of a migrate
function runs their code with the caller's rights, or undermines the
caller's migrations.  Each case plants, calls, and asserts that nothing of
the planted code ran and nothing was lost.  The PostgreSQL part is
tests/pg/t/14_attacks.sql.

On SQLite the caller's "rights" are the application's: the functions it
registered (which a view, trigger or generated column may call unless
they are DIRECTONLY), its process and its files.

    tests/sqlite/test_attacks.py [build/migrate] [name-filter]
"""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EXT, main, test  # noqa: E402


def connect(c):
    """A connection as an application has it: the extension loaded and
    an application function of its own, spy(), which records each call
    (the "right" an attacker would like to use)."""
    con = sqlite3.connect(c.db, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    calls = []

    def spy(*args):
        calls.append(args)
        return 1

    con.create_function("spy", -1, spy, deterministic=True)
    return con, calls


GOLANG = {"1_a.up.sql": "CREATE TABLE a(x);\n", "1_a.down.sql": "DROP TABLE a;\n",
          "2_b.up.sql": "CREATE TABLE b(x);\n", "2_b.down.sql": "DROP TABLE b;\n"}


def golang_folder(c):
    for name, text in GOLANG.items():
        c.put(name, text)


def adopt_fails(con, c, *needles, options=None):
    try:
        if options:
            con.execute("SELECT migrate_adopt(?, ?)", (c.dir, options)).fetchone()
        else:
            con.execute("SELECT migrate_adopt(?)", (c.dir,)).fetchone()
    except sqlite3.OperationalError as e:
        for n in needles:
            assert n in str(e), "expected %r in %s" % (n, e)
        return str(e)
    raise AssertionError("migrate_adopt succeeded")


@test
def adopt_refuses_a_view_that_calls_an_application_function(c):
    """The other tool's "table" is a view whose version column calls an
    application function: migrate_adopt must not read it."""
    golang_folder(c)
    con, calls = connect(c)
    con.execute("CREATE TABLE a(x)")
    con.execute("CREATE TABLE real_sm(version INTEGER, dirty INTEGER)")
    con.execute("INSERT INTO real_sm VALUES (2, 0)")
    con.execute("CREATE VIEW schema_migrations AS SELECT spy(version) * 0 + version AS version,"
                " dirty FROM real_sm")
    adopt_fails(con, c, '"main"."schema_migrations" is not a plain table', "view")
    assert calls == [], calls
    assert con.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'migrate_history'"
                       " AND (SELECT count(*) FROM real_sm) = 1").fetchone()[0] == 0, \
        "the failed call left nothing behind"


@test
def adopt_refuses_generated_columns(c):
    golang_folder(c)
    con, calls = connect(c)
    con.execute("CREATE TABLE schema_migrations(v INTEGER, dirty INTEGER,"
                " version INTEGER GENERATED ALWAYS AS (spy(v) * 0 + v) VIRTUAL)")
    con.execute("INSERT INTO schema_migrations(v, dirty) VALUES (2, 0)")
    del calls[:]
    adopt_fails(con, c, "has generated columns")
    assert calls == [], calls


@test
def adopt_is_not_shadowed_by_a_temp_or_attached_table(c):
    """A temp table, or one in an attached database, of the same name
    resolves before main's for an unqualified name: migrate_adopt reads
    main's (or the schema= it is told) only."""
    golang_folder(c)
    con, calls = connect(c)
    con.execute("CREATE TABLE a(x)")
    con.execute("CREATE TABLE schema_migrations(version INTEGER, dirty INTEGER)")
    con.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    con.execute("CREATE TEMP TABLE schema_migrations(version INTEGER, dirty INTEGER)")
    con.execute("INSERT INTO temp.schema_migrations VALUES (2, 0)")
    assert con.execute("SELECT migrate_adopt(?)", (c.dir,)).fetchone()[0] == 1
    assert con.execute("SELECT version FROM migrate_history").fetchall() == [("1",)]
    # and another database, named explicitly
    other = os.path.join(c.root, "other.db")
    o = sqlite3.connect(other)
    o.execute("CREATE TABLE schema_migrations(version INTEGER, dirty INTEGER)")
    o.execute("INSERT INTO schema_migrations VALUES (2, 0)")
    o.commit()
    o.close()
    con.execute("DELETE FROM migrate_history")
    adopt_fails(con, c, 'database "nope" is not attached', options="schema=nope")
    con.execute("ATTACH ? AS other", (other,))
    assert con.execute("SELECT migrate_adopt(?, 'schema=other')", (c.dir,)).fetchone()[0] == 2


@test
def functions_cannot_be_called_from_a_planted_trigger_or_view(c):
    """A trigger planted on a table the application writes cannot call
    migrate_apply or migrate_down with the application's connection: the
    functions are DIRECTONLY."""
    golang_folder(c)
    con, calls = connect(c)
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 2
    con.execute("CREATE TABLE app(x)")
    con.execute("CREATE TRIGGER evil AFTER INSERT ON app BEGIN SELECT migrate_down(2); END")
    try:
        con.execute("INSERT INTO app VALUES (1)")
        raise AssertionError("the trigger called migrate_down")
    except sqlite3.OperationalError as e:
        assert "unsafe use of migrate_down()" in str(e), str(e)
    con.execute("CREATE VIEW v AS SELECT migrate_down(2) AS n")
    try:
        con.execute("SELECT * FROM v").fetchall()
        raise AssertionError("the view called migrate_down")
    except sqlite3.OperationalError as e:
        assert "unsafe use of migrate_down()" in str(e), str(e)
    assert [r[0] for r in con.execute("SELECT version FROM migrate_history ORDER BY 1")] == ["1", "2"]


@test
def a_trigger_planted_on_the_history_is_refused(c):
    """Someone who shares the file plants a trigger on migrate_history
    (in main, or a temporary one on main's table) that calls the
    application's function and deletes what was recorded: the call must
    refuse before anything runs, and the trigger must never fire."""
    golang_folder(c)
    con, calls = connect(c)
    con.execute("SELECT migrate_apply(?, 'target=1')", (c.dir,)).fetchone()
    for temp in ("", "TEMP "):
        con.execute("CREATE %sTRIGGER eat AFTER INSERT ON main.migrate_history"
                    " BEGIN SELECT spy(new.version); DELETE FROM migrate_history"
                    " WHERE version = new.version; END" % temp)
        try:
            con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
            raise AssertionError("migrate_apply ran under a planted %strigger" % temp)
        except sqlite3.OperationalError as e:
            assert 'trigger "eat"' in str(e) and "migrate_history" in str(e), str(e)
        assert calls == [], calls
        assert con.execute("SELECT group_concat(version) FROM main.migrate_history").fetchone()[0] == "1"
        assert con.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'b'").fetchone()[0] == 0
        con.execute("DROP TRIGGER eat")
    con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
    assert con.execute("SELECT group_concat(version) FROM main.migrate_history").fetchone()[0] == "1,2"


@test
def a_migration_that_plants_a_trigger_on_the_history_is_rolled_back(c):
    """A migration creates a trigger on migrate_history: it ran on the
    history rows written after it, so the call fails and rolls back."""
    golang_folder(c)
    c.put("3_t.up.sql", "CREATE TRIGGER eat AFTER INSERT ON migrate_history"
          " BEGIN DELETE FROM migrate_history WHERE version = new.version; END;\n")
    con, calls = connect(c)
    try:
        con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
        raise AssertionError("migrate_apply kept a trigger on its history")
    except sqlite3.OperationalError as e:
        assert 'trigger "eat"' in str(e), str(e)
    assert con.execute("SELECT count(*) FROM sqlite_schema WHERE name IN ('a', 'b', 'eat')").fetchone()[0] == 0


@test
def history_records_who_applied_each_migration(c):
    """SQLite has no roles: whoever can write the file decides what it
    holds.  The history records the operating-system user of each call."""
    import pwd
    golang_folder(c)
    con, calls = connect(c)
    con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert con.execute("SELECT DISTINCT applied_by FROM migrate_history").fetchall() == [(me,)]


# ---- the lock file of migrations outside a transaction, across OS users ----

AS_OTHER = r"""
import json, sqlite3, sys
ext, db, sql, args = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
con = sqlite3.connect(db, isolation_level=None, timeout=2)
con.enable_load_extension(True)
con.load_extension(ext)
try:
    out = {"result": con.execute(sql, args).fetchall()}
except sqlite3.Error as e:
    out = {"error": str(e)}
print(json.dumps(out))
"""

OTHER = "nobody"          # a second OS user, in the group the database is shared with


def as_other(c, sql, *args):
    """Runs sql as the other OS user on c.db: {"result": rows} or {"error": text}."""
    import json
    import subprocess
    p = subprocess.run(["runuser", "-u", OTHER, "--", sys.executable, "-c", AS_OTHER, EXT, c.db, sql,
                        json.dumps(list(args))], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip(), "as %s: exit %d: %s" % (OTHER, p.returncode, p.stderr)
    return json.loads(p.stdout)


def shared_with_other(c):
    """A database folder and file writable by a group the other user is in
    (as a deployment shares them between a deploy user and the
    application's); False when the test does not run as root."""
    import grp
    import pwd
    if os.geteuid() != 0:
        return False
    gid = pwd.getpwnam(OTHER).pw_gid
    grp.getgrgid(gid)
    for path in (c.root, c.dir):
        os.chown(path, 0, gid)
    os.chmod(c.root, 0o2775)
    os.chmod(c.dir, 0o755)
    con = sqlite3.connect(c.db)
    con.execute("CREATE TABLE IF NOT EXISTS keep(x)")
    con.commit()
    con.close()
    os.chown(c.db, 0, gid)
    os.chmod(c.db, 0o664)
    return gid


NO_TXN = "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE %s(x);\n-- +goose Down\nDROP TABLE %s;\n"


@test
def lock_file_is_created_like_the_database_so_another_user_can_migrate(c):
    """After root ran a migration outside a transaction, the lock file it
    created let no other user take it (0600): every later such migration of
    another user with write access to the database failed for good.  It is
    created as SQLite creates the journal: the database file's permission
    bits and, for root, its owner and group."""
    gid = shared_with_other(c)
    if gid is False:
        return
    c.put("1_a.sql", NO_TXN % ("a", "a"))
    con, _ = connect(c)
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 1
    con.close()
    c.put("2_b.sql", NO_TXN % ("b", "b"))
    out = as_other(c, "SELECT migrate_apply(?)", c.dir)
    assert out == {"result": [[1]]}, out
    st = os.stat(c.db + "-migrate-lock")
    assert (oct(st.st_mode & 0o777), st.st_uid, st.st_gid) == (oct(0o664), 0, gid), \
        (oct(st.st_mode & 0o777), st.st_uid, st.st_gid)
    out = as_other(c, "SELECT migrate_down(2)")
    assert out == {"result": [[2]]}, out
    assert c.tables() == ["keep", "migrate_history", "migrate_progress"]


@test
def a_lock_file_another_user_cannot_open_is_never_free(c):
    """A lock file that could not be opened counted as free: while root's
    migration ran outside a transaction (holding a lock file left 0600 by an
    earlier build), another user's migrate_down(1) dropped the table it was
    working on.  A lock that cannot be checked is never free: the call
    fails, naming the file, and changes nothing."""
    import fcntl
    if shared_with_other(c) is False:
        return
    c.put("1_work.up.sql", "CREATE TABLE work(x);\n")
    c.put("1_work.down.sql", "DROP TABLE work;\n")
    con, _ = connect(c)
    assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 1
    con.close()
    lock = c.db + "-migrate-lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    for held in (True, False):
        if held:        # root's migration 2 runs statement by statement
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, b"migration 2 (2_fill.up.sql) in process 4242")
        out = as_other(c, "SELECT migrate_down(1)")
        assert "error" in out, "migrate_down ran under a lock it could not check: %s" % out
        assert out["error"].startswith('migrate_down: could not open lock file "%s": Permission denied' % lock), out
        assert "never taken as free" in out["error"], out
        assert "work" in c.tables(), "the table of the running migration was dropped"
        assert c.history() == [("1", "work")]
        out = as_other(c, "SELECT migrate_apply(?)", c.dir)
        assert out["error"].startswith('migrate_apply: could not open lock file "%s"' % lock), out
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    # readable is enough (flock works on a read-only descriptor)
    os.chmod(lock, 0o644)
    assert as_other(c, "SELECT migrate_down(1)") == {"result": [[1]]}
    assert "work" not in c.tables()


@test
def databases_without_a_file_get_no_lock_file(c):
    """A database with no file must not get a lock file at a path made of
    its name (file:/name?vfs=memdb got /name-migrate-lock): ":memory:", a
    temporary database and a memdb database whose name does not start with
    "/" are this connection's alone and need no lock; a memdb "/name"
    database, or an in-memory one whose shared cache another connection
    shares, can be changed by other connections of the process between the
    statements, and no lock file reaches them: such migrations are refused
    there, before anything runs."""
    c.put("1_a.up.sql", "CREATE TABLE a(x);\n")
    c.put("2_b.up.sql", "-- no-transaction\nCREATE TABLE b(x);\nINSERT INTO b VALUES (1);\n")
    cwd = os.getcwd()
    os.chdir(c.root)
    name = "mig-attack-%d" % os.getpid()
    try:
        for uri in (":memory:", "", "file:%s?vfs=memdb" % name):
            con = sqlite3.connect(uri, uri=uri.startswith("file:"), isolation_level=None)
            con.enable_load_extension(True)
            con.load_extension(EXT)
            assert con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()[0] == 2, uri
            assert con.execute("SELECT x FROM b").fetchall() == [(1,)]
            con.close()
        for uri in ("file:/%s?vfs=memdb" % name, "file:%s-shm?mode=memory&cache=shared" % name):
            con = sqlite3.connect(uri, uri=True, isolation_level=None)
            other = sqlite3.connect(uri, uri=True, isolation_level=None)
            other.execute("CREATE TABLE mine(x)")
            con.enable_load_extension(True)
            con.load_extension(EXT)
            try:
                con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
                raise AssertionError("applied in a shared in-memory database: %s" % uri)
            except sqlite3.OperationalError as e:
                assert str(e).startswith(
                    "migrate_apply: migration 2 (2_b.up.sql): it cannot run outside a transaction in an"
                    " in-memory database that other connections share"), str(e)
            names = {r[0] for r in other.execute("SELECT name FROM sqlite_schema")}
            assert "mine" in names and not names & {"a", "b", "migrate_history"}, (uri, names)
            con.close()
            other.close()
        assert not os.path.exists("/%s-migrate-lock" % name), "a lock file at the root"
        assert sorted(os.listdir(c.root)) == ["migrations"], os.listdir(c.root)
    finally:
        os.chdir(cwd)
        if os.path.exists("/%s-migrate-lock" % name):
            os.unlink("/%s-migrate-lock" % name)


@test
def nothing_is_written_through_a_planted_lock_file(c):
    """Whoever can write the database's folder can plant the lock file as
    a hard link to another file of the caller's (where protected_hardlinks
    does not stop it): the previous build truncated that file and wrote
    "migration 2 (...) in process N" into it.  A lock file with another
    link is refused, and the file is as it was."""
    secret = os.path.join(c.root, "secret.txt")
    with open(secret, "w") as f:
        f.write("the caller's own file\n")
    os.link(secret, c.db + "-migrate-lock")
    c.put("1_a.up.sql", "-- no-transaction\nCREATE TABLE a(x);\n")
    con, _ = connect(c)
    try:
        con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
        raise AssertionError("applied through a planted lock file")
    except sqlite3.OperationalError as e:
        assert str(e).startswith('migrate_apply: lock file "%s-migrate-lock" is not a regular file with a'
                                 ' single link' % c.db), str(e)
    con.close()
    with open(secret) as f:
        assert f.read() == "the caller's own file\n", "written through the link"
    assert "a" not in c.tables()


if __name__ == "__main__":
    sys.exit(main("attacks"))
