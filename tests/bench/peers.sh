#!/usr/bin/env bash
# tests/bench/peers.sh -- migrate side by side with the client tools users
# switch from: dbmate, sqitch and postgrator, on SQLite and PostgreSQL.
#
#   tests/bench/peers.sh [SIZES] [RUNS]
#       SIZES  migrations per folder, e.g. "100 1000 10000" (the default) or 100,1000
#       RUNS   runs per size, one number or one per size (default "5 5 3")
#
# On a fresh Debian 12 machine, as root: installs what is missing (Debian:
# PostgreSQL, sqlite3, sqitch and its DBD drivers; npm, into build/peers:
# dbmate, postgrator-cli with pg and sqlite3, at the versions pinned below),
# builds the SQLite extension, installs the PostgreSQL one, starts a
# throwaway cluster (tests/pg/lib.sh: fsync off for every tool, autovacuum
# off) and runs tests/bench/peers_bench.py, which prints a markdown table
# (also kept in build/peers/last.md).  About 25 minutes with the defaults.
#
# Environment:
#   PEERS_NO_INSTALL=1   neither build nor install our extensions: use the
#                        installed PostgreSQL extension and PEERS_EXT
#   PEERS_EXT            the SQLite extension without .so (build/migrate)
#   PEERS_PGPORT         the cluster's port (5498; its socket is in its own
#                        temp folder and it does not listen on TCP)
#   PEERS_ENGINES        "sqlite pg" (default), or one of them
#   PEERS_BUDGET, PEERS_MAX_OP, PEERS_TIMEOUT   see peers_bench.py
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-pg_config}
cd "$(dirname "$0")/../.."
ROOT=$PWD

SIZES=$(echo "${1:-100 1000 10000}" | tr ',' ' ')
RUNS=$(echo "${2:-5 5 3}" | tr ',' ' ')

# The versions measured.  Debian 12 has one sqitch (1.3.1-1).
DBMATE_VERSION=2.36.0
POSTGRATOR_CLI_VERSION=9.1.1
PG_NODE_VERSION=8.16.3
SQLITE3_NODE_VERSION=5.1.7
SQITCH_DEB_VERSION=1.3.1-1
PEERS=$ROOT/build/peers

log() { echo "[peers $(date +%H:%M:%S)] $*" >&2; }

# ---- Debian packages -------------------------------------------------------
tests/deps.sh all
want=(sqitch libdbd-sqlite3-perl libdbd-pg-perl sqlite3 time g++ make python3)
command -v npm >/dev/null || want+=(nodejs npm)
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	log "installing ${missing[*]}"
	$sudo apt-get update -qq
	pinned=()
	for p in "${missing[@]}"; do
		if [ "$p" = sqitch ] && apt-cache show "sqitch=$SQITCH_DEB_VERSION" >/dev/null 2>&1; then
			pinned+=("sqitch=$SQITCH_DEB_VERSION")
		else
			pinned+=("$p")
		fi
	done
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${pinned[@]}" >/dev/null
fi

# ---- npm packages, into build/peers ------------------------------------------
npm_version() {	# the installed version of a package in build/peers, or nothing
	node -e "try { console.log(require('$PEERS/node_modules/$1/package.json').version) } catch (e) {}"
}
mkdir -p "$PEERS"
if [ "$(npm_version dbmate)" != "$DBMATE_VERSION" ] ||
	[ "$(npm_version postgrator-cli)" != "$POSTGRATOR_CLI_VERSION" ] ||
	[ "$(npm_version pg)" != "$PG_NODE_VERSION" ]; then
	log "npm: dbmate@$DBMATE_VERSION postgrator-cli@$POSTGRATOR_CLI_VERSION pg@$PG_NODE_VERSION"
	npm install --prefix "$PEERS" --save-exact --no-audit --no-fund --loglevel=error \
		"dbmate@$DBMATE_VERSION" "postgrator-cli@$POSTGRATOR_CLI_VERSION" "pg@$PG_NODE_VERSION" >&2
