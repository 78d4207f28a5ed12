/*
 * pg_impact.h -- internal to migrate_impact (pg_impact*.c): the state of
 * the analysis over one call, the effect of one statement, and the
 * functions its files share.
 */
#ifndef MIGRATE_PG_IMPACT_H
#define MIGRATE_PG_IMPACT_H

#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "storage/lock.h"

#include "pg_host.h"

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

/* pg_impact_names.c */
extern bool mig_pg_impact_same(const char *a, const char *b);
extern List *mig_pg_impact_path_names(bool implicit);
extern void mig_pg_impact_resolve(ImpactState *st, const RangeVar *rv, Effect *e);
extern char *mig_pg_impact_creation_schema(ImpactState *st, const RangeVar *rv);
extern void mig_pg_impact_plan_rel_as(ImpactState *st, const char *nsp, const char *rel,
									  Oid oid, bool gone);
extern void mig_pg_impact_plan_rel(ImpactState *st, const char *nsp, const char *rel, Oid oid);
extern void mig_pg_impact_set_path(ImpactState *st, VariableSetStmt *vs);

/* pg_impact_live.c */
extern void mig_pg_impact_relation_size(Oid relid, bool inh, int64 *bytes, int64 *rows);
extern void mig_pg_impact_append_blockers(ImpactState *st, StringInfo buf, Oid relid, int lock);

/* pg_impact_locks.c */
extern void mig_pg_impact_target(ImpactState *st, Effect *e, const RangeVar *rv, int lock);
extern void mig_pg_impact_analyse(ImpactState *st, Node *stmt, Effect *e);

/* pg_impact_rewrite.c */
extern void mig_pg_impact_alter_table(ImpactState *st, AlterTableStmt *at, Effect *e);

#endif							/* MIGRATE_PG_IMPACT_H */
