/*
 * pg_tenant.c -- tenants (issue 22): one folder applied to many schemas,
 * each with a history of its own.
 *
 *   SELECT migrate_apply('/srv/app/migrations', 'schema=acme');
 *   SELECT * FROM migrate_status('/srv/app/migrations', 'schema=acme');
 *   SELECT migrate_down(1, 'schema=acme');
 *
 * A tenant is a schema, known by its name.  A call with schema=S:
 *
 *   checks    S exists (3F000), is no system or temporary schema (42939),
 *             and the caller has USAGE on it, and CREATE when the call
 *             writes (42501): no role records history for, or runs
 *             migrations in, a schema it may not use;
 *   locks     the two-int advisory lock (MIGRATE_TENANT_KEY, S's OID), so
 *             that callers of different tenants never wait for each other
 *             and two of one tenant apply once; in function mode also
 *             S itself (ACCESS SHARE: a DROP SCHEMA waits for the call);
 *   runs      each migration with search_path set to S, as a function's
 *             SET clause sets it: a SET search_path of the migration wins
 *             for the rest of that migration, and is undone after it;
 *   records   in the rows of the extension's tables whose tenant is 'S'
 *             (pg_history.c, pg_outside.c, pg_worker.c, pg_calls.c); the
 *             calls without schema= are the tenant ''.
 *
 * The extension's own SQL never runs under S's search_path: it runs as the
 * owner of its tables with search_path pinned to pg_catalog, pg_temp
 * (mig_pg_owner_enter), and names everything it uses with its schema, so
 * nothing S's owner creates in S (a function, an operator, a table named
 * as one of pg_catalog's) is ever resolved by it.  What the migrations
 * themselves run resolves in S by design, with the caller's rights, as if
 * the caller had run them with SET search_path = S.
 *
 * Also here: the history's trigger, which counts hand edits and takes the
 * lock of the tenant of each row written.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pg_host.h"

/* Fills err for a tenant the call cannot have; returns MIG_ERROR. */
static int
refuse(mig_err *err, const char *sqlstate, const char *name, const char *fmt)
{
	mig_err_set(err, sqlstate, fmt, mig_pg_utf8(name));
	return MIG_ERROR;
}

int
mig_pg_tenant_set(MigPg *mp, const char *name, bool writes, mig_err *err)
{
	Oid			nsp;
	const char *u;

	if (name == NULL || name[0] == '\0')
	{
		mp->tenant = "";
		mp->tenant_nsp = InvalidOid;
		mp->tenant_lit = "''";
		return MIG_OK;
	}
	u = mig_pg_utf8(name);
	if (!mp->has_tenants)
	{
		mig_err_set(err, "0A000", "tenants need version 0.3 of the extension migrate");
		mig_err_detail(err, "This database has an older version, whose history has no tenants.");
		mig_err_hint(err, "ALTER EXTENSION migrate UPDATE.");
		return MIG_ERROR;
	}
	if (strlen(name) >= NAMEDATALEN)
	{
		mig_err_set(err, "42622", "tenant name \"%s\" is too long", u);
		mig_err_detail(err, "A tenant is a schema, and a schema's name has at most %d bytes.",
					   NAMEDATALEN - 1);
		return MIG_ERROR;
	}
	nsp = get_namespace_oid(name, true);
	if (!OidIsValid(nsp))
	{
		refuse(err, "3F000", name, "schema \"%s\" does not exist");
		mig_err_detail(err, "A tenant is a schema: its migrations run in it, its history is kept under its name. Nothing was done.");
		mig_err_hint(err, "Create the schema first.");
		return MIG_ERROR;
	}
	if (IsCatalogNamespace(nsp) || IsToastNamespace(nsp) || isAnyTempNamespace(nsp))
	{
		refuse(err, "42939", name, "schema \"%s\" cannot be a tenant");
		mig_err_detail(err, "System and temporary schemas are not tenants.");
		return MIG_ERROR;
	}
	if (pg_namespace_aclcheck(nsp, mp->caller, ACL_USAGE) != ACLCHECK_OK ||
		(writes && pg_namespace_aclcheck(nsp, mp->caller, ACL_CREATE) != ACLCHECK_OK))
	{
		refuse(err, "42501", name, "permission denied for schema %s");
		if (writes)
			mig_err_detail(err, "Migrating tenant \"%s\" runs migrations in its schema and records them as its history: that takes USAGE and CREATE on the schema, which role \"%s\" does not have.",
						   u, mig_pg_utf8(mp->caller_name));
		else
			mig_err_detail(err, "Reading the history of tenant \"%s\" takes USAGE on its schema, which role \"%s\" does not have.",
						   u, mig_pg_utf8(mp->caller_name));
		return MIG_ERROR;
	}
	mp->tenant = MemoryContextStrdup(mp->cxt, name);
	mp->tenant_nsp = nsp;
	mp->tenant_lit = MemoryContextStrdup(mp->cxt, quote_literal_cstr(name));
	return MIG_OK;
}

