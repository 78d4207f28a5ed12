/*
 * pg_host.h -- the PostgreSQL host of the migration core.
 *
 * pg_host.c fills a mig_host whose callbacks reach the server: memory from a
 * private memory context, files through fd.c (so that an abort closes them),
 * the migration scripts through SPI (pg_script.c), and the migration lock
 * as an advisory lock (pg_xact.c); pg_history.c adds the callbacks of the
 * history tables.  migrate.c and the files it lists hold the SQL-callable
 * functions and decide the mode:
 *
 *   function mode  (SELECT migrate_apply / migrate_down / migrate_status):
 *                  everything runs in the caller's transaction, under a
 *                  transaction-level advisory lock;
 *   procedure mode (CALL migrate_run): non-atomic SPI, a commit after each
 *                  migration, under a session-level advisory lock that
 *                  mig_pg_end releases on every exit path.
 */
#ifndef MIGRATE_PG_HOST_H
#define MIGRATE_PG_HOST_H

#include "lib/stringinfo.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "mig.h"

/*
 * Key of the advisory lock every caller takes before reading the history
 * ("migrate" in ASCII).  Advisory lock tags include the database, so one key
 * serves every database of the cluster.  The history's trigger takes it
 * too (migrate_history_changed in migrate.c).
 */
#define MIGRATE_LOCK_KEY	INT64CONST(0x006d696772617465)

/*
 * The lock of a tenant (a schema, issue 22): the two-int advisory lock
 * (MIGRATE_TENANT_KEY, the schema's OID), so that callers migrating
 * different tenants never wait for each other.  "migt" in ASCII; in
 * pg_locks classid = 1835624308, objid = the OID, objsubid = 2.
 */
#define MIGRATE_TENANT_KEY	((int32) 0x6d696774)

typedef struct MigPg
{
	mig_host	host;			/* handed to the core; host.ctx is this */
	MemoryContext cxt;			/* the core's allocations and this struct */
	MemoryContext scratch;		/* one script or one query; reset after it */
	bool		procedure;		/* CALL migrate_run: commit per migration */
	bool		session_locked; /* the session advisory lock is held */
	int			allocs;			/* allocations so far, for migrate.fail_alloc */
	int			crash_points;	/* crash points passed, for migrate.crash_at */
	char	   *nsp_q;			/* the extension's schema, quoted */
	char	   *history;		/* quoted, schema-qualified history table */
	char	   *repairs;		/* the same of migrate_repairs */
	char	   *progress;		/* the same of migrate_progress */
	char	   *verified;		/* the same of migrate_verified */
	Oid			history_oid;	/* for the no-op shortcut (verified_get): */
	Oid			verified_oid;	/* migrate_verified (InvalidOid before 0.2) */
	Oid			gen_oid;		/* migrate_history_gen */
	int64		gen_seen;		/* history changes counted at verified_get */
	TransactionId trigger_xmin; /* and the state of the trigger counting */
	bool		may_verify;		/* verified_put may store a digest */
	char	   *outside_version;	/* version whose statements just ran
									 * outside a transaction (its progress
									 * row goes with history_add), or NULL */
	bool		no_progress;	/* progress_load found no script half way
								 * (exec_outside need not look again) */
	bool		want_applied_at;	/* history_load formats applied_at
									 * (migrate_status only) */

	/* Who is who (16.2): the extension's tables are read and written as
	 * their owner, never with the caller's rights (mig_pg_as_owner); what
	 * migrations run, as the caller; a stored down script, as the role
	 * that stored it. */
	Oid			owner;			/* owner of migrate_history */
	Oid			caller;			/* the current user when the call began */
	char	   *caller_name;	/* its name, written as applied_by */
	Oid			down_role;		/* role that stored the down script being
								 * run (history_down), or InvalidOid */
	bool		v03;			/* the schema is 0.3 or later (down_mode,
								 * progress.down, repairs.action, guard) */
	bool		replace_next;	/* migrate_script: the next record replaces
								 * a repeatable's row */
	bool		has_ahead;		/* migrate_history has the column ahead */
	void	   *impact;			/* pg_impact.c's state over one call */

	/* The tenant of the call (pg_tenant.c): a schema, named by its name. */
	bool		has_tenants;	/* the tables have the column tenant (0.3) */
	char	   *tenant;			/* its name, in the server encoding: "" for
								 * none (the calls without schema=) */
	Oid			tenant_nsp;		/* its schema, InvalidOid for none */
	char	   *tenant_lit;		/* tenant as a quoted literal, for SQL */
	bool		each;			/* a tenant of a fan-out: the core's notices
								 * go to DEBUG1, with the tenant's name */
	struct MigPgGuard *guard;	/* migrate_run_each: the work between two
								 * commits runs in a subtransaction (see
								 * MigPgGuard), or NULL */
	bool		batched;		/* migrate_apply_each: one of several
								 * tenants run in one subtransaction; an
								 * error rolls them all back and they run
								 * again one by one, so the rail opens no
								 * subtransaction of its own and a failure
								 * is not logged (the rerun logs it) */

	/* The call log (pg_calls.c): the row of this call, when it writes. */
	const char *call_fn;		/* the function called, or NULL: not logged */
	char	   *call_source;	/* its folder */
	char	   *call_options;
	TimestampTz call_started;
	int64		call_count;		/* migrations applied, recorded, repaired or
								 * rolled back */
	StringInfo	call_versions;	/* their versions, "1, 2, 3" */
	int64		call_committed; /* procedure mode: call_count at the last
								 * commit (what a failed call did keep) */
	bool		call_logged;	/* the row is written */
	bool		skipped;		/* the lock was held: if_locked=skip */
	bool		dry_run_procedure;	/* a dry run checks as CALL migrate_run */
	const char *fname;			/* the SQL function called, for messages */
	char	   *calls;			/* quoted, schema-qualified migrate_calls */
	Oid			calls_oid;		/* InvalidOid before 0.3 */

	/* The script being checked or run, for the error context callback. */
	const mig_script *script;
	const char *text;			/* NUL-terminated, in the server encoding */
	int			text_len;
	bool		converted;		/* text differs from script->sql bytes */
	int			stmt_off;		/* running statement's offset in text, or
								 * -1 while the whole text is being parsed */
	int			check_pos;		/* 1-based character position of a syntax
								 * error found by check_script, or 0 */

	/* The blocking rail of migration statements (pg_rails.c), from the
	 * call's options or the settings. */
	int			rail_timeout_ms;	/* their lock_timeout; 0: no rail */
	int			rail_retries;	/* retries after that timeout */
	int			rail_attempt;	/* attempt running now, from 1 */
	bool		rail_active;	/* statements run under its lock_timeout */
	char	   *rail_waited;	/* "migration <version> (<file>)" whose
								 * statement hit it, or NULL */
} MigPg;

