/*
 * pg_apply.c -- the SQL-callable functions that run migrations: up, in the
 * caller's transaction or committing after each one, and down.
 *
 *   SELECT migrate_apply('/srv/app/migrations');   -- atomic, in this transaction
 *   CALL migrate_run('/srv/app/migrations');       -- commits after each migration
 *   SELECT migrate_down(1);                        -- roll back, in this transaction
 *   CALL migrate_run_down(1);                      -- commits after each
 *   SELECT migrate_down_to('42');                  -- everything above 42
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/resowner.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "mb/pg_wchar.h"
#include "utils/rel.h"

#include "pg_host.h"
#include "pg_core.h"

int
mig_pg_op_apply(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_apply_with(h, call->path, call->options, &call->count, err);
}

static int
op_down(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_down(h, call->n, &call->count, err);
}

static int
op_down_to(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_down_to(h, call->version, &call->count, err);
}

/*
 * migrate_apply(path text) RETURNS bigint
 * migrate_apply(path text, options text) RETURNS bigint
 *
 * Applies every pending migration of the folder in the caller's transaction
 * and returns how many were applied.
 */
PG_FUNCTION_INFO_V1(migrate_apply);
Datum
migrate_apply(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_folder_call(fcinfo, "migrate_apply", mig_pg_op_apply);

	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_APPLY, true, CurrentMemoryContext);
	call->runs_scripts = true;
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
}

/*
 * migrate_run(path text)  -- a procedure: CALL migrate_run('...')
 *
 * Applies every pending migration of the folder, committing after each one,
 * under a session-level advisory lock released on every exit path.
 */
PG_FUNCTION_INFO_V1(migrate_run);
Datum
migrate_run(PG_FUNCTION_ARGS)
{
	CoreCall   *call;

	mig_pg_check_procedure_mode(fcinfo, "migrate_run", "migrate_apply(...), which applies");

	/* What must survive the commits goes in the portal's context (a
	 * folder sent as data is read into it before the first commit). */
	call = mig_pg_new_call(PortalContext, mig_pg_op_apply);
	mig_pg_source_arg(fcinfo, call, "migrate_run");
	mig_pg_check_writable("migrate_run");
	call->logged_as = "migrate_run";
	if (call->path)
		call->path = MemoryContextStrdup(PortalContext, call->path);
	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_APPLY, true, PortalContext);
	mig_pg_run_core(fcinfo, call, true);
	ereport(NOTICE,
			(errmsg_plural("applied " INT64_FORMAT " migration",
						   "applied " INT64_FORMAT " migrations",
						   (unsigned long) call->count, (int64) call->count)));
	PG_RETURN_VOID();
}

/*
 * migrate_down(n bigint DEFAULT 1) RETURNS bigint
 *
 * Rolls back the last n applied migrations with their stored down scripts,
 * in the caller's transaction, and returns how many were rolled back.
 */
PG_FUNCTION_INFO_V1(migrate_down);
Datum
migrate_down(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, op_down);

	call->logged_as = "migrate_down";
	mig_pg_check_function_mode("migrate_down");
	call->n = PG_GETARG_INT64(0);
	call->runs_scripts = true;
	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_NONE, true, CurrentMemoryContext);
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
}

/*
 * migrate_run_down(n bigint DEFAULT 1)  -- a procedure
 *
 * Rolls back the last n applied migrations, committing after each, under
 * a session lock; a down script recorded to run outside a transaction runs
 * statement by statement (pg_outside.c), resuming after a failure.
 */
PG_FUNCTION_INFO_V1(migrate_run_down);
Datum
migrate_run_down(PG_FUNCTION_ARGS)
{
	CoreCall   *call;

	mig_pg_check_procedure_mode(fcinfo, "migrate_run_down", "migrate_down(n), which rolls back");
	mig_pg_check_writable("migrate_run_down");
	call = mig_pg_new_call(PortalContext, op_down);
	call->logged_as = "migrate_run_down";
	call->n = PG_ARGISNULL(0) ? 1 : PG_GETARG_INT64(0);
	call->runs_scripts = true;
	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_NONE, true, PortalContext);
	mig_pg_run_core(fcinfo, call, true);
	ereport(NOTICE,
			(errmsg_plural("rolled back " INT64_FORMAT " migration",
						   "rolled back " INT64_FORMAT " migrations",
						   (unsigned long) call->count, (int64) call->count)));
	PG_RETURN_VOID();
}

/*
 * migrate_down_to(version text) RETURNS bigint
 *
 * Rolls back every applied migration above version, newest applied first,
 * with the down SQL stored in the history; returns how many.
 */
PG_FUNCTION_INFO_V1(migrate_down_to);
Datum
migrate_down_to(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, op_down_to);

	call->logged_as = "migrate_down_to";
	mig_pg_check_function_mode("migrate_down_to");
	call->version = mig_pg_utf8_arg(PG_GETARG_TEXT_PP(0));
	call->runs_scripts = true;
	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_NONE, true, CurrentMemoryContext);
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
}
