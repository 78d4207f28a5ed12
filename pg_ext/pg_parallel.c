/*
 * pg_parallel.c -- parallel=N of CALL migrate_run_each: the tenants of a
 * fan-out migrated by N dynamic background workers at once.
 *
 *   CALL migrate_run_each('/srv/app/migrations', ARRAY['t1', 't2', ...],
 *                         'parallel=4, on_error=continue');
 *
 * The leader (the CALL's backend) puts in one DSM segment what every
 * worker needs: the folder (its path, or the archive's or JSON object's
 * bytes), apply's options, the tenants, the caller's session (libraries,
 * settings, session user and SET ROLE), a shared counter of the next
 * tenant to take, a stop flag, and a result slot per tenant.  It starts
 * up to N workers (bgw_library_name is this library: no
 * shared_preload_libraries), then waits on its latch, passing on a
 * progress NOTICE per tenant done, until every worker has exited.
 *
 * A worker connects to the caller's database as the caller's
 * authenticated user (the role that logged in: never the bootstrap
 * superuser) and becomes the caller's session exactly as the worker of
 * migrations outside a transaction does (mig_pg_become_caller,
 * pg_worker.c), so that what it runs, it runs as the caller, with the
 * caller's rights and no more: a role calling with parallel=N can do
 * nothing it could not do serially.  Then it takes tenants one at a time:
 * each in a transaction of its own, applied as one tenant of
 * migrate_apply_each (the tenant's checks, its own migration lock --
 * so that two fan-outs, serial or parallel, apply each tenant once -- its
 * history, the call log), committed, its result written to its slot.  A
 * failure is rolled back whole, its SQLSTATE and error (with the file and
 * line) written to the slot, and with on_error=stop the stop flag is set:
 * no worker takes another tenant.
 *
 * A tenant whose folder has a migration that must run outside a
 * transaction cannot run in one (0A000, refused before anything runs):
 * the worker leaves it to the leader, which runs such tenants serially
 * after the workers, as migrate_run_each does without parallel.  So do
 * the tenants no worker took because no worker could start.
 *
 * A cancel of the leader (or its error, or its exit) terminates the
 * workers: each tenant a worker was migrating rolls back whole, the
 * others are done or untouched, and the next call does what is missing.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "pg_host.h"
#include "pg_outside.h"
#include "pg_parallel.h"

#define PAR_MAGIC		0x6d696770	/* "migp" */
#define PAR_KEY_FIXED	1
#define PAR_KEY_STATE	2			/* settings, then libraries */
#define PAR_KEY_SOURCE	3			/* path (NUL-terminated) or varlena */
#define PAR_KEY_OPTIONS 4			/* NUL-terminated */
#define PAR_KEY_TENANTS 5			/* n offsets, then the names */
#define PAR_KEY_SLOTS	6
#define PAR_WORKER_TYPE "migrate parallel worker"

/* how long the leader sleeps between two looks when nothing wakes it */
#define PAR_POLL_MS		1000

enum
{
	SOURCE_PATH,
	SOURCE_ARCHIVE,
	SOURCE_JSON
};

enum
{
	SLOT_FREE = 0,				/* no worker took it */
	SLOT_TAKEN,					/* a worker is migrating it */
	SLOT_DONE					/* its result is written */
};

/* The segment's fixed part. */
typedef struct ParFixed
{
	Oid			database;
	Oid			authenticated_user; /* the workers connect as this role */
	Oid			session_user;
	bool		session_superuser;
	Oid			role;			/* SET ROLE, or InvalidOid */
	Oid			fn_oid;
	char		fname[NAMEDATALEN];
	int			source_kind;
	bool		has_options;
	int			n;				/* tenants */
	int			first;			/* the first a worker may take */
	bool		on_error_continue;
	Size		guc_len;
	PGPROC	   *leader;			/* whose latch a worker sets */
	pg_atomic_uint32 next;		/* the next tenant to take */
	pg_atomic_uint32 stop;		/* no worker takes another */
} ParFixed;

/* One tenant's result. */
typedef struct ParSlot
{
	pg_atomic_uint32 state;		/* SLOT_* */
	int			worker;			/* which took it */
	MigEachStatus status;
	int64		applied;
	char		sqlstate[6];
	char		error[MIG_EACH_ERROR_MAX];
} ParSlot;

/* The workers of the fan-out running in this backend, for its exit. */
static BackgroundWorkerHandle **running = NULL;
static int	n_running = 0;
static bool exit_callback_set = false;

