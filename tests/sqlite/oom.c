/*
 * oom.c -- the allocation-failure sweep through the real SQLite and the real
 * extension, as SQLite tests itself: SQLite's allocator is replaced by one
 * that fails the Nth allocation, for every N from 1 until migrate_apply,
 * migrate_status, migrate_down and migrate_impact succeed.  Every run must end in success
 * or a clean error, leave the database as it was and the connection outside
 * any transaction it did not open, and give back every allocation.  Found
 * this way: after an out-of-memory error SQLite prepares nothing more until
 * the calling statement ends, so the adapter prepares its ROLLBACK before
 * it opens the transaction.  Prints TAP.
 *
 *   build/oom build/migrate <migrations folder>
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

/* ---- the failing allocator (a test harness may keep globals) ---- */
static sqlite3_mem_methods real;
static long countdown = -1;		/* fail when it reaches 0; -1: never */
static long live;				/* allocations not given back */
static int	failed;

static void *
x_malloc(int n)
{
	void	   *p;

	if (countdown > 0 && --countdown == 0)
	{
		failed = 1;
		return NULL;
	}
	if ((p = real.xMalloc(n)) != NULL)
		live++;
	return p;
}

static void
x_free(void *p)
{
	if (p)
		live--;
	real.xFree(p);
}

static void *
x_realloc(void *p, int n)
{
	if (countdown > 0 && --countdown == 0)
	{
		failed = 1;
		return NULL;
	}
	return real.xRealloc(p, n);
}

static int
x_size(void *p)
{
	return real.xSize(p);
}

static int
x_roundup(int n)
{
	return real.xRoundup(n);
}

static int
x_init(void *a)
{
	return real.xInit(a);
}

static void
x_shutdown(void *a)
{
	real.xShutdown(a);
}

/* ---- helpers ---- */
static int	tests,
			failures;

static void
check(int ok, const char *what, long n)
{
	printf("%sok %d - oom: %s (%ld runs)\n", ok ? "" : "not ", ++tests, what, n);
	if (!ok)
		failures++;
}

static char *
query(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	static char out[8192];

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return strcpy(out, "?");
	while (sqlite3_step(st) == SQLITE_ROW)
	{
		const char *t = (const char *) sqlite3_column_text(st, 0);

		strncat(out, t ? t : "NULL", sizeof(out) - strlen(out) - 2);
		strcat(out, "|");
	}
	sqlite3_finalize(st);
	return out;
}

/* What a failed call must leave as it was. */
static void
state(sqlite3 *db, char *buf, size_t n)
{
	long		saved = countdown;

	countdown = -1;
	snprintf(buf, n, "%s", query(db, "SELECT name || ':' || coalesce(sql, '') FROM sqlite_schema ORDER BY name"));
	countdown = saved;
}

/*
 * Sweeps one statement: for N = 1, 2, ... opens the database, loads the
 * extension, fails the Nth allocation from there on, runs sql.  Returns
 * the number of runs, or -1 when a run broke a rule.  It stops at the first
 * run that succeeds; with every, at the first that succeeds with no
 * allocation failed (SQLite itself goes on after some failed ones, such as
 * those of sqlite3_open's built-in extensions: a statement that opens
 * connections would otherwise stop the sweep at its first open).
 */
static long
sweep_to(const char *dbfile, const char *ext, const char *setup, const char *sql, int every,
		 const char **why)
{
	long		only = getenv("OOM_ONLY") ? atol(getenv("OOM_ONLY")) : 0;

	for (long n = only ? only : 1; n < 200000; n++)
	{
		sqlite3    *db = NULL;
		char		before[8192],
					after[8192];
		char	   *err = NULL;
		long		live0 = live;
		int			rc;

		countdown = -1;
		failed = 0;
		if (sqlite3_open(dbfile, &db) != SQLITE_OK ||
			sqlite3_enable_load_extension(db, 1) != SQLITE_OK ||
			sqlite3_load_extension(db, ext, NULL, NULL) != SQLITE_OK ||
			(setup && sqlite3_exec(db, setup, NULL, NULL, NULL) != SQLITE_OK))
		{
			*why = "setup failed";
			return -1;
		}
		state(db, before, sizeof(before));
		countdown = n;
		rc = sqlite3_exec(db, sql, NULL, NULL, &err);
		countdown = -1;
		/* the caller's own transaction, once the call succeeded, commits
		 * with every allocation granted: a failure of the caller's COMMIT
		 * is the caller's, not the extension's */
		if (rc == SQLITE_OK && !sqlite3_get_autocommit(db))
			rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &err);
		if (rc != SQLITE_OK)
		{
			if (!failed)
			{
				fprintf(stderr, "# run %ld: %s\n", n, err ? err : "?");
				*why = "an error that is not out-of-memory";
				return -1;
			}
			/* (with the caller's own BEGIN in sql, the failure may have hit
			 * that BEGIN: nothing to say about the transaction then) */
			if (!strstr(sql, "BEGIN") && !sqlite3_get_autocommit(db))
			{
				fprintf(stderr, "# run %ld (%s) left a transaction open\n", n, err ? err : "?");
				*why = "a failed run left the connection in a transaction";
				return -1;
			}
			state(db, after, sizeof(after));
			if (getenv("OOM_ONLY"))
			{
				sqlite3    *other;
				char		third[8192];

				sqlite3_open(dbfile, &other);
				state(other, third, sizeof(third));
				fprintf(stderr, "# autocommit %d; a second connection sees: %s\n",
						sqlite3_get_autocommit(db), third);
				sqlite3_close(other);
			}
			if (strcmp(before, after) != 0)
			{
				fprintf(stderr, "# run %ld (%s) changed the schema:\n# %s\n# %s\n", n, err ? err : "?",
						before, after);
				*why = "a failed run changed the database";
				return -1;
			}
		}
		if (sqlite3_close(db) != SQLITE_OK)
		{
			*why = "statements left open";
			return -1;
		}
		if (only)
			fprintf(stderr, "# run %ld: rc %d, %s, live %ld -> %ld\n", n, rc, err ? err : "-", live0, live);
		sqlite3_free(err);
		if (live != live0)
		{
			fprintf(stderr, "# run %ld: %ld allocations not given back\n", n, live - live0);
			*why = "a leak";
			return -1;
		}
		if (rc == SQLITE_OK && (!every || !failed))	/* (an allocation may
													 * have failed where a
													 * fallback exists) */
			return n;
	}
	*why = "never succeeded";
	return -1;
}

