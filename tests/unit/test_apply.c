/*
 * test_apply.c -- unit tests of applying a folder against the fake host:
 * apply and down, every refusal, a missing folder, status, the
 * allocation-failure sweep, the memory bound, the checksum cache and the
 * no-op shortcut.
 */
#define _GNU_SOURCE
#include "test_core.h"

void
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

void
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

void
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

void
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
void
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
void
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

/* The checksum cache: a warm no-op opens no file, and an edit that keeps
 * the size is still caught; files changed just before reading are not
 * trusted. */
void
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
void
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
