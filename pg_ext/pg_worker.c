/*
 * pg_worker.c -- the background worker that runs the statements of
 * migrations outside a transaction, for one CALL migrate_run or
 * migrate_run_down (pg_outside.c is the caller's side; pg_outside.h the
 * messages between them).
 *
 * The worker is the caller's session outside a transaction.  It connects
 * as the caller's authenticated user (who did log in: the session user
 * may be a role that cannot, after SET SESSION AUTHORIZATION), then, for
 * each migration, takes the caller's state as a parallel worker takes its
 * leader's (ParallelWorkerMain): the libraries it loaded, every setting it
 * changed (search_path, lock_timeout, custom ones...), its session user
 * and SET ROLE, and for a stored down script the role that stored it --
 * so that each statement runs as the same role, with the same rights and
 * no more, as it would inside a transaction.  Between two migrations it
 * runs DISCARD ALL, so that each begins from the caller's state alone, as
 * it would in a worker of its own (and as it does when a later call
 * resumes it); within one, what a statement sets (SET, RESET, set_config)
 * the next sees, as in one psql session.
 *
 * Each statement runs as the server runs a simple query, as pg_cron's
 * workers do, and is recorded in @extschema@.migrate_progress, written as
 * the owner of the extension's tables, restricted, marked as the
 * extension's own write for its guard trigger (mig_pg_owner_enter, in this
 * process):
 *
 * - a statement that can run in a transaction block runs in one, and its
 *   progress row is written in the same transaction: both commit or
 *   neither;
 * - one that cannot (CREATE INDEX CONCURRENTLY, VACUUM...) runs alone,
 *   committing by itself, between a mark in the progress row
 *   (MIG_INTERRUPTED_MARK) and the progress written after it: a call
 *   killed in between leaves the mark, and the next call decides from it
 *   whether running the statement again is safe (maybe_done).
 *
 * Its errors and notices go to the caller through the queue (the worker's
 * error ends it); a SIGTERM (the caller's cancel or exit,
 * pg_terminate_backend) cancels the statement as it would a client's.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/defrem.h"
#include "commands/prepare.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/shm_mq.h"
#include "storage/lock.h"
#include "storage/shm_toc.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "pg_host.h"
#include "pg_outside.h"

/* What the worker keeps: for its life, and for the migration running. */
typedef struct WorkerState
{
	MigWorkerFixed *fixed;		/* in the DSM segment */
	shm_mq_handle *in;			/* the caller's messages */
	MemoryContext mig_cxt;		/* the migration's; reset at the next */
	MemoryContext stmt_cxt;		/* one statement's; reset after it */
	SPIPlanPtr	write_plan;		/* the progress row's upsert */
	int			migrations;		/* begun so far */
	char	   *caller_guc;		/* the caller's settings, as last sent */
	char	   *settled;		/* this session's once they were restored */
	Size		settled_len;
	MigBeginMsg mig;			/* the migration running */
	const char *version;		/* in the server encoding */
	const char *report_version; /* for notices */
	const char *report_file;
	Oid			save_user;		/* while a statement runs as mig.user */
	int			save_sec;
} WorkerState;

/*
 * A crash point of the call (migrate.crash_at, see pg_host.c) in the
 * worker: the caller's count goes on here, and the worker SIGKILLs itself
 * at the n-th, which makes the postmaster restart the cluster as a kill -9
 * of the caller would.
 */
static void
crash_point(WorkerState *ws)
{
	MigWorkerFixed *fixed = ws->fixed;

	if (fixed->crash_at <= 0 || ++fixed->crash_points != fixed->crash_at)
		return;
	ereport(LOG,
			(errmsg("migrate.crash_at: killing the backend at crash point %d",
					fixed->crash_at)));
	kill(MyProcPid, SIGKILL);
	pg_usleep(10000000L);		/* SIGKILL to oneself arrives before this */
	elog(ERROR, "migrate.crash_at: the backend survived SIGKILL");
}

/* Switches to the user a stored down script runs as (see
 * mig_pg_down_role_enter), when it is not the session's; user_off puts the
 * session's back. */