static long
sweep(const char *dbfile, const char *ext, const char *setup, const char *sql,
	  const char **why)
{
	return sweep_to(dbfile, ext, setup, sql, 0, why);
}

int
main(int argc, char **argv)
{
	sqlite3_mem_methods mine;
	char		sql[4096],
				db[] = "/tmp/mig_oom_XXXXXX";
	const char *why = "";
	long		n;
	int			fd;

	if (argc != 3)
	{
		fprintf(stderr, "usage: %s build/migrate <folder>\n", argv[0]);
		return 2;
	}
	sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real);
	mine = real;
	mine.xMalloc = x_malloc;
	mine.xFree = x_free;
	mine.xRealloc = x_realloc;
	mine.xSize = x_size;
	mine.xRoundup = x_roundup;
	mine.xInit = x_init;
	mine.xShutdown = x_shutdown;
	sqlite3_config(SQLITE_CONFIG_MALLOC, &mine);
	sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0);	/* every allocation counts */
	if ((fd = mkstemp(db)) < 0)
		return 2;
	close(fd);

	snprintf(sql, sizeof(sql), "SELECT migrate_apply('%s');", argv[2]);
	n = sweep(db, argv[1], NULL, sql, &why);
	check(n > 0, n > 0 ? "migrate_apply: every failure clean, nothing changed, nothing leaked" : why, n);

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM migrate_status('%s');", argv[2]);
	n = sweep(db, argv[1], NULL, sql, &why);
	check(n > 0, n > 0 ? "migrate_status: every failure clean, nothing leaked" : why, n);

	n = sweep(db, argv[1], NULL, "SELECT migrate_down(2);", &why);
	check(n > 0, n > 0 ? "migrate_down: every failure clean, nothing changed, nothing leaked" : why, n);

	snprintf(sql, sizeof(sql), "BEGIN; SELECT migrate_apply('%s');", argv[2]);
	n = sweep(db, argv[1], NULL, sql, &why);
	check(n > 0, n > 0 ? "migrate_apply in the caller's transaction" : why, n);

	/* migrate_impact, and apply under the impact policy (sq_impact.c) */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM migrate_impact('%s', 'no_rewrite=true');", argv[2]);
	n = sweep(db, argv[1], NULL, sql, &why);
	check(n > 0, n > 0 ? "migrate_impact: every failure clean, nothing leaked" : why, n);

	snprintf(sql, sizeof(sql), "SELECT migrate_apply('%s', 'no_rewrite=true, max_lock=ShareLock');", argv[2]);
	n = sweep(db, argv[1], NULL, sql, &why);
	check(n > 0, n > 0 ? "migrate_apply under the impact policy" : why, n);

	/* the fan-out's no-op over up-to-date tenant files (sq_each.c: read
	 * first, then nothing written); unless both tenants come out
	 * up_to_date the statement fails (json() of no JSON), so that a
	 * failure absorbed into a row does not end the sweep early */
	{
		char		t1[sizeof(db) + 8],
					t2[sizeof(db) + 8],
					setup[4096];

		snprintf(t1, sizeof(t1), "%s-t1", db);
		snprintf(t2, sizeof(t2), "%s-t2", db);
		if ((fd = open(t1, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
			return 2;
		close(fd);
		if ((fd = open(t2, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
			return 2;
		close(fd);
		snprintf(setup, sizeof(setup), "SELECT count(*) FROM migrate_apply_each('%s', json_array('%s', '%s'));",
				 argv[2], t1, t2);
		snprintf(sql, sizeof(sql), "SELECT CASE WHEN (SELECT count(*) FROM migrate_apply_each('%s',"
				 " json_array('%s', '%s')) WHERE status = 'up_to_date') = 2 THEN 1 ELSE json('no') END;",
				 argv[2], t1, t2);
		n = sweep_to(db, argv[1], setup, sql, 1, &why);
		check(n > 0, n > 0 ? "migrate_apply_each, every tenant up to date, every allocation" : why, n);
		unlink(t1);
		unlink(t2);
	}

	unlink(db);
	printf("1..%d\n", tests);
	printf("oom: %d passed, %d failed\n", tests - failures, failures);
	return failures != 0;
}
