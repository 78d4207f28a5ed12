/*
 * pg_calls.c -- the call log: one row in @extschema@.migrate_calls per call
 * of a function that writes (migrate_apply, migrate_run, migrate_down,
 * migrate_run_down, migrate_down_to, migrate_repair, migrate_adopt,
 * migrate_baseline), so that a DBA can read what a scheduled job did.
 *
 *   a call that succeeds  writes its row in the unit of work that applies
 *                         (mig_pg_unlock, before the commit of procedure mode;
 *                         in function mode the caller's transaction, so a
 *                         caller that rolls back takes the row with it);
 *   a call that skips     (if_locked=skip) writes it at once;
 *   a call that fails     has its row written apart, by a short-lived
 *                         background worker, since the failed transaction
 *                         takes everything it wrote with it.
 *
 * migrate.call_log (all, changes -- calls that changed something or
 * failed -- or off) and migrate.call_log_days (rows older are deleted as
 * new ones are written; 0 keeps them all) say how much is kept.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pg_host.h"
#include "pg_parallel.h"

PGDLLEXPORT void migrate_log_worker_main(Datum main_arg);

/* A worker of parallel=N keeps a failed call's row (mig_pg_call_log_keep)
 * and writes it itself after the abort: the statement, and the owner of
 * the extension's tables, who writes it. */
bool		mig_pg_call_log_keep = false;
static char *kept_sql = NULL;
static Oid	kept_owner = InvalidOid;

enum
{
	CALL_LOG_OFF,
	CALL_LOG_CHANGES,
	CALL_LOG_ALL
};

static const struct config_enum_entry call_log_options[] = {
	{"all", CALL_LOG_ALL, false},
	{"changes", CALL_LOG_CHANGES, false},
	{"off", CALL_LOG_OFF, false},
	{NULL, 0, false}
};

static int	call_log = CALL_LOG_ALL;
static int	call_log_days = 90;

void
mig_pg_define_call_settings(void)
{
	DefineCustomEnumVariable("migrate.call_log",
							 "Which calls of the migrate functions that write are logged in migrate_calls.",
							 "all, changes (calls that changed something or failed) or off.",
							 &call_log, CALL_LOG_ALL, call_log_options, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("migrate.call_log_days",
							"Days migrate_calls keeps a row; 0 keeps them all.",
							NULL, &call_log_days, 90, 0, 36500, PGC_SUSET, 0,
							NULL, NULL, NULL);
}

void
mig_pg_call_begin(MigPg *mp, const char *fname, const char *source, const char *options)
{
	mp->call_fn = fname;
	mp->call_source = source ? MemoryContextStrdup(mp->cxt, source) : NULL;
	mp->call_options = options ? MemoryContextStrdup(mp->cxt, options) : NULL;
	mp->call_started = GetCurrentTimestamp();
	mp->call_count = 0;
	mp->call_committed = 0;
	mp->call_versions = NULL;
	mp->call_logged = false;
}

void
mig_pg_call_note(MigPg *mp, const char *version)
{
	MemoryContext old = MemoryContextSwitchTo(mp->cxt);

	if (mp->call_versions == NULL)
		mp->call_versions = makeStringInfo();
	/* the first 100 versions; the count says how many in all */
	if (mp->call_count < 100)
		appendStringInfo(mp->call_versions, "%s%s", mp->call_count ? ", " : "", version);
	else if (mp->call_count == 100)
		appendStringInfoString(mp->call_versions, ", ...");
	mp->call_count++;
	MemoryContextSwitchTo(old);
}

/* Whether a call that ended with outcome is logged. */
static bool
wanted(MigPg *mp, const char *outcome)
{
	/* in function mode a row written with what the call did goes when the
	 * call fails after all (a goose Go migration stops it): write the
	 * failure's */
	if (mp->call_fn == NULL || call_log == CALL_LOG_OFF || !OidIsValid(mp->calls_oid) ||
		(mp->call_logged && (mp->procedure || strcmp(outcome, "error") != 0)))
		return false;
	return call_log == CALL_LOG_ALL || strcmp(outcome, "ok") != 0 || mp->call_count > 0;
}

/* A quoted literal of UTF-8 s in the server encoding, or NULL. */
static const char *
literal(const char *s)
{
	return s ? quote_literal_cstr(mig_pg_report_text(s)) : "NULL";
}

/*
 * The transaction (its local id) whose call row last deleted the rows past
 * their days: once a transaction is enough, and a fan-out over a thousand
 * tenants wrote a thousand rows, each with the same deletion.  A deletion
 * rolled back with its subtransaction is done by the next transaction.
 */
static LocalTransactionId pruned_in = InvalidLocalTransactionId;

/* The statement that writes the row (and, with prune, deletes the rows
 * past their days). */
static char *
call_row_sql(MigPg *mp, const char *outcome, const char *sqlstate, const char *message,
			 bool prune)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (call_log_days > 0 && prune)
		appendStringInfo(&buf, "WITH gone AS (DELETE FROM %s WHERE finished_at OPERATOR(pg_catalog.<) "
						 "(pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) "
						 "pg_catalog.make_interval(days => %d))) ", mp->calls, call_log_days);
	appendStringInfo(&buf, "INSERT INTO %s (started_at, finished_at, function, role, source, "
					 "options, migrations, versions, outcome, sqlstate, message, backend_pid%s) "
					 "VALUES (%s::pg_catalog.timestamptz, pg_catalog.clock_timestamp(), %s, %s, %s, %s, "
					 INT64_FORMAT ", %s, %s, %s, %s, %d%s%s)",
					 mp->calls, mp->has_tenants ? ", tenant" : "",
					 quote_literal_cstr(timestamptz_to_str(mp->call_started)),
					 quote_literal_cstr(mp->call_fn), quote_literal_cstr(mp->caller_name),
					 literal(mp->call_source), literal(mp->call_options), mp->call_count,
					 mp->call_versions ? literal(mp->call_versions->data) : "NULL",
					 quote_literal_cstr(outcome), sqlstate ? quote_literal_cstr(sqlstate) : "NULL",
					 message ? quote_literal_cstr(message) : "NULL", MyProcPid,
					 mp->has_tenants ? ", " : "", mp->has_tenants ? mp->tenant_lit : "");
	return buf.data;
}

