/*
 * test_names.c -- unit tests of reading a folder's names: version order and
 * keys, file and folder names of every layout (Flyway, diesel, dbmate, goose,
 * ...), Flyway's checksum, the SQL scanning helpers, the layout rules through
 * the planner and apply, and the format of file identities.
 */
#define _GNU_SOURCE
#include "test_core.h"

void
test_versions(void)
{
	mig_arena	a;
	mig_host	h;
	fake		f;
	mig_name	n;

	host_init(&h, &f);
	mig_arena_init(&a, &h);
	CHECK(mig_version_cmp("9", "10") < 0, "9 < 10");
	CHECK(mig_version_cmp("10", "11") < 0, "10 < 11");
	CHECK(mig_version_cmp("1.2", "1.10") < 0, "1.2 < 1.10 part by part");
	CHECK(mig_version_cmp("1", "1.0") < 0, "1 sorts before 1.0");
	CHECK(mig_version_key("0") == 0 && mig_version_key("20180114171611") == 20180114171611u &&
		  mig_version_key("999999999999999999") == 999999999999999999u,
		  "a version of up to 18 digits is its own key");
	CHECK(mig_version_key("1000000000000000000") == MIG_NO_KEY &&
		  mig_version_key("1.2") == MIG_NO_KEY && mig_version_key("R__views") == MIG_NO_KEY &&
		  mig_version_key("") == MIG_NO_KEY,
		  "19 digits, several parts, a repeatable: no key, the strings are compared");
	CHECK(mig_parse_name(&a, "000011_x.up.sql", &n) == 1 && strcmp(n.version, "11") == 0,
		  "leading zeros dropped: 000011 -> 11");
	CHECK(mig_parse_name(&a, "0000_zero.up.sql", &n) == 1 && strcmp(n.version, "0") == 0,
		  "all zeros -> 0");
	CHECK(mig_parse_name(&a, "000066_upgrade_posts_v6.0.up.sql", &n) == 1 &&
		  strcmp(n.name, "upgrade_posts_v6.0") == 0 && n.kind == MIG_KIND_UP,
		  "dots inside the name are kept");
	CHECK(mig_parse_name(&a, "3_x.down.sql", &n) == 1 && n.kind == MIG_KIND_DOWN, "down file");
	CHECK(mig_parse_name(&a, "3x.up.sql", &n) == 0, "no underscore: not a migration");
	CHECK(mig_parse_name(&a, "3_x.UP.sql", &n) == 1 && n.layout == MIG_LAYOUT_SINGLE,
		  ".UP.sql is not the up suffix (case-sensitive): a one-file name");
	CHECK(mig_parse_name(&a, "3_x.sql", &n) == 1 && n.layout == MIG_LAYOUT_SINGLE &&
		  strcmp(n.name, "x") == 0, "{version}_{name}.sql: dbmate/goose/sqlx");
	CHECK(mig_parse_name(&a, "V1_2__add_x.sql", &n) == 1 && n.layout == MIG_LAYOUT_FLYWAY &&
		  strcmp(n.version, "1.2") == 0 && strcmp(n.name, "add_x") == 0 && n.kind == MIG_KIND_UP,
		  "Flyway V1_2__ is version 1.2");
	CHECK(mig_parse_name(&a, "V2.010.0__x.sql", &n) == 1 && strcmp(n.version, "2.10") == 0,
		  "Flyway 2.010.0 is 2.10 (leading zeros and trailing zero parts dropped)");
	CHECK(mig_parse_name(&a, "U3__undo.sql", &n) == 1 && n.kind == MIG_KIND_DOWN &&
		  strcmp(n.version, "3") == 0, "Flyway undo is the down file");
	CHECK(mig_parse_name(&a, "R__views.sql", &n) == 1 && n.kind == MIG_KIND_REPEATABLE,
		  "Flyway repeatable recognised");
	CHECK(mig_parse_name(&a, "V1..2__x.sql", &n) == 0 && mig_parse_name(&a, "V__x.sql", &n) == 0 &&
		  mig_parse_name(&a, "V1_x.sql", &n) == 0 && mig_parse_name(&a, "V1.__x.sql", &n) == 0,
		  "malformed Flyway names refused");
	CHECK(mig_parse_dir_name(&a, "2018-01-14-171611_create_users", &n) == 1 &&
		  n.layout == MIG_LAYOUT_DIESEL && strcmp(n.version, "20180114171611") == 0 &&
		  strcmp(n.name, "create_users") == 0, "diesel folder: dashes dropped from the version");
	CHECK(mig_parse_dir_name(&a, "00000000000000_diesel_initial_setup", &n) == 1 &&
		  strcmp(n.version, "0") == 0, "diesel initial setup is version 0");
	CHECK(mig_parse_dir_name(&a, "2018--01_x", &n) == 0 && mig_parse_dir_name(&a, "-1_x", &n) == 0,
		  "malformed diesel names refused");
	CHECK(mig_parse_name(&a, "v3_x.up.sql", &n) == 0, "version must be digits");
	CHECK(mig_parse_name(&a, "3_a\tb.up.sql", &n) == 0, "control characters refused");
	CHECK(mig_parse_name(&a, "3_\xff.up.sql", &n) == 0, "invalid UTF-8 in a name refused");
	CHECK(mig_version_valid("12.0.3") && !mig_version_valid("012") && !mig_version_valid("1..2"),
		  "canonical version check");
	mig_arena_free(&a);
	CHECK(f.live == 0, "arena gave back every byte");
}

