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
/* MIG_OK, or MIG_ERROR naming a trigger on migrate's own tables (sq_host.c). */
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

#endif
