/*
 * migrate.c -- SQL-callable functions of the PostgreSQL extension "migrate".
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

/*
 * Raises 42501 unless the current user may read server files: a superuser
 * or a role with the privileges of pg_read_server_files, as pg_read_file.
 */
static void
check_read_privilege(const char *fname)
{
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read migration files"),
				 errdetail("Only superusers and roles with privileges of the \"%s\" role may call %s.",
						   "pg_read_server_files", fname)));
}

/* Raises an error unless this transaction may change the database. */
static void
check_writable(const char *fname)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("%s cannot run during recovery", fname),
				 errhint("Apply migrations on the primary server.")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("%s cannot run in a read-only transaction", fname)));
}

/*
 * Function mode runs in the caller's transaction.  Under REPEATABLE READ or
 * SERIALIZABLE its snapshot predates the migration lock, so it would not see
 * migrations another session applied while this one waited: refuse.
 */
static void
check_function_mode(const char *fname)
{
	check_writable(fname);
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("%s cannot run in a %s transaction", fname,
						IsolationIsSerializable() ? "SERIALIZABLE" :
						"REPEATABLE READ"),
				 errdetail("The transaction's snapshot was taken before the migration lock, so it could miss migrations applied by another session."),
				 errhint("Use READ COMMITTED, or CALL migrate_run(...) outside a transaction block.")));
}

/*
 * The folder argument as an absolute path in UTF-8, as the core takes every
 * name: relative paths are relative to the data directory, as for
 * pg_read_file.
 */
static char *
folder_arg(text *arg)
{
	char	   *path = mig_pg_utf8(text_to_cstring(arg));

	if (path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration folder path must not be empty")));
	if (!is_absolute_path(path))
		path = psprintf("%s/%s", DataDir, path);
	canonicalize_path(path);
	return path;
}

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

static int
op_apply(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_apply_with(h, call->path, call->options, &call->count, err);
}

/* The options text of the call's second argument, when it has one, in cxt
 * (in UTF-8). */
static const char *
options_arg(FunctionCallInfo fcinfo, MemoryContext cxt)
{
	if (PG_NARGS() < 2 || PG_ARGISNULL(1))
		return NULL;
	return MemoryContextStrdup(cxt, mig_pg_utf8(text_to_cstring(PG_GETARG_TEXT_PP(1))));
}

/*
 * The options text of argument idx (NULL when the function has none there
 * or it is NULL) in cxt, in UTF-8, to be read for schema= as entry point
 * which reads its options (MIG_OPTIONS_*) before the call: the tenant.
 */
static void
tenant_arg(FunctionCallInfo fcinfo, CoreCall *call, int idx, int which, bool writes,
		   MemoryContext cxt)
{
	if (PG_NARGS() <= idx || PG_ARGISNULL(idx))
		return;
	call->tenant_options = MemoryContextStrdup(cxt, mig_pg_utf8(text_to_cstring(PG_GETARG_TEXT_PP(idx))));
	call->tenant_kind = which;
	call->tenant_writes = writes;
	if (which != MIG_OPTIONS_NONE)
		call->options = call->tenant_options;
}

/* A text argument in UTF-8, in the current memory context. */
static char *
utf8_arg(text *arg)
{
	return mig_pg_utf8(text_to_cstring(arg));
}

/* UTF-8 s as a text Datum in the server encoding (names the core checked
 * with mig_pg_name_fits, or ASCII). */
static Datum
text_datum(const char *s)
{
	return mig_pg_text_datum(s, strlen(s));
}

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
op_down(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_down(h, call->n, &call->count, err);
}

static int
op_down_to(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_down_to(h, call->version, &call->count, err);
}

static int
op_status(const mig_host *h, CoreCall *call, mig_err *err)
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

static int
op_repair(const mig_host *h, CoreCall *call, mig_err *err)
{
	return mig_repair_with(h, call->path, call->options, &call->count, err);
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
	values[0] = text_datum(m->version);
	values[1] = text_datum(m->name);
	values[2] = text_datum(m->file);
	values[3] = text_datum(m->kind);
	values[4] = mig_pg_text_datum(m->sql, m->len);
	if (m->down_sql != NULL)
		values[5] = mig_pg_text_datum(m->down_sql, m->down_len);
	else
		nulls[5] = true;
	if (m->checksum != NULL)
		values[6] = text_datum(m->checksum);
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
static void
run_core_of(Oid fn_oid, CoreCall *call, bool procedure)
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
	if (call->op == op_status)
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
		if (call->op == op_apply && call->count > 0 &&
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

/* run_core_of for the function fcinfo calls. */
static void
run_core(FunctionCallInfo fcinfo, CoreCall *call, bool procedure)
{
	run_core_of(fcinfo->flinfo->fn_oid, call, procedure);
}

/* A zeroed CoreCall in context cxt. */
static CoreCall *
new_call(MemoryContext cxt, int (*op) (const mig_host *, CoreCall *, mig_err *))
{
	CoreCall   *call = MemoryContextAllocZero(cxt, sizeof(CoreCall));

	call->op = op;
	return call;
}

/*
 * The folder, the first argument of fname, into call: a path on the server
 * (text), or the folder's contents sent as data -- an archive (bytea) or a
 * JSON object (jsonb) -- as the function's declared argument says.  Who
 * may call each form is checked here: the path form reads server files,
 * so it needs superuser or pg_read_server_files whatever EXECUTE grants
 * say; the data forms read no server file and need no more than EXECUTE
 * on the function (the extension grants it to pg_database_owner).  Either
 * way the migrations run with the caller's rights (no function is
 * SECURITY DEFINER) and the history is written only by the functions.
 */
static void
source_arg(FunctionCallInfo fcinfo, CoreCall *call, const char *fname)
{
	Oid		   *types;
	int			nargs;

	(void) get_func_signature(fcinfo->flinfo->fn_oid, &types, &nargs);
	if (nargs < 1)
		elog(ERROR, "%s declared without a folder argument", fname);
	if (types[0] == TEXTOID)
		check_read_privilege(fname);
	if (PG_ARGISNULL(0))		/* data forms and procedures: not STRICT */
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration folder %s must not be NULL",
						types[0] == TEXTOID ? "path" : "data")));
	if (types[0] == TEXTOID)
		call->path = folder_arg(PG_GETARG_TEXT_PP(0));
	else if (types[0] == BYTEAOID)
		call->archive = PG_GETARG_BYTEA_PP(0);
	else if (types[0] == JSONBOID)
		call->json = PG_GETARG_JSONB_P(0);
	else
		elog(ERROR, "%s declared with a folder argument of type %u", fname, types[0]);
}

