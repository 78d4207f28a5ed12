#!/usr/bin/env bash
# tests/stress/pg_stress.sh -- the PostgreSQL half of the reliability suite
# (issue 7), against a real server.  Prints TAP.
#
#   tests/stress/pg_stress.sh [--short | --long] [--rounds N] [--kills N]
#                             [--seed S] [name-filter]
#
# Builds and installs pg_ext (when pg_config's pkglibdir is writable, as
# tests/pg/run.sh does), starts a throwaway cluster of its own through
# tests/pg/lib.sh (a Unix socket in its own folder, port 5496, 100
# connections, as "nobody" when run as root), runs tests/stress/pg_stress.py
# (Python's standard library: psql processes, and a small wire-protocol
# client for the 64 racing sessions; see there for what is tested) and
# stops the cluster on every exit.
#
# --short (make check, the default): a few race rounds per mode, every crash
# point once per mode, a couple of random kills, the cancels.  --long (make
# stress): 100 race rounds per mode and many random kills.
#
#   tests/stress/pg_stress.sh --tenants [--rounds N] [--seed S] [name-filter]
#
# runs tests/stress/pg_tenants_stress.py on such a cluster instead (make
# stress): 16 racing migrate_apply_each over the same 200 tenant schemas.
set -u
STRESS=tests/stress/pg_stress.py
if [ "${1:-}" = "--tenants" ]; then
	shift
	STRESS=tests/stress/pg_tenants_stress.py
fi
cd "$(dirname "$0")/../.."
. tests/pg/lib.sh

PORT=${MIGRATE_PG_STRESS_PORT:-5496}

cleanup() {
	pg_stop
	rm -f "${BUILD_LOG:-}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BUILD_LOG=$(mktemp)
if ! make -s -C pg_ext PG_CONFIG="$PG_CONFIG" >"$BUILD_LOG" 2>&1; then
	cat "$BUILD_LOG"
	echo "not ok 1 - pg-stress: pg_ext builds with -Wall -Wextra -Werror"
	exit 1
fi
if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
	if ! make -s -C pg_ext PG_CONFIG="$PG_CONFIG" install >"$BUILD_LOG" 2>&1; then
		cat "$BUILD_LOG"
		echo "not ok 1 - pg-stress: pg_ext installs"
		exit 1
	fi
fi

# 64 racers + the barrier holder + monitors, with room to spare.  Later
# lines of postgresql.conf win over lib.sh's.  No autovacuum: it would only
# add noise to the timings of the random kills.
if ! pg_start "port = $PORT" "max_connections = 100" "autovacuum = off" \
	"restart_after_crash = on" "log_min_messages = log"; then
	echo "not ok 1 - pg-stress: a throwaway cluster starts"
	exit 1
fi
export PGPORT=$PORT
export PG_STRESS_TMP=$PG_TMP PG_STRESS_LOG=$PG_TMP/log/server.log PG_STRESS_BIN=$PGBIN
# the migration folders must be readable by the server
umask 022
/usr/bin/python3 "$STRESS" "$@"