static void
user_on(WorkerState *ws)
{
	if (!ws->mig.switch_user)
		return;
	GetUserIdAndSecContext(&ws->save_user, &ws->save_sec);
	SetUserIdAndSecContext(ws->mig.user, ws->mig.sec_context);
}

static void
user_off(WorkerState *ws)
{
	if (ws->mig.switch_user)
		SetUserIdAndSecContext(ws->save_user, ws->save_sec);
}

/*
 * Runs the raw statements trees of sql (one, as the caller split them) as
 * a simple query does: analysed and planned in the statement's context
 * (which outlives the transactions a multi-transaction utility command such
 * as CREATE INDEX CONCURRENTLY commits inside itself), run at top level
 * through an unnamed portal, rows discarded.  The caller starts and ends
 * the transaction.
 */
static void
run_trees(WorkerState *ws, List *trees, const char *sql)
{
	ListCell   *lc;

	foreach(lc, trees)
	{
		RawStmt    *raw = lfirst_node(RawStmt, lc);
		bool		snapshot_set = false;
		List	   *queries;
		List	   *plans;
		Portal		portal;
		DestReceiver *receiver;
		QueryCompletion qc;
		int16		format = 0;

		MemoryContextSwitchTo(ws->stmt_cxt);
		if (analyze_requires_snapshot(raw))
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			snapshot_set = true;
		}
		queries = pg_analyze_and_rewrite_fixedparams(raw, sql, NULL, 0, NULL);
		plans = pg_plan_queries(queries, sql, CURSOR_OPT_PARALLEL_OK, NULL);
		if (snapshot_set)
			PopActiveSnapshot();
		CHECK_FOR_INTERRUPTS();

		portal = CreatePortal("", true, true);
		portal->visible = false;
		PortalDefineQuery(portal, NULL, sql, CreateCommandTag(raw->stmt),
						  plans, NULL);
		PortalStart(portal, NULL, 0, InvalidSnapshot);
		PortalSetResultFormat(portal, 1, &format);
		receiver = CreateDestReceiver(DestNone);
		(void) PortalRun(portal, FETCH_ALL, true, true, receiver, receiver,
						 &qc);
		receiver->rDestroy(receiver);
		PortalDrop(portal, false);
	}
	MemoryContextSwitchTo(ws->stmt_cxt);
}

/* Starts a transaction for one step of a statement; the statement's
 * context stays current. */
static void
begin_step(WorkerState *ws)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(ws->stmt_cxt);
}

/* Commits it (with a crash point before when crash is set). */
static void
commit_step(WorkerState *ws, bool crash)
{
	if (crash)
		crash_point(ws);
	CommitTransactionCommand();
	MemoryContextSwitchTo(ws->stmt_cxt);
}

/* Runs sql alone at top level, in a transaction of its own (which it may
 * commit itself), as the migration's user. */
static void
run_alone(WorkerState *ws, const char *sql)
{
	begin_step(ws);
	user_on(ws);
	run_trees(ws, pg_parse_query(sql), sql);
	user_off(ws);
	commit_step(ws, false);
}

/* Prepares the progress row's write, kept for the worker's life (SPI
 * connected, as the owner). */
static void
prepare_write(WorkerState *ws)
{
	Oid			types[6] = {TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, BOOLOID};
	bool		v03 = ws->fixed->v03;
	char	   *sql;

	/* 0.3 with tenants: the row is the call's tenant's */
	bool		tenants = ws->fixed->has_tenants;

	sql = psprintf("INSERT INTO %s AS p (version, done_checksum, next_offset, statements_done, "
				   "last_error%s%s) VALUES ($1, $2, $3, $4, $5%s%s%s) "
				   "ON CONFLICT (%sversion) DO UPDATE SET done_checksum = excluded.done_checksum, "
				   "next_offset = excluded.next_offset, statements_done = excluded.statements_done, "
				   "last_error = excluded.last_error, updated_at = pg_catalog.now()%s",
				   ws->fixed->progress, v03 ? ", down" : "", tenants ? ", tenant" : "",
				   v03 ? ", $6" : "", tenants ? ", " : "", tenants ? ws->fixed->tenant_lit : "",
				   tenants ? "tenant, " : "", v03 ? ", down = excluded.down" : "");
	ws->write_plan = SPI_prepare(sql, v03 ? 6 : 5, types);
	if (ws->write_plan == NULL || SPI_keepplan(ws->write_plan) != 0)
		elog(ERROR, "could not prepare the write of migrate_progress: %s",
			 SPI_result_code_string(SPI_result));
}

