/*
 * pg_impact.c -- what a pending migration will do to the live database,
 * from PostgreSQL's own rules, without running it (host->impact):
 *
 *   SELECT statement, relation, lock_mode, rewrites, scans, relation_bytes,
 *          blocked_by, advice
 *     FROM migrate_impact('/srv/app/migrations');
 *
 * Each script is split and parsed by the server's raw parser; nothing is
 * analysed by the executor, nothing runs, and no lock is taken but the
 * catalogs' own during lookups (relations are looked up by name, with no
 * lock, as RangeVarGetRelidExtended does with NoLock).  The lock of each
 * statement comes from the server's rules: for ALTER TABLE the server's
 * own per-subcommand level (AlterTableGetLockLevel); for the other
 * commands the levels PostgreSQL documents per command ("Explicit
 * Locking", 13.3.1 Table-Level Locks, PostgreSQL 15) and takes in their
 * code (cited beside each below).  Whether a statement rewrites its table
 * follows the server's own tests (tablecmds.c: ATExecAddColumn's
 * "missing" default, ATColumnChangeRequiresRewrite) with the server's
 * coercion and expression planning.  Relations are resolved as the
 * statement would resolve them: with the caller's search_path (and a SET
 * search_path of the plan), and relations created or renamed by an
 * earlier statement of the plan are known as such (NULL relation: they
 * are new and empty).
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
 *
 * Also here: the settings of the impact policy (migrate.max_lock,
 * migrate.no_rewrite, migrate.max_size), and migrate_script_ahead, which
 * an off-hours script of flagged migrations calls to mark the rows it
 * records ahead of older pending ones.
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_tablespace.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/tablecmds.h"
#include "commands/tablespace.h"
#include "common/relpath.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_type.h"
#include "parser/parser.h"
#include "catalog/heap.h"
#include "parser/parse_node.h"
#include "storage/backendid.h"
#include "storage/lock.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/relmapper.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pg_host.h"

StaticAssertDecl(AccessShareLock == MIG_LOCK_ACCESS_SHARE &&
				 ShareUpdateExclusiveLock == MIG_LOCK_SHARE_UPDATE_EXCLUSIVE &&
				 AccessExclusiveLock == MIG_LOCK_ACCESS_EXCLUSIVE,
				 "the core's lock modes are the server's LOCKMODE numbers");

/* ---- settings: the policy's defaults ---- */

static const struct config_enum_entry lock_options[] = {
	{"none", MIG_LOCK_NONE, false},
	{"AccessShareLock", MIG_LOCK_ACCESS_SHARE, false},
	{"RowShareLock", MIG_LOCK_ROW_SHARE, false},
	{"RowExclusiveLock", MIG_LOCK_ROW_EXCLUSIVE, false},
	{"ShareUpdateExclusiveLock", MIG_LOCK_SHARE_UPDATE_EXCLUSIVE, false},
	{"ShareLock", MIG_LOCK_SHARE, false},
	{"ShareRowExclusiveLock", MIG_LOCK_SHARE_ROW_EXCLUSIVE, false},
	{"ExclusiveLock", MIG_LOCK_EXCLUSIVE, false},
	{"AccessExclusiveLock", MIG_LOCK_ACCESS_EXCLUSIVE, false},
	{NULL, 0, false}
};

static int	max_lock = MIG_LOCK_NONE;
static bool no_rewrite = false;
static int	max_size_kb = 0;

