/*
 * pg_outside.c -- migrations that run outside a transaction, the caller's
 * side (CALL migrate_run and CALL migrate_run_down only; the worker's side
 * is pg_worker.c, the messages between them pg_outside.h).
 *
 * A migration marked non-transactional (goose NO TRANSACTION, dbmate
 * transaction:false, sqlx -- no-transaction, morph:nontransactional), one
 * holding statements that cannot run inside a transaction (CREATE INDEX
 * CONCURRENTLY, VACUUM...), or a down script recorded so, runs one
 * top-level statement at a time in a dynamic background worker, which
 * executes each as the server does a simple query, as pg_cron's workers
 * do.  The statements are split by raw_parser, as for every other
 * migration.  One worker serves the whole call: it becomes the caller's
 * session afresh for each migration (pg_worker.c), and a statement costs
 * no worker start.
 *
 * The caller (the CALL's backend) commits what came before, then holds no
 * snapshot and no relation lock while the worker runs -- CREATE INDEX
 * CONCURRENTLY waits for every older transaction holding a snapshot, so a
 * caller keeping one would wait for itself -- only its session advisory
 * lock, which stays held throughout.  It feeds the worker the statements
 * through one queue, ahead of their results, and waits on its latch for
 * the worker's messages on another (notices are passed on, an error is
 * raised again with its SQLSTATE and the migration's file and line); it
 * terminates the worker when it is cancelled or fails (PG_CATCH,
 * mig_pg_end) or exits (before_shmem_exit).
 *
 * Progress: @extschema@.migrate_progress records how far the migration
 * got: the statements done, the resume point (the offset, in bytes of the
 * script's own UTF-8, where the next statement begins) and the checksum of
 * every byte before it.  The worker writes it with each statement (in the
 * same transaction wherever the statement allows; see pg_worker.c); the
 * next call checks the bytes before the resume point are unchanged and
 * resumes there.
 */
#include "postgres.h"

#include <zlib.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "pg_host.h"
#include "pg_outside.h"

/* how long a call waits for a worker an earlier call left to go away (a
 * cancelled call's, stopping; an ended call's, exiting), looking every
 * ORPHAN_POLL_MS */
#define ORPHAN_WAIT_MS	5000
#define ORPHAN_POLL_MS	5

/* The worker of a call, as the caller sees it. */
typedef struct Worker
{
	MigPg	   *mp;				/* the call it serves */
	dsm_segment *seg;
	MigWorkerFixed *fixed;
	BackgroundWorkerHandle *handle;
	shm_mq_handle *out;			/* messages to it */
	shm_mq_handle *in;			/* its messages */
	ErrorData  *error;			/* the error it sent, once it did */
	int64		reported;		/* statements of the migration it reported
								 * done */
	bool		gone;			/* it detached (exited), or was told to */
	char	   *last_guc;		/* the settings sent it last (mp->cxt) */
	Size		last_guc_len;
} Worker;

/* The worker of the call running in this backend, if any (a backend runs
 * one call at a time). */
static Worker *call_worker = NULL;
static bool exit_callback_set = false;

/* Terminates the worker when this backend exits (a FATAL error,
 * pg_terminate_backend of the caller), where PG_CATCH does not run. */
static void
terminate_on_exit(int code, Datum arg)
{
	if (call_worker != NULL && !call_worker->gone)
		TerminateBackgroundWorker(call_worker->handle);
	call_worker = NULL;
}

/*
 * Whether stmt must run alone, outside a transaction block, committing by
 * itself: what pg_script.c finds can run only outside a transaction, and the
 * subscription commands, which may or may not (create_slot, a slot to drop,
 * copy_data) as their options or the catalog say.  Every other statement
 * runs in a transaction block with its progress row.  CALL and DO run in
 * one too: a procedure that commits fails there, as it does inside a
 * transaction (raise_worker_error says why).
 */
static bool
runs_alone(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_CreateSubscriptionStmt:
		case T_AlterSubscriptionStmt:
		case T_DropSubscriptionStmt:
			return true;
		default:
			return mig_pg_outside_only(stmt);
	}
}

