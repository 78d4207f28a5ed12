/*
 * pg_rails.c -- how long a migration may wait, and how long it may make
 * others wait.
 *
 *   the migration lock   taken with a bounded wait when the call asks for
 *                        one (wait=0, wait=5s): tried, then tried again
 *                        after short sleeps until the time is up; when it
 *                        stays held, the holder is looked up in pg_locks
 *                        and pg_stat_activity and named in the error (or
 *                        in the notice of if_locked=skip);
 *   the blocking rail    migration statements run with a lock_timeout
 *                        (migrate.lock_timeout, default 2s, or the call's
 *                        lock_timeout=...), so that an ALTER TABLE queued
 *                        behind a long reader stalls the queries queued
 *                        behind it for at most that long; a migration that
 *                        hits the timeout is rolled back with its unit (a
 *                        subtransaction per attempt: the migration in
 *                        procedure mode, the whole call in function mode)
 *                        and tried again after an exponential backoff with
 *                        jitter, up to migrate.lock_retries (default 5)
 *                        times.
 *
 * The rail's lock_timeout is set as a function's SET clause sets a setting
 * (a GUC nest level, GUC_ACTION_SAVE) around the statements only: the wait
 * for the migration lock and the history writes keep the session's own.
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "pg_host.h"

/* migrate.lock_timeout (ms) and migrate.lock_retries: the rail's defaults. */
static int	rail_timeout_guc = 2000;
static int	rail_retries_guc = 5;

/* Backoff before retry k (1-based): nominal = min(BASE * 2^(k-1), CAP),
 * slept for a random time in [nominal / 2, nominal] ("equal jitter"), so
 * that several migrators blocked by one reader do not come back in step. */
#define RAIL_BACKOFF_BASE_MS	500
#define RAIL_BACKOFF_CAP_MS		10000

/* Longest sleep between two tries of the migration lock. */
#define LOCK_POLL_MAX_MS		50

