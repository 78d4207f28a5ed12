#!/usr/bin/env bash
# tests/bench/pg_bench.sh -- the PostgreSQL extension against its floors.
#
#   tests/bench/pg_bench.sh [N] [RUNS]      defaults: 1000 migrations, 5 runs
#
# Generates N small migrations (CREATE TABLE + three INSERTs + an index,
# each with a down), starts a throwaway cluster (tests/pg/lib.sh; fsync off,
# so that both sides measure the server's work rather than the disk) and
# measures in the same run, each in a fresh database, median of RUNS:
#
#   function mode   psql -c "SELECT migrate_apply(dir)"
#                   against  psql -X -1 -f all.sql           (target <= 1.2x)
#   procedure mode  psql -c "CALL migrate_run(dir)"
#                   against  one psql session running each file in its own
#                            transaction (BEGIN; file; COMMIT)  (target <= 1.0x)
#   no-op           migrate_apply with N applied, timed in the server with
#                   clock_timestamp() after a warm-up call     (target < 10 ms)
#   outside a transaction (CALL migrate_run; background worker, a commit and
#                   a progress row per statement), each against one psql
#                   session running the same statements, each its own
#                   transaction (psql's autocommit)            (target <= 1.2x):
#     100 statements  one goose NO TRANSACTION migration: CREATE TABLE and
#                     100 COMMENTs
#     33 migrations   33 goose NO TRANSACTION migrations: CREATE TABLE, an
#                     INSERT of 100 rows, CREATE INDEX CONCURRENTLY, COMMENT
#   the folder as data  a tar.gz of the folder sent by psql (base64 in the
#                   query) against the folder's path: function mode
#                   (target <= 1.05x) and the no-op (target <= 1.0x)
#
# Prints a markdown table.  Needs the extension installed (make -C pg_ext
# install, as root); the cluster runs as "nobody" when run as root.
set -eu
cd "$(dirname "$0")/../.."
. tests/pg/lib.sh

N=${1:-1000}
RUNS=${2:-5}

trap pg_stop EXIT
trap 'exit 130' INT TERM
make -s -C pg_ext PG_CONFIG="$PG_CONFIG" >/dev/null
if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
	make -s -C pg_ext PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
# One transaction holds ~5 relation locks per migration: room for N.
# No autovacuum or checkpoint in the middle of a measurement.
pg_start "max_locks_per_transaction = 256" "shared_buffers = 256MB" \
	"autovacuum = off" "max_wal_size = 8GB" "checkpoint_timeout = 1h"

DIR=$PG_TMP/bench
umask 022
mkdir -p "$DIR/m"
: >"$DIR/all.sql"
: >"$DIR/each.sql"
for i in $(seq 1 "$N"); do
	up="CREATE TABLE b$i (id int PRIMARY KEY, v text);
INSERT INTO b$i VALUES (1, 'one');
INSERT INTO b$i VALUES (2, 'two');
INSERT INTO b$i VALUES (3, 'three');
CREATE INDEX b${i}_v ON b$i (v);
"
	printf '%s' "$up" >"$DIR/m/${i}_table_$i.up.sql"
	printf 'DROP TABLE b%s;\n' "$i" >"$DIR/m/${i}_table_$i.down.sql"
	printf '%s' "$up" >>"$DIR/all.sql"
	printf 'BEGIN;\n%sCOMMIT;\n' "$up" >>"$DIR/each.sql"
done
ARCH=$(tar czf - -C "$DIR/m" . | base64 -w0)
printf "SELECT migrate_apply(decode('%s', 'base64'));\n" "$ARCH" >"$DIR/arch.sql"

# outside a transaction
mkdir -p "$DIR/om" "$DIR/o33"
{
	printf -- '-- +goose NO TRANSACTION\n-- +goose Up\nCREATE TABLE om (id int);\n'
	for i in $(seq 1 100); do printf "COMMENT ON TABLE om IS 'version %d';\n" "$i"; done
} >"$DIR/om/1_comments.sql"
sed -n '3,$p' "$DIR/om/1_comments.sql" >"$DIR/om.sql"
: >"$DIR/o33.sql"
for i in $(seq 1 33); do
	up="CREATE TABLE o$i (id int, v text);
