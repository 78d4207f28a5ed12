/*
 * pg_impact_locks.c -- the statements of a migration walked one by one
 * (see pg_impact.c): the relation each locks and the lock it takes, by the
 * levels PostgreSQL documents per command ("Explicit Locking", 13.3.1
 * Table-Level Locks, PostgreSQL 15) and takes in their code (cited beside
 * each), what the commands other than ALTER TABLE rewrite or scan, and
 * their advice; ALTER TABLE goes to pg_impact_rewrite.c.
 */

#include "postgres.h"

#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/defrem.h"
#include "nodes/makefuncs.h"
#include "storage/lock.h"
#include "utils/memutils.h"

#include "pg_impact.h"

static const char ADV_INDEX[] = "CREATE INDEX CONCURRENTLY, in a migration of its own (CALL migrate_run runs it outside a transaction), lets writes go on while it builds.";
static const char ADV_DROP_INDEX[] = "DROP INDEX CONCURRENTLY, in a migration of its own (CALL migrate_run), does not block queries while it waits.";
static const char ADV_REINDEX[] = "REINDEX ... CONCURRENTLY, in a migration of its own (CALL migrate_run), rebuilds without blocking writes.";
static const char ADV_BACKFILL[] = "Update in batches (WHERE id BETWEEN ...), each its own transaction, in a migration run outside a transaction.";
static const char ADV_REFRESH[] = "REFRESH MATERIALIZED VIEW CONCURRENTLY (it needs a unique index on the view) lets reads go on.";
static const char ADV_VACUUM_FULL[] = "Plain VACUUM makes the space reusable without blocking; VACUUM FULL and CLUSTER rewrite the table under AccessExclusiveLock.";
static const char ADV_CODE[] = "It runs code this analysis cannot look into: the locks it takes are not known here.";

/* ---- the rules ---- */

/* Sets e's relation (resolving rv) and its lock, keeping the stronger
 * when e already has one (the primary relation of a statement that locks
 * several is the one it locks hardest, then the largest). */
void
mig_pg_impact_target(ImpactState *st, Effect *e, const RangeVar *rv, int lock)
{
	Effect		n;

	memset(&n, 0, sizeof(n));
	mig_pg_impact_resolve(st, rv, &n);
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
		mig_pg_impact_target(st, e, lfirst_node(RangeVar, lc),
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
				mig_pg_impact_target(st, e, c->pktable, ShareRowExclusiveLock);
		}
	}
	foreach(lc, cs->constraints)
	{
		Constraint *c = lfirst_node(Constraint, lc);

		if (c->contype == CONSTR_FOREIGN && c->pktable)
			mig_pg_impact_target(st, e, c->pktable, ShareRowExclusiveLock);
	}
	mig_pg_impact_plan_rel(st, mig_pg_impact_creation_schema(st, cs->relation), cs->relation->relname, InvalidOid);
}