/* ---- the worker, from the caller's side ---- */

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
 * Waits for the worker's messages until it reports the statement that
 * makes done statements committed ('C': returns NULL) or has exited
 * (returns the error it sent, or one saying it exited; done < 0: waits for
 * that).  Notices are raised here, with the migration's context (the
 * callback of script_begin).
 */
static ErrorData *
await_worker(Worker *w, int64 done)
{
	for (;;)
	{
		Size		nbytes;
		void	   *data;
		shm_mq_result res;
		StringInfoData msg;
		char		type;

		CHECK_FOR_INTERRUPTS();
		res = shm_mq_receive(w->in, &nbytes, &data, true);
		if (res == SHM_MQ_WOULD_BLOCK)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		if (res == SHM_MQ_DETACHED)
		{
			w->gone = true;
			break;
		}
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
			else if (w->error == NULL)
				w->error = e;
		}
		else if (type == 'C' && w->error == NULL)
		{
			w->reported = (int64) pq_getmsgint64(&msg);
			if (done >= 0)
			{
				if (w->reported != done)
					elog(ERROR, "migrate worker reported " INT64_FORMAT " statements done, not " INT64_FORMAT,
						 w->reported, done);
				pfree(msg.data);
				return NULL;
			}
		}
		pfree(msg.data);
	}
	if (w->error == NULL)
		w->error = make_error(ERRCODE_ADMIN_SHUTDOWN,
							  "background worker running the statements exited before it completed",
							  "The worker was terminated or could not start.");
	if (w->error->elevel > ERROR)
		w->error->elevel = ERROR;	/* its death does not end this backend */
	return w->error;
}

/* Sends a message of iov's parts; when the worker is gone, returns what it
 * said before it went, else NULL. */
static ErrorData *
send_parts(Worker *w, shm_mq_iovec *iov, int n)
{
	if (shm_mq_sendv(w->out, iov, n, false, true) == SHM_MQ_SUCCESS)
		return NULL;
	while (!w->gone)
		(void) await_worker(w, -1);
	return w->error;
}

/*
 * Starts the worker of mp's call, in a DSM segment with its two queues,
 * all of it kept (mp->cxt, a pinned mapping) until mig_pg_outside_end.
 * When no worker slot is free, fails with 53400, or returns NULL when
 * quiet.  Looks nothing up: the caller may hold no snapshot.
 */
static Worker *
start_worker(MigPg *mp, bool quiet)
{
	MemoryContext old = MemoryContextSwitchTo(mp->cxt);
	Worker	   *w = palloc0(sizeof(Worker));
	shm_toc_estimator est;
	Size		size;
	shm_toc    *toc;
	shm_mq	   *to_worker,
			   *to_caller;
	BackgroundWorker worker;
	const char *at = GetConfigOption("migrate.crash_at", true, false);

	if (call_worker != NULL)
	{
		/* one that failed before: gone */
		dsm_detach(call_worker->seg);
		call_worker = NULL;
	}
	shm_toc_initialize_estimator(&est);
	shm_toc_estimate_chunk(&est, sizeof(MigWorkerFixed));
	shm_toc_estimate_chunk(&est, MIG_QUEUE_SIZE);
	shm_toc_estimate_chunk(&est, MIG_QUEUE_SIZE);
	shm_toc_estimate_keys(&est, 3);
	size = shm_toc_estimate(&est);

	w->mp = mp;
	w->seg = dsm_create(size, 0);
	dsm_pin_mapping(w->seg);	/* it outlives the call's commits */
	toc = shm_toc_create(MIG_WORKER_MAGIC, dsm_segment_address(w->seg), size);
	w->fixed = shm_toc_allocate(toc, sizeof(MigWorkerFixed));
	memset(w->fixed, 0, sizeof(MigWorkerFixed));
	w->fixed->database = MyDatabaseId;
	w->fixed->authenticated_user = GetAuthenticatedUserId();
	w->fixed->owner = mp->owner;
	w->fixed->v03 = mp->v03;
	strlcpy(w->fixed->progress, mp->progress, sizeof(w->fixed->progress));
	w->fixed->has_tenants = mp->has_tenants;
	strlcpy(w->fixed->tenant_lit, mp->tenant_lit, sizeof(w->fixed->tenant_lit));
	w->fixed->crash_at = at ? atoi(at) : 0;
	shm_toc_insert(toc, MIG_KEY_FIXED, w->fixed);
	to_worker = shm_mq_create(shm_toc_allocate(toc, MIG_QUEUE_SIZE), MIG_QUEUE_SIZE);
	shm_toc_insert(toc, MIG_KEY_TO_WORKER, to_worker);
	shm_mq_set_sender(to_worker, MyProc);
	to_caller = shm_mq_create(shm_toc_allocate(toc, MIG_QUEUE_SIZE), MIG_QUEUE_SIZE);
	shm_toc_insert(toc, MIG_KEY_TO_CALLER, to_caller);
	shm_mq_set_receiver(to_caller, MyProc);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "migrate");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "migrate_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "migrate worker for PID %d", MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, MIG_WORKER_TYPE);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(w->seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &w->handle))
	{
		dsm_detach(w->seg);
		MemoryContextSwitchTo(old);
		if (quiet)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker to run the statements"),
				 errdetail("The statements of a migration that runs outside a transaction run in a background worker, and all max_worker_processes = %d slots are in use.",
						   max_worker_processes)));
	}
	w->out = shm_mq_attach(to_worker, w->seg, w->handle);
	w->in = shm_mq_attach(to_caller, w->seg, w->handle);
	if (!exit_callback_set)
	{
		before_shmem_exit(terminate_on_exit, (Datum) 0);
		exit_callback_set = true;
	}
	call_worker = w;
	MemoryContextSwitchTo(old);
	return w;
}

