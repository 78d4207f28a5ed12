/*
 * migrate.c -- SQL-callable functions of the PostgreSQL extension "migrate":
 * the module and the running of a call of the core.
 *
 *   CREATE EXTENSION migrate;
 *   SELECT migrate_apply('/srv/app/migrations');   -- atomic, in this transaction
 *   CALL migrate_run('/srv/app/migrations');       -- commits after each migration
 *   SELECT * FROM migrate_status('/srv/app/migrations');
 *   SELECT migrate_down(1);
 *   SELECT * FROM migrate_history;
 *   SELECT migrate_adopt('/srv/app/migrations');   -- take over from Flyway, goose...
 *   SELECT migrate_baseline('/srv/app/migrations', '42');  -- already at 42
 *   SELECT * FROM migrate_validate('/srv/app/migrations');  -- every problem
 *   SELECT migrate_repair('/srv/app/migrations');  -- accept edited files
 *   SELECT migrate_record('/srv/app/migrations', '5');  -- ran elsewhere
 *   SELECT * FROM migrate_plan('/srv/app/migrations');      -- a dry run
 *   SELECT migrate_script('/srv/app/migrations');  -- SQL for psql, off-hours
 *   SELECT * FROM migrate_lock_holder();           -- who holds the lock
 *   SELECT * FROM migrate_impact('/srv/app/migrations');    -- locks, rewrites, sizes
 *
 *   SELECT migrate_apply(decode(:'archive', 'base64'));   -- the folder as
 *   SELECT migrate_apply('{"1_a.up.sql": "..."}'::jsonb);  -- data: a tar,
 *                       -- tar.gz or zip as bytea, or a JSON object; every
 *                       -- function above that takes a path takes them
 *
 * Each function checks what it needs of the session (privileges, a writable
 * transaction, READ COMMITTED, a non-atomic CALL) before anything runs, sets
 * up a host (pg_host.c) and hands over to the engine-agnostic core in
 * ../common.  The core's errors come back as a mig_err and are raised here
 * with their SQLSTATE; errors of the migrations themselves propagate as
 * raised by the server, with the migration's file and line as context.
 *
 * This file holds the module's magic, _PG_init, the running of one call
 * of the core (mig_pg_run_core: the host, SPI, the folder sent as data, the call
 * log, the error paths) and the triggers on the extension's tables.  The
 * functions themselves are in
 *
 *   pg_args.c    the session's checks and the reading of the arguments;
 *   pg_apply.c   migrate_apply, migrate_run, migrate_down, migrate_run_down,
 *                migrate_down_to;
 *   pg_record.c  migrate_adopt, migrate_baseline, migrate_record,
 *                migrate_repair, migrate_script_record;
 *   pg_report.c  migrate_status, migrate_validate, migrate_impact,
 *                migrate_plan, migrate_script, migrate_lock_holder;
 *   pg_each.c    the fan-out over tenants: migrate_apply_each,
 *                migrate_run_each, migrate_status_each.
 *
 * What they share (CoreCall) is declared in pg_core.h.
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

PG_MODULE_MAGIC;

void		_PG_init(void);

/* migrate.max_archive_size (superuser): what the files of an archive or
 * JSON object may hold together, in kB, checked while it is decompressed
 * (a compression bomb stops there). */
static int	max_archive_kb = (int) (MIG_DEFAULT_MAX_ARCHIVE / 1024);

void
_PG_init(void)
{
	/* before mig_pg_define_settings reserves the prefix */
	DefineCustomIntVariable("migrate.max_archive_size",
							"Largest total of the files of a migration folder sent as an archive or JSON object, uncompressed.",
							NULL, &max_archive_kb, (int) (MIG_DEFAULT_MAX_ARCHIVE / 1024),
							1, INT_MAX, PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);
	mig_pg_define_settings();
}

