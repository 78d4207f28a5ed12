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
 * The analysis is in one file per idea:
 *
 *   pg_impact_names.c    names, as the statements will resolve them
 *                        (search_path, relations the plan creates or
 *                        renames);
 *   pg_impact_locks.c    the statements walked one by one, with the lock
 *                        each takes;
 *   pg_impact_rewrite.c  ALTER TABLE: what its subcommands rewrite or
 *                        scan;
 *   pg_impact_live.c     sizes and blockers, from the relation's files
 *                        and the lock table;
 *   pg_impact_ahead.c    migrate_script_ahead;
 *
 * and pg_impact.h holds what they share.  Here: the settings of the impact
 * policy (migrate.max_lock, migrate.no_rewrite, migrate.max_size) and the
 * host callback, which runs the analysis over each statement of a script
 * and hands the core a row for each.
 */

#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/parser.h"
#include "storage/lock.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "pg_impact.h"

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
	st->path = mig_pg_impact_path_names(true);
	st->explicit_path = mig_pg_impact_path_names(false);
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
		mig_pg_impact_analyse(st, rs->stmt, &e);
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
				mig_pg_impact_relation_size(e.relid, e.inh, &row.bytes, &row.rows);
			initStringInfo(&blocked);
			mig_pg_impact_append_blockers(st, &blocked, e.relid, e.lock);
			if (OidIsValid(e.also) && e.also != e.relid)
				mig_pg_impact_append_blockers(st, &blocked, e.also, e.also_lock);
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
