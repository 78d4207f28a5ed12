#!/usr/bin/env bash
# Installs the Debian packages the project needs, only those missing.
#   tests/deps.sh demo   what `make demo` needs (compiler, SQLite, zlib, libarchive)
#   tests/deps.sh pg     what `make pg` needs (the server, its headers, zlib, libarchive)
#   tests/deps.sh all    everything `make check` and `make bench` need
set -euo pipefail
PGVER=${PGVER:-15}
demo=(gcc make libc6-dev libsqlite3-dev sqlite3 zlib1g-dev libarchive-dev)
all=("${demo[@]}" python3 valgrind procps time clang libclang-rt-14-dev
     "postgresql-$PGVER" "postgresql-client-$PGVER" "postgresql-server-dev-$PGVER"
     "postgresql-$PGVER-pgtap" "postgresql-$PGVER-cron"
     libtap-parser-sourcehandler-pgtap-perl libipc-run-perl python3-psycopg2 shellcheck)
pg=(gcc make libc6-dev zlib1g-dev libarchive-dev "postgresql-$PGVER" "postgresql-server-dev-$PGVER")
case "${1:-all}" in
  demo) want=("${demo[@]}") ;;
  pg) want=("${pg[@]}") ;;
  all) want=("${all[@]}") ;;
  *) echo "usage: $0 demo|pg|all" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
