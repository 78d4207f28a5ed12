/*
 * pg_record.c -- the SQL-callable functions that write the history without
 * running a migration: taking over another tool's history, a baseline, a
 * migration that ran elsewhere, edited files accepted, and the rows a
 * script of migrate_script records.
 *
 *   SELECT migrate_adopt('/srv/app/migrations');   -- take over from Flyway, goose...
 *   SELECT migrate_baseline('/srv/app/migrations', '42');  -- already at 42
 *   SELECT migrate_record('/srv/app/migrations', '5');  -- ran elsewhere
 *   SELECT migrate_repair('/srv/app/migrations');  -- accept edited files
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

static int
op_adopt(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_adopt_with(h, call->path, call->options, &call->count, err);
}

static int
op_baseline(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_baseline(h, call->path, call->version, &call->count, err);
}

static int
op_record(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_record_applied(h, call->path, call->version, &call->count, err);
}

static int
op_repair(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_repair_with(h, call->path, call->options, &call->count, err);
}

/*
 * migrate_adopt(path text) RETURNS bigint
 *
 * Takes over another tool's history (Flyway, golang-migrate, morph, dbmate,
 * goose, sqlx, diesel) for the folder's matching files, in the caller's
 * transaction, running nothing; returns how many migrations were recorded.
 */
PG_FUNCTION_INFO_V1(migrate_adopt);
Datum
migrate_adopt(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_folder_call(fcinfo, "migrate_adopt", op_adopt);

	call->options = mig_pg_options_arg(fcinfo, CurrentMemoryContext);
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
}

/*
 * migrate_baseline(path text, version text) RETURNS bigint
 *
 * Marks a database that already has the schema of the folder's migrations
 * up to version: records them as applied, in the caller's transaction,
 * running nothing; returns how many were recorded.
 */
PG_FUNCTION_INFO_V1(migrate_baseline);
Datum
migrate_baseline(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_folder_call(fcinfo, "migrate_baseline", op_baseline);

	call->version = mig_pg_utf8_arg(PG_GETARG_TEXT_PP(1));
	mig_pg_tenant_arg(fcinfo, call, 2, MIG_OPTIONS_NONE, true, CurrentMemoryContext);
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
}

/*
 * migrate_record(path text, version text) RETURNS bigint
 *
 * Records the folder's next pending migration, which ran elsewhere (a
 * goose Go migration run by the application), as applied without running
 * it, in the caller's transaction, with an audit row in migrate_repairs;
 * returns 1.
 */
PG_FUNCTION_INFO_V1(migrate_record);
Datum
migrate_record(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_folder_call(fcinfo, "migrate_record", op_record);

	call->version = text_to_cstring(PG_GETARG_TEXT_PP(1));
	mig_pg_tenant_arg(fcinfo, call, 2, MIG_OPTIONS_NONE, true, CurrentMemoryContext);
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
}

/*
 * migrate_repair(path text) RETURNS bigint
 *
 * Brings the history of applied migrations whose files were edited in line
 * with the files, in the caller's transaction, with an audit row each in
 * migrate_repairs; runs no migration; returns how many were repaired.
 */
PG_FUNCTION_INFO_V1(migrate_repair);
Datum
migrate_repair(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_folder_call(fcinfo, "migrate_repair", op_repair);

	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_REPAIR, true, CurrentMemoryContext);
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
}

/* Argument n as a C string in UTF-8, or NULL; *len its length. */
static const char *
utf8_arg_n(FunctionCallInfo fcinfo, int n, size_t *len)
{
	char	   *s;

	if (PG_ARGISNULL(n))
		return NULL;
	s = mig_pg_utf8_arg(PG_GETARG_TEXT_PP(n));
	if (len)
		*len = strlen(s);
	return s;
}

static int
op_script_record(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_pg_script_record((MigPg *) h->ctx, call->record, call->replace, err);
}

/*
 * migrate_script_record(version, name, up_file, down_file, checksum,
 *     checksum_norm, up_sql, down_sql, down_mode, down_line, replace)
 *     RETURNS void
 *
 * What a script written by migrate_script calls to record a migration as
 * applied, in its own transaction, which must already hold the migration
 * lock: the history is written as its owner, the calling role recorded as
 * the one whose rights the down script runs with.
 */
PG_FUNCTION_INFO_V1(migrate_script_record);
Datum
migrate_script_record(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, op_script_record);
	mig_record *rec = palloc0(sizeof(mig_record));
	const char *mode;

	mig_pg_check_function_mode("migrate_script_record");
	for (int i = 0; i < 7; i++)
		if (i != 3 && i != 5 && PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of migrate_script_record must not be NULL", i + 1)));
	if (!DatumGetBool(DirectFunctionCall1(pg_try_advisory_xact_lock_int8,
										  Int64GetDatum(MIGRATE_LOCK_KEY))))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("migrate_script_record needs the migration lock"),
				 errdetail("Another session holds it."),
				 errhint("Run the whole script written by migrate_script: it takes the lock first.")));
	rec->version = utf8_arg_n(fcinfo, 0, NULL);
	rec->name = utf8_arg_n(fcinfo, 1, NULL);
	rec->up_file = utf8_arg_n(fcinfo, 2, NULL);
	rec->down_file = utf8_arg_n(fcinfo, 3, NULL);
	rec->checksum = utf8_arg_n(fcinfo, 4, NULL);
	rec->checksum_norm = utf8_arg_n(fcinfo, 5, NULL);
	rec->up_sql = utf8_arg_n(fcinfo, 6, &rec->up_len);
	rec->down_sql = utf8_arg_n(fcinfo, 7, &rec->down_len);
	mode = utf8_arg_n(fcinfo, 8, NULL);
	rec->down_outside = mode && strcmp(mode, "outside") == 0;
	rec->down_noop = mode && strcmp(mode, "noop") == 0;
	rec->down_line = PG_ARGISNULL(9) ? 0 : PG_GETARG_INT32(9);
	call->record = rec;
	call->replace = !PG_ARGISNULL(10) && PG_GETARG_BOOL(10);
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_VOID();
}
