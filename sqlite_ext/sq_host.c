/*
 * sq_host.c -- the mig_host over one SQLite connection: files through
 * POSIX, the lock as BEGIN IMMEDIATE (or a savepoint plus a write inside
 * the caller's transaction), the history in main.migrate_history, and
 * scripts run one prepared statement at a time with explicit lengths.
 */
#define _DEFAULT_SOURCE			/* flock */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

static const char history_ddl[] =
"CREATE TABLE IF NOT EXISTS main.migrate_history(\n"
"  installed_rank INTEGER PRIMARY KEY,\n"
"  version        TEXT NOT NULL UNIQUE,\n"
"  name           TEXT NOT NULL,\n"
"  up_file        TEXT NOT NULL,\n"
"  down_file      TEXT,\n"
"  checksum       TEXT NOT NULL,\n"
"  checksum_norm  TEXT,\n"
"  applied_at     TEXT NOT NULL,\n"
"  execution_ms   REAL NOT NULL,\n"
"  file_id        TEXT,\n"		/* before the scripts: a no-op reads it and */
"  applied_by     TEXT,\n"		/* not them, which may overflow pages */
"  down_mode      TEXT,\n"
"  down_line      INTEGER,\n"
"  ahead          INTEGER,\n"		/* recorded ahead by an off-hours script */
"  up_sql         TEXT NOT NULL,\n"
"  down_sql       TEXT\n"
")";

/*
 * Columns a history made by an earlier build lacks, added when the lock is
 * taken: the normalised checksum; who applied the migration (the
 * operating-system user: SQLite has no roles, whoever can write the file
 * decides what it holds); how its down script runs (transaction, outside
 * a transaction, or noop when it holds no statement) and the line of the
 * down file it starts at.
 */
static const char *const added_columns[][2] = {
	{"checksum_norm", "TEXT"},
	{"applied_by", "TEXT"},
	{"down_mode", "TEXT"},
	{"down_line", "INTEGER"},
	{"ahead", "INTEGER"},		/* mig_record.ahead (sq_impact.c) */
};

/* Every repair of a recorded checksum (migrate_repair): an audit trail. */
static const char repairs_ddl[] =
"CREATE TABLE IF NOT EXISTS main.migrate_repairs(\n"
"  version        TEXT NOT NULL,\n"
"  old_checksum   TEXT NOT NULL,\n"	/* '' when there is none */
"  new_checksum   TEXT NOT NULL,\n"
"  repaired_by    TEXT,\n"
"  repaired_at    TEXT NOT NULL,\n"
"  action         TEXT\n"		/* repair, discard_partial, record; NULL in
								 * rows of earlier builds: repair */
")";

/* Sets err from the connection's last error. */
static int
db_error(sq_ctx *c, mig_err *err, const char *what)
{
	int			code = sqlite3_errcode(c->db);

	if (code == SQLITE_NOMEM)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	mig_err_set(err, code == SQLITE_BUSY || code == SQLITE_LOCKED ? MIG_SQLSTATE_LOCK :
				code == SQLITE_INTERRUPT ? SQ_SQLSTATE_CANCELED : MIG_SQLSTATE_INTERNAL,
				"%s: %s", what, sqlite3_errmsg(c->db));
	if (code == SQLITE_BUSY)
	{
		mig_err_detail(err, "Another connection kept the database from being written for longer than the busy timeout; nothing was applied.");
		mig_err_hint(err, "Retry later, or raise the wait with PRAGMA busy_timeout.");
	}
	return MIG_ERROR;
}

static int
run(sq_ctx *c, const char *sql, mig_err *err)
{
	if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_error(c, err, sql);
	return MIG_OK;
}

/* ---- memory and files ---- */

static void *
sq_alloc(void *ctx, size_t n)
{
	(void) ctx;
	return sqlite3_malloc64(n);
}

static void
sq_release(void *ctx, void *p)
{
	(void) ctx;
	sqlite3_free(p);
}

static int
sq_open_file(void *ctx, const char *path, mig_err *err)
{
	int			fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	(void) ctx;
	if (fd < 0)
		mig_err_errno(err, errno, "open file", path);
	return fd;
}

static int
sq_open_dir(void *ctx, const char *path, mig_err *err)
{
	int			fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	(void) ctx;
	if (fd < 0)
		mig_err_errno(err, errno, "open folder", path);
	return fd;
}

static void
sq_close_file(void *ctx, int fd)
{
	(void) ctx;
	close(fd);
}

static int
sq_list_dir(void *ctx, const char *path, mig_name_cb cb, void *arg, mig_err *err)
{
	DIR		   *d = opendir(path);
	struct dirent *de;
	int			rc = MIG_OK;

	(void) ctx;
	if (d == NULL)
	{
		mig_err_errno(err, errno, "open directory", path);
		return MIG_ERROR;
	}
	errno = 0;
	while (rc == MIG_OK && (de = readdir(d)) != NULL)
	{
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			rc = cb(arg, de->d_name);
		errno = 0;
	}
	if (rc == MIG_OK && errno != 0)
	{
		mig_err_errno(err, errno, "read directory", path);
		rc = MIG_ERROR;
	}
	closedir(d);
	return rc;
}

/* ---- the calling context ---- */

/* 1 when the statement's program opens a database (it reads or writes
 * tables), found through EXPLAIN; 0 when not; -1 when out of memory. */
static int
stmt_touches_db(sqlite3 *db, sqlite3_stmt *self)
{
	char	   *sql = sqlite3_mprintf("EXPLAIN %s", sqlite3_sql(self));
	sqlite3_stmt *ex = NULL;
	int			found = 0,
				rc = SQLITE_NOMEM;

	if (sql && (rc = sqlite3_prepare_v2(db, sql, -1, &ex, NULL)) == SQLITE_OK)
		while (!found && (rc = sqlite3_step(ex)) == SQLITE_ROW)
		{
			const char *op = (const char *) sqlite3_column_text(ex, 1);

			if (op == NULL)
				rc = SQLITE_NOMEM;
			found = op && (strcmp(op, "Transaction") == 0 || strcmp(op, "OpenRead") == 0);
		}
	sqlite3_finalize(ex);
	sqlite3_free(sql);
	return (rc & 0xff) == SQLITE_NOMEM ? -1 : found;
}

/* Refuses to run while another statement is busy on the connection, or
 * from a statement that reads tables: a DROP TABLE would fail with
 * "database table is locked", and a rollback would abort the caller. */
static int
check_caller(sq_ctx *c, mig_err *err)
{
	sqlite3_stmt *s = NULL,
			   *self = NULL;
	int			busy = 0,
				reads = 0;

	while ((s = sqlite3_next_stmt(c->db, s)) != NULL)
		if (sqlite3_stmt_busy(s))
		{
			busy++;
			self = s;
		}
	if (busy == 1 && (reads = stmt_touches_db(c->db, self)) < 0)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	if (busy <= 1 && !reads)
		return MIG_OK;
	if (busy > 1)
		mig_err_set(err, MIG_SQLSTATE_IN_USE,
					"%s cannot run while another statement is running on this connection", c->fn);
	else
		mig_err_set(err, MIG_SQLSTATE_IN_USE,
					"%s cannot run inside a statement that reads tables", c->fn);
	mig_err_hint(err, "Call it in a statement of its own, such as SELECT %s(...); after the other statements have finished.", c->fn);
	return MIG_ERROR;
}

/* ---- unit of work ---- */

/* 1 when table main.t has column col. */
static int
has_column(sq_ctx *c, const char *t, const char *col)
{
	return sqlite3_table_column_metadata(c->db, "main", t, col, NULL, NULL, NULL,
										 NULL, NULL) == SQLITE_OK;
}

