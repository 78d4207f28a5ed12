/*
 * sq_host.c -- the mig_host over one SQLite connection: sq_host_init fills
 * it with the functions of the files below, and this file holds what they
 * share (errors from the connection, running one statement) and the
 * simplest parts: memory through sqlite3_malloc64, files through POSIX,
 * notices.  The rest: the lock as BEGIN IMMEDIATE (or a savepoint plus a
 * write inside the caller's transaction) and the lock file (sq_lock.c), the
 * history in main.migrate_history (sq_history.c), scripts checked and run
 * one prepared statement at a time with explicit lengths (sq_exec.c),
 * migrations outside a transaction (sq_outside.c), the off-hours script
 * (sq_script.c).
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

/* Sets err from the connection's last error. */
int
sq_db_error(sq_ctx *c, mig_err *err, const char *what)
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

int
sq_run(sq_ctx *c, const char *sql, mig_err *err)
{
	if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return sq_db_error(c, err, sql);
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

/* ---- notices ---- */

/* Notices go to SQLite's error log (sqlite3_config SQLITE_CONFIG_LOG),
 * which an application may route to its own log, and to a person at a
 * terminal (sq_show). */
void
sq_notice(void *ctx, const char *message, const char *detail)
{
	sq_ctx	   *c = ctx;

	sqlite3_log(SQLITE_NOTICE, "%s: %s%s%s", c->fn, message,
				detail ? "\nDETAIL:  " : "", detail ? detail : "");
	sq_show(c, message);
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