/*
 * Writes the progress row of the migration (in the current transaction):
 * offset, statements done and checksum, and last_error (NULL: none).  As
 * the owner of the extension's tables, restricted, search_path pinned,
 * marked as the extension's own write for the guard trigger -- as the
 * caller writes them (mig_pg_owner_enter), in this process.
 */
static void
write_progress(WorkerState *ws, int64 offset, int64 done, const char *sum,
			   const char *last_error)
{
	MigPg		host;
	MigPgSave	save;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;

	memset(&host, 0, sizeof(host));
	host.owner = ws->fixed->owner;
	mig_pg_owner_enter(&host, host.owner, true, &save);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (ws->write_plan == NULL)
		prepare_write(ws);
	values[0] = CStringGetTextDatum(ws->version);
	values[1] = CStringGetTextDatum(sum);
	values[2] = Int64GetDatum(offset);
	values[3] = Int64GetDatum(done);
	values[4] = last_error ? CStringGetTextDatum(last_error) : (Datum) 0;
	nulls[4] = last_error ? ' ' : 'n';
	values[5] = BoolGetDatum(ws->mig.down);
	PushActiveSnapshot(GetTransactionSnapshot());
	ret = SPI_execute_plan(ws->write_plan, values, nulls, false, 0);
	PopActiveSnapshot();
	if (ret != SPI_OK_INSERT || SPI_processed != 1)
		elog(ERROR, "could not write migrate_progress: %s", SPI_result_code_string(ret));
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	mig_pg_owner_leave(&save);
	MemoryContextSwitchTo(ws->stmt_cxt);
}

/* ---- invalid indexes left by failed concurrent builds ---- */

/*
 * The invalid index a CREATE INDEX CONCURRENTLY that failed left behind,
 * schema-qualified and quoted, in a list; NIL when there is none (an
 * unnamed one's name is the server's choice).
 */
static List *
invalid_created_index(IndexStmt *is)
{
	Oid			relid;
	Oid			nsp;
	Oid			idx;
	HeapTuple	tup;
	bool		invalid;

	if (!is->concurrent || is->idxname == NULL)
		return NIL;
	relid = RangeVarGetRelid(is->relation, NoLock, true);
	if (!OidIsValid(relid))
		return NIL;
	nsp = get_rel_namespace(relid);
	idx = get_relname_relid(is->idxname, nsp);
	if (!OidIsValid(idx))
		return NIL;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(idx));
	if (!HeapTupleIsValid(tup))
		return NIL;
	invalid = !((Form_pg_index) GETSTRUCT(tup))->indisvalid &&
		((Form_pg_index) GETSTRUCT(tup))->indrelid == relid;
	ReleaseSysCache(tup);
	if (!invalid)
		return NIL;
	return list_make1(quote_qualified_identifier(get_namespace_name(nsp), is->idxname));
}

/*
 * The invalid indexes a REINDEX CONCURRENTLY that failed left behind: the
 * new copies ("<index>_ccnew", "_ccnew1"...) and old ones it could not
 * drop ("_ccold"), on the table (and its TOAST table) for REINDEX TABLE,
 * of the one index for REINDEX INDEX (their names are its name and the
 * suffix, or the part of its name that fits in NAMEDATALEN with it).
 * Needs SPI connected.
 */