/*
 * The pid of a migrate worker of this database that is not this call's,
 * or 0: read from the backends' status, as pg_stat_activity does, without
 * a query (and so without a snapshot).
 */
static pid_t
orphan_worker(void)
{
	pid_t		mine = 0;
	int			n;

	if (call_worker != NULL && !call_worker->gone)
		(void) GetBackgroundWorkerPid(call_worker->handle, &mine);
	pgstat_clear_backend_activity_snapshot();
	n = pgstat_fetch_stat_numbackends();
	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *be = local ? &local->backendStatus : NULL;
		const char *type;

		if (be == NULL || be->st_backendType != B_BG_WORKER ||
			be->st_databaseid != MyDatabaseId || be->st_procpid == mine)
			continue;
		type = GetBackgroundWorkerTypeByPid(be->st_procpid);
		if (type != NULL && strcmp(type, MIG_WORKER_TYPE) == 0)
			return be->st_procpid;
	}
	return 0;
}

void
mig_pg_outside_prestart(MigPg *mp)
{
	if (call_worker != NULL || !mp->procedure || !mp->session_locked ||
		orphan_worker() != 0)
		return;
	(void) start_worker(mp, true);
}

void
mig_pg_outside_end(MigPg *mp, bool clean)
{
	Worker	   *w = call_worker;

	if (w == NULL || w->mp != mp)
		return;
	call_worker = NULL;
	/*
	 * At the end of the call the worker, idle, exits by itself once its
	 * queue is detached (the next call's wait_for_orphans waits the few
	 * milliseconds that takes, if need be); after an error it is told to.
	 */
	if (!clean && !w->gone)
		TerminateBackgroundWorker(w->handle);
	dsm_detach(w->seg);
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
 * earlier call left (exiting after the call ended, or stopping after it was
 * cancelled or terminated); fails with 55P03 if one remains.  Once this
 * call has a worker of its own, there is none: it looked before.
 */
static int
wait_for_orphans(mig_err *err)
{
	long		waited = 0;
	pid_t		pid;

	/* this call's own worker: it looked before it started it */
	if (call_worker != NULL && !call_worker->gone)
		return MIG_OK;
	while ((pid = orphan_worker()) != 0)
	{
		if (waited >= ORPHAN_WAIT_MS)
		{
			mig_err_set(err, MIG_SQLSTATE_LOCK,
						"another connection is applying it outside a transaction");
			mig_err_detail(err, "Background worker %d is still running a migration statement in this database.",
						   (int) pid);
			mig_err_hint(err, "Call migrate_run again when it is done.");
			return MIG_ERROR;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ORPHAN_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited += ORPHAN_POLL_MS;
	}
	return MIG_OK;
}

/*
 * Offsets of the script (bytes of s->sql, UTF-8) and of mp->text (in the
 * server encoding) at resume points, which are 0, the end, or just after
 * a semicolon: every server encoding keeps ASCII bytes as they are and
 * uses none inside a character of its own, so the k-th ';' of one text is
 * the k-th of the other.  A PosMap walks both from the start, forwards.
 */
typedef struct PosMap
{
	const MigPg *mp;
	const mig_script *s;
	int			tpos;			/* in mp->text */
	size_t		spos;			/* the same point in s->sql */
} PosMap;

/* The offset in s->sql of resume point off of mp->text (at or after the
 * last one asked). */
static size_t
script_pos(PosMap *m, int off)
{
	if (!m->mp->converted)
		return (size_t) off;
	if (off >= m->mp->text_len)
		return m->s->len;
	Assert(off == 0 || m->mp->text[off - 1] == ';');
	while (m->tpos < off)
	{
		if (m->mp->text[m->tpos++] == ';')
		{
			const char *semi = memchr(m->s->sql + m->spos, ';', m->s->len - m->spos);

			m->spos = semi ? (size_t) (semi - m->s->sql) + 1 : m->s->len;
		}
	}
	return m->spos;
}

/* The offset in mp->text of script offset off, or -1 when off is not a
 * resume point of the script. */
static int
text_pos(const MigPg *mp, const mig_script *s, int64 off)
{
	size_t		semis = 0;
	int			t = 0;

	if (off < 0 || (uint64) off > s->len)
		return -1;
	if ((uint64) off == s->len)
		return mp->text_len;
	if (off > 0 && s->sql[off - 1] != ';')
		return -1;
	if (!mp->converted)
		return (int) off;
	for (int64 i = 0; i < off; i++)
		if (s->sql[i] == ';')
			semis++;
	while (semis > 0 && t < mp->text_len)
		if (mp->text[t++] == ';')
			semis--;
	return t;
}

/*
 * The resume point after statement rs (next is the one after it, or
 * NULL): where the next statement begins, or just after the semicolon
 * that ends the last one (so that every byte of the statement and the
 * semicolon are covered: an edit before it is an edit of what ran).
 */
static int
resume_point(const MigPg *mp, const RawStmt *rs, const RawStmt *next)
{
	int			end;

	if (next != NULL)
		return next->stmt_location;
	if (rs->stmt_len == 0)
		return mp->text_len;
	end = rs->stmt_location + rs->stmt_len;
	return end < mp->text_len && mp->text[end] == ';' ? end + 1 : mp->text_len;
}

/* "crc32:xxxxxxxx" of crc into out[16], as mig_checksum writes it. */
static void
crc_text(unsigned long crc, char out[16])
{
	snprintf(out, 16, "crc32:%08lx", crc & 0xffffffffUL);
}

/* How far an earlier call got with a script (progress_start). */
typedef struct Resume
{
	bool		found;			/* a progress row was there */
	bool		interrupted;	/* the call that ran it ended while a
								 * statement that commits by itself ran */
	int64		offset;			/* resume point, bytes of s->sql */
	int			start;			/* the same in mp->text */
	int64		done;			/* statements done */
	unsigned long crc;			/* of s->sql[0..offset) */
} Resume;

/*
 * Reads how far an earlier call got with s, as the owner of the
 * extension's tables, and checks that every byte of the script before the
 * point it resumes at is unchanged (55000 when not).
 */
static int
progress_start_owner(MigPg *mp, void *arg, mig_err *err)
{
	Resume	   *r = (Resume *) arg;
	const mig_script *s = mp->script;
	Oid			types[2] = {TEXTOID, BOOLOID};
	Datum		values[2];
	int			ret;
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *sum;
	char	   *last;
	bool		isnull;
	char		now[16];

	memset(r, 0, sizeof(*r));
	r->crc = crc32_z(0L, Z_NULL, 0);
	values[0] = mig_pg_text_datum(s->version, strlen(s->version));
	values[1] = BoolGetDatum(s->down != 0);
	ret = SPI_execute_with_args(psprintf(mp->v03 ?
										 "SELECT done_checksum, next_offset, statements_done, last_error FROM %s "
										 "WHERE version OPERATOR(pg_catalog.=) $1 AND %s AND down OPERATOR(pg_catalog.=) $2" :
										 "SELECT done_checksum, next_offset, statements_done, last_error FROM %s "
										 "WHERE version OPERATOR(pg_catalog.=) $1 AND %s", mp->progress,
										 mig_pg_tenant_cond(mp)),
								mp->v03 ? 2 : 1, types, values, NULL, true, 0);
	spi_check(ret, SPI_OK_SELECT, "read");
	if (SPI_processed != 1)
		return MIG_OK;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	sum = SPI_getvalue(tup, desc, 1);
	last = SPI_getvalue(tup, desc, 4);
	r->found = true;
	r->offset = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	r->done = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	r->interrupted = last != NULL && strncmp(last, MIG_INTERRUPTED_MARK, strlen(MIG_INTERRUPTED_MARK)) == 0;
	r->start = text_pos(mp, s, r->offset);
	if (r->start >= 0)
	{
		r->crc = crc32_z(r->crc, (const Bytef *) s->sql, (size_t) r->offset);
		crc_text(r->crc, now);
	}
	if (sum == NULL || r->start < 0 || strcmp(now, sum) != 0)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"its statements that ran outside a transaction have changed since");
		mig_err_detail(err, INT64_FORMAT " of its statements ran (its first " INT64_FORMAT " bytes).",
					   r->done, r->offset);
		mig_err_hint(err, "Restore those statements as they ran; the failed statement and those after it may change.");
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* Notes the error e beside the progress of s (when it has a row: a
 * statement that failed in its transaction before any ran left nothing). */
static void
progress_error(MigPg *mp, const mig_script *s, const ErrorData *e)
{
	Oid			types[3] = {TEXTOID, TEXTOID, BOOLOID};
	Datum		values[3];
	int			ret;
	MigPgSave	save;

	mig_pg_owner_enter(mp, mp->owner, true, &save);
	values[0] = mig_pg_text_datum(s->version, strlen(s->version));
	values[1] = CStringGetTextDatum(psprintf("%s: %s", unpack_sql_state(e->sqlerrcode),
											 e->message ? e->message : "?"));
	values[2] = BoolGetDatum(s->down != 0);
	ret = SPI_execute_with_args(psprintf(mp->v03 ?
										 "UPDATE %s SET last_error = $2, updated_at = pg_catalog.now() "
										 "WHERE version OPERATOR(pg_catalog.=) $1 AND %s AND down OPERATOR(pg_catalog.=) $3" :
										 "UPDATE %s SET last_error = $2, updated_at = pg_catalog.now() "
										 "WHERE version OPERATOR(pg_catalog.=) $1 AND %s", mp->progress,
										 mig_pg_tenant_cond(mp)),
								mp->v03 ? 3 : 2, types, values, NULL, false, 0);
	spi_check(ret, SPI_OK_UPDATE, "update");
	mig_pg_owner_leave(&save);
}

int
mig_pg_forget_down_progress(MigPg *mp, const char *version, mig_err *err)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			ret;

	values[0] = mig_pg_text_datum(version, strlen(version));
	ret = SPI_execute_with_args(psprintf("DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1 "
										 "AND %s AND down", mp->progress, mig_pg_tenant_cond(mp)),
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
	values[0] = mig_pg_text_datum(version, strlen(version));
	ret = SPI_execute_with_args(psprintf("DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
										 mp->progress, mig_pg_tenant_cond(mp)),
								1, types, values, NULL, false, 0);
	spi_check(ret, SPI_OK_DELETE, "delete from");
	pfree(mp->outside_version);
	mp->outside_version = NULL;
	return MIG_OK;
}

/* ---- running the script ---- */

/*
 * The lock_timeout a statement runs with, in ms, or -1 for the session's:
 * the rail's for statements whose locks would queue the application's
 * queries behind them; the session's for those that take only SHARE
 * UPDATE EXCLUSIVE and then wait for older transactions by design
 * (CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY, VACUUM), which
 * the rail would only make fail.
 */
static int
statement_rail(MigPg *mp, Node *stmt)
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
		return -1;
	return mp->rail_timeout_ms;
}

/* Commits, and lets go of the catalog snapshot the next transaction would
 * otherwise keep: while a worker runs, this backend advertises no xmin. */
static void
commit_and_let_go(MigPg *mp)
{
	mig_pg_commit(mp);
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
	if (e->sqlerrcode == ERRCODE_INVALID_TRANSACTION_TERMINATION && e->hint == NULL)
		e->hint = pstrdup("Each statement of a migration that runs outside a transaction commits together with its progress: a procedure or DO block that commits cannot run in one.");
	ThrowErrorData(e);
	/* ThrowErrorData returns only for levels below ERROR */
	elog(ERROR, "migration statement failed");
}

/* Fills err when the statement the previous call ended in is a CREATE
 * INDEX CONCURRENTLY without an index name (see maybe_done). */
static int
refuse_unnamed(MigPg *mp, const mig_script *s, Node *stmt, int off, mig_err *err)
{
	if (!IsA(stmt, IndexStmt) || !((IndexStmt *) stmt)->concurrent ||
		((IndexStmt *) stmt)->idxname != NULL)
		return MIG_OK;
	mig_err_set(err, MIG_SQLSTATE_STATE,
				"cannot tell whether the CREATE INDEX CONCURRENTLY the previous call ran completed");
	mig_err_detail(err, "The call ended while the statement ran. It names no index, so an index it may have built cannot be told from another, and running it again could build a second one.");
	mig_err_hint(err, "Name the index in the statement: if it built one (valid or not), with that index's name. The next call then keeps it if it is valid, or drops it and builds it again.");
	err->offset = mig_pg_script_offset(mp, off);
	return MIG_ERROR;
}


/*
 * Sends the worker the migration that begins: who runs its statements
 * (for a stored down script, the role that stored it), the caller's
 * session as it is now, the names of its progress row; NULL, or the error
 * of a worker that has gone.
 */
static ErrorData *
begin_migration(Worker *w, MigPg *mp, const MigBeginMsg *who, const char *names,
				Size names_len)
{
	MigBeginMsg b = *who;
	Size		guc_len;
	Size		lib_len = EstimateLibraryStateSpace();
	char	   *guc;
	char	   *lib = palloc(lib_len);
	shm_mq_iovec iov[5];
	ErrorData  *e;
	int			nest;

	/* a tenant's migration runs in its schema, in the worker too */
	nest = mig_pg_tenant_path_enter(mp);
	guc_len = EstimateGUCStateSpace();
	guc = MemoryContextAlloc(mp->cxt, guc_len);
	SerializeGUCState(guc_len, guc);
	mig_pg_tenant_path_leave(nest);
	SerializeLibraryState(lib_len, lib);
	b.names_len = (uint32) names_len;
	b.guc_len = (uint32) guc_len;
	b.lib_len = (uint32) lib_len;
	/* the caller's settings as for the migration before: the worker keeps
	 * them */
	if (w->last_guc != NULL && w->last_guc_len == guc_len &&
		memcmp(w->last_guc, guc, guc_len) == 0)
	{
		b.guc_len = 0;
		pfree(guc);
	}
	else
	{
		if (w->last_guc != NULL)
			pfree(w->last_guc);
		w->last_guc = guc;
		w->last_guc_len = guc_len;
	}
	iov[0].data = "B";
	iov[0].len = 1;
	iov[1].data = (const char *) &b;
	iov[1].len = sizeof(b);
	iov[2].data = names;
	iov[2].len = names_len;
	iov[3].data = w->last_guc;
	iov[3].len = b.guc_len;
	iov[4].data = lib;
	iov[4].len = lib_len;
	w->fixed->crash_points = mp->crash_points;
	w->reported = -1;
	e = send_parts(w, iov, 5);
	pfree(lib);
	return e;
}

/* A statement sent to the worker and not yet reported done. */
typedef struct InFlight
{
	int64		done;			/* statements done once it is */
	int			off;			/* where it starts in mp->text */
	char	   *stmt;			/* its text */
	Size		cost;			/* its room in the queue */
} InFlight;

/* Sends the worker statement m (text sql); NULL, or the error of a worker
 * that has gone. */
static ErrorData *
send_statement(Worker *w, const MigStmtMsg *m, const char *sql)
{
	shm_mq_iovec iov[3];

	iov[0].data = "S";
	iov[0].len = 1;
	iov[1].data = (const char *) m;
	iov[1].len = sizeof(MigStmtMsg);
	iov[2].data = sql;
	iov[2].len = strlen(sql) + 1;
	return send_parts(w, iov, 3);
}

/* Waits for the oldest statement in flight, f, to be done (NULL), or for
 * the worker's error; its notices and error get f's line. */
static ErrorData *
await_statement(Worker *w, MigPg *mp, const InFlight *f)
{
	ErrorData  *e;

	mp->stmt_off = f->off;
	e = await_worker(w, f->done);
	mp->crash_points = w->fixed->crash_points;
	return e;
}

/*
 * host->exec_outside (procedure mode): see the comment at the top.  On a
 * failing statement its error is raised (after it is noted beside the
 * progress and committed), with the file, version and line.
 */
int
mig_pg_exec_outside(void *ctx, const mig_script *s, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = CurrentMemoryContext;
	ErrorContextCallback cb;
	List	   *stmts;
	ListCell   *lc;
	Resume		resume;
	MigBeginMsg who;
	StringInfoData names;
	Oid			save_user;
	int			save_sec;
	Worker	   *volatile w = NULL;
	ErrorData  *volatile error = NULL;
	char	   *volatile failed_stmt = NULL;
	InFlight   *flight;
	PosMap		map;
	int			rc;

	Assert(mp->procedure);
	mig_pg_script_begin(mp, s, &cb);
	stmts = raw_parser(mp->text, RAW_PARSE_DEFAULT);

	rc = wait_for_orphans(err);
	memset(&resume, 0, sizeof(resume));
	resume.crc = crc32_z(0L, Z_NULL, 0);
	/* under the lock since the call read them, no row but its own */
	if (rc == MIG_OK && !mp->no_progress)
		rc = mig_pg_as_owner(mp, progress_start_owner, &resume, err);
	MemoryContextSwitchTo(mp->scratch);
	if (rc == MIG_OK && resume.interrupted)
	{
		foreach(lc, stmts)
		{
			RawStmt    *rs = lfirst_node(RawStmt, lc);

			if (rs->stmt_location < resume.start)
				continue;
			rc = refuse_unnamed(mp, s, rs->stmt,
								mig_pg_statement_start(mp, rs->stmt_location), err);
			break;
		}
	}
	if (rc != MIG_OK)
	{
		mig_pg_script_done(mp, &cb, old);
		return rc;
	}

	/*
	 * What takes a look-up, before the commit after which this backend
	 * must hold no snapshot: who runs the statements (a stored down
	 * script: the role that stored it, checked here), the names.
	 */
	memset(&who, 0, sizeof(who));
	who.session_user = GetSessionUserId();
	who.session_superuser = GetSessionUserIsSuperuser();
	who.role = GetCurrentRoleId();
	GetUserIdAndSecContext(&save_user, &save_sec);
	if (s->down)
		mig_pg_down_role_enter(mp);
	GetUserIdAndSecContext(&who.user, &who.sec_context);
	SetUserIdAndSecContext(save_user, save_sec);
	who.switch_user = who.user != GetOuterUserId() || who.sec_context != 0;
	who.down = s->down != 0;
	who.resuming = resume.found;
	initStringInfo(&names);
	appendStringInfoString(&names, TextDatumGetCString(mig_pg_text_datum(s->version, strlen(s->version))));
	appendStringInfoChar(&names, '\0');
	appendStringInfoString(&names, mig_pg_report_text(s->version));
	appendStringInfoChar(&names, '\0');
	appendStringInfoString(&names, mig_pg_report_text(s->file));
	appendStringInfoChar(&names, '\0');

	/* the migrations before this one, for good; from here on this backend
	 * holds only the session lock */
	commit_and_let_go(mp);
	MemoryContextSwitchTo(mp->scratch);

	memset(&map, 0, sizeof(map));
	map.mp = mp;
	map.s = s;
	flight = palloc0(sizeof(InFlight) * (list_length(stmts) + 1));

	/*
	 * The statements are fed to the worker ahead of their results, as many
	 * as fit in half its queue (so that sending one never waits while the
	 * worker may be waiting to send a notice): it runs them back to back,
	 * and this backend collects what they did.  A statement that fails
	 * ends the worker, and those queued after it never run.
	 */
	PG_TRY();
	{
		unsigned long crc = resume.crc;
		MigStmtMsg	m;
		int			head = 0,
					tail = 0;
		Size		queued = 0;

		memset(&m, 0, sizeof(m));
		m.next_offset = resume.offset;
		m.done = resume.done;
		crc_text(crc, m.sum);
		foreach(lc, stmts)
		{
			RawStmt    *rs = lfirst_node(RawStmt, lc);
			RawStmt    *next = lnext(stmts, lc) ? lfirst_node(RawStmt, lnext(stmts, lc)) : NULL;
			int			off,
						end;
			char	   *stmt;
			size_t		to;
			int			rail;

			if (rs->stmt_location < resume.start)
				continue;
			CHECK_FOR_INTERRUPTS();
			stmt = mig_pg_statement_text(mp, rs, &off, &end);
			mp->rail_attempt = 1;
			/* the statement a failure is of, unless one is in flight */
			mp->stmt_off = off;
			failed_stmt = stmt;
			if (w == NULL)
			{
				w = call_worker != NULL && !call_worker->gone ? call_worker : start_worker(mp, false);
				if ((error = begin_migration(w, mp, &who, names.data, names.len)) != NULL)
					break;
			}
			m.prev_offset = m.next_offset;
			m.prev_done = m.done;
			memcpy(m.prev_sum, m.sum, sizeof(m.sum));
			to = script_pos(&map, resume_point(mp, rs, next));
			crc = crc32_z(crc, (const Bytef *) s->sql + m.prev_offset,
						  to - (size_t) m.prev_offset);
			m.next_offset = (int64) to;
			m.done++;
			crc_text(crc, m.sum);
			m.line = mig_script_line(s, (size_t) mig_pg_script_offset(mp, off));
			m.flags = (runs_alone(rs->stmt) ? MIG_STMT_ALONE : 0) |
				(rs->stmt_location == resume.start && resume.interrupted ? MIG_STMT_MAYBE_DONE : 0);
			rail = statement_rail(mp, rs->stmt);
			if (rail >= 0)
			{
				m.flags |= MIG_STMT_RAIL;
				m.rail_ms = rail;
			}
			flight[tail].done = m.done;
			flight[tail].off = off;
			flight[tail].stmt = stmt;
			flight[tail].cost = MAXALIGN(1 + sizeof(MigStmtMsg) + strlen(stmt) + 1) + sizeof(Size);
			while (head < tail && queued + flight[tail].cost > MIG_QUEUE_SIZE / 2 &&
				   (error = await_statement(w, mp, &flight[head])) == NULL)
			{
				queued -= flight[head].cost;
				pfree(flight[head++].stmt);
			}
			if (error == NULL && (error = send_statement(w, &m, stmt)) == NULL)
				queued += flight[tail++].cost;
			if (error != NULL)
				break;
		}
		while (error == NULL && head < tail &&
			   (error = await_statement(w, mp, &flight[head])) == NULL)
			head++;
		/* the statement the worker was running, if one was in flight */
		while (error != NULL && head < tail && flight[head].done <= w->reported)
			head++;
		if (error != NULL && head < tail)
		{
			mp->stmt_off = flight[head].off;
			failed_stmt = flight[head].stmt;
		}
	}
	PG_CATCH();
	{
		/* a cancel or any error here: the worker must stop with us */
		if (w != NULL && !w->gone)
		{
			w->gone = true;
			TerminateBackgroundWorker(w->handle);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(mp->scratch);
	if (error != NULL)
	{
		progress_error(mp, s, error);
		commit_and_let_go(mp);
		MemoryContextSwitchTo(mp->scratch);
		raise_worker_error(error, failed_stmt);
	}
	mp->stmt_off = -1;
	if (mp->outside_version != NULL)
		pfree(mp->outside_version);
	mp->outside_version = MemoryContextStrdup(mp->cxt, s->version);
	mig_pg_script_done(mp, &cb, old);
	return MIG_OK;
}