/* Terminates every worker still running. */
static void
terminate_workers(void)
{
	for (int i = 0; i < n_running; i++)
		if (running[i] != NULL)
			TerminateBackgroundWorker(running[i]);
}

/* The leader exits (FATAL, pg_terminate_backend): its workers stop too. */
static void
terminate_on_exit(int code, Datum arg)
{
	terminate_workers();
	n_running = 0;
	running = NULL;
}

void
mig_pg_each_notice(const char *tenant, const MigEachOutcome *o)
{
	switch (o->status)
	{
		case MIG_EACH_APPLIED:
			ereport(NOTICE,
					(errmsg("tenant %s: applied " INT64_FORMAT " migration%s", tenant,
							o->applied, o->applied == 1 ? "" : "s")));
			break;
		case MIG_EACH_UP_TO_DATE:
			ereport(NOTICE, (errmsg("tenant %s: up to date", tenant)));
			break;
		case MIG_EACH_SKIPPED_LOCKED:
			ereport(NOTICE, (errmsg("tenant %s: skipped, its migration lock is held", tenant)));
			break;
		case MIG_EACH_FAILED:
			{
				/* the error's first line: its message */
				const char *e = o->error ? o->error : "";
				const char *nl = strchr(e, '\n');

				ereport(NOTICE,
						(errmsg("tenant %s: failed: %.*s", tenant,
								nl ? (int) (nl - e) : (int) strlen(e), e)));
				break;
			}
		default:
			break;
	}
}

/* The error text of e for a slot: message, detail and context, cut to fit
 * (on a character boundary). */
static void
slot_error(ParSlot *slot, ErrorData *e)
{
	char	   *text = psprintf("%s%s%s%s%s", e->message ? e->message : "",
								e->detail ? "\nDETAIL:  " : "", e->detail ? e->detail : "",
								e->context ? "\nCONTEXT:  " : "", e->context ? e->context : "");
	int			len = pg_mbcliplen(text, strlen(text), MIG_EACH_ERROR_MAX - 1);

	memcpy(slot->error, text, len);
	slot->error[len] = '\0';
	strlcpy(slot->sqlstate, unpack_sql_state(e->sqlerrcode), sizeof(slot->sqlstate));
	pfree(text);
}

/* ---- the worker ---- */

/* What a worker read from the segment, in its own memory. */
typedef struct ParWorker
{
	ParFixed   *fixed;
	ParSlot    *slots;
	const uint32 *offsets;
	const char *names;
	const char *path;
	struct varlena *data;
	const char *options;
	int			index;
} ParWorker;