static List *
invalid_reindex_copies(ReindexStmt *rs)
{
	static const char query[] =
		"SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' "
		"OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), "
		"pg_catalog.substring(c.relname, '^(.*)_cc(?:new|old)[0-9]*$'), "
		"pg_catalog.octet_length(c.relname) "
		"FROM pg_catalog.pg_index i "
		"JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid "
		"JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
		"WHERE NOT i.indisvalid AND c.relname OPERATOR(pg_catalog.~) '_cc(new|old)[0-9]*$' "
		"AND i.indrelid IN (SELECT t.oid FROM pg_catalog.pg_class t WHERE t.oid OPERATOR(pg_catalog.=) $1 "
		"UNION ALL SELECT t.reltoastrelid FROM pg_catalog.pg_class t WHERE t.oid OPERATOR(pg_catalog.=) $1) "
		"ORDER BY 1";
	MemoryContext cxt = CurrentMemoryContext;
	bool		concurrently = false;
	ListCell   *lc;
	Oid			relid,
				table;
	const char *index = NULL;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	int			ret;
	List	   *found = NIL;

	foreach(lc, rs->params)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "concurrently") == 0)
			concurrently = defGetBoolean(opt);
	}
	if (!concurrently || rs->relation == NULL ||
		(rs->kind != REINDEX_OBJECT_INDEX && rs->kind != REINDEX_OBJECT_TABLE))
		return NIL;
	relid = RangeVarGetRelid(rs->relation, NoLock, true);
	if (!OidIsValid(relid))
		return NIL;
	table = relid;
	if (rs->kind == REINDEX_OBJECT_INDEX)
	{
		if (get_rel_relkind(relid) != RELKIND_INDEX)
			return NIL;
		table = IndexGetRelation(relid, true);
		index = get_rel_name(relid);
		if (!OidIsValid(table) || index == NULL)
			return NIL;
	}
	args[0] = ObjectIdGetDatum(table);
	ret = SPI_execute_with_args(query, 1, argtypes, args, NULL, true, 0);
	MemoryContextSwitchTo(cxt); /* SPI leaves its own current */
	if (ret != SPI_OK_SELECT)
		return NIL;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *base = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *len = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		bool		truncated = len != NULL && atoi(len) == NAMEDATALEN - 1;

		/* REINDEX INDEX: only the copies of that index */
		if (index != NULL &&
			(base == NULL || base[0] == '\0' ||
			 (strcmp(index, base) != 0 &&
			  !(truncated && strncmp(index, base, strlen(base)) == 0))))
			continue;
		found = lappend(found, name);
	}
	SPI_freetuptable(SPI_tuptable);
	return found;
}

/*
 * Before a concurrent index build of a migration that an earlier call ran
 * part of runs (again): drops what failed builds of it left, so that it
 * can be built again, with a NOTICE -- for every statement still to run,
 * not only the one that failed (a statement put before it, a DELETE of
 * the duplicates a unique index failed on, runs first).  Names are looked
 * up as the statement will look them up, with the settings the statements
 * before it made.  A TOAST index is dropped without CONCURRENTLY, which it
 * does not allow.
 */
static void
drop_invalid_indexes(WorkerState *ws, Node *stmt)
{
	List	   *names = NIL;
	ListCell   *lc;

	if (!ws->mig.resuming || !(IsA(stmt, IndexStmt) || IsA(stmt, ReindexStmt)))
		return;
	begin_step(ws);
	user_on(ws);
	if (IsA(stmt, IndexStmt))
		names = invalid_created_index((IndexStmt *) stmt);
	else
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		MemoryContextSwitchTo(ws->stmt_cxt);
		PushActiveSnapshot(GetTransactionSnapshot());
		names = invalid_reindex_copies((ReindexStmt *) stmt);
		PopActiveSnapshot();
		if (SPI_finish() != SPI_OK_FINISH)
			elog(ERROR, "SPI_finish failed");
		MemoryContextSwitchTo(ws->stmt_cxt);
	}
	user_off(ws);
	commit_step(ws, false);

	foreach(lc, names)
	{
		const char *index = lfirst(lc);
		bool		toast = strncmp(index, "pg_toast.", 9) == 0;

		ereport(NOTICE,
				(errmsg("dropping invalid index %s left by a failed concurrent index build of migration %s (%s), to build it again",
						index, ws->report_version, ws->report_file)));
		run_alone(ws, psprintf("DROP INDEX %sIF EXISTS %s", toast ? "" : "CONCURRENTLY ", index));
	}
}

