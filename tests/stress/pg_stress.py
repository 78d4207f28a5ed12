#!/usr/bin/python3
"""Reliability suite of the PostgreSQL extension (issue 7), against a real
server, through psql and (for the race) a wire-protocol client of its own.
Prints TAP.  Run by
tests/stress/pg_stress.sh, which starts the cluster (PGHOST, PGPORT, PGUSER;
PG_STRESS_TMP a scratch folder the server can read, PG_STRESS_LOG its log,
PG_STRESS_BIN its binaries).

    tests/stress/pg_stress.sh [--short | --long] [--rounds N] [--kills N]
        [--seed S] [name-filter]

- race: 64 sessions connect to a fresh database, then block on
  pg_advisory_lock_shared(barrier) while the test holds that key
  exclusively; once pg_locks shows all 64 waiting, the test unlocks and they
  all call SELECT migrate_apply (function mode) or CALL migrate_run
  (procedure mode, counted from its NOTICE) at once.  Each round: exactly
  one caller applied every file, the 63 others 0, no errors or warnings, the
  history holds one row per file (procedure mode: written in as many
  transactions), schema and rows equal the reference's, and no migration
  lock is left in pg_locks once the callers have their results (checked
  while they are still connected).  The sessions are held by this one
  process through a small client of the wire protocol (Conn, below): a
  psql process costs 40-80 ms of CPU to start on this machine, 4-5 s a
  round for 64, and a caller's call then follows its barrier lock with no
  client round trip.  --long also races 64 psql processes (PSQL_ROUNDS).
- crash at every crash point: the hidden setting migrate.crash_at = k makes
  the backend SIGKILL itself at the k-th crash point of a call (before each
  migration statement, each history write and, in procedure mode, each
  commit); k runs from 1 until the call completes, and the number of points
  must be the one the folder implies.  After each kill (the postmaster
  restarts through crash recovery; the test waits for its "ready to accept
  connections" and pg_isready): function mode leaves the database exactly
  as before, procedure mode exactly the migrations committed before the
  point (schema, rows and history equal a reference built with target=);
  no migration lock in pg_locks; the next call completes and leaves
  everything applied.  Also for migrate_down in function mode.
- crash at every crash point of a migration outside a transaction (CALL
  migrate_run of a folder whose middle migration holds CREATE/DROP INDEX
  CONCURRENTLY and VACUUM among ordinary statements, run by a background
  worker): the worker's points too (before each statement, before each of
  its commits); after each kill, a statement that runs in a transaction
  and its progress row are both there or neither (its rows counted against
  migrate_progress.statements_done), and the next call completes to the
  reference -- no statement ran twice, none was skipped, also when the kill
  fell between a concurrent index build or drop and its progress row.
- crash at random moments: kill -9 of the backend (its pid from
  pg_stat_activity) after a random delay during an apply of a heavier
  folder, both modes; the same checks.
- cancel and timeouts: statement_timeout, pg_cancel_backend and
  pg_terminate_backend while migration 3 runs a long INSERT (the signal is
  sent once pg_stat_activity shows that migration running, not after a
  sleep): 57014 / 57P01 naming migration 3, the database as before
  (function mode) or with migrations 1 and 2 (procedure mode), no lock left,
  and the next call (on the same session after a cancel) completes.  Also
  pg_cancel_backend at random moments of a heavier apply, both modes: the
  cancelled session itself holds no migration lock, the state is before /
  a prefix of committed migrations, and its next call completes.

--short (make check, the default; about 60 s here): 3 race rounds per mode,
every crash point once per mode, 2 random kills and 1 random cancel per
mode, every timeout and signal.  --long (make stress): 100 race rounds per
mode and 10 more with psql processes, every crash point also of
migrate_down, 40 random kills and 20 random cancels per mode.
--rounds and --kills override the counts.
"""
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
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
FILTER = _pos[0] if _pos else ""
LONG = _opts["mode"] == "long"
ROUNDS = _opts["rounds"] if _opts["rounds"] is not None else (100 if LONG else 3)
KILLS = _opts["kills"] if _opts["kills"] is not None else (40 if LONG else 2)
SEED = _opts["seed"]
CANCELS = max(1, KILLS // 2)   # random cancels per mode
PSQL_ROUNDS = 10      # --long: rounds with a psql process per caller
CALLERS = 64
MODES = ("function", "procedure")

TMP = os.environ["PG_STRESS_TMP"]
SERVER_LOG = os.environ["PG_STRESS_LOG"]
PGBIN = os.environ["PG_STRESS_BIN"]
PSQL = os.path.join(PGBIN, "psql")           # not Debian's Perl wrapper: 64 start at once
PG_ISREADY = os.path.join(PGBIN, "pg_isready")

BARRIER_KEY = 4242424               # the test's own advisory key (classid 0)
# MIGRATE_LOCK_KEY of pg_ext/pg_host.h, as pg_locks shows it
MIG_LOCK = ("locktype = 'advisory' AND classid = 7170407 AND objid = 1918989413"
            " AND objsubid = 1")

TESTS = []
SPENT = {}          # seconds spent per phase, for the notes


class spent:
    def __init__(self, what):
        self.what = what

    def __enter__(self):
        self.t0 = time.monotonic()

    def __exit__(self, *exc):
        SPENT[self.what] = SPENT.get(self.what, 0.0) + time.monotonic() - self.t0


def test(fn):
    TESTS.append(fn)
    return fn


# ---- psql ----

def env_for(notices=False, app=None):
    env = dict(os.environ)
    env["PGOPTIONS"] = "-c client_min_messages=%s" % ("notice" if notices else "warning")
    env["PGAPPNAME"] = app or "pgstress"
    return env


def psql_args(db, stop=True):
    args = [PSQL, "-X", "-q", "-At", "-v", "VERBOSITY=verbose", "-d", db]
    if stop:
        args[1:1] = ["-v", "ON_ERROR_STOP=1"]
    return args


def run(db, *sqls, stop=True, notices=False, timeout=300, app=None, stdin=None):
    """Runs each sql as its own -c (psql sends them one by one); returns
    (exit code, stdout, stderr)."""
    args = psql_args(db, stop)
    for s in sqls:
        args += ["-c", s]
    p = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout,
                       env=env_for(notices, app))
    return p.returncode, p.stdout, p.stderr


def q(db, *sqls, **kw):
    """Runs sqls, which must succeed; their output, stripped."""
    rc, out, err = run(db, *sqls, **kw)
    if rc != 0:
        raise AssertionError("psql -d %s %r failed (%d): %s" % (db, sqls, rc, err.strip()))
    return out.strip()


def mig_locks():
    """The migration locks in pg_locks, in any database."""
    return q("postgres", "SELECT count(*) FROM pg_locks WHERE " + MIG_LOCK)


# ---- the server log: crash and recovery ----

class Log:
    def __init__(self):
        self.offset = os.path.getsize(SERVER_LOG)

    def new(self):
        with open(SERVER_LOG, errors="replace") as f:
            f.seek(self.offset)
            return f.read()


