/*
 * test_core.c -- unit tests of the core (common/) against a fake host: an
 * in-memory history, a script runner that logs what it is given, and an
 * allocator that counts and can fail the Nth allocation.  The file system
 * is real (a temporary folder).  Prints TAP; built with ASan and UBSan.
 *
 * These test the core's own logic; the real engines are tested through
 * the sqlite3 shell, Python's sqlite3 module and a PostgreSQL server.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <archive.h>
#include <archive_entry.h>

#include "mig_int.h"

/* ---- a tiny TAP harness ---- */
static int	tests,
			failures;

#define CHECK(cond, ...) check_((cond), #cond, __FILE__, __LINE__, __VA_ARGS__)
static void
check_(int ok, const char *cond, const char *file, int line, const char *fmt, ...)
{
	va_list		ap;

	printf("%sok %d - ", ok ? "" : "not ", ++tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
	{
		failures++;
		printf("#   failed: %s at %s:%d\n", cond, file, line);
	}
}

/* ---- the fake host ---- */
typedef struct frow {
	char	   *version,
			   *name,
			   *file,
			   *checksum,
			   *norm,
			   *down,
			   *file_id;
	int64_t		rank;
} frow;

typedef struct fake {
	frow		rows[2100];
	int			n;
	int64_t		next_rank;
	char		log[65536];		/* scripts run, "version:up|" */
	int			opens;			/* open_file calls */
	long		allocs,
				frees,
				fail_at;		/* fail the fail_at-th allocation (1-based), 0 = never */
	size_t		live,
				peak;
	int			busy;			/* lock() answers MIG_BUSY */
	int			notices,
				repairs;
	char		notice[1024];	/* the last one */
	int			locked,
				commits,
				rollbacks;
	/* a snapshot of rows taken at lock, restored on rollback */
	frow		saved[2100];
	int			saved_n;
	/* the no-op shortcut: the stored digest, the count of history changes
	 * it was stored at and the count now (a test editing rows by hand
	 * counts it, as PostgreSQL's trigger does) */
	char		verified[MIG_DIGEST_MAX];
	long		verified_gen,
				gen,
				gen_seen;
	int			loads,			/* history_load calls */
				puts;			/* verified_put calls */
} fake;

static char *
xdup(const char *s, size_t n)
{
	char	   *p = malloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void *
f_alloc(void *ctx, size_t n)
{
	fake	   *f = ctx;
	size_t	   *p;

	if (f->fail_at && ++f->allocs == f->fail_at)
		return NULL;
	if (!f->fail_at)
		f->allocs++;
	p = malloc(n + sizeof(size_t) * 2);
	p[0] = n;
	f->live += n;
	if (f->live > f->peak)
		f->peak = f->live;
	return p + 2;
}

static void
f_release(void *ctx, void *q)
{
	fake	   *f = ctx;
	size_t	   *p = (size_t *) q - 2;

	f->frees++;
	f->live -= p[0];
	free(p);
}

static int
f_open(void *ctx, const char *path, mig_err *err)
{
	int			fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	((fake *) ctx)->opens++;
	if (fd < 0)
		mig_err_errno(err, errno, "open file", path);
	return fd;
}

static void
f_close(void *ctx, int fd)
{
	(void) ctx;
	close(fd);
}

static int
f_list(void *ctx, const char *path, mig_name_cb cb, void *arg, mig_err *err)
{
	DIR		   *d = opendir(path);
	struct dirent *de;
	int			rc = MIG_OK;

	(void) ctx;
	if (!d)
	{
		mig_err_errno(err, errno, "open directory", path);
		return MIG_ERROR;
	}
	while (rc == MIG_OK && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = cb(arg, de->d_name);
	closedir(d);
	return rc;
}

static void
free_rows(frow *rows, int n)
{
	for (int i = 0; i < n; i++)
	{
		free(rows[i].version);
		free(rows[i].name);
		free(rows[i].file);
		free(rows[i].checksum);
		free(rows[i].norm);
		free(rows[i].down);
		free(rows[i].file_id);
	}
}

static void
copy_rows(frow *to, const frow *from, int n)
{
	for (int i = 0; i < n; i++)
	{
		to[i] = from[i];
		to[i].version = strdup(from[i].version);
		to[i].name = strdup(from[i].name);
		to[i].file = strdup(from[i].file);
		to[i].checksum = strdup(from[i].checksum);
		to[i].norm = from[i].norm ? strdup(from[i].norm) : NULL;
		to[i].down = from[i].down ? strdup(from[i].down) : NULL;
		to[i].file_id = from[i].file_id ? strdup(from[i].file_id) : NULL;
	}
}

static int
f_lock(void *ctx, const mig_lock_opts *o, mig_err *err)
{
	fake	   *f = ctx;

	(void) o;
	if (f->busy)
	{
		mig_err_set(err, MIG_SQLSTATE_LOCK, "held by backend 42");
		return MIG_BUSY;
	}
	f->locked = 1;
	copy_rows(f->saved, f->rows, f->n);
	f->saved_n = f->n;
	return MIG_OK;
}

static int
f_unlock(void *ctx, int commit, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	if (commit)
	{
		f->commits++;
		free_rows(f->saved, f->saved_n);
	}
	else
	{
		f->rollbacks++;
		free_rows(f->rows, f->n);
		memcpy(f->rows, f->saved, sizeof(frow) * f->saved_n);
		f->n = f->saved_n;
	}
	f->saved_n = 0;
	f->locked = 0;
	return MIG_OK;
}

static int
f_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->loads++;
	for (int i = f->n - 1; i >= 0; i--)	/* any order: give it backwards */
	{
		mig_hist_row r = {f->rows[i].version, f->rows[i].name, f->rows[i].file,
			f->rows[i].checksum, f->rows[i].norm, "2024-01-01", 1.5, f->rows[i].rank,
		f->rows[i].down != NULL, f->rows[i].file_id, 0, 0, 0};
		int			rc = cb(arg, &r);

		if (rc)
			return rc;
	}
	return MIG_OK;
}

static int
f_add(void *ctx, const mig_record *r, mig_err *err)
{
	fake	   *f = ctx;
	frow	   *w = &f->rows[f->n++];

	(void) err;
	f->gen++;
	w->version = strdup(r->version);
	w->name = strdup(r->name);
	w->file = strdup(r->up_file);
	w->checksum = strdup(r->checksum);
	w->norm = r->checksum_norm ? strdup(r->checksum_norm) : NULL;
	w->down = r->down_sql ? xdup(r->down_sql, r->down_len) : NULL;
	w->file_id = r->file_id ? strdup(r->file_id) : NULL;
	w->rank = ++f->next_rank;
	return MIG_OK;
}

static int
f_remove(void *ctx, const char *version, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->gen++;
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->rows[i].version, version) == 0)
		{
			free_rows(&f->rows[i], 1);
			f->rows[i] = f->rows[--f->n];
			return MIG_OK;
		}
	return MIG_OK;
}

static int
f_down(void *ctx, const char *version, mig_stored_down *d, mig_err *err)
{
	fake	   *f = ctx;

	memset(d, 0, sizeof(*d));
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->rows[i].version, version) == 0 && f->rows[i].down)
		{
			d->len = strlen(f->rows[i].down);
			if ((d->sql = f_alloc(ctx, d->len + 1)) == NULL)
			{
				mig_err_nomem(err);
				return MIG_NOMEM;
			}
			memcpy(d->sql, f->rows[i].down, d->len + 1);
		}
	return MIG_OK;
}

/* Refuses scripts whose first word is a transaction keyword. */
static int
f_check(void *ctx, const mig_script *s, mig_err *err)
{
	size_t		wlen,
				at = mig_first_word(s->sql, s->len, 0, &wlen);

	(void) ctx;
	if (mig_is_txn_control(s->sql + at, wlen))
	{
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL, "transaction control");
		err->offset = (long) at;
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* Logs "version:up|" or "version:down|"; fails at the word FAIL. */
static int
f_exec(void *ctx, const mig_script *s, mig_err *err)
{
	fake	   *f = ctx;
	const char *bad = memmem(s->sql, s->len, "FAIL", 4);
	size_t		used = strlen(f->log);

	snprintf(f->log + used, sizeof(f->log) - used, "%s:%s|", s->version, s->down ? "down" : "up");
	if (bad)
	{
		mig_err_set(err, "42601", "syntax error at FAIL");
		err->offset = bad - s->sql;
		return MIG_ERROR;
	}
	return MIG_OK;
}

static int
f_repair(void *ctx, const mig_repair_row *r, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->gen++;
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->rows[i].version, r->version) == 0)
		{
			free(f->rows[i].checksum);
			f->rows[i].checksum = strdup(r->checksum);
			f->repairs++;
		}
	return MIG_OK;
}

