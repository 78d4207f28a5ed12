/*
 * sq_int.h -- shared by the SQLite adapter's files: the per-call host
 * context and the functions that build a mig_host over a connection.
 */
#ifndef SQ_INT_H
#define SQ_INT_H

#include <sqlite3ext.h>

#include "../common/mig.h"

typedef struct sq_ctx {
	sqlite3    *db;
	const char *fn;				/* SQL function name, for messages */
	int			in_txn;			/* the caller had a transaction open: we use a
								 * savepoint and the caller's COMMIT decides */
	int			locked;			/* lock() succeeded and unlock() is owed */
	int			restore_timeout;	/* busy timeout to put back, or -1 */
	sqlite3_stmt *add;			/* cached INSERT into the history */
	sqlite3_stmt *undo[2];		/* ROLLBACK (or ROLLBACK TO + RELEASE),
								 * prepared before the transaction opens:
								 * after an out-of-memory error SQLite
								 * prepares nothing more until the calling
								 * statement ends, but a prepared statement
								 * still runs */
	int			outside_fd;		/* the lock file held while a migration runs
								 * outside a transaction, or -1 */
	char		outside_version[128];	/* its version, until recorded */
	char		who[64];		/* the operating-system user (caller()) */
	int			who_set;
	/* the call log (sq_calls.c): the row of this call, when it writes */
	const char *log_fn;			/* NULL: not logged */
	const char *log_source;
	const char *log_options;
	char		log_started[32];
	int64_t		log_count;		/* migrations applied, recorded, repaired or
								 * rolled back */
	char		log_versions[1024];
	int			log_done;		/* the row is written */
	int			skipped;		/* the lock was held (if_locked=skip) */
	int			verbose;		/* verbose=: 1, 0, or -1 (a terminal decides) */
	void	   *impact;			/* sq_impact.c's state over one call */
	int			ahead_added;	/* migrate_script: the column ahead is
								 * added by the script already */
} sq_ctx;

/* query_canceled: sqlite3_interrupt() stopped a statement; reported as
 * SQLITE_INTERRUPT. */
#define SQ_SQLSTATE_CANCELED "57014"

/* Default wait for the write lock when the connection has no busy
 * timeout of its own. */
#define SQ_DEFAULT_BUSY_MS 60000

/* Fills h with the SQLite host over c, for SQL function fn on db. */
void		sq_host_init(mig_host *h, sq_ctx *c, sqlite3 *db, const char *fn);
/* "fn: context: message\nDETAIL:  ...\nHINT:  ..." from sqlite3_malloc,
 * or NULL when out of memory. */
char	   *sq_error_text(const char *fn, const mig_err *err);
/* Reports err as the result of the SQL function call. */
void		sq_report(sqlite3_context *fctx, const char *fn, const mig_err *err);
/* The operating-system user of this process, looked up once per call. */
const char *sq_caller(sq_ctx *c);

/* The call log (sq_calls.c): begin marks the call as logged (fn, its
 * folder and options); note counts a version it applied, recorded,
 * repaired or rolled back; log writes the row (outcome "ok", "error" with
 * e, or "skipped"), MIG_OK or an error in err. */
void		sq_call_begin(sq_ctx *c, const char *fn, const char *source, const char *options);
void		sq_call_note(sq_ctx *c, const char *version);
int			sq_call_log(sq_ctx *c, const char *outcome, const mig_err *e, mig_err *err);
/* MIG_OK, or MIG_ERROR naming a trigger on migrate's own tables (sq_lock.c). */
int			sq_planted_trigger(sq_ctx *c, mig_err *err);

/* Shows a notice to a person at the terminal: a line on standard error
 * when the session is interactive (standard input and error are
 * terminals) or verbose=true, never with verbose=false. */
void		sq_show(sq_ctx *c, const char *message);

/* The folder argument v (sq_source.c): a path (TEXT), an archive (BLOB)
 * or a JSON object (TEXT starting with '{').  For the last two, builds
 * the source over h (or finds the archive in kept, the connection's last
 * one, when not NULL), sets h->source, and sets *src to what the caller
 * frees with mig_source_free (NULL when kept holds it); *path is what the
 * core is given, *logged what the call log shows (also after an error,
 * when it is not NULL).  MIG_OK, or an error in err. */
int			sq_folder_arg(sqlite3 *db, mig_host *h, sqlite3_value *v, mig_source_cache *kept,
						  const char **path, mig_source **src, const char **logged,
						  mig_err *err);