/*
 * Sets up a host for one call.  fn_oid is the calling SQL function (its
 * schema is the extension's); procedure selects procedure mode.  The result
 * lives in its own memory context, under PortalContext in procedure mode (it
 * must survive the commits) and under the current context otherwise.
 */
extern MigPg *mig_pg_begin(Oid fn_oid, bool procedure);

/* migrate_script_record: records rec as applied by the caller (replacing
 * the row of its version when replace is set), as the owner. */
extern int	mig_pg_script_record(MigPg *mp, const mig_record *rec, bool replace,
								 mig_err *err);

/* Fills in mp's history callbacks (pg_history.c): migrate_history, the
 * off-hours script's parts, another tool's history, and the no-op shortcut
 * when the extension schema nsp has its tables (0.2). */
extern void mig_pg_history_host(MigPg *mp, Oid nsp);

/* Releases the session lock if still held and frees everything of the call.
 * Safe on error paths (call it from PG_FINALLY). */
extern void mig_pg_end(MigPg *mp);
/* What mig_pg_end releases, without freeing the call: the worker of
 * migrations outside a transaction, and the session lock (an error path
 * does it first, before it writes the call log, which may be interrupted). */
extern void mig_pg_release(MigPg *mp);

/* Defines the extension's settings (from _PG_init). */
extern void mig_pg_define_settings(void);

/* A crash point of the call: with migrate.crash_at = n (a testing aid), the
 * backend SIGKILLs itself at the n-th. */
extern void mig_pg_crash_point(MigPg *mp);

/*
 * Runs fn(mp, arg, err) -- statements on the extension's own tables --
 * as their owner, in a security-restricted context with search_path
 * pinned to pg_catalog, pg_temp, and marked as the extension's own writes
 * for the guard trigger (migrate_guard).  The caller's rights never reach
 * those tables, and no code of anyone but the owner can run meanwhile.
 * An error raised by fn propagates: the (sub)transaction's abort puts the
 * user and settings back, the mark is cleared here.
 */
extern int	mig_pg_as_owner(MigPg *mp, int (*fn) (MigPg *mp, void *arg, mig_err *err),
							void *arg, mig_err *err);