static int
f_part(void *ctx, int part, const mig_record *rec, const mig_lock_opts *lock,
	   char **sql, mig_err *err)
{
	char		buf[256];

	if (part == MIG_PART_BODY)
	{
		if ((*sql = f_alloc(ctx, rec->up_len + 1)) == NULL)
		{
			mig_err_nomem(err);
			return MIG_NOMEM;
		}
		memcpy(*sql, rec->up_sql, rec->up_len);
		(*sql)[rec->up_len] = '\0';
		return MIG_OK;
	}
	if (lock && lock->lock_timeout_ms >= 0)
		snprintf(buf, sizeof(buf), "[%d:lock_timeout=%ld]\n", part, (long) lock->lock_timeout_ms);
	else
		snprintf(buf, sizeof(buf), "[%d:%s]\n", part, rec ? rec->version : "");
	if ((*sql = f_alloc(ctx, strlen(buf) + 1)) == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	strcpy(*sql, buf);
	return MIG_OK;
}

static void
f_notice(void *ctx, const char *message, const char *detail)
{
	fake	   *f = ctx;

	(void) detail;
	f->notices++;
	snprintf(f->notice, sizeof(f->notice), "%s", message);
}

/* The digest stored, while the history is as it was then. */
static int
f_verified_get(void *ctx, char *out, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->gen_seen = f->gen;
	strcpy(out, f->verified_gen == f->gen ? f->verified : "");
	return MIG_OK;
}

static int
f_verified_put(void *ctx, const char *digest, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->puts++;
	snprintf(f->verified, sizeof(f->verified), "%s", digest);
	f->verified_gen = f->gen_seen;
	return MIG_OK;
}

static void
host_init(mig_host *h, fake *f)
{
	memset(f, 0, sizeof(*f));
	memset(h, 0, sizeof(*h));
	h->ctx = f;
	h->alloc = f_alloc;
	h->release = f_release;
	h->open_file = f_open;
	h->close_file = f_close;
	h->list_dir = f_list;
	h->lock = f_lock;
	h->unlock = f_unlock;
	h->history_load = f_load;
	h->history_add = f_add;
	h->history_remove = f_remove;
	h->history_down = f_down;
	h->check_script = f_check;
	h->exec = f_exec;
	h->history_repair = f_repair;
	h->script_part = f_part;
	h->notice = f_notice;
	h->keeps_file_id = 1;
}

static void
host_done(fake *f)
{
	free_rows(f->rows, f->n);
	f->n = 0;
}

/* ---- folders ---- */
static char dir[256];

static void
put(const char *name, const char *text, size_t len)
{
	char		path[512];
	FILE	   *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "wb");
	fwrite(text, 1, len, fp);
	fclose(fp);
}
#define PUT(name, text) put(name, text, strlen(text))

