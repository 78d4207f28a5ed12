#!/usr/bin/env bash
# make bench, SQLite part: see sqlite_bench.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 tests/bench/sqlite_bench.py "$@"
