/*
 * pg_outside.c -- migrations that run outside a transaction (CALL
 * migrate_run only).
 *
 * A migration marked non-transactional (goose NO TRANSACTION, dbmate
 * transaction:false, sqlx -- no-transaction, morph:nontransactional), or one
 * holding statements that cannot run inside a transaction (CREATE INDEX
 * CONCURRENTLY, VACUUM...), runs one top-level statement at a time, each in a
 * dynamic background worker that executes it as the server does a simple
 * query: its own transaction, isTopLevel, as pg_cron's workers do.  The
 * statements are split by raw_parser, as for every other migration.
 *
 * The calling backend (the CALL) commits what came before, then holds no
 * snapshot and no relation lock while the worker runs -- CREATE INDEX
 * CONCURRENTLY waits for every older transaction holding a snapshot, so a
 * caller keeping one would wait for itself -- only its session advisory
 * lock, which stays held throughout.  It waits on its latch for the
 * worker's messages (shm_mq, as parallel workers send theirs: notices are
 * passed on, an error is raised again with its SQLSTATE and the
 * migration's file and line), and terminates the worker when it is
 * cancelled or fails (PG_FINALLY) or exits (before_shmem_exit).  After each
 * statement, @extschema@.migrate_progress records how far the migration got
 * and the checksum of the text done, and is committed: the next call
 * resumes at the failed statement, first dropping (DROP INDEX CONCURRENTLY,
 * in a worker) the invalid indexes a failed CREATE INDEX CONCURRENTLY or
 * REINDEX CONCURRENTLY left.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "pg_host.h"

PGDLLEXPORT void migrate_worker_main(Datum main_arg);

#define WORKER_MAGIC	0x6d696777	/* "migw" */
#define KEY_FIXED		1
#define KEY_SQL			2
#define KEY_PATH		3
#define KEY_QUEUE		4
#define QUEUE_SIZE		16384
#define WORKER_TYPE		"migrate worker"
/* how long a call waits for a worker a cancelled call left to go away */
#define ORPHAN_WAIT_MS	5000

/* What the caller hands its worker, in the DSM segment. */
typedef struct WorkerShared
{
	Oid			database;
	Oid			session_user;
	char		role[NAMEDATALEN];	/* SET ROLE to this; "" for none */
	char		lock_timeout[32];
	bool		done;			/* set by the worker once it committed */
} WorkerShared;

/* The worker of this backend while one runs, for the exit callback. */
static BackgroundWorkerHandle *running_worker = NULL;
static bool exit_callback_set = false;

/* Terminates the running worker when this backend exits (a FATAL error,
 * pg_terminate_backend of the caller), where PG_FINALLY does not run. */
static void
terminate_on_exit(int code, Datum arg)
{
	if (running_worker != NULL)
		TerminateBackgroundWorker(running_worker);
	running_worker = NULL;
}

/* ---- the worker ---- */

/*
 * Runs sql (one statement) as a simple query does: parsed, analysed and
 * planned in a context that outlives the transactions a multi-transaction
 * utility command (CREATE INDEX CONCURRENTLY, VACUUM) commits inside
 * itself, run at top level through a portal, rows discarded.
 */
static void
worker_run(const char *sql)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "migrate statement",
											  ALLOCSET_DEFAULT_SIZES);
	List	   *trees;
	ListCell   *lc;

	SetCurrentStatementStartTimestamp();
	debug_query_string = sql;
	pgstat_report_activity(STATE_RUNNING, sql);
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	trees = pg_parse_query(sql);
	foreach(lc, trees)
	{
		RawStmt    *raw = lfirst_node(RawStmt, lc);
		bool		snapshot_set = false;
		List	   *queries;
		List	   *plans;
		Portal		portal;
		DestReceiver *receiver;
		QueryCompletion qc;
		int16		format = 0;

		if (analyze_requires_snapshot(raw))
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			snapshot_set = true;
		}
		queries = pg_analyze_and_rewrite_fixedparams(raw, sql, NULL, 0, NULL);
		plans = pg_plan_queries(queries, sql, CURSOR_OPT_PARALLEL_OK, NULL);
		if (snapshot_set)
			PopActiveSnapshot();
		CHECK_FOR_INTERRUPTS();

		portal = CreatePortal("", true, true);
		portal->visible = false;
		PortalDefineQuery(portal, NULL, sql, CreateCommandTag(raw->stmt),
						  plans, NULL);
		PortalStart(portal, NULL, 0, InvalidSnapshot);
		PortalSetResultFormat(portal, 1, &format);
		receiver = CreateDestReceiver(DestNone);
		(void) PortalRun(portal, FETCH_ALL, true, true, receiver, receiver,
						 &qc);
		receiver->rDestroy(receiver);
		PortalDrop(portal, false);
	}
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	debug_query_string = NULL;
}

