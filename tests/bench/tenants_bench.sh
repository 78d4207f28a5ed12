#!/bin/sh
# Tenants bench (issue 22, SQLite): N tenant files x M migrations with
# migrate_apply_each, against the floor: a sqlite3 shell loop running the
# same SQL, one transaction per tenant file; then the no-op over the N
# up-to-date tenants.  Target: apply_each <= 1.2x the loop; no-op < 1 s.
#
#   tests/bench/tenants_bench.sh [N [M]]     (make bench)
set -eu
N=${1:-1000}
M=${2:-20}
EXT=$(pwd)/build/migrate
PY=/usr/bin/python3
root=$(mktemp -d /tmp/mig_tenants_bench.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir "$root/m" "$root/ours" "$root/floor"
i=1
echo "BEGIN;" > "$root/all.sql"
while [ "$i" -le "$M" ]; do
  printf 'CREATE TABLE t%d(id INTEGER PRIMARY KEY, x TEXT);\nCREATE INDEX i%d ON t%d(x);\nINSERT INTO t%d(x) VALUES (%d);\n' \
    "$i" "$i" "$i" "$i" "$i" > "$root/m/${i}_m$i.up.sql"
  cat "$root/m/${i}_m$i.up.sql" >> "$root/all.sql"
  i=$((i + 1))
done
echo "COMMIT;" >> "$root/all.sql"
j=0
while [ "$j" -lt "$N" ]; do
  : > "$root/ours/t$j.db"
  : > "$root/floor/t$j.db"
  j=$((j + 1))
done
now() { date +%s.%N; }
t0=$(now)
for f in "$root"/floor/*.db; do sqlite3 "$f" < "$root/all.sql"; done
t1=$(now)
"$PY" - "$EXT" "$root" "$t0" "$t1" "$N" "$M" <<'PYEOF'
import glob, json, sqlite3, sys, time
ext, root = sys.argv[1], sys.argv[2]
floor = float(sys.argv[4]) - float(sys.argv[3])
ts = json.dumps(sorted(glob.glob(root + "/ours/*.db")))
con = sqlite3.connect(":memory:", isolation_level=None)
con.enable_load_extension(True)
con.load_extension(ext)
q = "SELECT status, count(*) FROM migrate_apply_each(?, ?) GROUP BY status"
t = time.time(); r1 = con.execute(q, (root + "/m", ts)).fetchall(); a = time.time() - t
t = time.time(); r2 = con.execute(q, (root + "/m", ts)).fetchall(); b = time.time() - t
print("tenants bench, %s files x %s migrations:" % (sys.argv[5], sys.argv[6]))
print("  sqlite3 shell loop (floor)   %7.3f s" % floor)
print("  migrate_apply_each           %7.3f s  (%.2fx the floor; target <= 1.2x)  %s" % (a, a / floor, r1))
print("  no-op, all up to date        %7.3f s  (target < 1 s)  %s" % (b, r2))
PYEOF
