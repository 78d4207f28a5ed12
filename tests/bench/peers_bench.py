#!/usr/bin/python3
"""Side-by-side benchmark: migrate against the client tools users switch
from (dbmate, sqitch, postgrator), on SQLite and PostgreSQL.  Run it through
tests/bench/peers.sh, which installs the peers, starts a throwaway
PostgreSQL cluster and passes everything in the environment.

For each size, the same migrations (CREATE TABLE, three INSERTs, CREATE
INDEX; a down that drops the table) are written once in each tool's layout.
Each run measures, for every tool in turn (the order rotates from run to
run, so that load from other work on the machine falls on all of them), in
a fresh database: apply all, no-op (the same command again), roll back all.
Times are wall clock of the whole command as a user runs it (process start,
connection, work, exit), medians over the runs.

Standard library only.  Environment (set by peers.sh):
  PEERS_WORK         scratch folder (readable by the PostgreSQL server)
  PEERS_SIZES        e.g. "100 1000 10000"
  PEERS_RUNS         runs per size, one number or one per size ("5 5 3")
  PEERS_EXT          the SQLite extension, without .so
  PEERS_DBMATE, PEERS_POSTGRATOR, PEERS_SQITCH   the peers' commands
  PEERS_BUDGET       seconds a peer may spend on one engine x size (60):
                     after its first run it gets as many runs as fit, >= 1
  PEERS_MAX_OP       a peer's operation whose time, extrapolated linearly
                     from the previous size, exceeds this is not run (120;
                     0: run everything)
  PEERS_TIMEOUT      hard limit for one command (1200 s)
  PEERS_ENGINES      "sqlite pg" (default both)
  PGHOST, PGPORT, PGUSER   the cluster
"""
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ENV = os.environ
WORK = ENV["PEERS_WORK"]
SIZES = [int(s) for s in ENV.get("PEERS_SIZES", "100 1000 10000").split()]
_runs = [int(s) for s in ENV.get("PEERS_RUNS", "5 5 3").split()]
RUNS = {n: (_runs[i] if i < len(_runs) else _runs[-1]) for i, n in enumerate(SIZES)}
EXT = ENV["PEERS_EXT"]
DBMATE = ENV.get("PEERS_DBMATE", "")
POSTGRATOR = ENV.get("PEERS_POSTGRATOR", "")
SQITCH = ENV.get("PEERS_SQITCH", "")
POSTGRATOR_SQLITE = ENV.get("PEERS_POSTGRATOR_SQLITE", "1") == "1"
BUDGET = float(ENV.get("PEERS_BUDGET", "60"))
MAX_OP = float(ENV.get("PEERS_MAX_OP", "120"))
TIMEOUT = float(ENV.get("PEERS_TIMEOUT", "1200"))
ENGINES = ENV.get("PEERS_ENGINES", "sqlite pg").split()
NOOP_REPEAT = 5         # no-op calls per run, of which the median counts
# psql itself, not Debian's Perl wrapper /usr/bin/psql (~60 ms a start)
PSQL = ENV.get("PEERS_PSQL", "psql")

TOOLS = ["floor", "ours", "ours_run", "dbmate", "sqitch", "postgrator"]
OURS = ["floor", "ours", "ours_run"]   # the references: every run, no budget
PEERS = ["dbmate", "sqitch", "postgrator"]
OPS = ["apply", "noop", "down"]
OP_NAMES = {"apply": "apply all", "noop": "no-op (all applied)", "down": "roll back all"}
ENGINE_NAMES = {"sqlite": "SQLite", "pg": "PostgreSQL"}