void
mig_pg_define_impact_settings(void)
{
	DefineCustomEnumVariable("migrate.max_lock",
							 "Strongest lock a migration statement may take on a relation larger than migrate.max_size (none: no limit).",
							 "migrate_apply, CALL migrate_run and migrate_plan refuse such a statement before anything runs, unless its migration accepts it (-- migrate:accept lock <relation>); the option max_lock= of a call overrides it.",
							 &max_lock, MIG_LOCK_NONE, lock_options, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("migrate.no_rewrite",
							 "Refuses migration statements that rewrite a relation larger than migrate.max_size.",
							 "Unless the migration accepts it (-- migrate:accept rewrite <relation>); the option no_rewrite= of a call overrides it.",
							 &no_rewrite, false, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("migrate.max_size",
							"Relations up to this size are spared by migrate.max_lock and migrate.no_rewrite.",
							NULL, &max_size_kb, 0, 0, INT_MAX, PGC_USERSET, GUC_UNIT_KB,
							NULL, NULL, NULL);
}

/* ---- the analysis's state over one call ---- */

/* A relation the plan creates (oid invalid) or renames (oid: the one it
 * was) before the statement being analysed. */
typedef struct PlanRel
{
	char	   *nsp;
	char	   *rel;
	Oid			oid;
	bool		gone;			/* renamed away or dropped: not there */
} PlanRel;

/* A NOT NULL check of the plan: CHECK (col IS NOT NULL) added to rel. */
typedef struct PlanCheck
{
	char	   *rel;			/* display name of the relation */
	char	   *name;			/* the constraint's name, or NULL */
	char	   *col;
	bool		valid;			/* added without NOT VALID, or validated */
} PlanCheck;

typedef struct ImpactState
{
	MemoryContext cxt;			/* lives as long as the call */
	List	   *path;			/* schema names unqualified names are
								 * looked up in, in order */
	List	   *explicit_path;	/* the same without the implicit ones:
								 * where an unqualified CREATE goes first */
	List	   *rels;			/* PlanRel *: created or renamed */
	List	   *schemas;		/* char *: schemas the plan creates */
	List	   *checks;			/* PlanCheck * */
	List	   *validated;		/* "oid:conname" of existing constraints
								 * the plan validates */
	LockData   *locks;			/* the lock table when first needed */
} ImpactState;

/* What one statement does, as analysed. */
typedef struct Effect
{
	const RangeVar *rv;			/* the relation, as named */
	Oid			relid;			/* as it resolves now, or InvalidOid */
	bool		planned;		/* created earlier in the plan */
	char	   *display;		/* schema-qualified, or NULL */
	char	   *nsp;			/* its schema's name, or NULL */
	bool		inh;			/* it recurses to children */
	int			lock;
	bool		rewrites;
	bool		scans;
	const char *advice;
	Oid			also;			/* another relation it locks (blocked_by) */
	int			also_lock;
} Effect;

static const char ADV_INDEX[] = "CREATE INDEX CONCURRENTLY, in a migration of its own (CALL migrate_run runs it outside a transaction), lets writes go on while it builds.";
static const char ADV_DROP_INDEX[] = "DROP INDEX CONCURRENTLY, in a migration of its own (CALL migrate_run), does not block queries while it waits.";
static const char ADV_REINDEX[] = "REINDEX ... CONCURRENTLY, in a migration of its own (CALL migrate_run), rebuilds without blocking writes.";
static const char ADV_CHECK[] = "Add it NOT VALID (a brief lock, no scan), then VALIDATE CONSTRAINT in a later migration: that scan takes ShareUpdateExclusiveLock, which lets reads and writes go on.";
static const char ADV_NOT_NULL[] = "Add CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it in a later migration, then SET NOT NULL skips the scan; drop the check after.";
static const char ADV_UNIQUE[] = "CREATE UNIQUE INDEX CONCURRENTLY first, in a migration of its own, then ADD CONSTRAINT ... UNIQUE (or PRIMARY KEY) USING INDEX.";
static const char ADV_DEFAULT[] = "Add the column without a default (or with a constant one: no rewrite), then fill it in batches, each batch its own transaction.";
static const char ADV_TYPE[] = "Add a new column of the new type, fill it in batches, then switch to it; or change to a type the server converts without a rewrite (varchar(n) to a larger n, or to text).";
static const char ADV_BACKFILL[] = "Update in batches (WHERE id BETWEEN ...), each its own transaction, in a migration run outside a transaction.";
static const char ADV_REFRESH[] = "REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view) lets reads go on.";
static const char ADV_ATTACH[] = "Add a CHECK constraint matching the partition bound, NOT VALID, and VALIDATE it first: ATTACH PARTITION then skips the scan.";
static const char ADV_DETACH[] = "DETACH PARTITION ... CONCURRENTLY, in a migration of its own (CALL migrate_run), takes ShareUpdateExclusiveLock only.";
static const char ADV_VACUUM_FULL[] = "Plain VACUUM makes the space reusable without blocking; VACUUM FULL and CLUSTER rewrite the table under AccessExclusiveLock.";
static const char ADV_SERIAL[] = "Add the column without a default, then set its default (no rewrite) and fill the existing rows in batches.";
static const char ADV_CODE[] = "It runs code this analysis cannot look into: the locks it takes are not known here.";

/* ---- running parts of the analysis that may raise an error ---- */

/*
 * Runs fn(arg) in a subtransaction and returns true, or false when it
 * raised an error (a type or function the plan creates earlier, say),
 * which is then forgotten; a cancel, lack of memory or internal errors go
 * on.  What fn allocates in the current memory context survives.
 */
static bool
protected_call(void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			cat;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		cat = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (cat == ERRCODE_OPERATOR_INTERVENTION || cat == ERRCODE_INSUFFICIENT_RESOURCES ||
			cat == ERRCODE_SYSTEM_ERROR || cat == ERRCODE_INTERNAL_ERROR)
			ReThrowError(edata);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* ---- names, as the statements will resolve them ---- */

static bool
same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* The plan's relation nsp.rel, or NULL. */
static PlanRel *
planned(ImpactState *st, const char *nsp, const char *rel)
{
	/* the latest word on a name: created, renamed away, created again */
	for (int i = list_length(st->rels) - 1; i >= 0; i--)
	{
		PlanRel    *p = list_nth(st->rels, i);

		if (same(p->nsp, nsp) && same(p->rel, rel))
			return p;
	}
	return NULL;
}

/* The name of the schema nspoid, or of pg_temp's, palloc'd. */
static char *
schema_name(Oid nspoid)
{
	char	   *n = get_namespace_name(nspoid);

	return n ? n : pstrdup("?");
}

/* Whether schema name exists now or is created earlier in the plan. */
static bool
schema_known(ImpactState *st, const char *name)
{
	ListCell   *lc;

	if (OidIsValid(LookupNamespaceNoError(name)))
		return true;
	foreach(lc, st->schemas)
		if (same(lfirst(lc), name))
			return true;
	return false;
}

/* The search path now, as names (including pg_catalog and pg_temp where
 * the server puts them when includeImplicit). */
static List *
path_names(bool implicit)
{
	List	   *oids = fetch_search_path(implicit),
			   *names = NIL;
	ListCell   *lc;

	foreach(lc, oids)
		names = lappend(names, schema_name(lfirst_oid(lc)));
	list_free(oids);
	return names;
}

/*
 * Resolves rv as the statement would, into e: the relation it names now
 * (e->relid) or one created earlier in the plan (e->planned), and its
 * schema-qualified name (e->display, or NULL when it resolves to nothing).
 */
static void
resolve(ImpactState *st, const RangeVar *rv, Effect *e)
{
	ListCell   *lc;

	e->rv = rv;
	e->relid = InvalidOid;
	e->planned = false;
	e->display = NULL;
	e->nsp = NULL;
	e->inh = rv->inh;
	if (rv->schemaname)
	{
		PlanRel    *p = planned(st, rv->schemaname, rv->relname);
		Oid			nsp;

		if (p && p->gone)
			return;
		if (p)
		{
			e->relid = p->oid;
			e->planned = !OidIsValid(p->oid);
			e->display = quote_qualified_identifier(p->nsp, p->rel);
			e->nsp = p->nsp;
			return;
		}
		nsp = LookupNamespaceNoError(rv->schemaname);
		if (OidIsValid(nsp))
			e->relid = get_relname_relid(rv->relname, nsp);
		if (OidIsValid(e->relid))
		{
			e->nsp = schema_name(nsp);
			e->display = quote_qualified_identifier(e->nsp, rv->relname);
		}
		return;
	}
	foreach(lc, st->path)
	{
		const char *nspname = lfirst(lc);
		PlanRel    *p = planned(st, nspname, rv->relname);
		Oid			nsp;

		if (p && p->gone)
			continue;
		if (p)
		{
			e->relid = p->oid;
			e->planned = !OidIsValid(p->oid);
			e->display = quote_qualified_identifier(p->nsp, p->rel);
			e->nsp = p->nsp;
			return;
		}
		nsp = LookupNamespaceNoError(nspname);
		if (OidIsValid(nsp) && OidIsValid(e->relid = get_relname_relid(rv->relname, nsp)))
		{
			e->display = quote_qualified_identifier(nspname, rv->relname);
			e->nsp = pstrdup(nspname);
			return;
		}
	}
}

/* The schema an object named by rv is created in. */
static char *
creation_schema(ImpactState *st, const RangeVar *rv)
{
	if (rv->schemaname)
		return pstrdup(rv->schemaname);
	if (rv->relpersistence == RELPERSISTENCE_TEMP)
		return pstrdup("pg_temp");
	if (st->explicit_path != NIL)
		return pstrdup(linitial(st->explicit_path));
	return pstrdup("public");
}

/* Notes that the plan creates (oid invalid) or renames into nsp.rel, or
 * (gone) renames or drops what was there. */
static void
plan_rel_as(ImpactState *st, const char *nsp, const char *rel, Oid oid, bool gone)
{
	MemoryContext old = MemoryContextSwitchTo(st->cxt);
	PlanRel    *p = palloc0(sizeof(PlanRel));

	p->nsp = pstrdup(nsp);
	p->rel = pstrdup(rel);
	p->oid = oid;
	p->gone = gone;
	st->rels = lappend(st->rels, p);
	MemoryContextSwitchTo(old);
}

static void
plan_rel(ImpactState *st, const char *nsp, const char *rel, Oid oid)
{
	plan_rel_as(st, nsp, rel, oid, false);
}

/* SET search_path: the path the statements after it resolve names with. */
static void
set_path(ImpactState *st, VariableSetStmt *vs)
{
	MemoryContext old = MemoryContextSwitchTo(st->cxt);
	List	   *expl = NIL,
			   *full = NIL;
	ListCell   *lc;
	bool		catalog = false;

	if (vs->kind == VAR_SET_VALUE)
	{
		foreach(lc, vs->args)
		{
			Node	   *arg = lfirst(lc);
			char	   *name;

			if (!IsA(arg, A_Const) || !IsA(&((A_Const *) arg)->val, String))
				continue;
			name = strVal(&((A_Const *) arg)->val);
			if (strcmp(name, "$user") == 0)
				name = GetUserNameFromId(GetUserId(), true);
			if (name == NULL || !schema_known(st, name))
				continue;
			catalog |= strcmp(name, "pg_catalog") == 0;
			expl = lappend(expl, pstrdup(name));
		}
	}
	else
	{
		/* RESET or SET ... TO DEFAULT: as it was when the call began */
		expl = path_names(false);
		catalog = true;
	}
	if (OidIsValid(LookupNamespaceNoError("pg_temp")))
		full = lappend(full, schema_name(LookupNamespaceNoError("pg_temp")));
	if (!catalog)
		full = lappend(full, pstrdup("pg_catalog"));
	full = list_concat(full, expl);
	st->path = full;
	st->explicit_path = expl;
	MemoryContextSwitchTo(old);
}

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
static void
relation_size(Oid relid, bool inh, int64 *bytes, int64 *rows)
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
static void
append_blockers(ImpactState *st, StringInfo buf, Oid relid, int lock)
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

/* ---- the rules ---- */

/* Sets e's relation (resolving rv) and its lock, keeping the stronger
 * when e already has one (the primary relation of a statement that locks
 * several is the one it locks hardest, then the largest). */
static void
target(ImpactState *st, Effect *e, const RangeVar *rv, int lock)
{
	Effect		n;

	memset(&n, 0, sizeof(n));
	resolve(st, rv, &n);
	if (e->rv == NULL || lock > e->lock ||
		(lock == e->lock && OidIsValid(n.relid) && !OidIsValid(e->relid)))
	{
		e->rv = n.rv;
		e->relid = n.relid;
		e->planned = n.planned;
		e->display = n.display;
		e->nsp = n.nsp;
		e->inh = n.inh;
		e->lock = lock;
	}
}

/* A RangeVar for a qualified name list (DROP, COMMENT). */
static RangeVar *
name_rv(List *names)
{
	return makeRangeVarFromNameList(names);
}

/* The type a TypeName names, or InvalidOid (unknown yet: the plan may
 * create it). */
static Oid
type_oid(const TypeName *tn, int32 *typmod)
{
	Type		t = LookupTypeName(NULL, tn, typmod, true);
	Oid			oid;

	if (t == NULL)
		return InvalidOid;
	oid = typeTypeId(t);
	ReleaseSysCache(t);
	return oid;
}

/* Whether a column of type name tn is a serial (its default is nextval). */
static bool
serial_type(const TypeName *tn)
{
	const char *n;

	if (tn == NULL || list_length(tn->names) != 1 || tn->arrayBounds != NIL)
		return false;
	n = strVal(linitial(tn->names));
	return strcmp(n, "serial") == 0 || strcmp(n, "serial4") == 0 ||
		strcmp(n, "bigserial") == 0 || strcmp(n, "serial8") == 0 ||
		strcmp(n, "smallserial") == 0 || strcmp(n, "serial2") == 0;
}

typedef struct VolatileArg
{
	Node	   *raw;
	Oid			type;
	int32		typmod;
	const char *col;
	bool		volatile_;
} VolatileArg;

/* Cooks a column default as ADD COLUMN does (cookDefault: parse analysis,
 * nothing is evaluated) and tests it as AddRelationNewConstraints does,
 * with contain_volatile_functions -- not planned: planning evaluates
 * immutable functions of constants, which would run code. */
static void
cook_default(void *arg)
{
	VolatileArg *v = arg;
	ParseState *ps = make_parsestate(NULL);
	Node	   *expr = cookDefault(ps, v->raw, v->type, v->typmod, v->col, '\0');

	v->volatile_ = contain_volatile_functions(expr);
}

/*
 * Whether domain type (or a domain it is over) has a constraint: NOT NULL
 * or a CHECK, as DomainHasConstraints answers -- but from the catalogs,
 * since the type cache plans the checks' expressions, which may evaluate
 * functions.
 */
static bool
domain_constrained(Oid type)
{
	while (OidIsValid(type))
	{
		HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
		Form_pg_type t;
		Relation	conrel;
		ScanKeyData key;
		SysScanDesc scan;
		bool		found;

		if (!HeapTupleIsValid(tup))
			return false;
		t = (Form_pg_type) GETSTRUCT(tup);
		if (t->typtype != TYPTYPE_DOMAIN)
		{
			ReleaseSysCache(tup);
			return false;
		}
		if (t->typnotnull)
		{
			ReleaseSysCache(tup);
			return true;
		}
		conrel = table_open(ConstraintRelationId, AccessShareLock);
		ScanKeyInit(&key, Anum_pg_constraint_contypid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(type));
		scan = systable_beginscan(conrel, ConstraintTypidIndexId, true, NULL, 1, &key);
		found = HeapTupleIsValid(systable_getnext(scan));
		systable_endscan(scan);
		table_close(conrel, AccessShareLock);
		type = t->typbasetype;
		ReleaseSysCache(tup);
		if (found)
			return true;
	}
	return false;
}

/*
 * ADD COLUMN: PostgreSQL 11 and later store a default that is not
 * volatile as the "missing" value of the existing rows (no rewrite); a
 * volatile default, an identity or stored generated column, and a domain
 * with constraints rewrite the table (tablecmds.c, ATExecAddColumn and
 * AddRelationNewConstraints' missingMode).  A CHECK constraint is tested
 * against every row, NOT NULL without a default too; a foreign key scans
 * and locks the referenced table; UNIQUE and PRIMARY KEY build an index.
 */
static void
add_column(ImpactState *st, Effect *e, ColumnDef *def)
{
	ListCell   *lc;
	Node	   *raw_default = def->raw_default;
	bool		not_null = def->is_not_null;
	int32		typmod = -1;
	Oid			type = def->typeName ? type_oid(def->typeName, &typmod) : InvalidOid;

	if (serial_type(def->typeName) || def->identity)
	{
		e->rewrites = true;
		e->advice = ADV_SERIAL;
	}
	foreach(lc, def->constraints)
	{
		Constraint *c = lfirst_node(Constraint, lc);

		switch (c->contype)
		{
			case CONSTR_DEFAULT:
				raw_default = c->raw_expr;
				break;
			case CONSTR_IDENTITY:
				e->rewrites = true;
				e->advice = ADV_SERIAL;
				break;
			case CONSTR_GENERATED:
				e->rewrites = true;
				break;
			case CONSTR_NOTNULL:
				not_null = true;
				break;
			case CONSTR_CHECK:
				e->scans = true;
				break;
			case CONSTR_FOREIGN:
				e->scans = true;
				if (c->pktable)
				{
					Effect		pk;

					memset(&pk, 0, sizeof(pk));
					resolve(st, c->pktable, &pk);
					e->also = pk.relid;
					e->also_lock = ShareRowExclusiveLock;
				}
				break;
			case CONSTR_PRIMARY:
			case CONSTR_UNIQUE:
			case CONSTR_EXCLUSION:
				e->scans = true;
				e->advice = ADV_UNIQUE;
				break;
			default:
				break;
		}
	}
	if (raw_default && !e->rewrites)
	{
		VolatileArg v = {raw_default, type, typmod, def->colname, true};

		/* a type or function the plan creates first: assume the worse */
		if (!OidIsValid(type) || !protected_call(cook_default, &v) || v.volatile_)
		{
			e->rewrites = true;
			e->advice = ADV_DEFAULT;
		}
	}
	if (OidIsValid(type) && domain_constrained(type))
		e->rewrites = true;
	if (not_null && raw_default == NULL)
		e->scans = true;
	if (e->rewrites)
		e->scans = true;
}

typedef struct RetypeArg
{
	Oid			relid;
	const char *col;
	TypeName   *tn;
	bool		rewrites;
} RetypeArg;

/*
 * ALTER COLUMN TYPE without USING: the server coerces the column to the
 * new type at assignment and plans the expression, then rewrites unless
 * what is left is the column itself through relabelings, a domain without
 * constraints, or a timestamp/timestamptz change that the time zone makes
 * a no-op (tablecmds.c, ATPrepAlterColumnType and
 * ATColumnChangeRequiresRewrite).  The same test here, on the same
 * server-made expression.
 */
static void
retype(void *arg)
{
	RetypeArg  *r = arg;
	HeapTuple	tup = SearchSysCacheAttName(r->relid, r->col);
	Form_pg_attribute att;
	Oid			target;
	int32		typmod;
	Node	   *expr;

	r->rewrites = true;
	if (!HeapTupleIsValid(tup))
		return;
	att = (Form_pg_attribute) GETSTRUCT(tup);
	typenameTypeIdAndMod(NULL, r->tn, &target, &typmod);
	expr = (Node *) makeVar(1, att->attnum, att->atttypid, att->atttypmod,
							att->attcollation, 0);
	ReleaseSysCache(tup);
	expr = coerce_to_target_type(NULL, expr, exprType(expr), target, typmod,
								 COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
	if (expr == NULL)
		return;					/* the statement will fail */
	/* planned as the server plans it: its only argument is the column,
	 * so no function is evaluated; the length coercions' support functions
	 * (C, set only by a superuser) fold what a larger length makes a no-op */
	expr = (Node *) expression_planner((Expr *) expr);
	for (;;)
	{
		if (IsA(expr, Var))
		{
			r->rewrites = false;
			return;
		}
		else if (IsA(expr, RelabelType))
			expr = (Node *) ((RelabelType *) expr)->arg;
		else if (IsA(expr, CoerceToDomain))
		{
			if (domain_constrained(((CoerceToDomain *) expr)->resulttype))
				return;
			expr = (Node *) ((CoerceToDomain *) expr)->arg;
		}
		else if (IsA(expr, FuncExpr) &&
				 (((FuncExpr *) expr)->funcid == F_TIMESTAMPTZ_TIMESTAMP ||
				  ((FuncExpr *) expr)->funcid == F_TIMESTAMP_TIMESTAMPTZ) &&
				 !TimestampTimestampTzRequiresRewrite())
			expr = linitial(((FuncExpr *) expr)->args);
		else
			return;
	}
}

/* Whether USING expr is the column col itself (no USING, in effect). */
static bool
using_itself(Node *expr, const char *col)
{
	ColumnRef  *cr;

	if (expr == NULL)
		return true;
	if (!IsA(expr, ColumnRef))
		return false;
	cr = (ColumnRef *) expr;
	return list_length(cr->fields) == 1 && IsA(linitial(cr->fields), String) &&
		strcmp(strVal(linitial(cr->fields)), col) == 0;
}

/* The column a raw "col IS NOT NULL" check names, or NULL. */
static const char *
not_null_check(Node *expr)
{
	NullTest   *nt;
	ColumnRef  *cr;

	if (expr == NULL || !IsA(expr, NullTest))
		return NULL;
	nt = (NullTest *) expr;
	if (nt->nulltesttype != IS_NOT_NULL || !IsA(nt->arg, ColumnRef))
		return NULL;
	cr = (ColumnRef *) nt->arg;
	if (list_length(cr->fields) != 1 || !IsA(linitial(cr->fields), String))
		return NULL;
	return strVal(linitial(cr->fields));
}

typedef struct ProveArg
{
	ImpactState *st;
	Oid			relid;
	const char *col;
	bool		proven;
} ProveArg;

/*
 * Whether the table's valid CHECK constraints (and those the plan
 * validates first) prove the column is never NULL: then SET NOT NULL skips
 * its scan (PostgreSQL 12 and later: tablecmds.c,
 * NotNullImpliedByRelConstraints, the same proof by predicate_implied_by,
 * here over the constraints as stored: a constraint the server proves only
 * once it has folded its constants is reported as a scan).
 */
static void
prove_not_null(void *arg)
{
	ProveArg   *p = arg;
	HeapTuple	att = SearchSysCacheAttName(p->relid, p->col);
	NullTest   *nt;
	List	   *known = NIL;
	Relation	conrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	p->proven = false;
	if (!HeapTupleIsValid(att))
		return;
	nt = makeNode(NullTest);
	nt->arg = (Expr *) makeVar(1, ((Form_pg_attribute) GETSTRUCT(att))->attnum,
							   ((Form_pg_attribute) GETSTRUCT(att))->atttypid,
							   ((Form_pg_attribute) GETSTRUCT(att))->atttypmod,
							   ((Form_pg_attribute) GETSTRUCT(att))->attcollation, 0);
	nt->nulltesttype = IS_NOT_NULL;
	nt->argisrow = false;
	nt->location = -1;
	ReleaseSysCache(att);

	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_constraint_conrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(p->relid));
	scan = systable_beginscan(conrel, ConstraintRelidTypidNameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
		bool		isnull;
		Datum		bin;
		Node	   *expr;

		if (con->contype != CONSTRAINT_CHECK)
			continue;
		if (!con->convalidated &&
			!list_member(p->st->validated,
						 makeString(psprintf("%u:%s", p->relid, NameStr(con->conname)))))
			continue;
		bin = heap_getattr(tup, Anum_pg_constraint_conbin, RelationGetDescr(conrel), &isnull);
		if (isnull)
			continue;
		/* not simplified first, as the server does: that would evaluate
		 * the immutable functions of constants it holds */
		expr = stringToNode(TextDatumGetCString(bin));
		known = list_concat(known, make_ands_implicit((Expr *) expr));
	}
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
	p->proven = known != NIL && predicate_implied_by(list_make1(nt), known, false);
}

/* SET NOT NULL of col on e's relation: whether it must scan. */
static bool
set_not_null_scans(ImpactState *st, Effect *e, const char *col)
{
	ListCell   *lc;
	ProveArg	p = {st, e->relid, col, false};

	foreach(lc, st->checks)
	{
		PlanCheck  *c = lfirst(lc);

		if (c->valid && same(c->rel, e->display) && same(c->col, col))
			return false;
	}
	if (!OidIsValid(e->relid) || e->planned)
		return true;
	return !(protected_call(prove_not_null, &p) && p.proven);
}

/* Notes a CHECK (col IS NOT NULL) the plan adds to e's relation. */
static void
plan_check(ImpactState *st, Effect *e, Constraint *c)
{
	const char *col = not_null_check(c->raw_expr);
	MemoryContext old;
	PlanCheck  *pc;

	if (col == NULL || e->display == NULL)
		return;
	old = MemoryContextSwitchTo(st->cxt);
	pc = palloc0(sizeof(PlanCheck));
	pc->rel = pstrdup(e->display);
	pc->name = c->conname ? pstrdup(c->conname) : NULL;
	pc->col = pstrdup(col);
	pc->valid = !c->skip_validation;
	st->checks = lappend(st->checks, pc);
	MemoryContextSwitchTo(old);
}

/* VALIDATE CONSTRAINT name of e's relation: checks of the plan, or the
 * catalog's, become valid for later proofs. */
static void
plan_validate(ImpactState *st, Effect *e, const char *name)
{
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, st->checks)
	{
		PlanCheck  *c = lfirst(lc);

		if (same(c->rel, e->display) && same(c->name, name))
			c->valid = true;
	}
	if (!OidIsValid(e->relid) || e->planned)
		return;
	old = MemoryContextSwitchTo(st->cxt);
	st->validated = lappend(st->validated, makeString(psprintf("%u:%s", e->relid, name)));
	MemoryContextSwitchTo(old);
}

/* Whether every key column of index relation indexname (in e's schema) is
 * NOT NULL already (PRIMARY KEY USING INDEX then sets nothing). */
static bool
key_columns_not_null(Effect *e, const char *indexname)
{
	Oid			nsp = OidIsValid(e->relid) ? get_rel_namespace(e->relid) : InvalidOid;
	Oid			idx = OidIsValid(nsp) ? get_relname_relid(indexname, nsp) : InvalidOid;
	HeapTuple	tup;
	bool		all = true;

	if (!OidIsValid(idx) || !HeapTupleIsValid(tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(idx))))
		return false;
	for (int i = 0; i < ((Form_pg_index) GETSTRUCT(tup))->indnkeyatts && all; i++)
	{
		AttrNumber	a = ((Form_pg_index) GETSTRUCT(tup))->indkey.values[i];
		HeapTuple	at = SearchSysCache2(ATTNUM, ObjectIdGetDatum(e->relid), Int16GetDatum(a));

		if (!HeapTupleIsValid(at))
			all = false;
		else
		{
			all = ((Form_pg_attribute) GETSTRUCT(at))->attnotnull;
			ReleaseSysCache(at);
		}
	}
	ReleaseSysCache(tup);
	return all;
}

/* ADD CONSTRAINT c to e's relation. */
static void
add_constraint(ImpactState *st, Effect *e, Constraint *c)
{
	switch (c->contype)
	{
		case CONSTR_CHECK:
			plan_check(st, e, c);
			if (!c->skip_validation)
			{
				e->scans = true;
				e->advice = ADV_CHECK;
			}
			break;
		case CONSTR_FOREIGN:
			if (c->pktable)
			{
				Effect		pk;

				memset(&pk, 0, sizeof(pk));
				resolve(st, c->pktable, &pk);
				e->also = pk.relid;
				e->also_lock = ShareRowExclusiveLock;
			}
			if (!c->skip_validation)
			{
				e->scans = true;
				e->advice = ADV_CHECK;
			}
			break;
		case CONSTR_PRIMARY:
		case CONSTR_UNIQUE:
			if (c->indexname == NULL)
			{
				e->scans = true;
				e->advice = ADV_UNIQUE;
			}
			else if (c->contype == CONSTR_PRIMARY && !key_columns_not_null(e, c->indexname))
				e->scans = true;	/* it sets NOT NULL on the key */
			break;
		case CONSTR_EXCLUSION:
			e->scans = true;
			break;
		default:
			break;
	}
}

/*
 * ALTER TABLE (and ALTER INDEX, VIEW, MATERIALIZED VIEW, SEQUENCE): the
 * lock is the server's own for the subcommands (AlterTableGetLockLevel,
 * as ProcessUtilitySlow takes it); what each subcommand rewrites or scans
 * follows tablecmds.c.
 */
static void
alter_table(ImpactState *st, AlterTableStmt *at, Effect *e)
{
	ListCell   *lc;

	target(st, e, at->relation, AlterTableGetLockLevel(at->cmds));
	foreach(lc, at->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		switch (cmd->subtype)
		{
			case AT_AddColumn:
				add_column(st, e, castNode(ColumnDef, cmd->def));
				break;
			case AT_AlterColumnType:
				{
					ColumnDef  *def = castNode(ColumnDef, cmd->def);
					RetypeArg	r = {e->relid, cmd->name, def->typeName, true};

					if (OidIsValid(e->relid) && !e->planned && using_itself(def->raw_default, cmd->name))
						(void) protected_call(retype, &r);
					if (r.rewrites)
					{
						e->rewrites = e->scans = true;
						e->advice = ADV_TYPE;
					}
					break;
				}
			case AT_SetNotNull:
				if (set_not_null_scans(st, e, cmd->name))
				{
					e->scans = true;
					e->advice = ADV_NOT_NULL;
				}
				break;
			case AT_AddConstraint:
				add_constraint(st, e, castNode(Constraint, cmd->def));
				break;
			case AT_ValidateConstraint:
				e->scans = true;
				plan_validate(st, e, cmd->name);
				break;
			case AT_SetTableSpace:
				{
					Oid			spc = get_tablespace_oid(cmd->name, true);
					Oid			now = OidIsValid(e->relid) ? get_rel_tablespace(e->relid) : InvalidOid;

					if (!OidIsValid(now))
						now = MyDatabaseTableSpace;
					if (spc != now)
						e->rewrites = e->scans = true;
					break;
				}
			case AT_SetLogged:
			case AT_SetUnLogged:
				{
					char		want = cmd->subtype == AT_SetLogged ?
						RELPERSISTENCE_PERMANENT : RELPERSISTENCE_UNLOGGED;

					if (!OidIsValid(e->relid) || get_rel_persistence(e->relid) != want)
						e->rewrites = e->scans = true;
					break;
				}
			case AT_SetAccessMethod:
				e->rewrites = e->scans = true;
				break;
			case AT_AttachPartition:
				if (at->objtype != OBJECT_INDEX)
				{
					/* the partition is locked AccessExclusiveLock (tablecmds.c,
					 * ATExecAttachPartition) and scanned unless its
					 * constraints prove the bound */
					PartitionCmd *pc = (PartitionCmd *) cmd->def;

					target(st, e, pc->name, AccessExclusiveLock);
					e->scans = true;
					e->advice = ADV_ATTACH;
				}
				break;
			case AT_DetachPartition:
				{
					PartitionCmd *pc = (PartitionCmd *) cmd->def;

					if (!pc->concurrent)
						e->advice = ADV_DETACH;
					break;
				}
			default:
				break;
		}
	}
}

/* CREATE TABLE: what it locks of other relations -- the parent of a
 * partition (AccessExclusiveLock, as the documentation of CREATE TABLE
 * ... PARTITION OF says), the parents it inherits from
 * (ShareUpdateExclusiveLock: tablecmds.c, DefineRelation), the tables its
 * foreign keys reference (ShareRowExclusiveLock) -- and the relation it
 * creates. */
static void
create_table(ImpactState *st, CreateStmt *cs, Effect *e)
{
	ListCell   *lc;

	foreach(lc, cs->inhRelations)
		target(st, e, lfirst_node(RangeVar, lc),
			   cs->partbound ? AccessExclusiveLock : ShareUpdateExclusiveLock);
	foreach(lc, cs->tableElts)
	{
		Node	   *n = lfirst(lc);
		List	   *cons = NIL;
		ListCell   *lc2;

		if (IsA(n, ColumnDef))
			cons = ((ColumnDef *) n)->constraints;
		else if (IsA(n, Constraint))
			cons = list_make1(n);
		foreach(lc2, cons)
		{
			Constraint *c = lfirst_node(Constraint, lc2);

			if (c->contype == CONSTR_FOREIGN && c->pktable)
				target(st, e, c->pktable, ShareRowExclusiveLock);
		}
	}
	foreach(lc, cs->constraints)
	{
		Constraint *c = lfirst_node(Constraint, lc);

		if (c->contype == CONSTR_FOREIGN && c->pktable)
			target(st, e, c->pktable, ShareRowExclusiveLock);
	}
	plan_rel(st, creation_schema(st, cs->relation), cs->relation->relname, InvalidOid);
}

/* Notes the relation an index builds on, and the index it creates. */
static void
create_index(ImpactState *st, IndexStmt *is, Effect *e)
{
	/* ShareLock, or ShareUpdateExclusiveLock when concurrent (the
	 * documentation of CREATE INDEX; indexcmds.c, DefineIndex) */
	target(st, e, is->relation, is->concurrent ? ShareUpdateExclusiveLock : ShareLock);
	e->scans = true;
	if (!is->concurrent && !e->planned)
		e->advice = ADV_INDEX;
	/* an index goes in its table's schema */
	if (is->idxname)
		plan_rel(st, e->nsp ? e->nsp : creation_schema(st, is->relation), is->idxname, InvalidOid);
}

/* DROP: tables, views, sequences and their kin are locked
 * AccessExclusiveLock (tablecmds.c, RemoveRelations); an index and its
 * table too, or ShareUpdateExclusiveLock when CONCURRENTLY; a trigger,
 * rule or policy locks its table AccessExclusiveLock. */
static void
drop(ImpactState *st, DropStmt *ds, Effect *e)
{
	ListCell   *lc;

	foreach(lc, ds->objects)
	{
		switch (ds->removeType)
		{
			case OBJECT_TABLE:
			case OBJECT_VIEW:
			case OBJECT_MATVIEW:
			case OBJECT_SEQUENCE:
			case OBJECT_FOREIGN_TABLE:
				{
					Effect		one;

					memset(&one, 0, sizeof(one));
					resolve(st, name_rv(lfirst(lc)), &one);
					target(st, e, name_rv(lfirst(lc)), AccessExclusiveLock);
					if (one.nsp)
						plan_rel_as(st, one.nsp, one.rv->relname, InvalidOid, true);
					break;
				}
			case OBJECT_INDEX:
				{
					int			lock = ds->concurrent ? ShareUpdateExclusiveLock : AccessExclusiveLock;

					target(st, e, name_rv(lfirst(lc)), lock);
					if (OidIsValid(e->relid) && !e->planned)
					{
						e->also = IndexGetRelation(e->relid, true);
						e->also_lock = lock;
					}
					if (!ds->concurrent)
						e->advice = ADV_DROP_INDEX;
					break;
				}
			case OBJECT_TRIGGER:
			case OBJECT_RULE:
			case OBJECT_POLICY:
				{
					List	   *names = lfirst(lc);

					if (list_length(names) > 1)
						target(st, e, name_rv(list_truncate(list_copy(names), list_length(names) - 1)),
							   AccessExclusiveLock);
					break;
				}
			default:
				return;
		}
	}
}

/* The relation of a COMMENT ON, or NULL. */
static RangeVar *
comment_rv(CommentStmt *cs)
{
	switch (cs->objtype)
	{
		case OBJECT_TABLE:
		case OBJECT_INDEX:
		case OBJECT_VIEW:
		case OBJECT_MATVIEW:
		case OBJECT_SEQUENCE:
		case OBJECT_FOREIGN_TABLE:
			return name_rv(castNode(List, cs->object));
		case OBJECT_COLUMN:
			{
				List	   *names = castNode(List, cs->object);

				return list_length(names) > 1 ?
					name_rv(list_truncate(list_copy(names), list_length(names) - 1)) : NULL;
			}
		default:
			return NULL;
	}
}

/* Whether a SELECT's FROM names a relation; the first one. */
static RangeVar *
first_from(SelectStmt *s)
{
	ListCell   *lc;

	if (s == NULL)
		return NULL;
	if (s->op != SETOP_NONE)
		return first_from(s->larg);
	foreach(lc, s->fromClause)
		if (IsA(lfirst(lc), RangeVar))
			return lfirst(lc);
	return NULL;
}

/*
 * Analyses one raw statement into e.  The locks of commands other than
 * ALTER TABLE are the ones their documentation lists ("Explicit Locking",
 * 13.3.1, PostgreSQL 15) and their code takes.
 */
static void
analyse(ImpactState *st, Node *stmt, Effect *e)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			alter_table(st, (AlterTableStmt *) stmt, e);
			break;
		case T_IndexStmt:
			create_index(st, (IndexStmt *) stmt, e);
			break;
		case T_CreateStmt:
			create_table(st, (CreateStmt *) stmt, e);
			break;
		case T_CreateTableAsStmt:
			{
				IntoClause *into = ((CreateTableAsStmt *) stmt)->into;

				plan_rel(st, creation_schema(st, into->rel), into->rel->relname, InvalidOid);
				break;
			}
		case T_ViewStmt:
			{
				RangeVar   *v = ((ViewStmt *) stmt)->view;

				plan_rel(st, creation_schema(st, v), v->relname, InvalidOid);
				break;
			}
		case T_CreateSeqStmt:
			{
				RangeVar   *v = ((CreateSeqStmt *) stmt)->sequence;

				plan_rel(st, creation_schema(st, v), v->relname, InvalidOid);
				break;
			}
		case T_CreateSchemaStmt:
			{
				CreateSchemaStmt *cs = (CreateSchemaStmt *) stmt;
				MemoryContext old = MemoryContextSwitchTo(st->cxt);

				if (cs->schemaname)
					st->schemas = lappend(st->schemas, pstrdup(cs->schemaname));
				MemoryContextSwitchTo(old);
				break;
			}
		case T_DropStmt:
			drop(st, (DropStmt *) stmt, e);
			break;
		case T_TruncateStmt:
			/* a new empty file: nothing is copied (not a rewrite) */
			foreach(lc, ((TruncateStmt *) stmt)->relations)
				target(st, e, lfirst_node(RangeVar, lc), AccessExclusiveLock);
			break;
		case T_RenameStmt:
			{
				RenameStmt *rs = (RenameStmt *) stmt;

				if (rs->relation == NULL)
					break;
				/* renaming an index takes ShareUpdateExclusiveLock
				 * (tablecmds.c, RenameRelation), anything else of a
				 * relation AccessExclusiveLock */
				target(st, e, rs->relation,
					   rs->renameType == OBJECT_INDEX ? ShareUpdateExclusiveLock : AccessExclusiveLock);
				if (rs->renameType == OBJECT_TABLE || rs->renameType == OBJECT_INDEX ||
					rs->renameType == OBJECT_VIEW || rs->renameType == OBJECT_MATVIEW ||
					rs->renameType == OBJECT_SEQUENCE || rs->renameType == OBJECT_FOREIGN_TABLE)
				{
					if (e->nsp)
					{
						plan_rel_as(st, e->nsp, rs->relation->relname, InvalidOid, true);
						plan_rel(st, e->nsp, rs->newname, e->planned ? InvalidOid : e->relid);
					}
				}
				break;
			}
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *as = (AlterObjectSchemaStmt *) stmt;

				if (as->relation)
					target(st, e, as->relation, AccessExclusiveLock);
				break;
			}
		case T_CreateTrigStmt:
			target(st, e, ((CreateTrigStmt *) stmt)->relation, ShareRowExclusiveLock);
			break;
		case T_RuleStmt:
			target(st, e, ((RuleStmt *) stmt)->relation, AccessExclusiveLock);
			break;
		case T_CreatePolicyStmt:
			target(st, e, ((CreatePolicyStmt *) stmt)->table, AccessExclusiveLock);
			break;
		case T_AlterPolicyStmt:
			target(st, e, ((AlterPolicyStmt *) stmt)->table, AccessExclusiveLock);
			break;
		case T_CommentStmt:
			{
				RangeVar   *rv = comment_rv((CommentStmt *) stmt);

				if (rv)
					target(st, e, rv, ShareUpdateExclusiveLock);
				break;
			}
		case T_CreateStatsStmt:
			foreach(lc, ((CreateStatsStmt *) stmt)->relations)
				if (IsA(lfirst(lc), RangeVar))
					target(st, e, lfirst(lc), ShareUpdateExclusiveLock);
			break;
		case T_VacuumStmt:
			{
				VacuumStmt *vs = (VacuumStmt *) stmt;
				bool		full = false;

				foreach(lc, vs->options)
				{
					DefElem    *opt = lfirst_node(DefElem, lc);

					if (strcmp(opt->defname, "full") == 0)
						full = defGetBoolean(opt);
				}
				foreach(lc, vs->rels)
				{
					VacuumRelation *vr = lfirst_node(VacuumRelation, lc);

					if (vr->relation)
						target(st, e, vr->relation,
							   vs->is_vacuumcmd && full ? AccessExclusiveLock : ShareUpdateExclusiveLock);
				}
				if (vs->is_vacuumcmd)
					e->scans = true;
				if (vs->is_vacuumcmd && full)
				{
					e->rewrites = true;
					e->advice = ADV_VACUUM_FULL;
				}
				break;
			}
		case T_ClusterStmt:
			if (((ClusterStmt *) stmt)->relation)
			{
				target(st, e, ((ClusterStmt *) stmt)->relation, AccessExclusiveLock);
				e->rewrites = e->scans = true;
				e->advice = ADV_VACUUM_FULL;
			}
			break;
		case T_ReindexStmt:
			{
				ReindexStmt *rs = (ReindexStmt *) stmt;
				bool		concurrent = false;

				if (rs->relation == NULL)
					break;
				foreach(lc, rs->params)
				{
					DefElem    *opt = lfirst_node(DefElem, lc);

					if (strcmp(opt->defname, "concurrently") == 0)
						concurrent = defGetBoolean(opt);
				}
				/* the index AccessExclusiveLock and its table ShareLock
				 * (indexcmds.c, ReindexIndex; index.c, reindex_index);
				 * REINDEX TABLE locks the table ShareLock and rebuilds
				 * each index under AccessExclusiveLock */
				if (concurrent)
					target(st, e, rs->relation, ShareUpdateExclusiveLock);
				else if (rs->kind == REINDEX_OBJECT_INDEX)
				{
					target(st, e, rs->relation, AccessExclusiveLock);
					e->rewrites = true;
					if (OidIsValid(e->relid))
					{
						e->also = IndexGetRelation(e->relid, true);
						e->also_lock = ShareLock;
					}
				}
				else
					target(st, e, rs->relation, ShareLock);
				e->scans = true;
				if (!concurrent)
					e->advice = ADV_REINDEX;
				break;
			}
		case T_RefreshMatViewStmt:
			{
				RefreshMatViewStmt *rm = (RefreshMatViewStmt *) stmt;

				target(st, e, rm->relation, rm->concurrent ? ExclusiveLock : AccessExclusiveLock);
				e->scans = true;
				if (!rm->concurrent && !rm->skipData)
				{
					e->rewrites = true;
					e->advice = ADV_REFRESH;
				}
				break;
			}
		case T_LockStmt:
			foreach(lc, ((LockStmt *) stmt)->relations)
				target(st, e, lfirst_node(RangeVar, lc), ((LockStmt *) stmt)->mode);
			break;
		case T_InsertStmt:
			target(st, e, ((InsertStmt *) stmt)->relation, RowExclusiveLock);
			break;
		case T_UpdateStmt:
			target(st, e, ((UpdateStmt *) stmt)->relation, RowExclusiveLock);
			if (((UpdateStmt *) stmt)->whereClause == NULL)
			{
				e->scans = true;
				if (!e->planned)
					e->advice = ADV_BACKFILL;
			}
			break;
		case T_DeleteStmt:
			target(st, e, ((DeleteStmt *) stmt)->relation, RowExclusiveLock);
			e->scans = ((DeleteStmt *) stmt)->whereClause == NULL;
			break;
		case T_MergeStmt:
			target(st, e, ((MergeStmt *) stmt)->relation, RowExclusiveLock);
			break;
		case T_SelectStmt:
			{
				SelectStmt *s = (SelectStmt *) stmt;
				RangeVar   *rv = first_from(s);

				if (s->intoClause)
					plan_rel(st, creation_schema(st, s->intoClause->rel),
							 s->intoClause->rel->relname, InvalidOid);
				if (rv)
					target(st, e, rv, s->lockingClause ? RowShareLock : AccessShareLock);
				break;
			}
		case T_AlterSeqStmt:
			/* ShareRowExclusiveLock (sequence.c, AlterSequence); every
			 * option but OWNED BY and START writes the sequence anew
			 * (init_params' need_seq_rewrite) */
			target(st, e, ((AlterSeqStmt *) stmt)->sequence, ShareRowExclusiveLock);
			foreach(lc, ((AlterSeqStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "owned_by") != 0 && strcmp(opt->defname, "start") != 0)
					e->rewrites = true;
			}
			break;
		case T_VariableSetStmt:
			{
				VariableSetStmt *vs = (VariableSetStmt *) stmt;

				if (vs->name && strcmp(vs->name, "search_path") == 0)
					set_path(st, vs);
				break;
			}
		case T_DoStmt:
		case T_CallStmt:
			e->advice = ADV_CODE;
			break;
		default:
			break;
	}
	if (e->rewrites)
		e->scans = true;
}