/*
 * Entry point of the dynamic background worker: attaches to the caller's
 * segment, sends every message (errors, notices) into its queue, connects
 * to the caller's database as the caller's role, takes its search_path
 * and lock_timeout, and runs the statement.  An error ends the process
 * (the worker's top-level handler reports it through the queue and exits);
 * a SIGTERM (TerminateBackgroundWorker, pg_terminate_backend) cancels the
 * statement as it would a client's.
 */
void
migrate_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	WorkerShared *sh;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	char	   *sql;
	char	   *path;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, "migrate worker");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not map dynamic shared memory segment")));
	toc = shm_toc_attach(WORKER_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bad magic number in dynamic shared memory segment")));
	sh = shm_toc_lookup(toc, KEY_FIXED, false);
	sql = shm_toc_lookup(toc, KEY_SQL, false);
	path = shm_toc_lookup(toc, KEY_PATH, false);
	mq = shm_toc_lookup(toc, KEY_QUEUE, false);
	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	pq_redirect_to_shm_mq(seg, mqh);

	BackgroundWorkerInitializeConnectionByOid(sh->database, sh->session_user, 0);

	StartTransactionCommand();
	if (sh->role[0] != '\0')
		SetConfigOption("role", sh->role, PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("search_path", path, PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("lock_timeout", sh->lock_timeout, PGC_USERSET, PGC_S_SESSION);
	CommitTransactionCommand();

	worker_run(MemoryContextStrdup(TopMemoryContext, sql));

	pg_write_barrier();
	sh->done = true;
}

/* ---- the caller ---- */

/* An error of our own, shaped as one a worker would send. */
static ErrorData *
make_error(int code, const char *message, const char *detail)
{
	ErrorData  *e = palloc0(sizeof(ErrorData));

	e->elevel = ERROR;
	e->sqlerrcode = code;
	e->message = pstrdup(message);
	e->detail = detail ? pstrdup(detail) : NULL;
	return e;
}

/*
 * Waits for the worker's messages until it detaches: notices are raised
 * here (with the migration's context), the error is returned.  NULL when
 * the worker committed its statement.
 */
static ErrorData *
receive(shm_mq_handle *mqh, volatile WorkerShared *sh)
{
	ErrorData  *error = NULL;

	for (;;)
	{
		Size		nbytes;
		void	   *data;
		shm_mq_result res;
		StringInfoData msg;
		char		type;

		CHECK_FOR_INTERRUPTS();
		res = shm_mq_receive(mqh, &nbytes, &data, true);
		if (res == SHM_MQ_WOULD_BLOCK)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		if (res == SHM_MQ_DETACHED)
			break;
		initStringInfo(&msg);
		appendBinaryStringInfo(&msg, data, (int) nbytes);
		type = pq_getmsgbyte(&msg);
		if (type == 'E' || type == 'N')
		{
			ErrorData  *e = palloc0(sizeof(ErrorData));

			pq_parse_errornotice(&msg, e);
			if (type == 'N')
			{
				e->elevel = Min(e->elevel, WARNING);
				ThrowErrorData(e);
			}
			else if (error == NULL)
				error = e;
		}
		pfree(msg.data);
	}
	pg_read_barrier();
	if (error == NULL && !sh->done)
		error = make_error(ERRCODE_ADMIN_SHUTDOWN,
						   "background worker running the statement exited before it completed",
						   "The worker was terminated or could not start.");
	return error;
}

/*
 * Runs one statement in a new background worker and waits for it; returns
 * NULL on success, else the error (any level above ERROR brought down to
 * ERROR: the worker's death does not end this backend).  A cancel of this
 * backend terminates the worker.
 */
static ErrorData *
run_in_worker(const char *sql, const char *lock_timeout)
{
	Size		sql_len = strlen(sql) + 1;
	const char *path = namespace_search_path ? namespace_search_path : "";
	Size		path_len = strlen(path) + 1;
	shm_toc_estimator est;
	Size		size;
	dsm_segment *seg;
	shm_toc    *toc;
	WorkerShared *sh;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	ErrorData  *volatile error = NULL;
	char	   *p;

	shm_toc_initialize_estimator(&est);
	shm_toc_estimate_chunk(&est, sizeof(WorkerShared));
	shm_toc_estimate_chunk(&est, sql_len);
	shm_toc_estimate_chunk(&est, path_len);
	shm_toc_estimate_chunk(&est, QUEUE_SIZE);
	shm_toc_estimate_keys(&est, 4);
	size = shm_toc_estimate(&est);

	seg = dsm_create(size, 0);
	toc = shm_toc_create(WORKER_MAGIC, dsm_segment_address(seg), size);
	sh = shm_toc_allocate(toc, sizeof(WorkerShared));
	memset(sh, 0, sizeof(WorkerShared));
	sh->database = MyDatabaseId;
	sh->session_user = GetSessionUserId();
	if (GetUserId() != GetSessionUserId())
	{
		char	   *role = GetUserNameFromId(GetUserId(), false);

		strlcpy(sh->role, role, sizeof(sh->role));
	}
	strlcpy(sh->lock_timeout, lock_timeout, sizeof(sh->lock_timeout));
	shm_toc_insert(toc, KEY_FIXED, sh);
	p = shm_toc_allocate(toc, sql_len);
	memcpy(p, sql, sql_len);
	shm_toc_insert(toc, KEY_SQL, p);
	p = shm_toc_allocate(toc, path_len);
	memcpy(p, path, path_len);
	shm_toc_insert(toc, KEY_PATH, p);
	mq = shm_mq_create(shm_toc_allocate(toc, QUEUE_SIZE), QUEUE_SIZE);
	shm_toc_insert(toc, KEY_QUEUE, mq);
	shm_mq_set_receiver(mq, MyProc);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "migrate");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "migrate_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "migrate worker for PID %d", MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, WORKER_TYPE);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		dsm_detach(seg);
		return make_error(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
						  "could not start a background worker to run the statement",
						  psprintf("Statements of a migration that runs outside a transaction run in a background worker each, and all max_worker_processes = %d slots are in use.",
								   max_worker_processes));
	}
	mqh = shm_mq_attach(mq, seg, handle);

	if (!exit_callback_set)
	{
		before_shmem_exit(terminate_on_exit, (Datum) 0);
		exit_callback_set = true;
	}
	running_worker = handle;
	PG_TRY();
	{
		error = receive(mqh, sh);
	}
	PG_CATCH();
	{
		/* a cancel or any error here: the worker must stop with us */
		running_worker = NULL;
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
	running_worker = NULL;
	/* gone before the next one starts or the progress commits */
	(void) WaitForBackgroundWorkerShutdown(handle);
	dsm_detach(seg);
	if (error != NULL && error->elevel > ERROR)
		error->elevel = ERROR;
	return error;
}

/* ---- progress ---- */

static void
spi_check(int ret, int expected, const char *what)
{
	if (ret != expected)
		elog(ERROR, "could not %s migrate_progress: %s", what,
			 SPI_result_code_string(ret));
}

/*
 * Waits (up to ORPHAN_WAIT_MS) for workers of this database that an
 * earlier call left running (its backend was terminated or cancelled while
 * the worker was stopping); fails with 55P03 if one remains.
 */
static int
wait_for_orphans(mig_err *err)
{
	char	   *sql = psprintf("SELECT pid FROM pg_catalog.pg_stat_activity "
							   "WHERE backend_type OPERATOR(pg_catalog.=) '%s' "
							   "AND datid OPERATOR(pg_catalog.=) %u", WORKER_TYPE,
							   MyDatabaseId);
	long		waited = 0;

	for (;;)
	{
		int			ret;

		CHECK_FOR_INTERRUPTS();
		pgstat_clear_backend_activity_snapshot();
		ret = SPI_execute(sql, true, 0);
		spi_check(ret, SPI_OK_SELECT, "look for workers for");
		if (SPI_processed == 0)
			return MIG_OK;
		if (waited >= ORPHAN_WAIT_MS)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 50, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		waited += 50;
	}
	mig_err_set(err, MIG_SQLSTATE_LOCK,
				"another connection is applying it outside a transaction");
	mig_err_detail(err, "Background worker %s is still running a migration statement in this database.",
				   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	mig_err_hint(err, "Call migrate_run again when it is done.");
	return MIG_ERROR;
}

/*
 * Reads how far an earlier call got with this migration: *start receives
 * the offset in mp->text after the last statement done (0 for none),
 * *done how many ran, *resuming whether a row was there.  Verifies that
 * the text done is unchanged; else records that this call starts.
 */
static int
progress_start_owner(MigPg *mp, const mig_script *s, int *start, int64 *done,
					 bool *resuming, mig_err *err)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char	   *sql;
	int			ret;

	*start = 0;
	*done = 0;
	*resuming = false;
	values[0] = CStringGetTextDatum(s->version);
	sql = psprintf("SELECT done_checksum, next_offset, statements_done FROM %s "
				   "WHERE version OPERATOR(pg_catalog.=) $1", mp->progress);
	ret = SPI_execute_with_args(sql, 1, types, values, NULL, false, 0);
	spi_check(ret, SPI_OK_SELECT, "read");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *sum = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		int64		off = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		char		now[16];

		*done = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		if (off >= 0 && off <= mp->text_len)
			mig_checksum(mp->text, (size_t) off, now);
		if (sum == NULL || off < 0 || off > mp->text_len || strcmp(now, sum) != 0)
		{
			mig_err_set(err, MIG_SQLSTATE_STATE,
						"its statements that ran outside a transaction have changed since");
			mig_err_detail(err, INT64_FORMAT " of its statements ran (its first " INT64_FORMAT " bytes).",
						   *done, off);
			mig_err_hint(err, "Restore those statements as they ran; the failed statement and those after it may change.");
			return MIG_ERROR;
		}
		*start = (int) off;
		*resuming = true;
		return MIG_OK;
	}
	{
		char		empty[16];

		mig_checksum("", 0, empty);
		values[1] = CStringGetTextDatum(empty);
		sql = psprintf(mp->v03 ?
					   "INSERT INTO %s (version, done_checksum, next_offset, statements_done, down) "
					   "VALUES ($1, $2, 0, 0, %s)" :
					   "INSERT INTO %s (version, done_checksum, next_offset, statements_done) "
					   "VALUES ($1, $2, 0, 0)", mp->progress, s->down ? "true" : "false");
		ret = SPI_execute_with_args(sql, 2, types, values, NULL, false, 0);
		spi_check(ret, SPI_OK_INSERT, "insert into");
	}
	return MIG_OK;
}

