/*
 * pg_parallel.h -- parallel=N of CALL migrate_run_each: tenants migrated by
 * N dynamic background workers at once (pg_parallel.c), and what its
 * workers need of pg_each.c.
 */
#ifndef MIGRATE_PG_PARALLEL_H
#define MIGRATE_PG_PARALLEL_H

/* How one tenant of a fan-out ended. */
typedef enum MigEachStatus
{
	MIG_EACH_PENDING = 0,		/* not handled yet */
	MIG_EACH_APPLIED,
	MIG_EACH_UP_TO_DATE,
	MIG_EACH_FAILED,
	MIG_EACH_SKIPPED_LOCKED,
	MIG_EACH_NOT_REACHED,
	MIG_EACH_SERIAL				/* the leader runs it, serially, after the
								 * workers: no worker took it (none could
								 * start, or they went), or it has a
								 * migration that must run outside a
								 * transaction (0A000 in a worker, whose
								 * transaction rolled back whole) */
} MigEachStatus;

/* The longest error text a worker reports for a tenant, in bytes. */
#define MIG_EACH_ERROR_MAX	2048

typedef struct MigEachOutcome
{
	MigEachStatus status;
	int64		applied;
	char		sqlstate[6];	/* "" when it did not fail */
	char	   *error;			/* palloc'd, NULL when it did not fail */
} MigEachOutcome;

/* One parallel fan-out, as migrate_run_each asks for it. */
typedef struct MigParallelArgs
{
	Oid			fn_oid;			/* migrate_run_each (its schema is the
								 * extension's) */
	const char *fname;			/* its name, for the call log */
	const char *path;			/* the folder on the server, or */
	struct varlena *archive;	/* the folder as an archive (bytea), or */
	struct varlena *json;		/* as a JSON object (jsonb) */
	const char *options;		/* apply's options (UTF-8), or NULL */
	char	  **tenants;		/* schema names, server encoding */
	int			n;
	int			first;			/* the tenants before it are done (the
								 * canary, run by the leader itself) */
	int			workers;		/* parallel=N */
	bool		on_error_continue;
	MigEachOutcome *out;		/* n entries: [first, n) are filled */
} MigParallelArgs;

/*
 * Runs tenants [first, n) of a in up to a->workers background workers (no
 * more than there are tenants), each tenant in a transaction of its own,
 * with a NOTICE per tenant done; fills a->out[first..n).  Fewer workers
 * than asked: a NOTICE, and the run goes on with those; none: every
 * tenant is MIG_EACH_SERIAL.  Returns whether a failure stopped the run
 * (on_error=stop): the tenants no worker took are then
 * MIG_EACH_NOT_REACHED.  A cancel terminates the workers (each tenant's
 * transaction rolls back whole) and is raised.
 */
extern bool mig_pg_parallel_each(MigParallelArgs *a);

/* The progress NOTICE of a tenant done ("tenant %s: ..."), as the serial
 * fan-out words it. */
extern void mig_pg_each_notice(const char *tenant, const MigEachOutcome *o);

/*
 * For the workers (pg_each.c): applies the folder to tenant in the current
 * transaction, as one tenant of migrate_apply_each (function mode, the
 * caller's rights, the tenant's checks and lock), logged as fname; how
 * many in *count, *skipped when if_locked=skip found the lock held.
 * Raises on error.
 */
extern void mig_pg_each_apply_one(Oid fn_oid, const char *fname, const char *path,
								  struct varlena *archive, struct varlena *json,
								  const char *options, const char *tenant,
								  int64 *count, bool *skipped);

/* pg_calls.c: while set (a worker of parallel=N), a failed call's row is
 * kept rather than written by a log worker, and mig_pg_call_log_flush
 * writes it, in a transaction of its own, after the abort. */
extern bool mig_pg_call_log_keep;
extern void mig_pg_call_log_flush(void);

PGDLLEXPORT void migrate_parallel_main(Datum main_arg);

#endif							/* MIGRATE_PG_PARALLEL_H */
