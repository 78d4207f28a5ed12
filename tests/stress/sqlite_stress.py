#!/usr/bin/python3
"""Reliability suite of the SQLite extension (issue 7), against the real
engine and the real extension.  Prints TAP.

    tests/stress/sqlite_stress.py [build/migrate] [--short | --long]
        [--rounds N] [--kills N] [--seed S] [name-filter]

- race: 64 processes, each with its own connection, released at once by a
  barrier, all calling migrate_apply on a fresh database each round, in
  rollback-journal (DELETE) and WAL mode; and rounds where half of them
  call migrate_status instead (readers never fail, never see half); and
  rounds whose folder has a migration that runs outside a transaction,
  under the lock file, which the other callers wait for.
- crash at every statement boundary: a child process counts the
  statements SQLite traces on its connection (those the extension prepares
  included) and SIGKILLs itself at the k-th, for every k; the database is
  intact and entirely as before or after, and the next call completes.
  For migrate_apply, migrate_down and an apply inside the caller's
  transaction, in both journal modes.
- crash at random moments: the parent SIGKILLs the child after a random
  delay during an apply (and a migrate_down) of a heavier folder.
- cancel: sqlite3_interrupt from another thread during a long migration
  (and a long down script); busy timeouts against a held write lock and
  against a reader that blocks the commit.

--short (make check, the default; about 30-50 s here): 3 race rounds per
mode (1 with readers), every boundary once per mode, 2 random kills per mode.  --long (make
stress; about 6 minutes): 100 race rounds per mode, every boundary, also of
a heavier folder whose transaction outgrows the page cache, 60 random
kills of an apply and 30 of a migrate_down per mode.  --rounds and --kills
override the counts.  A `# TODO` line is a known defect of the extension,
not a failure of this suite.
"""
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import traceback

# ---- arguments ----

_opts = {"mode": "short", "rounds": None, "kills": None, "seed": 7}
_pos = []
_args = sys.argv[1:]
while _args:
    a = _args.pop(0)
    if a in ("--short", "--long"):
        _opts["mode"] = a[2:]
    elif a in ("--rounds", "--kills", "--seed"):
        _opts[a[2:]] = int(_args.pop(0))
    else:
        _pos.append(a)
EXT = os.path.abspath(_pos[0] if _pos else "build/migrate")
FILTER = _pos[1] if len(_pos) > 1 else ""
LONG = _opts["mode"] == "long"
ROUNDS = _opts["rounds"] if _opts["rounds"] is not None else (100 if LONG else 3)
# rounds where half the callers read migrate_status: one in --short
READER_ROUNDS = ROUNDS if LONG or _opts["rounds"] is not None else 1
KILLS = _opts["kills"] if _opts["kills"] is not None else (60 if LONG else 2)
DOWN_KILLS = max(2, KILLS // 2)
SEED = _opts["seed"]
CALLERS = 64
MODES = ("delete", "wal")

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---- migration folders ----

# Ten migrations with ups and downs: tables, an index, data, ALTER TABLE
# both ways, a view, a trigger, a WITHOUT ROWID table, a semicolon in a string.
TEN = [
    ("users",
     "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n"
     "INSERT INTO users(name) VALUES ('ada'), ('grace');\n",
     "DROP TABLE users;\n"),
    ("posts",
     "CREATE TABLE posts(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), body TEXT);\n"
     "CREATE INDEX posts_user ON posts(user_id);\n",
     "DROP TABLE posts;\n"),
    ("seed_posts",
     "INSERT INTO posts(user_id, body) SELECT id, 'hello from ' || name FROM users;\n",
     "DELETE FROM posts;\n"),
    ("email",
     "ALTER TABLE users ADD COLUMN email TEXT;\n"
     "UPDATE users SET email = name || '@example.com';\n",
     "ALTER TABLE users DROP COLUMN email;\n"),
    ("post_counts",
     "CREATE VIEW post_counts AS SELECT u.name, count(p.id) AS n\n"
     "  FROM users u LEFT JOIN posts p ON p.user_id = u.id GROUP BY u.id;\n",
     "DROP VIEW post_counts;\n"),
    ("audit",
     "CREATE TABLE audit(msg TEXT);\n"
     "CREATE TRIGGER posts_audit AFTER INSERT ON posts BEGIN\n"
     "  INSERT INTO audit VALUES ('post ' || new.id);\n"
     "END;\n",
     "DROP TRIGGER posts_audit;\nDROP TABLE audit;\n"),
    ("second_post",
     "INSERT INTO posts(user_id, body) VALUES (1, 'second; with a semicolon');\n",
     "DELETE FROM audit WHERE msg IN (SELECT 'post ' || id FROM posts WHERE body LIKE 'second%');\n"
     "DELETE FROM posts WHERE body LIKE 'second%';\n"),
    ("tags",
     "CREATE TABLE tags(id INTEGER PRIMARY KEY, tag TEXT UNIQUE);\n"
     "INSERT INTO tags(tag) WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 200)\n"
     "  SELECT 'tag' || i FROM r;\n",
     "DROP TABLE tags;\n"),
    ("post_tags",
     "CREATE TABLE post_tags(post_id INTEGER, tag_id INTEGER, PRIMARY KEY(post_id, tag_id)) WITHOUT ROWID;\n"
     "INSERT INTO post_tags SELECT p.id, t.id FROM posts p, tags t WHERE t.id <= 3;\n",
     "DROP TABLE post_tags;\n"),
    ("settings",
     "CREATE TABLE settings(k TEXT PRIMARY KEY, v TEXT);\n"
     "INSERT INTO settings VALUES ('schema', '10');\n",
     "DROP TABLE settings;\n"),
]
TEN_TABLES = ["audit", "migrate_history", "post_counts", "post_tags", "posts", "settings",
              "tags", "users"]

HEAVY_N = 20          # migrations of the heavier folder
HEAVY_ROWS = 8000     # rows each: about 12 MB in all, more than SQLite's page cache


def write_folder(path, migrations):
    os.mkdir(path)
    for i, (name, up, down) in enumerate(migrations, 1):
        with open(os.path.join(path, "%03d_%s.up.sql" % (i, name)), "w") as f:
            f.write(up)
        with open(os.path.join(path, "%03d_%s.down.sql" % (i, name)), "w") as f:
            f.write(down)


def heavy_migrations():
    out = []
    for i in range(1, HEAVY_N + 1):
        out.append(("heavy%d" % i,
                    "CREATE TABLE h%d(id INTEGER PRIMARY KEY, v TEXT NOT NULL);\n"
                    "INSERT INTO h%d(v) WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r"
                    " WHERE i < %d)\n  SELECT printf('%%08d-%%s', i, hex(zeroblob(24))) FROM r;\n"
                    "CREATE INDEX h%d_v ON h%d(v);\n" % (i, i, HEAVY_ROWS, i, i),
                    "DELETE FROM h%d WHERE id %% 2 = 0;\nDROP INDEX h%d_v;\nDROP TABLE h%d;\n" % (i, i, i)))
    return out


# ---- databases ----

def connect(db, timeout=60.0, ext=True, **kw):
    con = sqlite3.connect(db, timeout=timeout, isolation_level=None, **kw)
    if ext:
        con.enable_load_extension(True)
        con.load_extension(EXT)
        con.enable_load_extension(False)
    return con


def remove_db(db):
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)


