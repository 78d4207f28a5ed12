#!/usr/bin/python3
"""Tenants stress (issue 22, SQLite): P processes race migrate_apply_each
over the same T tenant files, each in its own shuffled order, waiting for
each tenant's lock.  Afterwards every tenant has each migration exactly
once (its history, and a row its second migration inserts), and the
processes' applied counts add up to T x the number of migrations.

    tests/stress/sqlite_tenants_stress.py build/migrate [processes [tenants]]
"""
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile

EXT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/migrate")
P = int(sys.argv[2]) if len(sys.argv) > 2 else 16
T = int(sys.argv[3]) if len(sys.argv) > 3 else 200

WORKER = """
import json, random, sqlite3, sys
ext, folder, tenants, seed = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
random.Random(seed).shuffle(tenants)
con = sqlite3.connect(':memory:', isolation_level=None)
con.enable_load_extension(True)
con.load_extension(ext)
out = con.execute("SELECT tenant, applied, status, error FROM migrate_apply_each(?, ?, ?)",
                  (folder, json.dumps(tenants), "on_error=continue, wait=forever")).fetchall()
print(json.dumps(out))
"""


def main():
    root = tempfile.mkdtemp(prefix="mig_tenants_stress_")
    try:
        folder = os.path.join(root, "m")
        os.mkdir(folder)
        files = {"1_a.up.sql": "CREATE TABLE a(x);\n",
                 "2_hit.up.sql": "CREATE TABLE hits(x);\nINSERT INTO hits VALUES (1);\n",
                 "3_c.up.sql": "CREATE TABLE c(x);\nINSERT INTO hits VALUES (3);\n"}
        for n, t in files.items():
            with open(os.path.join(folder, n), "w") as f:
                f.write(t)
        tenants = []
        for i in range(T):
            p = os.path.join(root, "t%03d.db" % i)
            sqlite3.connect(p).close()
            tenants.append(p)
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, EXT, folder, json.dumps(tenants), str(s)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for s in range(P)]
        applied = {t: 0 for t in tenants}
        bad = []
        for pr in procs:
            out, err = pr.communicate(timeout=600)
            if pr.returncode != 0:
                bad.append("process failed: %s" % err.strip()[-500:])
                continue
            for tenant, n, status, error in json.loads(out):
                applied[tenant] += n
                if status not in ("applied", "up_to_date"):
                    bad.append("%s: %s %s" % (tenant, status, error))
        for t in tenants:
            con = sqlite3.connect(t)
            h = [r[0] for r in con.execute("SELECT version FROM migrate_history ORDER BY installed_rank")]
            hits = sorted(r[0] for r in con.execute("SELECT x FROM hits"))
            con.close()
            if h != ["1", "2", "3"] or hits != [1, 3] or applied[t] != 3:
                bad.append("%s: history %s, hits %s, applied %d" % (t, h, hits, applied[t]))
        for b in bad[:20]:
            print("not ok:", b)
        print("tenants stress: %d processes x %d tenants: %s" % (P, T, "ok" if not bad else "%d problems" % len(bad)))
        return 1 if bad else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