/* A JSON value of the folder that is not a file's text. */
static int
json_not_text(const char *key, const JsonbValue *v, mig_err *err)
{
	const char *what = v->type == jbvBinary ?
		(JsonContainerIsObject(v->val.binary.data) ? "an object" : "an array") :
		v->type == jbvNumeric ? "a number" : v->type == jbvBool ? "a boolean" : "null";

	mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "the JSON value of \"%s\" is not a string", key);
	mig_err_detail(err, "It is %s; each value must be the text of the file its name names.", what);
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
		mig_err_hint(err, "Name a file in a subfolder by its path, as {\"postgres/1_a.up.sql\": \"...\"}, rather than with a nested object.");
	return MIG_ERROR;
}

/*
 * Reads JSON object jb -- file names and texts, in the server encoding --
 * into a source of mp's host (its memory: the call's context).  jsonb
 * keeps the last of two equal keys, so a duplicate name cannot be seen
 * here.
 */
static int
json_source(MigPg *mp, Jsonb *jb, mig_source **out, mig_err *err)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	mig_source *s;
	char	   *key = NULL;
	int			rc;

	*out = NULL;
	if (JB_ROOT_IS_SCALAR(jb) || !JB_ROOT_IS_OBJECT(jb))
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "the migration folder given as JSON is not an object");
		mig_err_hint(err, "Give an object of file names and texts, as '{\"1_a.up.sql\": \"CREATE TABLE a (x int);\"}'::jsonb.");
		return MIG_ERROR;
	}
	if ((rc = mig_source_new(&mp->host, "JSON object", &s, err)) != MIG_OK)
		return rc;
	it = JsonbIteratorInit(&jb->root);
	while (rc == MIG_OK && (r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (r == WJB_KEY)
		{
			old = MemoryContextSwitchTo(mp->scratch);
			key = mig_pg_utf8(pnstrdup(v.val.string.val, v.val.string.len));
			MemoryContextSwitchTo(old);
		}
		else if (r == WJB_VALUE && v.type != jbvString)
			rc = json_not_text(key, &v, err);
		else if (r == WJB_VALUE)
		{
			char	   *text;

			old = MemoryContextSwitchTo(mp->scratch);
			text = mig_pg_utf8(pnstrdup(v.val.string.val, v.val.string.len));
			MemoryContextSwitchTo(old);
			rc = mig_source_add(s, key, strlen(key), text, strlen(text), err);
			MemoryContextReset(mp->scratch);
		}
	}
	if (rc == MIG_OK)
		rc = mig_source_seal(s, err);
	if (rc != MIG_OK)
	{
		mig_source_free(s);
		return rc;
	}
	*out = s;
	return MIG_OK;
}

/*
 * The last archive this backend read (a connection's deployments send the
 * same one again), kept in a context under TopMemoryContext when it is
 * small enough (mig_archive.c); an allocation failure only means it is
 * not kept.
 */
static MemoryContext kept_cxt = NULL;
static mig_source_cache *kept_archive = NULL;