/* Runs tenant i in a transaction of its own; writes its slot. */
static void
run_tenant(ParWorker *pw, int i, MemoryContext cxt)
{
	ParSlot    *slot = &pw->slots[i];
	const char *tenant = pw->names + pw->offsets[i];
	ErrorData  *volatile edata = NULL;
	int64		count = 0;
	bool		skipped = false;

	slot->worker = pw->index;
	pg_atomic_write_u32(&slot->state, SLOT_TAKEN);
	MemoryContextReset(cxt);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* the lock comes before the history is read: READ COMMITTED, as
	 * migrate_apply_each insists on */
	XactIsoLevel = XACT_READ_COMMITTED;
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, psprintf("migrate_run_each: tenant %s", tenant));
	PG_TRY();
	{
		mig_pg_each_apply_one(pw->fixed->fn_oid, pw->fixed->fname, pw->path,
							  pw->fixed->source_kind == SOURCE_ARCHIVE ? pw->data : NULL,
							  pw->fixed->source_kind == SOURCE_JSON ? pw->data : NULL,
							  pw->options, tenant, &count, &skipped);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (edata == NULL)
	{
		slot->applied = count;
		slot->status = skipped ? MIG_EACH_SKIPPED_LOCKED :
			count > 0 ? MIG_EACH_APPLIED : MIG_EACH_UP_TO_DATE;
	}
	else
	{
		if (edata->sqlerrcode == ERRCODE_FEATURE_NOT_SUPPORTED)
		{
			/* a migration that must run outside a transaction, refused
			 * before anything ran: the leader runs the tenant */
			slot->status = MIG_EACH_SERIAL;
		}
		else
		{
			slot->status = MIG_EACH_FAILED;
			slot_error(slot, edata);
			if (!pw->fixed->on_error_continue)
				pg_atomic_write_u32(&pw->fixed->stop, 1);
		}
	}
	pg_write_barrier();
	pg_atomic_write_u32(&slot->state, SLOT_DONE);
	SetLatch(&pw->fixed->leader->procLatch);

	/*
	 * The failed call's row in migrate_calls, now that it rolled back (the
	 * leader returns once this worker has exited: the row is there by
	 * then).  A failure to write it costs the row, not the tenant's result.
	 */
	if (edata != NULL)
	{
		PG_TRY();
		{
			mig_pg_call_log_flush();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
	}
}

/*
 * Entry point of a worker: attaches to the leader's segment, connects as
 * the caller's authenticated user, becomes the caller's session, then
 * takes tenants until there are none left or the stop flag is set.  Its
 * number is in bgw_extra.
 */
void
migrate_parallel_main(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	ParWorker	pw;
	const char *state;
	const char *src;
	MemoryContext cxt;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memset(&pw, 0, sizeof(pw));
	memcpy(&pw.index, MyBgworkerEntry->bgw_extra, sizeof(int));
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "migrate parallel worker");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		proc_exit(0);			/* the leader is gone already */
	toc = shm_toc_attach(PAR_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bad magic number in dynamic shared memory segment")));
	pw.fixed = shm_toc_lookup(toc, PAR_KEY_FIXED, false);
	pw.slots = shm_toc_lookup(toc, PAR_KEY_SLOTS, false);
	pw.offsets = shm_toc_lookup(toc, PAR_KEY_TENANTS, false);
	pw.names = (const char *) (pw.offsets + pw.fixed->n);
	state = shm_toc_lookup(toc, PAR_KEY_STATE, false);
	src = shm_toc_lookup(toc, PAR_KEY_SOURCE, false);

	BackgroundWorkerInitializeConnectionByOid(pw.fixed->database,
											  pw.fixed->authenticated_user, 0);
	/* the folder and options in this process's memory (they may be
	 * handed to code that keeps them) */
	if (pw.fixed->source_kind == SOURCE_PATH)
		pw.path = MemoryContextStrdup(TopMemoryContext, src);
	else
	{
		pw.data = MemoryContextAllocHuge(TopMemoryContext, VARSIZE_ANY(src));
		memcpy(pw.data, src, VARSIZE_ANY(src));
	}
	if (pw.fixed->has_options)
		pw.options = MemoryContextStrdup(TopMemoryContext,
										 shm_toc_lookup(toc, PAR_KEY_OPTIONS, false));
	mig_pg_call_log_keep = true;
	cxt = AllocSetContextCreate(TopMemoryContext, "migrate tenant", ALLOCSET_DEFAULT_SIZES);

	StartTransactionCommand();
	mig_pg_become_caller(state + pw.fixed->guc_len, state, pw.fixed->session_user,
						 pw.fixed->session_superuser, pw.fixed->role);
	CommitTransactionCommand();

	for (;;)
	{
		uint32		i;

		CHECK_FOR_INTERRUPTS();
		if (pg_atomic_read_u32(&pw.fixed->stop) != 0)
			break;
		i = pg_atomic_fetch_add_u32(&pw.fixed->next, 1);
		if (i >= (uint32) pw.fixed->n)
			break;
		run_tenant(&pw, (int) i, cxt);
	}
	SetLatch(&pw.fixed->leader->procLatch);
	dsm_detach(seg);
}

/* ---- the leader ---- */

/* Registers worker number index of segment seg; NULL when no slot is
 * free. */
static BackgroundWorkerHandle *
start_worker(dsm_segment *seg, int index)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "migrate");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "migrate_parallel_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "migrate parallel worker %d for PID %d",
			 index + 1, MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, PAR_WORKER_TYPE);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	memcpy(worker.bgw_extra, &index, sizeof(int));
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return NULL;
	return handle;
}

/* Copies slot i's result into a->out[i] and says so. */
static void
take_result(MigParallelArgs *a, ParSlot *slot, int i)
{
	MigEachOutcome *o = &a->out[i];

	pg_read_barrier();
	o->status = slot->status;
	o->applied = slot->applied;
	if (slot->status == MIG_EACH_FAILED)
	{
		strlcpy(o->sqlstate, slot->sqlstate, sizeof(o->sqlstate));
		o->error = pstrdup(slot->error);
	}
	mig_pg_each_notice(a->tenants[i], o);
}