/* ---- the host callback ---- */

/* The first words of the statement at text[0..n), white space folded, in
 * UTF-8. */
static char *
first_words(const char *text, int n)
{
	StringInfoData buf;
	int			i = 0;

	initStringInfo(&buf);
	while (i < n && buf.len < 60)
	{
		if (isspace((unsigned char) text[i]))
		{
			while (i < n && isspace((unsigned char) text[i]))
				i++;
			if (i < n)
				appendStringInfoChar(&buf, ' ');
			continue;
		}
		{
			int			k = pg_mblen(text + i);

			appendBinaryStringInfo(&buf, text + i, Min(k, n - i));
			i += k;
		}
	}
	while (i < n && isspace((unsigned char) text[i]))
		i++;
	if (i < n)
	{
		/* cut at the last whole word */
		char	   *sp = strrchr(buf.data, ' ');

		if (sp && sp > buf.data + 20)
			*sp = '\0';
		buf.len = strlen(buf.data);
		appendStringInfoString(&buf, " ...");
	}
	return mig_pg_utf8(buf.data);
}

/* A new state for a call, in mp's memory. */
static ImpactState *
new_state(MigPg *mp)
{
	MemoryContext cxt = AllocSetContextCreate(mp->cxt, "migrate impact", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ImpactState *st = palloc0(sizeof(ImpactState));
	int			nest;

	st->cxt = cxt;
	/* a tenant's migrations begin with search_path set to the tenant
	 * (mig_pg_tenant_path_enter, as when they run): names resolve there */
	nest = mig_pg_tenant_path_enter(mp);
	st->path = path_names(true);
	st->explicit_path = path_names(false);
	mig_pg_tenant_path_leave(nest);
	MemoryContextSwitchTo(old);
	return st;
}

static int
pg_impact(void *ctx, const mig_script *s, int first, mig_impact_cb cb, void *arg,
		  mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	ImpactState *st = (ImpactState *) mp->impact;
	MemoryContext old = CurrentMemoryContext;
	ErrorContextCallback errcb;
	List	   *stmts;
	ListCell   *lc;
	int			rc = MIG_OK;

	if (s == NULL || first)
	{
		if (st)
			MemoryContextDelete(st->cxt);
		mp->impact = NULL;
		if (s == NULL)
			return MIG_OK;
	}
	if (mp->impact == NULL)
		mp->impact = st = new_state(mp);
	mig_pg_script_begin(mp, s, &errcb);
	stmts = raw_parser(mp->text, RAW_PARSE_DEFAULT);
	foreach(lc, stmts)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		int			off,
					end;
		char	   *text = mig_pg_statement_text(mp, rs, &off, &end);
		Effect		e;
		mig_impact_row row;
		StringInfoData blocked;

		CHECK_FOR_INTERRUPTS();
		mp->stmt_off = off;
		memset(&e, 0, sizeof(e));
		analyse(st, rs->stmt, &e);
		memset(&row, 0, sizeof(row));
		row.offset = (size_t) mig_pg_script_offset(mp, off);
		row.statement = first_words(text, (int) strlen(text));
		row.lock = e.lock;
		row.rewrites = e.rewrites;
		row.scans = e.scans;
		row.advice = e.advice;
		row.bytes = row.rows = row.pages = -1;
		if (e.display && !e.planned)
		{
			row.relation = mig_pg_utf8(e.display);
			if (OidIsValid(e.relid))
				relation_size(e.relid, e.inh, &row.bytes, &row.rows);
			initStringInfo(&blocked);
			append_blockers(st, &blocked, e.relid, e.lock);
			if (OidIsValid(e.also) && e.also != e.relid)
				append_blockers(st, &blocked, e.also, e.also_lock);
			if (blocked.len > 0)
				row.blocked_by = mig_pg_utf8(blocked.data);
		}
		if ((rc = cb(arg, &row)) != MIG_OK)
			break;
	}
	mp->stmt_off = -1;
	mig_pg_script_done(mp, &errcb, old);
	return rc;
}

