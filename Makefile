# migrate -- schema migrations applied from inside the database.
#
#   make            build the SQLite extension (build/migrate.so)
#   make demo       build it and apply examples/blog in the sqlite3 shell
#   make check      install what is missing, build everything, run every test
#   make bench      benchmarks against the floor (sqlite3 / psql running the same SQL)
#                   and against dbmate, sqitch and postgrator (tests/bench/peers.sh)
#   make stress     the reliability suites at length (SQLite ~6 min, PostgreSQL ~15 min)
#   make fuzz       libFuzzer on the parsers, 5 minutes per target
#   make pg         build the PostgreSQL extension (pg_ext/, PGXS)
#   make install    bin/migrate into $(PREFIX)/bin, and the SQLite extension
#                   where the sqlite3 shell's .load migrate finds it (the
#                   system's library folder); make -C pg_ext install does
#                   PostgreSQL's
#
# Layout: common/ is the engine-agnostic core, sqlite_ext/ and pg_ext/ the
# adapters, sql/ the PostgreSQL install scripts, tests/ every test.

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror
STD     := -std=c11 -D_POSIX_C_SOURCE=200809L
BUILD   := build
PG_CONFIG ?= pg_config

CORE_SRC := $(wildcard common/*.c)
CORE_HDR := $(wildcard common/*.h)
SQ_SRC   := $(wildcard sqlite_ext/*.c)
SQ_HDR   := $(wildcard sqlite_ext/*.h)
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_HDR := $(wildcard tests/unit/*.h)
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

.PHONY: all demo check deps bench fuzz pg clean stress install uninstall

# make install: dlopen("migrate.so") -- what .load migrate asks for -- looks
# in the system's library folders, not in /usr/local/lib (ldconfig caches
# only lib*.so names), so the extension goes to /usr/lib/<multiarch>.
PREFIX  ?= /usr/local
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
SQLITE_EXT_DIR ?= /usr/lib$(if $(MULTIARCH),/$(MULTIARCH))

all: $(BUILD)/migrate.so

$(BUILD)/migrate.so: $(CORE_SRC) $(CORE_HDR) $(SQ_SRC) $(SQ_HDR) | $(BUILD)
	$(CC) $(STD) $(WARN) $(CFLAGS) -fPIC -shared -o $@ $(CORE_SRC) $(SQ_SRC) -lz -larchive

# The same extension built with AddressSanitizer and UBSan, for the tests.
$(BUILD)/asan/migrate.so: $(CORE_SRC) $(CORE_HDR) $(SQ_SRC) $(SQ_HDR)
	@mkdir -p $(BUILD)/asan
	$(CC) $(STD) $(WARN) -O1 -g $(SAN) -fPIC -shared -o $@ $(CORE_SRC) $(SQ_SRC) -lz -larchive

# Core unit tests: plain C against a fake host, with the sanitizers.
$(BUILD)/test_core: $(UNIT_SRC) $(UNIT_HDR) $(CORE_SRC) $(CORE_HDR) | $(BUILD)
	$(CC) $(STD) $(WARN) -O1 -g $(SAN) -Icommon -o $@ $(UNIT_SRC) $(CORE_SRC) -lz -larchive

# The allocation-failure sweep through the real SQLite (tests/sqlite/oom.c).
$(BUILD)/oom: tests/sqlite/oom.c | $(BUILD)
	$(CC) $(STD) $(WARN) -O1 -g -o $@ tests/sqlite/oom.c -lsqlite3

$(BUILD):
	@mkdir -p $(BUILD)

demo:
	@tests/deps.sh demo
	@$(MAKE) --no-print-directory all
	@rm -f $(BUILD)/demo.db
	sqlite3 $(BUILD)/demo.db \
	  ".load ./$(BUILD)/migrate" \
	  "SELECT 'applied ' || migrate_apply('examples/blog') || ' migrations';" \
	  "SELECT 'applied ' || migrate_apply('examples/blog') || ' migrations on the second call';" \
	  ".mode box" \
	  "SELECT version, name, state, applied_at FROM migrate_status('examples/blog');" \
	  "SELECT a.name AS author, p.title FROM posts p JOIN authors a ON a.id = p.author_id ORDER BY p.id;"

fuzz:
	@tests/deps.sh all
	@tests/fuzz/run.sh $${FUZZ_SECONDS:-300}

# 64 racing processes for 100 rounds per journal mode, kill -9 at every
# statement boundary and at many random moments, cancel and busy timeouts
# (make check runs the same with --short); then 16 racing fan-outs over the
# same 200 tenants, SQLite files and PostgreSQL schemas (issue 22).
stress:
	@tests/deps.sh all
	@$(MAKE) --no-print-directory all
	@/usr/bin/python3 tests/stress/sqlite_stress.py $(BUILD)/migrate --long
	@/usr/bin/python3 tests/stress/sqlite_tenants_stress.py $(BUILD)/migrate 16 200
	@tests/stress/pg_stress.sh --long
	@tests/stress/pg_stress.sh --tenants

pg:
	@tests/deps.sh pg
	$(MAKE) -C pg_ext PG_CONFIG=$(PG_CONFIG)

deps:
	@tests/deps.sh all

check: deps
	@$(MAKE) --no-print-directory all $(BUILD)/asan/migrate.so $(BUILD)/test_core $(BUILD)/oom
	@tests/run.sh

bench:
	@tests/deps.sh all
	@$(MAKE) --no-print-directory all
	@tests/bench/sqlite_bench.sh
	@if [ -x tests/bench/pg_bench.sh ]; then tests/bench/pg_bench.sh; fi
	@tests/bench/impact_bench.sh 1000 5
	@tests/bench/tenants_bench.sh 1000 20
	@tests/bench/pg_tenants_bench.sh 1000 20
	@tests/bench/peers.sh 100,1000 5

install: $(BUILD)/migrate.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SQLITE_EXT_DIR)
	install -m 755 bin/migrate $(DESTDIR)$(PREFIX)/bin/migrate
	install -m 644 $(BUILD)/migrate.so $(DESTDIR)$(SQLITE_EXT_DIR)/migrate.so

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/migrate $(DESTDIR)$(SQLITE_EXT_DIR)/migrate.so

clean:
	rm -rf $(BUILD)
	-$(MAKE) -C pg_ext clean PG_CONFIG=$(PG_CONFIG) >/dev/null 2>&1