/* progress_start_owner as the owner of the extension's tables. */
static int
progress_start(MigPg *mp, const mig_script *s, int *start, int64 *done,
			   bool *resuming, mig_err *err)
{
	MigPgSave	save;
	int			rc;

	mig_pg_owner_enter(mp, mp->owner, true, &save);
	rc = progress_start_owner(mp, s, start, done, resuming, err);
	mig_pg_owner_leave(&save);
	return rc;
}

/* Records that the statements of s up to offset end of mp->text ran. */
static void
progress_mark(MigPg *mp, const mig_script *s, int end, int64 done)
{
	MigPgSave	save;
	Oid			types[4] = {TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[4];
	char		sum[16];
	int			ret;

	mig_pg_owner_enter(mp, mp->owner, true, &save);
	mig_checksum(mp->text, (size_t) end, sum);
	values[0] = CStringGetTextDatum(s->version);
	values[1] = CStringGetTextDatum(sum);
	values[2] = Int64GetDatum((int64) end);
	values[3] = Int64GetDatum(done);
	ret = SPI_execute_with_args(psprintf("UPDATE %s SET done_checksum = $2, next_offset = $3, "
										 "statements_done = $4, last_error = NULL, "
										 "updated_at = pg_catalog.now() "
										 "WHERE version OPERATOR(pg_catalog.=) $1",
										 mp->progress),
								4, types, values, NULL, false, 0);
	spi_check(ret, SPI_OK_UPDATE, "update");
	mig_pg_owner_leave(&save);
}

/* Notes the error beside the progress. */
static void
progress_error(MigPg *mp, const mig_script *s, const ErrorData *e)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	int			ret;
	MigPgSave	save;

	mig_pg_owner_enter(mp, mp->owner, true, &save);
	values[0] = CStringGetTextDatum(s->version);
	values[1] = CStringGetTextDatum(psprintf("%s: %s", unpack_sql_state(e->sqlerrcode),
											 e->message ? e->message : "?"));
	ret = SPI_execute_with_args(psprintf("UPDATE %s SET last_error = $2, updated_at = pg_catalog.now() "
										 "WHERE version OPERATOR(pg_catalog.=) $1",
										 mp->progress),
								2, types, values, NULL, false, 0);
	spi_check(ret, SPI_OK_UPDATE, "update");
	mig_pg_owner_leave(&save);
}