void
mig_pg_impact_host(MigPg *mp)
{
	mp->host.impact = pg_impact;
	mp->host.policy.max_lock = max_lock;
	mp->host.policy.no_rewrite = no_rewrite ? 1 : 0;
	mp->host.policy.max_bytes = (int64_t) max_size_kb * 1024;
}

/* ---- migrate_script_ahead ---- */

static int
mark_ahead(MigPg *mp, void *arg, mig_err *err)
{
	const char *version = (const char *) arg;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *sql;
	int			ret;
	bool		isnull;
	TransactionId xmin;

	values[0] = mig_pg_text_datum(version, strlen(version));
	sql = psprintf("SELECT xmin::pg_catalog.text FROM %s WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
				   mp->history, mig_pg_tenant_cond(mp));
	ret = SPI_execute_with_args(sql, 1, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not read migrate_history: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	xmin = SPI_processed == 1 ?
		(TransactionId) strtoul(TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
																 SPI_tuptable->tupdesc, 1,
																 &isnull)), NULL, 10) :
		InvalidTransactionId;
	if (!TransactionIdIsValid(xmin) || !TransactionIdIsCurrentTransactionId(xmin))
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s was not recorded by this transaction", version);
		mig_err_detail(err, "migrate_script_ahead marks only a row the same script recorded just before.");
		return MIG_ERROR;
	}
	sql = psprintf("UPDATE %s SET ahead = true WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
				   mp->history, mig_pg_tenant_cond(mp));
	ret = SPI_execute_with_args(sql, 1, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE || SPI_processed != 1)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not update migrate_history: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