/* Notes the relation an index builds on, and the index it creates. */
static void
create_index(ImpactState *st, IndexStmt *is, Effect *e)
{
	/* ShareLock, or ShareUpdateExclusiveLock when concurrent (the
	 * documentation of CREATE INDEX; indexcmds.c, DefineIndex) */
	mig_pg_impact_target(st, e, is->relation, is->concurrent ? ShareUpdateExclusiveLock : ShareLock);
	e->scans = true;
	if (!is->concurrent && !e->planned)
		e->advice = ADV_INDEX;
	/* an index goes in its table's schema */
	if (is->idxname)
		mig_pg_impact_plan_rel(st, e->nsp ? e->nsp : mig_pg_impact_creation_schema(st, is->relation), is->idxname, InvalidOid);
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
					mig_pg_impact_resolve(st, name_rv(lfirst(lc)), &one);
					mig_pg_impact_target(st, e, name_rv(lfirst(lc)), AccessExclusiveLock);
					if (one.nsp)
						mig_pg_impact_plan_rel_as(st, one.nsp, one.rv->relname, InvalidOid, true);
					break;
				}
			case OBJECT_INDEX:
				{
					int			lock = ds->concurrent ? ShareUpdateExclusiveLock : AccessExclusiveLock;

					mig_pg_impact_target(st, e, name_rv(lfirst(lc)), lock);
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
						mig_pg_impact_target(st, e, name_rv(list_truncate(list_copy(names), list_length(names) - 1)),
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
void
mig_pg_impact_analyse(ImpactState *st, Node *stmt, Effect *e)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			mig_pg_impact_alter_table(st, (AlterTableStmt *) stmt, e);
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

				mig_pg_impact_plan_rel(st, mig_pg_impact_creation_schema(st, into->rel), into->rel->relname, InvalidOid);
				break;
			}
		case T_ViewStmt:
			{
				RangeVar   *v = ((ViewStmt *) stmt)->view;

				mig_pg_impact_plan_rel(st, mig_pg_impact_creation_schema(st, v), v->relname, InvalidOid);
				break;
			}
		case T_CreateSeqStmt:
			{
				RangeVar   *v = ((CreateSeqStmt *) stmt)->sequence;

				mig_pg_impact_plan_rel(st, mig_pg_impact_creation_schema(st, v), v->relname, InvalidOid);
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
				mig_pg_impact_target(st, e, lfirst_node(RangeVar, lc), AccessExclusiveLock);
			break;
		case T_RenameStmt:
			{
				RenameStmt *rs = (RenameStmt *) stmt;

				if (rs->relation == NULL)
					break;
				/* renaming an index takes ShareUpdateExclusiveLock
				 * (tablecmds.c, RenameRelation), anything else of a
				 * relation AccessExclusiveLock */
				mig_pg_impact_target(st, e, rs->relation,
					   rs->renameType == OBJECT_INDEX ? ShareUpdateExclusiveLock : AccessExclusiveLock);
				if (rs->renameType == OBJECT_TABLE || rs->renameType == OBJECT_INDEX ||
					rs->renameType == OBJECT_VIEW || rs->renameType == OBJECT_MATVIEW ||
					rs->renameType == OBJECT_SEQUENCE || rs->renameType == OBJECT_FOREIGN_TABLE)
				{
					if (e->nsp)
					{
						mig_pg_impact_plan_rel_as(st, e->nsp, rs->relation->relname, InvalidOid, true);
						mig_pg_impact_plan_rel(st, e->nsp, rs->newname, e->planned ? InvalidOid : e->relid);
					}
				}
				break;
			}
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *as = (AlterObjectSchemaStmt *) stmt;

				if (as->relation)
					mig_pg_impact_target(st, e, as->relation, AccessExclusiveLock);
				break;
			}
		case T_CreateTrigStmt:
			mig_pg_impact_target(st, e, ((CreateTrigStmt *) stmt)->relation, ShareRowExclusiveLock);
			break;
		case T_RuleStmt:
			mig_pg_impact_target(st, e, ((RuleStmt *) stmt)->relation, AccessExclusiveLock);
			break;
		case T_CreatePolicyStmt:
			mig_pg_impact_target(st, e, ((CreatePolicyStmt *) stmt)->table, AccessExclusiveLock);
			break;
		case T_AlterPolicyStmt:
			mig_pg_impact_target(st, e, ((AlterPolicyStmt *) stmt)->table, AccessExclusiveLock);
			break;
		case T_CommentStmt:
			{
				RangeVar   *rv = comment_rv((CommentStmt *) stmt);

				if (rv)
					mig_pg_impact_target(st, e, rv, ShareUpdateExclusiveLock);
				break;
			}
		case T_CreateStatsStmt:
			foreach(lc, ((CreateStatsStmt *) stmt)->relations)
				if (IsA(lfirst(lc), RangeVar))
					mig_pg_impact_target(st, e, lfirst(lc), ShareUpdateExclusiveLock);
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
						mig_pg_impact_target(st, e, vr->relation,
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
				mig_pg_impact_target(st, e, ((ClusterStmt *) stmt)->relation, AccessExclusiveLock);
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
					mig_pg_impact_target(st, e, rs->relation, ShareUpdateExclusiveLock);
				else if (rs->kind == REINDEX_OBJECT_INDEX)
				{
					mig_pg_impact_target(st, e, rs->relation, AccessExclusiveLock);
					e->rewrites = true;
					if (OidIsValid(e->relid))
					{
						e->also = IndexGetRelation(e->relid, true);
						e->also_lock = ShareLock;
					}
				}
				else
					mig_pg_impact_target(st, e, rs->relation, ShareLock);
				e->scans = true;
				if (!concurrent)
					e->advice = ADV_REINDEX;
				break;
			}
		case T_RefreshMatViewStmt:
			{
				RefreshMatViewStmt *rm = (RefreshMatViewStmt *) stmt;

				mig_pg_impact_target(st, e, rm->relation, rm->concurrent ? ExclusiveLock : AccessExclusiveLock);
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
				mig_pg_impact_target(st, e, lfirst_node(RangeVar, lc), ((LockStmt *) stmt)->mode);
			break;
		case T_InsertStmt:
			mig_pg_impact_target(st, e, ((InsertStmt *) stmt)->relation, RowExclusiveLock);
			break;
		case T_UpdateStmt:
			mig_pg_impact_target(st, e, ((UpdateStmt *) stmt)->relation, RowExclusiveLock);
			if (((UpdateStmt *) stmt)->whereClause == NULL)
			{
				e->scans = true;
				if (!e->planned)
					e->advice = ADV_BACKFILL;
			}
			break;
		case T_DeleteStmt:
			mig_pg_impact_target(st, e, ((DeleteStmt *) stmt)->relation, RowExclusiveLock);
			e->scans = ((DeleteStmt *) stmt)->whereClause == NULL;
			break;
		case T_MergeStmt:
			mig_pg_impact_target(st, e, ((MergeStmt *) stmt)->relation, RowExclusiveLock);
			break;
		case T_SelectStmt:
			{
				SelectStmt *s = (SelectStmt *) stmt;
				RangeVar   *rv = first_from(s);

				if (s->intoClause)
					mig_pg_impact_plan_rel(st, mig_pg_impact_creation_schema(st, s->intoClause->rel),
							 s->intoClause->rel->relname, InvalidOid);
				if (rv)
					mig_pg_impact_target(st, e, rv, s->lockingClause ? RowShareLock : AccessShareLock);
				break;
			}
		case T_AlterSeqStmt:
			/* ShareRowExclusiveLock (sequence.c, AlterSequence); every
			 * option but OWNED BY and START writes the sequence anew
			 * (init_params' need_seq_rewrite) */
			mig_pg_impact_target(st, e, ((AlterSeqStmt *) stmt)->sequence, ShareRowExclusiveLock);
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
					mig_pg_impact_set_path(st, vs);
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