int
mig_pg_forget_down_progress(MigPg *mp, const char *version, mig_err *err)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			ret;

	values[0] = CStringGetTextDatum(version);
	ret = SPI_execute_with_args(psprintf("DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1 "
										 "AND down", mp->progress),
								1, types, values, NULL, false, 0);
	spi_check(ret, SPI_OK_DELETE, "delete from");
	return MIG_OK;
}

int
mig_pg_forget_progress(MigPg *mp, const char *version, mig_err *err)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			ret;

	if (mp->outside_version == NULL || strcmp(mp->outside_version, version) != 0)
		return MIG_OK;
	values[0] = CStringGetTextDatum(version);
	ret = SPI_execute_with_args(psprintf("DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1",
										 mp->progress),
								1, types, values, NULL, false, 0);
	spi_check(ret, SPI_OK_DELETE, "delete from");
	pfree(mp->outside_version);
	mp->outside_version = NULL;
	return MIG_OK;
}

/* ---- running the script ---- */

/*
 * The invalid index a CREATE INDEX CONCURRENTLY that failed left behind,
 * schema-qualified and quoted, in a list; NIL when there is none (an
 * unnamed one's name is the server's choice).
 */
static List *
invalid_created_index(IndexStmt *is)
{
	Oid			relid;
	Oid			nsp;
	Oid			idx;
	HeapTuple	tup;
	bool		invalid;

	if (!is->concurrent || is->idxname == NULL)
		return NIL;
	relid = RangeVarGetRelid(is->relation, NoLock, true);
	if (!OidIsValid(relid))
		return NIL;
	nsp = get_rel_namespace(relid);
	idx = get_relname_relid(is->idxname, nsp);
	if (!OidIsValid(idx))
		return NIL;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(idx));
	if (!HeapTupleIsValid(tup))
		return NIL;
	invalid = !((Form_pg_index) GETSTRUCT(tup))->indisvalid &&
		((Form_pg_index) GETSTRUCT(tup))->indrelid == relid;
	ReleaseSysCache(tup);
	if (!invalid)
		return NIL;
	return list_make1(quote_qualified_identifier(get_namespace_name(nsp), is->idxname));
}