char *
mig_pg_tenant_from_options(MigPg *mp, const char *options, int which, bool writes)
{
	mig_tenant_options t;
	char	   *rest = NULL;
	char	   *out;
	mig_err		err;

	mig_err_clear(&err);
	if (mig_options_split(&mp->host, options, which, &t, &rest, &err) != MIG_OK)
		mig_pg_report(&err);
	out = rest ? MemoryContextStrdup(mp->cxt, rest) : NULL;
	if (rest)
		mp->host.release(mp->host.ctx, rest);
	if (t.schema[0] != '\0')
	{
		/* options are UTF-8 (mig_pg_options_arg); names the server's */
		char	   *name = TextDatumGetCString(mig_pg_text_datum(t.schema, strlen(t.schema)));

		if (mig_pg_tenant_set(mp, name, writes, &err) != MIG_OK)
			mig_pg_report(&err);
	}
	return out;
}

/* ---- the lock ---- */

bool
mig_pg_lock_try(MigPg *mp, bool session)
{
	if (OidIsValid(mp->tenant_nsp))
	{
		Datum		k1 = Int32GetDatum(MIGRATE_TENANT_KEY),
					k2 = Int32GetDatum((int32) mp->tenant_nsp);

		return DatumGetBool(session ?
							DirectFunctionCall2(pg_try_advisory_lock_int4, k1, k2) :
							DirectFunctionCall2(pg_try_advisory_xact_lock_int4, k1, k2));
	}
	return DatumGetBool(session ?
						DirectFunctionCall1(pg_try_advisory_lock_int8, Int64GetDatum(MIGRATE_LOCK_KEY)) :
						DirectFunctionCall1(pg_try_advisory_xact_lock_int8, Int64GetDatum(MIGRATE_LOCK_KEY)));
}

void
mig_pg_lock_wait(MigPg *mp, bool session)
{
	if (OidIsValid(mp->tenant_nsp))
	{
		Datum		k1 = Int32GetDatum(MIGRATE_TENANT_KEY),
					k2 = Int32GetDatum((int32) mp->tenant_nsp);

		if (session)
			DirectFunctionCall2(pg_advisory_lock_int4, k1, k2);
		else
			DirectFunctionCall2(pg_advisory_xact_lock_int4, k1, k2);
		return;
	}
	if (session)
		DirectFunctionCall1(pg_advisory_lock_int8, Int64GetDatum(MIGRATE_LOCK_KEY));
	else
		DirectFunctionCall1(pg_advisory_xact_lock_int8, Int64GetDatum(MIGRATE_LOCK_KEY));
}

void
mig_pg_lock_release(MigPg *mp)
{
	if (OidIsValid(mp->tenant_nsp))
		DirectFunctionCall2(pg_advisory_unlock_int4, Int32GetDatum(MIGRATE_TENANT_KEY),
							Int32GetDatum((int32) mp->tenant_nsp));
	else
		DirectFunctionCall1(pg_advisory_unlock_int8, Int64GetDatum(MIGRATE_LOCK_KEY));
}

/*
 * Once the tenant's lock is held: in function mode the schema is locked
 * too, so that DROP SCHEMA waits for the call (a procedure commits as it
 * goes: between two of its transactions the schema may go, and the next
 * statement fails); then the name must still be that schema's -- a schema
 * renamed or dropped while the call waited for the lock is not the tenant
 * the call was asked for.
 */
int
mig_pg_tenant_locked(MigPg *mp, mig_err *err)
{
	if (!OidIsValid(mp->tenant_nsp))
		return MIG_OK;
	if (!mp->procedure)
		LockDatabaseObject(NamespaceRelationId, mp->tenant_nsp, 0, AccessShareLock);
	if (get_namespace_oid(mp->tenant, true) != mp->tenant_nsp)
	{
		refuse(err, "3F000", mp->tenant, "schema \"%s\" was dropped or renamed while the call waited for its migration lock");
		mig_err_detail(err, "Nothing was done.");
		return MIG_ERROR;
	}
	return MIG_OK;
}