READY = "database system is ready to accept connections"


def wait_recovered(log, pid=None, timeout=90):
    """After a backend was SIGKILLed: waits for the postmaster to report its
    death and the end of crash recovery, then for pg_isready."""
    with spent("recovery"):
        _wait_recovered(log, pid, timeout)


def _wait_recovered(log, pid, timeout):
    deadline = time.monotonic() + timeout
    killed = re.compile(r"(?:server process|background worker \"[^\"]*\") \(PID %s\) was terminated by signal 9"
                        % (pid or r"\d+"))
    while True:
        text = log.new()
        m = killed.search(text)
        if m and READY in text[m.end():]:
            break
        if time.monotonic() > deadline:
            raise AssertionError("no crash recovery after the kill within %d s; log: %s"
                                 % (timeout, text[-600:]))
        time.sleep(0.02)
    while subprocess.run([PG_ISREADY, "-q"], env=env_for()).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError("pg_isready: the server does not accept connections")
        time.sleep(0.02)


# ---- migration folders ----

def write_folder(path, migrations):
    """migrations: (name, up, down); golang-migrate layout, versions 1..n."""
    os.makedirs(path)
    for i, (name, up, down) in enumerate(migrations, 1):
        with open(os.path.join(path, "%03d_%s.up.sql" % (i, name)), "w") as f:
            f.write(up)
        if down is not None:
            with open(os.path.join(path, "%03d_%s.down.sql" % (i, name)), "w") as f:
                f.write(down)
    return path


# Five migrations, twelve statements: tables, data, an index, ALTER TABLE,
# a PL/pgSQL function with semicolons in its body, a trigger, a view, CREATE
# TABLE AS.  Explicit ids, no serials: a sequence advanced by a call that
# was killed stays advanced, which would make rows differ from a reference.
MULTI = [
    ("users",
     "CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);\n"
     "INSERT INTO users VALUES (1, 'ada'), (2, 'grace');\n",
     "DROP TABLE users;\n"),
    ("posts",
     "CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users (id), body text);\n"
     "CREATE INDEX posts_user ON posts (user_id);\n",
     "DROP TABLE posts;\n"),
    ("email",
     "ALTER TABLE users ADD COLUMN email text;\n"
     "UPDATE users SET email = name || '@example.com';\n",
     "ALTER TABLE users DROP COLUMN email;\n"),
    ("audit",
     "CREATE TABLE audit (msg text);\n"
     "CREATE FUNCTION posts_audit() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  INSERT INTO audit VALUES ('post ' || NEW.id);\n"
     "  RETURN NEW;\n"
     "END $$;\n"
     "CREATE TRIGGER posts_audit AFTER INSERT ON posts\n"
     "  FOR EACH ROW EXECUTE FUNCTION posts_audit();\n",
     "DROP TRIGGER posts_audit ON posts;\nDROP FUNCTION posts_audit();\nDROP TABLE audit;\n"),
    ("seed",
     "INSERT INTO posts VALUES (1, 1, 'hello; with a semicolon'), (2, 2, 'second');\n"
     "CREATE VIEW post_counts AS SELECT u.name, count(p.id) AS n\n"
     "  FROM users u LEFT JOIN posts p ON p.user_id = u.id GROUP BY u.name;\n"
     "CREATE TABLE settings AS SELECT 'schema'::text AS k, '5'::text AS v;\n",
     "DROP TABLE settings;\nDROP VIEW post_counts;\nDELETE FROM audit;\nDELETE FROM posts;\n"),
]
MULTI_UP_STMTS = [2, 2, 2, 3, 3]
MULTI_DOWN_STMTS = [1, 1, 1, 3, 4]

HEAVY_N = 12
HEAVY_ROWS = 20000


def heavy_migrations():
    return [("heavy%d" % i,
             "CREATE TABLE h%d AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, %d) g;\n"
             "CREATE INDEX h%d_v ON h%d (v);\n"
             "ALTER TABLE h%d ADD PRIMARY KEY (id);\n" % (i, HEAVY_ROWS, i, i, i),
             "DROP TABLE h%d;\n" % i) for i in range(1, HEAVY_N + 1)]