/* What mig_pg_owner_enter changed, for mig_pg_owner_leave. */
typedef struct MigPgSave
{
	Oid			user;
	int			sec;
	int			nest;
	bool		own;
} MigPgSave;

/* mig_pg_as in two halves, for straight-line code: enter switches to role
 * (restricted, search_path pinned, the guard's mark set when own), leave
 * puts it back; an error in between is cleaned up by the abort. */
extern void mig_pg_owner_enter(MigPg *mp, Oid role, bool own, MigPgSave *save);
extern void mig_pg_owner_leave(MigPgSave *save);

/* The same as role, the guard's mark set when own is. */
extern int	mig_pg_as(MigPg *mp, Oid role, bool own,
					  int (*fn) (MigPg *mp, void *arg, mig_err *err),
					  void *arg, mig_err *err);

/* Before a stored down script runs: switches to the role that stored it
 * (history_down noted it in mp->down_role), after checking the caller has
 * its privileges (else 42501).  The caller restores the user. */
extern void mig_pg_down_role_enter(MigPg *mp);

/* Whether the extension's own code is writing its tables now (for the
 * guard trigger). */
extern bool mig_pg_own_write(void);
extern void mig_pg_verified_memo_reset(void);

/*
 * The guard of a call of a fan-out that commits (migrate_run_each): the
 * work between two commits runs in a subtransaction, ended just before
 * each commit and begun again just after, so that an error of one tenant
 * rolls back to that tenant's last commit -- what a ROLLBACK would do --
 * and leaves the procedure's transaction usable for the next tenant, as
 * PL/pgSQL's exception blocks do (an error is caught only in a
 * subtransaction).  The SPI connection of such a call is made before the
 * guard begins (its connection belongs to the transaction, not to the
 * subtransaction, which would pop it at the first commit).
 */
typedef struct MigPgGuard
{
	bool		open;			/* a subtransaction of the guard is open */
	MemoryContext cxt;			/* where the code runs (outlives commits) */
	ResourceOwner owner;		/* the transaction's, when it began */
} MigPgGuard;

/* Begins the guard's subtransaction; ends it (releasing it into the
 * transaction when commit is set, else rolling it back), if open. */
extern void mig_pg_guard_begin(MigPgGuard *g);
extern void mig_pg_guard_end(MigPgGuard *g, bool commit);

/*
 * Procedure mode's commit and rollback of what came since the last one
 * (SPI_commit, SPI_rollback).  In a guarded call (mp->guard) that work
 * is in the guard's subtransaction, ended first and begun again after.
 */
extern void mig_pg_commit(MigPg *mp);
extern void mig_pg_rollback(MigPg *mp);

/* Raises err as an ERROR with its SQLSTATE, detail, hint and context. */
extern void mig_pg_report(const mig_err *err) pg_attribute_noreturn();

/*
 * Encodings (pg_encoding.c, "text helpers"): the core works in UTF-8, the
 * server in the database's encoding (SQL_ASCII: bytes as they are).
 *
 * mig_pg_text_datum: UTF-8 bytes as a text Datum in the server encoding
 *   (PostgreSQL's own 22P05 error when a character has no equivalent).
 * mig_pg_report_text: UTF-8 text for a notice, an error or a report row,
 *   never failing: a character the encoding lacks shows as \uXXXX.
 * mig_pg_utf8: server text (an argument, a history row) in UTF-8.
 * mig_pg_name_fits, mig_pg_record_fits: MIG_OK, or 22P05 in err naming the
 *   file (and the version and line) whose name or text has a character the
 *   server encoding lacks -- checked before anything is stored or runs.
 */
extern Datum mig_pg_text_datum(const char *s, size_t len);
extern char *mig_pg_report_text(const char *s);
extern char *mig_pg_utf8(const char *s);
extern int	mig_pg_name_fits(const char *version, const char *file, mig_err *err);
extern int	mig_pg_record_fits(const mig_record *rec, mig_err *err);

/* Helpers of pg_script.c for pg_outside.c: script_begin copies s into the
 * scratch context in the server encoding (mp->text) and pushes the error
 * context callback naming file, version and line; script_done undoes it;
 * statement_start is the offset of the first word of the statement at
 * off. */
extern void mig_pg_script_begin(MigPg *mp, const mig_script *s,
								ErrorContextCallback *cb);
extern void mig_pg_script_done(MigPg *mp, ErrorContextCallback *cb,
							   MemoryContext old);
extern int	mig_pg_statement_start(const MigPg *mp, int off);
/* The text of raw statement rs from its first word on (palloc'd), and
 * where it starts and ends in mp->text in *off and *end. */