INSERT INTO o$i SELECT g, md5(g::text) FROM generate_series(1, 100) g;
CREATE INDEX CONCURRENTLY o${i}_v ON o$i (v);
COMMENT ON TABLE o$i IS 'table $i';
"
	printf -- '-- +goose NO TRANSACTION\n-- +goose Up\n%s' "$up" >"$DIR/o33/${i}_o$i.sql"
	printf '%s' "$up" >>"$DIR/o33.sql"
done

DBN=0
fresh_db() {	# sets db to a new database with the extension
	DBN=$((DBN + 1))
	db=bench$DBN
	psql -X -q -d postgres -c "CREATE DATABASE $db"
	psql -X -q -d "$db" -c "CREATE EXTENSION migrate"
}

# elapsed CMD...: runs CMD, prints its wall time in seconds.
elapsed() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}

median() {
	sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

: >"$DIR/floor_om" ; : >"$DIR/t_om" ; : >"$DIR/floor_o33" ; : >"$DIR/t_o33"
for _ in $(seq 1 "$RUNS"); do
	fresh_db
	elapsed psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$DIR/om.sql" >>"$DIR/floor_om"
	fresh_db
	elapsed psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "SET client_min_messages = warning" -c "CALL migrate_run('$DIR/om')" >>"$DIR/t_om"
	fresh_db
	elapsed psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$DIR/o33.sql" >>"$DIR/floor_o33"
	fresh_db
	elapsed psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "SET client_min_messages = warning" -c "CALL migrate_run('$DIR/o33')" >>"$DIR/t_o33"
done
outside=$(psql -X -q -At -d "$db" -c "SELECT count(*) FROM migrate_history")
[ "$outside" = 33 ] || { echo "outside a transaction: applied $outside of 33" >&2; exit 1; }
: >"$DIR/floor_fn" ; : >"$DIR/fn" ; : >"$DIR/floor_proc" ; : >"$DIR/proc" ; : >"$DIR/arch"
: >"$DIR/arch_noop"
# noop_ms DB ARG: the median in-server time of 5 no-op calls of
# migrate_apply(ARG) after a warm-up call
noop_ms() {
	psql -X -q -At -d "$1" 2>&1 <<EOF | sed -n 's/.*noop_ms=//p' | median
CREATE TEMP TABLE arg AS SELECT $2 AS a;
SELECT migrate_apply((SELECT a FROM arg));
$(for _ in 1 2 3 4 5; do cat <<EOS
DO \$\$
DECLARE t0 timestamptz := clock_timestamp(); n bigint;
BEGIN
	n := migrate_apply((SELECT a FROM arg));
	RAISE NOTICE 'noop_ms=%', round(extract(epoch FROM clock_timestamp() - t0) * 1000, 2);
END \$\$;
EOS
done)
EOF
}
# apply_in DB HOW: times one apply of the folder in DB, by path or as an
# archive, into $t
apply_in() {
	if [ "$2" = path ]; then
		t=$(elapsed psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c "SELECT migrate_apply('$DIR/m')")
	else
		t=$(elapsed psql -X -q -v ON_ERROR_STOP=1 -d "$1" -f "$DIR/arch.sql")
	fi
}
: >"$DIR/noop" ; : >"$DIR/arch_ratio" ; : >"$DIR/noop_ratio"
for r in $(seq 1 "$RUNS"); do
	psql -X -q -d postgres -c "CHECKPOINT"
	fresh_db
	elapsed psql -X -q -v ON_ERROR_STOP=1 -1 -d "$db" -f "$DIR/all.sql" >>"$DIR/floor_fn"
	# the folder and its archive back to back, in turns, each round's
	# ratio kept: this shared VM drifts by 2x from round to round
	fresh_db; fdb=$db
	fresh_db; adb=$db
	if [ $((r % 2)) = 1 ]; then
		apply_in "$fdb" path; t_fn=$t
		apply_in "$adb" archive; t_ar=$t
	else
		apply_in "$adb" archive; t_ar=$t
		apply_in "$fdb" path; t_fn=$t
	fi
	echo "$t_fn" >>"$DIR/fn"
	echo "$t_ar" >>"$DIR/arch"
	awk -v a="$t_ar" -v b="$t_fn" 'BEGIN { printf "%.3f\n", a / b }' >>"$DIR/arch_ratio"
	# no-op calls with N applied, timed inside the server after a warm-up
	n_fn=$(noop_ms "$fdb" "'$DIR/m'::text")
	n_ar=$(noop_ms "$adb" "decode('$ARCH', 'base64')")
	echo "$n_fn" >>"$DIR/noop"
	echo "$n_ar" >>"$DIR/arch_noop"
	awk -v a="$n_ar" -v b="$n_fn" 'BEGIN { printf "%.3f\n", a / b }' >>"$DIR/noop_ratio"
	fresh_db
	elapsed psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f "$DIR/each.sql" >>"$DIR/floor_proc"
	fresh_db
	elapsed psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "SET client_min_messages = warning" -c "CALL migrate_run('$DIR/m')" >>"$DIR/proc"
done
applied=$(psql -X -q -At -d "$db" -c "SELECT count(*) FROM migrate_history")
[ "$applied" = "$N" ] || { echo "procedure mode applied $applied of $N" >&2; exit 1; }
noop=$(median <"$DIR/noop")
anoop=$(median <"$DIR/arch_noop")

ffn=$(median <"$DIR/floor_fn"); fn=$(median <"$DIR/fn")
fpr=$(median <"$DIR/floor_proc"); pr=$(median <"$DIR/proc")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "met" : "MISSED" }'; }
rfn=$(ratio "$fn" "$ffn"); rpr=$(ratio "$pr" "$fpr")
fom=$(median <"$DIR/floor_om"); om=$(median <"$DIR/t_om"); rom=$(ratio "$om" "$fom")
fo33=$(median <"$DIR/floor_o33"); o33=$(median <"$DIR/t_o33"); ro33=$(ratio "$o33" "$fo33")
ar=$(median <"$DIR/arch"); rar=$(median <"$DIR/arch_ratio"); rno=$(median <"$DIR/noop_ratio")

