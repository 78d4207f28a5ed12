/*
 * pg_each.c -- the fan-out over tenants (issue 22): one folder applied to,
 * or checked against, many tenant schemas in one call, each tenant as a
 * call with schema= (pg_tenant.c) and a row of its own in the result.
 *
 *   SELECT * FROM migrate_apply_each('/srv/app/migrations', ARRAY['acme', 'initech']);
 *   CALL migrate_run_each('/srv/app/migrations', ARRAY['acme', 'initech'], 'parallel=4');
 *   SELECT * FROM migrate_status_each('/srv/app/migrations', ARRAY['acme', 'initech']);
 *
 * parallel=N hands tenants to background workers (pg_parallel.c), which
 * apply each through mig_pg_each_apply_one.
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
#include "pg_parallel.h"
#include "pg_core.h"

/* ---- the fan-out over tenants (issue 22) ---- */

/* The state of one fan-out: its options and its results so far. */
typedef struct EachState
{
	const char *options;		/* apply's options (the fan-out's taken out) */
	bool		on_error_continue;
	int			canary;
	int			parallel;
	bool		stopped;		/* a failure stopped it: the rest are
								 * not_reached */
	int			n;				/* tenants done so far */
} EachState;

/*
 * Reads the fan-out's options text (UTF-8, NULL: none) into st: apply's
 * options, and on_error=, canary=, parallel= (MIG_OPTIONS_EACH).  Raises
 * 22023 for a bad one, as the entry points do.
 */
static void
each_options(FunctionCallInfo fcinfo, int idx, EachState *st, MemoryContext cxt)
{
	MigPg	   *mp;
	mig_tenant_options t;
	char	   *rest = NULL;
	mig_err		err;
	const char *given = NULL;

	memset(st, 0, sizeof(*st));
	if (PG_NARGS() > idx && !PG_ARGISNULL(idx))
		given = mig_pg_utf8(text_to_cstring(PG_GETARG_TEXT_PP(idx)));
	mp = mig_pg_begin(fcinfo->flinfo->fn_oid, false);
	mig_err_clear(&err);
	if (mig_options_split(&mp->host, given, MIG_OPTIONS_EACH, &t, &rest, &err) != MIG_OK)
	{
		mig_pg_end(mp);
		mig_pg_report(&err);
	}
	st->options = rest ? MemoryContextStrdup(cxt, rest) : NULL;
	if (rest)
		mp->host.release(mp->host.ctx, rest);
	mig_pg_end(mp);
	st->on_error_continue = t.on_error_continue != 0;
	st->canary = t.canary;
	st->parallel = t.parallel;
}

/* The tenants argument: its elements, in order (server encoding); NULL
 * elements and arrays of more than one dimension are refused (22004). */
static char **
tenants_arg(FunctionCallInfo fcinfo, int idx, int *n)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;

	if (PG_ARGISNULL(idx))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenants must not be NULL")));
	arr = PG_GETARG_ARRAYTYPE_P(idx);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("tenants must be a one-dimensional array of schema names")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	out = palloc(sizeof(char *) * (*n + 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("tenant %d of the array is NULL", i + 1),
					 errdetail("Each element names a schema. Nothing was done.")));
		out[i] = TextDatumGetCString(elems[i]);
	}
	return out;
}

/* Adds one result row (tenant, applied, status, sqlstate, error) to the
 * function's tuplestore. */
