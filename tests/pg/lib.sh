# tests/pg/lib.sh -- a throwaway PostgreSQL cluster for the tests and the
# benchmark; sourced by tests/pg/run.sh and tests/bench/pg_bench.sh.
#
#   pg_start [extra postgresql.conf lines...]   initdb + start; sets PGHOST,
#                                                PGPORT, PGUSER, PGDATABASE,
#                                                PG_TMP (a scratch folder the
#                                                server can read)
#   pg_stop                                      stop it and remove PG_TMP
#   as_owner cmd...                              run cmd as the cluster owner
#
# The server runs as an unprivileged user: initdb refuses root, so when the
# script runs as root the cluster belongs to "nobody".  It listens on a
# Unix socket in its own folder only (listen_addresses = ''), so it can
# neither clash with nor reach another server.

# PG_CONFIG picks the server (default: pg_config on PATH); a private copy
# made by tests/pg/devcopy.sh lets several checkouts test at once, each with
# its own MIGRATE_PG_PORT (default 5499).
PG_CONFIG=${PG_CONFIG:-pg_config}
export PG_CONFIG
PGBIN=$("$PG_CONFIG" --bindir)
PG_PORT=${MIGRATE_PG_PORT:-5499}
PG_TMP=
PG_OWNER=$(id -un)
PG_STARTED=0

as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$PG_OWNER" -- "$@"
	else
		"$@"
	fi
}

pg_start() {
	PG_TMP=$(mktemp -d /tmp/migrate-pg.XXXXXX)
	chmod 755 "$PG_TMP"
	if [ "$(id -u)" = 0 ]; then
		PG_OWNER=nobody
	fi
	# data, socket and logs belong to the owner; the rest of PG_TMP to us
	mkdir -p "$PG_TMP/data" "$PG_TMP/sock" "$PG_TMP/log"
	chmod 700 "$PG_TMP/data"
	if [ "$(id -u)" = 0 ]; then
		chown "$PG_OWNER" "$PG_TMP/data" "$PG_TMP/sock" "$PG_TMP/log"
	fi
	as_owner "$PGBIN/initdb" -D "$PG_TMP/data" -U "$PG_OWNER" --auth=trust \
		--encoding=UTF8 --locale=C.UTF-8 >"$PG_TMP/log/initdb.log" 2>&1 || {
		cat "$PG_TMP/log/initdb.log" >&2
		return 1
	}
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$PG_TMP/sock'"
		echo "port = $PG_PORT"
		echo "max_connections = 80"
		echo "fsync = off"
		echo "full_page_writes = off"
		echo "logging_collector = off"
		for line in "$@"; do echo "$line"; done
	} >>"$PG_TMP/data/postgresql.conf"
	as_owner "$PGBIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/log/server.log" -w \
		-t 60 start >/dev/null || {
		cat "$PG_TMP/log/server.log" >&2
		return 1
	}
	PG_STARTED=1
	export PGHOST="$PG_TMP/sock" PGPORT=$PG_PORT PGUSER="$PG_OWNER"
	export PGDATABASE=postgres
}

pg_stop() {
	if [ "$PG_STARTED" = 1 ]; then
		as_owner "$PGBIN/pg_ctl" -D "$PG_TMP/data" -m fast -w stop \
			>/dev/null 2>&1 ||
			as_owner "$PGBIN/pg_ctl" -D "$PG_TMP/data" -m immediate -w stop \
				>/dev/null 2>&1
		PG_STARTED=0
	fi
	if [ -n "$PG_TMP" ] && [ -z "${KEEP_PG_TMP:-}" ]; then
		rm -rf "$PG_TMP"
	fi
}