def log(msg):
    sys.stderr.write("[peers %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------- generation

def generate(n):
    """Writes the n migrations in every layout under WORK/mN; returns its path."""
    root = os.path.join(WORK, "m%d" % n)
    if os.path.exists(root):
        shutil.rmtree(root)
    for d in ("ours", "dbmate", "postgrator", "sqitch/deploy", "sqitch/revert", "sqitch/verify"):
        os.makedirs(os.path.join(root, d))
    plan = ["%syntax-version=1.0.0", "%project=bench", ""]
    ups, downs = [], []

    def put(path, text):
        with open(os.path.join(root, path), "w") as f:
            f.write(text)

    for i in range(1, n + 1):
        up = ("CREATE TABLE t{0} (id integer PRIMARY KEY, name text NOT NULL, created_at text);\n"
              "INSERT INTO t{0} (id, name, created_at) VALUES (1, 'a', '2024-01-01');\n"
              "INSERT INTO t{0} (id, name, created_at) VALUES (2, 'b', '2024-01-02');\n"
              "INSERT INTO t{0} (id, name, created_at) VALUES (3, 'c', '2024-01-03');\n"
              "CREATE INDEX t{0}_name ON t{0} (name);\n").format(i)
        down = "DROP TABLE t%d;\n" % i
        v = "%06d" % i
        # golang-migrate layout (ours)
        put("ours/%s_table_%d.up.sql" % (v, i), up)
        put("ours/%s_table_%d.down.sql" % (v, i), down)
        # dbmate: one file, two sections
        put("dbmate/%s_table_%d.sql" % (v, i), "-- migrate:up\n" + up + "\n-- migrate:down\n" + down)
        # postgrator: do / undo
        put("postgrator/%s.do.table_%d.sql" % (v, i), up)
        put("postgrator/%s.undo.table_%d.sql" % (v, i), down)
        # sqitch: scripts own their transaction, as sqitch's templates have it
        put("sqitch/deploy/t%d.sql" % i, "BEGIN;\n" + up + "COMMIT;\n")
        put("sqitch/revert/t%d.sql" % i, "BEGIN;\n" + down + "COMMIT;\n")
        put("sqitch/verify/t%d.sql" % i, "SELECT id, name, created_at FROM t%d WHERE 1 = 0;\n" % i)
        plan.append("t%d 2024-01-01T00:00:00Z Bench <bench@example.invalid> # table %d" % (i, i))
        ups.append(up)
        downs.append(down)
    put("sqitch/sqitch.plan", "\n".join(plan) + "\n")
    put("sqitch/sqitch.conf", "[core]\n\tplan_file = sqitch.plan\n\ttop_dir = .\n")
    # floor: SQLite's shell reads BEGIN/COMMIT from the file; psql -1 adds them
    put("all.sql", "BEGIN;\n" + "".join(ups) + "COMMIT;\n")
    put("alldown.sql", "BEGIN;\n" + "".join(reversed(downs)) + "COMMIT;\n")
    put("up.sql", "".join(ups))
    put("down.sql", "".join(reversed(downs)))
    return root


# ---------------------------------------------------------------- running

class Failed(Exception):
    pass


class TimedOut(Exception):
    pass


def run(args, stdin=None, want=None):
    """Runs one command under GNU time; returns (seconds, max RSS KiB).
    want: text the output must contain (a check that it did the work)."""
    fin = open(stdin) if stdin else subprocess.DEVNULL
    with tempfile.NamedTemporaryFile("r", dir=WORK) as rss:
        t0 = time.perf_counter()
        try:
            p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + args, stdin=fin,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise TimedOut("%s: over %d s" % (args[0], TIMEOUT))
        finally:
            if stdin:
                fin.close()
        t = time.perf_counter() - t0
        out = p.stdout.decode(errors="replace")
        if p.returncode != 0 or (want is not None and want not in out.split()):
            raise Failed("%s exited %d%s:\n%s%s" % (" ".join(args)[:300], p.returncode,
                         "" if want is None else " (wanted %r)" % want, out[-1500:],
                         p.stderr.decode(errors="replace")[-1500:]))
        return t, int(rss.read().split()[-1])


def pg_sql(db, sql):
    p = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise Failed("psql %s: %s" % (sql, p.stderr.decode()))
    return p.stdout.decode().strip()


def sqlite_sql(db, sql):
    p = subprocess.run(["sqlite3", db, sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise Failed("sqlite3 %s: %s" % (sql, p.stderr.decode()))
    return p.stdout.decode().strip()


def tables(engine, db):
    """How many of the benchmark's tables exist (t1..tN)."""
    if engine == "sqlite":
        return int(sqlite_sql(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' "
                                  "AND name GLOB 't[0-9]*'"))
    return int(pg_sql(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                          "AND tablename ~ '^t[0-9]+$'"))


def in_connection(engine, db, d):
    """Seconds of one migrate_apply(d) call in an open connection, the way
    an application calls it at start-up: the first call on a new
    connection, timed around the call alone (not the connect)."""
    if engine == "sqlite":
        con = sqlite3.connect(db)
        try:
            con.enable_load_extension(True)
            con.load_extension(EXT)
            t0 = time.perf_counter()
            got = con.execute("SELECT migrate_apply(?)", (d,)).fetchone()[0]
            t = time.perf_counter() - t0
        finally:
            con.close()
    else:
        p = subprocess.run([PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db,
                            "-c", "\\timing on", "-c", "SELECT migrate_apply('%s')" % d],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = p.stdout.decode()
        m = re.search(r"^Time: ([0-9.]+) ms", out, re.M)
        if p.returncode != 0 or m is None:
            raise Failed("in connection: %s%s" % (out, p.stderr.decode()))
        got, t = int(out.split()[0]), float(m.group(1)) / 1000
    if got != 0:
        raise Failed("in connection: migrate_apply applied %s, expected 0" % got)
    return t


DBN = [0]


class Target:
    """A fresh database for one tool and one run."""

    def __init__(self, engine, tool, n):
        DBN[0] += 1
        self.engine = engine
        if engine == "sqlite":
            self.dir = os.path.join(WORK, "db%d" % DBN[0])
            os.mkdir(self.dir)
            self.db = os.path.join(self.dir, "bench.sqlite")
            # every tool starts from an existing, empty database file
            sqlite_sql(self.db, "PRAGMA user_version = 0")
        else:
            self.db = "pb%d" % DBN[0]
            pg_sql("postgres", "CHECKPOINT")
            pg_sql("postgres", "CREATE DATABASE %s" % self.db)
            if tool.startswith("ours"):
                pg_sql(self.db, "CREATE EXTENSION migrate")

    def drop(self):
        if self.engine == "sqlite":
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            pg_sql("postgres", "DROP DATABASE IF EXISTS %s" % self.db)


def commands(engine, tool, n, m, t):
    """{op: (argv, stdin, wanted output, repeat)} for a tool; repeat > 1
    for dbmate's roll back all, which is n calls of `dbmate rollback`."""
    d = os.path.join(m, "ours")
    if engine == "sqlite":
        db = t.db
        if tool == "floor":
            return {"apply": (["sqlite3", db], m + "/all.sql", None, 1),
                    "noop": (["sqlite3", db, "SELECT count(*) FROM t%d" % n], None, "3", 1),
                    "down": (["sqlite3", db], m + "/alldown.sql", None, 1)}
        if tool == "ours":
            load = ".load " + EXT
            return {"apply": (["sqlite3", db, load, "SELECT migrate_apply('%s')" % d], None, str(n), 1),
                    "noop": (["sqlite3", db, load, "SELECT migrate_apply('%s')" % d], None, "0", 1),
                    "down": (["sqlite3", db, load, "SELECT migrate_down(%d)" % n], None, str(n), 1)}
        if tool == "dbmate":
            base = [DBMATE, "--url", "sqlite:" + db, "-d", m + "/dbmate", "--no-dump-schema"]
        elif tool == "postgrator":
            base = [POSTGRATOR, "--no-config", "-r", "sqlite3", "-d", db, "-m", m + "/postgrator/*"]
        else:
            uri = "db:sqlite:" + db
    else:
        db = t.db
        psql = [PSQL, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db]
        if tool == "floor":
            return {"apply": (psql + ["-1", "-f", m + "/up.sql"], None, None, 1),
                    "noop": (psql + ["-c", "SELECT count(*) FROM t%d" % n], None, "3", 1),
                    "down": (psql + ["-1", "-f", m + "/down.sql"], None, None, 1)}
        if tool == "ours":
            return {"apply": (psql + ["-c", "SELECT migrate_apply('%s')" % d], None, str(n), 1),
                    "noop": (psql + ["-c", "SELECT migrate_apply('%s')" % d], None, "0", 1),
                    "down": (psql + ["-c", "SELECT migrate_down(%d)" % n], None, str(n), 1)}
        if tool == "ours_run":      # procedure mode: a commit after each migration
            call = ["-c", "SET client_min_messages = warning", "-c", "CALL migrate_run('%s')" % d]
            return {"apply": (psql + call, None, None, 1),
                    "noop": (psql + call, None, None, 1),
                    "down": None}   # the same migrate_down as function mode
        if tool == "dbmate":
            url = "postgres://%s@:%s/%s?socket=%s&sslmode=disable" % (
                ENV["PGUSER"], ENV["PGPORT"], db, ENV["PGHOST"])
            base = [DBMATE, "--url", url, "-d", m + "/dbmate", "--no-dump-schema"]
        elif tool == "postgrator":
            base = [POSTGRATOR, "--no-config", "-r", "pg", "-h", ENV["PGHOST"], "-o", ENV["PGPORT"],
                    "-d", db, "-u", ENV["PGUSER"], "-m", m + "/postgrator/*"]
        else:
            uri = "db:pg:" + db          # libpq takes host, port and user from the environment
    if tool == "dbmate":
        return {"apply": (base + ["migrate"], None, None, 1),
                "noop": (base + ["migrate"], None, None, 1),
                "down": (base + ["rollback"], None, None, n)}
    if tool == "postgrator":
        return {"apply": (base + ["max"], None, None, 1),
                "noop": (base + ["max"], None, None, 1),
                "down": (base + ["0"], None, None, 1)}
    sq = [SQITCH, "-C", m + "/sqitch"]
    return {"apply": (sq + ["deploy", uri], None, None, 1),
            "noop": (sq + ["deploy", uri], None, None, 1),
            "down": (sq + ["revert", "-y", uri], None, None, 1)}


def available(engine, tool):
    if tool in ("floor", "ours"):
        return True
    if tool == "ours_run":
        return engine == "pg"
    if tool == "dbmate":
        return bool(DBMATE)
    if tool == "sqitch":
        return bool(SQITCH)
    return bool(POSTGRATOR) and (engine == "pg" or POSTGRATOR_SQLITE)


# ---------------------------------------------------------------- measuring

# R[engine][n][tool][op] = {"t": [...], "rss": [...], "note": str}
R = {}


def cell(engine, n, tool, op):
    return R.setdefault(engine, {}).setdefault(n, {}).setdefault(tool, {}).setdefault(
        op, {"t": [], "round": [], "rss": [], "note": ""})


def estimate(engine, n, tool, op):
    """Linear extrapolation from the largest smaller size measured or estimated."""
    prev = [s for s in SIZES if s < n]
    for s in reversed(prev):
        c = cell(engine, s, tool, op)
        if c["t"]:
            return statistics.median(c["t"]) * n / s
        if c.get("est"):
            return c["est"] * n / s
    return None


def one_run(engine, n, m, tool, rnd, with_down=True):
    """apply, no-op, roll back all for one tool in a fresh database."""
    ops = [op for op in OPS if not cell(engine, n, tool, op).get("skip")
           and (with_down or op != "down")]
    if not ops or ops[0] != "apply":
        return 0.0
    t = Target(engine, tool, n)
    total = 0.0
    try:
        cmds = commands(engine, tool, n, m, t)
        for op in ops:
            if cmds[op] is None:
                continue
            argv, stdin, want, repeat = cmds[op]
            c = cell(engine, n, tool, op)
            sec, rss = 0.0, 0
            for _ in range(repeat):
                s, r = run(argv, stdin, want)
                sec += s
                rss = max(rss, r)
            if op == "noop":
                # it changes nothing: the median of NOOP_REPEAT calls, for
                # every tool, so that one slow call does not decide a row
                more = [run(argv, stdin, want) for _ in range(NOOP_REPEAT - 1)]
                sec = statistics.median([sec] + [s for s, _ in more])
                rss = max([rss] + [r for _, r in more])
            c["t"].append(sec)
            c["round"].append(rnd)
            c["rss"].append(rss)
            total += sec
            if tool == "ours" and op == "noop":
                c.setdefault("inconn", []).append(statistics.median(
                    in_connection(engine, t.db, os.path.join(m, "ours")) for _ in range(NOOP_REPEAT)))
            got = tables(engine, t.db)
            expect = 0 if op == "down" else n
            if got != expect:
                raise Failed("%s %s %s: %d tables after %s, expected %d" % (engine, tool, n, got, op,
                                                                            expect))
    except (Failed, TimedOut) as e:
        c = cell(engine, n, tool, op)
        c["note"] = ("timed out (> %d s)" % TIMEOUT) if isinstance(e, TimedOut) else "failed"
        c["skip"] = True
        for later in OPS[OPS.index(op) + 1:]:
            cell(engine, n, tool, later)["skip"] = True
            cell(engine, n, tool, later)["note"] = cell(engine, n, tool, later)["note"] or \
                "not run (%s %s)" % (OP_NAMES[op], c["note"])
        log("%s %s n=%d %s: %s" % (engine, tool, n, op, str(e).strip()[:2000]))
    finally:
        t.drop()
    return total


def backend_memory(n, m):
    """PostgreSQL only: VmHWM of the backend that ran floor's and our calls
    (one extra, untimed run each: reading it needs a query and a shell in
    the same session, which the timed runs should not pay)."""
    probe = os.path.join(WORK, "probe.sql")
    out = os.path.join(WORK, "vmhwm")
    with open(probe, "w") as f:
        f.write("SELECT pg_backend_pid() AS pid \\gset\n\\setenv PEERS_PID :pid\n"
                "\\! grep VmHWM /proc/$PEERS_PID/status > %s\n" % out)
    for tool in OURS:
        t = Target("pg", tool, n)
        try:
            cmds = commands("pg", tool, n, m, t)
            for op in OPS:
                if cmds[op] is None:
                    continue
                # after the call in the same session (floor: inside its transaction)
                argv = list(cmds[op][0]) + ["-f", probe]
                p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                if p.returncode != 0:
                    raise Failed(p.stderr.decode())
                with open(out) as f:
                    kb = int(f.read().split()[1])
                cell("pg", n, tool, op)["vmhwm"] = kb
        except Failed as e:
            log("backend memory %s n=%d: %s" % (tool, n, e))
        finally:
            t.drop()


def measure(n):
    m = generate(n)
    time.sleep(0.3)     # files older than 200 ms: what a deployed folder has
    plan = {}
    for engine in ENGINES:
        for tool in TOOLS:
            if not available(engine, tool):
                for op in OPS:
                    cell(engine, n, tool, op).update(
                        skip=True, note="n/a" if tool == "ours_run" else "not installed")
                continue
            if tool == "ours_run":
                cell(engine, n, tool, "down").update(skip=True, note="= migrate_down")
            plan[engine, tool] = [RUNS[n], RUNS[n]]   # runs with apply + no-op, runs with down too
            if tool in PEERS and MAX_OP > 0:
                for op in OPS:
                    est = estimate(engine, n, tool, op)
                    if est is not None and est > MAX_OP:
                        c = cell(engine, n, tool, op)
                        c.update(skip=True, est=est, note="not run: est. %s s" % fmt_s(est))
                        if op == "apply":
                            for later in OPS[1:]:
                                cell(engine, n, tool, later).update(
                                    skip=True, est=estimate(engine, n, tool, later),
                                    note="not run (apply est. %s s)" % fmt_s(est))
                            break
    for r in range(RUNS[n]):
        order = TOOLS[r % len(TOOLS):] + TOOLS[:r % len(TOOLS)]
        for engine in ENGINES:
            for tool in order:
                runs, runs_down = plan.get((engine, tool), (0, 0))
                if runs <= r:
                    continue
                t0 = time.perf_counter()
                one_run(engine, n, m, tool, r, with_down=r < runs_down)
                log("%s n=%d run %d/%d %-10s %.2f s" % (engine, n, r + 1, runs, tool,
                                                       time.perf_counter() - t0))
                if r == 0 and tool in PEERS:
                    # as many runs as fit in the budget: apply + no-op, and with the down
                    up = sum(cell(engine, n, tool, op)["t"][0] for op in ("apply", "noop")
                             if cell(engine, n, tool, op)["t"])
                    down = cell(engine, n, tool, "down")["t"][:1]
                    fit = lambda sec: max(1, min(RUNS[n], int(BUDGET // sec))) if sec > 0 else 1
                    runs_down = fit(up + down[0]) if down else 0
                    plan[engine, tool] = [max(fit(up), runs_down), runs_down]
    if "pg" in ENGINES:
        backend_memory(n, m)
    shutil.rmtree(m, ignore_errors=True)


# ---------------------------------------------------------------- reporting

def fmt_s(t):
    if t < 1:
        return "%.3f" % t
    if t < 100:
        return "%.2f" % t
    return "%.0f" % t


def inconn(engine, n):
    """Median of our no-op's in-connection times, or None."""
    c = cell(engine, n, "ours", "noop")
    return statistics.median(c["inconn"]) if c.get("inconn") else None


def paired(engine, n, a, b, op):
    """Medians of tools a and b over the rounds both ran (the machine's
    state drifts from round to round: with 10,000 migrations each round
    creates and drops databases of 50,000 files), or (None, None)."""
    ca, cb = cell(engine, n, a, op), cell(engine, n, b, op)
    both = set(ca["round"]) & set(cb["round"])
    ta = [t for t, r in zip(ca["t"], ca["round"]) if r in both]
    tb = [t for t, r in zip(cb["t"], cb["round"]) if r in both]
    if not ta or not tb:
        return None, None
    return statistics.median(ta), statistics.median(tb)


def med(engine, n, tool, op):
    c = cell(engine, n, tool, op)
    return statistics.median(c["t"]) if c["t"] else None


def table():
    out = []
    peers = PEERS
    head = ["engine", "migrations", "operation", "floor s", "ours s", "ours, CALL migrate_run s",
            "ours, in an open connection s"] + \
        ["%s s" % p for p in peers] + ["%s/ours" % p for p in peers] + \
        ["ours fastest", "client peak RSS MiB: floor / ours / " + " / ".join(peers),
         "PG backend VmHWM MiB: floor / ours / migrate_run"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] * 3 + ["---:"] * (4 + 2 * len(peers)) + ["---"] * 3) + "|")
    verdicts = []
    for engine in ENGINES:
        for n in SIZES:
            for op in OPS:
                floor = med(engine, n, "floor", op)
                ours = med(engine, n, "ours", op)
                row = [ENGINE_NAMES[engine], "{:,}".format(n), OP_NAMES[op]]

                def timecell(tool):
                    c = cell(engine, n, tool, op)
                    t = med(engine, n, tool, op)
                    if t is None:
                        s = c["note"] or "not run"
                    else:
                        s = fmt_s(t)
                        if tool != "floor" and floor:
                            x = t / floor
                            s += " (%sx)" % ("%.2f" % x if x < 10 else "%.0f" % x)
                        if len(c["t"]) < RUNS[n]:
                            s += " [%d]" % len(c["t"])
                    if tool == "dbmate" and op == "down":
                        s += " ‡"
                    return s

                for tool in ["floor", "ours", "ours_run"]:
                    row.append(timecell(tool))
                ic = inconn(engine, n) if op == "noop" else None
                row.append("–" if ic is None else fmt_s(ic))
                for tool in peers:
                    row.append(timecell(tool))
                ratios, beaten, missing = [], [], []
                for p in peers:
                    o, t = paired(engine, n, "ours", p, op)
                    if t is None or o is None:
                        ratios.append("–")
                        if med(engine, n, p, op) is None:
                            missing.append(p)
                        continue
                    x = t / o
                    ratios.append("%.1fx" % x if x < 100 else "%.0fx" % x)
                    if t <= o:
                        beaten.append(p)
                row += ratios
                if ours is None:
                    v = "not measured"
                elif beaten:
                    v = "no (" + ", ".join(beaten) + ")"
                else:
                    v = "yes"
                    if missing:
                        v += " (not measured: " + ", ".join(missing) + ")"
                run_t = med(engine, n, "ours_run", op)
                run_beaten = None
                if run_t is not None:
                    run_beaten = []
                    for p in peers:
                        o, t = paired(engine, n, "ours_run", p, op)
                        if o is not None and t is not None and t <= o:
                            run_beaten.append(p)
                    v += "; migrate_run: " + ("no (" + ", ".join(run_beaten) + ")" if run_beaten
                                              else "yes")
                row.append(v)
                verdicts.append((engine, n, op, ours, beaten, missing, run_beaten))
                mem = []
                for tool in ["floor", "ours"] + peers:
                    c = cell(engine, n, tool, op)
                    mem.append("%.0f" % (statistics.median(c["rss"]) / 1024) if c["rss"] else "–")
                row.append(" / ".join(mem))
                if engine == "pg":
                    row.append(" / ".join("%.0f" % (cell(engine, n, tool, op)["vmhwm"] / 1024)
                                          if cell(engine, n, tool, op).get("vmhwm") else "–"
                                          for tool in OURS))
                else:
                    row.append("(all in the client)")
                out.append("| " + " | ".join(row) + " |")
    return "\n".join(out), verdicts


def targets(verdicts):
    lines = []
    rows = [v for v in verdicts if v[3] is not None]
    lost = [v for v in rows if v[4]]
    gaps = [v for v in rows if v[5]]
    run_lost = [v for v in lost if v[6] == []]
    if lost:
        lines.append("- Faster than every peer on every row: **MISSED** on %d of %d rows: %s." % (
            len(lost), len(rows), "; ".join("%s %s %s (%s)" % (ENGINE_NAMES[e], "{:,}".format(n),
                                                               OP_NAMES[op], ", ".join(b))
                                            for e, n, op, _, b, _, _ in lost)))
        if run_lost:
            lines.append("  Of those, procedure mode (CALL migrate_run) is faster than every peer on: %s." %
                         "; ".join("%s %s %s" % (ENGINE_NAMES[e], "{:,}".format(n), OP_NAMES[op])
                                   for e, n, op, *_ in run_lost))
    else:
        lines.append("- Faster than every peer on every row: **met** on all %d rows measured." % len(rows))
    if gaps:
        lines.append("  Peers not measured on some rows (see the table): %d rows." % len(gaps))
    for engine in ENGINES:
        for n in SIZES:
            ours = med(engine, n, "ours", "noop")
            peers = [(med(engine, n, p, "noop"), p) for p in PEERS if med(engine, n, p, "noop")]
            if ours is None or not peers:
                continue
            best, who = min(peers)
            floor = med(engine, n, "floor", "noop")
            x = best / ours
            ic = inconn(engine, n)
            lines.append("- No-op >= 10x faster than the fastest peer's, %s %s: as a command %s — ours "
                         "%s s, fastest peer %s %s s: %.1fx (floor, a bare client reading one row: %s s; "
                         "10x would need %s s); in an open connection, as an application calls it, "
                         "%s" % (
                             ENGINE_NAMES[engine], "{:,}".format(n), "**met**" if x >= 10 else "**MISSED**",
                             fmt_s(ours), who, fmt_s(best), x, fmt_s(floor) if floor else "–",
                             fmt_s(best / 10),
                             "not measured" if ic is None else "%s — %s s: %.1fx" % (
                                 "**met**" if best / ic >= 10 else "**MISSED**", fmt_s(ic), best / ic)))
    return "\n".join(lines)


def main():
    t0 = time.time()
    load0 = os.getloadavg()[1]
    for n in SIZES:
        log("size %d: %d runs" % (n, RUNS[n]))
        measure(n)
    tab, verdicts = table()
    vers = ENV.get("PEERS_VERSIONS", "")
    runs = ", ".join("%s runs for %s" % (RUNS[n], "{:,}".format(n)) for n in SIZES)
    print()
    print("Migrations: CREATE TABLE + 3 INSERTs + CREATE INDEX each, a down that drops the table; "
          "the same SQL in each tool's layout. Medians of up to %s; %s cores, load average "
          "(5 min) %.1f at the start, %.1f at the end: other work shares the machine; %s." % (
              runs, os.cpu_count(), load0, os.getloadavg()[1], vers))
    print()
    print(tab)
    print()
    print("Times: wall clock of the whole command (process start, connect, work, exit), seconds; "
          "(Nx) = ratio to the floor; [k] = only k runs (a peer gets as many runs as fit in %d s "
          "per engine and size); `not run: est.` = skipped because the time extrapolated from the "
          "previous size is over %d s. ‡ dbmate has no roll-back-all: n calls of `dbmate "
          "rollback`, timed together. A no-op is the median of %d calls in a row in each run (of "
          "every tool). The peer/ours ratios and `ours fastest` compare medians over "
          "the rounds both tools ran (a peer given fewer runs is compared with our runs of the same "
          "rounds: the machine's state drifts from round to round)." % (BUDGET, MAX_OP, NOOP_REPEAT))
    print("Floor: apply / roll back = the same SQL in one transaction by `sqlite3 db < all.sql` / "
          "`psql -X -1 -f all.sql`; no-op = the same client opening the database and reading one "
          "row (`SELECT count(*) FROM tN`). Ours: `sqlite3 db '.load migrate' 'SELECT "
          "migrate_apply(dir)'` / `psql -X -c \"SELECT migrate_apply('dir')\"` (migrate_down(n) to "
          "roll back); procedure mode: `psql -X -c \"CALL migrate_run('dir')\"`, a commit after "
          "each migration (the peers commit per migration too; function mode needs "
          "max_locks_per_transaction raised for thousands of migrations, here 1024). "
          "psql is PostgreSQL's binary (not Debian's Perl wrapper), for us, the floor and sqitch. "
          "dbmate is its Go binary from the npm package, run directly.")
    print("In an open connection: our no-op timed around the one call on a connection already "
          "open (Python's sqlite3 module with the extension loaded; psql's `\\timing`), the first "
          "call on that connection, as an application calls migrate_apply at start-up; the peers "
          "have no such form.")
    print("Memory: client peak RSS = max RSS of the command (GNU time %M: the largest process of "
          "its tree; sqitch runs one psql / sqlite3 per change), median over runs. For ours on "
          "SQLite everything runs in the sqlite3 process. On PostgreSQL our work runs in the "
          "server: VmHWM of the backend that ran the call, read from /proc in one extra untimed "
          "run, beside the floor's backend running the same SQL (all include the shared buffers "
          "the backend touched); the peers' backends are not measured.")
    print()
    print("Targets:")
    print(targets(verdicts))
    print()
    print("(%.0f s in all)" % (time.time() - t0))
    with open(os.path.join(ENV.get("PEERS_OUT", WORK), "peers_results.json"), "w") as f:
        json.dump({e: {str(n): v for n, v in d.items()} for e, d in R.items()}, f, indent=1)


if __name__ == "__main__":
    main()