extern char *mig_pg_statement_text(const MigPg *mp, const RawStmt *rs, int *off,
								   int *end);
/* The offset in the script's own bytes (s->sql) of the line holding
 * offset off of mp->text (off itself when the text was not converted). */
extern long mig_pg_script_offset(const MigPg *mp, int off);
/* Whether stmt can run only outside a transaction block (CREATE INDEX
 * CONCURRENTLY, VACUUM...: what check_script answers MIG_OUTSIDE for). */
extern bool mig_pg_outside_only(Node *stmt);

/* ---- pg_xact.c, pg_encoding.c, pg_script.c: the rest of the host ---- */

/* host->lock, host->unlock and (procedure mode) host->checkpoint. */
extern int	mig_pg_lock(void *ctx, const mig_lock_opts *o, mig_err *err);
extern int	mig_pg_unlock(void *ctx, int commit, mig_err *err);
extern int	mig_pg_checkpoint(void *ctx, mig_err *err);
/* Releases procedure mode's session lock, if mp holds it. */
extern void mig_pg_release_session_lock(MigPg *mp);

/* Looks the conversions between UTF-8 and the server encoding up, once per
 * backend (needs a transaction). */
extern void mig_pg_encoding_init(void);
/* UTF-8 s[0..len) in the server encoding (a palloc'd copy, its length in
 * *out_len), or NULL with the offset of a character it lacks in *bad. */
extern char *mig_pg_to_server(const char *s, size_t len, size_t *out_len,
							  size_t *bad);
/* Server-encoded s in UTF-8; a character UTF-8 lacks raises, or when lossy
 * becomes '?'. */
extern char *mig_pg_from_server(const char *s, bool lossy);
/* Fills err (22P05) for the character at sql[bad] the server encoding
 * lacks, with err->offset at it. */
extern void mig_pg_untranslatable(const char *sql, size_t len, size_t bad,
								  mig_err *err);

/* host->check_script and host->exec. */
extern int	mig_pg_check_script(void *ctx, const mig_script *s, mig_err *err);
extern int	mig_pg_exec(void *ctx, const mig_script *s, mig_err *err);

/* ---- pg_impact.c: what a migration will do, and the policy ---- */

/* Defines migrate.max_lock, migrate.no_rewrite and migrate.max_size. */
extern void mig_pg_define_impact_settings(void);
/* Fills in mp's host.impact and the policy's defaults from the settings. */
extern void mig_pg_impact_host(MigPg *mp);

/* ---- pg_tenant.c: tenants ---- */

/*
 * Makes schema name (server encoding; "" for none) the tenant of mp's
 * call, checked: the schema exists (3F000), is no system or temporary
 * schema (42939), and the caller has USAGE on it, and CREATE too when
 * the call writes (42501).  MIG_OK, or MIG_ERROR with err filled.
 */
extern int	mig_pg_tenant_set(MigPg *mp, const char *name, bool writes, mig_err *err);
/* Reads options (UTF-8, NULL: none) as entry point which (MIG_OPTIONS_*)
 * reads them plus schema= (mig_options_split), makes that schema the
 * tenant (mig_pg_tenant_set) and returns the rest for the entry point, in
 * mp's context (NULL when options is NULL); raises on an error. */
extern char *mig_pg_tenant_from_options(MigPg *mp, const char *options, int which,
										bool writes);
/* The migration lock of mp's tenant (the tenant's, or the one key of the
 * calls without one): tried, waited for, or released (session level). */
extern bool mig_pg_lock_try(MigPg *mp, bool session);
extern void mig_pg_lock_wait(MigPg *mp, bool session);
extern void mig_pg_lock_release(MigPg *mp);
/* Once the lock is held: locks the tenant's schema (function mode) and
 * checks its name is still its (MIG_OK, or 3F000 in err). */
extern int	mig_pg_tenant_locked(MigPg *mp, mig_err *err);
/* The query listing the holders of the lock of schema nsp (InvalidOid: of
 * the calls without a tenant), as mig_pg_holder_query. */
extern char *mig_pg_holder_query_for(Oid nsp);
/* "tenant OPERATOR(pg_catalog.=) '<tenant>'", to AND into a query on the
 * extension's tables, or "true" on a schema without tenants (palloc'd). */
extern char *mig_pg_tenant_cond(MigPg *mp);
/* Sets search_path to the tenant for the migration about to run, as a
 * function's SET clause does (what the migration sets wins, and is undone
 * after it); returns the GUC nest level to end with
 * mig_pg_tenant_path_leave, or -1 when the call has no tenant. */