static const char *
mkpath(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void
fresh(void)
{
	char		cmd[600];

	if (dir[0])
	{
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			abort();
	}
	strcpy(dir, "/tmp/mig_unit_XXXXXX");
	if (mkdtemp(dir) == NULL)
		abort();
}

/* ---- tests ---- */
static void
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
static void
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

static void
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

static mig_err err;

static int
apply(mig_host *h, int64_t *n)
{
	return mig_apply(h, dir, n, &err);
}

/* Each tool's names and order (mig_layout.c): dbmate's loose names, goose
 * Go files, MongooseIM's scripts, memos' version folders, diesel's text
 * keys. */
static void
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
static void
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

static void
test_apply_and_down(void)
{
	mig_host	h;
	fake		f;
	int64_t		n = -1;

	fresh();
	host_init(&h, &f);
	PUT("10_ten.up.sql", "CREATE TABLE ten(x);");
	PUT("10_ten.down.sql", "DROP TABLE ten;");
	PUT("9_nine.up.sql", "CREATE TABLE nine(x);");
	PUT("000011_eleven.up.sql", "\xEF\xBB\xBF" "CREATE TABLE eleven(x);");
	PUT("000011_eleven.down.sql", "DROP TABLE eleven;");
	PUT(".hidden.up.sql", "junk");
	PUT("README.md", "notes");
	PUT("9_nine.up.sql~", "editor leftover");
	CHECK(apply(&h, &n) == MIG_OK && n == 3, "three applied (%s)", err.message);
	CHECK(strcmp(f.log, "9:up|10:up|11:up|") == 0, "numeric order 9, 10, 000011: %s", f.log);
	CHECK(f.commits == 1 && f.rollbacks == 0, "one unit of work, committed");
	CHECK(apply(&h, &n) == MIG_OK && n == 0, "second call applies nothing");
	CHECK(f.live == 0, "no memory held after apply");

	/* rollback uses the stored down scripts, even with the files gone */
	fresh();
	f.log[0] = '\0';
	CHECK(mig_down(&h, 1, &n, &err) == MIG_OK && n == 1 && strcmp(f.log, "11:down|") == 0,
		  "down 1 ran the stored down of 11 with its files gone: %s", f.log);
	CHECK(f.n == 2, "history has two rows left");
	CHECK(mig_down(&h, 3, &n, &err) == MIG_ERROR && strstr(err.message, "only 2 are applied"),
		  "down beyond the history refused: %s", err.message);
	/* golang-migrate rolls back a version without a .down.sql by running
	 * nothing: so does 9 */
	CHECK(mig_down(&h, 2, &n, &err) == MIG_OK && n == 2 && strcmp(f.log, "11:down|10:down|") == 0,
		  "down 2: 10 ran its down, 9 (no down file) ran nothing: %s %s", f.log, err.message);
	CHECK(f.n == 0, "history is empty");
	/* Flyway without an undo file cannot be rolled back */
	fresh();
	f.log[0] = '\0';
	PUT("V1__one.sql", "CREATE TABLE one(x);");
	PUT("V2__two.sql", "CREATE TABLE two(x);");
	PUT("U2__two.sql", "DROP TABLE two;");
	CHECK(apply(&h, &n) == MIG_OK && n == 2, "flyway: two applied");
	f.log[0] = '\0';
	CHECK(mig_down(&h, 2, &n, &err) == MIG_ERROR && strstr(err.message, "migration 1 has no down script"),
		  "down refuses when one lacks a down script: %s", err.message);
	CHECK(f.n == 2 && f.log[0] == '\0', "nothing ran, nothing removed");
	CHECK(mig_down(&h, -1, &n, &err) == MIG_ERROR && strcmp(err.sqlstate, "22023") == 0,
		  "negative count refused");
	CHECK(mig_down(&h, 0, &n, &err) == MIG_OK && n == 0, "down 0 is a no-op");
	CHECK(f.live == 0, "no memory held after down");
	host_done(&f);
}

static void
test_refusals(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;

	fresh();
	host_init(&h, &f);
	PUT("1_a.up.sql", "A");
	PUT("01_b.up.sql", "B");
	PUT("2_c.up.sql", "C");
	PUT("02_d.up.sql", "D");
	CHECK(apply(&h, &n) == MIG_ERROR && strcmp(err.sqlstate, "42710") == 0 &&
		  strstr(err.message, "2 migration versions have more than one file") &&
		  strstr(err.detail, "1 (01_b.up.sql, 1_a.up.sql) and 2 (02_d.up.sql, 2_c.up.sql)"),
		  "duplicate versions listed: %s / %s", err.message, err.detail);
	CHECK(f.log[0] == '\0' && f.n == 0 && f.rollbacks == 1, "nothing ran, rolled back");

	fresh();
	PUT("1_a.up.sql", "A");
	PUT("notes.sql", "x");
	PUT("v2_b.sql", "x");
	CHECK(apply(&h, &n) == MIG_ERROR && strcmp(err.sqlstate, "42602") == 0 &&
		  strstr(err.message, "2 file names do not fit any migration layout") &&
		  strstr(err.detail, "notes.sql and v2_b.sql") && err.hint[0],
		  "unparsable names listed: %s / %s", err.message, err.detail);

	fresh();
	PUT("1_a.up.sql", "A");
	PUT("2_b.down.sql", "x");
	CHECK(apply(&h, &n) == MIG_ERROR && strstr(err.message, "down file \"2_b.down.sql\" has no matching up file"),
		  "orphan down refused: %s", err.message);

	fresh();
	PUT("1_a.up.sql", "A");
	PUT("2_b.up.sql", "B");
	CHECK(apply(&h, &n) == MIG_OK && n == 2, "base applied");
	PUT("1_a.up.sql", "A edited");
	CHECK(apply(&h, &n) == MIG_ERROR && strcmp(err.sqlstate, "55000") == 0 &&
		  strstr(err.message, "applied migration 1 has changed since it was applied") &&
		  strstr(err.detail, "1_a.up.sql"), "edited applied file: %s / %s", err.message, err.detail);
	PUT("1_a.up.sql", "A");
	unlink(strcat(strcpy((char[600]){0}, dir), "/2_b.up.sql"));
	CHECK(apply(&h, &n) == MIG_ERROR && strstr(err.message, "applied migration 2 (2_b.up.sql) is missing from"),
		  "missing applied file: %s", err.message);
	PUT("2_b.up.sql", "B");
	PUT("3_c.up.sql", "C");
	CHECK(apply(&h, &n) == MIG_OK && n == 1, "3 applied");
	PUT("2a_x.up.sql", "x");
	unlink(strcat(strcpy((char[600]){0}, dir), "/2a_x.up.sql"));
	PUT("0_zero.up.sql", "Z");
	CHECK(apply(&h, &n) == MIG_ERROR &&
		  strstr(err.message, "pending migration 0 (0_zero.up.sql) is older than the latest applied migration 3"),
		  "out of order refused: %s", err.message);
	unlink(strcat(strcpy((char[600]){0}, dir), "/0_zero.up.sql"));

	/* content checks and the line of a failure */
	f.log[0] = '\0';
	put("4_nul.up.sql", "SELECT 1;\nSELECT '\0';", 21);
	CHECK(apply(&h, &n) == MIG_ERROR && strcmp(err.sqlstate, "22021") == 0 &&
		  strstr(err.message, "contains a NUL byte") && strstr(err.context, "migration 4 (4_nul.up.sql), line 2"),
		  "NUL byte refused with its line: %s / %s", err.message, err.context);
	PUT("4_nul.up.sql", "SELECT 1;\n\n'\xC3\x28';");
	CHECK(apply(&h, &n) == MIG_ERROR && strstr(err.message, "is not valid UTF-8") &&
		  strstr(err.context, "line 3"), "invalid UTF-8 refused with its line: %s", err.context);
	PUT("4_nul.up.sql", "-- ok\nCOMMIT;");
	CHECK(apply(&h, &n) == MIG_ERROR && strcmp(err.sqlstate, "0A000") == 0 &&
		  strstr(err.context, "line 2"), "check_script refusal carries the line: %s", err.context);
	CHECK(f.log[0] == '\0', "nothing ran before the refusals");
	PUT("4_nul.up.sql", "A;");
	PUT("5_fails.up.sql", "\n\nSELECT FAIL;");
	CHECK(apply(&h, &n) == MIG_ERROR && strcmp(err.sqlstate, "42601") == 0 &&
		  strcmp(err.context, "migration 5 (5_fails.up.sql), line 3") == 0,
		  "failing script: %s", err.context);
	CHECK(strcmp(f.log, "4:up|5:up|") == 0 && f.n == 3, "4 ran, then everything was rolled back");
	CHECK(f.live == 0, "no memory held after errors");
	host_done(&f);
}

static void
test_missing_folder(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;

	host_init(&h, &f);
	CHECK(mig_apply(&h, "/nonexistent/migrations", &n, &err) == MIG_ERROR &&
		  strcmp(err.sqlstate, "58P01") == 0 && strstr(err.message, "could not open directory \"/nonexistent/migrations\""),
		  "missing folder: %s", err.message);
	CHECK(mig_apply(&h, "", &n, &err) == MIG_ERROR && strcmp(err.sqlstate, "22023") == 0, "empty path refused");
	host_done(&f);
}

static int
count_rows(void *arg, const mig_status_row *r)
{
	char	   *out = arg;

	strcat(out, r->version);
	strcat(out, "=");
	strcat(out, r->state);
	strcat(out, " ");
	return MIG_OK;
}

static void
test_status(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;
	char		out[512] = "";

	fresh();
	host_init(&h, &f);
	PUT("1_a.up.sql", "A");
	PUT("2_b.up.sql", "B");
	PUT("4_d.up.sql", "D");
	apply(&h, &n);
	PUT("1_a.up.sql", "A2");
	unlink(strcat(strcpy((char[600]){0}, dir), "/2_b.up.sql"));
	PUT("3_c.up.sql", "C");
	PUT("5_e.up.sql", "E");
	CHECK(mig_status(&h, dir, count_rows, out, &err) == MIG_OK &&
		  strcmp(out, "1=changed 2=missing 3=out_of_order 4=applied 5=pending ") == 0,
		  "every state: %s", out);
	CHECK(f.locked == 0 && f.live == 0, "status takes no lock and holds no memory");
	host_done(&f);
}

/* Fails every allocation in turn: each run ends in success or a clean
 * error, nothing leaks, and a failed run leaves the history unchanged. */
static void
test_oom_sweep(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;
	int			clean = 1,
				unchanged = 1,
				runs = 0;

	fresh();
	PUT("1_a.up.sql", "A");
	PUT("1_a.down.sql", "a");
	PUT("2_b.up.sql", "B");
	PUT("3_c.up.sql", "C");
	PUT("3_c.down.sql", "c");
	for (long k = 1;; k++)
	{
		int			rc;

		host_init(&h, &f);
		f.fail_at = k;
		rc = mig_apply(&h, dir, &n, &err);
		runs++;
		if (f.live != 0 || (rc != MIG_OK && (rc != MIG_NOMEM || strcmp(err.sqlstate, "53200"))))
			clean = 0;
		if (rc != MIG_OK && f.n != 0)
			unchanged = 0;
		if (rc == MIG_OK)
		{
			/* the same sweep over rolling back the last one */
			for (long j = 1;; j++)
			{
				f.fail_at = 0;
				f.allocs = 0;
				f.fail_at = j;
				rc = mig_down(&h, 1, &n, &err);
				if (f.live != 0)
					clean = 0;
				if (rc == MIG_OK)
					break;
				if (f.n != 3)
					unchanged = 0;
			}
			host_done(&f);
			break;
		}
		host_done(&f);
	}
	CHECK(runs > 5 && clean, "allocation failure at each of %d points: clean error, nothing leaked", runs);
	CHECK(unchanged, "a failed run left the history unchanged");
}

/* 1,000 migrations of 20 KB each: the core keeps at most MIG_KEEP_BUDGET
 * of validated files plus one file and the names, far below the 20 MB
 * folder, and a no-op holds one file at a time. */
static void
test_memory_bound(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;
	static char body[20000];
	char		name[64];
	int			rc;

	fresh();
	memset(body, ' ', sizeof(body));
	memcpy(body, "SELECT 1;", 9);
	for (int i = 1; i <= 1000; i++)
	{
		snprintf(name, sizeof(name), "%d_m.up.sql", i);
		put(name, body, sizeof(body));
		snprintf(name, sizeof(name), "%d_m.down.sql", i);
		put(name, body, 100);
	}
	host_init(&h, &f);
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 1000, "1,000 applied");
	CHECK(f.peak < MIG_KEEP_BUDGET + 1024 * 1024,
		  "peak core memory %zu bytes for a 20 MB folder (budget %zu)", f.peak, MIG_KEEP_BUDGET);
	f.peak = 0;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.peak > 0 && f.peak < 1024 * 1024,
		  "no-op over 1,000 applied: peak %zu bytes (names and history, one file)", f.peak);
	host_done(&f);
}

static void *
plain_alloc(size_t n)
{
	return malloc(n);
}

/* Identities are stored in histories: the format must not drift. */
static void
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

/* The checksum cache: a warm no-op opens no file, and an edit that keeps
 * the size is still caught; files changed just before reading are not
 * trusted. */