/* Builds the segment of fan-out a; its parts in *fixed, *slots. */
static dsm_segment *
make_segment(MigParallelArgs *a, ParFixed **fixed_out, ParSlot **slots_out)
{
	shm_toc_estimator est;
	Size		guc_len = EstimateGUCStateSpace();
	Size		lib_len = EstimateLibraryStateSpace();
	Size		src_len;
	Size		names_len = 0;
	Size		size;
	dsm_segment *seg;
	shm_toc    *toc;
	ParFixed   *fixed;
	ParSlot    *slots;
	char	   *p;
	uint32	   *offsets;
	const void *src;

	if (a->path)
	{
		src = a->path;
		src_len = strlen(a->path) + 1;
	}
	else
	{
		src = a->archive ? (const void *) a->archive : (const void *) a->json;
		src_len = VARSIZE_ANY(src);
	}
	for (int i = 0; i < a->n; i++)
		names_len += strlen(a->tenants[i]) + 1;

	shm_toc_initialize_estimator(&est);
	shm_toc_estimate_chunk(&est, sizeof(ParFixed));
	shm_toc_estimate_chunk(&est, guc_len + lib_len);
	shm_toc_estimate_chunk(&est, src_len);
	shm_toc_estimate_chunk(&est, a->options ? strlen(a->options) + 1 : 1);
	shm_toc_estimate_chunk(&est, sizeof(uint32) * a->n + names_len);
	shm_toc_estimate_chunk(&est, mul_size(sizeof(ParSlot), a->n));
	shm_toc_estimate_keys(&est, 6);
	size = shm_toc_estimate(&est);

	seg = dsm_create(size, 0);
	toc = shm_toc_create(PAR_MAGIC, dsm_segment_address(seg), size);

	fixed = shm_toc_allocate(toc, sizeof(ParFixed));
	memset(fixed, 0, sizeof(ParFixed));
	fixed->database = MyDatabaseId;
	fixed->authenticated_user = GetAuthenticatedUserId();
	fixed->session_user = GetSessionUserId();
	fixed->session_superuser = GetSessionUserIsSuperuser();
	fixed->role = GetCurrentRoleId();
	fixed->fn_oid = a->fn_oid;
	strlcpy(fixed->fname, a->fname, sizeof(fixed->fname));
	fixed->source_kind = a->path ? SOURCE_PATH : a->archive ? SOURCE_ARCHIVE : SOURCE_JSON;
	fixed->has_options = a->options != NULL;
	fixed->n = a->n;
	fixed->first = a->first;
	fixed->on_error_continue = a->on_error_continue;
	fixed->guc_len = guc_len;
	fixed->leader = MyProc;
	pg_atomic_init_u32(&fixed->next, (uint32) a->first);
	pg_atomic_init_u32(&fixed->stop, 0);
	shm_toc_insert(toc, PAR_KEY_FIXED, fixed);

	p = shm_toc_allocate(toc, guc_len + lib_len);
	SerializeGUCState(guc_len, p);
	SerializeLibraryState(lib_len, p + guc_len);
	shm_toc_insert(toc, PAR_KEY_STATE, p);

	p = shm_toc_allocate(toc, src_len);
	memcpy(p, src, src_len);
	shm_toc_insert(toc, PAR_KEY_SOURCE, p);

	p = shm_toc_allocate(toc, a->options ? strlen(a->options) + 1 : 1);
	strcpy(p, a->options ? a->options : "");
	shm_toc_insert(toc, PAR_KEY_OPTIONS, p);

	offsets = shm_toc_allocate(toc, sizeof(uint32) * a->n + names_len);
	p = (char *) (offsets + a->n);
	names_len = 0;
	for (int i = 0; i < a->n; i++)
	{
		Size		len = strlen(a->tenants[i]) + 1;

		offsets[i] = (uint32) names_len;
		memcpy(p + names_len, a->tenants[i], len);
		names_len += len;
	}
	shm_toc_insert(toc, PAR_KEY_TENANTS, offsets);

	slots = shm_toc_allocate(toc, mul_size(sizeof(ParSlot), a->n));
	for (int i = 0; i < a->n; i++)
	{
		pg_atomic_init_u32(&slots[i].state, SLOT_FREE);
		slots[i].worker = -1;
		slots[i].status = MIG_EACH_PENDING;
	}
	shm_toc_insert(toc, PAR_KEY_SLOTS, slots);

	*fixed_out = fixed;
	*slots_out = slots;
	return seg;
}

