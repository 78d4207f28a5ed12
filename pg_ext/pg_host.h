/*
 * pg_host.h -- the PostgreSQL host of the migration core.
 *
 * pg_host.c fills a mig_host whose callbacks reach the server: memory from a
 * private memory context, files through fd.c (so that an abort closes them),
 * the history table and the migration scripts through SPI, and the
 * migration lock as an advisory lock.  migrate.c holds the SQL-callable
 * functions and decides the mode:
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

#include "mig.h"

/*
 * Key of the advisory lock every caller takes before reading the history
 * ("migrate" in ASCII).  Advisory lock tags include the database, so one key
 * serves every database of the cluster.
 */
#define MIGRATE_LOCK_KEY	INT64CONST(0x006d696772617465)

typedef struct MigPg
{
	mig_host	host;			/* handed to the core; host.ctx is this */
	MemoryContext cxt;			/* the core's allocations and this struct */
	MemoryContext scratch;		/* one script or one query; reset after it */
	bool		procedure;		/* CALL migrate_run: commit per migration */
	bool		session_locked; /* the session advisory lock is held */
	int			allocs;			/* allocations so far, for migrate.fail_alloc */
	char	   *history;		/* quoted, schema-qualified history table */
	bool		want_applied_at;	/* history_load formats applied_at
									 * (migrate_status only) */

	/* The script being checked or run, for the error context callback. */
	const mig_script *script;
	const char *text;			/* NUL-terminated, in the server encoding */
	int			text_len;
	bool		converted;		/* text differs from script->sql bytes */
	int			stmt_off;		/* running statement's offset in text, or
								 * -1 while the whole text is being parsed */
} MigPg;

/*
 * Sets up a host for one call.  fn_oid is the calling SQL function (its
 * schema is the extension's); procedure selects procedure mode.  The result
 * lives in its own memory context, under PortalContext in procedure mode (it
 * must survive the commits) and under the current context otherwise.
 */
extern MigPg *mig_pg_begin(Oid fn_oid, bool procedure);

/* Releases the session lock if still held and frees everything of the call.
 * Safe on error paths (call it from PG_FINALLY). */
extern void mig_pg_end(MigPg *mp);

/* Defines the extension's settings (from _PG_init). */
extern void mig_pg_define_settings(void);

/* Raises err as an ERROR with its SQLSTATE, detail, hint and context. */
extern void mig_pg_report(const mig_err *err) pg_attribute_noreturn();

#endif							/* MIGRATE_PG_HOST_H */
