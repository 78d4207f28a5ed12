#!/usr/bin/env bash
# tests/bench/impact_bench.sh -- migrate_impact of N pending migrations.
#
#   tests/bench/impact_bench.sh [N] [RUNS]    defaults: 1000 migrations, 5 runs
#
# Generates N migrations of schema changes on two populated tables (100,000
# rows each), a mix of what real folders hold, a fifth each: ADD COLUMN with
# a constant default (its volatility is tested by the server, in a
# subtransaction), ALTER COLUMN TYPE (the server's coercion), CREATE INDEX,
# a new table with a foreign key to a populated one, and an UPDATE of a few
# rows; with a session idle in a transaction that read one of the tables
# (blocked_by has something to find).  Times migrate_impact in the server
# (clock_timestamp around it, after a warm-up call), on PostgreSQL
# (tests/pg/lib.sh's throwaway cluster) and on SQLite (the rebuilds and
# scans of the same folder's SQLite twin, through Python's sqlite3), median
# of RUNS.  Target: under one second for 1,000 migrations on each engine.
set -eu
cd "$(dirname "$0")/../.."
. tests/pg/lib.sh

N=${1:-1000}
RUNS=${2:-5}
IDLE=

cleanup() {
	[ -n "$IDLE" ] && kill "$IDLE" 2>/dev/null
	pg_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM
make -s -C pg_ext PG_CONFIG="$PG_CONFIG" >/dev/null
if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
	make -s -C pg_ext PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
make -s all >/dev/null
pg_start "autovacuum = off"

DIR=$PG_TMP/impact
umask 022
mkdir -p "$DIR/pg" "$DIR/sqlite"
for i in $(seq 1 "$N"); do
	case $((i % 5)) in
	0) pg="ALTER TABLE big ADD COLUMN c$i int DEFAULT 0;"
	   sq="ALTER TABLE big ADD COLUMN c$i INTEGER DEFAULT 0;" ;;
	1) pg="ALTER TABLE big2 ALTER COLUMN v TYPE bigint;"
	   sq="ALTER TABLE big2 ADD COLUMN x$i INTEGER CHECK (x$i > 0);" ;;
	2) pg="CREATE INDEX big_i$i ON big (v);"
	   sq="CREATE INDEX big_i$i ON big (v);" ;;
	3) pg="CREATE TABLE t$i (id int PRIMARY KEY, big_id int REFERENCES big (id));"
	   sq="CREATE TABLE t$i (id INTEGER PRIMARY KEY, big_id INTEGER REFERENCES big (id));" ;;
	4) pg="UPDATE big SET v = v + 1 WHERE id = $i;"
	   sq="UPDATE big SET v = v + 1 WHERE id = $i;" ;;
	esac
	printf '%s\n' "$pg" >"$DIR/pg/${i}_m$i.up.sql"
	printf '%s\n' "$sq" >"$DIR/sqlite/${i}_m$i.up.sql"
done

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$@"; }
psql -X -q -d postgres -c "CREATE DATABASE impbench"
q impbench -c "CREATE EXTENSION migrate" \
	-c "CREATE TABLE big (id int PRIMARY KEY, v int, s text)" \
	-c "INSERT INTO big SELECT g, g, md5(g::text) FROM generate_series(1, 100000) g" \
	-c "CREATE TABLE big2 AS SELECT * FROM big" -c "ANALYZE"
# a session idle in a transaction that read big
exec 7> >(psql -X -q -d impbench >/dev/null 2>&1)
IDLE=$!
printf 'BEGIN;\nSELECT count(*) FROM big;\n' >&7

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

q impbench -c "SELECT count(*) FROM migrate_impact('$DIR/pg')" >/dev/null	# warm-up
pg_ms=$(for _ in $(seq 1 "$RUNS"); do
	q impbench -c "SELECT set_config('b.t0', clock_timestamp()::text, false)" \
		-c "SELECT count(*) FROM migrate_impact('$DIR/pg')" \
		-c "SELECT round(extract(epoch FROM clock_timestamp() - current_setting('b.t0')::timestamptz) * 1000, 1)" |
		tail -n 1
done | median)
rows=$(q impbench -c "SELECT count(*) || ' rows, ' || count(*) FILTER (WHERE blocked_by IS NOT NULL) || ' with blocked_by'
                        FROM migrate_impact('$DIR/pg')")
exec 7>&-

sq_ms=$(/usr/bin/python3 - "$DIR" "$RUNS" <<'EOF'
import os, sqlite3, sys, time
d, runs = sys.argv[1], int(sys.argv[2])
db = os.path.join(d, "bench.db")
con = sqlite3.connect(db, isolation_level=None)
con.executescript("""
    CREATE TABLE big(id INTEGER PRIMARY KEY, v INTEGER, s TEXT);
    WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 100000)
    INSERT INTO big SELECT i, i, hex(randomblob(16)) FROM g;
    CREATE TABLE big2(id INTEGER PRIMARY KEY, v INTEGER, s TEXT);
    INSERT INTO big2 SELECT * FROM big;
""")
con.enable_load_extension(True)
con.load_extension(os.path.abspath("build/migrate"))
q = "SELECT count(*) FROM migrate_impact(?)"
con.execute(q, (d + "/sqlite",)).fetchall()
t = []
for _ in range(runs):
    t0 = time.perf_counter()
    con.execute(q, (d + "/sqlite",)).fetchall()
    t.append((time.perf_counter() - t0) * 1000)
print("%.1f" % sorted(t)[len(t) // 2])
EOF
)

echo "| engine | migrate_impact of $N pending migrations (median of $RUNS) | target |"
echo "|---|---:|---|"
echo "| PostgreSQL | $pg_ms ms ($rows) | < 1000 ms |"
echo "| SQLite | $sq_ms ms | < 1000 ms |"
awk -v p="$pg_ms" -v s="$sq_ms" 'BEGIN { exit !(p < 1000 && s < 1000) }'
