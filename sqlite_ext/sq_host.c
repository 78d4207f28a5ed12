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
static void release_outside(sq_ctx *c);
static int	outside_running(sq_ctx *c, char *who, size_t size);
static void finalize_undo(sq_ctx *c);

/* Room for the lock file's path ("{db}-migrate-lock") and for the text its
 * holder writes in it (which migration runs), read back by callers that
 * wait. */
#define LOCK_PATH_MAX (4096 + sizeof("-migrate-lock"))
#define LOCK_WHO_MAX 160

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
		if (!(running = outside_running(c, who, sizeof(who))))
		{
			if (effective >= 0 && left != effective)
				set_timeout(c, timeout, effective);
			return MIG_OK;
		}
		abandon_lock(c);
		/* inside the caller's transaction its write lock stays: waiting
		 * would stop that migration */
		while (!c->in_txn && (running = outside_running(c, who, sizeof(who))))
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
	 * transaction is done with */
	if (progress_exists(c))
	{
		char	   *sql = sqlite3_mprintf("DELETE FROM main.migrate_progress WHERE version = %Q",
										  version);
		int			rc = sql ? run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);

		sqlite3_free(sql);
		return rc;
	}
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

/*
 * Finds each statement's end with sqlite3_complete() (SQLite's own
 * tokenizer, which knows strings, comments and trigger bodies) and checks
 * its leading keyword, before anything runs.
 */