/* Flyway's checksum: CRC-32 (zlib's, the same as java.util.zip.CRC32)
 * of the text with line terminators and one leading BOM left out. */
void
test_flyway_checksum(void)
{
	CHECK(mig_flyway_checksum("", 0) == 0, "empty file: 0");
	CHECK(mig_flyway_checksum("a\nb", 3) == -1635563411 &&
		  mig_flyway_checksum("a\r\nb\r\n", 6) == -1635563411 &&
		  mig_flyway_checksum("\xEF\xBB\xBF" "a\rb\n", 7) == -1635563411,
		  "a/b with LF, CRLF, CR and a BOM: crc32(\"ab\") as signed");
	CHECK(mig_flyway_checksum("SELECT 1;\n\nSELECT 2;\n", 21) == (int32_t) crc32(0, (const unsigned char *) "SELECT 1;SELECT 2;", 18),
		  "empty lines add nothing");
}

void
test_sql_helpers(void)
{
	const char *s = "-- c;\n/* BEGIN */\n  begin transaction;";
	size_t		wlen,
				at = mig_first_word(s, strlen(s), 0, &wlen);

	CHECK(wlen == 5 && strncmp(s + at, "begin", 5) == 0, "first word skips comments");
	CHECK(mig_is_txn_control(s + at, wlen), "BEGIN is transaction control (any case)");
	CHECK(!mig_is_txn_control("BEGINS", 6) && !mig_is_txn_control("CREATE", 6),
		  "other words are not");
	CHECK(mig_line_at(s, strlen(s), at) == 3, "line of an offset");
	{
		const char *n = "/* a /* b */ c; */ SELECT 1;";

		at = mig_first_word(n, strlen(n), 1, &wlen);
		CHECK(strncmp(n + at, "SELECT", wlen) == 0 && wlen == 6,
			  "nested comments (PostgreSQL) are skipped whole");
		at = mig_first_word(n, strlen(n), 0, &wlen);
		CHECK(strncmp(n + at, "c", wlen) == 0 && wlen == 1,
			  "SQLite ends a comment at the first star-slash");
	}
	CHECK(mig_line_at("a\r\nb", 4, 3) == 2, "CRLF counts one line");
}

/* Each tool's names and order (mig_layout.c): dbmate's loose names, goose
 * Go files, MongooseIM's scripts, memos' version folders, diesel's text
 * keys. */
