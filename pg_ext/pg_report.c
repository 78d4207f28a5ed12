/*
 * pg_report.c -- the SQL-callable functions that only read: where the
 * folder stands against the history, its problems, what applying it would
 * do and run, and who holds the lock; with the result rows each builds.
 * None takes the migration lock or changes anything.
 *
 *   SELECT * FROM migrate_status('/srv/app/migrations');
 *   SELECT * FROM migrate_validate('/srv/app/migrations');  -- every problem
 *   SELECT * FROM migrate_impact('/srv/app/migrations');    -- locks, rewrites, sizes
 *   SELECT * FROM migrate_plan('/srv/app/migrations');      -- a dry run
 *   SELECT migrate_script('/srv/app/migrations');  -- SQL for psql, off-hours
 *   SELECT * FROM migrate_lock_holder();           -- who holds the lock
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

/*
 * MIG_OK when a result row's version and file (or name) can be returned in
 * the server encoding; else 22P05 in err naming them, for the core to
 * return (a file named with a character the database's encoding lacks).
 */
static int
row_fits(const char *version, const char *file, mig_err *err)
{
	if (mig_pg_name_fits(version, file, err) == MIG_OK)
		return MIG_OK;
	snprintf(err->context, sizeof(err->context), "migration %s (%s)", version, file);
	return MIG_ERROR;
}

int
mig_pg_op_status(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_status(h, call->path, call->status_cb, call->status_arg, err);
}

/*
 * Adds one problem to migrate_validate's result; returns MIG_OK.  A report
 * that never fails: a character the server encoding lacks (a file name
 * with one is itself such a problem, 22P05) shows as \uXXXX.
 */
static int
problem_row(void *arg, const mig_problem *p)
{
	CoreCall   *call = (CoreCall *) arg;
	const char *cols[6] = {p->version, p->file, p->kind, p->severity,
	p->sqlstate, p->message};
	Datum		values[6];
	bool		nulls[6];

	for (int i = 0; i < 6; i++)
	{
		nulls[i] = cols[i] == NULL;
		values[i] = nulls[i] ? (Datum) 0 :
			CStringGetTextDatum(mig_pg_report_text(cols[i]));
	}
	tuplestore_putvalues(call->rsinfo->setResult, call->rsinfo->setDesc,
						 values, nulls);
	return MIG_OK;
}

static int
op_validate(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_validate_with(h, call->path, call->options, problem_row, call, err);
}

/* Adds one statement to migrate_impact's result (pg_impact.c); returns
 * MIG_OK.  Text is shown as a report is: a character the server encoding
 * lacks shows as \uXXXX. */