/* Adds the columns that a history made by an earlier build lacks. */
static int
upgrade_history(sq_ctx *c)
{
	int			rc = SQLITE_OK;

	for (size_t i = 0; rc == SQLITE_OK && i < sizeof(added_columns) / sizeof(added_columns[0]); i++)
	{
		char	   *sql;

		if (has_column(c, "migrate_history", added_columns[i][0]))
			continue;
		sql = sqlite3_mprintf("ALTER TABLE main.migrate_history ADD COLUMN %s %s",
							  added_columns[i][0], added_columns[i][1]);
		rc = sql ? sqlite3_exec(c->db, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
		sqlite3_free(sql);
	}
	return rc;
}

static void
restore_timeout(sq_ctx *c)
{
	if (c->restore_timeout >= 0)
		sqlite3_busy_timeout(c->db, c->restore_timeout);
	c->restore_timeout = -1;
}

static int	sq_unlock(void *ctx, int commit, mig_err *err);
static void sq_notice(void *ctx, const char *message, const char *detail);
static void release_outside(sq_ctx *c);
static int	outside_running(sq_ctx *c, char *who, size_t size, mig_err *err);
static void finalize_undo(sq_ctx *c);

/* Room for the lock file's path ("{db}-migrate-lock") and for the text its
 * holder writes in it (which migration runs), read back by callers that
 * wait. */
#define LOCK_PATH_MAX (4096 + sizeof("-migrate-lock"))
#define LOCK_WHO_MAX 160

/* Where the migration lock is kept while a migration runs outside a
 * transaction (lock_target). */
enum
{
	LOCK_NONE,					/* nowhere: the database is this connection's */
	LOCK_FILE,					/* in a lock file beside the database */
	LOCK_SHARED_MEMORY,			/* nowhere it could be: refused */
	LOCK_TOO_LONG				/* the lock file's path does not fit */
};

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* Opens the transaction (or, inside the caller's, a savepoint and a write,
 * which takes the write lock before the history is read) and makes sure the
 * history exists; an SQLite result code. */
static int
begin_locked(sq_ctx *c)
{
	int			rc;

	c->in_txn = !sqlite3_get_autocommit(c->db);
	rc = sqlite3_prepare_v2(c->db, c->in_txn ? "ROLLBACK TO migrate" : "ROLLBACK", -1,
							&c->undo[0], NULL);
	if (rc == SQLITE_OK && c->in_txn)
		rc = sqlite3_prepare_v2(c->db, "RELEASE migrate", -1, &c->undo[1], NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, c->in_txn ? "SAVEPOINT migrate" : "BEGIN IMMEDIATE",
						  NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return rc;
	c->locked = 1;
	rc = sqlite3_exec(c->db, history_ddl, NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "DELETE FROM main.migrate_history WHERE 0", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = upgrade_history(c);
	return rc;
}

/* Sets the busy timeout to ms, noting the connection's own (timeout) to
 * put back at unlock. */
static void
set_timeout(sq_ctx *c, int timeout, int ms)
{
	if (c->restore_timeout < 0)
		c->restore_timeout = timeout;
	sqlite3_busy_timeout(c->db, ms);
}

/* Gives back what a lock attempt took (the core calls no unlock then). */
static void
abandon_lock(sq_ctx *c)
{
	if (c->locked)
	{
		mig_err		ignored;

		mig_err_clear(&ignored);
		sq_unlock(c, 0, &ignored);
	}
	finalize_undo(c);
}

/*
 * Refuses a trigger on migrate's own tables (in main, or a temporary one
 * on them): it would run on each write of the history, the progress or the
 * call log, within the call's transaction, and could make the history say
 * other than what ran.  Checked when the lock is taken and again before the
 * commit, which catches one a migration created.  MIG_OK, or MIG_ERROR
 * with err naming the trigger.
 */
int
sq_planted_trigger(sq_ctx *c, mig_err *err)
{
	static const char sql[] =
		"SELECT 'main', name, tbl_name FROM main.sqlite_master WHERE type = 'trigger'"
		" AND tbl_name IN ('migrate_history', 'migrate_progress', 'migrate_repairs', 'migrate_calls')"
		" UNION ALL SELECT 'temp', name, tbl_name FROM temp.sqlite_master WHERE type = 'trigger'"
		" AND tbl_name IN ('migrate_history', 'migrate_progress', 'migrate_repairs', 'migrate_calls')"
		" LIMIT 1";
	sqlite3_stmt *st = NULL;
	int			rc;

	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(c, err, "could not look for triggers on the history");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE, "%s refuses to run: trigger \"%s\" (%s) is on %s",
					c->fn, (const char *) sqlite3_column_text(st, 1),
					(const char *) sqlite3_column_text(st, 0),
					(const char *) sqlite3_column_text(st, 2));
		mig_err_detail(err, "A trigger on migrate's own tables would run on every write of the history and could make it differ from what ran.");
		mig_err_hint(err, "Drop the trigger; migrate's tables take none.");
		sqlite3_finalize(st);
		return MIG_ERROR;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? MIG_OK : db_error(c, err, "could not look for triggers on the history");
}

/*
 * Takes the write lock: BEGIN IMMEDIATE, or inside the caller's transaction
 * a savepoint and a write.  It waits o->wait_ms when given, else as the
 * connection's busy timeout says (60 s when it has none); once taken, the
 * statements that follow (a COMMIT waiting for readers) wait as the
 * connection's timeout says.  While another connection runs a migration
 * outside a transaction, which holds the lock file rather than the write
 * lock, it waits (within the same time) for that migration to be done,
 * without the write lock, which the migration's statements need.
 */
static int
sq_lock(void *ctx, const mig_lock_opts *o, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			timeout = -1,
				effective,
				waited,
				nap = 1,
				running,
				rc;
	double		deadline;
	char		who[LOCK_WHO_MAX] = "";

	if (o->verbose >= 0)
		c->verbose = o->verbose;
	if (check_caller(c, err) != MIG_OK)
		return MIG_ERROR;
	/* honour the connection's busy timeout; without one, wait a while (and
	 * when it cannot be read, leave it alone) */
	if (sqlite3_prepare_v2(c->db, "PRAGMA busy_timeout", -1, &st, NULL) == SQLITE_OK &&
		sqlite3_step(st) == SQLITE_ROW)
		timeout = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	effective = timeout == 0 ? SQ_DEFAULT_BUSY_MS : timeout;
	waited = o->wait_ms == MIG_WAIT_FOREVER ? INT_MAX :	/* 24 days */
		o->wait_ms >= 0 ? (int) o->wait_ms : effective;
	deadline = waited >= 0 ? now_ms() + waited : -1;
	for (int attempt = 0;; attempt++)
	{
		int			left = waited;

		running = 0;
		if (left >= 0 && attempt > 0)	/* what is left of the wait */
			left = deadline > now_ms() ? (int) (deadline - now_ms()) : 0;
		if (left >= 0 && left != timeout)
			set_timeout(c, timeout, left);
		if ((rc = begin_locked(c)) != SQLITE_OK)
			break;
		/* the write lock held, a free lock file means that no migration is
		 * half-way through outside a transaction */
		if (!(running = outside_running(c, who, sizeof(who), err)))
		{
			if (sq_planted_trigger(c, err) != MIG_OK)
			{
				abandon_lock(c);
				restore_timeout(c);
				return MIG_ERROR;
			}
			if (effective >= 0 && left != effective)
				set_timeout(c, timeout, effective);
			return MIG_OK;
		}
		abandon_lock(c);
		/* inside the caller's transaction its write lock stays: waiting
		 * would stop that migration */
		while (running > 0 && !c->in_txn && (running = outside_running(c, who, sizeof(who), err)) > 0)
		{
			double		rest = deadline < 0 ? nap : deadline - now_ms();

			if (rest <= 0)
				break;
			sqlite3_sleep(rest < nap ? (int) rest + 1 : nap);
			nap = nap < 50 ? nap * 2 : 50;
		}
		if (running)
			break;
	}
	if (running < 0)
	{
		/* a lock file that cannot be looked at: err says which */
		abandon_lock(c);
		restore_timeout(c);
		return MIG_ERROR;
	}
	if (running)
	{
		mig_err_set(err, MIG_SQLSTATE_LOCK,
					"could not take the migration lock: another connection is applying %s outside a transaction",
					who[0] ? who : "a migration");
		if (c->in_txn)
		{
			mig_err_detail(err, "Inside a transaction the call cannot wait for it: the transaction's write lock would stop that migration.");
			mig_err_hint(err, "Call %s in autocommit mode, where it waits until that migration is done, or retry later.", c->fn);
		}
		else
		{
			mig_err_detail(err, "Waited %d ms for it to be done.", waited);
			mig_err_hint(err, "Retry later, or wait longer with the option wait=30s or PRAGMA busy_timeout.");
		}
		rc = MIG_BUSY;
	}
	else if ((rc & 0xff) == SQLITE_NOMEM)
		mig_err_nomem(err);
	else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
	{
		mig_err_set(err, MIG_SQLSTATE_LOCK, "could not take the migration lock: %s",
					sqlite3_errmsg(c->db));
		if (waited > 0)
			mig_err_detail(err, "Another connection held the database's write lock for more than %d ms; SQLite does not tell which.", waited);
		else
			mig_err_detail(err, "Another connection holds the database's write lock; SQLite does not tell which.");
		mig_err_hint(err, "Retry later, or wait longer with the option wait=30s or PRAGMA busy_timeout.");
		rc = MIG_BUSY;
	}
	else
		db_error(c, err, "could not take the migration lock");
	abandon_lock(c);
	restore_timeout(c);
	if (rc == MIG_BUSY)
		c->skipped = 1;			/* logged as such if the call skips */
	return rc == MIG_BUSY ? MIG_BUSY : err->code;
}

static void
finalize_undo(sq_ctx *c)
{
	sqlite3_finalize(c->undo[0]);
	sqlite3_finalize(c->undo[1]);
	c->undo[0] = c->undo[1] = NULL;
}

/* Rolls back with the statements prepared before the transaction opened. */
static int
undo(sq_ctx *c, mig_err *err)
{
	for (int i = 0; i < 2 && c->undo[i]; i++)
	{
		if (i == 0 && !c->in_txn && sqlite3_get_autocommit(c->db))
			break;				/* an error has already ended it */
		if (sqlite3_step(c->undo[i]) != SQLITE_DONE)
		{
			int			rc = db_error(c, err, "could not roll back");

			sqlite3_reset(c->undo[i]);
			return rc;
		}
		sqlite3_reset(c->undo[i]);
	}
	return MIG_OK;
}

static int
sq_unlock(void *ctx, int commit, mig_err *err)
{
	sq_ctx	   *c = ctx;
	int			rc = MIG_OK;

	sqlite3_finalize(c->add);
	c->add = NULL;
	if (c->locked)
	{
		/* one a migration created has run on its history rows */
		if (commit && (rc = sq_planted_trigger(c, err)) != MIG_OK)
			return rc;			/* the core calls again to roll back */
		/* the call's row goes with what it did */
		if (commit && (rc = sq_call_log(c, "ok", NULL, err)) != MIG_OK)
			return rc;			/* the core calls again to roll back */
		if (commit)
			rc = run(c, c->in_txn ? "RELEASE migrate" : "COMMIT", err);
		else
			rc = undo(c, err);
		if (rc != MIG_OK && commit)
			return rc;			/* the core calls again to roll back */
		c->locked = 0;
	}
	/* also after a migration outside a transaction failed, with the
	 * transaction already ended */
	finalize_undo(c);
	restore_timeout(c);
	release_outside(c);
	return rc;
}

/* ---- history ---- */

static int
history_exists(sq_ctx *c)
{
	return sqlite3_table_column_metadata(c->db, "main", "migrate_history", NULL,
										 NULL, NULL, NULL, NULL, NULL) == SQLITE_OK;
}

static int
sq_history_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK,
				src;

	if (!history_exists(c))
		return MIG_OK;
	/* a history of an earlier build, read without the lock (status),
	 * lacks down_mode until the next call that takes the lock */
	if (sqlite3_prepare_v2(c->db, !has_column(c, "migrate_history", "down_mode") ?
						   "SELECT version, name, up_file, checksum, applied_at, execution_ms,"
						   " installed_rank, down_sql IS NOT NULL, file_id, checksum_norm,"
						   " NULL, 0 FROM main.migrate_history" :
						   !has_column(c, "migrate_history", "ahead") ?
						   "SELECT version, name, up_file, checksum, applied_at, execution_ms,"
						   " installed_rank, down_sql IS NOT NULL, file_id, checksum_norm,"
						   " down_mode, 0 FROM main.migrate_history" :
						   "SELECT version, name, up_file, checksum, applied_at, execution_ms,"
						   " installed_rank, down_sql IS NOT NULL, file_id, checksum_norm,"
						   " down_mode, ahead FROM main.migrate_history",
						   -1, &st, NULL) != SQLITE_OK)
		return db_error(c, err, "could not read migrate_history");
	while (rc == MIG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
	{
		mig_hist_row r;

		memset(&r, 0, sizeof(r));
		r.version = (const char *) sqlite3_column_text(st, 0);
		r.name = (const char *) sqlite3_column_text(st, 1);
		r.file = (const char *) sqlite3_column_text(st, 2);
		r.checksum = (const char *) sqlite3_column_text(st, 3);
		r.applied_at = (const char *) sqlite3_column_text(st, 4);
		r.exec_ms = sqlite3_column_double(st, 5);
		r.rank = sqlite3_column_int64(st, 6);
		r.has_down = sqlite3_column_int(st, 7);
		r.file_id = (const char *) sqlite3_column_text(st, 8);
		r.checksum_norm = (const char *) sqlite3_column_text(st, 9);
		{
			const char *mode = (const char *) sqlite3_column_text(st, 10);

			r.down_outside = mode && strcmp(mode, "outside") == 0;
			r.down_noop = mode && strcmp(mode, "noop") == 0;
		}
		r.ahead = sqlite3_column_int(st, 11) != 0;
		if (r.version == NULL)
		{
			rc = db_error(c, err, "could not read migrate_history");
			break;
		}
		rc = cb(arg, &r);
	}
	if (rc == MIG_OK && src != SQLITE_DONE)
		rc = db_error(c, err, "could not read migrate_history");
	sqlite3_finalize(st);
	return rc;
}

/* How a down script runs, as the history's down_mode says it. */
static const char *
down_mode(const char *down_sql, int noop, int outside)
{
	return down_sql == NULL ? NULL : noop ? "noop" : outside ? "outside" : "transaction";
}

/* The operating-system user running this process (the audit's and the
 * history's applied_by), looked up once per call; NULL if unknown. */
const char *
sq_caller(sq_ctx *c)
{
	if (!c->who_set)
	{
		char		buf[1024];
		struct passwd pw,
				   *found = NULL;

		c->who[0] = '\0';
		if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &found) == 0 && found)
			snprintf(c->who, sizeof(c->who), "%s", found->pw_name);
		else
			snprintf(c->who, sizeof(c->who), "uid %ld", (long) geteuid());
		c->who_set = 1;
	}
	return c->who;
}

