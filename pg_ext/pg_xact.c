/*
 * pg_xact.c -- the migration lock and the units of work.
 *
 *   lock        the host's lock callback: pg_advisory_xact_lock (function
 *               mode) or pg_advisory_lock (procedure mode), always before
 *               the history is read (the wait and the holder's name are
 *               pg_rails.c's, the tenant's key pg_tenant.c's);
 *   unlock      the end of the unit of work: in procedure mode a commit or
 *               a rollback, then the session lock's release;
 *   checkpoint  procedure mode's commit after each migration;
 *   guard       the subtransaction of a fan-out that commits
 *               (migrate_run_each), ended and begun again around each
 *               commit (mig_pg_commit, mig_pg_rollback).
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "pg_host.h"

/* ---- locking and units of work ---- */

/*
 * Takes the migration lock.  Function mode: a transaction-level advisory
 * lock, released by the server when the caller's transaction ends.
 * Procedure mode: a session-level one, then a commit, so that the snapshots
 * of everything that follows (the history first) postdate the lock even
 * under REPEATABLE READ.  Waits as o->wait_ms says (pg_rails.c): by default
 * as long as lock_timeout and statement_timeout allow.  Returns MIG_BUSY
 * with the holder in err when the wait ends without the lock.  Keeps o's
 * rail (lock_timeout, lock_retries) for the scripts that follow.
 */
int
mig_pg_lock(void *ctx, const mig_lock_opts *o, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	int			rc;

	mig_pg_rail_set(mp, o);
	rc = mig_pg_take_lock(mp, o ? o->wait_ms : -1, err);
	if (rc == MIG_BUSY)
		mp->skipped = true;		/* logged as such if the call skips */
	if (rc != MIG_OK)
		return rc;
	if (mp->procedure)
		mp->session_locked = true;
	if ((rc = mig_pg_tenant_locked(mp, err)) != MIG_OK)
	{
		mig_pg_release_session_lock(mp);
		return rc;
	}
	if (mp->procedure)
	{
		mig_pg_crash_point(mp);
		mig_pg_commit(mp);
	}
	return MIG_OK;
}

void
mig_pg_release_session_lock(MigPg *mp)
{
	if (!mp->session_locked)
		return;
	mp->session_locked = false;
	mig_pg_lock_release(mp);
}

void
mig_pg_guard_begin(MigPgGuard *g)
{
	g->owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	g->open = true;
	MemoryContextSwitchTo(g->cxt);
}

void
mig_pg_guard_end(MigPgGuard *g, bool commit)
{
	if (!g->open)
		return;
	/* open until it ended: a failing release is rolled back by the caller */
	if (commit)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	g->open = false;
	MemoryContextSwitchTo(g->cxt);
	CurrentResourceOwner = g->owner;
}

void
mig_pg_commit(MigPg *mp)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (mp->guard)
		mig_pg_guard_end(mp->guard, true);
	MemoryContextSwitchTo(cxt);
	SPI_commit();
	mp->call_committed = mp->call_count;
	if (mp->guard)
		mig_pg_guard_begin(mp->guard);
	MemoryContextSwitchTo(cxt);
}

void
mig_pg_rollback(MigPg *mp)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (!mp->guard)
	{
		SPI_rollback();
		return;
	}
	/* nothing but the guard's subtransaction was done since the commit */
	mig_pg_guard_end(mp->guard, false);
	mig_pg_guard_begin(mp->guard);
	MemoryContextSwitchTo(cxt);
}

/*
 * Ends the unit of work.  Function mode: nothing, the caller's transaction
 * decides (an error from the core aborts it).  Procedure mode: ends the
 * worker of migrations outside a transaction, if one ran, commits or rolls
 * back what follows the last checkpoint and releases the lock.
 */
int
mig_pg_unlock(void *ctx, int commit, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;

	/* the call's row goes with what it did */
	if (commit && mig_pg_call_log(mp, "ok", err) != MIG_OK)
		return MIG_ERROR;
	if (!mp->procedure)
		return MIG_OK;
	mig_pg_outside_end(mp, commit != 0);
	if (commit)
	{
		mig_pg_crash_point(mp);
		mig_pg_commit(mp);
	}
	else
		mig_pg_rollback(mp);
	mig_pg_release_session_lock(mp);
	return MIG_OK;
}

/* Procedure mode: commits the migration just applied and recorded. */
int
mig_pg_checkpoint(void *ctx, mig_err *err)
{
	mig_pg_crash_point((MigPg *) ctx);
	mig_pg_commit((MigPg *) ctx);
	return MIG_OK;
}
