#!/usr/bin/python3
"""SQLite benchmark: migrate_apply against the floor, the same SQL run by
the sqlite3 shell in one transaction; and the folder sent as an archive
(readfile of a tar.gz) against the folder itself.

Generated migrations: each creates a table and an index and inserts three
rows; each down drops the table (no ALTER TABLE, which makes SQLite re-parse
the schema and grows quadratically).  Two more cases are one big migration
each: a 48 MB file of 1,215 INSERTs of 40 kB, and a file of 160,000
one-row INSERTs (preparing each statement once copied the rest of the
file: 65 s and 19 s here).  Every figure is the median of RUNS runs,
measured in this same run, so the ratios compare like with like.

    tests/bench/sqlite_bench.py [N=1000] [RUNS=5]
"""
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

EXT = os.path.abspath("build/migrate")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5


def generate(root, n):
    d = os.path.join(root, "m%d" % n)
    os.mkdir(d)
    ups, downs = [], []
    for i in range(1, n + 1):
        up = ("CREATE TABLE t%d (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_at TEXT);\n"
              "CREATE INDEX t%d_name ON t%d (name);\n"
              "INSERT INTO t%d (name, created_at) VALUES ('a', '2024-01-01'), ('b', '2024-01-02'),"
              " ('c', '2024-01-03');\n") % (i, i, i, i)
        down = "DROP TABLE t%d;\n" % i
        with open(os.path.join(d, "%06d_table_%d.up.sql" % (i, i)), "w") as f:
            f.write(up)
        with open(os.path.join(d, "%06d_table_%d.down.sql" % (i, i)), "w") as f:
            f.write(down)
        ups.append(up)
        downs.append(down)
    with open(os.path.join(root, "all%d.sql" % n), "w") as f:
        f.write("BEGIN;\n" + "".join(ups) + "COMMIT;\n")
    with open(os.path.join(root, "alldown%d.sql" % n), "w") as f:
        f.write("BEGIN;\n" + "".join(reversed(downs)) + "COMMIT;\n")
    return d


def run(args, stdin=None):
    """Runs a process under GNU time; returns (seconds, peak RSS in KiB)."""
    fin = open(stdin) if stdin else subprocess.DEVNULL
    with tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + args, stdin=fin,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit("bench: %s failed: %s" % (args, p.stderr.decode()))
        return t, int(rss.read().split()[-1])


def fresh_db(root):
    db = os.path.join(root, "bench.db")
    for s in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(db + s):
            os.unlink(db + s)
    return db