void
test_layout_rules(void)
{
	mig_arena	a;
	mig_host	h;
	fake		f;
	mig_name	n;
	int			oom;
	char	   *k;

	host_init(&h, &f);
	mig_arena_init(&a, &h);
	CHECK(mig_parse_name(&a, "00000000000000-initial-schema.sql", &n) == 1 &&
		  n.layout == MIG_LAYOUT_SINGLE && n.dbmate && strcmp(n.version, "0") == 0 &&
		  strcmp(n.name, "initial-schema") == 0 && n.width == 14,
		  "dbmate takes ^(\\d+).*\\.sql$: 00000000000000-initial-schema.sql is version 0");
	CHECK(mig_parse_name(&a, "20240101120000.sql", &n) == 1 && n.dbmate && strcmp(n.name, "") == 0,
		  "and a bare 20240101120000.sql");
	CHECK(mig_parse_name(&a, "2-b.up.sql", &n) == 0 && mig_parse_name(&a, "2.down.sql", &n) == 0,
		  "a mistyped golang-migrate name is not taken as dbmate's");
	CHECK(mig_parse_name(&a, "V1_1__x.SQL", &n) == 1 && n.layout == MIG_LAYOUT_FLYWAY &&
		  strcmp(n.version, "1.1") == 0, "Flyway's .sql suffix in any case");
	CHECK(mig_parse_name(&a, "00005_backfill.go", &n) == 1 && n.go && n.layout == MIG_LAYOUT_SINGLE &&
		  strcmp(n.version, "5") == 0 && strcmp(n.name, "backfill") == 0, "goose Go migration");
	CHECK(mig_parse_name(&a, "0_x.go", &n) == 0 && mig_parse_name(&a, "00005_x_test.go", &n) == 0 &&
		  mig_parse_name(&a, "helpers.go", &n) == 0 && mig_parse_name(&a, "5x.go", &n) == 0,
		  "goose's version 0, test files and helpers are not migrations");
	CHECK(mig_parse_name(&a, "pgsql_4.2.0_5.0.0.sql", &n) == 1 && n.layout == MIG_LAYOUT_FROMTO &&
		  strcmp(n.version, "5") == 0 && strcmp(n.from, "4.2") == 0 &&
		  strcmp(n.engine, "postgres") == 0, "MongooseIM: pgsql_4.2.0_5.0.0.sql upgrades to 5.0.0");
	CHECK(mig_parse_name(&a, "mssql_5.1.0_5.10.0.sql", &n) == 1 && strcmp(n.version, "5.10") == 0 &&
		  strcmp(n.engine, "mssql") == 0, "an mssql_ twin");
	CHECK(mig_parse_name(&a, "pgsql_6.2.0_x.x.x.sql", &n) == 0 &&
		  mig_parse_name(&a, "notes_1.0_2.0.sql", &n) == 0 && mig_parse_name(&a, "pgsql_1.0.sql", &n) == 0,
		  "an unknown release, an unknown engine, no from: not MongooseIM scripts");
	CHECK(mig_version_cmp("5.1", "5.10") < 0 && mig_version_cmp("5", "5.1") < 0,
		  "releases in order: 5.0.0 < 5.1.0 < 5.10.0");
	CHECK(mig_baseline_file("pg.sql", MIG_LAYOUT_FROMTO) && mig_baseline_file("azuresql.sql", MIG_LAYOUT_FROMTO) &&
		  mig_baseline_file("LATEST.sql", MIG_LAYOUT_VERDIR) && !mig_baseline_file("pg.sql", MIG_LAYOUT_UPDOWN) &&
		  !mig_baseline_file("LATEST.sql", MIG_LAYOUT_FROMTO), "fresh-install files, beside their layout only");
	CHECK(mig_verdir_name("0.22") && mig_verdir_name("1") && !mig_verdir_name("0.22a") &&
		  !mig_verdir_name("0..2") && !mig_verdir_name(".2"), "version folder names");
	CHECK(mig_parse_verdir_file(&a, "0.22", "01__memo_tags.sql", &n) == 1 &&
		  n.layout == MIG_LAYOUT_VERDIR && strcmp(n.version, "0.22.2") == 0 &&
		  strcmp(n.name, "memo_tags") == 0, "memos: 0.22/01__memo_tags.sql is 0.22.2");
	CHECK(mig_parse_verdir_file(&a, "1.0", "00__x.sql", &n) == 1 && strcmp(n.version, "1.0.1") == 0,
		  "a version folder's zero part stays (no trailing zero: it round-trips)");
	CHECK(mig_parse_verdir_file(&a, "0.22", "1_x.sql", &n) == 0 &&
		  mig_parse_verdir_file(&a, "0.22", "x__y.sql", &n) == 0, "not NN__name.sql");
	CHECK(mig_parse_dir_name(&a, "2024-03-13_170000_users_cascade", &n) == 1 &&
		  strcmp(n.version, "20240313") == 0 && strcmp(n.key, "20240313") == 0,
		  "diesel: the version is the name up to its first '_'");
	CHECK(mig_parse_dir_name(&a, "00000000000000_diesel_initial_setup", &n) == 1 &&
		  strcmp(n.version, "0") == 0 && strcmp(n.key, "00000000000000") == 0,
		  "diesel's key keeps the zeros; its version, as ever, does not");
	CHECK(mig_order_cmp(MIG_ORDER_DIESEL, "20240313", "20240313", "20240306170000", "20240306170000") > 0 &&
		  mig_version_cmp("20240313", "20240306170000") < 0,
		  "diesel compares text: 20240313 after 20240306170000, the larger number");
	CHECK(mig_order_cmp(MIG_ORDER_VERSION, "x", "9", "a", "10") < 0, "other tools compare numbers");
	k = mig_order_key(&a, MIG_ORDER_DIESEL, "postgres/2024-03-13_170000_x/up.sql", &oom);
	CHECK(k && strcmp(k, "20240313") == 0 && !oom, "a recorded diesel file gives its key");
	k = mig_order_key(&a, MIG_ORDER_NAME, "sqlite/10_b.sql", &oom);
	CHECK(k && strcmp(k, "10_b.sql") == 0, "a recorded dbmate file gives its name");
	CHECK(mig_order_key(&a, MIG_ORDER_DIESEL, "10_b.sql", &oom) == NULL && !oom &&
		  mig_order_key(&a, MIG_ORDER_VERSION, "x/up.sql", &oom) == NULL,
		  "no key from a file that gives none");
	CHECK(mig_engine_named("pgsql", 5) && strcmp(mig_engine_named("pgsql", 5), "postgres") == 0 &&
		  strcmp(mig_engine_named("sqlite3", 7), "sqlite") == 0 && mig_engine_named("docs", 4) == NULL,
		  "engine names");
	mig_arena_free(&a);
	CHECK(f.live == 0, "arena gave back every byte");
}