fi
# postgrator's SQLite driver is a native module: without a prebuilt binary it
# is compiled with node-gyp, which needs Node's headers (here: /usr/include/node).
if [ "$(npm_version sqlite3)" != "$SQLITE3_NODE_VERSION" ]; then
	log "npm: sqlite3@$SQLITE3_NODE_VERSION (for postgrator on SQLite; may compile, ~1 min)"
	nodedir=()
	[ -f /usr/include/node/node_api.h ] && nodedir=(--nodedir=/usr)
	npm install --prefix "$PEERS" --save-exact --no-audit --no-fund --loglevel=error \
		"${nodedir[@]}" "sqlite3@$SQLITE3_NODE_VERSION" >&2 ||
		log "sqlite3 for node did not install: postgrator runs on PostgreSQL only"
fi
arch=$(node -p process.arch)
export PEERS_DBMATE=$PEERS/node_modules/@dbmate/linux-$arch/bin/dbmate
export PEERS_POSTGRATOR=$PEERS/node_modules/.bin/postgrator
export PEERS_SQITCH=$(command -v sqitch)
"$PEERS_DBMATE" --version >/dev/null
"$PEERS_POSTGRATOR" --version >/dev/null
PEERS_POSTGRATOR_SQLITE=1
(cd "$PEERS" && node -e "require('sqlite3')" 2>/dev/null) || PEERS_POSTGRATOR_SQLITE=0
export PEERS_POSTGRATOR_SQLITE

# ---- our extensions -----------------------------------------------------------
export PEERS_EXT=${PEERS_EXT:-$ROOT/build/migrate}
if [ -z "${PEERS_NO_INSTALL:-}" ]; then
	make -s all >/dev/null
	make -s -C pg_ext PG_CONFIG="$PG_CONFIG" >/dev/null
	if [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
		make -s -C pg_ext PG_CONFIG="$PG_CONFIG" install >/dev/null
	fi
fi
[ -f "$PEERS_EXT.so" ] || { echo "peers: no $PEERS_EXT.so (make)" >&2; exit 1; }

# ---- the cluster --------------------------------------------------------------
. tests/pg/lib.sh
trap pg_stop EXIT
trap 'exit 130' INT TERM
PORT=${PEERS_PGPORT:-5498}
# Room for 10,000 migrations in one transaction (~5 relation locks each);
# no autovacuum or checkpoint in the middle of a measurement.  A later
# "port" line overrides lib.sh's.
pg_start "port = $PORT" "max_locks_per_transaction = 1024" "shared_buffers = 256MB" \
	"autovacuum = off" "max_wal_size = 8GB" "checkpoint_timeout = 1h"
export PGPORT=$PORT
psql -X -q -c "SELECT 1" >/dev/null

umask 022
export PEERS_WORK=$PG_TMP/peers
mkdir -p "$PEERS_WORK"
chmod 755 "$PEERS_WORK"
# psql itself: Debian's /usr/bin/psql is a Perl wrapper that costs ~60 ms a start
export PEERS_PSQL=$PGBIN/psql
cat >"$PEERS_WORK/sqitch-user.conf" <<EOF
[engine "pg"]
	client = $PEERS_PSQL
[engine "sqlite"]
	client = $(command -v sqlite3)
EOF
export SQITCH_USER_CONFIG=$PEERS_WORK/sqitch-user.conf SQITCH_SYSTEM_CONFIG=$PEERS_WORK/sqitch-user.conf
export SQITCH_FULLNAME=Bench SQITCH_EMAIL=bench@example.invalid
export PEERS_SIZES=$SIZES PEERS_RUNS=$RUNS PEERS_OUT=$PEERS

sqitch_v=$(sqitch --version | awk '{print $NF}' | tr -d v)
sqitch_deb=$(dpkg-query -W -f='${Version}' sqitch)
export PEERS_VERSIONS="dbmate $("$PEERS_DBMATE" --version | awk '{print $NF}') (Go binary from npm),\
 sqitch $sqitch_v (Debian $sqitch_deb),\
 postgrator-cli $(npm_version postgrator-cli) (postgrator $(npm_version postgrator), pg $(npm_version pg),\
 sqlite3 $(npm_version sqlite3 || true)), Node $(node --version),\
 SQLite $(sqlite3 --version | awk '{print $1}'), PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}')\
 (fsync off, full_page_writes off, autovacuum off: the same for every tool)"

/usr/bin/python3 tests/bench/peers_bench.py | tee "$PEERS/last.md"