static int
sq_history_add(void *ctx, const mig_record *r, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st;

	if (c->add == NULL &&
		sqlite3_prepare_v3(c->db,
						   "INSERT INTO main.migrate_history(version, name, up_file, down_file,"
						   " checksum, applied_at, execution_ms, up_sql, down_sql, file_id, checksum_norm,"
						   " applied_by, down_mode, down_line)"
						   " VALUES(?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),"
						   " ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)", -1, SQLITE_PREPARE_PERSISTENT,
						   &c->add, NULL) != SQLITE_OK)
		return db_error(c, err, "could not record the migration");
	st = c->add;
	if (sqlite3_bind_text(st, 1, r->version, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 3, r->up_file, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 4, r->down_file, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 5, r->checksum, -1, SQLITE_STATIC) ||
		sqlite3_bind_double(st, 6, r->exec_ms) ||
		sqlite3_bind_text64(st, 7, r->up_sql, r->up_len, SQLITE_STATIC, SQLITE_UTF8) ||
		(r->down_sql ? sqlite3_bind_text64(st, 8, r->down_sql, r->down_len, SQLITE_STATIC, SQLITE_UTF8)
		 : sqlite3_bind_null(st, 8)) ||
		sqlite3_bind_text(st, 9, r->file_id, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 10, r->checksum_norm, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 11, sq_caller(c), -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 12, down_mode(r->down_sql, r->down_noop, r->down_outside), -1,
						  SQLITE_STATIC) ||
		(r->down_sql ? sqlite3_bind_int(st, 13, r->down_line) : sqlite3_bind_null(st, 13)) ||
		sqlite3_step(st) != SQLITE_DONE)
	{
		int			rc = db_error(c, err, "could not record the migration");

		sqlite3_reset(st);
		return rc;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sq_call_note(c, r->version);
	if (c->outside_version[0] && strcmp(c->outside_version, r->version) == 0)
	{
		/* recorded: the progress of its statements is done with */
		char	   *sql = sqlite3_mprintf("DELETE FROM main.migrate_progress WHERE version = %Q",
										  r->version);
		int			rc = sql ? run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);

		sqlite3_free(sql);
		release_outside(c);
		return rc;
	}
	return MIG_OK;
}

/* 1 when main.migrate_progress exists. */
static int
progress_exists(sq_ctx *c)
{
	return sqlite3_table_column_metadata(c->db, "main", "migrate_progress", NULL,
										 NULL, NULL, NULL, NULL, NULL) == SQLITE_OK;
}

static int
sq_history_remove(void *ctx, const char *version, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			ok;

	ok = sqlite3_prepare_v2(c->db, "DELETE FROM main.migrate_history WHERE version = ?1",
							-1, &st, NULL) == SQLITE_OK &&
		sqlite3_bind_text(st, 1, version, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	if (!ok)
		return db_error(c, err, "could not remove the migration from the history");
	sq_call_note(c, version);
	/* rolled back: the progress of a down script that ran outside a
	 * transaction is done with, and so is the lock file it held (given
	 * back with the write lock held, as in history_add) */
	if (progress_exists(c))
	{
		char	   *sql = sqlite3_mprintf("DELETE FROM main.migrate_progress WHERE version = %Q",
										  version);
		int			rc = sql ? run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);

		sqlite3_free(sql);
		if (rc != MIG_OK)
			return rc;
	}
	if (c->outside_version[0] && strcmp(c->outside_version, version) == 0)
		release_outside(c);
	return MIG_OK;
}

/* A copy of column col of st from sqlite3_malloc64, or NULL (*oom set
 * when out of memory). */
static char *
column_copy(sqlite3_stmt *st, int col, size_t *len, int *oom)
{
	const char *text = (const char *) sqlite3_column_text(st, col);
	size_t		n = (size_t) sqlite3_column_bytes(st, col);
	char	   *copy;

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return NULL;
	if (text == NULL || (copy = sqlite3_malloc64(n + 1)) == NULL)
	{
		*oom = 1;
		return NULL;
	}
	memcpy(copy, text, n + 1);
	if (len)
		*len = n;
	return copy;
}