char *
mig_pg_holder_query_for(Oid nsp)
{
	uint64		key = (uint64) MIGRATE_LOCK_KEY;
	unsigned	classid = OidIsValid(nsp) ? (unsigned) (uint32) MIGRATE_TENANT_KEY : (unsigned) (key >> 32);
	unsigned	objid = OidIsValid(nsp) ? (unsigned) nsp : (unsigned) (key & 0xFFFFFFFF);

	/*
	 * An advisory lock on a bigint key shows in pg_locks as classid = its
	 * high 32 bits, objid = its low 32 bits, objsubid = 1; on two int4
	 * keys as classid = the first, objid = the second, objsubid = 2.  A
	 * prepared transaction holding it has no pid.
	 */
	return psprintf("SELECT a.pid, a.usename, a.application_name, "
					"CASE WHEN a.state OPERATOR(pg_catalog.=) 'active' THEN a.query_start "
					"WHEN a.xact_start IS NOT NULL THEN a.xact_start "
					"ELSE a.query_start END, "
					"CASE WHEN l.pid IS NULL THEN 'prepared transaction' ELSE a.state END, "
					"a.query, "
					"CASE WHEN a.state OPERATOR(pg_catalog.=) 'active' THEN 'statement' "
					"WHEN a.xact_start IS NOT NULL THEN 'transaction' "
					"ELSE 'last statement' END "
					"FROM pg_catalog.pg_locks l "
					"LEFT JOIN pg_catalog.pg_stat_activity a "
					"ON a.pid OPERATOR(pg_catalog.=) l.pid "
					"WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' "
					"AND l.database OPERATOR(pg_catalog.=) %u::pg_catalog.oid "
					"AND l.classid OPERATOR(pg_catalog.=) %u::pg_catalog.oid "
					"AND l.objid OPERATOR(pg_catalog.=) %u::pg_catalog.oid "
					"AND l.objsubid OPERATOR(pg_catalog.=) %d AND l.granted "
					"ORDER BY a.pid",
					MyDatabaseId, classid, objid, OidIsValid(nsp) ? 2 : 1);
}

char *
mig_pg_tenant_cond(MigPg *mp)
{
	if (!mp->has_tenants)
		return "true";
	return psprintf("tenant OPERATOR(pg_catalog.=) %s::pg_catalog.text",
					mp->tenant_lit ? mp->tenant_lit : "''");
}

/* ---- search_path ---- */

int
mig_pg_tenant_path_enter(MigPg *mp)
{
	int			nest;

	if (!OidIsValid(mp->tenant_nsp))
		return -1;
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", quote_identifier(mp->tenant),
							 superuser() ? PGC_SUSET : PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

void
mig_pg_tenant_path_leave(int nest)
{
	/* as after a function's SET clause, but what the migration SET goes
	 * too (not only SET LOCAL): the caller's settings are as before the
	 * call, and each migration of a tenant starts in the tenant */
	if (nest >= 0)
		AtEOXact_GUC(false, nest);
}

/* ---- the history's trigger ---- */

/* Takes, for the rest of the transaction, the migration lock of the tenant
 * named tenant ('' for the calls without one); none for a schema that is
 * gone, which no call can be migrating. */
static void
lock_tenant_named(const char *tenant)
{
	Oid			nsp;

	if (tenant[0] == '\0')
	{
		DirectFunctionCall1(pg_advisory_xact_lock_int8, Int64GetDatum(MIGRATE_LOCK_KEY));
		return;
	}
	nsp = get_namespace_oid(tenant, true);
	if (OidIsValid(nsp))
		DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(MIGRATE_TENANT_KEY),
							Int32GetDatum((int32) nsp));
}

/* The tenant of history row tup, or "" when the table has none (0.2). */
static const char *
row_tenant(Relation rel, HeapTuple tup)
{
	int			att = SPI_fnumber(RelationGetDescr(rel), "tenant");
	bool		isnull;
	Datum		d;

	if (att <= 0)
		return "";
	d = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);
	return isnull ? "" : TextDatumGetCString(d);
}