static void
test_cache(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;
	int			rc;
	mig_cache  *cache = mig_cache_create(plain_alloc, free);

	fresh();
	PUT("1_a.up.sql", "AAAA");
	PUT("2_b.up.sql", "BBBB");
	host_init(&h, &f);
	h.cache = cache;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 2, "applied with a cache");
	f.opens = 0;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.opens == 2,
		  "files changed moments ago are read, not trusted (%d opens)", f.opens);
	usleep(300 * 1000);
	PUT("3_c.up.sql", "CCCC");	/* a fresh file: read, not cached */
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 1, "third applied");
	usleep(300 * 1000);
	rc = apply(&h, &n);			/* reads 1..3 once more and caches them */
	f.opens = 0;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.opens == 0, "warm no-op opened %d files", f.opens);
	PUT("2_b.up.sql", "XXXX");	/* same size, same second */
	rc = apply(&h, &n);
	CHECK(rc == MIG_ERROR && strstr(err.message, "applied migration 2 has changed"),
		  "same-size edit after caching caught: %s", err.message);
	host_done(&f);
	mig_cache_destroy(cache);

	/* the history's file identities: a first call without any cache opens
	 * no unchanged file, and still catches an edit */
	fresh();
	PUT("1_a.up.sql", "AAAA");
	PUT("2_b.up.sql", "BBBB");
	usleep(300 * 1000);
	host_init(&h, &f);
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 2 && f.rows[0].file_id && f.rows[1].file_id,
		  "identities recorded for files older than the racy window");
	f.opens = 0;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.opens == 0, "first no-op opened %d files", f.opens);
	PUT("1_a.up.sql", "AAAB");
	rc = apply(&h, &n);
	CHECK(rc == MIG_ERROR && strstr(err.message, "applied migration 1 has changed"),
		  "an edit is caught: %s", err.message);
	PUT("1_a.up.sql", "AAAA");
	h.keeps_file_id = 0;
	f.opens = 0;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.opens == 2,
		  "a host that does not keep identities: files read (%d opens)", f.opens);
	host_done(&f);
}

/* The no-op shortcut: a call that finds the folder as the last one that
 * found everything applied, and the history unchanged, reads no history;
 * any change to a file, the folder or the history turns it off. */
static void
test_noop_shortcut(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;
	int			rc,
				loads;

	fresh();
	PUT("1_a.up.sql", "AAAA");
	PUT("2_b.up.sql", "BBBB");
	host_init(&h, &f);
	h.verified_get = f_verified_get;
	h.verified_put = f_verified_put;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 2 && f.puts == 0, "an apply stores no digest");
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.puts == 0,
		  "files changed moments ago give the folder no digest");
	usleep(300 * 1000);
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.puts == 1 && strncmp(f.verified, "1:2:", 4) == 0,
		  "a no-op stores the digest: %s", f.verified);
	loads = f.loads;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.loads == loads && f.commits == 4,
		  "the next no-op reads no history, and commits");
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.loads == loads && f.puts == 1,
		  "nor the one after it, which stores nothing");

	/* a history row deleted by hand: applied again */
	CHECK(f.n == 2 && strcmp(f.rows[1].version, "2") == 0, "two rows, 2 the last");
	free_rows(&f.rows[1], 1);
	f.n--;
	f.gen++;
	f.log[0] = '\0';
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 1 && f.loads == loads + 1 && strcmp(f.log, "2:up|") == 0,
		  "after a hand edit of the history the call reads it: %s", f.log);
	rc = apply(&h, &n);
	/* the apply stored the digest too, against the history before its own
	 * write, which this fake counts as a change (as 0.2's trigger does) */
	CHECK(rc == MIG_OK && n == 0 && f.puts == 3, "and the no-op after stores anew");

	/* an applied file edited (a while ago, so that its identity counts): caught */
	loads = f.loads;
	PUT("2_b.up.sql", "BBBX");
	usleep(300 * 1000);
	rc = apply(&h, &n);
	CHECK(rc == MIG_ERROR && strstr(err.message, "applied migration 2 has changed") &&
		  f.loads == loads + 1, "an edited file is caught: %s", err.message);
	PUT("2_b.up.sql", "BBBB");	/* restored: another identity, same bytes */
	usleep(300 * 1000);
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.puts == 4, "restored, it is checked and stored again");

	/* a new file, and a new one that goes before the plan reads the folder */
	PUT("3_c.up.sql", "CCCC");
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 1, "a new file is applied");
	loads = f.loads;
	usleep(300 * 1000);
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.puts == 5 && f.loads == loads + 1, "and the folder stored");
	unlink(mkpath("3_c.up.sql"));
	rc = apply(&h, &n);
	CHECK(rc == MIG_ERROR && strstr(err.message, "applied migration 3 (3_c.up.sql) is missing"),
		  "a file gone is missed: %s", err.message);

	/* a digest that the history changed under is not used */
	PUT("3_c.up.sql", "CCCC");
	usleep(300 * 1000);
	rc = apply(&h, &n);
	loads = f.loads;
	f.gen++;
	rc = apply(&h, &n);
	CHECK(rc == MIG_OK && n == 0 && f.loads == loads + 1, "a history change alone turns it off");
	host_done(&f);
}

static int
count_problem(void *arg, const mig_problem *p)
{
	char	   *out = arg;

	strcat(out, p->kind);
	strcat(out, " ");
	return MIG_OK;
}

static int
count_pending(void *arg, const mig_pending *m)
{
	char	   *out = arg;

	strcat(out, m->version);
	strcat(out, " ");
	return MIG_OK;
}

/* The normalised checksum by its definition, line by line (the code of
 * mig_checksum_norm before it fed runs of lines at once). */
static void
checksum_norm_by_line(const char *buf, size_t len, char out[16])
{
	unsigned long crc = crc32_z(0L, Z_NULL, 0);
	size_t		i = 0,
				blank = 0;

	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	while (i < len)
	{
		size_t		s = i,
					e;

		while (i < len && buf[i] != '\n' && buf[i] != '\r')
			i++;
		e = i;
		if (i < len)
			i += buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n' ? 2 : 1;
		while (e > s && (buf[e - 1] == ' ' || buf[e - 1] == '\t' ||
						 buf[e - 1] == '\f' || buf[e - 1] == '\v'))
			e--;
		if (e == s)
		{
			blank++;
			continue;
		}
		for (; blank > 0; blank--)
			crc = crc32_z(crc, (const Bytef *) "\n", 1);
		crc = crc32_z(crc, (const Bytef *) buf + s, e - s);
		crc = crc32_z(crc, (const Bytef *) "\n", 1);
	}
	snprintf(out, 16, "crc32:%08lx", crc & 0xffffffffUL);
}

/* Normalised checksums, notices, the skip rule, and validate, repair, plan
 * and script through the fake host, with an allocation sweep of each. */