extern int	mig_pg_tenant_path_enter(MigPg *mp);
extern void mig_pg_tenant_path_leave(int nest);
/* The trigger migrate_history_changed (migrate.c calls it). */
extern Datum mig_pg_history_changed(FunctionCallInfo fcinfo);

/* ---- pg_calls.c: the call log ---- */

/* Defines migrate.call_log and migrate.call_log_days. */
extern void mig_pg_define_call_settings(void);
/* Marks the call as one to log: fname, its folder and options. */
extern void mig_pg_call_begin(MigPg *mp, const char *fname, const char *source,
							  const char *options);
/* Notes a version the call applied, recorded, repaired or rolled back. */
extern void mig_pg_call_note(MigPg *mp, const char *version);
/* Writes the call's row now, in the current transaction ("ok",
 * "skipped"). */
extern int	mig_pg_call_log(MigPg *mp, const char *outcome, mig_err *err);
/* Writes the row of a failed call apart, in a background worker, so that
 * it outlives the failed transaction. */
extern void mig_pg_call_log_failed(MigPg *mp, const char *sqlstate, const char *message);

/* ---- pg_outside.c: migrations outside a transaction ---- */

/* host->exec_outside of procedure mode. */
extern int	mig_pg_exec_outside(void *ctx, const mig_script *s, mig_err *err);

/* Starts the background worker of mp's call ahead of its first migration
 * outside a transaction, when check_script finds one will run (procedure
 * mode, under the migration lock), so that its start overlaps the work
 * before; does nothing when it cannot (exec_outside then starts it or
 * says why). */
extern void mig_pg_outside_prestart(MigPg *mp);

/* Ends the background worker of mp's call, if it has one: lets it exit
 * when clean is set (the call's end), else terminates it (an error).
 * Safe on error paths. */
extern void mig_pg_outside_end(MigPg *mp, bool clean);

/* history_add: forgets the progress of version when its statements just
 * ran outside a transaction; history_remove: the progress of its down
 * script.  Called as the owner (mig_pg_as_owner). */
extern int	mig_pg_forget_progress(MigPg *mp, const char *version, mig_err *err);
extern int	mig_pg_forget_down_progress(MigPg *mp, const char *version, mig_err *err);

/* ---- pg_rails.c: the migration lock's wait and the blocking rail ---- */

/* Defines migrate.lock_timeout and migrate.lock_retries. */
extern void mig_pg_define_rail_settings(void);

/* Sets mp's rail from o (-1 fields: the settings); NULL: the settings. */
extern void mig_pg_rail_set(MigPg *mp, const mig_lock_opts *o);

/*
 * Takes the migration lock (transaction-level, or session-level in
 * procedure mode) waiting at most wait_ms (below 0, the default or
 * MIG_WAIT_FOREVER: as long as the server's lock_timeout allows).  Returns
 * MIG_OK, or MIG_BUSY with err naming the holder (55P03).
 */
extern int	mig_pg_take_lock(MigPg *mp, long wait_ms, mig_err *err);

/* The query listing the holders of the migration lock in this database:
 * pid, usename, application_name, since, state, query, and what since
 * measures ("statement", "transaction" or "last statement"). */
extern char *mig_pg_holder_query(void);

/*
 * Runs run(mp, arg, err) -- one script's statements -- with lock_timeout set
 * to mp->rail_timeout_ms for them only (0: as they are).
 */
extern int	mig_pg_rail_timed(MigPg *mp, int (*run) (MigPg *mp, void *arg, mig_err *err),
							  void *arg, mig_err *err);

/*
 * Runs run(mp, arg, err) -- the unit the rail retries -- in a subtransaction,
 * and when a statement run by mig_pg_rail_timed inside it fails with 55P03,
 * again after a backoff, up to mp->rail_retries times.  The unit is one
 * migration in procedure mode (its own transaction) and the whole call in
 * function mode: a subtransaction per migration would make a call of n
 * migrations cost O(n^2), as the server walks all the locks and new files
 * of the transaction at each subtransaction's end.  Returns run's result;
 * an error of the last attempt is raised as it was.
 */
extern int	mig_pg_railed(MigPg *mp, int (*run) (MigPg *mp, void *arg, mig_err *err),
						  void *arg, mig_err *err);

/* Adds the rail's detail and hint to a 55P03 error being raised while a
 * migration runs (called from the error context callback). */
extern void mig_pg_rail_error_context(MigPg *mp);

#endif							/* MIGRATE_PG_HOST_H */