void
mig_pg_define_rail_settings(void)
{
	DefineCustomIntVariable("migrate.lock_timeout",
							"lock_timeout of migration statements; a migration that hits it is retried.",
							"0 turns the rail off: the session's own lock_timeout applies.",
							&rail_timeout_guc, 2000, 0, INT_MAX, PGC_USERSET,
							GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("migrate.lock_retries",
							"Times a migration that hit migrate.lock_timeout is tried again, with backoff.",
							NULL, &rail_retries_guc, 5, 0, 1000, PGC_USERSET,
							0, NULL, NULL, NULL);
}

void
mig_pg_rail_set(MigPg *mp, const mig_lock_opts *o)
{
	mp->rail_timeout_ms = (o && o->lock_timeout_ms >= 0) ?
		(int) Min(o->lock_timeout_ms, (long) INT_MAX) : rail_timeout_guc;
	mp->rail_retries = (o && o->lock_retries >= 0) ?
		o->lock_retries : rail_retries_guc;
}

/* A duration for a message: "2s", "0.5s", "0.25s", "1.375s". */
static char *
seconds(long ms)
{
	char	   *s = psprintf("%.3f", ms / 1000.0);
	char	   *end = s + strlen(s) - 1;

	while (*end == '0')
		*end-- = '\0';
	if (*end == '.')
		*end = '\0';
	return psprintf("%ss", s);
}

/* Sleeps ms milliseconds, waking up for interrupts (a cancel, a
 * statement_timeout) and on postmaster death. */
static void
sleep_ms(long ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		left;

		CHECK_FOR_INTERRUPTS();
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	CHECK_FOR_INTERRUPTS();
}

/* ---- the migration lock ---- */

/* One try of the migration lock, without waiting. */
static bool
try_lock(MigPg *mp)
{
	return mig_pg_lock_try(mp, mp->procedure);
}

/* Takes the lock, waiting as long as lock_timeout and statement_timeout
 * allow (the server's own wait queue, so waiters are served in turn). */
static void
wait_lock(MigPg *mp)
{
	mig_pg_lock_wait(mp, mp->procedure);
}

char *
mig_pg_holder_query(void)
{
	return mig_pg_holder_query_for(InvalidOid);
}

/*
 * Fills err for a lock that stayed held through a wait of waited_ms: who
 * holds it and since when.  Returns MIG_BUSY, or MIG_OK if the holder let
 * go in the meantime and the lock could be taken after all.
 */
static int
lock_busy(MigPg *mp, long waited_ms, mig_err *err)
{
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	char	   *waited = waited_ms > 0 ?
		psprintf(" after waiting %s", seconds(waited_ms)) : "";
	int			ret;

	/* pg_stat_activity as it is now, not as this transaction first saw it */
	pgstat_clear_backend_activity_snapshot();
	ret = SPI_execute(mig_pg_holder_query_for(mp->tenant_nsp), true, 1);
	MemoryContextSwitchTo(mp->scratch);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		SPITupleTable *tt = SPI_tuptable;
		char	   *pid = SPI_getvalue(tt->vals[0], tt->tupdesc, 1);
		char	   *user = SPI_getvalue(tt->vals[0], tt->tupdesc, 2);
		char	   *app = SPI_getvalue(tt->vals[0], tt->tupdesc, 3);
		char	   *since = SPI_getvalue(tt->vals[0], tt->tupdesc, 4);
		char	   *state = SPI_getvalue(tt->vals[0], tt->tupdesc, 5);
		char	   *what = SPI_getvalue(tt->vals[0], tt->tupdesc, 7);

		if (pid == NULL)
		{
			mig_err_set(err, MIG_SQLSTATE_LOCK,
						"migration lock is held by a prepared transaction%s", waited);
			mig_err_detail(err, "See pg_prepared_xacts; COMMIT PREPARED or ROLLBACK PREPARED releases it.");
		}
		else
		{
			/* in UTF-8, as the core's messages are */
			char	   *who = psprintf("Backend %s (user \"%s\"%s%s%s)", pid,
									   user ? mig_pg_utf8(user) : "?",
									   app && app[0] ? ", application \"" : "",
									   app && app[0] ? mig_pg_utf8(app) : "",
									   app && app[0] ? "\"" : "");

			mig_err_set(err, MIG_SQLSTATE_LOCK,
						"migration lock is held by backend %s%s", pid, waited);
			if (since == NULL || what == NULL)
				mig_err_detail(err, "%s holds it.", who);
			else if (strcmp(what, "statement") == 0)
				mig_err_detail(err, "%s holds it in its current statement, running since %s.",
							   who, since);
			else if (strcmp(what, "transaction") == 0)
				mig_err_detail(err, "%s holds it in a transaction open since %s, now %s.",
							   who, since, state ? state : "idle");
			else
				mig_err_detail(err, "%s holds it in a session now %s, whose last statement started at %s.",
							   who, state ? state : "idle", since);
		}
		mig_err_hint(err, "Wait longer (option wait=30s or wait=forever), skip the call while the lock is held (option if_locked=skip), or see who holds it with SELECT * FROM migrate_lock_holder().");
		SPI_freetuptable(tt);
		ret = MIG_BUSY;
	}
	else if (try_lock(mp))
		ret = MIG_OK;			/* let go between the try and the query */
	else
	{
		mig_err_set(err, MIG_SQLSTATE_LOCK,
					"migration lock is held by another session%s", waited);
		ret = MIG_BUSY;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return ret;
}

int
mig_pg_take_lock(MigPg *mp, long wait_ms, mig_err *err)
{
	TimestampTz start;
	long		nap = 1;

	if (wait_ms < 0)
	{
		wait_lock(mp);
		return MIG_OK;
	}
	start = GetCurrentTimestamp();
	for (;;)
	{
		long		waited;

		CHECK_FOR_INTERRUPTS();
		if (try_lock(mp))
			return MIG_OK;
		waited = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
		if (waited >= wait_ms)
			return lock_busy(mp, wait_ms, err);
		/* 1, 2, 4 ... 50 ms: quick for a short hold, cheap for a long one */
		nap = Min(nap * 2, LOCK_POLL_MAX_MS);
		sleep_ms(Min(nap, wait_ms - waited));
	}
}

/* ---- the blocking rail ---- */

/* Sets lock_timeout for what follows, at a new GUC nest level that
 * AtEOXact_GUC (or the end of the subtransaction) undoes; returns it. */
static int
set_rail_timeout(MigPg *mp)
{
	int			nest = NewGUCNestLevel();
	char		value[32];

	snprintf(value, sizeof(value), "%d", mp->rail_timeout_ms);
	(void) set_config_option("lock_timeout", value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/* Milliseconds to sleep before retry k (1-based). */
static long
backoff_ms(int k)
{
	long		nominal = RAIL_BACKOFF_BASE_MS;

	while (--k > 0 && nominal < RAIL_BACKOFF_CAP_MS)
		nominal *= 2;
	nominal = Min(nominal, RAIL_BACKOFF_CAP_MS);
	return nominal / 2 + (long) (pg_prng_double(&pg_global_prng_state) * (nominal / 2));
}

int
mig_pg_rail_timed(MigPg *mp, int (*run) (MigPg *mp, void *arg, mig_err *err),
				  void *arg, mig_err *err)
{
	int			nest;
	int			rc;

	if (mp->rail_timeout_ms <= 0)
		return run(mp, arg, err);	/* no rail */
	nest = set_rail_timeout(mp);
	mp->rail_active = true;
	rc = run(mp, arg, err);
	/* an error leaves rail_active set for mig_pg_railed, and the
	 * (sub)transaction abort undoes the setting */
	mp->rail_active = false;
	AtEOXact_GUC(true, nest);
	return rc;
}

int
mig_pg_railed(MigPg *mp, int (*run) (MigPg *mp, void *arg, mig_err *err),
			  void *arg, mig_err *err)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	/*
	 * A tenant of a batch of migrate_apply_each: the batch's subtransaction
	 * is the unit, and any error (a lock timeout too) rolls the batch back
	 * and runs its tenants again one by one, each railed as usual.  Every
	 * subtransaction that ends costs a pass over all the locks, relations
	 * and pending deletes of the transaction, which grows with each tenant.
	 */
	if (mp->batched)
	{
		mp->rail_attempt = 1;
		mp->rail_active = false;
		mp->rail_waited = NULL;
		return run(mp, arg, err);
	}
	for (mp->rail_attempt = 1;; mp->rail_attempt++)
	{
		volatile int rc = MIG_OK;
		volatile bool retry = false;
		long		delay;

		mp->rail_active = false;
		mp->rail_waited = NULL;
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			rc = run(mp, arg, err);
			if (rc == MIG_OK)
				ReleaseCurrentSubTransaction();
			else
				RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			bool		railed = mp->rail_active;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			/* what the attempt did, its locks and the setting go with it */
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			mp->rail_active = false;
			if (!railed || edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE ||
				mp->rail_attempt > mp->rail_retries || mp->rail_waited == NULL)
				ReThrowError(edata);
			FreeErrorData(edata);
			retry = true;
		}
		PG_END_TRY();
		if (!retry)
			return rc;

		delay = backoff_ms(mp->rail_attempt);
		ereport(NOTICE,
				(errmsg("%s waited %s for a lock; retrying in %s (attempt %d of %d)",
						mp->rail_waited, seconds(mp->rail_timeout_ms), seconds(delay),
						mp->rail_attempt + 1, mp->rail_retries + 1),
				 mp->procedure ?
				 errdetail("A statement of it waited longer than lock_timeout for a lock another session holds; what the attempt did was rolled back.") :
				 errdetail("A statement of it waited longer than lock_timeout for a lock another session holds; everything this call had done was rolled back, releasing its locks, and is done again.")));
		sleep_ms(delay);
	}
}

void
mig_pg_rail_error_context(MigPg *mp)
{
	const mig_script *s = mp->script;

	if (mp->rail_timeout_ms <= 0 || geterrcode() != ERRCODE_LOCK_NOT_AVAILABLE)
		return;
	/* for the retry's notice: the script is gone once the error unwinds */
	if (mp->rail_active && mp->rail_waited == NULL)
		mp->rail_waited = MemoryContextStrdup(mp->cxt,
											  psprintf("%smigration %s (%s)", s->down ? "rollback of " : "",
													   mig_pg_report_text(s->version),
													   mig_pg_report_text(s->file)));
	if (mp->rail_attempt > mp->rail_retries && mp->rail_attempt > 1)
		errdetail("The migration was tried %d times, each time waiting at most lock_timeout = %s for a lock another session held; nothing of it was kept.",
				  mp->rail_attempt, seconds(mp->rail_timeout_ms));
	else if (mp->rail_attempt > mp->rail_retries)
		errdetail("The migration waited at most lock_timeout = %s for a lock another session held and is not retried (lock_retries = 0); nothing of it was kept.",
				  seconds(mp->rail_timeout_ms));
	errhint("Apply it when the lock is free, or allow more with the options lock_timeout and lock_retries (for example '%s') or the settings migrate.lock_timeout and migrate.lock_retries.",
			"lock_timeout=5s, lock_retries=10");
}