static void
test_ops(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;
	int			rc;
	char		a[16],
				b[16],
				out[1024] = "";
	char	   *text = NULL;
	size_t		len;

	mig_checksum_norm("a\nb\n", 4, a);
	mig_checksum_norm("\xEF\xBB\xBF" "a  \r\nb\t\r\n\r\n\n", 15, b);
	CHECK(strcmp(a, b) == 0, "BOM, CRLF, trailing blanks and blank lines do not count");
	mig_checksum_norm("a\nb", 3, b);
	CHECK(strcmp(a, b) == 0, "a missing last newline does not count");
	mig_checksum_norm("a b\n", 4, b);
	CHECK(strcmp(a, b) != 0, "joining lines does (unlike Flyway's checksum)");
	mig_checksum_norm(" a\nb\n", 6, b);
	CHECK(strcmp(a, b) != 0, "leading white space does");
	/* the normalised checksum feeds runs of normal lines to crc32 at once:
	 * the same value as the definition, line by line, on random texts (a
	 * changed value would make every stored history "reformatted") */
	{
		static const char alphabet[] = "ab \t\f\v\r\n\n\n\xEF\xBB\xBF";
		char		txt[200],
					want[16];
		int			same = 1;

		srand(7);
		for (int round = 0; round < 20000 && same; round++)
		{
			size_t		n = (size_t) (rand() % (int) sizeof(txt));

			for (size_t k = 0; k < n; k++)
				txt[k] = alphabet[rand() % (int) (sizeof(alphabet) - 1)];
			if (round % 3 == 0 && n >= 3)
				memcpy(txt, "\xEF\xBB\xBF", 3);
			checksum_norm_by_line(txt, n, want);
			mig_checksum_norm(txt, n, b);
			same = strcmp(want, b) == 0;
		}
		CHECK(same, "the normalised checksum is the line-by-line one on 20,000 random texts");
		memset(out, '\n', 300);	/* more blank lines in a row than one feed */
		memcpy(out + 300, "x\n", 3);
		checksum_norm_by_line(out, 303, want);
		mig_checksum_norm(out, 303, b);
		CHECK(strcmp(want, b) == 0, "and after 300 blank lines");
		out[0] = '\0';
	}

	fresh();
	PUT("1_a.up.sql", "A\n");
	PUT("2_b.up.sql", "B\n");
	host_init(&h, &f);
	rc = mig_apply(&h, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 2 && f.notices == 4 &&
		  strncmp(f.notice, "applied migration 2 (2_b.up.sql) in ", 36) == 0,
		  "a notice as each migration starts and one as it ends: %s", f.notice);
	PUT("1_a.up.sql", "A  \r\n\r\n");
	PUT("3_c.up.sql", "C\n");
	f.notices = 0;
	rc = mig_apply(&h, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 1 && f.notices == 3, "a reformatted file does not stop apply");
	f.busy = 1;
	rc = mig_apply_with(&h, dir, "if_locked=skip", &n, &err);
	CHECK(rc == MIG_OK && n == 0 && strcmp(f.notice, "skipped: held by backend 42") == 0,
		  "if_locked=skip: 0 and a notice naming the holder (%s)", f.notice);
	rc = mig_apply(&h, dir, &n, &err);
	CHECK(rc == MIG_ERROR && strcmp(err.sqlstate, "55P03") == 0 &&
		  strcmp(err.message, "held by backend 42") == 0, "otherwise the lock error");
	f.busy = 0;

	PUT("2_b.up.sql", "BB\n");
	PUT("0_z.up.sql", "Z\n");
	PUT("4_d.up.sql", "COMMIT;\n");
	PUT("x.sql", "X\n");
	rc = mig_validate(&h, dir, count_problem, out, &err);
	CHECK(rc == MIG_OK && strcmp(out, "bad_name out_of_order reformatted changed not_allowed ") == 0,
		  "validate: %s", out);
	unlink(mkpath("x.sql"));
	unlink(mkpath("0_z.up.sql"));
	unlink(mkpath("4_d.up.sql"));
	out[0] = '\0';
	rc = mig_plan_pending(&h, dir, NULL, count_pending, out, &err);
	CHECK(rc == MIG_ERROR && strstr(err.message, "applied migration 2 has changed"),
		  "plan refuses a changed file: %s", err.message);
	rc = mig_repair(&h, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 2 && f.repairs == 2, "repair: the changed and the reformatted");
	PUT("4_d.up.sql", "D\n");
	PUT("5_e.up.sql", "E\n");
	rc = mig_plan_pending(&h, dir, "target=4", count_pending, out, &err);
	CHECK(rc == MIG_OK && strcmp(out, "4 ") == 0, "plan up to a target: %s", out);
	rc = mig_script_text(&h, dir, NULL, &text, &len, &err);
	CHECK(rc == MIG_OK && strcmp(text, "[0:]\n\n-- migration 4 (4_d.up.sql)\n[1:4]\nD\n\n;\n"
								 "\n-- migration 5 (5_e.up.sql)\n[1:5]\nE\n\n;\n[3:]\n") == 0,
		  "script: the host's parts around each migration's SQL%s", rc == MIG_OK ? "" : err.message);
	f_release(&f, text);
	rc = mig_script_text(&h, dir, "lock_timeout=500ms", &text, &len, &err);
	CHECK(rc == MIG_OK && strncmp(text, "[0:lock_timeout=500]\n", 21) == 0,
		  "script: the start gets the call's lock_timeout: %.30s", rc == MIG_OK ? text : err.message);
	f_release(&f, text);
	CHECK(f.live == 0, "nothing held after the operations");

	/* every allocation failing in turn, for each operation */
	for (int op = 0; op < 4; op++)
	{
		int			clean = 1,
					runs = 0;

		for (long k = 1;; k++)
		{
			f.allocs = 0;
			f.fail_at = k;
			out[0] = '\0';
			text = NULL;
			if (op == 0)
				rc = mig_validate(&h, dir, count_problem, out, &err);
			else if (op == 1)
				rc = mig_plan_pending(&h, dir, NULL, count_pending, out, &err);
			else if (op == 2)
				rc = mig_script_text(&h, dir, NULL, &text, &len, &err);
			else
			{
				mig_err		again;

				PUT("1_a.up.sql", "AA\n");
				rc = mig_repair(&h, dir, &n, &err);

				f.fail_at = 0;
				PUT("1_a.up.sql", "A  \r\n\r\n");
				mig_repair(&h, dir, &n, &again);
			}
			runs++;
			if (text)
				f_release(&f, text);
			if (f.live != 0 || (rc != MIG_OK && (rc != MIG_NOMEM || strcmp(err.sqlstate, "53200"))))
				clean = 0;
			if (rc == MIG_OK)
				break;
		}
		f.fail_at = 0;
		CHECK(runs > 3 && clean, "operation %d: allocation failure at each of %d points: clean", op, runs);
	}
	host_done(&f);
}


/* ---- the folder as data (mig_sha256.c, mig_source.c, mig_archive.c) ---- */

static void
sha_of(const char *data, size_t len, size_t step, char out[65])
{
	mig_sha256	s;

	mig_sha256_init(&s);
	for (size_t i = 0; i < len; i += step)
		mig_sha256_update(&s, data + i, len - i < step ? len - i : step);
	mig_sha256_hex(&s, out);
}

/* FIPS 180-4's examples (and NIST's one million "a"), fed whole and in
 * pieces that straddle the 64-byte blocks. */
static void
test_sha256(void)
{
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	char	   *million = malloc(1000000);
	char		hex[65];

	memset(million, 'a', 1000000);
	sha_of("", 0, 1, hex);
	CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0,
		  "sha256 of nothing: %s", hex);
	sha_of("abc", 3, 3, hex);
	CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
		  "sha256 of abc: %s", hex);
	sha_of(two, strlen(two), 7, hex);
	CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0,
		  "sha256 of the 448-bit example, 7 bytes at a time: %s", hex);
	sha_of(million, 1000000, 1000, hex);
	CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
		  "sha256 of a million a: %s", hex);
	free(million);
}

/* One entry of an archive a test writes. */
typedef struct aentry {
	const char *name;
	unsigned	type;			/* AE_IFREG, AE_IFDIR, AE_IFLNK... */
	const char *data;			/* file text, or a link's target */
	int			hard;			/* a hard link to data */
} aentry;

/* Writes entries into an archive (format: "tar", "tar.gz", "zip", "ustar")
 * in malloc'd *out; returns its length. */
static size_t
make_archive(const char *format, const aentry *ents, int n, char **out)
{
	size_t		cap = 64 * 1024 * 1024,
				used = 0;
	struct archive *a = archive_write_new();
	char	   *buf = malloc(cap);

	if (strcmp(format, "zip") == 0)
		archive_write_set_format_zip(a);
	else if (strcmp(format, "ustar") == 0)
		archive_write_set_format_ustar(a);
	else
		archive_write_set_format_pax_restricted(a);
	if (strcmp(format, "tar.gz") == 0)
		archive_write_add_filter_gzip(a);
	archive_write_open_memory(a, buf, cap, &used);
	for (int i = 0; i < n; i++)
	{
		struct archive_entry *e = archive_entry_new();

		archive_entry_set_pathname(e, ents[i].name);
		archive_entry_set_filetype(e, ents[i].type ? ents[i].type : AE_IFREG);
		archive_entry_set_perm(e, 0644);
		if (ents[i].hard)
			archive_entry_set_hardlink(e, ents[i].data);
		else if (ents[i].type == AE_IFLNK)
			archive_entry_set_symlink(e, ents[i].data);
		else if (ents[i].type == 0 || ents[i].type == AE_IFREG)
			archive_entry_set_size(e, (la_int64_t) strlen(ents[i].data));
		archive_write_header(a, e);
		if (!ents[i].hard && (ents[i].type == 0 || ents[i].type == AE_IFREG))
			archive_write_data(a, ents[i].data, strlen(ents[i].data));
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	*out = buf;
	return used;
}

/* mig_source_archive of entries written as format: MIG_OK or the error
 * (err filled), the source freed again. */
static int
read_archive(mig_host *h, const char *format, const aentry *ents, int n, mig_err *e)
{
	char	   *buf;
	size_t		len = make_archive(format, ents, n, &buf);
	mig_source *s = NULL;
	int			rc = mig_source_archive(h, buf, len, &s, e);

	mig_source_free(s);
	free(buf);
	return rc;
}

#define REFUSES(h, fmt, ents, state, msg) do { \
	mig_err e_; \
	int rc_ = read_archive(h, fmt, ents, (int) (sizeof(ents) / sizeof(ents[0])), &e_); \
	CHECK(rc_ == MIG_ERROR && strcmp(e_.sqlstate, state) == 0 && strcmp(e_.message, msg) == 0, \
		  "%s: %s %s", msg, e_.sqlstate, e_.message); \
} while (0)