/*
 * Whether stmt, which commits by itself and which the previous call was
 * running when it ended (it never learned how it went), is done: then it
 * is not run again and only its progress is written.  Running such a
 * statement again must be provably safe, or refused:
 *
 * - a named CREATE INDEX CONCURRENTLY is done when an index of that name
 *   exists on that table and is valid: a build that did not complete
 *   leaves it invalid (drop_invalid_indexes drops it, and it is built
 *   again) or leaves none, and the name was free when the statement began,
 *   else it would have failed at once (and that error would be noted);
 * - DROP INDEX CONCURRENTLY (of one index, the only form allowed) is done
 *   when the index is gone;
 * - an unnamed CREATE INDEX CONCURRENTLY cannot be told from another
 *   index (the server picked its name): the caller refuses to go on
 *   (55000) with a hint to name it;
 * - VACUUM, REINDEX, CLUSTER, ALTER SYSTEM, ALTER DATABASE SET TABLESPACE
 *   and DISCARD leave the same state when run again; the others (CREATE or
 *   DROP of a database, tablespace or subscription without IF [NOT]
 *   EXISTS, DETACH PARTITION CONCURRENTLY) fail loudly when run again
 *   after they completed ("already exists", "does not exist", "is not a
 *   partition"), never silently: they run again.
 *
 * Needs a transaction.
 */
static bool
maybe_done(WorkerState *ws, Node *stmt)
{
	if (IsA(stmt, IndexStmt) && ((IndexStmt *) stmt)->concurrent &&
		((IndexStmt *) stmt)->idxname != NULL)
	{
		IndexStmt  *is = (IndexStmt *) stmt;
		Oid			relid = RangeVarGetRelid(is->relation, NoLock, true);
		Oid			idx;
		HeapTuple	tup;
		bool		valid;

		if (!OidIsValid(relid))
			return false;
		idx = get_relname_relid(is->idxname, get_rel_namespace(relid));
		if (!OidIsValid(idx))
			return false;
		tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(idx));
		if (!HeapTupleIsValid(tup))
			return false;
		valid = ((Form_pg_index) GETSTRUCT(tup))->indisvalid &&
			((Form_pg_index) GETSTRUCT(tup))->indrelid == relid;
		ReleaseSysCache(tup);
		if (valid)
			ereport(NOTICE,
					(errmsg("index %s of migration %s (%s) is built and valid: the call that built it ended before it was recorded",
							quote_identifier(is->idxname), ws->report_version, ws->report_file)));
		return valid;
	}
	if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->concurrent &&
		((DropStmt *) stmt)->removeType == OBJECT_INDEX &&
		list_length(((DropStmt *) stmt)->objects) == 1)
	{
		RangeVar   *rv = makeRangeVarFromNameList(linitial(((DropStmt *) stmt)->objects));

		if (OidIsValid(RangeVarGetRelid(rv, NoLock, true)))
			return false;
		ereport(NOTICE,
				(errmsg("index %s of migration %s (%s) is dropped: the call that dropped it ended before it was recorded",
						quote_identifier(rv->relname), ws->report_version, ws->report_file)));
		return true;
	}
	return false;
}

/* Sets lock_timeout for the rest of the current transaction, as SET LOCAL
 * does: a SET of the statement itself outlives it, as in a psql session. */