/*
 * A call of the function named fname whose first argument is the folder:
 * checks who may call it (source_arg) and that it is in function mode, and
 * reads the folder.
 */
static CoreCall *
folder_call(FunctionCallInfo fcinfo, const char *fname,
			int (*op) (const mig_host *, CoreCall *, mig_err *))
{
	CoreCall   *call = new_call(CurrentMemoryContext, op);

	call->logged_as = fname;	/* apply, adopt, baseline, repair: all write */
	source_arg(fcinfo, call, fname);
	check_function_mode(fname);
	return call;
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
	CoreCall   *call = folder_call(fcinfo, "migrate_apply", op_apply);

	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_APPLY, true, CurrentMemoryContext);
	call->runs_scripts = true;
	run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
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
	CoreCall   *call = folder_call(fcinfo, "migrate_adopt", op_adopt);

	call->options = options_arg(fcinfo, CurrentMemoryContext);
	run_core(fcinfo, call, false);
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
	CoreCall   *call = folder_call(fcinfo, "migrate_baseline", op_baseline);

	call->version = utf8_arg(PG_GETARG_TEXT_PP(1));
	tenant_arg(fcinfo, call, 2, MIG_OPTIONS_NONE, true, CurrentMemoryContext);
	run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
}

/* Raises 2D000 unless the procedure fname was called where it can commit:
 * a CALL of its own, outside a transaction block.  instead names the
 * function form to use otherwise. */
