#!/usr/bin/env bash
# Runs every test suite and ends with one line "N passed, N failed".
#   core      plain C unit tests of common/ (fake host, ASan/UBSan)
#   sqlite    the extension through the real sqlite3 shell and Python's sqlite3
#   layouts   every migration layout through the same (tests/sqlite/test_layouts.py)
#   adopt     taking over each other tool's history (tests/sqlite/test_adopt.py)
#   badinput  every bad folder, file name and content, with its exact error and
#             the database unchanged (tests/sqlite/test_badinput.py)
#   ops       validate, repair, plan, script, lock options (tests/sqlite/test_ops.py)
#   outside   migrations run outside a transaction, resumed after a failure
#             (tests/sqlite/test_outside.py)
#   data      the folder sent as data: archives and JSON through the sqlite3 shell
#             and Python (tests/sqlite/test_data.py)
#   cli       bin/migrate on SQLite: each command, new in every layout, make install
#             (tests/sqlite/test_cli.py; its PostgreSQL side: tests/pg/data_forms.sh)
#   attacks   the attack catalogue: planted views, triggers, generated
#             columns, shadowing tables, lock files (tests/sqlite/test_attacks.py;
#             PostgreSQL's part is tests/pg/t/14_attacks.sql)
#   impact    migrate_impact and the impact policy (tests/sqlite/test_impact.py;
#             PostgreSQL's part is tests/pg/impact.sh and t/15_impact.sql)
#   tenants   schema=S on every function, migrate_apply_each and
#             migrate_status_each (tests/sqlite/test_tenants.py)
#   *-asan    the same suites with the ASan/UBSan build of the extension
#   stress    64 racing processes, kill -9 at every statement boundary and at
#             random moments, cancel, busy timeouts (tests/stress/sqlite_stress.py;
#             --short here, make stress runs --long)
#   oom       the allocation-failure sweep through the real SQLite (tests/sqlite/oom.c)
#   fuzz      libFuzzer on the name, version and section parsers and the planner, 10 s each
#             (make fuzz runs them longer)
#   pg        the PostgreSQL extension against a throwaway cluster (tests/pg/run.sh)
#   pg-stress 64 sessions released by a barrier, kill -9 of the backend at every
#             crash point and at random moments, statement_timeout, cancel and
#             terminate, on a cluster of its own (tests/stress/pg_stress.sh;
#             --short here, make stress runs --long)
# Each suite prints TAP lines ("ok ..." / "not ok ..."); this script counts them.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3            # Debian's python3: its sqlite3 module can load extensions
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
status=0

suite() {                      # suite NAME COMMAND...
  local name=$1; shift
  echo "# --- $name: $*"
  "$@" > "$log/$name.out" 2>&1
  local rc=$?
  cat "$log/$name.out"
  if [ $rc -ne 0 ] && ! grep -q '^not ok' "$log/$name.out"; then
    echo "not ok - $name exited with status $rc"
    echo "not ok - $name exited with status $rc" >> "$log/$name.out"
  fi
  [ $rc -eq 0 ] || status=1
}

suite core ./build/test_core
suite sqlite "$PY" tests/sqlite/test_sqlite.py build/migrate
suite layouts "$PY" tests/sqlite/test_layouts.py build/migrate
suite adopt "$PY" tests/sqlite/test_adopt.py build/migrate
suite badinput "$PY" tests/sqlite/test_badinput.py build/migrate
suite ops "$PY" tests/sqlite/test_ops.py build/migrate
suite outside "$PY" tests/sqlite/test_outside.py build/migrate
suite attacks "$PY" tests/sqlite/test_attacks.py build/migrate
suite data "$PY" tests/sqlite/test_data.py build/migrate
suite cli "$PY" tests/sqlite/test_cli.py build/migrate
suite impact "$PY" tests/sqlite/test_impact.py build/migrate
suite tenants "$PY" tests/sqlite/test_tenants.py build/migrate
asan=$(gcc -print-file-name=libasan.so)
san=(env LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
     UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
suite sqlite-asan "${san[@]}" "$PY" tests/sqlite/test_sqlite.py build/asan/migrate
suite layouts-asan "${san[@]}" "$PY" tests/sqlite/test_layouts.py build/asan/migrate
suite adopt-asan "${san[@]}" "$PY" tests/sqlite/test_adopt.py build/asan/migrate
suite badinput-asan "${san[@]}" "$PY" tests/sqlite/test_badinput.py build/asan/migrate
suite ops-asan "${san[@]}" "$PY" tests/sqlite/test_ops.py build/asan/migrate
suite outside-asan "${san[@]}" "$PY" tests/sqlite/test_outside.py build/asan/migrate
suite attacks-asan "${san[@]}" "$PY" tests/sqlite/test_attacks.py build/asan/migrate
suite data-asan "${san[@]}" "$PY" tests/sqlite/test_data.py build/asan/migrate
suite impact-asan "${san[@]}" "$PY" tests/sqlite/test_impact.py build/asan/migrate
suite tenants-asan "${san[@]}" "$PY" tests/sqlite/test_tenants.py build/asan/migrate
suite stress "$PY" tests/stress/sqlite_stress.py build/migrate --short
oomdir=$(mktemp -d)
printf 'CREATE TABLE a(x);\nINSERT INTO a VALUES (1);\n' > "$oomdir/1_a.up.sql"
printf 'DROP TABLE a;\n' > "$oomdir/1_a.down.sql"
printf 'CREATE TABLE b(x);\nCREATE TRIGGER tb AFTER INSERT ON b BEGIN SELECT 1; END;\n' > "$oomdir/2_b.up.sql"
printf 'DROP TABLE b;\n' > "$oomdir/2_b.down.sql"
suite oom ./build/oom build/migrate "$oomdir"
rm -rf "$oomdir"
suite fuzz tests/fuzz/run.sh 10
if [ -x tests/pg/run.sh ] && [ -z "${SKIP_PG:-}" ]; then     # SKIP_PG=1: SQLite only
  suite pg tests/pg/run.sh
fi
if [ -x tests/pg/run.sh ] && [ -z "${SKIP_PG:-}" ]; then
  suite pg-stress tests/stress/pg_stress.sh --short
fi

passed=$(cat "$log"/*.out | grep -cE '^[[:space:]]*ok\b')
failed=$(cat "$log"/*.out | grep -cE '^[[:space:]]*not ok\b')
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ $status -eq 0 ]