/* The same through the planner and apply, against the fake host. */
void
test_layout_folders(void)
{
	mig_host	h;
	fake		f;
	int64_t		n = -1;
	char		sub[600];

	fresh();
	host_init(&h, &f);
	h.engine = "sqlite";
	/* diesel: text order, and a version missing from the folder placed by
	 * the key of the file it recorded */
	snprintf(sub, sizeof(sub), "%s/2024-03-06-170000_a", dir);
	mkdir(sub, 0755);
	snprintf(sub, sizeof(sub), "%s/2024-03-13_170000_b", dir);
	mkdir(sub, 0755);
	PUT("2024-03-06-170000_a/up.sql", "SELECT 1;");
	PUT("2024-03-13_170000_b/up.sql", "SELECT 2;");
	CHECK(apply(&h, &n) == MIG_OK && n == 2 && strcmp(f.log, "20240306170000:up|20240313:up|") == 0,
		  "diesel runs 20240306170000 before 20240313: %s", f.log);
	snprintf(sub, sizeof(sub), "%s/2024-03-10-000000_c", dir);
	mkdir(sub, 0755);
	PUT("2024-03-10-000000_c/up.sql", "SELECT 3;");
	CHECK(apply(&h, &n) == MIG_ERROR && strstr(err.message, "pending migration 20240310000000") &&
		  strstr(err.message, "older than the latest applied migration 20240313"),
		  "a pending one before the last applied, in diesel's order, is out of order: %s", err.message);
	host_done(&f);

	/* goose: apply stops before a Go migration, keeping what it ran */
	fresh();
	host_init(&h, &f);
	PUT("00001_a.sql", "-- +goose Up\nSELECT 1;\n");
	PUT("00002_b.go", "package m\n");
	PUT("00003_c.sql", "-- +goose Up\nSELECT 3;\n");
	f.log[0] = '\0';
	CHECK(apply(&h, &n) == MIG_ERROR && strcmp(f.log, "1:up|") == 0 && f.commits == 1 &&
		  f.rollbacks == 0 && f.n == 1,
		  "apply ran 1, committed it, and stopped before the Go migration: %s", f.log);
	CHECK(strstr(err.message, "migration 2 (00002_b.go) is a goose Go migration") &&
		  strstr(err.hint, "migrate_record") && strcmp(err.sqlstate, "55000") == 0,
		  "naming it and how to go on: %s / %s", err.message, err.hint);
	CHECK(apply(&h, &n) == MIG_ERROR && f.n == 1, "and again, running nothing");
	host_done(&f);

	/* MongooseIM with no engine: every script is another engine's */
	fresh();
	host_init(&h, &f);
	PUT("sqlite_1.0_2.0.sql", "SELECT 1;");
	CHECK(apply(&h, &n) == MIG_ERROR && strstr(err.message, "upgrade scripts for other engines"),
		  "a host with no engine has no MongooseIM scripts of its own: %s", err.message);
	h.engine = "sqlite";
	CHECK(apply(&h, &n) == MIG_OK && n == 1, "with its engine, they are its own");
	CHECK(f.live == 0, "no memory held");
	host_done(&f);
}

/* Identities are stored in histories: the format must not drift. */
void
test_file_id_format(void)
{
	mig_text	t;
	char		id[MIG_FILE_ID_MAX],
				want[MIG_FILE_ID_MAX];

	memset(&t, 0, sizeof(t));
	t.dev = UINT64_MAX;
	t.ino = 0;
	t.len = 1234567;
	t.mtime_ns = INT64_MIN;
	t.ctime_ns = -1;
	t.read_ns = INT64_MAX;
	snprintf(want, sizeof(want), "%llu:0:1234567:%lld:-1", (unsigned long long) UINT64_MAX,
			 (long long) INT64_MIN);
	CHECK(mig_file_id_of(&t, id) == 1 && strcmp(id, want) == 0,
		  "file identity of extreme values: %s", id);
	t.dev = 2049;
	t.ino = 1311768;
	t.len = 0;
	t.mtime_ns = 1763812345123456789;
	t.ctime_ns = 1763812345987654321;
	CHECK(mig_file_id_of(&t, id) == 1 &&
		  strcmp(id, "2049:1311768:0:1763812345123456789:1763812345987654321") == 0,
		  "file identity of a usual file: %s", id);
}