static void
check_procedure_mode(FunctionCallInfo fcinfo, const char *fname, const char *instead)
{
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("%s cannot run inside a transaction block", fname),
				 errdetail("%s commits after each migration, which is possible only in a CALL that is not inside BEGIN, a multi-statement query string or a function.", fname),
				 errhint("CALL %s(...) as a statement of its own, or use SELECT %s everything in the caller's transaction.",
						 fname, instead)));
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
	CoreCall   *call = folder_call(fcinfo, "migrate_record", op_record);

	call->version = text_to_cstring(PG_GETARG_TEXT_PP(1));
	tenant_arg(fcinfo, call, 2, MIG_OPTIONS_NONE, true, CurrentMemoryContext);
	run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_down);

	call->logged_as = "migrate_down";
	check_function_mode("migrate_down");
	call->n = PG_GETARG_INT64(0);
	call->runs_scripts = true;
	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_NONE, true, CurrentMemoryContext);
	run_core(fcinfo, call, false);
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

	check_procedure_mode(fcinfo, "migrate_run_down", "migrate_down(n), which rolls back");
	check_writable("migrate_run_down");
	call = new_call(PortalContext, op_down);
	call->logged_as = "migrate_run_down";
	call->n = PG_ARGISNULL(0) ? 1 : PG_GETARG_INT64(0);
	call->runs_scripts = true;
	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_NONE, true, PortalContext);
	run_core(fcinfo, call, true);
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_down_to);

	call->logged_as = "migrate_down_to";
	check_function_mode("migrate_down_to");
	call->version = utf8_arg(PG_GETARG_TEXT_PP(0));
	call->runs_scripts = true;
	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_NONE, true, CurrentMemoryContext);
	run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
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
	values[0] = text_datum(row->version);
	values[1] = text_datum(row->name);
	values[2] = text_datum(row->state);
	if (row->file != NULL)
		values[3] = text_datum(row->file);
	else
		nulls[3] = true;
	if (row->checksum != NULL)
		values[4] = text_datum(row->checksum);
	else
		nulls[4] = true;
	if (row->applied_checksum != NULL)
		values[5] = text_datum(row->applied_checksum);
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_status);
	StatusSink *sink = palloc0(sizeof(StatusSink));

	source_arg(fcinfo, call, "migrate_status");
	InitMaterializedSRF(fcinfo, 0);
	sink->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	sink->err = &call->err;
	call->status_cb = status_row;
	call->status_arg = sink;
	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_NONE, false, CurrentMemoryContext);
	run_core(fcinfo, call, false);
	return (Datum) 0;
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

	check_procedure_mode(fcinfo, "migrate_run", "migrate_apply(...), which applies");

	/* What must survive the commits goes in the portal's context (a
	 * folder sent as data is read into it before the first commit). */
	call = new_call(PortalContext, op_apply);
	source_arg(fcinfo, call, "migrate_run");
	check_writable("migrate_run");
	call->logged_as = "migrate_run";
	if (call->path)
		call->path = MemoryContextStrdup(PortalContext, call->path);
	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_APPLY, true, PortalContext);
	run_core(fcinfo, call, true);
	ereport(NOTICE,
			(errmsg_plural("applied " INT64_FORMAT " migration",
						   "applied " INT64_FORMAT " migrations",
						   (unsigned long) call->count, (int64) call->count)));
	PG_RETURN_VOID();
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_validate);

	source_arg(fcinfo, call, "migrate_validate");
	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_VALIDATE, false, CurrentMemoryContext);
	InitMaterializedSRF(fcinfo, 0);
	call->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	run_core(fcinfo, call, false);
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_impact);

	source_arg(fcinfo, call, "migrate_impact");
	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_APPLY, false, CurrentMemoryContext);
	InitMaterializedSRF(fcinfo, 0);
	call->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	run_core(fcinfo, call, false);
	return (Datum) 0;
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
	CoreCall   *call = folder_call(fcinfo, "migrate_repair", op_repair);

	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_REPAIR, true, CurrentMemoryContext);
	run_core(fcinfo, call, false);
	PG_RETURN_INT64(call->count);
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_plan);

	call->fname = "migrate_plan";
	source_arg(fcinfo, call, "migrate_plan");
	tenant_arg(fcinfo, call, 1, MIG_OPTIONS_DRYRUN, false, CurrentMemoryContext);
	InitMaterializedSRF(fcinfo, 0);
	call->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	run_core(fcinfo, call, false);
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_script);

	call->fname = "migrate_script";
	source_arg(fcinfo, call, "migrate_script");
	call->options = options_arg(fcinfo, CurrentMemoryContext);
	call->result_cxt = CurrentMemoryContext;
	run_core(fcinfo, call, false);
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

/* Argument n as a C string in UTF-8, or NULL; *len its length. */
static const char *
utf8_arg_n(FunctionCallInfo fcinfo, int n, size_t *len)
{
	char	   *s;

	if (PG_ARGISNULL(n))
		return NULL;
	s = utf8_arg(PG_GETARG_TEXT_PP(n));
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_script_record);
	mig_record *rec = palloc0(sizeof(mig_record));
	const char *mode;

	check_function_mode("migrate_script_record");
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
	run_core(fcinfo, call, false);
	PG_RETURN_VOID();
}

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
			CoreCall   *call = new_call(cxt, op_apply);

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
			run_core(fcinfo, call, false);
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
	source_arg(fcinfo, &proto, "migrate_apply_each");
	check_function_mode("migrate_apply_each");
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
		call = new_call(cxt, op_apply);
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
			run_core(fcinfo, call, false);
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
 * rolls back what the tenant did since its last commit, run_core releases
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
	call = new_call(tcxt, op_apply);
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
		run_core(fcinfo, call, true);
		mig_pg_guard_end(&guard, true);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(tcxt);
		edata = CopyErrorData();
		FlushErrorState();
		mig_pg_guard_end(&guard, false);
		/* the guard is rolled back (by run_core or just now); an error
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

	check_procedure_mode(fcinfo, "migrate_run_each", "migrate_apply_each(...), which applies");
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
	source_arg(fcinfo, &proto, "migrate_run_each");
	check_writable("migrate_run_each");
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
	CoreCall   *call = new_call(CurrentMemoryContext, op_apply);

	/* the same checks as the leader's, as the same user */
	if (path != NULL)
		check_read_privilege(fname);
	check_function_mode(fname);
	call->path = path;
	call->archive = (bytea *) archive;
	call->json = (Jsonb *) json;
	call->logged_as = fname;
	call->options = options;
	call->runs_scripts = true;
	call->tenant_name = tenant;
	call->each = true;
	run_core_of(fn_oid, call, false);
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
	source_arg(fcinfo, &proto, "migrate_status_each");
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
		CoreCall   *call = new_call(cxt, op_status);
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
			run_core(fcinfo, call, false);
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
			values[3] = text_datum(ts->newest);
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