/*
 * migrate_script_ahead(version text) RETURNS void
 *
 * What an off-hours script of the migrations the policy flags
 * (migrate_script only=flagged) calls after recording one that runs ahead
 * of older migrations still pending: marks its row, so that a later
 * migrate_apply runs those older ones without calling them out of order.
 * Only the row this transaction recorded, under the migration lock.
 */
PG_FUNCTION_INFO_V1(migrate_script_ahead);
Datum
migrate_script_ahead(PG_FUNCTION_ARGS)
{
	MigPg	   *mp;
	mig_err		err;
	char	   *version = mig_pg_utf8(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	int			rc;

	if (!DatumGetBool(DirectFunctionCall1(pg_try_advisory_xact_lock_int8,
										  Int64GetDatum(MIGRATE_LOCK_KEY))))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("migrate_script_ahead needs the migration lock"),
				 errdetail("Another session holds it."),
				 errhint("Run the whole script written by migrate_script: it takes the lock first.")));
	mp = mig_pg_begin(fcinfo->flinfo->fn_oid, false);
	if (!mp->has_ahead)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migrate_history has no column ahead"),
				 errhint("ALTER EXTENSION migrate UPDATE.")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	mig_err_clear(&err);
	rc = mig_pg_as_owner(mp, mark_ahead, version, &err);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	mig_pg_end(mp);
	if (rc != MIG_OK)
		mig_pg_report(&err);
	PG_RETURN_VOID();
}