static void
each_row(ReturnSetInfo *rsinfo, const char *tenant, int64 applied, const char *status,
		 const char *sqlstate, const char *error)
{
	Datum		values[5];
	bool		nulls[5] = {false, false, false, sqlstate == NULL, error == NULL};

	values[0] = CStringGetTextDatum(tenant);
	values[1] = Int32GetDatum((int32) applied);
	values[2] = CStringGetTextDatum(status);
	values[3] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
	values[4] = error ? CStringGetTextDatum(error) : (Datum) 0;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* The text of a caught error for the error column: its message, detail and
 * context (where the file and the line are). */
static char *
each_error_text(ErrorData *e)
{
	return psprintf("%s%s%s%s%s", e->message ? e->message : "",
					e->detail ? "\nDETAIL:  " : "", e->detail ? e->detail : "",
					e->context ? "\nCONTEXT:  " : "", e->context ? e->context : "");
}

/*
 * After tenant number i (0-based) of a fan-out ended with ok: whether the
 * rest are not reached.  canary=N: a failure among the first N stops it,
 * whatever on_error says; after them, on_error=stop (the default) stops at
 * the first failure and on_error=continue goes on.
 */
static bool
each_stops(const EachState *st, int i, bool ok)
{
	if (ok)
		return false;
	if (st->canary > 0 && i < st->canary)
		return true;
	return !st->on_error_continue;
}

/* A batch of migrate_apply_each grows to this many tenants, or to an
 * eighth of those done so far when that is more. */
#define EACH_BATCH_MIN	64

/*
 * Tenants first..end-1 of migrate_apply_each in one subtransaction, each
 * with no subtransaction of its own (MigPg.batched).  Returns end when
 * every one went through, and adds their rows and notices; else rolls them
 * all back (nothing of them is kept, nothing logged) and returns the index
 * of the tenant that failed: the fan-out then runs that one alone, in a
 * subtransaction of its own as always, and those before it again.  A
 * cancel or a shutdown ends the fan-out.
 *
 * Why: the end of a subtransaction makes a pass over every lock, relation
 * and pending delete of the whole transaction (LockReassignCurrentOwner,
 * AtEOSubXact_RelationCache, AtSubCommit_smgr), so one subtransaction per
 * tenant made a fan-out quadratic: 1,000 tenants of 20 tables spent more
 * time ending subtransactions than running migrations.
 */
static int
each_batch(FunctionCallInfo fcinfo, const CoreCall *proto, const EachState *st,
		   char **tenants, int first, int end)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	CoreCall  **calls = palloc0(sizeof(CoreCall *) * (end - first));
	volatile int at = first;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		for (; at < end; at++)
		{
			CoreCall   *call = mig_pg_new_call(cxt, mig_pg_op_apply);

			CHECK_FOR_INTERRUPTS();
			call->path = proto->path;
			call->archive = proto->archive;
			call->json = proto->json;
			call->logged_as = "migrate_apply_each";
			call->options = st->options;
			call->runs_scripts = true;
			call->tenant_name = tenants[at];
			call->each = true;
			call->batched = true;
			calls[at - first] = call;
			mig_pg_run_core(fcinfo, call, false);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	if (edata != NULL)
	{
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		FreeErrorData(edata);
		return at;
	}
	for (int i = first; i < end; i++)
	{
		CoreCall   *call = calls[i - first];

		if (call->skipped)
		{
			ereport(NOTICE, (errmsg("tenant %s: skipped, its migration lock is held", tenants[i])));
			each_row(rsinfo, tenants[i], 0, "skipped_locked", NULL, NULL);
		}
		else
		{
			if (call->count > 0)
				ereport(NOTICE,
						(errmsg("tenant %s: applied " INT64_FORMAT " migration%s", tenants[i],
								(int64) call->count, call->count == 1 ? "" : "s")));
			else
				ereport(NOTICE, (errmsg("tenant %s: up to date", tenants[i])));
			each_row(rsinfo, tenants[i], call->count,
					 call->count > 0 ? "applied" : "up_to_date", NULL, NULL);
		}
	}
	return end;
}

/*
 * How one tenant of a fan-out ended: status is "applied", "up_to_date",
 * "failed", "skipped_locked" or "not_reached"; sqlstate, error (message,
 * detail and context: the file and line) and message (the error's message
 * alone, for the notice) only when it failed.
 */
typedef struct EachResult
{
	const char *tenant;			/* server encoding */
	int64		applied;
	const char *status;
	char	   *sqlstate;
	char	   *error;
	char	   *message;
} EachResult;

/* The NOTICE saying how tenant r went (not for not_reached). */
static void
each_notice(const EachResult *r)
{
	if (strcmp(r->status, "failed") == 0)
		ereport(NOTICE, (errmsg("tenant %s: failed: %s", r->tenant, r->message)));
	else if (strcmp(r->status, "skipped_locked") == 0)
		ereport(NOTICE, (errmsg("tenant %s: skipped, its migration lock is held", r->tenant)));
	else if (r->applied > 0)
		ereport(NOTICE,
				(errmsg("tenant %s: applied " INT64_FORMAT " migration%s", r->tenant,
						r->applied, r->applied == 1 ? "" : "s")));
	else
		ereport(NOTICE, (errmsg("tenant %s: up to date", r->tenant)));
}

/*
 * migrate_apply_each(source, tenants text[], options text DEFAULT NULL)
 *     RETURNS SETOF migrate_each_result
 *
 * Applies the folder to each tenant schema in turn, in the caller's
 * transaction, each tenant in a subtransaction of its own: a failed tenant
 * is rolled back alone and has a row with its SQLSTATE and error (file
 * and line in the context); with on_error=stop (the default) the tenants
 * after it are not_reached; canary=N stops after a failure among the first
 * N whatever on_error says.  Each tenant is an apply with schema=: its own
 * history and lock, its rights checked, its migrations run as the caller.
 */
PG_FUNCTION_INFO_V1(migrate_apply_each);
Datum
migrate_apply_each(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	EachState	st;
	char	  **tenants;
	int			n;
	CoreCall	proto;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile int batch = 4;	/* tenants in the next batch */
	volatile int alone = -1;	/* the tenant that failed in a batch */

	memset(&proto, 0, sizeof(proto));
	mig_pg_source_arg(fcinfo, &proto, "migrate_apply_each");
	mig_pg_check_function_mode("migrate_apply_each");
	tenants = tenants_arg(fcinfo, 1, &n);
	each_options(fcinfo, 2, &st, cxt);
	if (st.parallel > 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migrate_apply_each cannot run tenants in parallel"),
				 errdetail("It applies in the caller's transaction, which one session runs."),
				 errhint("CALL migrate_run_each(..., 'parallel=%d'), which commits tenant by tenant.",
						 st.parallel)));
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	for (int i = 0; i < n; i++)
	{
		CoreCall   *call;
		ErrorData  *volatile edata = NULL;

		if (st.stopped)
		{
			each_row(rsinfo, tenants[i], 0, "not_reached", NULL, NULL);
			continue;
		}
		/* the tenants from here in one batch, up to the one that failed in
		 * the last batch, which runs alone (each_batch) */
		if (i != alone)
		{
			int			end = Min(n, i + batch);
			int			upto;

			if (alone > i)
				end = Min(end, alone);
			if (end - i > 1)
			{
				upto = each_batch(fcinfo, &proto, &st, tenants, i, end);
				if (upto == end)
				{
					i = end - 1;
					batch = Min(batch * 2, Max(EACH_BATCH_MIN, end / 8));
					continue;
				}
				alone = upto;
				batch = Max(batch / 2, 2);
				if (upto > i)
				{
					i--;		/* those before it, as a batch again */
					continue;
				}
			}
		}
		CHECK_FOR_INTERRUPTS();
		call = mig_pg_new_call(cxt, mig_pg_op_apply);
		call->path = proto.path;
		call->archive = proto.archive;
		call->json = proto.json;
		call->logged_as = "migrate_apply_each";
		call->options = st.options;
		call->runs_scripts = true;
		call->tenant_name = tenants[i];
		call->each = true;
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			mig_pg_run_core(fcinfo, call, false);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_END_TRY();
		/* a cancel or a shutdown ends the fan-out, not only the tenant */
		if (edata != NULL && (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
							  edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN))
			ReThrowError(edata);
		if (edata != NULL)
		{
			EachResult	r = {tenants[i], 0, "failed", NULL, NULL, edata->message};

			each_notice(&r);
			each_row(rsinfo, tenants[i], 0, "failed", unpack_sql_state(edata->sqlerrcode),
					 each_error_text(edata));
			st.stopped = each_stops(&st, i, false);
			FreeErrorData(edata);
		}
		else
		{
			EachResult	r = {tenants[i], call->count,
				call->skipped ? "skipped_locked" : call->count > 0 ? "applied" : "up_to_date"};

			each_notice(&r);
			each_row(rsinfo, tenants[i], r.applied, r.status, NULL, NULL);
		}
	}
	return (Datum) 0;
}