/* Every bad archive refused, with its SQLSTATE and message, and nothing
 * left allocated. */
static void
test_archive_refusals(void)
{
	mig_host	h;
	fake		f;
	aentry		symlink[] = {{"1_a.up.sql", 0, "x", 0}, {"2_b.up.sql", AE_IFLNK, "/etc/passwd", 0}},
				hard[] = {{"1_a.up.sql", 0, "x", 0}, {"2_b.up.sql", AE_IFREG, "1_a.up.sql", 1}},
				fifo[] = {{"2_b.up.sql", AE_IFIFO, "", 0}},
				dev[] = {{"2_b.up.sql", AE_IFCHR, "", 0}},
				dotdot[] = {{"../1_a.up.sql", 0, "x", 0}},
				inner[] = {{"postgres/../../1_a.up.sql", 0, "x", 0}},
				abs[] = {{"/1_a.up.sql", 0, "x", 0}},
				dup[] = {{"1_a.up.sql", 0, "x", 0}, {"./1_a.up.sql", 0, "y", 0}},
				both[] = {{"a", 0, "x", 0}, {"a/1_a.up.sql", 0, "y", 0}},
				latin1[] = {{"1_caf\xe9.up.sql", 0, "x", 0}},
				control[] = {{"1_a\t.up.sql", 0, "x", 0}},
				dirs[] = {{"./", AE_IFDIR, "", 0}, {"./postgres/", AE_IFDIR, "", 0}},
				big[] = {{"1_a.up.sql", 0, "0123456789A", 0}},
				many[] = {{"1_a.up.sql", 0, "0123456789", 0}, {"2_b.up.sql", 0, "0123456789", 0},
		{"3_c.up.sql", 0, "0123456789", 0}};
	mig_err		e;
	mig_source *s = NULL;
	char	   *buf;
	size_t		len;
	int			rc;

	host_init(&h, &f);
	REFUSES(&h, "tar.gz", symlink, "42501", "entry \"2_b.up.sql\" of the archive is a symbolic link");
	REFUSES(&h, "tar", hard, "42501", "entry \"2_b.up.sql\" of the archive is a hard link");
	REFUSES(&h, "tar", fifo, "42501", "entry \"2_b.up.sql\" of the archive is a FIFO");
	REFUSES(&h, "tar", dev, "42501", "entry \"2_b.up.sql\" of the archive is a device");
	REFUSES(&h, "tar", dotdot, "42501", "entry \"../1_a.up.sql\" of the archive leads out of the folder (\"..\")");
	REFUSES(&h, "zip", inner, "42501", "entry \"postgres/../../1_a.up.sql\" of the archive leads out of the folder (\"..\")");
	REFUSES(&h, "tar", abs, "42501", "entry \"/1_a.up.sql\" of the archive has an absolute path");
	REFUSES(&h, "tar", dup, "42710", "entry \"1_a.up.sql\" appears more than once in the archive");
	REFUSES(&h, "zip", dup, "42710", "entry \"1_a.up.sql\" appears more than once in the archive");
	REFUSES(&h, "tar", both, "42710", "entry \"a\" of the archive is both a file and a folder");
	REFUSES(&h, "ustar", latin1, "22021", "entry name \"1_caf\\xe9.up.sql\" of the archive is not valid UTF-8");
	REFUSES(&h, "tar", control, "42602", "entry name \"1_a\\x09.up.sql\" of the archive holds a control character");
	REFUSES(&h, "tar.gz", dirs, "22023", "the archive holds no files");
	h.max_file_size = 10;
	REFUSES(&h, "tar.gz", big, "54000", "file \"1_a.up.sql\" of the archive is too large");
	REFUSES(&h, "zip", big, "54000", "file \"1_a.up.sql\" of the archive is too large");
	h.max_file_size = 0;
	h.max_archive_size = 25;
	REFUSES(&h, "tar.gz", many, "54000", "the files of the archive are too large");
	h.max_archive_size = 0;
	CHECK(f.live == 0, "nothing left allocated after the refusals (%zu bytes)", f.live);

	rc = mig_source_archive(&h, "", 0, &s, &e);
	CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "22023") == 0 &&
		  strcmp(e.message, "the archive is empty") == 0, "no bytes: %s", e.message);
	rc = mig_source_archive(&h, "-- not an archive\nCREATE TABLE a(x);\n", 37, &s, &e);
	CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "22P03") == 0 &&
		  strcmp(e.message, "could not read the archive: Unrecognized archive format") == 0,
		  "SQL text is no archive: %s", e.message);
	len = make_archive("tar.gz", many, 3, &buf);
	rc = mig_source_archive(&h, buf, len / 2, &s, &e);
	CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "22P03") == 0 &&
		  strncmp(e.message, "could not read the archive: ", 28) == 0,
		  "a tar.gz cut in half: %s", e.message);
	buf[len / 2] ^= 0x55;
	rc = mig_source_archive(&h, buf, len, &s, &e);
	CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "22P03") == 0,
		  "a tar.gz with a byte changed: %s", e.message);
	free(buf);

	/* a bomb: 32 MiB of spaces in a few kB, stopped at the limit */
	{
		char	   *zeros = calloc(1, 32 * 1024 * 1024 + 1);
		aentry		bomb[] = {{"1_a.up.sql", 0, zeros, 0}};

		memset(zeros, ' ', 32 * 1024 * 1024);
		len = make_archive("tar.gz", bomb, 1, &buf);
		h.max_archive_size = 1024 * 1024;
		f.peak = f.live;
		rc = mig_source_archive(&h, buf, len, &s, &e);
		CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "54000") == 0 && len < 200 * 1024 &&
			  f.peak < 4 * 1024 * 1024,
			  "a %zu-byte archive of 32 MiB stops at the 1 MiB limit (peak %zu bytes): %s",
			  len, f.peak, e.message);
		h.max_archive_size = 0;
		free(buf);
		free(zeros);
	}
	/* more entries than MIG_MAX_ENTRIES */
	{
		aentry	   *lots = calloc(MIG_MAX_ENTRIES + 1, sizeof(aentry));
		char	   *names = malloc((size_t) (MIG_MAX_ENTRIES + 1) * 16);

		for (int i = 0; i <= MIG_MAX_ENTRIES; i++)
		{
			snprintf(names + (size_t) i * 16, 16, "d%d", i);
			lots[i].name = names + (size_t) i * 16;
			lots[i].type = AE_IFDIR;
		}
		len = make_archive("tar.gz", lots, MIG_MAX_ENTRIES + 1, &buf);
		rc = mig_source_archive(&h, buf, len, &s, &e);
		CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "54000") == 0 &&
			  strcmp(e.message, "the archive has more than 100000 entries") == 0,
			  "%d entries: %s", MIG_MAX_ENTRIES + 1, e.message);
		free(buf);
		free(lots);
		free(names);
	}
	CHECK(f.live == 0, "nothing left allocated (%zu bytes)", f.live);
	host_done(&f);
}

/* The files a folder and its archive share. */
static const aentry same[] = {
	{"./", AE_IFDIR, "", 0},
	{"./README.md", 0, "# not a migration\n", 0},
	{"./1_a.up.sql", 0, "CREATE TABLE a(x);\r\n", 0},
	{"./1_a.down.sql", 0, "DROP TABLE a;\n", 0},
	{"./2_b.up.sql", 0, "\xef\xbb\xbf" "CREATE TABLE b(x);\n", 0},
	{"./10_c.up.sql", 0, "CREATE TABLE c(x); -- caf\xc3\xa9\n", 0},
};

/* A folder applied from disk and as an archive: the same history, and a
 * database switches between them without anything to do. */