static int
sq_check_script(void *ctx, const mig_script *s, mig_err *err)
{
	sq_ctx	   *c = ctx;
	char	   *buf;
	size_t		start = 0;
	int			rc = MIG_OK;

	if (s->nontransactional)
	{
		/* every statement may run, a table rebuild's BEGIN and COMMIT too;
		 * but not inside the caller's transaction */
		if (c->locked ? c->in_txn : !sqlite3_get_autocommit(c->db))
		{
			mig_err_set(err, "25001",
						"it must run outside a transaction, and %s was called inside one", c->fn);
			mig_err_detail(err, "It is marked to run outside a transaction (%s); nothing was applied.",
						   s->nontransactional);
			mig_err_hint(err, "Call %s in autocommit mode, with no transaction open.", c->fn);
			return MIG_ERROR;
		}
		return MIG_OUTSIDE;
	}
	if ((buf = sqlite3_malloc64(s->len + 1)) == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	memcpy(buf, s->sql, s->len);
	buf[s->len] = '\0';
	for (size_t i = 0; rc == MIG_OK && i < s->len; i++)
	{
		char		saved;
		int			done;

		if (buf[i] != ';')
			continue;
		saved = buf[i + 1];
		buf[i + 1] = '\0';
		done = sqlite3_complete(buf + start);
		buf[i + 1] = saved;
		if (done)
		{
			rc = refuse_txn_control(s, start, i + 1 - start, err);
			start = i + 1;
		}
	}
	if (rc == MIG_OK && start < s->len)
		rc = refuse_txn_control(s, start, s->len - start, err);
	sqlite3_free(buf);
	return rc;
}

/* Runs the statement at *p (up to end) and moves *p past it; *ran is 0
 * when there was only white space or comments.  With in_txn set, a
 * statement that controls transactions is refused first. */
static int
step_one(sq_ctx *c, const mig_script *s, const char **p, const char *end, int in_txn,
		 int *ran, mig_err *err)
{
	sqlite3_stmt *st = NULL;
	const char *tail = *p;
	size_t		wlen,
				at = mig_first_word(*p, (size_t) (end - *p), 0, &wlen);
	int			rc = sqlite3_prepare_v3(c->db, *p, (int) (end - *p), 0, &st, &tail);

	*ran = st != NULL;
	if (rc == SQLITE_OK && st && in_txn &&
		refuse_txn_control(s, (size_t) (*p - s->sql), (size_t) (tail - *p), err) != MIG_OK)
	{
		sqlite3_finalize(st);
		return MIG_ERROR;
	}
	if (rc == SQLITE_OK && st)
	{
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			;
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
	{
		int			off = sqlite3_error_offset(c->db);

		if ((rc & 0xff) == SQLITE_NOMEM)
			mig_err_nomem(err);
		else
			mig_err_set(err, (rc & 0xff) == SQLITE_INTERRUPT ? SQ_SQLSTATE_CANCELED : "42000",
						"%s", sqlite3_errmsg(c->db));
		err->offset = (long) (*p - s->sql) + (off >= 0 ? off : (long) at);
		sqlite3_finalize(st);
		return err->code;
	}
	sqlite3_finalize(st);
	*p = tail > *p ? tail : end;	/* no progress cannot happen: NUL bytes
									 * are refused */
	return MIG_OK;
}

static int
sq_exec(void *ctx, const mig_script *s, mig_err *err)
{
	const char *p = s->sql,
			   *end = s->sql + s->len;
	int			ran,
				rc = MIG_OK;

	while (rc == MIG_OK && p < end)
		rc = step_one(ctx, s, &p, end, 1, &ran, err);
	return rc;
}

/* ---- migrations outside a transaction ---- */

/*
 * A migration marked non-transactional (goose NO TRANSACTION, dbmate
 * transaction:false, sqlx -- no-transaction, morph) runs statement by
 * statement in autocommit mode, so that PRAGMA foreign_keys=off and the
 * documented table rebuild (with its own BEGIN and COMMIT) work.  While it
 * runs, no transaction holds the write lock, so the migration lock is a
 * lock file beside the database ("{db}-migrate-lock", flock: released by
 * the kernel when the process dies, so it cannot go stale), which the
 * runner takes while it holds the write lock and gives back only once it
 * holds it again; so a caller that holds the write lock and finds the
 * lock file free knows that no migration is half-way through, and one that
 * finds it held lets go of the write lock and waits (sq_lock).  After each
 * statement, main.migrate_progress records how far it got and the
 * checksum of the statements done: a later call resumes at the failed
 * statement when those are unchanged, running the PRAGMAs among them
 * again first, since connection settings do not outlive a connection.
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

static void
release_outside(sq_ctx *c)
{
	if (c->outside_fd >= 0)
		close(c->outside_fd);	/* releases the flock */
	c->outside_fd = -1;
	c->outside_version[0] = '\0';
}

/* The lock file of the database, "{db}-migrate-lock", into path: 1, or 0
 * for a private (temporary or in-memory) database, which has none, or -1
 * when the path does not fit. */
static int
lock_file_path(sq_ctx *c, char *path, size_t size)
{
	const char *db = sqlite3_db_filename(c->db, "main");

	if (db == NULL || db[0] == '\0')
		return 0;
	return (size_t) snprintf(path, size, "%s-migrate-lock", db) < size ? 1 : -1;
}

/* 1 when another connection holds the lock file, running a migration
 * outside a transaction; who then says which, as its holder wrote it (or
 * is empty).  A lock file that cannot be looked at counts as free: taking
 * it then reports why. */
static int
outside_running(sq_ctx *c, char *who, size_t size)
{
	char		path[LOCK_PATH_MAX];
	int			fd,
				held;
	ssize_t		n;

	who[0] = '\0';
	if (lock_file_path(c, path, sizeof(path)) != 1 ||
		(fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return 0;
	/* a shared lock for an instant: the holder retries its own meanwhile */
	held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
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
	int			fd,
				rc = lock_file_path(c, path, sizeof(path));

	if (rc == 0)
		return MIG_OK;
	if (rc < 0)
	{
		mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "database path \"%s\" is too long",
					sqlite3_db_filename(c->db, "main"));
		return MIG_ERROR;
	}
	if ((fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
	{
		mig_err_errno(err, errno, "open lock file", path);
		return MIG_ERROR;
	}
	/* a caller that waits looks at it for an instant, holding the write
	 * lock or not; only a caller that breaks the rules holds it longer */
	for (int tries = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; tries++)
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
			mig_err_errno(err, e, "lock file", path);
			return MIG_ERROR;
		}
		mig_err_set(err, MIG_SQLSTATE_LOCK,
					"another connection is applying it outside a transaction");
		mig_err_detail(err, "Its statements run one at a time under the lock file \"%s\".", path);
		mig_err_hint(err, "Call migrate_apply again when it is done.");
		return MIG_ERROR;
	}
	/* which migration runs, for the messages of callers that wait; not
	 * written, it is only missing from them */
	snprintf(who, sizeof(who), "migration %s (%s) in process %ld",
			 s->version, s->file, (long) getpid());
	if (ftruncate(fd, 0) == 0 && pwrite(fd, who, strlen(who), 0) < 0)
		who[0] = '\0';
	c->outside_fd = fd;
	return MIG_OK;
}

/* Reads how far an earlier attempt got into *start (0 for none), or
 * records that this one starts. */
static int
progress_start(sq_ctx *c, const mig_script *s, size_t *start, int64_t *done, mig_err *err)
{
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK;

	*start = 0;
	*done = 0;
	if (progress_ready(c, err) != MIG_OK)
		return err->code;
	if (sqlite3_prepare_v2(c->db, "SELECT done_checksum, next_offset, statements_done"
						   " FROM main.migrate_progress WHERE version = ?1", -1, &st, NULL) != SQLITE_OK ||
		sqlite3_bind_text(st, 1, s->version, -1, SQLITE_STATIC) != SQLITE_OK)
		rc = db_error(c, err, "could not read migrate_progress");
	else if (sqlite3_step(st) == SQLITE_ROW)
	{
		const char *sum = (const char *) sqlite3_column_text(st, 0);
		int64_t		off = sqlite3_column_int64(st, 1);
		char		now[16];

		*done = sqlite3_column_int64(st, 2);
		if (off >= 0 && (uint64_t) off <= s->len)
			mig_checksum(s->sql, (size_t) off, now);
		if (sum == NULL || off < 0 || (uint64_t) off > s->len || strcmp(now, sum) != 0)
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

		mig_checksum("", 0, empty);
		sql = sqlite3_mprintf("INSERT OR REPLACE INTO main.migrate_progress(version, done_checksum,"
							  " next_offset, statements_done, updated_at, last_error, down)"
							  " VALUES(%Q, %Q, 0, 0, strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now'), NULL, %d)",
							  s->version, empty, s->down != 0);
		rc = sql ? run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);
		sqlite3_free(sql);
	}
	return rc;
}

static int
sq_exec_outside(void *ctx, const mig_script *s, mig_err *err)
{
	sq_ctx	   *c = ctx;
	const char *p,
			   *end = s->sql + s->len;
	sqlite3_stmt *mark = NULL;
	size_t		start = 0;
	int64_t		done = 0;
	int			rc;

	rc = take_outside_lock(c, s, err);
	if (rc == MIG_OK)
		rc = progress_start(c, s, &start, &done, err);
	/* commit what came before (and the progress row): from here on no
	 * transaction is ours */
	if (rc == MIG_OK && (rc = run(c, "COMMIT", err)) == MIG_OK)
		c->locked = 0;
	if (rc == MIG_OK &&
		sqlite3_prepare_v2(c->db, "UPDATE main.migrate_progress SET done_checksum = ?2,"
						   " next_offset = ?3, statements_done = ?4, last_error = NULL,"
						   " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE version = ?1",
						   -1, &mark, NULL) != SQLITE_OK)
		rc = db_error(c, err, "could not record progress");
	/* resuming: the connection settings the statements done had made */
	for (p = s->sql; rc == MIG_OK && p < s->sql + start;)
	{
		size_t		wlen,
					at = mig_first_word(p, start - (size_t) (p - s->sql), 0, &wlen);
		const char *tail = p;
		sqlite3_stmt *st = NULL;
		int			ran;

		if (wlen == 6 && sqlite3_strnicmp(p + at, "PRAGMA", 6) == 0)
			rc = step_one(c, s, &p, s->sql + start, 0, &ran, err);
		else if (sqlite3_prepare_v3(c->db, p, (int) (start - (size_t) (p - s->sql)), 0, &st, &tail) == SQLITE_OK)
			p = tail > p ? tail : s->sql + start;
		else
			p = s->sql + start;	/* it ran before; the schema has moved on */
		sqlite3_finalize(st);
	}
	for (p = s->sql + start; rc == MIG_OK && p < end;)
	{
		int			ran;
		char		sum[16];

		if ((rc = step_one(c, s, &p, end, 0, &ran, err)) != MIG_OK)
			break;
		if (!ran)
			continue;
		done++;
		mig_checksum(s->sql, (size_t) (p - s->sql), sum);
		if (sqlite3_bind_text(mark, 1, s->version, -1, SQLITE_STATIC) != SQLITE_OK ||
			sqlite3_bind_text(mark, 2, sum, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
			sqlite3_bind_int64(mark, 3, (sqlite3_int64) (p - s->sql)) != SQLITE_OK ||
			sqlite3_bind_int64(mark, 4, done) != SQLITE_OK ||
			sqlite3_step(mark) != SQLITE_DONE)
			rc = db_error(c, err, "could not record progress");
		sqlite3_reset(mark);
	}
	sqlite3_finalize(mark);
	if (rc != MIG_OK && !c->locked)
	{
		mig_err		ignored;
		char	   *sql;

		/* a transaction the script opened itself is rolled back, and the
		 * error noted beside the progress */
		if (!sqlite3_get_autocommit(c->db))
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		sql = sqlite3_mprintf("UPDATE main.migrate_progress SET last_error = %Q WHERE version = %Q",
							  err->message, s->version);
		mig_err_clear(&ignored);
		if (sql)
			run(c, sql, &ignored);
		sqlite3_free(sql);
	}
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
 * which an application may route to its own log. */
static void
sq_notice(void *ctx, const char *message, const char *detail)
{
	sq_ctx	   *c = ctx;

	sqlite3_log(SQLITE_NOTICE, "%s: %s%s%s", c->fn, message,
				detail ? "\nDETAIL:  " : "", detail ? detail : "");
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
			*sql = sqlite3_mprintf("\nCOMMIT;\n");
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

				if (r->down_outside)
				{
					mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
								"the down script of migration %s (%s) must run outside a transaction",
								r->version, r->up_file);
					mig_err_detail(err, "A script records migrations as a plain INSERT, which cannot say so.");
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
