#!/usr/bin/env bash
# tests/pg/devcopy.sh DIR -- a private, relocated copy of this machine's
# PostgreSQL (server, extensions such as pgTAP and pg_cron, PGXS), so that
# several checkouts can build, install and test the extension at once
# without installing into the system's server.  PostgreSQL finds its
# library and share folders relative to its binaries; the headers stay the
# system's.  Then, in a checkout:
#
#   PG_CONFIG=DIR/usr/lib/postgresql/15/bin/pg_config MIGRATE_PG_PORT=5601 \
#     MIGRATE_PG_STRESS_PORT=5602 tests/pg/run.sh
set -euo pipefail
dir=${1:?usage: $0 DIR}
src_bin=$(pg_config --bindir)
src_lib=$(dirname "$src_bin")
share=$(pg_config --sharedir)
mkdir -p "$dir/$(dirname "$src_lib")" "$dir/$(dirname "$share")"
cp -a "$src_lib" "$dir/$(dirname "$src_lib")/"
cp -a "$share" "$dir/$(dirname "$share")/"
[ -e "$dir/usr/include" ] || ln -s /usr/include "$dir/usr/include"
"$dir$src_bin/pg_config" --sharedir