static void
test_archive_as_folder(void)
{
	mig_host	hd,
				ha;
	fake		fd,
				fa;
	mig_source *s = NULL;
	char	   *buf;
	size_t		len = make_archive("tar.gz", same, 6, &buf);
	int64_t		n = -1;
	int			rc,
				equal = 1,
				loads;

	fresh();
	for (int i = 1; i < 6; i++)
		put(same[i].name + 2, same[i].data, strlen(same[i].data));
	host_init(&hd, &fd);
	host_init(&ha, &fa);
	rc = mig_source_archive(&ha, buf, len, &s, &err);
	CHECK(rc == MIG_OK && strcmp(mig_source_label(s), "archive (tar.gz, 5 files)") == 0,
		  "a tar.gz read: %s", rc == MIG_OK ? mig_source_label(s) : err.message);
	ha.source = s;
	rc = mig_apply(&hd, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 3, "the folder applies 3");
	rc = mig_apply(&ha, "ignored: the source is the folder", &n, &err);
	CHECK(rc == MIG_OK && n == 3 && strcmp(fa.log, fd.log) == 0,
		  "the archive applies the same 3, the same way: %s", fa.log);
	for (int i = 0; i < 3 && fa.n == 3 && fd.n == 3; i++)
		equal &= strcmp(fa.rows[i].version, fd.rows[i].version) == 0 &&
			strcmp(fa.rows[i].file, fd.rows[i].file) == 0 &&
			strcmp(fa.rows[i].checksum, fd.rows[i].checksum) == 0 &&
			strcmp(fa.rows[i].norm, fd.rows[i].norm) == 0 &&
			strcmp(fa.rows[i].down ? fa.rows[i].down : "", fd.rows[i].down ? fd.rows[i].down : "") == 0;
	CHECK(fa.n == 3 && fd.n == 3 && equal, "with the same history: versions, files, checksums, downs");
	CHECK(fa.n == 3 && strncmp(fa.rows[0].file_id, "mem:crc32:", 10) == 0,
		  "an archive's file is known by its content: %s", fa.n ? fa.rows[0].file_id : "");

	/* switching sources: the database applied from disk, now the archive */
	hd.source = s;
	fd.log[0] = '\0';
	rc = mig_apply(&hd, NULL, &n, &err);
	CHECK(rc == MIG_OK && n == 0 && fd.log[0] == '\0', "the archive on the folder's database: nothing to do");
	hd.source = NULL;
	fa.log[0] = '\0';
	rc = mig_apply(&ha, NULL, &n, &err);
	ha.source = NULL;
	rc |= mig_apply(&ha, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 0 && fa.log[0] == '\0', "and the folder on the archive's: nothing to do");
	ha.source = s;

	/* the no-op shortcut digests the content */
	ha.verified_get = f_verified_get;
	ha.verified_put = f_verified_put;
	rc = mig_apply(&ha, NULL, &n, &err);
	loads = fa.loads;
	rc |= mig_apply(&ha, NULL, &n, &err);
	CHECK(rc == MIG_OK && fa.puts == 1 && fa.loads == loads,
		  "an archive found applied is remembered, at once (no racy window): the next call reads no history");
	mig_source_free(s);
	free(buf);
	{
		aentry		edited[6];

		memcpy(edited, same, sizeof(edited));
		edited[4].data = "CREATE TABLE b(y);\n";
		len = make_archive("zip", edited, 6, &buf);
		rc = mig_source_archive(&ha, buf, len, &s, &err);
		ha.source = s;
		rc |= mig_apply(&ha, NULL, &n, &err);
		CHECK(rc == MIG_ERROR && fa.loads == loads + 1 && strcmp(err.sqlstate, "55000") == 0 &&
			  strcmp(err.message, "applied migration 2 has changed since it was applied") == 0,
			  "an edited file of an applied migration: another digest, refused: %s", err.message);
		mig_source_free(s);
		free(buf);
	}
	ha.source = NULL;
	CHECK(fa.live == 0 && fd.live == 0, "nothing left allocated");
	host_done(&fa);
	host_done(&fd);
}

/* Entries added one by one (a JSON object): the same rules, the same
 * result; and a jar's packaging is not part of its folder. */
static void
test_source_entries(void)
{
	mig_host	h;
	fake		f;
	mig_source *s = NULL;
	aentry		jar[] = {{"META-INF/MANIFEST.MF", 0, "Manifest-Version: 1.0\n", 0},
	{"1_a.up.sql", 0, "CREATE TABLE a(x);\n", 0}};
	char	   *buf;
	size_t		len;
	int64_t		n;
	int			rc;

	host_init(&h, &f);
	rc = mig_source_new(&h, "JSON object", &s, &err);
	rc |= mig_source_add(s, "postgres/1_a.up.sql", 19, "CREATE TABLE a(x int);", 22, &err);
	rc |= mig_source_add(s, "sqlite/1_a.up.sql", 17, "CREATE TABLE a(x);", 18, &err);
	rc |= mig_source_seal(s, &err);
	CHECK(rc == MIG_OK && strcmp(mig_source_label(s), "JSON object (2 files)") == 0 &&
		  strncmp(mig_source_logged(s), "JSON object sha256:", 19) == 0,
		  "a JSON object's files: %s", mig_source_logged(s));
	h.source = s;
	h.engine = "sqlite";
	rc = mig_apply(&h, NULL, &n, &err);
	CHECK(rc == MIG_OK && n == 1 && f.n == 1 && strcmp(f.rows[0].file, "sqlite/1_a.up.sql") == 0,
		  "per-engine folders in memory: this engine's read");
	mig_source_free(s);
	rc = mig_source_new(&h, "JSON object", &s, &err);
	rc |= mig_source_add(s, "1_a.up.sql", 10, "x", 1, &err);
	rc |= mig_source_add(s, "1_a.up.sql", 10, "y", 1, &err);
	CHECK(rc == MIG_OK, "duplicates are found when sealed");
	rc = mig_source_seal(s, &err);
	CHECK(rc == MIG_ERROR && strcmp(err.message, "entry \"1_a.up.sql\" appears more than once in the JSON object") == 0,
		  "%s", err.message);
	mig_source_free(s);
	rc = mig_source_new(&h, "JSON object", &s, &err);
	rc = mig_source_add(s, "a\0b.sql", 7, "x", 1, &err);
	CHECK(rc == MIG_ERROR && strcmp(err.sqlstate, "42602") == 0, "a NUL in a name: %s", err.message);
	mig_source_free(s);

	len = make_archive("zip", jar, 2, &buf);
	h.source = NULL;
	host_done(&f);
	host_init(&h, &f);
	rc = mig_source_archive(&h, buf, len, &s, &err);
	h.source = s;
	rc |= mig_apply(&h, NULL, &n, &err);
	CHECK(rc == MIG_OK && n == 1 && strcmp(mig_source_label(s), "archive (zip, 1 file)") == 0,
		  "a jar's META-INF/ is not part of the folder: %s", rc == MIG_OK ? mig_source_label(s) : err.message);
	mig_source_free(s);
	free(buf);
	CHECK(f.live == 0, "nothing left allocated");
	host_done(&f);
}


/* The last archive kept: the same bytes under the same limits are read
 * once; other bytes, other limits, or an archive too large are read. */
static void
test_archive_kept(void)
{
	mig_host	h;
	fake		f;
	mig_source_cache *c = mig_source_cache_create(plain_alloc, free);
	mig_source *s1 = NULL,
			   *s2 = NULL;
	char	   *buf,
			   *big;
	size_t		len = make_archive("tar.gz", same, 6, &buf);
	int			own1,
				own2,
				rc;
	int64_t		n;

	host_init(&h, &f);
	rc = mig_source_archive_cached(&h, c, buf, len, &s1, &own1, &err);
	rc |= mig_source_archive_cached(&h, c, buf, len, &s2, &own2, &err);
	CHECK(rc == MIG_OK && own1 && !own2 && s1 != s2 &&
		  strcmp(mig_source_logged(s1), mig_source_logged(s2)) == 0,
		  "the same archive again: the copy kept, no second read");
	h.source = s2;
	rc = mig_apply(&h, NULL, &n, &err);
	CHECK(rc == MIG_OK && n == 3, "the kept copy applies");
	mig_source_free(s1);
	h.max_file_size = 1000;
	rc = mig_source_archive_cached(&h, c, buf, len, &s1, &own1, &err);
	CHECK(rc == MIG_OK && own1, "other limits: read again");
	mig_source_free(s1);
	h.max_file_size = 0;
	{
		char	   *text = malloc(MIG_KEEP_BUDGET + 2);
		aentry		large[] = {{"1_a.up.sql", 0, text, 0}};
		size_t		blen;

		memset(text, ' ', MIG_KEEP_BUDGET + 1);
		text[MIG_KEEP_BUDGET + 1] = '\0';
		blen = make_archive("tar.gz", large, 1, &big);
		rc = mig_source_archive_cached(&h, c, big, blen, &s1, &own1, &err);
		rc |= mig_source_archive_cached(&h, c, big, blen, &s2, &own2, &err);
		CHECK(rc == MIG_OK && own1 && own2, "one larger than the budget is not kept");
		mig_source_free(s1);
		mig_source_free(s2);
		free(text);
		free(big);
	}
	mig_source_cache_destroy(c);
	free(buf);
	h.source = NULL;
	CHECK(f.live == 0, "nothing of the call's memory left");
	host_done(&f);
}