static int
impact_row(void *arg, mig_impact_row *r)
{
	CoreCall   *call = (CoreCall *) arg;
	Datum		values[13];
	bool		nulls[13];
	const char *texts[] = {r->version, r->file, NULL, r->statement, r->relation,
	mig_lock_name(r->lock)};

	memset(nulls, 0, sizeof(nulls));
	for (int i = 0; i < 6; i++)
	{
		if (i == 2)
			continue;
		nulls[i] = texts[i] == NULL;
		values[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(mig_pg_report_text(texts[i]));
	}
	values[2] = Int32GetDatum(r->line);
	values[6] = BoolGetDatum(r->rewrites != 0);
	values[7] = BoolGetDatum(r->scans != 0);
	values[8] = Int64GetDatum(r->bytes);
	nulls[8] = r->bytes < 0;
	values[9] = Int64GetDatum(r->rows);
	nulls[9] = r->rows < 0;
	nulls[10] = r->blocked_by == NULL;
	values[10] = nulls[10] ? (Datum) 0 : CStringGetTextDatum(mig_pg_report_text(r->blocked_by));
	nulls[11] = r->advice == NULL;
	values[11] = nulls[11] ? (Datum) 0 : CStringGetTextDatum(mig_pg_report_text(r->advice));
	nulls[12] = r->policy == NULL;
	values[12] = nulls[12] ? (Datum) 0 : CStringGetTextDatum(r->policy);
	tuplestore_putvalues(call->rsinfo->setResult, call->rsinfo->setDesc, values, nulls);
	return MIG_OK;
}

static int
op_impact(const mig_host *h, CoreCall *call, mig_err *err)
{
	MigPg	   *mp = (MigPg *) h->ctx;

	/* the impact of either form: statements that only CALL migrate_run
	 * can run (outside a transaction) are analysed too; nothing runs */
	mp->host.exec_outside = mig_pg_exec_outside;
	mp->host.outside_hint = NULL;
	return mig_impact(h, call->path, call->options, impact_row, call, err);
}

/* Adds one pending migration to migrate_plan's result; returns MIG_OK, or
 * MIG_ERROR with call->err filled (22P05). */
static int
pending_row(void *arg, const mig_pending *m)
{
	CoreCall   *call = (CoreCall *) arg;
	Datum		values[9];
	bool		nulls[9];

	if (row_fits(m->version, m->file, &call->err) != MIG_OK)
		return MIG_ERROR;
	memset(nulls, 0, sizeof(nulls));
	values[0] = mig_pg_cstring_datum(m->version);
	values[1] = mig_pg_cstring_datum(m->name);
	values[2] = mig_pg_cstring_datum(m->file);
	values[3] = mig_pg_cstring_datum(m->kind);
	values[4] = mig_pg_text_datum(m->sql, m->len);
	if (m->down_sql != NULL)
		values[5] = mig_pg_text_datum(m->down_sql, m->down_len);
	else
		nulls[5] = true;
	if (m->checksum != NULL)
		values[6] = mig_pg_cstring_datum(m->checksum);
	else
		nulls[6] = true;
	values[7] = BoolGetDatum(m->outside != 0);
	values[8] = Int64GetDatum(m->statements_done);
	tuplestore_putvalues(call->rsinfo->setResult, call->rsinfo->setDesc,
						 values, nulls);
	return MIG_OK;
}

static int
op_plan(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_plan_pending(h, call->path, call->options, pending_row, call,
							err);
}

/* The script, converted to the server encoding in call->result_cxt: the
 * host's memory (and SPI's) is gone once the call returns. */
static int
op_script(const mig_host *h, CoreCall *call, mig_err *err)
{
	char	   *sql = NULL;
	size_t		len = 0;
	int			rc = mig_script_text(h, call->path, call->options, &sql, &len,
									 err);

	if (rc == MIG_OK)
	{
		MemoryContext old = MemoryContextSwitchTo(call->result_cxt);

		call->script = DatumGetTextPP(mig_pg_text_datum(sql, len));
		MemoryContextSwitchTo(old);
	}
	if (sql != NULL)
		h->release(h->ctx, sql);
	return rc;
}

/* Where migrate_status's rows go. */
typedef struct StatusSink
{
	ReturnSetInfo *rsinfo;
	mig_err    *err;			/* the call's, for a row that cannot be
								 * returned */
} StatusSink;

/* Adds one row to migrate_status's result; returns MIG_OK, or MIG_ERROR
 * with sink->err filled (22P05). */
static int
status_row(void *arg, const mig_status_row *row)
{
	StatusSink *sink = (StatusSink *) arg;
	Datum		values[13];
	bool		nulls[13];
	int			natts = sink->rsinfo->setDesc->natts;

	if (row_fits(row->version, row->file ? row->file : row->name,
				 sink->err) != MIG_OK)
		return MIG_ERROR;
	memset(nulls, 0, sizeof(nulls));
	values[0] = mig_pg_cstring_datum(row->version);
	values[1] = mig_pg_cstring_datum(row->name);
	values[2] = mig_pg_cstring_datum(row->state);
	if (row->file != NULL)
		values[3] = mig_pg_cstring_datum(row->file);
	else
		nulls[3] = true;
	if (row->checksum != NULL)
		values[4] = mig_pg_cstring_datum(row->checksum);
	else
		nulls[4] = true;
	if (row->applied_checksum != NULL)
		values[5] = mig_pg_cstring_datum(row->applied_checksum);
	else
		nulls[5] = true;
	if (row->applied_at != NULL)
		values[6] = DirectFunctionCall3(timestamptz_in,
										CStringGetDatum(row->applied_at),
										ObjectIdGetDatum(InvalidOid),
										Int32GetDatum(-1));
	else
		nulls[6] = true;
	if (row->exec_ms >= 0)
		values[7] = Float8GetDatum(row->exec_ms);
	else
		nulls[7] = true;
	if (row->rank > 0)
		values[8] = Int64GetDatum(row->rank);
	else
		nulls[8] = true;
	values[9] = BoolGetDatum(row->has_down != 0);
	/* 0.3: how it rolls back, and how far a script that stopped half way
	 * got (a 0.2 schema declares the first ten columns only) */
	values[10] = CStringGetTextDatum(!row->has_down ? "none" : row->down_noop ? "noop" : "script");
	if (row->statements_done >= 0)
		values[11] = Int64GetDatum(row->statements_done);
	else
		nulls[11] = true;
	if (row->last_error != NULL)
		values[12] = CStringGetTextDatum(mig_pg_report_text(row->last_error));
	else
		nulls[12] = true;
	Assert(natts == 10 || natts == 13);
	(void) natts;
	tuplestore_putvalues(sink->rsinfo->setResult, sink->rsinfo->setDesc,
						 values, nulls);
	return MIG_OK;
}

/*
 * migrate_status(path text) RETURNS TABLE(version text, name text,
 *     state text, file text, checksum text, applied_checksum text,
 *     applied_at timestamptz, execution_ms double precision,
 *     installed_rank bigint, has_down boolean)
 *
 * Lists every migration of the folder and of the history, in version order,
 * without taking the lock or changing anything.
 */
PG_FUNCTION_INFO_V1(migrate_status);
Datum
migrate_status(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, mig_pg_op_status);
	StatusSink *sink = palloc0(sizeof(StatusSink));

	mig_pg_source_arg(fcinfo, call, "migrate_status");
	InitMaterializedSRF(fcinfo, 0);
	sink->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	sink->err = &call->err;
	call->status_cb = status_row;
	call->status_arg = sink;
	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_NONE, false, CurrentMemoryContext);
	mig_pg_run_core(fcinfo, call, false);
	return (Datum) 0;
}