/*
 * Waits until every worker has exited, passing on each tenant's result
 * as it comes (a->out, a NOTICE).  A slot taken by a worker that exited
 * without writing it (terminated, or failed outside a tenant) is failed.
 */
static void
wait_for_workers(MigParallelArgs *a, ParSlot *slots, BackgroundWorkerHandle **handles,
				 int nworkers)
{
	bool	   *reported = palloc0(sizeof(bool) * a->n);

	for (;;)
	{
		int			alive = 0;

		CHECK_FOR_INTERRUPTS();
		/* before the results: a worker seen stopped wrote all of its own */
		for (int w = 0; w < nworkers; w++)
		{
			pid_t		pid;

			if (handles[w] != NULL &&
				GetBackgroundWorkerPid(handles[w], &pid) != BGWH_STOPPED)
				alive++;
		}
		for (int i = a->first; i < a->n; i++)
		{
			if (reported[i])
				continue;
			if (pg_atomic_read_u32(&slots[i].state) == SLOT_DONE)
			{
				take_result(a, &slots[i], i);
				reported[i] = true;
			}
		}
		if (alive == 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 PAR_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	for (int i = a->first; i < a->n; i++)
	{
		if (reported[i])
			continue;
		if (pg_atomic_read_u32(&slots[i].state) == SLOT_TAKEN)
		{
			MigEachOutcome *o = &a->out[i];

			o->status = MIG_EACH_FAILED;
			strlcpy(o->sqlstate, "57P01", sizeof(o->sqlstate));
			o->error = psprintf("background worker %d of this call exited while it migrated the tenant: its transaction was rolled back",
								slots[i].worker + 1);
			mig_pg_each_notice(a->tenants[i], o);
		}
	}
	pfree(reported);
}

bool
mig_pg_parallel_each(MigParallelArgs *a)
{
	ParFixed   *fixed;
	ParSlot    *slots;
	dsm_segment *seg;
	BackgroundWorkerHandle **handles;
	int			want = Min(a->workers, a->n - a->first);
	volatile int started = 0;
	bool		stopped;

	if (want <= 0)
		return false;
	if (GetUserId() != GetOuterUserId() || InSecurityRestrictedOperation() ||
		InLocalUserIdChange())
		elog(ERROR, "migrate_run_each cannot run tenants in parallel under a changed user");

	seg = make_segment(a, &fixed, &slots);
	handles = MemoryContextAllocZero(TopMemoryContext, sizeof(*handles) * want);
	if (!exit_callback_set)
	{
		before_shmem_exit(terminate_on_exit, (Datum) 0);
		exit_callback_set = true;
	}
	running = handles;
	n_running = want;

	PG_TRY();
	{
		for (int w = 0; w < want; w++)
		{
			handles[w] = start_worker(seg, w);
			if (handles[w] == NULL)
				break;
			started++;
		}
		if (started == 0)
			ereport(NOTICE,
					(errmsg("no background worker could be started: migrating the tenants one at a time"),
					 errdetail("All max_worker_processes = %d slots are in use.", max_worker_processes)));
		else if (started < want)
			ereport(NOTICE,
					(errmsg("started %d of the %d background workers asked for", started, want),
					 errdetail("max_worker_processes = %d, and the other slots are in use.",
							   max_worker_processes)));
		if (started > 0)
			wait_for_workers(a, slots, handles, started);
	}
	PG_CATCH();
	{
		/* a cancel or an error: the workers stop too, each tenant they
		 * were migrating rolled back whole; wait for that, so that the
		 * caller who calls again finds them gone */
		HOLD_INTERRUPTS();
		terminate_workers();
		for (int w = 0; w < started; w++)
			(void) WaitForBackgroundWorkerShutdown(handles[w]);
		RESUME_INTERRUPTS();
		running = NULL;
		n_running = 0;
		pfree(handles);
		PG_RE_THROW();
	}
	PG_END_TRY();
	running = NULL;
	n_running = 0;
	for (int w = 0; w < started; w++)
		pfree(handles[w]);
	pfree(handles);

	stopped = pg_atomic_read_u32(&fixed->stop) != 0;
	for (int i = a->first; i < a->n; i++)
	{
		if (pg_atomic_read_u32(&slots[i].state) != SLOT_FREE)
			continue;
		/* no worker took it: stopped, or none could (start, or stay) */
		a->out[i].status = stopped ? MIG_EACH_NOT_REACHED : MIG_EACH_SERIAL;
	}
	dsm_detach(seg);
	return stopped;
}
