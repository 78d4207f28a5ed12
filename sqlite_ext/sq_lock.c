/*
 * sq_lock.c -- the migration lock of the SQLite host: the calling context
 * it refuses (another statement busy, a statement that reads tables), the
 * unit of work (BEGIN IMMEDIATE, or inside the caller's transaction a
 * savepoint and a write; the busy timeout while it waits; commit or roll
 * back at unlock; triggers planted on migrate's own tables), and the lock
 * file "{db}-migrate-lock" held while a migration runs outside a
 * transaction (sq_outside.c), which sq_lock waits for.
 */
#define _DEFAULT_SOURCE			/* flock */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

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

static void
restore_timeout(sq_ctx *c)
{
	if (c->restore_timeout >= 0)
		sqlite3_busy_timeout(c->db, c->restore_timeout);
	c->restore_timeout = -1;
}

static int	outside_running(sq_ctx *c, char *who, size_t size, mig_err *err);
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
	rc = sqlite3_exec(c->db, sq_history_ddl, NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "DELETE FROM main.migrate_history WHERE 0", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sq_upgrade_history(c);
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
		return sq_db_error(c, err, "could not look for triggers on the history");
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
	return rc == SQLITE_DONE ? MIG_OK : sq_db_error(c, err, "could not look for triggers on the history");
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
int
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
		sq_db_error(c, err, "could not take the migration lock");
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
			int			rc = sq_db_error(c, err, "could not roll back");

			sqlite3_reset(c->undo[i]);
			return rc;
		}
		sqlite3_reset(c->undo[i]);
	}
	return MIG_OK;
}

int
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
			rc = sq_run(c, c->in_txn ? "RELEASE migrate" : "COMMIT", err);
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
	sq_release_outside(c);
	return rc;
}

/* ---- the lock file of migrations outside a transaction ---- */

void
sq_release_outside(sq_ctx *c)
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
int
sq_lock_target(sq_ctx *c, char *path, size_t size)
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
int
sq_refuse_shared_memory(sq_ctx *c, const mig_script *s, mig_err *err)
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
	if (sq_lock_target(c, path, sizeof(path)) != LOCK_FILE)
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
int
sq_take_outside_lock(sq_ctx *c, const mig_script *s, mig_err *err)
{
	char		path[LOCK_PATH_MAX],
				who[LOCK_WHO_MAX];
	int			fd = c->outside_fd,
				writable = 1;

	switch (sq_lock_target(c, path, sizeof(path)))
	{
		case LOCK_NONE:
			return MIG_OK;
		case LOCK_SHARED_MEMORY:
			return sq_refuse_shared_memory(c, s, err);
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
