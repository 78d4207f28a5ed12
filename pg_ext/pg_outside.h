/*
 * pg_outside.h -- what the caller of migrations outside a transaction
 * (pg_outside.c) and its background worker (pg_worker.c) share: the DSM
 * segment and the messages of its two queues.
 *
 * The caller sends, through the queue to the worker, a 'B' message when a
 * migration begins (who runs it, the caller's settings and libraries, the
 * progress row's names), then an 'S' message per statement; it detaches
 * when the call ends, and the worker exits.  The worker answers each 'S'
 * with a 'C' message (the statements done) once the statement and its
 * progress committed, through the other queue, which also carries its
 * notices and its error ('N', 'E': the worker's output is redirected there,
 * as a parallel worker's is).
 */
#ifndef MIGRATE_PG_OUTSIDE_H
#define MIGRATE_PG_OUTSIDE_H

#define MIG_WORKER_MAGIC	0x6d696778	/* "migx" */
#define MIG_KEY_FIXED		1
#define MIG_KEY_TO_WORKER	2
#define MIG_KEY_TO_CALLER	3
#define MIG_QUEUE_SIZE		65536
#define MIG_WORKER_TYPE		"migrate worker"

/*
 * The mark a statement that commits by itself leaves in the progress row's
 * last_error while it runs: a real error ("SQLSTATE: message") replaces
 * it, the progress written after the statement clears it.  A call that
 * finds it knows the call before ended while the statement ran.
 */
#define MIG_INTERRUPTED_MARK "interrupted: "

/* migrate_progress, quoted and schema-qualified, with its NUL */
#define MIG_PROGRESS_NAME_MAX (2 * (2 * NAMEDATALEN + 2) + 2)

/* In the DSM segment, for the worker's whole life. */
typedef struct MigWorkerFixed
{
	Oid			database;
	Oid			authenticated_user; /* the worker connects as this role */
	Oid			owner;			/* of the extension's tables */
	bool		v03;			/* migrate_progress has "down" */
	char		progress[MIG_PROGRESS_NAME_MAX];	/* migrate_progress */
	bool		has_tenants;	/* migrate_progress has "tenant" (0.3) */
	char		tenant_lit[2 * NAMEDATALEN + 4];	/* the call's tenant, as
													 * a quoted literal */
	int			crash_at;		/* migrate.crash_at of the caller */
	int			crash_points;	/* crash points of the call passed so far:
								 * the caller's, then the worker's */
} MigWorkerFixed;

/* 'B': a migration begins.  Followed by three NUL-terminated names (the
 * version in the server encoding; the version and the file as notices
 * show them), then the caller's settings (SerializeGUCState) and
 * libraries (SerializeLibraryState), guc_len and lib_len bytes. */
typedef struct MigBeginMsg
{
	Oid			session_user;	/* the caller's session user */
	bool		session_superuser;
	Oid			role;			/* its SET ROLE, or InvalidOid */
	Oid			user;			/* statements run as this user... */
	int			sec_context;	/* ...in this security context, when */
	bool		switch_user;	/* they differ from the session's (the
								 * role that stored a down script) */
	bool		down;			/* a down script */
	bool		resuming;		/* an earlier call ran part of it */
	uint32		names_len;
	uint32		guc_len;
	uint32		lib_len;
} MigBeginMsg;

/* 'S': one statement, its text (NUL-terminated) after it. */
typedef struct MigStmtMsg
{
	int64		prev_offset;	/* the progress before it: resume point */
	int64		prev_done;		/* (bytes of the UTF-8 script), statements */
	char		prev_sum[16];	/* done, checksum of the bytes before */
	int64		next_offset;	/* and after it */
	int64		done;
	char		sum[16];
	int32		line;			/* its line in the file */
	int32		flags;			/* MIG_STMT_* */
	int32		rail_ms;		/* lock_timeout for it, with MIG_STMT_RAIL */
} MigStmtMsg;

#define MIG_STMT_ALONE		0x01	/* cannot run in a transaction block */
#define MIG_STMT_RAIL		0x02	/* runs with lock_timeout = rail_ms */
#define MIG_STMT_MAYBE_DONE 0x04	/* the previous call ended while it ran */

PGDLLEXPORT void migrate_worker_main(Datum main_arg);

/* A worker becomes the caller's session, in a transaction: its libraries
 * (SerializeLibraryState), settings (SerializeGUCState; NULL: as they
 * are), session user and SET ROLE (InvalidOid: none).  pg_worker.c. */
extern void mig_pg_become_caller(const char *lib, const char *guc, Oid session_user,
								 bool session_superuser, Oid role);

#endif							/* MIGRATE_PG_OUTSIDE_H */
