#!/usr/bin/env bash
# tests/bench/pg_tenants_bench.sh -- tenants (issue 22) against their floor.
#
#   tests/bench/pg_tenants_bench.sh [TENANTS] [MIGRATIONS]   defaults: 1000 20
#
# Starts a throwaway cluster (tests/pg/lib.sh; fsync off), makes TENANTS
# schemas and a folder of MIGRATIONS small migrations (CREATE TABLE and an
# INSERT), and measures once each, in fresh databases:
#
#   apply_each   psql -c "SELECT count(*) FROM migrate_apply_each(dir, tenants)"
#                against one psql session running, for each tenant, SET
#                search_path and the same files (psql -1 -f, one transaction)
#   parallel=2   CALL migrate_run_each(dir, tenants, 'parallel=2'): two
#                background workers, a transaction per tenant (target:
#                faster than the floor)
#   no-op        migrate_apply_each over the TENANTS up-to-date tenants
#                (target < 1 s)
#
# apply_each holds every table it creates locked until its transaction
# ends: TENANTS x MIGRATIONS locks, hence max_locks_per_transaction.
#
# Prints a markdown table.  Needs the extension installed (make -C pg_ext install).
set -eu
cd "$(dirname "$0")/../.."
. tests/pg/lib.sh

T=${1:-1000}
M=${2:-20}

trap pg_stop EXIT
trap 'exit 130' INT TERM
pg_start "max_locks_per_transaction = 1024" >/dev/null
DIR=$PG_TMP/ten_bench
mkdir -p "$DIR"
chmod 755 "$DIR"
for i in $(seq 1 "$M"); do
	printf 'CREATE TABLE b%d (id int PRIMARY KEY, v text);\nINSERT INTO b%d VALUES (1, %s);\n' \
		"$i" "$i" "'x'" >"$DIR/${i}_b$i.up.sql"
done
chmod 644 "$DIR"/*
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
mkdb() {
	q -d postgres -c "CREATE DATABASE $1"
	q -d "$1" -c "CREATE EXTENSION migrate" \
		-c "DO \$\$ BEGIN FOR i IN 1..$T LOOP EXECUTE format('CREATE SCHEMA t%s', i); END LOOP; END \$\$"
}
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
TENANTS="ARRAY(SELECT 't' || g FROM generate_series(1, $T) g)"

mkdb b_each
t0=$(date +%s%N)
q -d b_each -c "SET client_min_messages = warning" \
	-c "SELECT count(*) FROM migrate_apply_each('$DIR', $TENANTS)" >/dev/null
EACH=$(ms "$t0")

mkdb b_par
t0=$(date +%s%N)
q -d b_par -c "SET client_min_messages = warning" \
	-c "CALL migrate_run_each('$DIR', '{$(seq -s, -f 't%.0f' 1 "$T")}', 'parallel=2')" >/dev/null
PAR=$(ms "$t0")
[ "$(q -d b_par -c "SELECT count(*) FROM migrate_history WHERE tenant <> ''")" = $((T * M)) ] ||
	{ echo "parallel=2 did not apply every migration" >&2; exit 1; }

mkdb b_floor
FLOOR_SQL=$PG_TMP/floor.sql
{
	for t in $(seq 1 "$T"); do
		echo "BEGIN;"
		echo "SET LOCAL search_path = t$t;"
		cat "$DIR"/*.sql
		echo "COMMIT;"
	done
} >"$FLOOR_SQL"
t0=$(date +%s%N)
q -d b_floor -f "$FLOOR_SQL" >/dev/null
FLOOR=$(ms "$t0")

t0=$(date +%s%N)
q -d b_each -c "SET client_min_messages = warning" \
	-c "SELECT count(*) FROM migrate_apply_each('$DIR', $TENANTS)" >/dev/null
NOOP=$(ms "$t0")

echo "| $T tenants x $M migrations | ms |"
echo "|---|---|"
echo "| migrate_apply_each | $EACH |"
echo "| psql, the same SQL per tenant (one transaction each) | $FLOOR |"
echo "| ratio | $(awk "BEGIN { printf \"%.2f\", $EACH / $FLOOR }") |"
echo "| CALL migrate_run_each(..., 'parallel=2') | $PAR |"
echo "| ratio parallel=2 / psql (target < 1) | $(awk "BEGIN { printf \"%.2f\", $PAR / $FLOOR }") |"
echo "| no-op: migrate_apply_each over $T up-to-date tenants (target < 1000) | $NOOP |"