/* Every allocation of reading an archive and applying it failed in turn:
 * a clean error each time, nothing left, history unchanged. */
static void
test_archive_oom(void)
{
	mig_host	h;
	fake		f;
	char	   *buf;
	size_t		len = make_archive("tar.gz", same, 6, &buf);
	int			clean = 1,
				k;

	for (k = 1; k < 400; k++)
	{
		mig_source *s = NULL;
		int64_t		n = 0;
		int			rc;

		host_init(&h, &f);
		f.fail_at = k;
		rc = mig_source_archive(&h, buf, len, &s, &err);
		h.source = s;
		if (rc == MIG_OK)
			rc = mig_apply(&h, NULL, &n, &err);
		mig_source_free(s);
		if (rc == MIG_OK && f.allocs < k)
			break;				/* no allocation failed: done */
		clean &= rc == MIG_NOMEM && f.live == 0 && f.n == 0;
		host_done(&f);
	}
	CHECK(clean && k > 5 && k < 400, "%d allocation failures, each a clean out-of-memory error", k - 1);
	host_done(&f);
	free(buf);
}

/* The options text: the fan-out options only where the entry point takes
 * them (MIG_USE_EACH), schema= only where it names the tenant or the adopted
 * tool's schema. */
static void
test_options(void)
{
	fake		f;
	mig_host	h;
	mig_arena	a;
	mig_options o;
	mig_err		err;

	host_init(&h, &f);
	mig_arena_init(&a, &h);
	memset(&err, 0, sizeof(err));
	CHECK(mig_options_parse_for(&a, "on_error=continue, canary=3 parallel=2 schema=t1",
								MIG_USE_APPLY | MIG_USE_EACH | MIG_USE_TENANT, &o, &err) == MIG_OK &&
		  o.on_error_continue == 1 && o.canary == 3 && o.parallel == 2 &&
		  strcmp(o.schema, "t1") == 0, "fan-out options read: %s", err.message);
	CHECK(mig_options_parse_for(&a, "", MIG_USE_EACH, &o, &err) == MIG_OK &&
		  o.on_error_continue == 0 && o.canary == 0 && o.parallel == 0 && o.schema == NULL,
		  "fan-out defaults: stop at the first failure, no canary, one at a time");
	CHECK(mig_options_parse_for(&a, "on_error=continue", MIG_USE_APPLY, &o, &err) == MIG_ERROR &&
		  strcmp(err.message, "unknown option \"on_error\"") == 0,
		  "on_error refused outside the fan-out functions: %s", err.message);
	CHECK(mig_options_parse_for(&a, "schema=t1", MIG_USE_APPLY, &o, &err) == MIG_ERROR,
		  "schema= refused where the entry point has no tenants");
	CHECK(mig_options_parse_for(&a, "on_error=maybe", MIG_USE_EACH, &o, &err) == MIG_ERROR &&
		  strcmp(err.message, "option on_error takes stop or continue, not \"maybe\"") == 0,
		  "on_error=maybe: %s", err.message);
	CHECK(mig_options_parse_for(&a, "parallel=0", MIG_USE_EACH, &o, &err) == MIG_ERROR &&
		  mig_options_parse_for(&a, "canary=-1", MIG_USE_EACH, &o, &err) == MIG_ERROR &&
		  mig_options_parse_for(&a, "canary=10001", MIG_USE_EACH, &o, &err) == MIG_ERROR,
		  "parallel=0, canary=-1 and canary=10001 refused");
	mig_arena_free(&a);
	host_done(&f);
}

/* mig_options_split: the tenant and the fan-out's options read and taken
 * out, the rest left for the entry point as given, every error as the
 * entry point would give it. */
static void
test_options_split(void)
{
	fake		f;
	mig_host	h;
	mig_tenant_options o;
	mig_err		err;
	char	   *rest = NULL;
	int			rc;

	host_init(&h, &f);
	memset(&err, 0, sizeof(err));
	rc = mig_options_split(&h, " schema=acme, target=3 wait=0", MIG_OPTIONS_APPLY, &o, &rest, &err);
	CHECK(rc == MIG_OK && strcmp(o.schema, "acme") == 0 && rest &&
		  strcmp(rest, "target=3,wait=0") == 0, "schema= taken out: %s", rest ? rest : err.message);
	h.release(h.ctx, rest);
	rc = mig_options_split(&h, "on_error=continue canary=2 verbose=true,target=5", MIG_OPTIONS_EACH,
						   &o, &rest, &err);
	CHECK(rc == MIG_OK && o.on_error_continue == 1 && o.canary == 2 &&
		  o.verbose == 1 && o.schema[0] == '\0' && strcmp(rest, "verbose=true,target=5") == 0,
		  "fan-out options taken out: %s", rest ? rest : err.message);
	h.release(h.ctx, rest);
	CHECK(mig_options_split(&h, NULL, MIG_OPTIONS_NONE, &o, &rest, &err) == MIG_OK && rest == NULL &&
		  o.verbose == -1, "no options: nothing to pass on");
	CHECK(mig_options_split(&h, "target=3", MIG_OPTIONS_NONE, &o, &rest, &err) == MIG_ERROR &&
		  rest == NULL && strcmp(err.message, "unknown option \"target\"") == 0 &&
		  strcmp(err.hint, "The options are schema.") == 0,
		  "an entry point without options takes schema= alone: %s / %s", err.message, err.hint);
	CHECK(mig_options_split(&h, "schema=acme", MIG_OPTIONS_EACH, &o, &rest, &err) == MIG_ERROR &&
		  rest == NULL, "no schema= in a fan-out");
	CHECK(mig_options_split(&h, "schema=", MIG_OPTIONS_APPLY, &o, &rest, &err) == MIG_ERROR &&
		  rest == NULL, "an empty schema= refused: %s", err.message);
	CHECK(mig_options_split(&h, "schema=flyway_s,wait=1", MIG_OPTIONS_ADOPT, &o, &rest, &err) == MIG_OK &&
		  o.schema[0] == '\0' && rest && strcmp(rest, "schema=flyway_s,wait=1") == 0,
		  "adopt's schema= is the other tool's, passed on, not a tenant: [%s] [%s]", o.schema,
		  rest ? rest : "(null)");
	h.release(h.ctx, rest);
	rest = NULL;
	CHECK(mig_options_split(&h, "schema=t1 only=flagged", MIG_OPTIONS_SCRIPT, &o, &rest, &err) == MIG_OK &&
		  strcmp(o.schema, "t1") == 0 && rest && strcmp(rest, "only=flagged") == 0,
		  "script takes only= and a tenant: [%s]", rest ? rest : "(null)");
	h.release(h.ctx, rest);
	rest = NULL;
	host_done(&f);
}

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_versions();
	test_options();
	test_options_split();
	test_file_id_format();
	test_flyway_checksum();
	test_sql_helpers();
	test_apply_and_down();
	test_layout_rules();
	test_layout_folders();
	test_refusals();
	test_missing_folder();
	test_status();
	test_oom_sweep();
	test_memory_bound();
	test_cache();
	test_noop_shortcut();
	test_ops();
	test_sha256();
	test_archive_refusals();
	test_archive_as_folder();
	test_source_entries();
	test_archive_oom();
	test_archive_kept();
	fresh();
	rmdir(dir);
	printf("1..%d\n", tests);
	printf("core: %d passed, %d failed\n", tests - failures, failures);
	return failures != 0;
}