# The cancel folder: two small migrations, then a long one.  Its first
# statement marks the session in pg_stat_activity (application_name, local
# to the migration's transaction), so the test signals while it runs; the
# INSERT's row count comes from the session setting pgstress.rows: a billion
# while a test signals it (it would run for many minutes), a few thousand for
# the call that must complete afterwards.
LONG_MARK = "pgstress: migration 3 running"
CANCEL = [
    ("a", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\n", "DROP TABLE a;\n"),
    ("b", "CREATE TABLE b (x int);\nINSERT INTO b VALUES (2);\n", "DROP TABLE b;\n"),
    ("big",
     "SELECT pg_catalog.set_config('application_name', '%s', true);\n"
     "CREATE TABLE big (i bigint, pad text);\n"
     "INSERT INTO big SELECT g, md5(g::text)\n"
     "  FROM generate_series(1, coalesce(nullif(current_setting('pgstress.rows', true), ''), '5000')::bigint) g;\n"
     % LONG_MARK,
     "DROP TABLE big;\n"),
]
CANCEL_LINE = 3        # the INSERT's line in 003_big.up.sql
ENDLESS = 1000000000


# ---- databases ----

TEMPLATE = "pgstress_template"

# The whole logical content of a database's public schema: relations with
# their columns, the rows of tables and views (count and md5), functions,
# triggers, and the history without times, ranks and file identities (a
# killed call may leave the rank sequence advanced).  Sequences' values are
# left out for the same reason, and so are the rows of migrate_verified,
# which any call that finds nothing to do may write (the no-op shortcut).
FINGERPRINT = r"""
CREATE SCHEMA pgstress;
CREATE FUNCTION pgstress.fingerprint() RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
  r record;
  n text;
  out text := '';
BEGIN
  FOR r IN SELECT c.oid, c.relname::text AS relname, c.relkind::text AS relkind FROM pg_class c
             JOIN pg_namespace s ON s.oid = c.relnamespace
            WHERE s.nspname = 'public' ORDER BY c.relname LOOP
    out := out || r.relkind || ' ' || r.relname || ' (' || coalesce((
      SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                        || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY a.attnum)
        FROM pg_attribute a WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')';
    IF r.relkind IN ('r', 'v', 'm') AND r.relname NOT IN ('migrate_history', 'migrate_verified', 'migrate_calls') THEN
      EXECUTE format('SELECT count(*) || '' rows '' || coalesce(sum(hashtext(t::text)::numeric), 0) FROM public.%I t', r.relname) INTO n;
      out := out || ' ' || n;
    END IF;
    out := out || E'\n';
  END LOOP;
  out := out || 'history: ' || coalesce((SELECT string_agg(version || ' ' || name || ' ' || checksum
           || ' ' || md5(up_sql) || ' ' || coalesce(md5(down_sql), '-'), ', ' ORDER BY installed_rank)
           FROM public.migrate_history), '') || E'\n';
  out := out || 'functions: ' || coalesce((SELECT string_agg(p.proname || ' ' || md5(p.prosrc), ', ' ORDER BY p.proname)
           FROM pg_proc p JOIN pg_namespace s ON s.oid = p.pronamespace
          WHERE s.nspname = 'public' AND NOT EXISTS (SELECT FROM pg_depend d
                WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')), '') || E'\n';
  out := out || 'triggers: ' || coalesce((SELECT string_agg(tgname, ', ' ORDER BY tgname)
           FROM pg_trigger WHERE NOT tgisinternal), '') || ' .';
  RETURN out;
END $f$;
"""


def make_template():
    q("postgres", "DROP DATABASE IF EXISTS %s" % TEMPLATE, "CREATE DATABASE %s" % TEMPLATE)
    q(TEMPLATE, "CREATE EXTENSION migrate",
      "CREATE TABLE keep (x text)", "INSERT INTO keep VALUES ('mine before')")
    q(TEMPLATE, FINGERPRINT)
    q("postgres", "ALTER DATABASE %s WITH ALLOW_CONNECTIONS false" % TEMPLATE)


def new_db(name):
    with spent("new_db"):
        q("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name,
          "CREATE DATABASE %s TEMPLATE %s" % (name, TEMPLATE))


def drop_db(name):
    q("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def fingerprint(db):
    rc, out, err = run(db, "SELECT pgstress.fingerprint()")
    assert rc == 0, err
    return out[:-1] if out.endswith("\n") else out


def call_sql(mode, folder, options=None):
    opt = ", '%s'" % options if options else ""
    if mode == "function":
        return "SELECT migrate_apply('%s'%s)" % (folder, opt)
    return "CALL migrate_run('%s'%s)" % (folder, opt)


APPLIED_RE = re.compile(r"NOTICE:\s+(?:00000: )?applied (\d+) migrations?\s*$", re.M)


def applied_count(mode, rc, out, err):
    """What a call that succeeded says it applied: migrate_apply's result, or
    migrate_run's closing NOTICE."""
    if mode == "function":
        return int(out.strip().splitlines()[-1])
    m = APPLIED_RE.findall(err)
    if len(m) != 1:
        raise AssertionError("no single 'applied N migrations' notice: %r" % err[-300:])
    return int(m[0])


def apply(db, mode, folder, options=None):
    rc, out, err = run(db, call_sql(mode, folder, options), notices=mode == "procedure")
    if rc != 0:
        raise AssertionError("%s: %s" % (call_sql(mode, folder, options), err.strip()[-500:]))
    return applied_count(mode, rc, out, err)


def references(folder, n):
    """ref[m]: the fingerprint with the first m migrations applied, built
    with target=m one after the other."""
    db = "pgstress_ref"
    new_db(db)
    parts = ["SELECT pgstress.fingerprint()"]
    for m in range(1, n + 1):
        parts += [call_sql("function", folder, "target=%d" % m), "SELECT pgstress.fingerprint()"]
    with spent("references"):
        outs, _ = script(db, parts)
    drop_db(db)
    assert outs[1::2] == ["1"] * n, outs[1::2]
    refs = outs[0::2]
    assert len(set(refs)) == n + 1, "two prefixes of the folder look alike"
    return refs


def which(state, refs):
    for m, r in enumerate(refs):
        if state == r:
            return m
    return None


def brief(state):
    lines = state.splitlines()
    rels = [ln.split(" (")[0] for ln in lines if ln[:2] in ("r ", "v ")]
    hist = [ln for ln in lines if ln.startswith("history: ")]
    return "relations %s; %s" % (rels, hist[0][:120] if hist else "no history line")


# ---- a wire-protocol client, for the race ----

class Conn:
    """One session over the server's Unix socket, speaking the frontend/
    backend protocol's simple query flow (trust authentication only): the
    race holds its 64 sessions in this one process, since starting a psql
    process costs 40-80 ms of CPU on this machine (64 of them: 4-5 s a
    round), and it sends the barrier's lock and the call together (two Query
    messages back to back), so every caller starts its call the moment the
    barrier opens, with no client round trip in between."""

    def __init__(self, db, app, wait=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.path.join(os.environ["PGHOST"], ".s.PGSQL.%s" % os.environ["PGPORT"]))
        self.buf = b""
        params = {"user": os.environ["PGUSER"], "database": db, "application_name": app,
                  "client_min_messages": "notice"}
        body = struct.pack("!i", 196608) + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        if wait:
            self.started()

    def started(self):
        """Waits for the session to be ready (Conn(..., wait=False) lets a
        caller start many backends at once)."""
        res = self.result()
        if res["errors"]:
            raise AssertionError("connect: %s" % res["errors"])

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("the server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, sql):
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(data) + 4) + data)

    @staticmethod
    def _fields(body):
        out = {}
        for part in body.split(b"\0"):
            if part:
                out[chr(part[0])] = part[1:].decode(errors="replace")
        return out

    def result(self):
        """Reads one query's messages up to ReadyForQuery: its rows (first
        column, as text), errors and notices (dicts of the protocol's
        fields: C the SQLSTATE, M the message...)."""
        res = {"rows": [], "errors": [], "notices": []}
        while True:
            kind = self._read(1)
            (n,) = struct.unpack("!i", self._read(4))
            body = self._read(n - 4)
            if kind == b"R":
                (code,) = struct.unpack("!i", body[:4])
                if code != 0:
                    raise AssertionError("authentication method %d is not supported" % code)
            elif kind == b"D":
                (ncols,) = struct.unpack("!h", body[:2])
                (ln,) = struct.unpack("!i", body[2:6])
                res["rows"].append(None if ln < 0 else body[6:6 + ln].decode())
            elif kind == b"E":
                res["errors"].append(self._fields(body))
            elif kind == b"N":
                res["notices"].append(self._fields(body))
            elif kind == b"Z":
                return res

    def query(self, sql):
        self.send(sql)
        res = self.result()
        if res["errors"]:
            raise AssertionError("%s: %s" % (sql, res["errors"]))
        return res["rows"]

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        self.sock.close()


# ---- the race ----

BARRIER_WAITING = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0"
                   " AND objid = %d AND objsubid = 1 AND NOT granted AND mode = 'ShareLock'"
                   " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                   % BARRIER_KEY)


def open_barrier(where, holder, alive):
    """Waits until every racer queues behind the barrier key, then lets
    them all through at once."""
    deadline = time.monotonic() + 120
    while True:
        waiting = int(holder.query(BARRIER_WAITING)[0])
        if waiting == CALLERS:
            break
        alive()
        assert time.monotonic() < deadline, "%s: only %d racers at the barrier" % (where, waiting)
        time.sleep(0.005)
    holder.query("SELECT pg_advisory_unlock(%d)" % BARRIER_KEY)


def race_round_sockets(db, call, where):
    """64 sessions of this process; returns per caller (count, errors)."""
    holder = Conn(db, "pgstress-holder")
    conns = []
    try:
        holder.query("SELECT pg_advisory_lock(%d)" % BARRIER_KEY)
        for _ in range(CALLERS):                # the backends start in parallel
            conns.append(Conn(db, "pgstress-racer", wait=False))
        for c in conns:
            c.started()
            c.send("SELECT pg_advisory_lock_shared(%d)" % BARRIER_KEY)
            c.send(call)
        open_barrier(where, holder, lambda: None)
        results = []
        for c in conns:
            first, second = c.result(), c.result()
            errors = first["errors"] + second["errors"] + [
                n for n in first["notices"] + second["notices"] if n.get("S") not in ("NOTICE", "INFO")]
            if call.startswith("CALL"):
                counts = [m.group(1) for m in (re.match(r"applied (\d+) migrations?$", n.get("M", ""))
                                               for n in second["notices"]) if m]
                count = int(counts[0]) if len(counts) == 1 else None
            else:
                count = int(second["rows"][0]) if second["rows"] else None
            results.append((count, errors))
        # right after the results, before any racer has disconnected
        left = holder.query("SELECT count(*) FROM pg_locks WHERE " + MIG_LOCK)[0]
    finally:
        for c in conns:
            c.close()
        holder.close()
    return results, left


def race_round_psql(db, call, where):
    """64 psql processes; returns per caller (count, errors)."""
    mode = "procedure" if call.startswith("CALL") else "function"
    holder = Conn(db, "pgstress-holder")
    procs = []
    try:
        holder.query("SELECT pg_advisory_lock(%d)" % BARRIER_KEY)
        env = env_for(notices=mode == "procedure", app="pgstress-racer")
        for _ in range(CALLERS):
            procs.append(subprocess.Popen(
                psql_args(db) + ["-c", "SELECT pg_advisory_lock_shared(%d)" % BARRIER_KEY, "-c", call],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))

        def alive():
            dead = [p.returncode for p in procs if p.poll() is not None]
            assert not dead, "%s: %d racers exited before the barrier" % (where, len(dead))
        open_barrier(where, holder, alive)
        results = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            errors = [ln for ln in err.splitlines() if re.match(r"(ERROR|FATAL|WARNING|psql:)", ln)]
            if p.returncode != 0:
                errors.append("psql exit %d" % p.returncode)
            try:
                count = applied_count(mode, p.returncode, out, err)
            except (AssertionError, ValueError, IndexError):
                count = None
            results.append((count, errors))
        left = holder.query("SELECT count(*) FROM pg_locks WHERE " + MIG_LOCK)[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        holder.close()
    return results, left


def race(t, mode, rounds=ROUNDS, clients=race_round_sockets):
    folder = write_folder(os.path.join(t, "multi"), MULTI)
    n = len(MULTI)
    refs = references(folder, n)
    call = call_sql(mode, folder)
    for r in range(rounds):
        where = "%s mode, round %d" % (mode, r + 1)
        db = "pgstress_race"
        new_db(db)
        with spent("the rounds' calls"):
            results, left = clients(db, call, where)
        errors = [e for _, e in results if e]
        assert not errors, "%s: %d callers failed: %s" % (where, len(errors), errors[:3])
        counts = sorted(c if c is not None else -1 for c, _ in results)
        assert counts == [0] * (CALLERS - 1) + [n], "%s: counts %s" % (where, counts)
        assert left == "0", "%s: %s migration locks left in pg_locks" % (where, left)
        outs, _ = script(db, ["SELECT count(*), count(DISTINCT version),"
                              " string_agg(version, ',' ORDER BY installed_rank),"
                              " count(DISTINCT xmin::text) FROM migrate_history",
                              "SELECT pgstress.fingerprint()"])
        hist, state = outs
        # procedure mode commits each migration on its own
        txns = n if mode == "procedure" else 1
        assert hist == "%d|%d|%s|%d" % (n, n, ",".join(str(i) for i in range(1, n + 1)), txns), \
            "%s: history (rows, versions, order, transactions) %s" % (where, hist)
        assert state == refs[n], "%s: schema or rows differ: %s" % (where, brief(state))
        drop_db(db)
    return "%d rounds of %d callers released together%s" % (
        rounds, CALLERS, ", 64 psql processes" if clients is race_round_psql else "")


@test
def race_64_callers_function_mode(t):
    return race(t, "function")


@test
def race_64_callers_procedure_mode(t):
    return race(t, "procedure")


if LONG:
    @test
    def race_64_psql_processes_function_mode(t):
        """--long only: the same race with a psql process per caller."""
        return race(t, "function", rounds=PSQL_ROUNDS, clients=race_round_psql)

    @test
    def race_64_psql_processes_procedure_mode(t):
        return race(t, "procedure", rounds=PSQL_ROUNDS, clients=race_round_psql)


# ---- kills at every crash point ----

def crash_points(mode, up=True):
    """Kinds of the crash points of a call over MULTI, in order: 's' a
    statement, 'h' a history write, 'c' a commit (procedure mode)."""
    stmts = MULTI_UP_STMTS if up else list(reversed(MULTI_DOWN_STMTS))
    pts = ["c"] if mode == "procedure" else []            # after taking the lock
    for k in stmts:
        pts += ["s"] * k + ["h"] + (["c"] if mode == "procedure" else [])
    if mode == "procedure":
        pts.append("c")                                    # the closing commit
    return pts


def killed_call(db, sql, crash_at, notices=False):
    """Runs sql with migrate.crash_at set; returns (rc, out, err, log)."""
    log = Log()
    rc, out, err = run(db, "SET migrate.crash_at = %d" % crash_at, sql, notices=notices)
    return rc, out, err, log


def assert_killed(where, rc, err, log, k):
    assert rc != 0, "%s: the call was not killed" % where
    assert "server closed the connection unexpectedly" in err or "terminating connection" in err, \
        "%s: not a lost connection: %s" % (where, err.strip()[-300:])
    wait_recovered(log)
    assert "migrate.crash_at: killing the backend at crash point %d" % k in log.new(), \
        "%s: the server log does not show the hook's kill" % where


CUT = "-- 8< --"


def script(db, parts, notices=False):
    """Runs the SQL texts of parts in one psql session (stopping at the first
    error), each part's output apart; returns (outputs, stderr)."""
    text = "".join("%s\n\\echo '%s'\n" % (sql.rstrip().rstrip(";") + ";", CUT) for sql in parts)
    rc, out, err = run(db, stdin=text, notices=notices)
    if rc != 0:
        raise AssertionError("psql -d %s failed (%d): %s" % (db, rc, err.strip()[-500:]))
    outs = out.split(CUT + "\n")
    assert len(outs) == len(parts) + 1 and outs[-1] == "", out[-300:]
    return [o[:-1] if o.endswith("\n") else o for o in outs[:-1]], err


AFTER_CRASH = ["SELECT pgstress.fingerprint()",
               "SELECT count(*) FROM migrate_progress",
               "SELECT count(*) FROM pg_locks WHERE " + MIG_LOCK]


def check_after_crash(where, db, refs, want, nxt, nxt_mode, undo):
    """One session: the state the kill left (refs[want]), no progress row,
    no migration lock; then the next call nxt must complete (to refs[-1]
    for an apply, refs[0] for a migrate_down), and undo brings the database
    back to the state before the killed call for the next round."""
    outs, err = script(db, AFTER_CRASH + [nxt, "SELECT pgstress.fingerprint()", undo,
                                          "SELECT pgstress.fingerprint()"],
                       notices=nxt_mode == "procedure")
    state, progress, locks, nxt_out, final, _, undone = outs
    m = which(state, refs)
    assert m is not None, "%s: not a prefix of the folder: %s" % (where, brief(state))
    assert m == want, "%s: %d migrations there, %d expected" % (where, m, want)
    assert progress == "0", "%s: %s rows in migrate_progress" % (where, progress)
    assert locks == "0", "%s: %s migration locks in pg_locks" % (where, locks)
    return m, nxt_out, err, final, undone


def boundaries(t, mode):
    folder = write_folder(os.path.join(t, "multi"), MULTI)
    n = len(MULTI)
    refs = references(folder, n)
    pts = crash_points(mode)
    db = "pgstress_crash"
    call = call_sql(mode, folder)
    new_db(db)
    outcomes = {}
    k = 0
    while True:
        k += 1
        where = "%s mode, crash point %d" % (mode, k)
        assert k <= len(pts) + 1, "%s: still killed past the %d points the folder has" % (where, len(pts))
        rc, out, err, log = killed_call(db, call, k, notices=mode == "procedure")
        if rc == 0:
            # past the last point: the call completed
            assert k == len(pts) + 1, "%s: the call completed after only %d of %d crash points" \
                % (where, k - 1, len(pts))
            assert applied_count(mode, rc, out, err) == n
            assert fingerprint(db) == refs[n]
            break
        assert_killed(where, rc, err, log, k)
        # committed before the point: the commits passed, but the lock's
        want = max(0, pts[:k - 1].count("c") - 1) if mode == "procedure" else 0
        where += " (%s)" % {"s": "a statement", "h": "a history write", "c": "a commit"}[pts[k - 1]]
        m, nxt_out, nxt_err, final, undone = check_after_crash(where, db, refs, want, call, mode,
                                                               "SELECT migrate_down(%d)" % n)
        got = applied_count(mode, 0, nxt_out, nxt_err)
        assert got == n - m, "%s: the next call applied %d, not %d" % (where, got, n - m)
        assert final == refs[n], "%s: after the next call: %s" % (where, brief(final))
        assert undone == refs[0], "%s: migrate_down did not bring it back" % where
        outcomes[m] = outcomes.get(m, 0) + 1
    drop_db(db)
    kinds = {c: pts.count(c) for c in "shc"}
    return "%d crash points (%d statements, %d history writes, %d commits); kills left %s" % (
        len(pts), kinds["s"], kinds["h"], kinds["c"],
        ", ".join("%d migrations %d times" % (m, c) for m, c in sorted(outcomes.items())))


@test
def kill_at_every_crash_point_function_mode(t):
    return boundaries(t, "function")


@test
def kill_at_every_crash_point_procedure_mode(t):
    return boundaries(t, "procedure")


@test
def kill_check_catches_a_call_that_is_not_atomic(t):
    """The checks above are not vacuous: procedure mode killed right after
    committing migration 1 is caught by the function-mode check (entirely
    before), and the state is recognised as exactly one migration."""
    folder = write_folder(os.path.join(t, "multi"), MULTI)
    refs = references(folder, len(MULTI))
    pts = crash_points("procedure")
    k = [i for i, c in enumerate(pts) if c == "c"][1] + 2     # after the commit of migration 1
    db = "pgstress_crash"
    new_db(db)
    rc, out, err, log = killed_call(db, call_sql("procedure", folder), k, notices=True)
    assert_killed("procedure mode, crash point %d" % k, rc, err, log, k)
    try:
        check_after_crash("procedure mode, crash point %d" % k, db, refs, 0, "SELECT 1", "function",
                          "SELECT 1")
    except AssertionError as e:
        assert "1 migrations there, 0 expected" in str(e), str(e)
        drop_db(db)
        return "caught: %s" % str(e)
    raise AssertionError("a kill between two commits went unnoticed")


# A folder whose middle migration runs outside a transaction (it holds
# CREATE INDEX CONCURRENTLY): statements that run in a transaction (t) and
# ones that commit by themselves (a), in the order OUTSIDE_KINDS says.  Rows
# of olog count the transactional INSERTs that ran.
OUTSIDE = [
    ("base",
     "CREATE TABLE o (id int PRIMARY KEY, v int);\nCREATE TABLE olog (n int);\n",
     "DROP TABLE olog;\nDROP TABLE o;\n"),
    ("build",
     "INSERT INTO olog VALUES (1);\n"
     "INSERT INTO o SELECT g, g % 7 FROM generate_series(1, 2000) g;\n"
     "CREATE INDEX CONCURRENTLY o_v ON o (v);\n"
     "INSERT INTO olog VALUES (2);\n"
     "COMMENT ON TABLE o IS 'built';\n"
     "VACUUM (ANALYZE) o;\n"
     "DROP INDEX CONCURRENTLY o_v;\n"
     "CREATE UNIQUE INDEX CONCURRENTLY o_id_v ON o (id, v);\n"
     "INSERT INTO olog VALUES (3);\n",
     "DROP INDEX CONCURRENTLY o_id_v;\nDELETE FROM olog;\nDELETE FROM o;\nCOMMENT ON TABLE o IS NULL;\n"),
    ("after", "INSERT INTO olog VALUES (4);\n", "DELETE FROM olog WHERE n = 4;\n"),
]
OUTSIDE_KINDS = "ttattaaat"      # migration 2, statement by statement
OUTSIDE_OLOG = {1: 1, 4: 2, 9: 3}  # statement -> rows of olog once it ran


def outside_points():
    """The crash points of CALL migrate_run over OUTSIDE, in order, as
    (kind, statement): kinds 'c' a commit of the caller, 's' a statement it
    runs, 'h' a history write; in the worker of migration 2, 'S' a
    statement, 'M' the commit of the mark before one that commits by
    itself, 'W' the commit of a progress row (with its statement, for one
    that runs in a transaction); statement is the one of migration 2 (from
    1) a worker's point belongs to, else 0."""
    pts = [("c", 0)] + [("s", 0)] * 2 + [("h", 0), ("c", 0)]
    for i, k in enumerate(OUTSIDE_KINDS, 1):
        pts += [("M", i)] * (k == "a") + [("S", i), ("W", i)]
    pts += [("h", 0), ("c", 0), ("s", 0), ("h", 0), ("c", 0), ("c", 0)]
    return pts


@test
def kill_at_every_crash_point_outside_a_transaction(t):
    folder = write_folder(os.path.join(t, "outside"), OUTSIDE)
    n = len(OUTSIDE)
    db = "pgstress_outside"
    new_db(db)
    parts = ["SELECT pgstress.fingerprint()"]
    for m in range(1, n + 1):
        parts += [call_sql("procedure", folder, "target=%d" % m), "SELECT pgstress.fingerprint()"]
    with spent("references"):
        outs, _ = script(db, parts, notices=True)
    refs = outs[0::2]
    assert len(set(refs)) == n + 1, "two prefixes of the folder look alike"
    drop_db(db)
    pts = outside_points()
    call = call_sql("procedure", folder)
    new_db(db)
    k = 0
    between = 0
    while True:
        k += 1
        where = "crash point %d" % k
        assert k <= len(pts) + 1, "%s: still killed past the %d points the folder has" % (where, len(pts))
        rc, out, err, log = killed_call(db, call, k, notices=True)
        if rc == 0:
            assert k == len(pts) + 1, "%s: the call completed after only %d of %d crash points" \
                % (where, k - 1, len(pts))
            assert applied_count("procedure", rc, out, err) == n
            assert fingerprint(db) == refs[n]
            break
        assert_killed(where, rc, err, log, k)
        kind, stmt = pts[k - 1]
        where += " (%s)" % {"c": "a commit", "s": "a statement", "h": "a history write",
                           "S": "statement %d of migration 2" % stmt,
                           "M": "the mark before statement %d of migration 2" % stmt,
                           "W": "the progress of statement %d of migration 2" % stmt}[kind]
        before = [p[0] for p in pts[:k - 1]]
        committed = max(0, before.count("c") - 1)
        progressed = before.count("W") if committed == 1 else 0
        outs, _ = script(db, ["SELECT pgstress.fingerprint()",
                              "SELECT coalesce((SELECT string_agg(statements_done::text, ',')"
                              " FROM migrate_progress), 'none')",
                              "SELECT CASE WHEN to_regclass('olog') IS NOT NULL THEN (xpath('/row/c/text()',"
                              " query_to_xml('SELECT (SELECT count(*) FROM olog) || '' '' ||"
                              " (SELECT count(*) FROM o) AS c', false, true, '')))[1]::text END",
                              "SELECT count(*) FROM pg_locks WHERE " + MIG_LOCK,
                              call, "SELECT pgstress.fingerprint()",
                              "CALL migrate_run_down(%d)" % n, "SELECT pgstress.fingerprint()"],
                         notices=True)
        state, progress, rows, locks, _, final, _, undone = outs
        assert locks == "0", "%s: %s migration locks in pg_locks" % (where, locks)
        if progressed == 0:
            # nothing half way: exactly the migrations committed
            assert which(state, refs) == committed, "%s: %s, not the first %d migrations" % (
                where, brief(state), committed)
        else:
            # migration 2 stopped half way: its progress row says how far,
            # and the rows of each statement that runs in a transaction are
            # there exactly when the row counts it
            assert progress == str(progressed), "%s: progress %s, %d statements committed" % (
                where, progress, progressed)
            want = "%d %d" % (max([v for i, v in OUTSIDE_OLOG.items() if i <= progressed] or [0]),
                              2000 if progressed >= 2 else 0)
            assert rows == want, "%s: olog and o hold %s rows, %s with %d statements done" % (
                where, rows, want, progressed)
            if kind == "W" and OUTSIDE_KINDS[stmt - 1] == "a":
                between += 1
        assert final == refs[n], "%s: after the next call: %s" % (where, brief(final))
        assert undone == refs[0], "%s: migrate_run_down did not bring it back: %s" % (where, brief(undone))
    drop_db(db)
    kinds = [p[0] for p in pts]
    return ("%d crash points, %d of them in the worker (%d statements, %d marks, %d progress commits); "
            "%d kills between a statement that commits by itself and its progress, each resumed to the end"
            % (len(pts), sum(kinds.count(c) for c in "SMW"), kinds.count("S"), kinds.count("M"),
               kinds.count("W"), between))


if LONG:
    @test
    def kill_at_every_crash_point_of_migrate_down(t):
        """--long only: migrate_down (function mode) keeps everything or
        rolls everything back."""
        folder = write_folder(os.path.join(t, "multi"), MULTI)
        n = len(MULTI)
        refs = references(folder, n)
        pts = crash_points("function", up=False)
        db = "pgstress_crash"
        new_db(db)
        assert apply(db, "function", folder) == n
        k = 0
        while True:
            k += 1
            where = "migrate_down, crash point %d" % k
            assert k <= len(pts) + 1, "%s: still killed past the %d points" % (where, len(pts))
            rc, out, err, log = killed_call(db, "SELECT migrate_down(%d)" % n, k)
            if rc == 0:
                assert k == len(pts) + 1, "%s: completed after %d of %d points" % (where, k - 1, len(pts))
                assert out.strip() == str(n) and fingerprint(db) == refs[0]
                break
            assert_killed(where, rc, err, log, k)
            _, nxt_out, _, final, undone = check_after_crash(where, db, refs, n, "SELECT migrate_down(%d)" % n,
                                                     "function", call_sql("function", folder))
            assert nxt_out == str(n), "%s: the next migrate_down: %s" % (where, nxt_out)
            assert final == refs[0], "%s: the next call did not roll back everything" % where
            assert undone == refs[n], "%s: applying again did not bring it back" % where
        drop_db(db)
        return "%d crash points, each time all %d migrations still there" % (len(pts), n)


# ---- kills at random moments ----

def random_kills(t, mode):
    folder = write_folder(os.path.join(t, "heavy"), heavy_migrations())
    refs = references(folder, HEAVY_N)
    db = "pgstress_rand"
    call = call_sql(mode, folder)
    durations = []
    for _ in range(3 if LONG else 1):
        new_db(db)
        t0 = time.monotonic()
        assert apply(db, mode, folder) == HEAVY_N
        durations.append(time.monotonic() - t0)
    duration = min(durations)
    rng = random.Random(SEED * 1000 + (1 if mode == "function" else 2))
    inside = late = 0
    partial = {}
    while inside < KILLS:
        where = "%s mode, kill %d" % (mode, inside + late + 1)
        assert late <= 2 * KILLS + 2, "%d of %d kills came after the call had finished" % (late, inside + late)
        new_db(db)
        log = Log()
        p = subprocess.Popen(psql_args(db) + ["-c", call], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env_for(notices=mode == "procedure", app="pgstress-victim"))
        pid = None
        deadline = time.monotonic() + 30
        while pid is None:
            row = q("postgres", "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgstress-victim'"
                                " AND state = 'active' AND query LIKE '%migrate_%'")
            if row:
                pid = int(row)
            else:
                assert p.poll() is None, "%s: the call ended before it was seen running" % where
                assert time.monotonic() < deadline, "%s: the call never showed in pg_stat_activity" % where
                time.sleep(0.002)
        delay = rng.uniform(0.0, 0.9) * duration
        time.sleep(delay)      # the random moment itself, not a synchronisation
        try:
            os.kill(pid, signal.SIGKILL)
            sent = True
        except ProcessLookupError:
            sent = False
        out, err = p.communicate(timeout=120)
        where += " after %.0f ms (psql exit %d)" % (delay * 1000, p.returncode)
        if p.returncode != 0:
            assert sent, where
            assert "server closed the connection unexpectedly" in err, "%s: %s" % (where, err[-300:])
            wait_recovered(log, pid)
        elif sent:
            # the call had returned, its backend may have been exiting: a
            # crash restart follows if the kill found it still there
            deadline = time.monotonic() + 30
            while True:
                try:
                    os.kill(pid, 0)          # until the postmaster has reaped it
                except ProcessLookupError:
                    break
                assert time.monotonic() < deadline, "%s: the backend does not go away" % where
                time.sleep(0.01)
            time.sleep(0.2)
            if re.search(r"server process \(PID %d\) was terminated by signal 9" % pid, log.new()):
                wait_recovered(log, pid)
        state = fingerprint(db)
        m = which(state, refs)
        assert m is not None, "%s: not a prefix of the folder: %s" % (where, brief(state))
        assert mig_locks() == "0", "%s: a migration lock left" % where
        if p.returncode == 0:
            assert m == HEAVY_N, where
            late += 1
            continue
        if mode == "function":
            assert m == 0, "%s: function mode left %d of %d migrations" % (where, m, HEAVY_N)
        inside += 1
        partial[m] = partial.get(m, 0) + 1
        assert apply(db, mode, folder) == HEAVY_N - m, "%s: the next call did not apply the rest" % where
        assert fingerprint(db) == refs[HEAVY_N], "%s: the next call did not complete" % where
    drop_db(db)
    return "%d kills inside a %.0f ms call, left %s; %d came after it had returned" % (
        KILLS, duration * 1000,
        ", ".join("%d migrations %d times" % (m, c) for m, c in sorted(partial.items())), late)


@test
def kill_at_random_moments_function_mode(t):
    return random_kills(t, "function")


@test
def kill_at_random_moments_procedure_mode(t):
    return random_kills(t, "procedure")


# ---- cancel and timeouts ----

def interrupted(t, mode, how):
    """how: 'timeout' (statement_timeout), 'cancel' (pg_cancel_backend) or
    'terminate' (pg_terminate_backend) while migration 3 runs its INSERT."""
    folder = write_folder(os.path.join(t, "cancel"), CANCEL)
    refs = references(folder, len(CANCEL))
    db = "pgstress_cancel"
    new_db(db)
    call = call_sql(mode, folder)
    # the same session, after the call: the locks it sees, the state, the next call
    script = "SET pgstress.rows = %d;\n" % ENDLESS
    if how == "timeout":
        script += "SET statement_timeout = '1s';\n"
    script += (call + ";\n"
               "\\echo -- call done --\n"
               "RESET statement_timeout;\nRESET pgstress.rows;\n"
               "SELECT 'locks ' || count(*) FROM pg_locks WHERE " + MIG_LOCK + ";\n"
               "SELECT 'state ' || md5(pgstress.fingerprint());\n" + call + ";\n")
    t0 = time.monotonic()
    path = os.path.join(t, "session.sql")
    with open(path, "w") as f:
        f.write(script)
    p = subprocess.Popen(psql_args(db, stop=False) + ["-f", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env_for(notices=mode == "procedure",
                                                                        app="pgstress-victim"))
    pid = None
    if how != "timeout":
        deadline = time.monotonic() + 30
        while pid is None:
            row = q("postgres", "SELECT pid FROM pg_stat_activity WHERE application_name = '%s'"
                                " AND state = 'active'" % LONG_MARK)
            if row:
                pid = int(row)
            else:
                assert p.poll() is None, "the call ended before migration 3 showed running"
                assert time.monotonic() < deadline, "migration 3 never showed in pg_stat_activity"
                time.sleep(0.005)
        fn = "pg_cancel_backend" if how == "cancel" else "pg_terminate_backend"
        assert q("postgres", "SELECT %s(%d)" % (fn, pid)) == "t"
    out, err = p.communicate(timeout=120)
    took = time.monotonic() - t0
    code = "57P01" if how == "terminate" else "57014"
    level = "FATAL" if how == "terminate" else "ERROR"
    msg = {"timeout": "canceling statement due to statement timeout",
           "cancel": "canceling statement due to user request",
           "terminate": "terminating connection due to administrator command"}[how]
    assert "%s:  %s: %s" % (level, code, msg) in err, "no %s %s: %s" % (level, code, err[-600:])
    assert took < 60, "took %.1f s" % took
    if how != "terminate":
        assert "migration 3 (003_big.up.sql), line %d" % CANCEL_LINE in err, \
            "the error does not name the INSERT of migration 3: %s" % err[-600:]
    want = 0 if mode == "function" else 2
    if how == "terminate":
        assert "-- call done --" not in out, "the session survived pg_terminate_backend"
        # its locks are released when the backend has exited
        deadline = time.monotonic() + 30
        while q("postgres", "SELECT count(*) FROM pg_stat_activity WHERE pid = %d" % pid) != "0":
            assert time.monotonic() < deadline, "the terminated backend did not exit"
            time.sleep(0.01)
        locks = mig_locks()
        assert locks == "0", "%s migration locks left after the backend exited" % locks
        state = fingerprint(db)
        m = which(state, refs)
        assert m == want, "%d migrations there, %d expected: %s" % (m if m is not None else -1, want,
                                                                   brief(state))
        assert apply(db, mode, folder) == len(CANCEL) - m, "the next call did not apply the rest"
    else:
        lines = out.strip().splitlines()
        assert "-- call done --" in lines, out
        rest = lines[lines.index("-- call done --") + 1:]
        assert rest and rest[0] == "locks 0", "the interrupted session sees %s" % rest[:1]
        digests = ["state " + hashlib.md5(r.encode()).hexdigest() for r in refs]
        assert len(rest) > 1 and rest[1] == digests[want], "the interrupted call left %s" % (
            [i for i, h in enumerate(digests) if h == rest[1]] or "a state no prefix has")
        if mode == "function":
            assert rest[2:] == [str(len(CANCEL))], "the next call on the same session: %s" % rest[2:]
        else:
            assert APPLIED_RE.findall(err)[-1:] == [str(len(CANCEL) - want)], err[-300:]
    assert fingerprint(db) == refs[len(CANCEL)]
    assert mig_locks() == "0"
    drop_db(db)
    return "%s, %d migrations kept, no lock left, the next call completed (the session took %.0f ms)" % (
        code, want, took * 1000)


@test
def statement_timeout_function_mode(t):
    return interrupted(t, "function", "timeout")


@test
def statement_timeout_procedure_mode(t):
    return interrupted(t, "procedure", "timeout")


@test
def cancel_backend_function_mode(t):
    return interrupted(t, "function", "cancel")


@test
def cancel_backend_procedure_mode(t):
    return interrupted(t, "procedure", "cancel")


@test
def terminate_backend_function_mode(t):
    return interrupted(t, "function", "terminate")


@test
def terminate_backend_procedure_mode(t):
    return interrupted(t, "procedure", "terminate")


# ---- cancels at random moments ----

def random_cancels(t, mode):
    """pg_cancel_backend after a random delay during an apply of the heavier
    folder: wherever it lands (reading the folder, a statement, a history
    write, a commit), the call fails with 57014 and the same session then
    holds no migration lock, the database is as before (function mode) or
    has exactly the committed migrations (procedure mode), and the next call
    on that session completes; or the call had already returned."""
    folder = write_folder(os.path.join(t, "heavy"), heavy_migrations())
    refs = references(folder, HEAVY_N)
    digests = ["state " + hashlib.md5(r.encode()).hexdigest() for r in refs]
    db = "pgstress_rcancel"
    call = call_sql(mode, folder)
    new_db(db)
    t0 = time.monotonic()
    assert apply(db, mode, folder) == HEAVY_N
    duration = time.monotonic() - t0
    path = os.path.join(t, "session.sql")
    with open(path, "w") as f:
        f.write(call + ";\n"
                "\\echo -- call done -- :ERROR :LAST_ERROR_SQLSTATE\n"
                "SELECT 'locks ' || count(*) FROM pg_locks WHERE " + MIG_LOCK + ";\n"
                "SELECT 'state ' || md5(pgstress.fingerprint());\n" + call + ";\n"
                "\\echo -- next done -- :ERROR\n")
    rng = random.Random(SEED * 1000 + (3 if mode == "function" else 4))
    inside = late = 0
    partial = {}
    while inside < CANCELS:
        where = "%s mode, cancel %d" % (mode, inside + late + 1)
        assert late <= 2 * CANCELS + 2, "%d of %d cancels came after the call had returned" % (
            late, inside + late)
        new_db(db)
        p = subprocess.Popen(psql_args(db, stop=False) + ["-f", path], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env=env_for(notices=mode == "procedure", app="pgstress-victim"))
        pid = None
        deadline = time.monotonic() + 30
        while pid is None:
            row = q("postgres", "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgstress-victim'"
                                " AND state = 'active' AND query LIKE '%migrate_%'")
            if row:
                pid = int(row)
            else:
                assert p.poll() is None, "%s: the call ended before it was seen running" % where
                assert time.monotonic() < deadline, "%s: the call never showed in pg_stat_activity" % where
                time.sleep(0.002)
        delay = rng.uniform(0.0, 0.9) * duration
        time.sleep(delay)      # the random moment itself, not a synchronisation
        q("postgres", "SELECT pg_cancel_backend(%d)" % pid)
        out, err = p.communicate(timeout=120)
        where += " after %.0f ms" % (delay * 1000)
        lines = out.splitlines()
        done = [ln for ln in lines if ln.startswith("-- call done --")]
        assert len(done) == 1, "%s: %s %s" % (where, out[-300:], err[-300:])
        rest = lines[lines.index(done[0]) + 1:]
        if done[0].split()[4] == "false":
            late += 1          # the cancel found the call returned (and may have hit what follows)
            state = fingerprint(db)
            assert state == refs[HEAVY_N], "%s: %s" % (where, brief(state))
            continue
        assert done[0].split()[5] == "57014", "%s: %s" % (where, done[0])
        assert "ERROR:  57014: canceling statement due to user request" in err, "%s: %s" % (where, err[-300:])
        assert rest[:1] == ["locks 0"], "%s: the cancelled session holds %s" % (where, rest[:1])
        assert len(rest) > 1 and rest[1] in digests, "%s: a state no prefix of the folder has" % where
        m = digests.index(rest[1])
        if mode == "function":
            assert m == 0, "%s: function mode left %d of %d migrations" % (where, m, HEAVY_N)
        assert rest[2:] == ([str(HEAVY_N)] if mode == "function" else []) + ["-- next done -- false"], \
            "%s: the next call on the same session: %s %s" % (where, rest[2:], err[-300:])
        if mode == "procedure":
            assert APPLIED_RE.findall(err)[-1:] == [str(HEAVY_N - m)], "%s: %s" % (where, err[-300:])
        state = fingerprint(db)
        assert state == refs[HEAVY_N], "%s: the next call did not complete: %s" % (where, brief(state))
        assert mig_locks() == "0", where
        inside += 1
        partial[m] = partial.get(m, 0) + 1
    drop_db(db)
    return "%d cancels inside a %.0f ms call, left %s; %d came after it had returned" % (
        CANCELS, duration * 1000,
        ", ".join("%d migrations %d times" % (m, c) for m, c in sorted(partial.items())), late)


@test
def cancel_at_random_moments_function_mode(t):
    return random_cancels(t, "function")


@test
def cancel_at_random_moments_procedure_mode(t):
    return random_cancels(t, "procedure")


# ---- runner ----

def main():
    run_tests = [f for f in TESTS if FILTER in f.__name__]
    failed = 0
    started = time.monotonic()
    print("# pg_stress: %s, %d race rounds per mode, %d random kills per mode, seed %d"
          % ("long" if LONG else "short", ROUNDS, KILLS, SEED))
    sys.stdout.flush()
    try:
        make_template()
    except Exception:
        print("not ok 1 - pg-stress: a template database with the extension")
        for ln in traceback.format_exc().splitlines()[-8:]:
            print("#   " + ln)
        return 1
    for i, f in enumerate(run_tests, 1):
        t = tempfile.mkdtemp(prefix="fx_", dir=TMP)
        os.chmod(t, 0o755)
        t0 = time.monotonic()
        try:
            note = f(t)
            print("ok %d - pg-stress: %s" % (i, f.__name__))
            if note:
                print("#   %s (%.1f s)" % (note, time.monotonic() - t0))
            if SPENT:
                print("#   of which " + ", ".join("%s %.1f s" % kv for kv in sorted(SPENT.items())))
        except Exception:
            failed += 1
            print("not ok %d - pg-stress: %s" % (i, f.__name__))
            for ln in traceback.format_exc().splitlines()[-12:]:
                print("#   " + ln)
        finally:
            SPENT.clear()
            shutil.rmtree(t, ignore_errors=True)
        sys.stdout.flush()
    print("1..%d" % len(run_tests))
    print("# pg-stress: %d passed, %d failed, %.1f s" % (len(run_tests) - failed, failed,
                                                         time.monotonic() - started))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