/*
 * Runs tenant as CALL migrate_run(source, 'schema=<tenant>, <options>')
 * would -- its lock (session level), a commit after each migration, its
 * migrations outside a transaction through the background worker, its
 * call log row -- and fills *res, in memory of cxt.  proto holds the
 * source (path, archive or JSON), in memory that outlives the commits.
 *
 * Must run in a non-atomic CALL, outside any subtransaction and inside no
 * SPI connection but the procedure's own.  The tenant runs on an SPI
 * connection of its own, non-atomic, under a guard (MigPgGuard): an error
 * rolls back what the tenant did since its last commit, mig_pg_run_core releases
 * its lock, ends its worker and logs its call, and it is caught here as
 * res's "failed", leaving the transaction clean for the next tenant.  A
 * cancel (57014) or a shutdown is raised again: it ends the fan-out.
 */
static void
run_each_tenant(FunctionCallInfo fcinfo, const CoreCall *proto, const char *options,
				const char *tenant, MemoryContext cxt, EachResult *res)
{
	MigPgGuard	guard;
	CoreCall   *call;
	ErrorData  *volatile edata = NULL;
	MemoryContext tcxt = AllocSetContextCreate(cxt, "migrate_run_each tenant",
											   ALLOCSET_DEFAULT_SIZES);

	memset(res, 0, sizeof(*res));
	res->tenant = tenant;
	memset(&guard, 0, sizeof(guard));
	guard.cxt = tcxt;
	MemoryContextSwitchTo(tcxt);
	call = mig_pg_new_call(tcxt, mig_pg_op_apply);
	call->path = proto->path;
	call->archive = proto->archive;
	call->json = proto->json;
	call->logged_as = "migrate_run_each";
	call->options = options;
	call->runs_scripts = true;
	call->tenant_name = tenant;
	call->each = true;
	call->guard = &guard;
	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect_ext failed");
	PG_TRY();
	{
		mig_pg_guard_begin(&guard);
		mig_pg_run_core(fcinfo, call, true);
		mig_pg_guard_end(&guard, true);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(tcxt);
		edata = CopyErrorData();
		FlushErrorState();
		mig_pg_guard_end(&guard, false);
		/* the guard is rolled back (by mig_pg_run_core or just now); an error
		 * raised outside it (a commit that failed, the call log's writing
		 * interrupted) may have left the transaction itself in need of an
		 * abort: the next tenant starts in a new one either way */
		SPI_rollback();
		MemoryContextSwitchTo(tcxt);
	}
	PG_END_TRY();
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	MemoryContextSwitchTo(cxt);
	if (edata != NULL && (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
						  edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN))
		ReThrowError(edata);
	res->applied = call->count;
	if (edata != NULL)
	{
		res->status = "failed";
		res->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
		res->error = each_error_text(edata);
		res->message = pstrdup(edata->message ? edata->message : "");
	}
	else
	{
		res->status = call->skipped ? "skipped_locked" :
			call->count > 0 ? "applied" : "up_to_date";
	}
	MemoryContextDelete(tcxt);
}