/* Tenants (sq_tenant.c).  sq_tenant_schema opens a connection of its own
 * on the file of database schema of the caller's connection (NULL in
 * *out for main: the caller's own), sq_tenant_path on a tenant's file;
 * read-write without create, or read-only; refusing temp, in-memory and
 * unattached databases, a transaction of the caller on the file,
 * symbolic links, directories and other files that are not regular, and
 * a tenant whose own tables are views or carry triggers.  Close with
 * sq_tenant_close.  MIG_OK, or an error in err. */
int			sq_tenant_schema(sqlite3 *caller, const char *schema, int readonly, sqlite3 **out,
							 mig_err *err);
int			sq_tenant_path(sqlite3 *caller, const char *path, int readonly, sqlite3 **out,
						   mig_err *err);
void		sq_tenant_close(sqlite3 *t);
/* Reads the options text of function fn as entry point which
 * (MIG_OPTIONS_*) and opens the tenant its schema= names (*tdb NULL when
 * none); *rest is the text for the core without schema= (sqlite3_free; NULL
 * when options is NULL). */
int			sq_tenant_enter(sqlite3 *caller, const char *fn, const char *options, int which,
							int readonly, sqlite3 **tdb, char **rest, mig_err *err);

/* One row of the fan-out functions (sq_each.c): strings valid during the
 * callback; applied and pending -1 when unknown. */
typedef struct sq_each_row {
	const char *tenant;
	int64_t		applied;
	int64_t		pending;		/* migrate_status_each */
	const char *latest;			/* migrate_status_each: newest applied */
	const char *status;			/* applied, up_to_date, failed,
								 * skipped_locked, not_reached; for status:
								 * up_to_date, pending, partial, changed,
								 * failed */
	const char *sqlstate;		/* of the error, or NULL */
	const char *error;			/* "context: message", or NULL */
} sq_each_row;

typedef int (*sq_each_cb) (void *arg, const sq_each_row *r);

/* migrate_apply_each and migrate_status_each: the folder given as path
 * (with src's source and limits), each tenant of list (a JSON array of
 * paths, or one path) migrated or looked at in turn, a row each through
 * cb.  Fails (the call raises) only on bad arguments, a folder that is
 * bad whatever the tenant, or out of memory; a tenant's failure is its
 * row's. */
int			sq_apply_each(sqlite3 *caller, const mig_host *src, const char *path,
						  const char *logged, sqlite3_value *list, const char *options,
						  sq_each_cb cb, void *arg, mig_err *err);
int			sq_status_each(sqlite3 *caller, const mig_host *src, const char *path,
						   sqlite3_value *list, sq_each_cb cb, void *arg, mig_err *err);

/* What migrate_apply keeps per connection: checksums of files read, and
 * the last archive (its user data; the other functions keep nothing). */
typedef struct sq_caches {
	mig_cache  *files;
	mig_source_cache *archives;
} sq_caches;

/* Registers the eponymous tables migrate_status, migrate_validate,
 * migrate_plan and migrate_impact (sq_tables.c); SQLITE_OK or an error. */
int			sq_tables_register(sqlite3 *db);

/* host->impact (sq_impact.c): what each statement of s will do. */
int			sq_impact(void *ctx, const mig_script *s, int first, mig_impact_cb cb,
					  void *arg, mig_err *err);

/*
 * The host of sq_host_init, spread over the files below; each function is
 * the mig_host member of its name (common/mig.h), and the others are what
 * those files share.
 */

/* sq_host.c: sq_db_error sets err from the connection's last error (what
 * names the step) and returns MIG_NOMEM or MIG_ERROR; sq_run runs sql with
 * sqlite3_exec, MIG_OK or sq_db_error's; sq_notice is host->notice. */
int			sq_db_error(sq_ctx *c, mig_err *err, const char *what);
int			sq_run(sq_ctx *c, const char *sql, mig_err *err);
void		sq_notice(void *ctx, const char *message, const char *detail);

/* sq_lock.c: the lock, and the lock file of migrations outside a
 * transaction. */
int			sq_lock(void *ctx, const mig_lock_opts *o, mig_err *err);
int			sq_unlock(void *ctx, int commit, mig_err *err);

/* Where the migration lock is kept while a migration runs outside a
 * transaction (sq_lock_target). */
enum
{
	LOCK_NONE,					/* nowhere: the database is this connection's */
	LOCK_FILE,					/* in a lock file beside the database */
	LOCK_SHARED_MEMORY,			/* nowhere it could be: refused */
	LOCK_TOO_LONG				/* the lock file's path does not fit */
};