def new_db(db, journal, keep=True):
    """A fresh database in the journal mode, with a table of the caller's
    own (so that 'before' is not simply empty)."""
    remove_db(db)
    con = connect(db, ext=False)
    mode = con.execute("PRAGMA journal_mode=%s" % journal).fetchone()[0]
    assert mode == journal, mode
    if keep:
        con.execute("CREATE TABLE keep(x TEXT)")
        con.execute("INSERT INTO keep VALUES ('mine before')")
    con.close()


def copy_db(src, dst):
    """Copies a closed database (its WAL checkpointed and gone)."""
    remove_db(dst)
    assert not os.path.exists(src + "-wal") and not os.path.exists(src + "-journal")
    shutil.copyfile(src, dst)


HIST_COLS = "installed_rank, version, name, up_file, down_file, checksum, up_sql, down_sql"


def dump(db):
    """The whole logical content: the schema and every row (the history
    without its times and file identities, which differ between runs)."""
    con = connect(db, ext=False)
    try:
        # (the call log records each call: its rows differ between runs)
        schema = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema"
                             " WHERE tbl_name <> 'migrate_calls' ORDER BY type, name").fetchall()
        rows = {}
        for (name,) in con.execute("SELECT name FROM sqlite_schema WHERE type = 'table'"
                                   " AND name <> 'migrate_calls' ORDER BY name").fetchall():
            cols = HIST_COLS if name == "migrate_history" else "*"
            rows[name] = sorted(con.execute('SELECT %s FROM "%s"' % (cols, name)).fetchall(), key=repr)
        return schema, rows
    finally:
        con.close()


def summary(db):
    """A cheaper state for the heavier folder: schema, row counts and the
    history."""
    con = connect(db, ext=False)
    try:
        schema = con.execute("SELECT type, name, sql FROM sqlite_schema"
                             " WHERE tbl_name <> 'migrate_calls' ORDER BY type, name").fetchall()
        counts = {}
        for (name,) in con.execute("SELECT name FROM sqlite_schema WHERE type = 'table'"
                                   " AND name <> 'migrate_calls' ORDER BY name").fetchall():
            if name == "migrate_history":
                counts[name] = con.execute("SELECT %s FROM migrate_history ORDER BY installed_rank"
                                           % HIST_COLS).fetchall()
            else:
                counts[name] = con.execute('SELECT count(*), total(length(v)) FROM "%s"' % name).fetchone() \
                    if name.startswith("h") else con.execute('SELECT * FROM "%s"' % name).fetchall()
        return schema, counts
    finally:
        con.close()


def integrity(db):
    con = connect(db, ext=False)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


def call(db, sql, args=()):
    return run_steps(db, [(sql, args)])


def run_steps(db, steps):
    """Runs (sql, args) steps on one new connection; the last one's rows."""
    con = connect(db)
    try:
        for sql, args in steps:
            rows = con.execute(sql, args).fetchall()
        return rows
    finally:
        con.close()


def describe(state, known):
    for name, s in known.items():
        if state == s:
            return name
    return None


def brief(state):
    schema, rows = state
    return "tables %s, history %s" % (sorted(r[1] for r in schema if r[0] == "table"),
                                      [r[1] for r in rows.get("migrate_history", [])])