/* The results of a fan-out as a jsonb array of objects {tenant, applied,
 * status, sqlstate, error}, in the order of the tenants. */
static Datum
each_results_jsonb(const EachResult *res, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < n; i++)
	{
		appendStringInfoString(&buf, i ? ", {\"tenant\": " : "{\"tenant\": ");
		escape_json(&buf, res[i].tenant);
		appendStringInfo(&buf, ", \"applied\": " INT64_FORMAT ", \"status\": ", res[i].applied);
		escape_json(&buf, res[i].status);
		appendStringInfoString(&buf, ", \"sqlstate\": ");
		if (res[i].sqlstate)
			escape_json(&buf, res[i].sqlstate);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfoString(&buf, ", \"error\": ");
		if (res[i].error)
			escape_json(&buf, res[i].error);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * parallel=N of migrate_run_each: tenants [first, n) migrated by N
 * background workers (pg_parallel.c), each tenant in a transaction of its
 * own, as the caller; their results into res, in the current context (a
 * NOTICE for each was given as it came).  The tenants the workers leave
 * to this backend (none could start, or a migration must run outside a
 * transaction) keep a NULL status: the caller runs them serially.
 * Returns whether a failure stopped the fan-out (on_error=stop).
 */
static bool
run_each_parallel(FunctionCallInfo fcinfo, const CoreCall *proto, const EachState *st,
				  char **tenants, int n, int first, EachResult *res)
{
	MigParallelArgs a;
	bool		stopped;

	memset(&a, 0, sizeof(a));
	a.fn_oid = fcinfo->flinfo->fn_oid;
	a.fname = "migrate_run_each";
	a.path = proto->path;
	a.archive = (struct varlena *) proto->archive;
	a.json = (struct varlena *) proto->json;
	a.options = st->options;
	a.tenants = tenants;
	a.n = n;
	a.first = first;
	a.workers = st->parallel;
	a.on_error_continue = st->on_error_continue;
	a.out = palloc0(sizeof(MigEachOutcome) * n);
	stopped = mig_pg_parallel_each(&a);
	for (int i = first; i < n; i++)
	{
		MigEachOutcome *o = &a.out[i];

		res[i].tenant = tenants[i];
		res[i].applied = o->applied;
		switch (o->status)
		{
			case MIG_EACH_APPLIED:
				res[i].status = "applied";
				break;
			case MIG_EACH_UP_TO_DATE:
				res[i].status = "up_to_date";
				break;
			case MIG_EACH_SKIPPED_LOCKED:
				res[i].status = "skipped_locked";
				break;
			case MIG_EACH_NOT_REACHED:
				res[i].status = "not_reached";
				break;
			case MIG_EACH_FAILED:
				res[i].status = "failed";
				res[i].sqlstate = pstrdup(o->sqlstate);
				res[i].error = o->error;
				break;
			default:
				res[i].status = NULL;	/* this backend runs it */
				break;
		}
	}
	pfree(a.out);
	return stopped;
}

/*
 * migrate_run_each(source, tenants text[], options text DEFAULT NULL,
 *                  INOUT results jsonb DEFAULT NULL)  -- a procedure
 *
 * CALL migrate_run(source, 'schema=<tenant>, <options>') for each tenant
 * in turn (run_each_tenant): each commits after each migration, may run
 * migrations outside a transaction, and has its lock, history and call log
 * row.  A tenant's failure is caught (rolled back to its last commit);
 * on_error=stop (the default) makes the rest not_reached, canary=N stops
 * after a failure among the first N whatever on_error says.  parallel=N
 * (N > 1): after the canary, the tenants go to N background workers, each
 * tenant in a transaction of its own (run_each_parallel).  A procedure
 * returns no set: the rows come back as the output parameter results, a
 * jsonb array of {tenant, applied, status, sqlstate, error} (CALL in psql
 * shows it; jsonb_to_recordset makes rows of it), and in migrate_calls.
 */
PG_FUNCTION_INFO_V1(migrate_run_each);
Datum
migrate_run_each(PG_FUNCTION_ARGS)
{
	MemoryContext entry = CurrentMemoryContext;
	MemoryContext cxt;
	CoreCall	proto;
	EachState	st;
	char	  **tenants;
	int			n;
	EachResult *res;
	TupleDesc	tupdesc;
	Datum		values[1];
	bool		nulls[1] = {false};
	int			first;

	mig_pg_check_procedure_mode(fcinfo, "migrate_run_each", "migrate_apply_each(...), which applies");
	if (IsSubTransaction())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("migrate_run_each cannot run inside a subtransaction"),
				 errdetail("migrate_run_each commits after each migration, which is not possible in a block with an EXCEPTION clause."),
				 errhint("CALL migrate_run_each(...) outside such a block.")));

	/* what must survive the commits: the portal's */
	cxt = AllocSetContextCreate(PortalContext, "migrate_run_each", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);
	memset(&proto, 0, sizeof(proto));
	mig_pg_source_arg(fcinfo, &proto, "migrate_run_each");
	mig_pg_check_writable("migrate_run_each");
	if (proto.archive)
		proto.archive = (bytea *) pg_detoast_datum_copy((struct varlena *) proto.archive);
	if (proto.json)
		proto.json = (Jsonb *) pg_detoast_datum_copy((struct varlena *) proto.json);
	tenants = tenants_arg(fcinfo, 1, &n);
	each_options(fcinfo, 2, &st, cxt);
	/* parallel=N: the canary first, here, then the workers (from first) */
	first = st.parallel > 1 ? Min(st.canary, n) : n;

	res = palloc0(sizeof(EachResult) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		if (i == first && !st.stopped)
			st.stopped = run_each_parallel(fcinfo, &proto, &st, tenants, n, first, res);
		if (res[i].status != NULL)
			continue;			/* a worker's */
		if (st.stopped)
		{
			res[i].tenant = tenants[i];
			res[i].status = "not_reached";
			continue;
		}
		CHECK_FOR_INTERRUPTS();
		run_each_tenant(fcinfo, &proto, st.options, tenants[i], cxt, &res[i]);
		each_notice(&res[i]);
		if (strcmp(res[i].status, "failed") == 0)
			st.stopped = each_stops(&st, i, false);
	}

	/* the output parameter, in the caller's memory */
	MemoryContextSwitchTo(entry);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "migrate_run_each declared without its output parameter");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = each_results_jsonb(res, n);
	MemoryContextDelete(cxt);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* One tenant of a parallel=N worker (pg_parallel.h): an apply with the
 * tenant, in function mode, in the worker's transaction. */
