/*
 * pg_impact_live.c -- what migrate_impact reads of the live database,
 * for the relation a statement touches (see pg_impact.c):
 *
 * Sizes (relation_bytes) are read from the relation's files, as
 * pg_relation_size does, but without opening the relation (which would
 * take a lock): the main fork of the table and of its TOAST table, summed
 * over its partitions or children when the statement recurses to them.
 * relation_rows is the planner's estimate: reltuples scaled to the pages
 * the files have now (NULL before the first VACUUM or ANALYZE).
 * blocked_by lists the sessions that hold or wait for a lock that
 * conflicts with the statement's (the server's conflict table,
 * DoLockModesConflict), with their state and the age of their
 * transaction, from the lock table (GetLockStatusData, as pg_locks) and
 * pg_stat_activity.
 */

#include "postgres.h"

#include <sys/stat.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_tablespace.h"
#include "common/relpath.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/lock.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"
#include "utils/relmapper.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pg_impact.h"

/* ---- sizes, without opening anything ---- */

/* Bytes of the main fork of relation relid's files (every segment), or
 * -1 when it has none this backend can see. */
static int64
main_fork_bytes(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class c;
	RelFileNode rnode;
	BackendId	backend = InvalidBackendId;
	char	   *path;
	int64		total = 0;

	if (!HeapTupleIsValid(tup))
		return -1;
	c = (Form_pg_class) GETSTRUCT(tup);
	if (!RELKIND_HAS_STORAGE(c->relkind))
	{
		ReleaseSysCache(tup);
		return -1;
	}
	/* where pg_relation_filepath finds it (dbsize.c) */
	rnode.spcNode = OidIsValid(c->reltablespace) ? c->reltablespace : MyDatabaseTableSpace;
	if (c->relisshared)
		rnode.spcNode = GLOBALTABLESPACE_OID;
	rnode.dbNode = c->relisshared ? InvalidOid : MyDatabaseId;
	rnode.relNode = OidIsValid(c->relfilenode) ? c->relfilenode :
		RelationMapOidToFilenode(relid, c->relisshared);
	if (c->relpersistence == RELPERSISTENCE_TEMP)
	{
		if (!isTempOrTempToastNamespace(c->relnamespace))
		{
			ReleaseSysCache(tup);
			return -1;			/* another session's */
		}
		backend = BackendIdForTempRelations();
	}
	ReleaseSysCache(tup);
	if (!OidIsValid(rnode.relNode))
		return -1;
	path = relpathbackend(rnode, backend, MAIN_FORKNUM);
	for (int seg = 0;; seg++)
	{
		struct stat sb;
		char	   *file = seg == 0 ? path : psprintf("%s.%d", path, seg);

		CHECK_FOR_INTERRUPTS();
		if (stat(file, &sb) != 0)
			break;				/* no more segments (or the file is gone) */
		total += sb.st_size;
	}
	return total;
}

/*
 * The size of relid (its main fork and its TOAST table's) and its rows
 * (reltuples scaled to its pages now, as the planner scales them; -1 when
 * never counted), summed over its children when inh and it has some.
 */
void
mig_pg_impact_relation_size(Oid relid, bool inh, int64 *bytes, int64 *rows)
{
	List	   *rels = list_make1_oid(relid);
	ListCell   *lc;
	bool		any = false,
				counted = false;

	*bytes = 0;
	*rows = 0;
	if (inh && has_subclass(relid))
		rels = find_all_inheritors(relid, NoLock, NULL);
	foreach(lc, rels)
	{
		Oid			r = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(r));
		Form_pg_class c;
		int64		main,
					toast = -1;
		float4		tuples;
		int32		pages;
		Oid			toastrel;

		if (!HeapTupleIsValid(tup))
			continue;
		c = (Form_pg_class) GETSTRUCT(tup);
		tuples = c->reltuples;
		pages = c->relpages;
		toastrel = c->reltoastrelid;
		ReleaseSysCache(tup);
		main = main_fork_bytes(r);
		if (OidIsValid(toastrel))
			toast = main_fork_bytes(toastrel);
		if (main >= 0)
		{
			any = true;
			*bytes += main + Max(toast, 0);
		}
		if (tuples >= 0 && main >= 0)
		{
			double		n = tuples;

			if (pages > 0)
				n = tuples / pages * (double) (main / BLCKSZ);
			*rows += (int64) (n + 0.5);
			counted = true;
		}
	}
	if (!any)
		*bytes = list_length(rels) > 1 ? 0 : -1;
	if (!counted)
		*rows = -1;
}

/* ---- who is in the way ---- */

static const char *
state_name(BackendState s)
{
	switch (s)
	{
		case STATE_RUNNING:
			return "active";
		case STATE_IDLE:
			return "idle";
		case STATE_IDLEINTRANSACTION:
			return "idle in transaction";
		case STATE_IDLEINTRANSACTION_ABORTED:
			return "idle in transaction (aborted)";
		case STATE_FASTPATH:
			return "fastpath function call";
		default:
			return "unknown";
	}
}

/* Appends to buf how session pid stands: state and transaction age. */
static void
append_session(StringInfo buf, int pid)
{
	int			n = pgstat_fetch_stat_numbackends();

	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *b = l ? &l->backendStatus : NULL;

		if (b == NULL || b->st_procpid != pid)
			continue;
		appendStringInfo(buf, " (%s", state_name(b->st_state));
		if (b->st_xact_start_timestamp != 0)
		{
			long		ms = TimestampDifferenceMilliseconds(b->st_xact_start_timestamp,
															 GetCurrentTimestamp());

			appendStringInfo(buf, ", transaction open %ld.%ld s", ms / 1000, (ms % 1000) / 100);
		}
		appendStringInfoChar(buf, ')');
		return;
	}
}

/*
 * Appends to buf the sessions that hold or wait for a lock on relation
 * relid that conflicts with lock (the server's conflict table), with what
 * they hold or wait for.
 */
void
mig_pg_impact_append_blockers(ImpactState *st, StringInfo buf, Oid relid, int lock)
{
	if (!OidIsValid(relid) || lock <= 0)
		return;
	if (st->locks == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(st->cxt);

		/* pg_stat_activity as it is now, not as this transaction saw it */
		pgstat_clear_backend_activity_snapshot();
		st->locks = GetLockStatusData();
		MemoryContextSwitchTo(old);
	}
	for (int i = 0; i < st->locks->nelements; i++)
	{
		LockInstanceData *l = &st->locks->locks[i];
		int			held = NoLock;

		if (l->locktag.locktag_type != LOCKTAG_RELATION ||
			l->locktag.locktag_field1 != MyDatabaseId ||
			l->locktag.locktag_field2 != relid ||
			l->pid == MyProcPid || l->leaderPid == MyProcPid)
			continue;
		for (int m = MaxLockMode; m > NoLock && held == NoLock; m--)
			if ((l->holdMask & LOCKBIT_ON(m)) && DoLockModesConflict(m, lock))
				held = m;
		if (held != NoLock)
		{
			appendStringInfo(buf, "%spid %d holds %s", buf->len ? "; " : "", l->pid,
							 GetLockmodeName(DEFAULT_LOCKMETHOD, held));
			append_session(buf, l->pid);
		}
		if (l->waitLockMode != NoLock && DoLockModesConflict(l->waitLockMode, lock))
		{
			appendStringInfo(buf, "%spid %d waits for %s", buf->len ? "; " : "", l->pid,
							 GetLockmodeName(DEFAULT_LOCKMETHOD, l->waitLockMode));
			append_session(buf, l->pid);
		}
	}
}