/*
 * migrate_validate(path text) RETURNS TABLE(version text, file text,
 *     problem text, severity text, sqlstate text, message text)
 *
 * Lists every problem of the folder against the history in one call,
 * without the lock and without changing anything.
 */
PG_FUNCTION_INFO_V1(migrate_validate);
Datum
migrate_validate(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, op_validate);

	mig_pg_source_arg(fcinfo, call, "migrate_validate");
	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_VALIDATE, false, CurrentMemoryContext);
	InitMaterializedSRF(fcinfo, 0);
	call->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	mig_pg_run_core(fcinfo, call, false);
	return (Datum) 0;
}

/*
 * migrate_impact(path text [, options text]) RETURNS TABLE(version text,
 *     file text, line int, statement text, relation text, lock_mode text,
 *     rewrites bool, scans bool, relation_bytes bigint,
 *     relation_rows bigint, blocked_by text, advice text, policy text)
 *
 * What every statement of the migrations migrate_apply would apply (with
 * the same options) will do to the database, from the server's own
 * parser and lock rules and the live catalog (pg_impact.c), in the order
 * they would run.  Runs nothing, takes no lock but the catalogs' own,
 * changes nothing.
 */
PG_FUNCTION_INFO_V1(migrate_impact);
Datum
migrate_impact(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, op_impact);

	mig_pg_source_arg(fcinfo, call, "migrate_impact");
	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_APPLY, false, CurrentMemoryContext);
	InitMaterializedSRF(fcinfo, 0);
	call->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	mig_pg_run_core(fcinfo, call, false);
	return (Datum) 0;
}

/*
 * migrate_plan(path text [, options text]) RETURNS TABLE(version text,
 *     name text, file text, kind text, sql text, down_sql text,
 *     checksum text)
 *
 * A dry run of migrate_apply with the same options: the migrations it
 * would apply, in order, with their SQL; fails as it would; runs nothing.
 */
PG_FUNCTION_INFO_V1(migrate_plan);
Datum
migrate_plan(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, op_plan);

	call->fname = "migrate_plan";
	mig_pg_source_arg(fcinfo, call, "migrate_plan");
	mig_pg_tenant_arg(fcinfo, call, 1, MIG_OPTIONS_DRYRUN, false, CurrentMemoryContext);
	InitMaterializedSRF(fcinfo, 0);
	call->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	mig_pg_run_core(fcinfo, call, false);
	return (Datum) 0;
}

/*
 * migrate_script(path text [, options text]) RETURNS text
 *
 * The pending migrations as one SQL script to run off-hours with psql: one
 * transaction under the migration lock, recording the history as
 * migrate_apply would.  Changes nothing itself.
 */
PG_FUNCTION_INFO_V1(migrate_script);
Datum
migrate_script(PG_FUNCTION_ARGS)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, op_script);

	call->fname = "migrate_script";
	mig_pg_source_arg(fcinfo, call, "migrate_script");
	call->options = mig_pg_options_arg(fcinfo, CurrentMemoryContext);
	call->result_cxt = CurrentMemoryContext;
	mig_pg_run_core(fcinfo, call, false);
	PG_RETURN_TEXT_P(call->script);
}

/*
 * migrate_lock_holder() RETURNS TABLE(pid int, usename name,
 *     application_name text, since timestamptz, state text, query text)
 *
 * The session holding the migration lock in this database (none when it is
 * free): since is when its current statement started when it is active,
 * else when its open transaction started, else when its last statement
 * started.  What pg_stat_activity lets the caller see, as it is at the
 * call (not as this transaction first read it).
 */
PG_FUNCTION_INFO_V1(migrate_lock_holder);
Datum
migrate_lock_holder(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	SPITupleTable *tt;
	int			ret;
	Oid			nsp = InvalidOid;

	/* migrate_lock_holder(options): the lock of tenant schema= */
	if (PG_NARGS() > 0 && !PG_ARGISNULL(0))
	{
		MigPg	   *mp = mig_pg_begin(fcinfo->flinfo->fn_oid, false);

		(void) mig_pg_tenant_from_options(mp, mig_pg_utf8(text_to_cstring(PG_GETARG_TEXT_PP(0))),
										  MIG_OPTIONS_NONE, false);
		nsp = mp->tenant_nsp;
		mig_pg_end(mp);
	}
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	/* pg_stat_activity as it is now, not as this transaction first saw it */
	pgstat_clear_backend_activity_snapshot();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute(mig_pg_holder_query_for(nsp), true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_locks: %s", SPI_result_code_string(ret));
	tt = SPI_tuptable;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		values[7];
		bool		nulls[7];

		heap_deform_tuple(tt->vals[i], tt->tupdesc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	return (Datum) 0;
}