void
mig_pg_each_apply_one(Oid fn_oid, const char *fname, const char *path,
					  struct varlena *archive, struct varlena *json,
					  const char *options, const char *tenant,
					  int64 *count, bool *skipped)
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, mig_pg_op_apply);

	/* the same checks as the leader's, as the same user */
	if (path != NULL)
		mig_pg_check_read_privilege(fname);
	mig_pg_check_function_mode(fname);
	call->path = path;
	call->archive = (bytea *) archive;
	call->json = (Jsonb *) json;
	call->logged_as = fname;
	call->options = options;
	call->runs_scripts = true;
	call->tenant_name = tenant;
	call->each = true;
	mig_pg_run_core_of(fn_oid, call, false);
	*count = call->count;
	*skipped = call->skipped;
}

/* One tenant's summary for migrate_status_each, from its status rows. */
typedef struct TenantSummary
{
	int			applied;		/* applied (or reformatted) */
	int			pending;		/* pending, outdated repeatables */
	char	   *newest;			/* highest applied version, or NULL */
	bool		partial;		/* a migration stopped half way */
	bool		changed;		/* apply would refuse: changed, missing,
								 * out of order */
} TenantSummary;

/* Counts one status row into the summary. */
static int
summary_row(void *arg, const mig_status_row *row)
{
	TenantSummary *ts = (TenantSummary *) arg;
	const char *s = row->state;

	if (strcmp(s, "applied") == 0 || strcmp(s, "reformatted") == 0)
	{
		ts->applied++;
		ts->newest = pstrdup(row->version);	/* rows come in version order */
	}
	else if (strcmp(s, "pending") == 0 || strcmp(s, "outdated") == 0)
		ts->pending++;
	else if (strncmp(s, "partial", 7) == 0)
	{
		ts->partial = true;
		ts->pending++;
	}
	else
		ts->changed = true;
	return MIG_OK;
}