/* Gives back the lock file, when held, and forgets its version. */
void		sq_release_outside(sq_ctx *c);
/* LOCK_*: where the lock of main is kept, its path in path when not NULL. */
int			sq_lock_target(sq_ctx *c, char *path, size_t size);
/* Refuses to run s outside a transaction in a shared in-memory database. */
int			sq_refuse_shared_memory(sq_ctx *c, const mig_script *s, mig_err *err);
/* Takes the lock file to run s outside a transaction. */
int			sq_take_outside_lock(sq_ctx *c, const mig_script *s, mig_err *err);

/* sq_history.c: main.migrate_history, main.migrate_repairs, another
 * tool's history. */
extern const char sq_history_ddl[];
/* 1 when table main.t has column col. */
int			sq_has_column(sq_ctx *c, const char *t, const char *col);
/* Adds the columns a history made by an earlier build lacks; an SQLite
 * result code. */
int			sq_upgrade_history(sq_ctx *c);
/* 1 when main.migrate_history exists. */
int			sq_history_exists(sq_ctx *c);
/* How a down script runs, as the history's down_mode says it. */
const char *sq_down_mode(const char *down_sql, int noop, int outside);
int			sq_history_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err);
int			sq_history_add(void *ctx, const mig_record *r, mig_err *err);
int			sq_history_remove(void *ctx, const char *version, mig_err *err);
int			sq_history_down(void *ctx, const char *version, mig_stored_down *d, mig_err *err);
int			sq_history_repair(void *ctx, const mig_repair_row *r, mig_err *err);
int			sq_audit(void *ctx, const char *version, const char *action,
					 const char *old_checksum, const char *new_checksum, mig_err *err);
int			sq_table_info(void *ctx, const char *schema, const char *table, const char *column,
						  int *exists, mig_err *err);
int			sq_query_text(void *ctx, const char *schema, const char *table, const char *cols,
						  const char *order_by, int ncols,
						  int (*cb) (void *arg, const char *const *cells), void *arg,
						  mig_err *err);

/* sq_exec.c: scripts checked and run in the unit of work, and the helpers
 * the runner outside a transaction shares. */
int			sq_check_script(void *ctx, const mig_script *s, mig_err *err);
int			sq_exec(void *ctx, const mig_script *s, mig_err *err);
/* A NUL-terminated view of s with the same offsets (a copy in *copy, from
 * sqlite3_malloc64, when needed); NULL when out of memory. */
const char *sq_script_text(const mig_script *s, char **copy);

/* Room for one statement at a time, NUL-terminated, for sq_statement_end
 * (from sqlite3_malloc64; free buf with sqlite3_free). */
typedef struct sq_scratch
{
	char	   *buf;
	size_t		size;
} sq_scratch;

/* The offset just past the statement that starts at sql[start], found with
 * sqlite3_complete(); 0 when out of memory. */
size_t		sq_statement_end(const char *sql, size_t start, size_t len, sq_scratch *sc);
/* 1 when the word at w (wlen bytes) is kw, in any case. */
int			sq_word_is(const char *w, size_t wlen, const char *kw);
/* Fills err for the statement at s->sql[at] that failed with rc. */
int			sq_stmt_failed(sq_ctx *c, const mig_script *s, size_t at, int rc, mig_err *err);
/* Prepares the statement at text[at] into *st (NULL when none is left),
 * *next the offset past it. */
int			sq_prepare_at(sq_ctx *c, const mig_script *s, const char *text, size_t at,
						  sqlite3_stmt **st, size_t *next, mig_err *err);
/* Steps st to its end and resets it: SQLITE_OK or the error code. */
int			sq_step_all(sqlite3_stmt *st);

/* sq_outside.c: migrations outside a transaction and their progress. */
/* 1 when main.migrate_progress exists. */
int			sq_progress_exists(sq_ctx *c);
int			sq_progress_load(void *ctx, mig_progress_cb cb, void *arg, mig_err *err);
int			sq_progress_forget(void *ctx, const char *version, int down, mig_err *err);
int			sq_exec_outside(void *ctx, const mig_script *s, mig_err *err);

/* sq_script.c: host->script_part, the off-hours script. */
int			sq_script_part(void *ctx, int part, const mig_record *r, const mig_lock_opts *lock,
						   char **sql, mig_err *err);

#endif