# ---- the race ----

def _worker(ext, barrier, pipe):
    """A caller: for each task, its own connection, then the barrier, then
    one call; sends back ("ok", result) or ("error", text)."""
    while True:
        task = pipe.recv()
        if task is None:
            return
        db, folder, fn = task
        con = None
        try:
            con = sqlite3.connect(db, timeout=60, isolation_level=None)
            con.enable_load_extension(True)
            con.load_extension(ext)
            con.enable_load_extension(False)
        except Exception as e:  # reported by the barrier and the result
            pipe.send(("error", "connect: %r" % e))
            barrier.abort()
            continue
        try:
            barrier.wait(timeout=120)
            if fn == "apply":
                r = ("ok", con.execute("SELECT migrate_apply(?)", (folder,)).fetchone()[0])
            else:
                r = ("ok", con.execute("SELECT version, state FROM migrate_status(?)",
                                       (folder,)).fetchall())
        except Exception as e:
            r = ("error", "%s: %s" % (type(e).__name__, e))
        finally:
            con.close()
        pipe.send(r)


class Pool:
    """CALLERS long-lived processes; each round they open new connections."""

    def __init__(self, n):
        ctx = multiprocessing.get_context("fork")
        self.barrier = ctx.Barrier(n)
        self.pipes, self.procs = [], []
        for _ in range(n):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(EXT, self.barrier, theirs), daemon=True)
            p.start()
            theirs.close()
            self.pipes.append(mine)
            self.procs.append(p)

    def round(self, tasks):
        for pipe, t in zip(self.pipes, tasks):
            pipe.send(t)
        out = []
        for pipe in self.pipes:
            if not pipe.poll(300):
                raise AssertionError("a caller did not answer within 300 s")
            out.append(pipe.recv())
        if self.barrier.broken:
            self.barrier.reset()
        return out

    def close(self):
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


def race(t, journal, readers=0, rounds=ROUNDS, marked=False):
    folder = os.path.join(t, "ten")
    migrations = list(TEN)
    if marked:
        # the fifth runs outside a transaction, statement by statement,
        # under the lock file: the other callers wait for it
        name, up, down = migrations[4]
        migrations[4] = (name, "-- no-transaction\n" + up, down)
    write_folder(folder, migrations)
    ref = os.path.join(t, "ref.db")
    new_db(ref, journal)
    assert call(ref, "SELECT migrate_apply(?)", (folder,)) == [(len(TEN),)]
    after = dump(ref)
    assert sorted(r[1] for r in after[0] if r[0] in ("table", "view")) == sorted(
        TEN_TABLES + ["keep"] + (["migrate_progress"] if marked else []))
    pending = [("%d" % i, "pending") for i in range(1, len(TEN) + 1)]
    applied = [("%d" % i, "applied") for i in range(1, len(TEN) + 1)]
    pool = Pool(CALLERS)
    seen = {"pending": 0, "applied": 0}
    try:
        for r in range(rounds):
            db = os.path.join(t, "race%d.db" % r)
            new_db(db, journal)
            tasks = [(db, folder, "status" if i < readers else "apply") for i in range(CALLERS)]
            random.Random(SEED + r).shuffle(tasks)
            results = pool.round(tasks)
            where = "round %d (%s)" % (r + 1, journal)
            errors = [res for res in results if res[0] != "ok"]
            assert not errors, "%s: %d callers failed: %s" % (where, len(errors), errors[:3])
            counts = sorted(res[1] for res, task in zip(results, tasks) if task[2] == "apply")
            appliers = CALLERS - readers
            assert counts == [0] * (appliers - 1) + [len(TEN)], "%s: counts %s" % (where, counts)
            for res, task in zip(results, tasks):
                if task[2] == "status":
                    assert res[1] in (pending, applied), "%s: a reader saw half: %s" % (where, res[1])
                    seen["pending" if res[1] == pending else "applied"] += 1
            assert integrity(db) == [("ok",)], where
            hist = call(db, "SELECT count(*), count(DISTINCT version), group_concat(version, ',')"
                            " FROM (SELECT version FROM migrate_history ORDER BY installed_rank)")
            assert hist == [(len(TEN), len(TEN), ",".join(str(i) for i in range(1, len(TEN) + 1)))], \
                "%s: history %s" % (where, hist)
            assert dump(db) == after, "%s: schema or rows differ: %s" % (where, brief(dump(db)))
            remove_db(db)
    finally:
        pool.close()
    return "%d rounds of %d callers%s" % (rounds, CALLERS,
                                          ", readers saw %(pending)d before and %(applied)d after" % seen
                                          if readers else "")


@test
def race_64_callers_delete(t):
    return race(t, "delete")


@test
def race_64_callers_wal(t):
    return race(t, "wal")


@test
def race_64_callers_one_migration_outside_a_transaction_delete(t):
    return race(t, "delete", marked=True)


@test
def race_64_callers_one_migration_outside_a_transaction_wal(t):
    return race(t, "wal", marked=True)