/*
 * The invalid indexes a REINDEX CONCURRENTLY that failed left behind: the
 * new copies ("<index>_ccnew", "_ccnew1"...) and old ones it could not
 * drop ("_ccold"), on the table (and its TOAST table) for REINDEX TABLE,
 * of the one index for REINDEX INDEX (their names are its name and the
 * suffix, or the part of its name that fits in NAMEDATALEN with it).
 */
static List *
invalid_reindex_copies(ReindexStmt *rs)
{
	static const char query[] =
		"SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' "
		"OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), "
		"pg_catalog.substring(c.relname, '^(.*)_cc(?:new|old)[0-9]*$'), "
		"pg_catalog.octet_length(c.relname) "
		"FROM pg_catalog.pg_index i "
		"JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid "
		"JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
		"WHERE NOT i.indisvalid AND c.relname OPERATOR(pg_catalog.~) '_cc(new|old)[0-9]*$' "
		"AND i.indrelid IN (SELECT t.oid FROM pg_catalog.pg_class t WHERE t.oid OPERATOR(pg_catalog.=) $1 "
		"UNION ALL SELECT t.reltoastrelid FROM pg_catalog.pg_class t WHERE t.oid OPERATOR(pg_catalog.=) $1) "
		"ORDER BY 1";
	MemoryContext cxt = CurrentMemoryContext;
	bool		concurrently = false;
	ListCell   *lc;
	Oid			relid,
				table;
	const char *index = NULL;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	int			ret;
	List	   *found = NIL;

	foreach(lc, rs->params)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "concurrently") == 0)
			concurrently = defGetBoolean(opt);
	}
	if (!concurrently || rs->relation == NULL ||
		(rs->kind != REINDEX_OBJECT_INDEX && rs->kind != REINDEX_OBJECT_TABLE))
		return NIL;
	relid = RangeVarGetRelid(rs->relation, NoLock, true);
	if (!OidIsValid(relid))
		return NIL;
	table = relid;
	if (rs->kind == REINDEX_OBJECT_INDEX)
	{
		if (get_rel_relkind(relid) != RELKIND_INDEX)
			return NIL;
		table = IndexGetRelation(relid, true);
		index = get_rel_name(relid);
		if (!OidIsValid(table) || index == NULL)
			return NIL;
	}
	args[0] = ObjectIdGetDatum(table);
	ret = SPI_execute_with_args(query, 1, argtypes, args, NULL, true, 0);
	MemoryContextSwitchTo(cxt); /* SPI leaves its own current */
	if (ret != SPI_OK_SELECT)
		return NIL;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *base = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *len = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		bool		truncated = len != NULL && atoi(len) == NAMEDATALEN - 1;

		/* REINDEX INDEX: only the copies of that index */
		if (index != NULL &&
			(base == NULL || base[0] == '\0' ||
			 (strcmp(index, base) != 0 &&
			  !(truncated && strncmp(index, base, strlen(base)) == 0))))
			continue;
		found = lappend(found, name);
	}
	SPI_freetuptable(SPI_tuptable);
	return found;
}