def measure(root, n):
    d = generate(root, n)
    time.sleep(0.3)  # a deployed folder is older than 200 ms: identities are kept
    floor, ours, floor_rss, ours_rss, down, down_floor, noop, cold, cold_floor = [], [], [], [], [], [], [], [], []
    arch, arch_cold, arch_noop, arch_folder, arch_folder_cold, arch_folder_noop = [], [], [], [], [], []
    tgz = os.path.join(root, "m%d.tar.gz" % n)
    subprocess.run(["tar", "czf", tgz, "-C", d, "."], check=True)
    with open(tgz, "rb") as f:
        data = f.read()
    for k in range(RUNS):
        # the folder as an archive against the folder, in turns
        for kind in (("folder", "archive") if k % 2 == 0 else ("archive", "folder")):
            db = fresh_db(root)
            arg = "'%s'" % d if kind == "folder" else "readfile('%s')" % tgz
            t, _ = run(["sqlite3", db, ".load " + EXT, "SELECT migrate_apply(%s)" % arg])
            (arch_folder if kind == "folder" else arch).append(t)
            con = sqlite3.connect(db, isolation_level=None)
            con.enable_load_extension(True)
            con.load_extension(EXT)
            for j in range(6):
                t0 = time.perf_counter()
                assert con.execute("SELECT migrate_apply(?)", (d if kind == "folder" else data,)).fetchone()[0] == 0
                t = time.perf_counter() - t0
                if kind == "folder":
                    (arch_folder_cold if j == 0 else arch_folder_noop).append(t)
                else:
                    (arch_cold if j == 0 else arch_noop).append(t)
            con.close()

        db = fresh_db(root)
        t, rss = run(["sqlite3", db], stdin=os.path.join(root, "all%d.sql" % n))
        floor.append(t)
        floor_rss.append(rss)
        t, _ = run(["sqlite3", db], stdin=os.path.join(root, "alldown%d.sql" % n))
        down_floor.append(t)

        db = fresh_db(root)
        t, rss = run(["sqlite3", db, ".load " + EXT, "SELECT migrate_apply('%s')" % d])
        ours.append(t)
        ours_rss.append(rss)

        time.sleep(0.3)  # files younger than 200 ms are never cached
        # the floor of a first call: SQLite loading the schema on a new connection
        con = sqlite3.connect(db, isolation_level=None)
        t0 = time.perf_counter()
        con.execute("SELECT count(*) FROM migrate_history").fetchone()
        cold_floor.append(time.perf_counter() - t0)
        con.close()
        con = sqlite3.connect(db, isolation_level=None)
        con.enable_load_extension(True)
        con.load_extension(EXT)
        for k in range(6):
            t0 = time.perf_counter()
            assert con.execute("SELECT migrate_apply(?)", (d,)).fetchone()[0] == 0
            (cold if k == 0 else noop).append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert con.execute("SELECT migrate_down(?)", (n,)).fetchone()[0] == n
        down.append(time.perf_counter() - t0)
        con.close()
    med = statistics.median
    return dict(floor=med(floor), ours=med(ours), floor_rss=med(floor_rss), ours_rss=med(ours_rss),
                down=med(down), down_floor=med(down_floor), noop=med(noop),
                cold=med(cold), cold_floor=med(cold_floor), arch=med(arch),
                # each round's ratio: the machine drifts from round to round
                r_arch=med([a / f for a, f in zip(arch, arch_folder)]),
                r_cold=med([a / f for a, f in zip(arch_cold, arch_folder_cold)]),
                r_noop=med([med(arch_noop[i:i + 5]) / med(arch_folder_noop[i:i + 5])
                            for i in range(0, len(arch_noop), 5)]),
                arch_folder=med(arch_folder), arch_cold=med(arch_cold), arch_noop=med(arch_noop),
                arch_folder_cold=med(arch_folder_cold), arch_folder_noop=med(arch_folder_noop),
                tgz=len(data))


BIG = [("big", "one 48 MB file of 1,215 INSERTs of 40 kB", 1215, 40000),
       ("many", "one file of 160,000 one-row INSERTs (6.8 MB)", 160000, 0)]


def measure_big(root, kind, count, size):
    """One migration of count INSERTs: migrate_apply against sqlite3 < the
    same SQL in one transaction, as processes; (ours, floor, RSS ours, RSS
    floor), medians."""
    d = os.path.join(root, kind)
    os.mkdir(d)
    value = "x" * size
    with open(os.path.join(d, "1_%s.up.sql" % kind), "w") as f:
        f.write("CREATE TABLE %s(id INTEGER PRIMARY KEY, v TEXT);\n" % kind)
        for i in range(count):
            f.write("INSERT INTO %s(v) VALUES ('%s');\n" % (kind, value if size else "row %d" % i))
    floor_sql = os.path.join(root, kind + ".sql")
    with open(floor_sql, "w") as f:
        f.write("BEGIN;\n" + open(os.path.join(d, "1_%s.up.sql" % kind)).read() + "COMMIT;\n")
    time.sleep(0.3)
    ours, floor, ours_rss, floor_rss, plain = [], [], [], [], []
    for _ in range(RUNS):
        db = fresh_db(root)
        t, rss = run(["sqlite3", db], stdin=floor_sql)
        floor.append(t)
        floor_rss.append(rss)
        # the file as it is, as `sqlite3 db < file` runs it (each INSERT
        # its own transaction): the comparison of the issue that found the
        # quadratic prepare (skipped for the many-statement file: minutes)
        if count <= 5000:
            db = fresh_db(root)
            t, _ = run(["sqlite3", db], stdin=os.path.join(d, "1_%s.up.sql" % kind))
            plain.append(t)
        db = fresh_db(root)
        t, rss = run(["sqlite3", db, ".load " + EXT, "SELECT migrate_apply('%s')" % d])
        ours.append(t)
        ours_rss.append(rss)
    med = statistics.median
    return med(ours), med(floor), med(ours_rss), med(floor_rss), med(plain) if plain else None