static void
set_rail(int ms)
{
	char		value[32];

	snprintf(value, sizeof(value), "%d", ms);
	(void) set_config_option("lock_timeout", value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/* Writes the mark of statement m, which commits by itself, in a
 * transaction of its own (see maybe_done). */
static void
mark_running(WorkerState *ws, const MigStmtMsg *m)
{
	begin_step(ws);
	write_progress(ws, m->prev_offset, m->prev_done, m->prev_sum,
				   psprintf(MIG_INTERRUPTED_MARK "the call ended while the statement at line %d ran",
							m->line));
	commit_step(ws, true);
}

/*
 * Runs trees (sql) in the implicit transaction block begun: true, or
 * false when the statement refused to run in a transaction block (25001,
 * PreventInTransactionBlock: a form the caller could not tell from its
 * text, such as CLUSTER of a partitioned table), after rolling the block
 * back.  Any other error is raised.
 */
static bool
run_in_block(WorkerState *ws, List *trees, const char *sql)
{
	volatile bool ok = true;

	PG_TRY();
	{
		run_trees(ws, trees, sql);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(ws->stmt_cxt);
		e = CopyErrorData();
		if (e->sqlerrcode != ERRCODE_ACTIVE_SQL_TRANSACTION)
			PG_RE_THROW();
		FlushErrorState();
		/* the block's abort puts the user and the settings back */
		AbortCurrentTransaction();
		MemoryContextSwitchTo(ws->stmt_cxt);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Runs one statement m (its text sql) and records it in the progress row:
 *
 * - one that can run in a transaction block runs in one (the implicit
 *   block of a multi-statement query), with its progress row written after
 *   it in the same transaction;
 * - one that cannot (MIG_STMT_ALONE, or refusing the block when tried)
 *   runs as the only statement of a simple query, committing by itself
 *   (CREATE INDEX CONCURRENTLY commits several times), between the mark
 *   before it and the progress after it.
 *
 * Then tells the caller ('C').  Crash points: before the statement, before
 * each commit that writes progress.
 */
static void
run_statement(WorkerState *ws, const MigStmtMsg *m, const char *sql)
{
	List	   *trees;
	Node	   *stmt;
	bool		alone = (m->flags & MIG_STMT_ALONE) != 0;
	StringInfoData buf;

	MemoryContextSwitchTo(ws->stmt_cxt);
	trees = pg_parse_query(sql);
	if (trees == NIL)
		elog(ERROR, "migration statement is empty");
	stmt = linitial_node(RawStmt, trees)->stmt;
	debug_query_string = sql;
	pgstat_report_activity(STATE_RUNNING, sql);

	if (alone)
		mark_running(ws, m);
	drop_invalid_indexes(ws, stmt);
	if (m->flags & MIG_STMT_MAYBE_DONE)
	{
		bool		done;

		begin_step(ws);
		user_on(ws);
		done = maybe_done(ws, stmt);
		user_off(ws);
		if (!done)
			commit_step(ws, false);
		else
		{
			write_progress(ws, m->next_offset, m->done, m->sum, NULL);
			commit_step(ws, true);
			goto reply;
		}
	}

	if (!alone)
	{
		begin_step(ws);
		BeginImplicitTransactionBlock();
		if (m->flags & MIG_STMT_RAIL)
			set_rail(m->rail_ms);
		user_on(ws);
		crash_point(ws);
		if (run_in_block(ws, trees, sql))
		{
			user_off(ws);
			CommandCounterIncrement();
			write_progress(ws, m->next_offset, m->done, m->sum, NULL);
			EndImplicitTransactionBlock();
			commit_step(ws, true);
			goto reply;
		}
		mark_running(ws, m);
	}

	begin_step(ws);
	if (m->flags & MIG_STMT_RAIL)
		set_rail(m->rail_ms);
	user_on(ws);
	if (alone)
		crash_point(ws);
	run_trees(ws, trees, sql);
	user_off(ws);
	/* it committed (itself); its progress is the next transaction */
	commit_step(ws, false);
	begin_step(ws);
	write_progress(ws, m->next_offset, m->done, m->sum, NULL);
	commit_step(ws, true);

reply:
	pgstat_report_activity(STATE_IDLE, NULL);
	debug_query_string = NULL;
	pq_beginmessage(&buf, 'C');
	pq_sendint64(&buf, (uint64) m->done);
	pq_endmessage(&buf);
	MemoryContextReset(ws->stmt_cxt);
	/* a client_encoding a statement set does not reach the caller's
	 * messages: they stay in the database's encoding */
	SetClientEncoding(GetDatabaseEncoding());
}

/*
 * What an earlier migration left in the session is gone: what DISCARD ALL
 * does (commands/discard.c) to cursors, prepared statements, LISTENs,
 * advisory locks, temporary tables and sequence values.  Its settings and
 * session user are put back by begin_migration; cached plans stay, valid
 * (forgetting them would only make them again).
 */
static void
discard_session(void)
{
	PortalHashTableDeleteAll();
	DropAllPreparedStatements();
	Async_UnlistenAll();
	LockReleaseAll(USER_LOCKMETHOD, true);
	ResetTempTableNamespace();
	ResetSequenceCaches();
}

/* This session's settings as SerializeGUCState writes them, in cxt; *len
 * their length. */
static char *
serialize_settings(MemoryContext cxt, Size *len)
{
	char	   *buf;

	*len = EstimateGUCStateSpace();
	buf = MemoryContextAlloc(cxt, *len);
	SerializeGUCState(*len, buf);
	return buf;
}

/*
 * The worker becomes the caller's session (in a transaction), as a
 * parallel worker becomes its leader's (ParallelWorkerMain): the libraries
 * it loaded (lib, SerializeLibraryState), then its settings (guc,
 * SerializeGUCState; NULL: as they are), then its session user and SET
 * ROLE (role, InvalidOid for none).  The process connected as the
 * caller's authenticated user: it switches only to roles the caller's
 * session is, and so has no right the caller has not.  Messages are made
 * in the database's encoding, whatever client_encoding says.  Also used by
 * the workers of parallel=N (pg_parallel.c).
 */
void
mig_pg_become_caller(const char *lib, const char *guc, Oid session_user,
					 bool session_superuser, Oid role)
{
	RestoreLibraryState(unconstify(char *, lib));
	if (guc != NULL)
		RestoreGUCState(unconstify(char *, guc));
	SetClientEncoding(GetDatabaseEncoding());
	if (GetSessionUserId() != session_user)
		SetSessionAuthorization(session_user, session_superuser);
	SetConfigOption("role", OidIsValid(role) ? GetUserNameFromId(role, false) : "none",
					PGC_USERSET, PGC_S_SESSION);
}

/*
 * A migration begins: the worker becomes the caller's session as it is now
 * (a migration in a transaction before may have changed it), as parallel
 * workers become their leader's: the libraries, then the settings, then
 * the session user and SET ROLE.  After an earlier migration, what it left
 * goes first, and its settings are put back when it changed any or the
 * caller sends new ones (guc_len 0: as before).  Messages go to the caller
 * in the database's encoding, whatever its client_encoding says.
 */
static void
begin_migration(WorkerState *ws, const char *data, Size n)
{
	MigBeginMsg *mig = &ws->mig;
	const char *names;
	char	   *lib;
	bool		restore = true;

	if (n < sizeof(MigBeginMsg))
		elog(ERROR, "malformed migration message of %zu bytes", n);
	memcpy(mig, data, sizeof(MigBeginMsg));
	if (n != sizeof(MigBeginMsg) + mig->names_len + mig->guc_len + mig->lib_len ||
		(mig->guc_len == 0 && ws->caller_guc == NULL))
		elog(ERROR, "malformed migration message of %zu bytes", n);
	MemoryContextReset(ws->mig_cxt);
	names = data + sizeof(MigBeginMsg);
	ws->version = MemoryContextStrdup(ws->mig_cxt, names);
	names += strlen(names) + 1;
	ws->report_version = MemoryContextStrdup(ws->mig_cxt, names);
	names += strlen(names) + 1;
	ws->report_file = MemoryContextStrdup(ws->mig_cxt, names);
	names = data + sizeof(MigBeginMsg);
	/* both need alignment the queue does not promise */
	if (mig->guc_len > 0)
	{
		if (ws->caller_guc)
			pfree(ws->caller_guc);
		ws->caller_guc = MemoryContextAlloc(TopMemoryContext, mig->guc_len);
		memcpy(ws->caller_guc, names + mig->names_len, mig->guc_len);
	}
	else
	{
		Size		len;
		char	   *now = serialize_settings(ws->mig_cxt, &len);

		restore = len != ws->settled_len || memcmp(now, ws->settled, len) != 0;
	}
	lib = MemoryContextAlloc(ws->mig_cxt, mig->lib_len);
	memcpy(lib, names + mig->names_len + mig->guc_len, mig->lib_len);

	StartTransactionCommand();
	if (ws->migrations++ > 0)
		discard_session();
	mig_pg_become_caller(lib, restore ? ws->caller_guc : NULL, mig->session_user,
						 mig->session_superuser, mig->role);
	if (restore)
	{
		if (ws->settled)
			pfree(ws->settled);
		ws->settled = serialize_settings(TopMemoryContext, &ws->settled_len);
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(ws->stmt_cxt);
}

/*
 * Entry point of the dynamic background worker: attaches to the caller's
 * segment, sends every message (errors, notices) into its queue, connects
 * to the caller's database as the caller's authenticated user (as
 * parallel workers do: the role that logged in), then serves the caller's
 * messages until the caller detaches.  An error ends the process (the
 * worker's top-level handler reports it through the queue and exits).
 */
void
migrate_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	WorkerState ws;
	shm_mq	   *mq;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	memset(&ws, 0, sizeof(ws));
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "migrate worker");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not map dynamic shared memory segment")));
	toc = shm_toc_attach(MIG_WORKER_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bad magic number in dynamic shared memory segment")));
	ws.fixed = shm_toc_lookup(toc, MIG_KEY_FIXED, false);
	mq = shm_toc_lookup(toc, MIG_KEY_TO_CALLER, false);
	shm_mq_set_sender(mq, MyProc);
	pq_redirect_to_shm_mq(seg, shm_mq_attach(mq, seg, NULL));
	mq = shm_toc_lookup(toc, MIG_KEY_TO_WORKER, false);
	shm_mq_set_receiver(mq, MyProc);
	ws.in = shm_mq_attach(mq, seg, NULL);

	BackgroundWorkerInitializeConnectionByOid(ws.fixed->database,
											  ws.fixed->authenticated_user, 0);
	ws.mig_cxt = AllocSetContextCreate(TopMemoryContext, "migrate migration",
									   ALLOCSET_DEFAULT_SIZES);
	ws.stmt_cxt = AllocSetContextCreate(TopMemoryContext, "migrate statement",
										ALLOCSET_DEFAULT_SIZES);

	/*
	 * While the caller still reads the folder and runs what comes before
	 * (it starts the worker as soon as it knows one is needed), prepare
	 * the write of the progress, as the owner: a statement then costs its
	 * own work and a commit.
	 */
	StartTransactionCommand();
	{
		MigPg		host;
		MigPgSave	save;

		memset(&host, 0, sizeof(host));
		host.owner = ws.fixed->owner;
		mig_pg_owner_enter(&host, host.owner, true, &save);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		prepare_write(&ws);
		if (SPI_finish() != SPI_OK_FINISH)
			elog(ERROR, "SPI_finish failed");
		mig_pg_owner_leave(&save);
	}
	CommitTransactionCommand();
	for (;;)
	{
		Size		n;
		void	   *data;
		MigStmtMsg	m;
		const char *p;

		/* the caller detaches when its call ends */
		if (shm_mq_receive(ws.in, &n, &data, false) != SHM_MQ_SUCCESS)
			break;
		p = (const char *) data;
		if (n > 0 && p[0] == 'B')
			begin_migration(&ws, p + 1, n - 1);
		else if (n > 1 + sizeof(MigStmtMsg) && p[0] == 'S' && p[n - 1] == '\0' &&
				 ws.migrations > 0)
		{
			memcpy(&m, p + 1, sizeof(m));
			run_statement(&ws, &m, p + 1 + sizeof(m));
		}
		else
			elog(ERROR, "malformed message of %zu bytes from the migrate caller", n);
	}
}
