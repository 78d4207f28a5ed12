/*
 * pg_impact_rewrite.c -- what ALTER TABLE's subcommands rewrite or scan,
 * by the server's own tests (tablecmds.c: ATExecAddColumn's "missing"
 * default, ATColumnChangeRequiresRewrite, NotNullImpliedByRelConstraints)
 * with the server's coercion and expression planning, each part that may
 * raise an error run in a subtransaction; and the advice for a safer form.
 * The lock of ALTER TABLE is the server's (AlterTableGetLockLevel).
 */

#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/heap.h"
#include "catalog/index.h"
#include "catalog/indexing.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_type.h"
#include "commands/tablecmds.h"
#include "commands/tablespace.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_node.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pg_impact.h"

static const char ADV_CHECK[] = "Add it NOT VALID (a brief lock, no scan), then VALIDATE CONSTRAINT in a later migration: that scan takes ShareUpdateExclusiveLock, which lets reads and writes go on.";
static const char ADV_NOT_NULL[] = "Add CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it in a later migration, then SET NOT NULL skips the scan; drop the check after.";
static const char ADV_UNIQUE[] = "CREATE UNIQUE INDEX CONCURRENTLY first, in a migration of its own, then ADD CONSTRAINT ... UNIQUE (or PRIMARY KEY) USING INDEX.";
static const char ADV_DEFAULT[] = "Add the column without a default (or with a constant one: no rewrite), then fill it in batches, each batch its own transaction.";
static const char ADV_TYPE[] = "Add a new column of the new type, fill it in batches, then switch to it; or change to a type the server converts without a rewrite (varchar(n) to a larger n, or to text).";
static const char ADV_ATTACH[] = "Add a CHECK constraint matching the partition bound, NOT VALID, and VALIDATE it first: ATTACH PARTITION then skips the scan.";
static const char ADV_DETACH[] = "DETACH PARTITION ... CONCURRENTLY, in a migration of its own (CALL migrate_run), takes ShareUpdateExclusiveLock only.";
static const char ADV_SERIAL[] = "Add the column without a default, then set its default (no rewrite) and fill the existing rows in batches.";

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
					mig_pg_impact_resolve(st, c->pktable, &pk);
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

		if (c->valid && mig_pg_impact_same(c->rel, e->display) && mig_pg_impact_same(c->col, col))
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

		if (mig_pg_impact_same(c->rel, e->display) && mig_pg_impact_same(c->name, name))
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
				mig_pg_impact_resolve(st, c->pktable, &pk);
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
void
mig_pg_impact_alter_table(ImpactState *st, AlterTableStmt *at, Effect *e)
{
	ListCell   *lc;

	mig_pg_impact_target(st, e, at->relation, AlterTableGetLockLevel(at->cmds));
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

					mig_pg_impact_target(st, e, pc->name, AccessExclusiveLock);
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