def main():
    if not os.path.exists(EXT + ".so"):
        sys.exit("bench: build the extension first (make)")
    root = tempfile.mkdtemp(prefix="mig_bench_")
    try:
        r = measure(root, N)
        small = measure(root, N // 10)
        big = [(label,) + measure_big(root, kind, count, size) for kind, label, count, size in BIG]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    v = sqlite3.sqlite_version
    print("SQLite %s, %d migrations (table + index + 3 rows each, with downs), median of %d runs"
          % (v, N, RUNS))
    print()
    print("| measurement | migrate | floor | ratio |")
    print("|---|---:|---:|---:|")
    print("| apply all (process: sqlite3 + .load + migrate_apply vs sqlite3 < all.sql in one transaction) "
          "| %.1f ms | %.1f ms | %.2fx |" % (r["ours"] * 1e3, r["floor"] * 1e3, r["ours"] / r["floor"]))
    print("| no-op migrate_apply with %d applied, first call on a new connection (one lstat a file: identities kept in the history) "
          "| %.2f ms | %.2f ms (first query: schema load) | %.2fx |"
          % (N, r["cold"] * 1e3, r["cold_floor"] * 1e3, r["cold"] / r["cold_floor"]))
    print("| no-op migrate_apply with %d applied, later calls on that connection "
          "| %.2f ms | | |" % (N, r["noop"] * 1e3))
    print("| roll back all (migrate_down(%d) vs the downs in one transaction, process) | %.1f ms | %.1f ms | %.2fx |"
          % (N, r["down"] * 1e3, r["down_floor"] * 1e3, r["down"] / r["down_floor"]))
    print("| peak RSS, %d migrations | %d KiB | %d KiB | +%d KiB |"
          % (N, r["ours_rss"], r["floor_rss"], r["ours_rss"] - r["floor_rss"]))
    print("| peak RSS, %d migrations | %d KiB | %d KiB | +%d KiB |"
          % (N // 10, small["ours_rss"], small["floor_rss"], small["ours_rss"] - small["floor_rss"]))
    for label, ours, floor, ours_rss, floor_rss, plain in big:
        print("| apply %s (process vs sqlite3 < the same SQL in one transaction) | %.2f s | %.2f s | %.2fx |"
              % (label, ours, floor, ours / floor))
        if plain:
            print("| apply %s (process vs sqlite3 db < the file as it is, a transaction per INSERT) | %.2f s | %.2f s | %.2fx |"
                  % (label, ours, plain, ours / plain))
        print("| peak RSS, %s | %d KiB | %d KiB | +%d KiB |" % (label, ours_rss, floor_rss, ours_rss - floor_rss))
    print()
    print("The folder sent as data: a tar.gz of it (%d bytes), read with readfile() / a bytes parameter,"
          " against the folder's path, in turns, each in a fresh database (ratio: the median of the"
          " rounds' ratios):" % r["tgz"])
    print()
    print("| measurement | archive | folder | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for what, a, f, ratio, target in (
            ("apply all (process: sqlite3 + .load + migrate_apply)", r["arch"], r["arch_folder"],
             r["r_arch"], 1.05),
            ("no-op with %d applied, first call on a new connection" % N, r["arch_cold"],
             r["arch_folder_cold"], r["r_cold"], 1.0),
            ("no-op with %d applied, later calls on that connection (the archive kept)" % N,
             r["arch_noop"], r["arch_folder_noop"], r["r_noop"], 1.0)):
        print("| %s | %.2f ms | %.2f ms | %.2fx | <= %.2fx (%s) |"
              % (what, a * 1e3, f * 1e3, ratio, target, "met" if ratio <= target else "MISSED"))


if __name__ == "__main__":
    main()