/* TRUNCATE: the lock of every tenant in the table, in name order. */
static void
lock_every_tenant(Relation rel)
{
	char	   *sql;
	int			ret;

	if (SPI_fnumber(RelationGetDescr(rel), "tenant") <= 0)
	{
		lock_tenant_named("");
		return;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	sql = psprintf("SELECT DISTINCT tenant FROM %s UNION SELECT '' ORDER BY 1",
				   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel)));
	ret = SPI_execute(sql, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read migrate_history: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *t = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		lock_tenant_named(t ? t : "");
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
}

/*
 * The tenant whose no-op digests the trigger deleted last (forget_verified),
 * and in which transaction (its local id): the next rows of that tenant in
 * that transaction need not delete again.  Forgotten when a transaction or
 * subtransaction aborts (which may bring the rows back) and when a digest
 * is stored (mig_pg_verified_memo_reset).
 */
static char forgot_tenant[NAMEDATALEN];
static LocalTransactionId forgot_in = InvalidLocalTransactionId;

void
mig_pg_verified_memo_reset(void)
{
	forgot_in = InvalidLocalTransactionId;
}

/*
 * Deletes the no-op digests (migrate_verified) of tenant, in the schema of
 * the history table rel, in the writer's transaction: a digest stored
 * before a change of its tenant's history is never used after it.  Called
 * for the extension's own writes (as the tables' owner, under the tenant's
 * lock), which no longer count in migrate_history_gen: that count is for
 * hand edits and turns the shortcut off for every tenant.
 */
static void
forget_verified(Relation rel, const char *tenant)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *sql;
	int			ret;

	if (forgot_in == MyProc->lxid && strcmp(forgot_tenant, tenant) == 0)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	sql = psprintf("DELETE FROM %s WHERE tenant OPERATOR(pg_catalog.=) $1",
				   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  "migrate_verified"));
	values[0] = CStringGetTextDatum(tenant);
	ret = SPI_execute_with_args(sql, 1, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not write migrate_verified: %s", SPI_result_code_string(ret));
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	if (strlen(tenant) < NAMEDATALEN)
	{
		strlcpy(forgot_tenant, tenant, NAMEDATALEN);
		forgot_in = MyProc->lxid;
	}
}

/*
 * migrate_history_changed() RETURNS trigger.  0.3: BEFORE each row written
 * to migrate_history, and BEFORE TRUNCATE; 0.2: BEFORE each statement.
 * A hand edit takes the migration lock of the tenant of each row it writes
 * (of every tenant for TRUNCATE, or a statement of 0.2), so that it waits
 * for a running migration of that tenant and makes one wait until it
 * commits, and counts the change in migrate_history_gen, whose value every
 * session sees at once: a no-op digest stored before it is never used after
 * it.  The extension's own writes (mig_pg_own_write) of a row take no lock:
 * they are made under their tenant's lock already; they delete that
 * tenant's digests in their own transaction instead of counting
 * (forget_verified), so that a write of one tenant leaves the no-op
 * shortcut of the others on.  Whoever reads a digest takes the tenant's
 * lock first, so it sees a writer's deletion once the writer commits.
 */
Datum
mig_pg_history_changed(FunctionCallInfo fcinfo)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Oid			seq;

	if (TRIGGER_FIRED_FOR_ROW(td->tg_event))
	{
		HeapTuple	ret = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;

		if (!mig_pg_own_write())
		{
			lock_tenant_named(row_tenant(td->tg_relation, td->tg_trigtuple));
			if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
				lock_tenant_named(row_tenant(td->tg_relation, td->tg_newtuple));
		}
		else if (SPI_fnumber(RelationGetDescr(td->tg_relation), "tenant") > 0)
		{
			forget_verified(td->tg_relation, row_tenant(td->tg_relation, td->tg_trigtuple));
			if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
				forget_verified(td->tg_relation, row_tenant(td->tg_relation, td->tg_newtuple));
			return PointerGetDatum(ret);
		}
	}
	else if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		lock_every_tenant(td->tg_relation);
	else
		lock_tenant_named("");	/* a statement trigger of 0.2 */
	seq = get_relname_relid("migrate_history_gen",
							get_func_namespace(fcinfo->flinfo->fn_oid));
	if (OidIsValid(seq))
		(void) nextval_internal(seq, false);
	if (TRIGGER_FIRED_FOR_ROW(td->tg_event))
		return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);
	return PointerGetDatum(NULL);
}
