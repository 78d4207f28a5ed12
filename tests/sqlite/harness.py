"""Shared by the SQLite test files: a temporary folder and database per
test, the real sqlite3 shell with .load, Python's sqlite3 module, and a
TAP runner.

    python3 tests/sqlite/<file>.py [build/migrate] [name-filter]
"""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import traceback

EXT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/migrate")
FILTER = sys.argv[2] if len(sys.argv) > 2 else ""
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Case:
    """A temporary folder with a database file and a migrations folder."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="mig_sqlite_")
        self.db = os.path.join(self.root, "app.db")
        self.dir = os.path.join(self.root, "migrations")
        os.mkdir(self.dir)

    def put(self, name, text, mode=None):
        path = os.path.join(self.dir, name)
        data = text.encode() if isinstance(text, str) else text
        with open(path, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(path, mode)
        return path

    def rm(self, name):
        os.unlink(os.path.join(self.dir, name))

    def shell(self, *sql, db=None):
        """Runs the sqlite3 shell with the extension loaded; returns
        (exit code, stdout, stderr)."""
        args = ["sqlite3", "-bail", db or self.db, ".load " + EXT] + list(sql)
        p = subprocess.run(args, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout.strip(), p.stderr.strip()

    def ok(self, sql):
        rc, out, err = self.shell(sql)
        assert rc == 0, "%s failed: %s" % (sql, err)
        return out

    def fails(self, sql, *needles):
        """Runs sql, which must fail with every needle in its error."""
        rc, out, err = self.shell(sql)
        assert rc != 0, "%s succeeded: %s" % (sql, out)
        for n in needles:
            assert n in err, "expected %r in error:\n%s" % (n, err)
        return err

    def query(self, sql):
        con = sqlite3.connect(self.db)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def tables(self):
        return sorted(r[0] for r in self.query(
            "SELECT name FROM sqlite_schema WHERE type IN ('table','view') "
            "AND name NOT LIKE 'sqlite_%' AND name <> 'migrate_calls'"))

    def history(self):
        try:
            return self.query("SELECT version, name FROM migrate_history ORDER BY installed_rank")
        except sqlite3.OperationalError:
            return None

    def snapshot(self):
        """Everything a failed call must leave as it was (but the call log,
        which records the failed call)."""
        return (self.query("SELECT type, name, sql FROM sqlite_schema"
                           " WHERE tbl_name <> 'migrate_calls' ORDER BY name"),
                self.history())

    def calls(self):
        """The call log: (function, migrations, versions, outcome, sqlstate)."""
        try:
            return self.query("SELECT function, migrations, versions, outcome, sqlstate"
                              " FROM migrate_calls ORDER BY id")
        except sqlite3.OperationalError:
            return []

    def apply(self):
        return int(self.ok("SELECT migrate_apply('%s')" % self.dir))

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def main(suite="sqlite"):
    failed = 0
    run = [t for t in TESTS if FILTER in t.__name__]
    for i, t in enumerate(run, 1):
        c = Case()
        try:
            t(c)
            print("ok %d - %s: %s" % (i, suite, t.__name__))
        except Exception:
            failed += 1
            print("not ok %d - %s: %s" % (i, suite, t.__name__))
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
        finally:
            c.cleanup()
        sys.stdout.flush()
    print("1..%d" % len(run))
    print("%s: %d passed, %d failed" % (suite, len(run) - failed, failed))
    return 1 if failed else 0


