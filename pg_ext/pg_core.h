/*
 * pg_core.h -- one call of the core by an SQL-callable function of migrate
 * (CoreCall), and what the files of those functions share: the runner
 * (migrate.c), the checks and argument readers (pg_args.c), and the
 * operations other files compare or reuse (pg_apply.c, pg_report.c).
 */
#ifndef MIGRATE_PG_CORE_H
#define MIGRATE_PG_CORE_H

#include "fmgr.h"
#include "funcapi.h"
#include "utils/jsonb.h"

#include "pg_host.h"

/*
 * What one call asks of the core: an operation and its arguments.  The
 * core's results land here, in memory of the caller's context (procedure
 * mode: the portal's), so that they survive the call's own context.
 */
typedef struct CoreCall
{
	int			(*op) (const mig_host *h, struct CoreCall *call, mig_err *err);
	const char *path;			/* the folder on the server, or NULL: */
	bytea	   *archive;		/* the folder sent as an archive, */
	Jsonb	   *json;			/* or as a JSON object */
	const char *logged;			/* the call log's source */
	int64		n;				/* migrate_down's argument */
	const char *options;		/* migrate_apply's and migrate_run's options */
	const char *tenant_options; /* the options text given, read for schema=
								 * (pg_tenant.c) before the call: */
	int			tenant_kind;	/* as entry point MIG_OPTIONS_* reads it; */
	bool		tenant_writes;	/* the call writes (CREATE on the schema) */
	const char *tenant_name;	/* a fan-out's tenant, by name (server
								 * encoding), or NULL */
	bool		tenant_read_only;	/* tenant_name: the call only reads */
	bool		each;			/* a tenant of a fan-out (quieter notices) */
	MigPgGuard *guard;			/* migrate_run_each: the guard (pg_host.h),
								 * begun by the caller after its SPI
								 * connection, or NULL */
	bool		batched;		/* migrate_apply_each: see MigPg.batched */
	bool		skipped;		/* out: if_locked=skip found the lock held */
	const char *version;		/* migrate_baseline's argument */
	int64_t		count;			/* applied, adopted or rolled back */
	mig_status_cb status_cb;	/* migrate_status's row sink */
	void	   *status_arg;
	ReturnSetInfo *rsinfo;		/* migrate_validate's and migrate_plan's rows */
	MemoryContext result_cxt;	/* where migrate_script's text goes */
	bool		runs_scripts;	/* apply or roll back: under the rail */
	const char *fname;			/* the function's name, for messages (else
								 * logged_as) */
	const char *logged_as;		/* the function's name when its calls are
								 * logged in migrate_calls (it writes) */
	const mig_record *record;	/* migrate_script_record's row */
	bool		replace;		/* and whether it replaces one */
	text	   *script;			/* migrate_script's result */
	mig_err		err;
} CoreCall;

/* The operations of a CoreCall (one per entry point); these two are
 * shared: mig_pg_run_core_of and the fan-out (pg_each.c) know them. */
extern int	mig_pg_op_apply(const mig_host *h, CoreCall *call, mig_err *err);
extern int	mig_pg_op_status(const mig_host *h, CoreCall *call, mig_err *err);

/* migrate.c: running a call */
extern void mig_pg_run_core_of(Oid fn_oid, CoreCall *call, bool procedure);
extern void mig_pg_run_core(FunctionCallInfo fcinfo, CoreCall *call, bool procedure);
extern CoreCall *mig_pg_new_call(MemoryContext cxt,
						  int (*op) (const mig_host *, CoreCall *, mig_err *));

/* pg_args.c: the session's checks and the arguments */
extern void mig_pg_check_read_privilege(const char *fname);
extern void mig_pg_check_writable(const char *fname);
extern void mig_pg_check_function_mode(const char *fname);
extern void mig_pg_check_procedure_mode(FunctionCallInfo fcinfo, const char *fname,
								 const char *instead);
extern void mig_pg_source_arg(FunctionCallInfo fcinfo, CoreCall *call, const char *fname);
extern CoreCall *mig_pg_folder_call(FunctionCallInfo fcinfo, const char *fname,
							 int (*op) (const mig_host *, CoreCall *, mig_err *));
extern const char *mig_pg_options_arg(FunctionCallInfo fcinfo, MemoryContext cxt);
extern void mig_pg_tenant_arg(FunctionCallInfo fcinfo, CoreCall *call, int idx, int which,
					   bool writes, MemoryContext cxt);
extern char *mig_pg_utf8_arg(text *arg);
extern Datum mig_pg_cstring_datum(const char *s);

#endif							/* MIGRATE_PG_CORE_H */