/* What a failed concurrent index build of stmt left behind, to drop before
 * it runs again: a list of quoted, qualified index names, or NIL. */
static List *
invalid_indexes_of(Node *stmt)
{
	if (IsA(stmt, IndexStmt))
		return invalid_created_index((IndexStmt *) stmt);
	if (IsA(stmt, ReindexStmt))
		return invalid_reindex_copies((ReindexStmt *) stmt);
	return NIL;
}

/*
 * The lock_timeout a statement runs with: the rail's for statements whose
 * locks would queue the application's queries behind them; the session's
 * for those that take only SHARE UPDATE EXCLUSIVE and then wait for older
 * transactions by design (CREATE/DROP INDEX CONCURRENTLY, REINDEX
 * CONCURRENTLY, VACUUM), which the rail would only make fail.
 */
static const char *
statement_lock_timeout(MigPg *mp, Node *stmt)
{
	bool		waits_by_design = false;

	switch (nodeTag(stmt))
	{
		case T_IndexStmt:
			waits_by_design = ((IndexStmt *) stmt)->concurrent;
			break;
		case T_DropStmt:
			waits_by_design = ((DropStmt *) stmt)->concurrent;
			break;
		case T_ReindexStmt:
		case T_VacuumStmt:
			waits_by_design = true;
			break;
		default:
			break;
	}
	if (waits_by_design || mp->rail_timeout_ms <= 0)
		return GetConfigOption("lock_timeout", false, false);
	return psprintf("%d", mp->rail_timeout_ms);
}