static void *
kept_alloc(size_t n)
{
	return MemoryContextAllocExtended(kept_cxt, n, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
}

static void
kept_release(void *p)
{
	if (p != NULL)
		pfree(p);
}

static mig_source_cache *
archive_cache(void)
{
	if (kept_archive == NULL)
	{
		if (kept_cxt == NULL)
			kept_cxt = AllocSetContextCreate(TopMemoryContext, "migrate kept archive",
											 ALLOCSET_DEFAULT_SIZES);
		kept_archive = mig_source_cache_create(kept_alloc, kept_release);
	}
	return kept_archive;
}

/*
 * Builds the call's folder sent as data (call->archive or call->json) as
 * the source of mp's host, and the call log's name of it in call->logged.
 * The source lives in mp's context: in procedure mode the portal's, so
 * that it outlives the commits between migrations (the argument itself
 * need not).
 */
static int
build_source(MigPg *mp, CoreCall *call, mig_err *err)
{
	mig_source *src = NULL;
	int			rc,
				owned;

	mp->host.max_archive_size = (size_t) max_archive_kb * 1024;
	if (call->archive)
		/* a source of the call's memory (owned) is freed with its context */
		rc = mig_source_archive_cached(&mp->host, archive_cache(), VARDATA_ANY(call->archive),
									   VARSIZE_ANY_EXHDR(call->archive), &src, &owned, err);
	else
		rc = json_source(mp, call->json, &src, err);
	if (rc != MIG_OK)
	{
		call->logged = call->archive ? "archive (unreadable)" : "JSON object (unreadable)";
		return rc;
	}
	mp->host.source = src;
	call->logged = MemoryContextStrdup(mp->cxt, mig_source_logged(src));
	return MIG_OK;
}

/* call->op as the rail's unit of retry (function mode). */
static int
run_op(MigPg *mp, void *arg, mig_err *err)
{
	CoreCall   *call = (CoreCall *) arg;

	return call->op(&mp->host, call, err);
}

/*
 * Runs call->op with a host for this call inside SPI (non-atomic in
 * procedure mode), frees the host and releases any session lock on every
 * exit path (an error, a cancel), and raises the core's error if any.  In
 * function mode a call that runs scripts is the blocking rail's unit: a
 * migration that waits too long for a lock rolls back the whole call,
 * which then starts again after a backoff (pg_rails.c).
 */
void
mig_pg_run_core_of(Oid fn_oid, CoreCall *call, bool procedure)
{
	MigPg	   *mp = mig_pg_begin(fn_oid, procedure);
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = MIG_ERROR;
	/* the call log keeps the options as given, schema= and all */
	const char *given = call->tenant_options ? call->tenant_options : call->options;

	/* the tenant (schema=), checked before anything runs or is logged;
	 * the entry point gets the other options */
	if (call->tenant_options != NULL)
	{
		PG_TRY();
		{
			char	   *rest = mig_pg_tenant_from_options(mp, call->tenant_options,
														  call->tenant_kind,
														  call->tenant_writes);

			if (call->tenant_kind != MIG_OPTIONS_NONE)
				call->options = rest;
		}
		PG_CATCH();
		{
			mig_pg_end(mp);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	if (call->tenant_name != NULL)
	{
		mig_err		terr;

		mig_err_clear(&terr);
		if (mig_pg_tenant_set(mp, call->tenant_name, !call->tenant_read_only, &terr) != MIG_OK)
		{
			mig_pg_end(mp);
			mig_pg_report(&terr);
		}
	}
	mp->each = call->each;
	mp->guard = call->guard;
	mp->batched = call->batched;

	if ((call->archive || call->json) && build_source(mp, call, &call->err) != MIG_OK)
	{
		/* data that cannot be read: nothing ran, the call is logged */
		if (call->logged_as)
		{
			mig_pg_call_begin(mp, call->logged_as, call->logged, given);
			mig_pg_call_log_failed(mp, call->err.sqlstate, call->err.message);
		}
		mig_pg_end(mp);
		mig_pg_report(&call->err);
	}
	/* a guarded call runs on its caller's connection (see MigPgGuard) */
	if (call->guard == NULL && SPI_connect_ext(procedure ? SPI_OPT_NONATOMIC : 0) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect_ext failed");
	if (call->op == mig_pg_op_status)
		mp->want_applied_at = true;
	mp->fname = call->fname ? call->fname : call->logged_as;
	if (call->logged_as)
		mig_pg_call_begin(mp, call->logged_as, call->logged ? call->logged : call->path,
						  given);
	PG_TRY();
	{
		if (call->runs_scripts && !procedure)
			rc = mig_pg_railed(mp, run_op, call, &call->err);
		else
			rc = call->op(&mp->host, call, &call->err);
		/* a call that found the lock held and skipped */
		call->skipped = rc == MIG_OK && mp->skipped;
		if (rc == MIG_OK && mp->skipped && !mp->call_logged &&
			mig_pg_call_log(mp, "skipped", &call->err) == MIG_OK && procedure)
			mig_pg_commit(mp);
	}
	PG_CATCH();
	{
		/* an error raised by the server (a failing statement, a cancel):
		 * its call's row is written apart, then the error goes on */
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* the core's loop never got to say what became of the migrations
		 * this call applied before the failing one: the caller's
		 * transaction rolls them back, a CALL committed each */
		if (call->op == mig_pg_op_apply && call->count > 0 &&
			edata->sqlerrcode != ERRCODE_OUT_OF_MEMORY)
		{
			mig_err		undone;

			mig_err_clear(&undone);
			mig_undone_detail(call->count, procedure ? mp->call_committed : 0, &undone);
			edata->detail = edata->detail ?
				psprintf("%s %s", edata->detail, undone.detail) : pstrdup(undone.detail);
		}
		call->count = mp->call_committed;	/* kept (procedure mode) */
		/* guarded: back to the last commit first, the rest in a sane state */
		if (call->guard)
		{
			mig_pg_guard_end(call->guard, false);
			MemoryContextSwitchTo(cxt);
		}
		mig_pg_release(mp);
		mig_pg_call_log_failed(mp, unpack_sql_state(edata->sqlerrcode),
							   psprintf("%s%s%s", edata->message ? edata->message : "",
										edata->context ? "\nCONTEXT:  " : "",
										edata->context ? edata->context : ""));
		mig_pg_end(mp);
		ReThrowError(edata);
	}
	PG_END_TRY();
	if (rc != MIG_OK)
	{
		call->count = mp->call_committed;
		mig_pg_release(mp);
	}
	if (rc != MIG_OK)
		mig_pg_call_log_failed(mp, call->err.sqlstate,
							   psprintf("%s%s%s", call->err.message,
										call->err.context[0] ? "\nCONTEXT:  " : "", call->err.context));
	mig_pg_end(mp);
	if (rc != MIG_OK)
		mig_pg_report(&call->err);
	if (call->guard == NULL && SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
}

/* mig_pg_run_core_of for the function fcinfo calls. */
void
mig_pg_run_core(FunctionCallInfo fcinfo, CoreCall *call, bool procedure)
{
	mig_pg_run_core_of(fcinfo->flinfo->fn_oid, call, procedure);
}

/* A zeroed CoreCall in context cxt. */
CoreCall *
mig_pg_new_call(MemoryContext cxt, int (*op) (const mig_host *, CoreCall *, mig_err *))
{
	CoreCall   *call = MemoryContextAllocZero(cxt, sizeof(CoreCall));

	call->op = op;
	return call;
}

/*
 * migrate_history_changed() RETURNS trigger: before a write to
 * migrate_history, takes the migration lock (of the tenant of each row from
 * 0.3 on, pg_tenant.c: a hand edit waits for a running migrate_apply, and
 * makes one wait until it commits) and counts
 * the change in migrate_history_gen, whose value every session sees at
 * once: a no-op shortcut stored before it is never used after it
 * (pg_history.c, pg_verified_get).  Needs no privilege on the sequence of
 * whoever edits the history.
 */
PG_FUNCTION_INFO_V1(migrate_history_changed);
Datum
migrate_history_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("migrate_history_changed must be called as a trigger")));
	return mig_pg_history_changed(fcinfo);
}

/*
 * migrate_guard() RETURNS trigger: before any statement that writes to one
 * of the extension's tables, refuses it unless it comes from the
 * extension's own functions (pg_host.c, mig_pg_as_owner) or from a
 * superuser.  So a privilege granted on them (as deploy set-ups used to)
 * cannot be used to plant a down script or progress that a later call
 * would run or trust.
 */
PG_FUNCTION_INFO_V1(migrate_guard);
Datum
migrate_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("migrate_guard must be called as a trigger")));
	td = (TriggerData *) fcinfo->context;
	if (!mig_pg_own_write() && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to write to %s", RelationGetRelationName(td->tg_relation)),
				 errdetail("The tables of the migrate extension are written only by its functions, which record who did what."),
				 errhint("Use migrate_apply, migrate_down, migrate_repair or migrate_baseline.")));
	return PointerGetDatum(NULL);
}
