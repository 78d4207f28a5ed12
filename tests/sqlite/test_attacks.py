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
def history_records_who_applied_each_migration(c):
    """SQLite has no roles: whoever can write the file decides what it
    holds.  The history records the operating-system user of each call."""
    import pwd
    golang_folder(c)
    con, calls = connect(c)
    con.execute("SELECT migrate_apply(?)", (c.dir,)).fetchone()
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert con.execute("SELECT DISTINCT applied_by FROM migrate_history").fetchall() == [(me,)]


if __name__ == "__main__":
    sys.exit(main("attacks"))