cat <<EOF

PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}'), $N migrations (CREATE TABLE, 3 INSERTs, CREATE INDEX; with downs), median of $RUNS runs, $(nproc) cores, fsync off

| case | floor | migrate | ratio | target |
|---|---|---|---|---|
| function mode: \`SELECT migrate_apply\` vs \`psql -X -1 -f all.sql\` | ${ffn} s | ${fn} s | ${rfn}x | <= 1.2x ($(verdict "$rfn" 1.2)) |
| procedure mode: \`CALL migrate_run\` vs one psql session, a transaction per file | ${fpr} s | ${pr} s | ${rpr}x | <= 1.0x ($(verdict "$rpr" 1.0)) |
| no-op \`migrate_apply\` with $N applied (in-server time) | | ${noop} ms | | < 10 ms ($(verdict "$noop" 10)) |
| outside a transaction: one NO TRANSACTION migration of 101 statements, \`CALL migrate_run\` vs \`psql -f\` | ${fom} s | ${om} s | ${rom}x | <= 1.2x ($(verdict "$rom" 1.2)) |
| outside a transaction: 33 NO TRANSACTION migrations of 4 statements, \`CALL migrate_run\` vs \`psql -f\` | ${fo33} s | ${o33} s | ${ro33}x | <= 1.2x ($(verdict "$ro33" 1.2)) |

The folder as data: a tar.gz of it ($(printf '%s' "$ARCH" | base64 -d | wc -c) bytes) sent by psql, against the folder's path, back to back in each round (ratio: the median of the rounds' ratios):

| case | folder | archive | ratio | target |
|---|---|---|---|---|
| function mode: \`SELECT migrate_apply(decode(...))\` vs \`SELECT migrate_apply(path)\` | ${fn} s | ${ar} s | ${rar}x | <= 1.05x ($(verdict "$rar" 1.05)) |
| no-op with $N applied (in-server time, after a warm-up call) | ${noop} ms | ${anoop} ms | ${rno}x | <= 1.0x ($(verdict "$rno" 1.0)) |
EOF

# every run, for judging the noise
echo
for f in floor_fn fn floor_proc proc arch arch_ratio noop arch_noop noop_ratio floor_om t_om floor_o33 t_o33; do
	printf '%-10s %s\n' "$f" "$(tr '\n' ' ' <"$DIR/$f")"
done | sed 's/^/    /'