static int
sq_history_down(void *ctx, const char *version, mig_stored_down *d, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK,
				oom = 0;

	memset(d, 0, sizeof(*d));
	if (sqlite3_prepare_v2(c->db, "SELECT down_sql, down_file, down_line, down_mode"
						   " FROM main.migrate_history WHERE version = ?1",
						   -1, &st, NULL) != SQLITE_OK ||
		sqlite3_bind_text(st, 1, version, -1, SQLITE_STATIC) != SQLITE_OK)
		rc = db_error(c, err, "could not read the down script");
	else if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
	{
		const char *mode = (const char *) sqlite3_column_text(st, 3);

		d->sql = column_copy(st, 0, &d->len, &oom);
		d->file = column_copy(st, 1, NULL, &oom);
		d->line = sqlite3_column_int(st, 2);
		d->outside = mode && strcmp(mode, "outside") == 0;
		if (oom)
		{
			sqlite3_free(d->sql);
			sqlite3_free(d->file);
			d->sql = d->file = NULL;
			mig_err_nomem(err);
			rc = MIG_NOMEM;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

/* Makes sure main.migrate_repairs exists with its action column. */
static int
repairs_ready(sq_ctx *c)
{
	int			rc = sqlite3_exec(c->db, repairs_ddl, NULL, NULL, NULL);

	if (rc == SQLITE_OK && !has_column(c, "migrate_repairs", "action"))
		rc = sqlite3_exec(c->db, "ALTER TABLE main.migrate_repairs ADD COLUMN action TEXT",
						  NULL, NULL, NULL);
	return rc;
}

static int
sq_audit(void *ctx, const char *version, const char *action, const char *old_checksum,
		 const char *new_checksum, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			ok;

	ok = repairs_ready(c) == SQLITE_OK &&
		sqlite3_prepare_v2(c->db,
						   "INSERT INTO main.migrate_repairs(version, old_checksum, new_checksum,"
						   " repaired_by, repaired_at, action) VALUES(?1, coalesce(?2, ''),"
						   " coalesce(?3, ''), ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?5)",
						   -1, &st, NULL) == SQLITE_OK &&
		sqlite3_bind_text(st, 1, version, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(st, 2, old_checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(st, 3, new_checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(st, 4, sq_caller(c), -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(st, 5, action, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	return ok ? MIG_OK : db_error(c, err, "could not write the audit row");
}

static int
sq_history_repair(void *ctx, const mig_repair_row *r, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *up = NULL,
			   *audit = NULL;
	const char *who = sq_caller(c);
	int			ok;

	ok = repairs_ready(c) == SQLITE_OK &&
		sqlite3_prepare_v2(c->db,
						   "UPDATE main.migrate_history SET name = ?2, up_file = ?3,"
						   " down_file = coalesce(?4, down_file), checksum = ?5, checksum_norm = ?6,"
						   " down_sql = CASE WHEN ?7 IS NULL THEN down_sql ELSE ?7 END, file_id = ?8,"
						   " down_mode = coalesce(?9, down_mode), down_line = CASE WHEN ?7 IS NULL"
						   " THEN down_line ELSE ?10 END"
						   " WHERE version = ?1", -1, &up, NULL) == SQLITE_OK &&
		sqlite3_prepare_v2(c->db,
						   "INSERT INTO main.migrate_repairs(version, old_checksum, new_checksum,"
						   " repaired_by, repaired_at, action) VALUES(?1, ?2, ?3, ?4,"
						   " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'repair')", -1, &audit, NULL) == SQLITE_OK &&
		sqlite3_bind_text(up, 1, r->version, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 2, r->name, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 3, r->up_file, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 4, r->down_file, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 5, r->checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 6, r->checksum_norm, -1, SQLITE_STATIC) == SQLITE_OK &&
		(r->down_sql ? sqlite3_bind_text64(up, 7, r->down_sql, r->down_len, SQLITE_STATIC,
										   SQLITE_UTF8) : sqlite3_bind_null(up, 7)) == SQLITE_OK &&
		sqlite3_bind_text(up, 8, r->file_id, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 9, down_mode(r->down_sql, r->down_noop, r->down_outside), -1,
						  SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_int(up, 10, r->down_line) == SQLITE_OK &&
		sqlite3_step(up) == SQLITE_DONE &&
		sqlite3_bind_text(audit, 1, r->version, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(audit, 2, r->old_checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(audit, 3, r->checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(audit, 4, who, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
		sqlite3_step(audit) == SQLITE_DONE;
	sqlite3_finalize(up);
	sqlite3_finalize(audit);
	if (ok)
		sq_call_note(c, r->version);
	return ok ? MIG_OK : db_error(c, err, "could not repair the history");
}

/* ---- scripts ---- */

/*
 * A NUL-terminated view of s with the same offsets: s->sql itself when a
 * NUL follows it (mig.h: sql[len] can be read), else a copy in *copy (from
 * sqlite3_malloc64, freed by the caller).  NULL when out of memory.
 *
 * Statements are prepared with a length that takes in that NUL.  Given a
 * length whose last byte is not a NUL, sqlite3_prepare parses a copy of
 * the text it was given (prepare.c), so preparing the statements of a
 * script one after the other copied the rest of the script each time:
 * quadratic in the size of the file (a 48 MB file of 1,215 INSERTs took
 * 65 s against 0.2 s in the sqlite3 shell).  A section that another
 * follows (the up section of a dbmate or goose file) is copied once.
 */
static const char *
script_text(const mig_script *s, char **copy)
{
	*copy = NULL;
	if (s->sql[s->len] == '\0')
		return s->sql;
	if ((*copy = sqlite3_malloc64(s->len + 1)) == NULL)
		return NULL;
	memcpy(*copy, s->sql, s->len);
	(*copy)[s->len] = '\0';
	return *copy;
}

/* Room for one statement at a time, NUL-terminated, for statement_end
 * (from sqlite3_malloc64; free buf with sqlite3_free). */
typedef struct scratch
{
	char	   *buf;
	size_t		size;
} scratch;

/*
 * The offset just past the statement that starts at sql[start]: the first
 * ';' at which sqlite3_complete() -- SQLite's own tokenizer, which knows
 * strings, comments and trigger bodies -- finds the text from start
 * complete, or len when none does (a copy of each candidate, NUL-ended,
 * goes through sc).  Nothing is prepared, so this works on statements
 * that no longer would.  0 when out of memory.
 */
static size_t
statement_end(const char *sql, size_t start, size_t len, scratch *sc)
{
	const char *semi;

	for (size_t i = start; i < len; i = (size_t) (semi - sql) + 1)
	{
		size_t		n;

		if ((semi = memchr(sql + i, ';', len - i)) == NULL)
			break;
		n = (size_t) (semi - sql) + 1 - start;
		if (n + 1 > sc->size)
		{
			size_t		size = n + 1 > 2 * sc->size ? n + 1 : 2 * sc->size;
			char	   *grown = sqlite3_realloc64(sc->buf, size);

			if (grown == NULL)
				return 0;
			sc->buf = grown;
			sc->size = size;
		}
		memcpy(sc->buf, sql + start, n);
		sc->buf[n] = '\0';
		if (sqlite3_complete(sc->buf))
			return start + n;
	}
	return len;
}

/* 1 when the word at w (wlen bytes) is kw, in any case. */
static int
word_is(const char *w, size_t wlen, const char *kw)
{
	return strlen(kw) == wlen && sqlite3_strnicmp(w, kw, (int) wlen) == 0;
}

/* Refuses the statement at sql[0..len) when it controls transactions. */
static int
refuse_txn_control(const mig_script *s, size_t start, size_t len, mig_err *err)
{
	size_t		wlen,
				at = mig_first_word(s->sql + start, len, 0, &wlen);

	if (!mig_is_txn_control(s->sql + start + at, wlen))
		return MIG_OK;
	mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
				"migration files must not control transactions: %.*s is not allowed",
				(int) wlen, s->sql + start + at);
	mig_err_detail(err, "Each call applies its migrations in one transaction, so BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE, VACUUM, ATTACH and DETACH cannot run inside them.");
	err->offset = (long) (start + at);
	return MIG_ERROR;
}

static int	refuse_shared_memory(sq_ctx *c, const mig_script *s, mig_err *err);
static int	lock_target(sq_ctx *c, char *path, size_t size);

/*
 * Finds each statement's end with the tokenizer (statement_end) and checks
 * its leading keyword, before anything runs.  A script marked to run
 * outside a transaction may hold any statement; an up script so marked is
 * refused here inside the caller's transaction and where no lock can be
 * had (a shared in-memory database), while a down script so marked only
 * runs when its migration is rolled back, and is refused then, if at all.
 */
static int
sq_check_script(void *ctx, const mig_script *s, mig_err *err)
{
	sq_ctx	   *c = ctx;
	scratch		sc = {NULL, 0};
	size_t		start,
				end;
	int			rc = MIG_OK;

	if (s->nontransactional)
	{
		if (s->down)
			return MIG_OUTSIDE;
		if (c->locked ? c->in_txn : !sqlite3_get_autocommit(c->db))
		{
			mig_err_set(err, "25001",
						"it must run outside a transaction, and %s was called inside one", c->fn);
			mig_err_detail(err, "It is marked to run outside a transaction (%s); nothing was applied.",
						   s->nontransactional);
			mig_err_hint(err, "Call %s in autocommit mode, with no transaction open.", c->fn);
			return MIG_ERROR;
		}
		if (lock_target(c, NULL, 0) == LOCK_SHARED_MEMORY)
			return refuse_shared_memory(c, s, err);
		return MIG_OUTSIDE;
	}
	for (start = 0; rc == MIG_OK && start < s->len; start = end)
	{
		if ((end = statement_end(s->sql, start, s->len, &sc)) == 0)
		{
			mig_err_nomem(err);
			rc = MIG_NOMEM;
		}
		else
			rc = refuse_txn_control(s, start, end - start, err);
	}
	sqlite3_free(sc.buf);
	return rc;
}

/* Fills err for statement at s->sql[at] that failed with SQLite result rc
 * (its message, the offset of the failing token or of the statement). */
static int
stmt_failed(sq_ctx *c, const mig_script *s, size_t at, int rc, mig_err *err)
{
	int			off = sqlite3_error_offset(c->db);
	size_t		wlen,
				kw = mig_first_word(s->sql + at, s->len - at, 0, &wlen);

	if ((rc & 0xff) == SQLITE_NOMEM)
		mig_err_nomem(err);
	else
		mig_err_set(err, (rc & 0xff) == SQLITE_INTERRUPT ? SQ_SQLSTATE_CANCELED : "42000",
					"%s", sqlite3_errmsg(c->db));
	err->offset = (long) at + (off >= 0 ? off : (long) kw);
	return err->code;
}

/* Prepares the statement at text[at] (text: script_text of s) into *st,
 * NULL when only white space and comments are left, and sets *next to the
 * offset past it. */
static int
prepare_at(sq_ctx *c, const mig_script *s, const char *text, size_t at,
		   sqlite3_stmt **st, size_t *next, mig_err *err)
{
	const char *tail = NULL;
	int			rc = sqlite3_prepare_v3(c->db, text + at, (int) (s->len - at + 1), 0, st,
										&tail);

	if (rc != SQLITE_OK)
	{
		sqlite3_finalize(*st);
		*st = NULL;
		return stmt_failed(c, s, at, rc, err);
	}
	/* no progress cannot happen: NUL bytes are refused */
	*next = tail && tail > text + at && tail <= text + s->len ? (size_t) (tail - text) : s->len;
	return MIG_OK;
}

/* Steps st to its end and resets it: SQLITE_OK or the error code (the
 * connection's error message stays the statement's). */
static int
step_all(sqlite3_stmt *st)
{
	int			rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Runs the script in the transaction lock() opened, one statement at a
 * time, refusing transaction control. */
static int
sq_exec(void *ctx, const mig_script *s, mig_err *err)
{
	sq_ctx	   *c = ctx;
	char	   *copy;
	const char *text = script_text(s, &copy);
	size_t		at = 0,
				next = 0;
	int			rc = MIG_OK,
				src;

	if (text == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	for (; rc == MIG_OK && at < s->len; at = next)
	{
		sqlite3_stmt *st = NULL;

		rc = prepare_at(c, s, text, at, &st, &next, err);
		if (rc == MIG_OK && st)
			rc = refuse_txn_control(s, at, next - at, err);
		if (rc == MIG_OK && st && (src = step_all(st)) != SQLITE_OK)
			rc = stmt_failed(c, s, at, src, err);
		sqlite3_finalize(st);
	}
	sqlite3_free(copy);
	return rc;
}

/* ---- migrations outside a transaction ---- */

/*
 * A migration marked non-transactional (goose NO TRANSACTION, dbmate
 * transaction:false, sqlx -- no-transaction, morph), and the down script
 * of one recorded so, runs statement by statement outside the unit of
 * work, so that PRAGMA foreign_keys=off and the documented table rebuild
 * (with its own BEGIN and COMMIT) work.  While it runs, no transaction of
 * ours holds the write lock, so the migration lock is a lock file beside
 * the database ("{db}-migrate-lock", flock: released by the kernel when the
 * process dies, so it cannot go stale), which the runner takes while it
 * holds the write lock and gives back only once it holds it again; so a
 * caller that holds the write lock and finds the lock file free knows
 * that no migration is half way through, and one that finds it held lets
 * go of the write lock and waits (sq_lock).
 *
 * main.migrate_progress records how far it got: the offset past the last
 * statement done, how many, and the checksum of the bytes before that
 * offset.  A later call resumes at the failed statement when those bytes
 * are unchanged.  No statement runs twice (outside_step): a statement and
 * the progress that covers it commit together wherever the statement
 * allows it.
 */
static const char progress_ddl[] =
"CREATE TABLE IF NOT EXISTS main.migrate_progress(\n"
"  version          TEXT PRIMARY KEY,\n"	/* an up half way is pending, a */
"  done_checksum    TEXT NOT NULL,\n"	/* down half way applied: never */
"  next_offset      INTEGER NOT NULL,\n"	/* both of one version */
"  statements_done  INTEGER NOT NULL,\n"
"  updated_at       TEXT NOT NULL,\n"
"  last_error       TEXT,\n"
"  down             INTEGER NOT NULL DEFAULT 0\n"
")";

/* Makes sure main.migrate_progress exists with its down column. */
static int
progress_ready(sq_ctx *c, mig_err *err)
{
	if (run(c, progress_ddl, err) != MIG_OK)
		return err->code;
	if (!has_column(c, "migrate_progress", "down"))
		return run(c, "ALTER TABLE main.migrate_progress ADD COLUMN down INTEGER NOT NULL DEFAULT 0", err);
	return MIG_OK;
}

static int
sq_progress_load(void *ctx, mig_progress_cb cb, void *arg, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK,
				src = SQLITE_DONE;

	if (!progress_exists(c))
		return MIG_OK;
	if (sqlite3_prepare_v2(c->db, has_column(c, "migrate_progress", "down") ?
						   "SELECT version, down, statements_done, next_offset, done_checksum,"
						   " last_error, updated_at FROM main.migrate_progress" :
						   "SELECT version, 0, statements_done, next_offset, done_checksum,"
						   " last_error, updated_at FROM main.migrate_progress",
						   -1, &st, NULL) != SQLITE_OK)
		return db_error(c, err, "could not read migrate_progress");
	while (rc == MIG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
	{
		mig_progress_row r;

		memset(&r, 0, sizeof(r));
		r.version = (const char *) sqlite3_column_text(st, 0);
		r.down = sqlite3_column_int(st, 1);
		r.statements_done = sqlite3_column_int64(st, 2);
		r.next_offset = sqlite3_column_int64(st, 3);
		r.done_checksum = (const char *) sqlite3_column_text(st, 4);
		r.last_error = (const char *) sqlite3_column_text(st, 5);
		r.updated_at = (const char *) sqlite3_column_text(st, 6);
		if (r.version == NULL)
		{
			rc = db_error(c, err, "could not read migrate_progress");
			break;
		}
		rc = cb(arg, &r);
	}
	if (rc == MIG_OK && src != SQLITE_DONE)
		rc = db_error(c, err, "could not read migrate_progress");
	sqlite3_finalize(st);
	return rc;
}

static int
sq_progress_forget(void *ctx, const char *version, int down, mig_err *err)
{
	sq_ctx	   *c = ctx;
	char	   *sql;
	int			rc;

	if (!progress_exists(c))
		return MIG_OK;
	if ((rc = progress_ready(c, err)) != MIG_OK)
		return rc;
	sql = sqlite3_mprintf("DELETE FROM main.migrate_progress WHERE version = %Q AND down = %d",
						  version, down != 0);
	rc = sql ? run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);
	sqlite3_free(sql);
	return rc;
}

/* -- the lock file -- */

static void
release_outside(sq_ctx *c)
{
	if (c->outside_fd >= 0)
		close(c->outside_fd);	/* releases the flock */
	c->outside_fd = -1;
	c->outside_version[0] = '\0';
}

/*
 * Where the migration lock of the main database is kept while a migration
 * runs outside a transaction, with the lock file's path in path (when
 * path is not NULL):
 * - LOCK_FILE: "{db}-migrate-lock" beside the database file;
 * - LOCK_NONE: a database private to this connection, which no other can
 *   change between the statements: ":memory:", a temporary database, or a
 *   memdb database whose name does not start with "/";
 * - LOCK_SHARED_MEMORY: an in-memory database that other connections of
 *   this process can open -- memdb's "/name" (memdb.c shares those), or an
 *   in-memory database whose cache another connection shares right now
 *   (shared-cache mode: SQLITE_DBSTATUS_CACHE_USED_SHARED is the cache
 *   divided among the connections that share it).  There is no file to
 *   lock and no way to reach the others; such migrations are refused;
 * - LOCK_TOO_LONG: the path does not fit.
 */
static int
lock_target(sq_ctx *c, char *path, size_t size)
{
	const char *db = sqlite3_db_filename(c->db, "main");
	sqlite3_vfs *vfs = NULL;
	int			used = 0,
				shared = 0,
				high;

	if (sqlite3_file_control(c->db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) == SQLITE_OK &&
		vfs && vfs->zName && strcmp(vfs->zName, "memdb") == 0)
		return db && db[0] == '/' ? LOCK_SHARED_MEMORY : LOCK_NONE;
	if (db == NULL || db[0] == '\0')
	{
		if (sqlite3_db_status(c->db, SQLITE_DBSTATUS_CACHE_USED, &used, &high, 0) == SQLITE_OK &&
			sqlite3_db_status(c->db, SQLITE_DBSTATUS_CACHE_USED_SHARED, &shared, &high, 0) == SQLITE_OK &&
			shared < used)
			return LOCK_SHARED_MEMORY;
		return LOCK_NONE;
	}
	if (path == NULL)
		return LOCK_FILE;
	return (size_t) snprintf(path, size, "%s-migrate-lock", db) < size ? LOCK_FILE : LOCK_TOO_LONG;
}

/* Refuses to run s outside a transaction in a shared in-memory database. */
static int
refuse_shared_memory(sq_ctx *c, const mig_script *s, mig_err *err)
{
	const char *db = sqlite3_db_filename(c->db, "main");

	mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
				"%s cannot run outside a transaction in an in-memory database that other connections share",
				s->down ? "its down script" : "it");
	mig_err_detail(err, "Outside a transaction its statements run one at a time under a lock file beside the database, and \"%s\" has no file: other connections could change the database between them. Nothing was %s.",
				   db && db[0] ? db : ":memory:", s->down ? "rolled back" : "applied");
	mig_err_hint(err, "Run it on a database file, or on an in-memory database of this connection alone (\":memory:\" without shared cache, or a memdb name that does not start with \"/\").");
	return MIG_ERROR;
}

/* Fills err for lock file path that could not be opened, checked or
 * created (what) with errno e. */
static void
lock_file_error(mig_err *err, int e, const char *what, const char *path)
{
	mig_err_set(err, e == EACCES || e == EPERM || e == ELOOP ? MIG_SQLSTATE_UNSAFE_FILE : "58030",
				"could not %s lock file \"%s\": %s", what, path,
				e == ELOOP ? "it is a symbolic link" : strerror(e));
	mig_err_detail(err, "A migration that runs outside a transaction holds this file while its statements run; a lock file that cannot be looked at is never taken as free, and nothing was changed.");
	mig_err_hint(err, "Make it a regular file that every user who applies migrations can read, as the database file (an earlier build created it readable by its owner only), or remove it while no migration runs.");
	err->sys_errno = e;
}

/*
 * Opens the lock file at path: read-write where it can, else read-only
 * (flock needs neither); *writable says which.  With create, a missing
 * file is created with the permission bits of the database file and, when
 * running as root, its owner and group, as SQLite creates the journal and
 * WAL files of a database (os_unix.c: findCreateFileMode, robust_open,
 * robustFchown), so that whoever can write the database can also take
 * the lock.  Returns the descriptor, -2 when the file does not exist and
 * create is not set, -1 with err filled when it cannot be opened or is not
 * a regular file with one link.
 */
static int
open_lock_file(sq_ctx *c, const char *path, int create, int *writable, mig_err *err)
{
	const int	flags = O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
	struct stat st;
	int			fd,
				e;

	*writable = 0;
	if (create && stat(sqlite3_db_filename(c->db, "main"), &st) == 0)
	{
		mode_t		mode = st.st_mode & 0666;

		if ((fd = open(path, O_RDWR | O_CREAT | O_EXCL | flags, mode)) >= 0)
		{
			/* the umask must not take bits away */
			if (fchmod(fd, mode) != 0 ||
				(geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) != 0))
			{
				e = errno;
				close(fd);
				unlink(path);
				lock_file_error(err, e, "create", path);
				return -1;
			}
			*writable = 1;
			return fd;
		}
		if (errno != EEXIST)
		{
			lock_file_error(err, errno, "create", path);
			return -1;
		}
	}
	if ((fd = open(path, O_RDWR | flags)) >= 0)
		*writable = 1;
	else if (errno == EACCES || errno == EPERM || errno == EROFS)
		fd = open(path, O_RDONLY | flags);
	if (fd < 0)
	{
		if (errno == ENOENT && !create)
			return -2;
		lock_file_error(err, errno, "open", path);
		return -1;
	}
	if (fstat(fd, &st) != 0)
	{
		lock_file_error(err, errno, "look at", path);
		close(fd);
		return -1;
	}
	/* never write through a link to another file */
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
	{
		close(fd);
		mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE,
					"lock file \"%s\" is not a regular file with a single link", path);
		mig_err_detail(err, "A migration that runs outside a transaction holds this file while its statements run, and writes in it which one runs; nothing was changed.");
		mig_err_hint(err, "Remove it while no migration runs.");
		return -1;
	}
	return fd;
}

/* 1 when another connection holds the lock file, running a migration
 * outside a transaction; who then says which, as its holder wrote it (or
 * is empty).  0 when it is free or there is none (a database without a
 * lock file).  -1 with err filled when it cannot be looked at: that is
 * never taken as free. */
static int
outside_running(sq_ctx *c, char *who, size_t size, mig_err *err)
{
	char		path[LOCK_PATH_MAX];
	int			fd,
				held,
				writable;
	ssize_t		n;

	who[0] = '\0';
	/* no file: no other connection can run one here (LOCK_SHARED_MEMORY
	 * and LOCK_TOO_LONG are refused to a runner) */
	if (lock_target(c, path, sizeof(path)) != LOCK_FILE)
		return 0;
	if ((fd = open_lock_file(c, path, 0, &writable, err)) == -2)
		return 0;
	if (fd < 0)
		return -1;
	/* a shared lock for an instant: the holder retries its own meanwhile */
	held = flock(fd, LOCK_SH | LOCK_NB) != 0;
	if (held && errno != EWOULDBLOCK)
	{
		lock_file_error(err, errno, "lock", path);
		close(fd);
		return -1;
	}
	if (held && (n = pread(fd, who, size - 1, 0)) > 0)
	{
		who[n] = '\0';
		for (char *p = who; *p; p++)
			if ((unsigned char) *p < ' ')
				*p = ' ';
	}
	close(fd);
	return held;
}

/* Takes the lock file of the database (none for a private one) to run s,
 * and writes in it which migration runs, for callers that wait. */
static int
take_outside_lock(sq_ctx *c, const mig_script *s, mig_err *err)
{
	char		path[LOCK_PATH_MAX],
				who[LOCK_WHO_MAX];
	int			fd = c->outside_fd,
				writable = 1;

	switch (lock_target(c, path, sizeof(path)))
	{
		case LOCK_NONE:
			return MIG_OK;
		case LOCK_SHARED_MEMORY:
			return refuse_shared_memory(c, s, err);
		case LOCK_TOO_LONG:
			mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "database path \"%s\" is too long",
						sqlite3_db_filename(c->db, "main"));
			return MIG_ERROR;
	}
	/* held already by this call (the migration before it) */
	if (fd < 0 && (fd = open_lock_file(c, path, 1, &writable, err)) < 0)
		return MIG_ERROR;
	/* a caller that waits looks at it for an instant, holding the write
	 * lock or not; only a caller that breaks the rules holds it longer */
	for (int tries = 0; fd != c->outside_fd && flock(fd, LOCK_EX | LOCK_NB) != 0; tries++)
	{
		int			e = errno;

		if (e == EWOULDBLOCK && tries < 100)
		{
			sqlite3_sleep(1);
			continue;
		}
		close(fd);
		if (e != EWOULDBLOCK)
		{
			lock_file_error(err, e, "lock", path);
			return MIG_ERROR;
		}
		mig_err_set(err, MIG_SQLSTATE_LOCK,
					"another connection is applying it outside a transaction");
		mig_err_detail(err, "Its statements run one at a time under the lock file \"%s\".", path);
		mig_err_hint(err, "Call %s again when it is done.", c->fn);
		return MIG_ERROR;
	}
	/* which migration runs, for the messages of callers that wait; not
	 * written (a lock file this user can only read), it is only missing
	 * from them */
	snprintf(who, sizeof(who), "%s %s (%s) in process %ld",
			 s->down ? "the rollback of migration" : "migration", s->version, s->file,
			 (long) getpid());
	if (writable && ftruncate(fd, 0) == 0 && pwrite(fd, who, strlen(who), 0) < 0)
		who[0] = '\0';
	c->outside_fd = fd;
	return MIG_OK;
}

/* -- connection settings -- */

/*
 * Connection settings a migration may change with a PRAGMA (SQLite's
 * pragma list): those that live in the connection, not in the database
 * file, and can be read back.  After a script that ran outside a
 * transaction, failed or not, each one it changed is put back as the
 * caller had it (restore_settings): a table rebuild must not leave the
 * caller's connection with foreign_keys off.  Settings kept in the
 * database (journal_mode WAL, user_version, application_id, page_size,
 * auto_vacuum, encoding) stay as the migration set them.  Left alone:
 * case_sensitive_like, which cannot be read back, and the process-wide
 * soft_heap_limit, hard_heap_limit, temp_store_directory and
 * data_store_directory.  per_schema: read and set for main (cache_size
 * of an attached database is not put back).
 */
static const struct
{
	const char *name;
	int			per_schema;
	int			table;			/* readable as a table-valued function */
}			settings[] = {
	{"foreign_keys", 0, 1}, {"defer_foreign_keys", 0, 1}, {"recursive_triggers", 0, 1},
	{"legacy_alter_table", 0, 1}, {"ignore_check_constraints", 0, 1},
	{"writable_schema", 0, 1}, {"trusted_schema", 0, 1}, {"cell_size_check", 0, 1},
	{"query_only", 0, 1}, {"reverse_unordered_selects", 0, 1}, {"automatic_index", 0, 1},
	{"read_uncommitted", 0, 1}, {"count_changes", 0, 1}, {"empty_result_callbacks", 0, 1},
	{"full_column_names", 0, 1}, {"short_column_names", 0, 1},
	{"checkpoint_fullfsync", 0, 1}, {"fullfsync", 0, 1}, {"busy_timeout", 0, 1},
	{"threads", 0, 1}, {"analysis_limit", 0, 1}, {"temp_store", 0, 1},
	{"cache_size", 1, 1}, {"cache_spill", 1, 1}, {"synchronous", 1, 1},
	{"secure_delete", 1, 0}, {"locking_mode", 1, 1}, {"journal_size_limit", 1, 1},
	{"wal_autocheckpoint", 0, 0}, {"mmap_size", 1, 0},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))
#define SETTING_MAX 32

/* The value of each setting, "" where it cannot be read (a pragma
 * compiled out, mmap_size of an in-memory database). */
typedef struct saved_settings
{
	char		value[N_SETTINGS][SETTING_MAX];
} saved_settings;

/* Copies column col of st (a row) into out[SETTING_MAX]; an SQLite result
 * code. */
static int
setting_value(sqlite3_stmt *st, int col, char *out)
{
	const char *v = (const char *) sqlite3_column_text(st, col);

	out[0] = '\0';
	if (v)
		snprintf(out, SETTING_MAX, "%s", v);
	return v || sqlite3_column_type(st, col) == SQLITE_NULL ? SQLITE_OK : SQLITE_NOMEM;
}

/*
 * Reads every setting into *out: those readable as table-valued functions
 * in one statement, the others with a PRAGMA each (a handful of statements
 * in all, since each is traced and costs a prepare); an SQLite result
 * code.
 */
static int
read_settings(sq_ctx *c, saved_settings *out)
{
	char	   *sql = sqlite3_mprintf("SELECT 0");
	sqlite3_stmt *st = NULL;
	int			rc,
				col = 1;

	for (size_t i = 0; sql && i < N_SETTINGS; i++)
	{
		char	   *more;

		if (!settings[i].table)
			continue;
		more = sqlite3_mprintf("%s, (SELECT * FROM pragma_%s%s)", sql, settings[i].name,
							   settings[i].per_schema ? " WHERE schema = 'main'" : "");
		sqlite3_free(sql);
		sql = more;
	}
	if (sql == NULL)
		return SQLITE_NOMEM;
	rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	sqlite3_free(sql);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = SQLITE_OK;
	for (size_t i = 0; rc == SQLITE_OK && i < N_SETTINGS; i++)
		if (settings[i].table)
			rc = setting_value(st, col++, out->value[i]);
	sqlite3_finalize(st);
	for (size_t i = 0; rc == SQLITE_OK && i < N_SETTINGS; i++)
	{
		if (settings[i].table)
			continue;
		out->value[i][0] = '\0';
		if ((sql = sqlite3_mprintf("PRAGMA %s%s", settings[i].per_schema ? "main." : "",
								   settings[i].name)) == NULL)
			return SQLITE_NOMEM;
		rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
		sqlite3_free(sql);
		if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
			rc = setting_value(st, 0, out->value[i]);
		else if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
		sqlite3_finalize(st);
	}
	return rc;
}

static int
save_settings(sq_ctx *c, saved_settings *saved, mig_err *err)
{
	if (read_settings(c, saved) != SQLITE_OK)
		return db_error(c, err, "could not read the connection's settings");
	return MIG_OK;
}

/*
 * Puts back each setting that differs from saved (in autocommit mode:
 * foreign_keys cannot change inside a transaction), with a notice for one
 * SQLite does not take back (locking_mode stays exclusive in a database
 * that entered WAL mode under it); now is room for the values read.
 */
static int
restore_settings(sq_ctx *c, const saved_settings *saved, saved_settings *now, mig_err *err)
{
	int			changed = 0;

	if (read_settings(c, now) != SQLITE_OK)
		return db_error(c, err, "could not read the connection's settings");
	for (size_t i = 0; i < N_SETTINGS; i++)
	{
		char	   *sql;
		int			rc;

		if (saved->value[i][0] == '\0' || strcmp(now->value[i], saved->value[i]) == 0)
			continue;
		sql = sqlite3_mprintf("PRAGMA %s%s = %s", settings[i].per_schema ? "main." : "",
							  settings[i].name, saved->value[i]);
		rc = sql ? run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);
		sqlite3_free(sql);
		if (rc != MIG_OK)
			return rc;
		changed = 1;
	}
	if (!changed)
		return MIG_OK;
	if (read_settings(c, now) != SQLITE_OK)
		return db_error(c, err, "could not read the connection's settings");
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (saved->value[i][0] != '\0' && strcmp(now->value[i], saved->value[i]) != 0)
		{
			char	   *msg = sqlite3_mprintf("could not put back PRAGMA %s = %s of this connection: it stays %s",
											  settings[i].name, saved->value[i], now->value[i]);

			if (msg)
				sq_notice(c, msg, NULL);
			sqlite3_free(msg);
		}
	/* an exclusive lock kept by locking_mode=exclusive goes at the next
	 * read of the database file */
	return run(c, "PRAGMA main.schema_version", err);
}

/* 1 when the statement sql[0..len) is a PRAGMA that a resume replays:
 * one of the settings above, journal_mode (which lives in the connection
 * in the rollback-journal modes) or case_sensitive_like. */
static int
replayed_pragma(const char *sql, size_t len)
{
	size_t		wlen,
				at = mig_first_word(sql, len, 0, &wlen),
				dlen,
				dot;

	if (!word_is(sql + at, wlen, "PRAGMA"))
		return 0;
	at += wlen;
	at += mig_first_word(sql + at, len - at, 0, &wlen);
	/* schema.name */
	dot = at + wlen + mig_first_word(sql + at + wlen, len - at - wlen, 0, &dlen);
	if (dot < len && sql[dot] == '.')
		at = dot + 1 + mig_first_word(sql + dot + 1, len - dot - 1, 0, &wlen);
	if (word_is(sql + at, wlen, "journal_mode") || word_is(sql + at, wlen, "case_sensitive_like"))
		return 1;
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (word_is(sql + at, wlen, settings[i].name))
			return 1;
	return 0;
}

/* -- running the statements -- */

/* How the runner treats a statement, by its leading keyword. */
enum
{
	KIND_PLAIN,					/* shares a transaction with its progress */
	KIND_TXN,					/* BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT,
								 * RELEASE: the migration's own transaction */
	KIND_AUTOCOMMIT				/* PRAGMA, VACUUM: as they come */
};

static int
statement_kind(const char *sql, size_t len)
{
	static const char *const txn[] = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"};
	size_t		wlen,
				at = mig_first_word(sql, len, 0, &wlen);

	for (size_t i = 0; i < sizeof(txn) / sizeof(txn[0]); i++)
		if (word_is(sql + at, wlen, txn[i]))
			return KIND_TXN;
	if (word_is(sql + at, wlen, "PRAGMA") || word_is(sql + at, wlen, "VACUUM"))
		return KIND_AUTOCOMMIT;
	return KIND_PLAIN;
}

/* A script running outside a transaction. */
typedef struct outside_run
{
	sq_ctx	   *c;
	const mig_script *s;
	const char *text;			/* script_text of s */
	size_t		at;				/* offset of the next statement */
	int64_t		done;			/* statements done */
	uint32_t	crc;			/* mig_checksum_add of the bytes before at */
	sqlite3_stmt *mark;			/* UPDATE of its progress row */
	sqlite3_stmt *begin;		/* BEGIN IMMEDIATE, COMMIT, ROLLBACK */
	sqlite3_stmt *commit;
	sqlite3_stmt *rollback;
} outside_run;

/* Records in the progress row that the statements up to offset next are
 * done (done of them, sum the checksum of those bytes). */
static int
mark(outside_run *r, size_t next, int64_t done, const char *sum, mig_err *err)
{
	sqlite3_stmt *m = r->mark;

	if (sqlite3_bind_text(m, 1, r->s->version, -1, SQLITE_STATIC) != SQLITE_OK ||
		sqlite3_bind_text(m, 2, sum, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
		sqlite3_bind_int64(m, 3, (sqlite3_int64) next) != SQLITE_OK ||
		sqlite3_bind_int64(m, 4, done) != SQLITE_OK ||
		step_all(m) != SQLITE_OK)
		return db_error(r->c, err, "could not record progress");
	return MIG_OK;
}

/*
 * Runs the statement at r->at and records it as done so that no statement
 * runs twice, whatever moment the process dies at:
 * - an ordinary statement in autocommit mode runs as BEGIN IMMEDIATE;
 *   statement; progress; COMMIT: both or neither;
 * - inside the migration's own transaction (BEGIN ... COMMIT, as in the
 *   table rebuild), the progress is written inside it after each
 *   statement, and the progress that covers a statement ending it is
 *   written before it: they commit together, and a rollback (or a crash)
 *   takes the progress back with the statements, so a resume never lands
 *   inside that transaction;
 * - a PRAGMA or VACUUM outside that transaction runs in autocommit mode,
 *   as some must (PRAGMA foreign_keys is ignored inside a transaction,
 *   journal_mode=WAL and VACUUM fail in one, and defer_foreign_keys ends
 *   at the next COMMIT), with its progress committed after it: a crash
 *   between the two runs it again on resume, which is safe: a PRAGMA sets
 *   a value (setting it again changes nothing), reads, or does upkeep that
 *   leaves every row as it was (wal_checkpoint, incremental_vacuum,
 *   optimize), and every resume replays the setting PRAGMAs before it
 *   anyway; VACUUM rebuilds the file with the same content.  (VACUUM
 *   INTO a file fails when the file exists: run again, it stops with that
 *   error rather than doing anything twice.)
 */
static int
outside_step(outside_run *r, mig_err *err)
{
	sq_ctx	   *c = r->c;
	const mig_script *s = r->s;
	sqlite3_stmt *st = NULL;
	size_t		next;
	uint32_t	crc;
	char		sum[16];
	int			wrapped,
				kind,
				src,
				rc;

	if ((rc = prepare_at(c, s, r->text, r->at, &st, &next, err)) != MIG_OK)
		return rc;
	if (st == NULL)
	{
		r->at = next;			/* comments only: nothing to record */
		return MIG_OK;
	}
	crc = mig_checksum_add(r->crc, r->text + r->at, next - r->at);
	mig_checksum_of(crc, sum);
	kind = statement_kind(s->sql + r->at, next - r->at);
	wrapped = kind == KIND_PLAIN && sqlite3_get_autocommit(c->db);
	if (wrapped && step_all(r->begin) != SQLITE_OK)
		rc = db_error(c, err, "BEGIN IMMEDIATE");
	else if (kind == KIND_TXN && !sqlite3_get_autocommit(c->db))
		rc = mark(r, next, r->done + 1, sum, err);
	if (rc == MIG_OK && (src = step_all(st)) != SQLITE_OK)
		rc = stmt_failed(c, s, r->at, src, err);
	/* after a statement that ended the transaction, again: a ROLLBACK took
	 * the progress written before it back */
	if (rc == MIG_OK)
		rc = mark(r, next, r->done + 1, sum, err);
	if (rc == MIG_OK && wrapped && step_all(r->commit) != SQLITE_OK)
		rc = db_error(c, err, "COMMIT");
	if (rc != MIG_OK && wrapped && !sqlite3_get_autocommit(c->db))
		step_all(r->rollback);
	sqlite3_finalize(st);
	if (rc == MIG_OK)
	{
		r->at = next;
		r->done++;
		r->crc = crc;
	}
	return rc;
}

/*
 * On a resume: does again to this connection what the statements done
 * did to theirs, which did not outlive it -- the PRAGMAs among them that
 * set a connection setting (replayed_pragma), with the transaction
 * statements around them, so that a PRAGMA that had no effect inside the
 * migration's own transaction (foreign_keys) has none again.  The
 * statements are found with the tokenizer (statement_end); no other is
 * prepared: a statement that ran may not prepare any more (CREATE TABLE
 * of the table it created), and skipping everything after such a failure
 * once lost a PRAGMA foreign_keys=OFF and let a DROP TABLE cascade.
 */
static int
replay(outside_run *r, mig_err *err)
{
	sq_ctx	   *c = r->c;
	const char *sql = r->s->sql;
	scratch		sc = {NULL, 0};
	size_t		start,
				end;
	int			rc = MIG_OK;

	for (start = 0; rc == MIG_OK && start < r->at; start = end)
	{
		sqlite3_stmt *st = NULL;
		int			src;

		if ((end = statement_end(sql, start, r->at, &sc)) == 0)
		{
			mig_err_nomem(err);
			rc = MIG_NOMEM;
			break;
		}
		if (statement_kind(sql + start, end - start) != KIND_TXN &&
			!replayed_pragma(sql + start, end - start))
			continue;
		/* its own length: SQLite copies this statement alone */
		src = sqlite3_prepare_v3(c->db, sql + start, (int) (end - start), 0, &st, NULL);
		if (src == SQLITE_OK && st)
			src = step_all(st);
		if (src != SQLITE_OK)
			rc = stmt_failed(c, r->s, start, src, err);
		sqlite3_finalize(st);
	}
	sqlite3_free(sc.buf);
	return rc;
}

/* Reads how far an earlier attempt at s got (*start, *done, *crc: 0 for
 * none), refusing when the bytes it ran have changed since, or records
 * that this one starts. */
static int
progress_start(sq_ctx *c, const mig_script *s, size_t *start, int64_t *done, uint32_t *crc,
			   mig_err *err)
{
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK;

	*start = 0;
	*done = 0;
	*crc = 0;
	if (progress_ready(c, err) != MIG_OK)
		return err->code;
	if (sqlite3_prepare_v2(c->db, "SELECT done_checksum, next_offset, statements_done"
						   " FROM main.migrate_progress WHERE version = ?1 AND down = ?2",
						   -1, &st, NULL) != SQLITE_OK ||
		sqlite3_bind_text(st, 1, s->version, -1, SQLITE_STATIC) != SQLITE_OK ||
		sqlite3_bind_int(st, 2, s->down != 0) != SQLITE_OK)
		rc = db_error(c, err, "could not read migrate_progress");
	else if (sqlite3_step(st) == SQLITE_ROW)
	{
		const char *sum = (const char *) sqlite3_column_text(st, 0);
		int64_t		off = sqlite3_column_int64(st, 1);
		char		now[16] = "";

		*done = sqlite3_column_int64(st, 2);
		if (off >= 0 && (uint64_t) off <= s->len)
		{
			*crc = mig_checksum_add(0, s->sql, (size_t) off);
			mig_checksum_of(*crc, now);
		}
		if (sum == NULL || strcmp(now, sum) != 0)
		{
			mig_err_set(err, MIG_SQLSTATE_STATE,
						"its statements that ran outside a transaction have changed since");
			mig_err_detail(err, "%lld of its statements ran (its first %lld bytes).",
						   (long long) *done, (long long) off);
			mig_err_hint(err, "Restore those statements as they ran; the failed statement and those after it may change.");
			rc = MIG_ERROR;
		}
		else
			*start = (size_t) off;
	}
	sqlite3_finalize(st);
	if (rc == MIG_OK && *start == 0)
	{
		char		empty[16];
		char	   *sql;

		mig_checksum_of(0, empty);
		*done = 0;
		sql = sqlite3_mprintf("INSERT OR REPLACE INTO main.migrate_progress(version, done_checksum,"
							  " next_offset, statements_done, updated_at, last_error, down)"
							  " VALUES(%Q, %Q, 0, 0, strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now'), NULL, %d)",
							  s->version, empty, s->down != 0);
		rc = sql ? run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);
		sqlite3_free(sql);
	}
	return rc;
}

/* Prepares the statements the runner steps for every statement of the
 * script (before the unit of work ends: SQLite may prepare nothing more
 * after an out-of-memory error until the calling statement ends). */
static int
prepare_runner(outside_run *r, mig_err *err)
{
	sqlite3 *db = r->c->db;

	if (sqlite3_prepare_v3(db, "UPDATE main.migrate_progress SET done_checksum = ?2,"
						   " next_offset = ?3, statements_done = ?4, last_error = NULL,"
						   " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE version = ?1",
						   -1, SQLITE_PREPARE_PERSISTENT, &r->mark, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &r->begin, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "COMMIT", -1, &r->commit, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "ROLLBACK", -1, &r->rollback, NULL) != SQLITE_OK)
		return db_error(r->c, err, "could not record progress");
	return MIG_OK;
}

/* Refuses to run s outside a transaction inside the caller's. */
static int
refuse_in_txn(sq_ctx *c, const mig_script *s, mig_err *err)
{
	mig_err_set(err, "25001", "%s must run outside a transaction, and %s was called inside one",
				s->down ? "its down script" : "it", c->fn);
	mig_err_detail(err, "It %s to run outside a transaction (%s); nothing was %s.",
				   s->down ? "was recorded" : "is marked",
				   s->nontransactional ? s->nontransactional : "a statement that cannot run in one",
				   s->down ? "rolled back" : "applied");
	mig_err_hint(err, "Call %s in autocommit mode, with no transaction open.", c->fn);
	return MIG_ERROR;
}

/*
 * Runs s (an up script, or with s->down a down script) outside a
 * transaction: takes the lock file, records the start (or finds where an
 * earlier attempt stopped) and commits it with what came before, replays
 * the connection settings of the statements done, runs the rest one at a
 * time (outside_step), puts back the connection settings the script
 * changed, and opens the unit of work again for the core to record it.
 * On error the statements done stay done and last_error says why.
 */
static int
sq_exec_outside(void *ctx, const mig_script *s, mig_err *err)
{
	sq_ctx	   *c = ctx;
	outside_run r;
	saved_settings *saved = NULL;	/* [0] the caller's, [1] room */
	char	   *copy = NULL;
	int			rc;

	if (c->in_txn)
		return refuse_in_txn(c, s, err);
	memset(&r, 0, sizeof(r));
	r.c = c;
	r.s = s;
	rc = take_outside_lock(c, s, err);
	if (rc == MIG_OK)
		rc = progress_start(c, s, &r.at, &r.done, &r.crc, err);
	if (rc == MIG_OK && ((r.text = script_text(s, &copy)) == NULL ||
						 (saved = sqlite3_malloc64(2 * sizeof(*saved))) == NULL))
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	if (rc == MIG_OK)
		rc = save_settings(c, saved, err);
	if (rc == MIG_OK)
		rc = prepare_runner(&r, err);
	/* commit what came before (and the progress row): from here on no
	 * transaction is ours */
	if (rc == MIG_OK && (rc = run(c, "COMMIT", err)) == MIG_OK)
		c->locked = 0;
	if (rc == MIG_OK && r.at > 0)
		rc = replay(&r, err);
	while (rc == MIG_OK && r.at < s->len)
		rc = outside_step(&r, err);
	if (rc == MIG_OK && !sqlite3_get_autocommit(c->db))
	{
		mig_err_set(err, "25000", "it ends inside the transaction it opened");
		mig_err_detail(err, "The statements of that transaction were rolled back; the next call runs them again.");
		mig_err_hint(err, "End the transaction with COMMIT.");
		err->offset = (long) s->len;
		rc = MIG_ERROR;
	}
	if (rc != MIG_OK && !c->locked)
	{
		mig_err		ignored;
		char	   *sql;

		/* a transaction the script opened itself is rolled back, and the
		 * error noted beside the progress */
		if (!sqlite3_get_autocommit(c->db))
			step_all(r.rollback);
		sql = sqlite3_mprintf("UPDATE main.migrate_progress SET last_error = %Q WHERE version = %Q",
							  err->message, s->version);
		mig_err_clear(&ignored);
		if (sql)
			run(c, sql, &ignored);
		sqlite3_free(sql);
	}
	if (!c->locked && saved)
	{
		mig_err		ignored;
		int			back = restore_settings(c, &saved[0], &saved[1], rc == MIG_OK ? err : &ignored);

		if (rc == MIG_OK)
			rc = back;
	}
	sqlite3_finalize(r.mark);
	sqlite3_finalize(r.begin);
	sqlite3_finalize(r.commit);
	sqlite3_finalize(r.rollback);
	sqlite3_free(saved);
	sqlite3_free(copy);
	if (rc == MIG_OK)
	{
		/* the lock again, for the history row and what follows */
		if ((rc = run(c, "BEGIN IMMEDIATE", err)) == MIG_OK)
		{
			c->locked = 1;
			snprintf(c->outside_version, sizeof(c->outside_version), "%s", s->version);
		}
	}
	return rc;
}

/* ---- notices and the off-hours script ---- */

/* Notices go to SQLite's error log (sqlite3_config SQLITE_CONFIG_LOG),
 * which an application may route to its own log, and to a person at a
 * terminal (sq_show). */
static void
sq_notice(void *ctx, const char *message, const char *detail)
{
	sq_ctx	   *c = ctx;

	sqlite3_log(SQLITE_NOTICE, "%s: %s%s%s", c->fn, message,
				detail ? "\nDETAIL:  " : "", detail ? detail : "");
	sq_show(c, message);
}

/* A copy of s[0..len) quoted as an SQL literal ('it''s'), or NULL. */
static char *
quoted(const char *s, size_t len, int *oom)
{
	char	   *copy,
			   *q;

	if (s == NULL)
		return sqlite3_mprintf("NULL");
	if ((copy = sqlite3_malloc64(len + 1)) == NULL)
		return (*oom = 1), NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	q = sqlite3_mprintf("%Q", copy);
	sqlite3_free(copy);
	if (q == NULL)
		*oom = 1;
	return q;
}

static int
sq_script_part(void *ctx, int part, const mig_record *r, const mig_lock_opts *lock,
			   char **sql, mig_err *err)
{
	sq_ctx	   *c = ctx;
	char	   *v[9] = {0};
	int			oom = 0;

	(void) lock;				/* SQLite has no lock_timeout */
	switch (part)
	{
		case MIG_PART_BEGIN:
			*sql = sqlite3_mprintf("-- Written by migrate_script.  Run it with the sqlite3 shell's -bail option\n"
								   "-- (sqlite3 -bail app.db < this.sql): without it the shell goes on after\n"
								   "-- an error and commits the statements that did not fail.\n"
								   "BEGIN IMMEDIATE;\n%s;\n", history_ddl);
			break;
		case MIG_PART_END:
		case MIG_PART_END_RUN:
			*sql = sqlite3_mprintf("\nCOMMIT;\n");
			break;
		case MIG_PART_BEGIN_RUN:
			*sql = sqlite3_mprintf("-- Written by migrate_script with mode=run.  Run it with the sqlite3 shell's\n"
								   "-- -bail option (sqlite3 -bail app.db < this.sql).  The statements of a\n"
								   "-- migration marked to run outside a transaction run one at a time, as\n"
								   "-- migrate_apply runs them; while they run no transaction holds the\n"
								   "-- database, so run it when nothing else migrates it.  A failure there\n"
								   "-- leaves the statements before it done: apply the rest with migrate_apply\n"
								   "-- after undoing them, or fix and go on by hand.\n"
								   "BEGIN IMMEDIATE;\n%s;\n", history_ddl);
			break;
		case MIG_PART_LEAVE:
			*sql = sqlite3_mprintf("COMMIT;\n-- outside a transaction, one statement at a time (%s)\n",
								   r->up_file);
			break;
		case MIG_PART_REENTER:
			*sql = sqlite3_mprintf("BEGIN IMMEDIATE;\n");
			break;
		case MIG_PART_FORGET:
			*sql = sqlite3_mprintf("DELETE FROM main.migrate_history WHERE version = %Q;\n", r->version);
			break;
		case MIG_PART_BODY:
			/* the shell splits the script as sqlite3_complete does: a text
			 * ending inside a comment, string or trigger body would take
			 * the history rows and the COMMIT that follow with it */
			if ((*sql = sqlite3_mprintf("%.*s", (int) r->up_len, r->up_sql)) != NULL)
			{
				char	   *probe = sqlite3_mprintf("%s\n;", *sql);

				if (probe == NULL)
				{
					sqlite3_free(*sql);
					*sql = NULL;
				}
				else if (!sqlite3_complete(probe))
				{
					sqlite3_free(probe);
					sqlite3_free(*sql);
					*sql = NULL;
					mig_err_set(err, MIG_SQLSTATE_BAD_NAME,
								"migration %s (%s) ends inside a comment, a string or a trigger body",
								r->version, r->up_file);
					mig_err_detail(err, "In a script, the sqlite3 shell would read the migrations and the COMMIT after it as part of it.");
					mig_err_hint(err, "Close the comment or string at the end of the file.");
					return MIG_ERROR;
				}
				else
					sqlite3_free(probe);
			}
			break;
		default:
			{
				/* the columns of this build, when this database's history
				 * has them (the script is for this database; its BEGIN
				 * creates a missing history with them) */
				int			now = !history_exists(c) || has_column(c, "migrate_history", "down_mode");
				const char *mode = down_mode(r->down_sql, r->down_noop, r->down_outside);
				char		line[16];

				if (r->down_outside && !now)
				{
					mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
								"the down script of migration %s (%s) must run outside a transaction",
								r->version, r->up_file);
					mig_err_detail(err, "This database's history, made by an earlier build, cannot say so until a call of this build has taken the lock once.");
					mig_err_hint(err, "Apply it with migrate_apply, or write the script only up to the migration before it with the option target=.");
					return MIG_ERROR;
				}
				snprintf(line, sizeof(line), "%d", r->down_line);
				v[0] = quoted(r->version, strlen(r->version), &oom);
				v[1] = quoted(r->name, strlen(r->name), &oom);
				v[2] = quoted(r->up_file, strlen(r->up_file), &oom);
				v[3] = quoted(r->down_file, r->down_file ? strlen(r->down_file) : 0, &oom);
				v[4] = quoted(r->checksum, strlen(r->checksum), &oom);
				v[5] = quoted(r->checksum_norm, r->checksum_norm ? strlen(r->checksum_norm) : 0, &oom);
				v[6] = quoted(r->up_sql, r->up_len, &oom);
				v[7] = quoted(r->down_sql, r->down_len, &oom);
				v[8] = now ? sqlite3_mprintf(", %Q, %Q, %s", sq_caller(c), mode,
											 r->down_sql ? line : "NULL") :
					sqlite3_mprintf("%s", "");
				if (v[8] == NULL)
					oom = 1;
				*sql = oom ? NULL :
					sqlite3_mprintf("INSERT INTO main.migrate_history(version, name, up_file, down_file,"
									" checksum, checksum_norm, applied_at, execution_ms, up_sql, down_sql%s)\n"
									"VALUES(%s, %s, %s, %s, %s, %s, strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now'), 0,\n%s,\n%s%s);\n",
									now ? ", applied_by, down_mode, down_line" : "",
									v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]);
				/* recorded ahead of older pending migrations (sq_impact.c):
				 * a history of an earlier build gains the column first */
				if (*sql && r->ahead)
				{
					int			add = history_exists(c) && !has_column(c, "migrate_history", "ahead") &&
						!c->ahead_added;
					char	   *more = sqlite3_mprintf("%s%sUPDATE main.migrate_history SET ahead = 1 WHERE version = %s;\n",
													   *sql, add ? "ALTER TABLE main.migrate_history ADD COLUMN ahead INTEGER;\n" : "",
													   v[0]);

					c->ahead_added |= add;
					sqlite3_free(*sql);
					*sql = more;
				}
				for (int i = 0; i < 9; i++)
					sqlite3_free(v[i]);
				break;
			}
	}
	if (*sql == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	return MIG_OK;
}

/* ---- another tool's history ---- */

/*
 * Looks up table in schema (an attached database; NULL: main) -- never in
 * temp or another attached database that could shadow it -- and refuses
 * one whose reading could run code: a view, a virtual table (its module's
 * code), generated columns (expressions, which may call functions the
 * application registered).  A plain table's rows are read by SQLite
 * alone.
 */
static int
sq_table_info(void *ctx, const char *schema, const char *table, const char *column,
			  int *exists, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	const char *db = schema ? schema : "main";
	char	   *sql = sqlite3_mprintf("SELECT type, sql FROM \"%w\".sqlite_schema"
									  " WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE", db);
	int			rc = MIG_OK,
				src;

	*exists = 0;
	if (sql == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	src = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	sqlite3_free(sql);
	if (src != SQLITE_OK)
	{
		mig_err_set(err, "3F000", "database \"%s\" is not attached: %s", db, sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		return MIG_ERROR;
	}
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	if ((src = sqlite3_step(st)) == SQLITE_ROW)
	{
		const char *type = (const char *) sqlite3_column_text(st, 0);
		const char *ddl = (const char *) sqlite3_column_text(st, 1);

		if (type && strcmp(type, "table") == 0 && ddl &&
			sqlite3_strnicmp(ddl, "CREATE VIRTUAL", 14) != 0)
			*exists = 1;
		else
		{
			mig_err_set(err, "42809", "\"%s\".\"%s\" is not a plain table", db, table);
			mig_err_detail(err, "Reading a %s could run code that is not SQLite's own; migrate_adopt reads only plain tables.",
						   type && strcmp(type, "view") == 0 ? "view" : "virtual table");
			mig_err_hint(err, "Point migrate_adopt at the database that holds the tool's own table, with the option schema=.");
			rc = MIG_ERROR;
		}
	}
	else if (src != SQLITE_DONE)
		rc = db_error(c, err, "could not look up the other tool's history");
	sqlite3_finalize(st);
	if (rc != MIG_OK || !*exists)
		return rc;
	/* generated columns are expressions evaluated as rows are read */
	if (sqlite3_prepare_v2(c->db, "SELECT count(*) FILTER (WHERE hidden IN (2, 3)),"
						   " count(*) FILTER (WHERE name = ?1 COLLATE NOCASE)"
						   " FROM pragma_table_xinfo(?2, ?3)", -1, &st, NULL) != SQLITE_OK)
		return db_error(c, err, "could not look up the other tool's history");
	sqlite3_bind_text(st, 1, column ? column : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, db, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
	{
		if (sqlite3_column_int(st, 0) > 0)
		{
			mig_err_set(err, "42809", "\"%s\".\"%s\" has generated columns", db, table);
			mig_err_detail(err, "Reading them evaluates expressions, which could run code that is not SQLite's own; migrate_adopt reads only plain tables.");
			rc = MIG_ERROR;
		}
		else if (column && sqlite3_column_int(st, 1) == 0)
			*exists = 0;
	}
	else
		rc = db_error(c, err, "could not look up the other tool's history");
	sqlite3_finalize(st);
	return rc;
}

static int
sq_query_text(void *ctx, const char *schema, const char *table, const char *cols,
			  const char *order_by, int ncols,
			  int (*cb) (void *arg, const char *const *cells), void *arg, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	const char *cells[8];
	char	   *sql;
	int			rc = MIG_OK,
				src = SQLITE_DONE;

	sql = sqlite3_mprintf("SELECT %s FROM \"%w\".\"%w\"%s%s", cols, schema ? schema : "main",
						  table, order_by ? " ORDER BY " : "", order_by ? order_by : "");
	if (sql == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	src = ncols > 8 ? SQLITE_ERROR : sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	sqlite3_free(sql);
	if (src != SQLITE_OK)
		return db_error(c, err, "could not read the other tool's history");
	while (rc == MIG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
	{
		for (int i = 0; i < ncols; i++)
			cells[i] = (const char *) sqlite3_column_text(st, i);
		rc = cb(arg, cells);
	}
	if (rc == MIG_OK && src != SQLITE_DONE)
		rc = db_error(c, err, "could not read the other tool's history");
	sqlite3_finalize(st);
	return rc;
}

void
sq_host_init(mig_host *h, sq_ctx *c, sqlite3 *db, const char *fn)
{
	memset(h, 0, sizeof(*h));
	c->db = db;
	c->fn = fn;
	c->in_txn = 0;
	c->locked = 0;
	c->restore_timeout = -1;
	c->add = NULL;
	c->undo[0] = c->undo[1] = NULL;
	c->outside_fd = -1;
	c->outside_version[0] = '\0';
	c->who_set = 0;
	c->log_fn = NULL;
	c->verbose = -1;
	c->log_done = 0;
	c->skipped = 0;
	h->ctx = c;
	h->alloc = sq_alloc;
	h->release = sq_release;
	h->open_file = sq_open_file;
	h->open_dir = sq_open_dir;
	h->close_file = sq_close_file;
	h->list_dir = sq_list_dir;
	h->lock = sq_lock;
	h->unlock = sq_unlock;
	h->history_load = sq_history_load;
	h->history_add = sq_history_add;
	h->history_remove = sq_history_remove;
	h->history_down = sq_history_down;
	h->history_repair = sq_history_repair;
	h->audit = sq_audit;
	h->progress_load = sq_progress_load;
	h->progress_forget = sq_progress_forget;
	h->check_script = sq_check_script;
	h->exec = sq_exec;
	h->exec_outside = sq_exec_outside;
	h->script_part = sq_script_part;
	h->notice = sq_notice;
	h->table_info = sq_table_info;
	h->query_text = sq_query_text;
	h->keeps_file_id = 1;
	h->engine = "sqlite";
	h->impact = sq_impact;
	c->impact = NULL;
	c->ahead_added = 0;
}