/* Commits, and lets go of the catalog snapshot the next transaction would
 * otherwise keep: while a worker runs, this backend advertises no xmin. */
static void
commit_and_let_go(void)
{
	SPI_commit();
	InvalidateCatalogSnapshot();
}

/* Raises a worker's error with the migration's context (the callback of
 * script_begin), pointing its position into the statement. */
static void
raise_worker_error(ErrorData *e, const char *stmt)
{
	if (e->cursorpos > 0)
	{
		e->internalpos = e->cursorpos;
		e->internalquery = pstrdup(stmt);
		e->cursorpos = 0;
	}
	ThrowErrorData(e);
	/* ThrowErrorData returns only for levels below ERROR */
	elog(ERROR, "migration statement failed");
}

/*
 * host->exec_outside (procedure mode): see the comment at the top.  On a
 * failing statement its error is raised (after the progress and the error
 * are committed), with the file, version and line.
 */
int
mig_pg_exec_outside(void *ctx, const mig_script *s, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = CurrentMemoryContext;
	ErrorContextCallback cb;
	List	   *stmts;
	ListCell   *lc;
	int			start;
	int64		done;
	bool		resuming;
	List	   *cleanup = NIL;
	int			rc;

	Assert(mp->procedure);
	mig_pg_script_begin(mp, s, &cb);
	stmts = raw_parser(mp->text, RAW_PARSE_DEFAULT);

	rc = wait_for_orphans(err);
	if (rc == MIG_OK)
		rc = progress_start(mp, s, &start, &done, &resuming, err);
	if (rc != MIG_OK)
	{
		mig_pg_script_done(mp, &cb, old);
		return rc;
	}
	MemoryContextSwitchTo(mp->scratch);

	/* a CREATE INDEX or REINDEX CONCURRENTLY that failed is the first to
	 * run again */
	if (resuming)
	{
		foreach(lc, stmts)
		{
			RawStmt    *rs = lfirst_node(RawStmt, lc);

			if (rs->stmt_location < start)
				continue;
			cleanup = invalid_indexes_of(rs->stmt);
			break;
		}
	}

	/* the migrations before this one and the progress row, for good; from
	 * here on this backend holds only the session lock */
	commit_and_let_go();
	MemoryContextSwitchTo(mp->scratch);

	foreach(lc, cleanup)
	{
		const char *index = lfirst(lc);
		/* an invalid TOAST index can be dropped, but not concurrently */
		bool		toast = strncmp(index, "pg_toast.", 9) == 0;
		char	   *drop = psprintf("DROP INDEX %sIF EXISTS %s", toast ? "" : "CONCURRENTLY ", index);
		ErrorData  *e;

		ereport(NOTICE,
				(errmsg("dropping invalid index %s left by a failed concurrent index build of migration %s (%s), to build it again",
						index, s->version, s->file)));
		e = run_in_worker(drop, GetConfigOption("lock_timeout", false, false));
		MemoryContextSwitchTo(mp->scratch);
		if (e != NULL)
			raise_worker_error(e, drop);
	}

	foreach(lc, stmts)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		int			off,
					end;
		char	   *stmt;
		ErrorData  *e;

		if (rs->stmt_location < start)
			continue;
		CHECK_FOR_INTERRUPTS();
		stmt = mig_pg_statement_text(mp, rs, &off, &end);
		mp->stmt_off = off;
		mp->rail_attempt = 1;
		e = run_in_worker(stmt, statement_lock_timeout(mp, rs->stmt));
		MemoryContextSwitchTo(mp->scratch);
		if (e != NULL)
		{
			progress_error(mp, s, e);
			commit_and_let_go();
			MemoryContextSwitchTo(mp->scratch);
			raise_worker_error(e, stmt);
		}
		progress_mark(mp, s, end, ++done);
		commit_and_let_go();
		MemoryContextSwitchTo(mp->scratch);
	}
	mp->stmt_off = -1;
	if (mp->outside_version != NULL)
		pfree(mp->outside_version);
	mp->outside_version = MemoryContextStrdup(mp->cxt, s->version);
	mig_pg_script_done(mp, &cb, old);
	return MIG_OK;
}