/*
 * migrate_status_each(source, tenants text[], options text DEFAULT NULL)
 *     RETURNS TABLE(tenant text, applied int, pending int, newest text,
 *                   state text, message text)
 *
 * Where each tenant schema stands against the folder, one row each, as
 * migrate_status with schema= sees it: without taking any lock, changing
 * nothing.  state: up_to_date, pending, partial (a migration stopped half
 * way outside a transaction), changed (apply would refuse: an applied file
 * changed or is missing, or a pending one is older than the newest
 * applied), error (the tenant cannot be read: message says why).
 */
PG_FUNCTION_INFO_V1(migrate_status_each);
Datum
migrate_status_each(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	char	  **tenants;
	int			n;
	CoreCall	proto;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	memset(&proto, 0, sizeof(proto));
	mig_pg_source_arg(fcinfo, &proto, "migrate_status_each");
	tenants = tenants_arg(fcinfo, 1, &n);
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2) && VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(2)) > 0)
	{
		/* no option yet: refuse any, as the entry points do */
		EachState	st;

		each_options(fcinfo, 2, &st, cxt);
		if (st.options != NULL && st.options[0] != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migrate_status_each takes no option \"%s\"", st.options)));
	}
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	for (int i = 0; i < n; i++)
	{
		CoreCall   *call = mig_pg_new_call(cxt, mig_pg_op_status);
		TenantSummary *ts = palloc0(sizeof(TenantSummary));
		ErrorData  *volatile edata = NULL;
		Datum		values[6];
		bool		nulls[6] = {0};
		const char *state;

		CHECK_FOR_INTERRUPTS();
		call->path = proto.path;
		call->archive = proto.archive;
		call->json = proto.json;
		call->status_cb = summary_row;
		call->status_arg = ts;
		call->tenant_name = tenants[i];
		call->tenant_read_only = true;
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			mig_pg_run_core(fcinfo, call, false);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_END_TRY();
		if (edata != NULL && (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
							  edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN))
			ReThrowError(edata);
		state = edata ? "error" : ts->partial ? "partial" : ts->changed ? "changed" :
			ts->pending > 0 ? "pending" : "up_to_date";
		values[0] = CStringGetTextDatum(tenants[i]);
		values[1] = Int32GetDatum(ts->applied);
		values[2] = Int32GetDatum(ts->pending);
		if (ts->newest && !edata)
			values[3] = mig_pg_cstring_datum(ts->newest);
		else
			nulls[3] = true;
		values[4] = CStringGetTextDatum(state);
		if (edata)
			values[5] = CStringGetTextDatum(psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode),
													 each_error_text(edata)));
		else
			nulls[5] = true;
		if (edata)
		{
			values[1] = Int32GetDatum(0);
			values[2] = Int32GetDatum(0);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