@test
def race_apply_and_status_delete(t):
    return race(t, "delete", readers=CALLERS // 2, rounds=READER_ROUNDS)


@test
def race_apply_and_status_wal(t):
    return race(t, "wal", readers=CALLERS // 2, rounds=READER_ROUNDS)


# ---- kills at statement boundaries ----

def run_child(db, steps, kill_at=0, go=None):
    """Forks a child that opens its own connection and runs steps (a list of
    (sql, args)), counting the statements SQLite traces on the connection
    and SIGKILLing itself at the kill_at-th.  go: a pipe end the child
    writes one byte to just before the first step.  Returns the pid."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            con = connect(db)
            n = [0]

            def trace(_sql):
                n[0] += 1
                if n[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            con.set_trace_callback(trace)
            if go is not None:
                os.write(go, b"g")
            for sql, args in steps:
                con.execute(sql, args).fetchall()
            con.close()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait_child(pid):
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def traced(db, steps):
    """The statements SQLite traces on one connection for steps."""
    con = connect(db)
    seen = []
    con.set_trace_callback(seen.append)
    try:
        for sql, args in steps:
            con.execute(sql, args).fetchall()
    finally:
        con.close()
    return seen


@test
def trace_sees_the_extensions_statements(t):
    """The statement trace of the calling connection fires for the
    statements the extension prepares, one per statement of each file, the
    same every run: so a kill at the k-th is a kill at a statement boundary."""
    folder = os.path.join(t, "ten")
    write_folder(folder, TEN)
    template = os.path.join(t, "template.db")
    new_db(template, "delete")
    db = os.path.join(t, "app.db")
    runs = []
    for _ in range(2):
        copy_db(template, db)
        runs.append(traced(db, [("SELECT migrate_apply(?)", (folder,))]))
    a = runs[0]
    assert len(a) == len(runs[1]), "the count differs between runs: %d, %d" % (len(a), len(runs[1]))
    assert a[0] == "SELECT migrate_apply(?)" or a[0].startswith("SELECT migrate_apply("), a[0]
    assert "-- BEGIN IMMEDIATE" in a and a[-1] == "-- COMMIT", (a[:4], a[-1])
    assert sum(s.startswith("-- INSERT INTO main.migrate_history") for s in a) == len(TEN)
    for name, up, _down in TEN:
        first = up.split(";")[0].splitlines()[0]
        assert any(first in s for s in a), "no trace of %s: %r" % (name, first)
    assert any("TRIGGER posts_audit" in s for s in a), "trigger programs are traced too"
    return "%d statements traced for an apply of %d migrations" % (len(a), len(TEN))


def boundaries(t, journal, steps_fn, prepare=None, migrations=TEN, look=dump):
    """Kills a child at every statement boundary of steps; after each kill
    the database is intact and entirely 'before' or 'after', and the same
    steps again complete.  prepare(db, folder) builds the starting database
    from a fresh one; look(db) is the state compared."""
    folder = os.path.join(t, "m")
    write_folder(folder, migrations)
    steps = steps_fn(folder)
    template = os.path.join(t, "template.db")
    new_db(template, journal)
    if prepare:
        prepare(template, folder)
    before = look(template)
    db = os.path.join(t, "app.db")
    copy_db(template, db)
    total = len(traced(db, steps))
    after = look(db)
    assert after != before, "the call changed nothing"
    known = {"before": before, "after": after}
    outcomes = {"before": 0, "after": 0}
    for k in range(1, total + 2):          # total + 1: no kill at all
        copy_db(template, db)
        rc = wait_child(run_child(db, steps, kill_at=k))
        where = "%s, kill at statement %d of %d" % (journal, k, total)
        if k <= total:
            assert rc == -signal.SIGKILL, "%s: the child was not killed (exit %s)" % (where, rc)
        else:
            assert rc == 0, "%s: the call failed (exit %s)" % (where, rc)
        assert integrity(db) == [("ok",)], where
        state = look(db)
        name = describe(state, known)
        assert name, "%s: neither before nor after: %s" % (where, brief(state))
        outcomes[name] += 1
        if name == "before":
            run_steps(db, steps)
            assert look(db) == after, "%s: the next call did not complete: %s" % (where, brief(look(db)))
    remove_db(db)
    assert outcomes["after"] >= 1 and outcomes["before"] >= 1, outcomes
    return "%d boundaries; %d before, %d after" % (total, outcomes["before"], outcomes["after"])


def apply_steps(folder):
    return [("SELECT migrate_apply(?)", (folder,))]


def applied_first(db, folder):
    assert call(db, "SELECT migrate_apply(?)", (folder,)) == [(len(TEN),)]


@test
def kill_at_every_statement_of_apply_delete(t):
    return boundaries(t, "delete", apply_steps)


@test
def kill_at_every_statement_of_apply_wal(t):
    return boundaries(t, "wal", apply_steps)


@test
def kill_at_every_statement_of_down_delete(t):
    return boundaries(t, "delete", lambda f: [("SELECT migrate_down(?)", (len(TEN),))], prepare=applied_first)


@test
def kill_at_every_statement_of_down_wal(t):
    return boundaries(t, "wal", lambda f: [("SELECT migrate_down(?)", (len(TEN),))], prepare=applied_first)


def in_callers_txn(folder):
    return [("BEGIN", ()), ("INSERT INTO keep VALUES ('mine, same transaction')", ()),
            ("SELECT migrate_apply(?)", (folder,)), ("COMMIT", ())]


@test
def kill_at_every_statement_of_apply_in_callers_transaction_delete(t):
    """The savepoint path: the caller's own row and the migrations commit
    together or not at all."""
    return boundaries(t, "delete", in_callers_txn)


@test
def kill_at_every_statement_of_apply_in_callers_transaction_wal(t):
    return boundaries(t, "wal", in_callers_txn)


if LONG:
    @test
    def kill_at_every_statement_of_a_heavy_apply_delete(t):
        """--long only: a folder whose transaction outgrows the page cache,
        so pages reach the database file (and the WAL) before the commit."""
        return boundaries(t, "delete", apply_steps, migrations=heavy_migrations(), look=summary)

    @test
    def kill_at_every_statement_of_a_heavy_apply_wal(t):
        return boundaries(t, "wal", apply_steps, migrations=heavy_migrations(), look=summary)


@test
def kill_check_catches_a_call_that_is_not_atomic(t):
    """The check above is not vacuous: two transactions in a row (a table of
    one's own, then the apply) killed between them are caught as neither
    before nor after."""
    try:
        boundaries(t, "delete", lambda f: [("CREATE TABLE mine(x)", ())] + apply_steps(f))
    except AssertionError as e:
        assert "neither before nor after" in str(e), str(e)
        return "caught: %s" % str(e).splitlines()[0][:90]
    raise AssertionError("a kill between two transactions went unnoticed")


# ---- kills at random moments ----

def random_kills(t, journal, down):
    folder = os.path.join(t, "heavy")
    write_folder(folder, heavy_migrations())
    template = os.path.join(t, "template.db")
    new_db(template, journal)
    if down:
        assert call(template, "SELECT migrate_apply(?)", (folder,)) == [(HEAVY_N,)]
    steps = [("SELECT migrate_down(?)", (HEAVY_N,))] if down else [("SELECT migrate_apply(?)", (folder,))]
    before = summary(template)
    db = os.path.join(t, "app.db")
    durations = []
    for _ in range(2):
        copy_db(template, db)
        t0 = time.monotonic()
        run_steps(db, steps)
        durations.append(time.monotonic() - t0)
    duration = min(durations)
    after = summary(db)
    assert after != before
    known = {"before": before, "after": after}
    rng = random.Random(SEED * 1000 + (2 if down else 1) + (10 if journal == "wal" else 0))
    kills = DOWN_KILLS if down else KILLS
    inside = late = 0
    while inside < kills:
        assert late <= 2 * kills + 2, "%d of %d kills came after the call had finished" % (late, inside + late)
        copy_db(template, db)
        r, w = os.pipe()
        pid = run_child(db, steps, go=w)
        os.close(w)
        assert os.read(r, 1) == b"g", "the child did not start"
        os.close(r)
        delay = rng.uniform(0.0, 0.7) * duration
        time.sleep(delay)      # the random moment itself, not a synchronisation
        os.kill(pid, signal.SIGKILL)
        rc = wait_child(pid)
        where = "%s, kill %d after %.1f ms (exit %s)" % (journal, inside + late + 1, delay * 1000, rc)
        assert rc in (-signal.SIGKILL, 0), where
        assert integrity(db) == [("ok",)], where
        state = summary(db)
        name = describe(state, known)
        assert name, "%s: neither before nor after" % where
        if name == "after":
            late += 1          # the call had committed: not a kill inside it
            continue
        inside += 1
        run_steps(db, steps)
        assert summary(db) == after, "%s: the next call did not complete" % where
    remove_db(db)
    return "%d kills inside a %.0f ms %s, entirely before each time; %d more came after it had committed" % (
        kills, duration * 1000, "migrate_down" if down else "migrate_apply", late)


@test
def kill_at_random_moments_apply_delete(t):
    return random_kills(t, "delete", down=False)


@test
def kill_at_random_moments_apply_wal(t):
    return random_kills(t, "wal", down=False)


@test
def kill_at_random_moments_down_delete(t):
    return random_kills(t, "delete", down=True)


@test
def kill_at_random_moments_down_wal(t):
    return random_kills(t, "wal", down=True)


# ---- exactly once, outside a transaction ----

# Migration 2 runs outside a transaction, statement by statement: plain
# statements (an ALTER TABLE among them, which fails if it runs twice), a
# PRAGMA, and a BEGIN ... COMMIT of its own; its down script too.  Killed
# at any moment, the next call resumes it, and every statement has run
# exactly once.
def once_migrations(slow=0):
    work = ("" if not slow else
            " WHERE (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < %d)"
            " SELECT count(*) FROM r) > 0" % slow)
    ins = lambda *v: "INSERT INTO t SELECT %s%s;\n" % (", ".join(map(str, v)), work)
    return [
        ("t", "CREATE TABLE t(x);\nCREATE TABLE log(msg);\n", "DROP TABLE log;\nDROP TABLE t;\n"),
        ("once",
         "-- no-transaction\n" + ins(1) + "ALTER TABLE t ADD COLUMN y;\n" + ins(2, 2) +
         "PRAGMA user_version = 5;\n" + ins(3, 3) + "BEGIN;\n" + ins(4, 4) + ins(5, 5) + "COMMIT;\n" +
         ins(6, 6),
         "-- no-transaction\nINSERT INTO log VALUES ('down');\nDELETE FROM t WHERE x > 1;\n"
         "ALTER TABLE t DROP COLUMN y;\nPRAGMA user_version = 0;\n"),
        ("after", "CREATE TABLE after(x);\n", "DROP TABLE after;\n"),
    ]


def once_state(db):
    """The logical content and user_version; an outside migration's
    progress must be gone."""
    con = connect(db, ext=False)
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()
    return dump(db), version


def exactly_once(t, journal, down, slow=0, kills=None):
    """Kills the child at every statement boundary of an apply (or, with
    down, of a migrate_down(2) after it) -- or, with kills, at that many
    random moments -- then calls again until done: the result equals an
    undisturbed run, so no statement ran twice or was skipped."""
    folder = os.path.join(t, "m")
    write_folder(folder, once_migrations(slow))
    template = os.path.join(t, "template.db")
    new_db(template, journal)
    if down:
        assert call(template, "SELECT migrate_apply(?)", (folder,)) == [(3,)]
        steps = [("SELECT migrate_down(2)", ())]
    else:
        steps = [("SELECT migrate_apply(?)", (folder,))]
    db = os.path.join(t, "app.db")
    copy_db(template, db)
    t0 = time.monotonic()
    trace = traced(db, steps)
    total = len(trace)
    duration = time.monotonic() - t0
    want = once_state(db)
    rows = [(1,)] if down else [(1, None), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]
    assert call(db, "SELECT * FROM t ORDER BY x") == rows
    rng = random.Random(SEED * 77 + down + (2 if journal == "wal" else 0))
    # --short: not inside the reads of the connection's settings (a
    # statement that reads them all, and the PRAGMAs it runs nested),
    # where a kill leaves what a kill before them leaves
    reads = [k for k, sql in enumerate(trace, 1)
             if sql.startswith("-- SELECT 0, (SELECT * FROM pragma_") or
             (sql.startswith("-- PRAGMA ") and "=" not in sql)]
    moments = ([k for k in range(1, total + 2) if LONG or k not in reads] if kills is None
               else [None] * kills)
    resumed = 0
    for k in moments:
        copy_db(template, db)
        if k is not None:
            rc = wait_child(run_child(db, steps, kill_at=k))
            where = "%s, kill at statement %d of %d" % (journal, k, total)
            assert rc == (0 if k > total else -signal.SIGKILL), "%s: exit %s" % (where, rc)
        else:
            r, w = os.pipe()
            pid = run_child(db, steps, go=w)
            os.close(w)
            assert os.read(r, 1) == b"g"
            os.close(r)
            delay = rng.uniform(0.0, 1.0) * duration
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            rc = wait_child(pid)
            where = "%s, kill after %.1f ms (exit %s)" % (journal, delay * 1000, rc)
        assert integrity(db) == [("ok",)], where
        if once_state(db) != want:
            resumed += 1
            try:
                if down:        # what is left to roll back down to migration 1
                    left = call(db, "SELECT count(*) FROM migrate_history")[0][0] - 1
                    run_steps(db, [("SELECT migrate_down(?)", (left,))])
                else:
                    run_steps(db, steps)
            except sqlite3.Error as e:
                raise AssertionError("%s: the next call failed: %s" % (where, e))
        got = once_state(db)
        assert got == want, "%s: after the next call: t %s, user_version %s, %s" % (
            where, call(db, "SELECT * FROM t ORDER BY x"), got[1], brief(got[0]))
    remove_db(db)
    return "%d %s of a %d-statement %s, %d resumed; every statement ran once" % (
        len(moments), "boundaries" if kills is None else "random kills", total,
        "migrate_down(2)" if down else "migrate_apply", resumed)


ONCE_KILLS = 40 if LONG else 3


@test
def exactly_once_outside_a_transaction_kill_at_every_statement_delete(t):
    return exactly_once(t, "delete", down=False)


@test
def exactly_once_rollback_outside_a_transaction_kill_at_every_statement_wal(t):
    return exactly_once(t, "wal", down=True)


if LONG:
    @test
    def exactly_once_outside_a_transaction_kill_at_every_statement_wal(t):
        return exactly_once(t, "wal", down=False)

    @test
    def exactly_once_rollback_outside_a_transaction_kill_at_every_statement_delete(t):
        return exactly_once(t, "delete", down=True)


@test
def exactly_once_outside_a_transaction_kill_at_random_moments_delete(t):
    return exactly_once(t, "delete", down=False, slow=30000, kills=ONCE_KILLS)


@test
def exactly_once_outside_a_transaction_kill_at_random_moments_wal(t):
    return exactly_once(t, "wal", down=False, slow=30000, kills=ONCE_KILLS)


if LONG:
    @test
    def exactly_once_rollback_outside_a_transaction_kill_at_random_moments_delete(t):
        return exactly_once(t, "delete", down=True, slow=30000, kills=ONCE_KILLS)


# ---- cancel ----

BIG_ROWS = 2000000


CANCEL_FILES = [
    ("1_a.up.sql", "CREATE TABLE a(x);\nINSERT INTO a VALUES (1);\n"),
    ("1_a.down.sql", "DROP TABLE a;\n"),
    ("2_b.up.sql", "CREATE TABLE b(x);\nINSERT INTO b VALUES (2);\n"),
    ("2_b.down.sql", "DROP TABLE b;\n"),
    ("3_big.up.sql", "CREATE TABLE big(i INTEGER);\n"
                     "INSERT INTO big WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r"
                     " WHERE i < %d)\n  SELECT i FROM r;\n" % BIG_ROWS),
    ("3_big.down.sql", "CREATE TABLE big_archive AS SELECT * FROM big ORDER BY i DESC;\n"
                       "DROP TABLE big_archive;\nDROP TABLE big;\n"),
]


def cancel_folder(t, upto=3):
    """Migrations 1 (small), 2 (small) and 3 (millions of rows), up to
    version upto; called again with a higher upto, adds the rest."""
    folder = os.path.join(t, "m")
    os.makedirs(folder, exist_ok=True)
    for name, text in CANCEL_FILES:
        if int(name.split("_")[0]) <= upto:
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
    return folder


def interrupted(con, sql, args, marker):
    """Runs sql on con while another thread calls con.interrupt() as soon
    as the statement containing marker starts; returns the error."""
    started = threading.Event()
    con.set_trace_callback(lambda s: started.set() if marker in s else None)

    def canceller():
        if started.wait(60):
            con.interrupt()
    th = threading.Thread(target=canceller)
    th.start()
    try:
        con.execute(sql, args).fetchall()
        err = None
    except sqlite3.OperationalError as e:
        err = e
    finally:
        started.set()
        th.join()
        con.set_trace_callback(None)
    assert err is not None, "the call was not interrupted"
    return err


@test
def cancel_interrupts_a_long_migration(t):
    folder = cancel_folder(t, upto=1)
    db = os.path.join(t, "app.db")
    new_db(db, "delete")
    assert call(db, "SELECT migrate_apply(?)", (folder,)) == [(1,)]
    cancel_folder(t)
    before = dump(db)
    con = connect(db, check_same_thread=False)
    err = interrupted(con, "SELECT migrate_apply(?)", (folder,), "WITH RECURSIVE")
    assert str(err) == ("migrate_apply: migration 3 (3_big.up.sql), line 2: interrupted\n"
                        "DETAIL:  The 1 migration this call applied was rolled back with it."), str(err)
    assert not con.in_transaction
    assert dump(db) == before, "changed: %s" % brief(dump(db))
    # the next call on a new connection completes ...
    assert call(db, "SELECT migrate_apply(?)", (folder,)) == [(2,)]
    assert call(db, "SELECT count(*), max(i) FROM big") == [(BIG_ROWS, BIG_ROWS)]
    assert call(db, "SELECT migrate_down(2)") == [(2,)]
    assert dump(db) == before
    # ... and so does the next one on the interrupted connection
    assert con.execute("SELECT migrate_apply(?)", (folder,)).fetchall() == [(2,)]
    con.close()
    assert [r[1] for r in dump(db)[1]["migrate_history"]] == ["1", "2", "3"]


@test
def cancel_interrupt_keeps_sqlite_interrupt_code(t):
    """An interrupted call reports SQLITE_INTERRUPT, so a client can tell
    a cancel from a failure."""
    folder = cancel_folder(t)
    db = os.path.join(t, "app.db")
    new_db(db, "delete")
    con = connect(db, check_same_thread=False)
    err = interrupted(con, "SELECT migrate_apply(?)", (folder,), "WITH RECURSIVE")
    con.close()
    assert "interrupted" in str(err), str(err)
    assert err.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT, \
        "error code %s (%s), not SQLITE_INTERRUPT" % (err.sqlite_errorcode, err.sqlite_errorname)




@test
def cancel_interrupts_a_long_down_script(t):
    folder = cancel_folder(t)
    db = os.path.join(t, "app.db")
    new_db(db, "wal")
    assert call(db, "SELECT migrate_apply(?)", (folder,)) == [(3,)]
    before = dump(db)
    con = connect(db, check_same_thread=False)
    err = interrupted(con, "SELECT migrate_down(2)", (), "big_archive AS")
    assert str(err) == "migrate_down: rollback of migration 3 (3_big.down.sql), line 1: interrupted", str(err)
    assert dump(db) == before, "changed: %s" % brief(dump(db))
    assert con.execute("SELECT migrate_down(2)").fetchall() == [(2,)]
    con.close()
    assert [r[1] for r in dump(db)[1]["migrate_history"]] == ["1"]
    assert call(db, "SELECT migrate_down(1)") == [(1,)]


# ---- busy ----

def timed_failure(con, sql, args):
    t0 = time.monotonic()
    try:
        con.execute(sql, args).fetchall()
    except sqlite3.OperationalError as e:
        return e, time.monotonic() - t0
    raise AssertionError("the call succeeded")


def held_write_lock(t, journal):
    folder = os.path.join(t, "ten")
    write_folder(folder, TEN)
    db = os.path.join(t, "app.db")
    new_db(db, journal)
    before = dump(db)
    holder = connect(db, ext=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO keep VALUES ('holder, uncommitted')")
    con = connect(db, timeout=0.2)
    assert con.execute("PRAGMA busy_timeout").fetchone() == (200,)
    err, took = timed_failure(con, "SELECT migrate_apply(?)", (folder,))
    msg = str(err)
    first = msg.splitlines()[0]
    # the wording is being reworked (issue 7 pins only what a user needs):
    # the function, the migration lock, and how long it waited
    assert first.startswith("migrate_apply: ") and "migration lock" in first, msg
    assert "Another connection held the database's write lock for more than 200 ms" in msg, msg
    assert err.sqlite_errorcode == sqlite3.SQLITE_BUSY, err.sqlite_errorname
    assert 0.15 <= took < 2.0, "took %.3f s" % took
    assert con.execute("PRAGMA busy_timeout").fetchone() == (200,), "busy timeout left as it was"
    assert not con.in_transaction
    holder.execute("ROLLBACK")
    holder.close()
    assert dump(db) == before
    assert con.execute("SELECT migrate_apply(?)", (folder,)).fetchall() == [(len(TEN),)]
    con.close()
    return "refused after %.0f ms" % (took * 1000)


@test
def busy_timeout_against_a_held_write_lock_delete(t):
    return held_write_lock(t, "delete")


@test
def busy_timeout_against_a_held_write_lock_wal(t):
    return held_write_lock(t, "wal")


def reader_holds_commit(t):
    folder = os.path.join(t, "ten")
    write_folder(folder, TEN)
    db = os.path.join(t, "app.db")
    new_db(db, "delete")
    before = dump(db)
    reader = connect(db, ext=False)
    reader.execute("BEGIN")
    assert reader.execute("SELECT x FROM keep").fetchall() == [("mine before",)]
    con = connect(db, timeout=0.2)
    err, took = timed_failure(con, "SELECT migrate_apply(?)", (folder,))
    return folder, db, before, reader, con, err, took


@test
def busy_timeout_against_a_reader_blocking_the_commit_delete(t):
    """Rollback-journal mode: an open read transaction keeps the COMMIT
    from writing; the call fails after the timeout, changing nothing."""
    folder, db, before, reader, con, err, took = reader_holds_commit(t)
    assert str(err) == ("migrate_apply: COMMIT: database is locked\n"
                        "DETAIL:  Another connection kept the database from being written for longer"
                        " than the busy timeout; nothing was applied.\n"
                        "HINT:  Retry later, or raise the wait with PRAGMA busy_timeout."), str(err)
    assert 0.15 <= took < 2.0, "took %.3f s" % took
    assert not con.in_transaction
    assert reader.execute("SELECT count(*) FROM sqlite_schema").fetchone() == (1,)
    reader.execute("COMMIT")
    reader.close()
    assert dump(db) == before
    assert con.execute("SELECT migrate_apply(?)", (folder,)).fetchall() == [(len(TEN),)]
    con.close()
    return "refused after %.0f ms" % (took * 1000)


@test
def busy_commit_failure_keeps_sqlite_busy_code(t):
    """A lock not had at COMMIT reports SQLITE_BUSY, like a lock not had
    at the start, so a client that retries on SQLITE_BUSY retries."""
    folder, db, before, reader, con, err, took = reader_holds_commit(t)
    reader.execute("COMMIT")
    reader.close()
    con.close()
    assert err.sqlite_errorcode == sqlite3.SQLITE_BUSY, \
        "error code %s (%s), not SQLITE_BUSY: %s" % (err.sqlite_errorcode, err.sqlite_errorname, err)




@test
def wal_reader_does_not_block_and_keeps_its_snapshot(t):
    folder = os.path.join(t, "ten")
    write_folder(folder, TEN)
    db = os.path.join(t, "app.db")
    new_db(db, "wal")
    reader = connect(db, ext=False)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM sqlite_schema").fetchone() == (1,)
    con = connect(db, timeout=0.2)
    assert con.execute("SELECT migrate_apply(?)", (folder,)).fetchall() == [(len(TEN),)]
    assert reader.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'users'").fetchone() == (0,)
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM migrate_history").fetchone() == (len(TEN),)
    reader.close()
    con.close()


# ---- runner ----

def main():
    run = [f for f in TESTS if FILTER in f.__name__]
    failed = todo = 0
    started = time.monotonic()
    print("# sqlite_stress: %s, %d race rounds per mode, %d random kills per mode, seed %d, %s"
          % ("long" if LONG else "short", ROUNDS, KILLS, SEED, EXT))
    for i, f in enumerate(run, 1):
        t = tempfile.mkdtemp(prefix="mig_stress_")
        t0 = time.monotonic()
        reason = getattr(f, "todo", None)
        try:
            note = f(t)
            line = "ok %d - stress: %s" % (i, f.__name__)
            if reason:
                line += " # TODO %s (passes now: remove the mark)" % reason
            print(line)
            if note:
                print("#   %s (%.1f s)" % (note, time.monotonic() - t0))
        except Exception:
            if reason:
                todo += 1
                print("not ok %d - stress: %s # TODO %s" % (i, f.__name__, reason))
            else:
                failed += 1
                print("not ok %d - stress: %s" % (i, f.__name__))
            for ln in traceback.format_exc().splitlines()[-12:]:
                print("#   " + ln)
        finally:
            shutil.rmtree(t, ignore_errors=True)
        sys.stdout.flush()
    print("1..%d" % len(run))
    print("stress: %d passed, %d failed, %d todo, %.1f s" % (len(run) - failed - todo, failed, todo,
                                                           time.monotonic() - started))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
