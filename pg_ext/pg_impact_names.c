/*
 * pg_impact_names.c -- names, as the statements of a migration will
 * resolve them (see pg_impact.c): the caller's search_path (and a SET
 * search_path of the plan), schemas the plan creates, and relations
 * created, renamed or dropped by an earlier statement of the plan.
 */

#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "pg_impact.h"

/* ---- names, as the statements will resolve them ---- */

bool
mig_pg_impact_same(const char *a, const char *b)
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

		if (mig_pg_impact_same(p->nsp, nsp) && mig_pg_impact_same(p->rel, rel))
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
		if (mig_pg_impact_same(lfirst(lc), name))
			return true;
	return false;
}

/* The search path now, as names (including pg_catalog and pg_temp where
 * the server puts them when includeImplicit). */
List *
mig_pg_impact_path_names(bool implicit)
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
void
mig_pg_impact_resolve(ImpactState *st, const RangeVar *rv, Effect *e)
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
char *
mig_pg_impact_creation_schema(ImpactState *st, const RangeVar *rv)
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
void
mig_pg_impact_plan_rel_as(ImpactState *st, const char *nsp, const char *rel, Oid oid, bool gone)
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

void
mig_pg_impact_plan_rel(ImpactState *st, const char *nsp, const char *rel, Oid oid)
{
	mig_pg_impact_plan_rel_as(st, nsp, rel, oid, false);
}

/* SET search_path: the path the statements after it resolve names with. */
void
mig_pg_impact_set_path(ImpactState *st, VariableSetStmt *vs)
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
		expl = mig_pg_impact_path_names(false);
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