static int
write_row(MigPg *mp, void *arg, mig_err *err)
{
	int			ret = SPI_execute((const char *) arg, false, 0);

	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not write migrate_calls: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

int
mig_pg_call_log(MigPg *mp, const char *outcome, mig_err *err)
{
	MemoryContext old;
	char	   *sql;
	int			rc;

	if (!wanted(mp, outcome))
		return MIG_OK;
	old = MemoryContextSwitchTo(mp->scratch);
	sql = call_row_sql(mp, outcome, NULL, NULL, MyProc->lxid != pruned_in);
	rc = mig_pg_as_owner(mp, write_row, sql, err);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (rc == MIG_OK)
	{
		mp->call_logged = true;
		pruned_in = MyProc->lxid;
	}
	return rc;
}

/* ---- a failed call: written apart ---- */

typedef struct LogShared
{
	Oid			database;
	Size		len;			/* of the statement that follows */
	char		sql[FLEXIBLE_ARRAY_MEMBER];
} LogShared;

/*
 * The background worker that writes the row of a failed call: it
 * connects to the caller's database as the bootstrap superuser (a worker
 * that names no user needs no role that may log in) and runs the one
 * INSERT the caller built, of quoted literals only.
 */
void
migrate_log_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	LogShared  *sh;
	char	   *sql;

	BackgroundWorkerUnblockSignals();
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "migrate log worker");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		proc_exit(0);
	sh = dsm_segment_address(seg);
	BackgroundWorkerInitializeConnectionByOid(sh->database, InvalidOid, 0);
	sql = MemoryContextStrdup(TopMemoryContext, sh->sql);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "migrate: writing the call log");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write migrate_calls");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	dsm_detach(seg);
}

void
mig_pg_call_log_failed(MigPg *mp, const char *sqlstate, const char *message)
{
	MemoryContext old;
	char	   *sql;
	Size		len;
	dsm_segment *seg;
	LogShared  *sh;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;

	/* a tenant of a batch: the batch is rolled back and its tenants run
	 * again one by one, and that run logs the failure, once */
	if (mp->batched || !wanted(mp, "error"))
		return;
	old = MemoryContextSwitchTo(mp->scratch);
	sql = call_row_sql(mp, "error", sqlstate, message, true);
	if (mig_pg_call_log_keep)
	{
		if (kept_sql != NULL)
			pfree(kept_sql);
		kept_sql = MemoryContextStrdup(TopMemoryContext, sql);
		kept_owner = mp->owner;
		mp->call_logged = true;
		MemoryContextSwitchTo(old);
		MemoryContextReset(mp->scratch);
		return;
	}
	len = strlen(sql) + 1;
	seg = dsm_create(offsetof(LogShared, sql) + len, 0);
	sh = dsm_segment_address(seg);
	sh->database = MyDatabaseId;
	sh->len = len;
	memcpy(sh->sql, sql, len);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "migrate");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "migrate_log_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "migrate log writer for PID %d", MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "migrate log writer");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	/* the row is written once the worker has it: wait for that, so that
	 * the caller who reads migrate_calls after the error finds it */
	if (RegisterDynamicBackgroundWorker(&worker, &handle) &&
		WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_STARTED)
		(void) WaitForBackgroundWorkerShutdown(handle);
	else
		ereport(LOG,
				(errmsg("migrate: could not start a background worker to log a failed call of %s",
						mp->call_fn)));
	dsm_detach(seg);
	mp->call_logged = true;
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
}

/*
 * Writes the failed call's row a worker of parallel=N kept, if any, in a
 * transaction of its own (none may be open), as the owner of the
 * extension's tables, as the extension's own write.
 */
void
mig_pg_call_log_flush(void)
{
	MigPg		host;
	MigPgSave	save;
	char	   *sql = kept_sql;

	if (sql == NULL)
		return;
	kept_sql = NULL;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	memset(&host, 0, sizeof(host));
	host.owner = kept_owner;
	mig_pg_owner_enter(&host, kept_owner, true, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write migrate_calls");
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	mig_pg_owner_leave(&save);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pfree(sql);
}
