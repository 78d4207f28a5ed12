/*
 * pg_host.c -- the mig_host callbacks of the PostgreSQL extension.
 *
 * Everything the core asks of the server goes through here:
 *
 *   memory      palloc_extended(MCXT_ALLOC_NO_OOM) in a private context, so
 *               the core sees NULL on exhaustion and an abort frees it all;
 *   files       OpenTransientFile / AllocateDir, closed by an abort;
 *   lock        pg_advisory_xact_lock (function mode) or pg_advisory_lock
 *               (procedure mode), always before the history is read;
 *   history     SPI with $n parameters on @extschema@.migrate_history;
 *   scripts     raw_parser() splits a script into statements (and finds the
 *               ones that cannot run through SPI before anything runs); each
 *               statement then runs with SPI_execute, under the blocking
 *               rail of pg_rails.c (lock_timeout, retries);
 *   operators   the audited repair of a history row, the SQL of an
 *               off-hours script, notices.
 *
 * Errors raised by the server while a script runs (a failing statement, a
 * syntax error, a cancel) propagate as they are, keeping their SQLSTATE; an
 * error context callback adds "migration <version> (<file>), line <n>".
 * Errors found by these callbacks themselves go back to the core in a mig_err.
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "storage/fd.h"
#include "tcop/dest.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "pg_host.h"

/* ---- memory ---- */

/*
 * migrate.fail_alloc (superuser, hidden): a testing aid in the manner of
 * SQLite's fault injection.  When n > 0, the n-th allocation the core asks
 * for in each call fails, so a test can sweep n and check that every
 * failure ends in a clean "out of memory" error with nothing changed.
 */
static int	fail_alloc = 0;

/*
 * migrate.crash_at (superuser, hidden): a testing aid for crash atomicity
 * (tests/stress/pg_stress.sh).  When n > 0, the backend SIGKILLs itself at
 * the n-th crash point of each call, as a kill -9 from outside would: the
 * postmaster then restarts the cluster through crash recovery.  Crash
 * points are the boundaries of the call's work: before each migration
 * statement run through SPI (up or down scripts), before each history write
 * (add or remove), and in procedure mode before each commit.
 */
static int	crash_at = 0;

/* migrate.max_file_size (superuser): the largest migration file read, in
 * kB; bigger ones are refused with 54000. */
static int	max_file_kb = (int) (MIG_DEFAULT_MAX_FILE / 1024);

void
mig_pg_define_settings(void)
{
	DefineCustomIntVariable("migrate.max_file_size",
							"Largest migration file that is read; larger ones are refused.",
							NULL, &max_file_kb, (int) (MIG_DEFAULT_MAX_FILE / 1024),
							1, (int) (MaxAllocSize / 1024 / 2), PGC_SUSET,
							GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("migrate.fail_alloc",
							"Makes the n-th allocation of each call fail (for testing).",
							NULL, &fail_alloc, 0, 0, INT_MAX, PGC_SUSET,
							GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate.crash_at",
							"Makes the backend kill itself at the n-th crash point of each call (for testing).",
							NULL, &crash_at, 0, 0, INT_MAX, PGC_SUSET,
							GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
	mig_pg_define_rail_settings();
	MarkGUCPrefixReserved("migrate");
}

/* A crash point (see migrate.crash_at): SIGKILLs this backend at the n-th. */
void
mig_pg_crash_point(MigPg *mp)
{
	if (crash_at <= 0 || ++mp->crash_points != crash_at)
		return;
	ereport(LOG,
			(errmsg("migrate.crash_at: killing the backend at crash point %d",
					crash_at)));
	kill(MyProcPid, SIGKILL);
	pg_usleep(10000000L);		/* SIGKILL to oneself arrives before this */
	elog(ERROR, "migrate.crash_at: the backend survived SIGKILL");
}

/* Returns n bytes from the call's context, or NULL when out of memory. */
static void *
pg_alloc(void *ctx, size_t n)
{
	MigPg	   *mp = (MigPg *) ctx;

	if (fail_alloc > 0 && ++mp->allocs == fail_alloc)
		return NULL;
	return MemoryContextAllocExtended(mp->cxt, n,
									  MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
}

static void
pg_release(void *ctx, void *p)
{
	if (p != NULL)
		pfree(p);
}

/* ---- files ---- */

/* Opens path read-only without following a final symlink or blocking on a
 * FIFO; returns the descriptor, or -1 with err filled.  Also where a cancel
 * reaches a call that reads thousands of files. */
static int
pg_open_file(void *ctx, const char *path, mig_err *err)
{
	int			fd;

	CHECK_FOR_INTERRUPTS();
	fd = OpenTransientFile(path,
						   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
						   PG_BINARY);
	if (fd < 0)
		mig_err_errno(err, errno, "open file", path);
	return fd;
}

/* Opens the folder path (following symlinks) for lstat relative to it. */
static int
pg_open_dir(void *ctx, const char *path, mig_err *err)
{
	int			fd = OpenTransientFile(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | PG_BINARY);

	if (fd < 0)
		mig_err_errno(err, errno, "open folder", path);
	return fd;
}

static void
pg_close_file(void *ctx, int fd)
{
	CloseTransientFile(fd);
}

/* Calls cb for each entry of the folder but "." and ".."; returns MIG_OK,
 * the first non-zero code of cb, or MIG_ERROR with err filled. */
static int
pg_list_dir(void *ctx, const char *path, mig_name_cb cb, void *arg,
			mig_err *err)
{
	DIR		   *dir;
	struct dirent *de;
	int			rc = MIG_OK;

	dir = AllocateDir(path);
	if (dir == NULL)
	{
		mig_err_errno(err, errno, "open directory", path);
		return MIG_ERROR;
	}
	while ((de = ReadDir(dir, path)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = cb(arg, de->d_name);
		if (rc != 0)
			break;
	}
	FreeDir(dir);
	return rc;
}

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
static int
pg_lock(void *ctx, const mig_lock_opts *o, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	int			rc;

	mig_pg_rail_set(mp, o);
	rc = mig_pg_take_lock(mp, o ? o->wait_ms : -1, err);
	if (rc != MIG_OK)
		return rc;
	if (mp->procedure)
	{
		mp->session_locked = true;
		mig_pg_crash_point(mp);
		SPI_commit();
	}
	return MIG_OK;
}

static void
release_session_lock(MigPg *mp)
{
	if (!mp->session_locked)
		return;
	mp->session_locked = false;
	DirectFunctionCall1(pg_advisory_unlock_int8,
						Int64GetDatum(MIGRATE_LOCK_KEY));
}

/*
 * Ends the unit of work.  Function mode: nothing, the caller's transaction
 * decides (an error from the core aborts it).  Procedure mode: commits or
 * rolls back what follows the last checkpoint and releases the lock.
 */
static int
pg_unlock(void *ctx, int commit, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;

	if (!mp->procedure)
		return MIG_OK;
	if (commit)
	{
		mig_pg_crash_point(mp);
		SPI_commit();
	}
	else
		SPI_rollback();
	release_session_lock(mp);
	return MIG_OK;
}

/* Procedure mode: commits the migration just applied and recorded. */
static int
pg_checkpoint(void *ctx, mig_err *err)
{
	mig_pg_crash_point((MigPg *) ctx);
	SPI_commit();
	return MIG_OK;
}

/* ---- text helpers ---- */

/*
 * Returns a NUL-terminated copy of UTF-8 bytes in the server encoding,
 * allocated in the current memory context; *out_len receives its length.
 * Raises an error if a character has no equivalent in the server encoding.
 */
static char *
utf8_to_server(const char *s, size_t len, int *out_len)
{
	char	   *copy = pnstrdup(s, len);
	char	   *conv = pg_any_to_server(copy, (int) len, PG_UTF8);

	*out_len = (conv == copy) ? (int) len : (int) strlen(conv);
	return conv;
}

/* The same as a text Datum. */
Datum
mig_pg_text_datum(const char *s, size_t len)
{
	int			n;
	char	   *conv = utf8_to_server(s, len, &n);

	return PointerGetDatum(cstring_to_text_with_len(conv, n));
}

/* Byte offset of 0-based character position chars in s[0..len). */
static int
char_to_byte(const char *s, int len, int chars)
{
	int			off = 0;

	while (chars-- > 0 && off < len)
		off += pg_mblen(s + off);
	return Min(off, len);
}

/*
 * Maps an offset in mp->text to an offset in the script's own bytes: equal
 * unless the text was converted, then the start of the same line.
 */
static long
script_offset(const MigPg *mp, int off)
{
	const mig_script *s = mp->script;
	int			line;
	size_t		i;

	if (!mp->converted)
		return off;
	line = mig_line_at(mp->text, mp->text_len, off);
	for (i = 0; i < s->len && line > 1; i++)
		if (s->sql[i] == '\n')
			line--;
	return (long) i;
}

/* Offset of the first word of the statement at off in mp->text. */
int
mig_pg_statement_start(const MigPg *mp, int off)
{
	size_t		wlen;

	return off + (int) mig_first_word(mp->text + off, mp->text_len - off,
									  1, &wlen);
}

/*
 * The text of raw statement rs, from its first word on (comments before it
 * would only clutter the "SQL statement" context of an error), palloc'd in
 * the current memory context; *off and *end receive where it starts and
 * ends in mp->text.
 */
char *
mig_pg_statement_text(const MigPg *mp, const RawStmt *rs, int *off, int *end)
{
	*end = rs->stmt_len > 0 ? rs->stmt_location + rs->stmt_len : mp->text_len;
	*off = mig_pg_statement_start(mp, rs->stmt_location);
	return pnstrdup(mp->text + *off, Max(*end - *off, 0));
}

/*
 * Error context callback while a script is parsed or run: names the
 * migration, its file and the line, and keeps the error's SQLSTATE.  While
 * the whole script is being parsed, a syntax error's position points into
 * the script (not into the caller's query), so it becomes the line number.
 */
static void
script_error_callback(void *arg)
{
	MigPg	   *mp = (MigPg *) arg;
	const mig_script *s = mp->script;
	const char *what = s->down ? "rollback of " : "";
	int			off = -1;

	if (mp->text == NULL)
		off = -1;				/* failed converting it to the server encoding */
	else if (mp->stmt_off >= 0)
		off = mig_pg_statement_start(mp, mp->stmt_off);
	else
	{
		int			pos = geterrposition();

		if (pos > 0)
		{
			off = char_to_byte(mp->text, mp->text_len, pos - 1);
			errposition(0);
		}
	}
	if (off >= 0)
		errcontext("%smigration %s (%s), line %d", what, s->version, s->file,
				   mig_script_line(s, (size_t) script_offset(mp, off)));
	else
		errcontext("%smigration %s (%s)", what, s->version, s->file);
	mig_pg_rail_error_context(mp);

	if (!mp->procedure)
	{
		int			code = geterrcode();

		if (code == ERRCODE_OUT_OF_MEMORY)
			errhint("migrate_apply runs all pending migrations in one transaction, which holds a lock on every object they create: "
					"CALL migrate_run(...) commits after each migration, or increase max_locks_per_transaction.");
		else if (code == ERRCODE_UNSAFE_NEW_ENUM_VALUE_USAGE)
			errhint("migrate_apply runs all pending migrations in one transaction: "
					"CALL migrate_run(...) commits after each migration, so a later migration can use the new value.");
	}
}

/*
 * Prepares mp for parsing or running s: copies it into the scratch context
 * in the server encoding and pushes the error context callback (cb is the
 * caller's frame).  script_done pops it and frees the copy.
 */
void
mig_pg_script_begin(MigPg *mp, const mig_script *s, ErrorContextCallback *cb)
{
	MemoryContextSwitchTo(mp->scratch);
	mp->script = s;
	mp->stmt_off = -1;
	mp->text = NULL;
	mp->text_len = 0;
	mp->converted = false;

	cb->callback = script_error_callback;
	cb->arg = mp;
	cb->previous = error_context_stack;
	error_context_stack = cb;

	mp->text = utf8_to_server(s->sql, s->len, &mp->text_len);
	mp->converted = (size_t) mp->text_len != s->len ||
		memcmp(mp->text, s->sql, s->len) != 0;
}

void
mig_pg_script_done(MigPg *mp, ErrorContextCallback *cb, MemoryContext old)
{
	error_context_stack = cb->previous;
	mp->script = NULL;
	mp->text = NULL;
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
}

/* ---- scripts ---- */

/*
 * Returns the name of a statement that cannot run in a migration run
 * through SPI inside a transaction, or NULL; *top_level says whether it can
 * run outside one (by a background worker, pg_outside.c).  Transaction
 * control never can: each statement outside a transaction is its own
 * transaction, whose progress is recorded after it, and a block spanning
 * several would break resuming at the failed one.  Nor can COPY from or to
 * the client, which a worker does not have.
 */
static const char *
refused_statement(Node *stmt, bool *top_level)
{
	ListCell   *lc;

	*top_level = true;
	switch (nodeTag(stmt))
	{
		case T_TransactionStmt:
			*top_level = false;
			return CreateCommandName(stmt);
		case T_CreatedbStmt:
		case T_DropdbStmt:
		case T_CreateTableSpaceStmt:
		case T_DropTableSpaceStmt:
		case T_AlterSystemStmt:
			return CreateCommandName(stmt);
		case T_VacuumStmt:
			if (((VacuumStmt *) stmt)->is_vacuumcmd)
				return "VACUUM";
			break;
		case T_IndexStmt:
			if (((IndexStmt *) stmt)->concurrent)
				return "CREATE INDEX CONCURRENTLY";
			break;
		case T_DropStmt:
			if (((DropStmt *) stmt)->concurrent)
				return "DROP INDEX CONCURRENTLY";
			break;
		case T_ReindexStmt:
			{
				ReindexStmt *r = (ReindexStmt *) stmt;

				if (r->kind != REINDEX_OBJECT_INDEX &&
					r->kind != REINDEX_OBJECT_TABLE)
					return "REINDEX SCHEMA, SYSTEM or DATABASE";
				foreach(lc, r->params)
				{
					DefElem    *opt = lfirst_node(DefElem, lc);

					if (strcmp(opt->defname, "concurrently") == 0 &&
						defGetBoolean(opt))
						return "REINDEX CONCURRENTLY";
				}
				break;
			}
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "tablespace") == 0)
					return "ALTER DATABASE SET TABLESPACE";
			}
			break;
		case T_CopyStmt:
			*top_level = false;
			if (((CopyStmt *) stmt)->filename == NULL)
				return ((CopyStmt *) stmt)->is_from ?
					"COPY FROM STDIN" : "COPY TO STDOUT";
			break;
		case T_ClusterStmt:
			if (((ClusterStmt *) stmt)->relation == NULL)
				return "CLUSTER without a table name";
			break;
		case T_DiscardStmt:
			if (((DiscardStmt *) stmt)->target == DISCARD_ALL)
				return "DISCARD ALL";
			break;
		default:
			break;
	}
	return NULL;
}

/*
 * Error classes that a check never turns into a problem of the script: a
 * cancel or shutdown (57), exhausted resources (53), a system error (58)
 * and internal errors (XX) go on as errors.
 */
static bool
check_passes_on(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_SYSTEM_ERROR:
		case ERRCODE_INTERNAL_ERROR:
			return true;
		default:
			return false;
	}
}

/*
 * Error context callback while a script is checked: keeps the position of
 * a syntax error (a character position in mp->text) in mp->check_pos and
 * takes it off the error, so that a caller's SPI callback does not move it
 * to its own query.
 */
static void
check_error_callback(void *arg)
{
	MigPg	   *mp = (MigPg *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		mp->check_pos = pos;
		errposition(0);
	}
}

/* Fills err from an error the parser (or the conversion to the server
 * encoding) raised: its SQLSTATE, message, detail and hint, and the offset
 * of its position in the script. */
static void
check_error(MigPg *mp, const ErrorData *edata, mig_err *err)
{
	mig_err_set(err, unpack_sql_state(edata->sqlerrcode), "%s",
				edata->message ? edata->message : "syntax error");
	if (edata->detail)
		mig_err_detail(err, "%s", edata->detail);
	if (edata->hint)
		mig_err_hint(err, "%s", edata->hint);
	if (mp->check_pos > 0 && mp->text != NULL)
		err->offset = script_offset(mp, char_to_byte(mp->text, mp->text_len,
													 mp->check_pos - 1));
}

/*
 * Parses s with the server's own parser and refuses it (0A000, with the
 * offset of the statement) if a statement cannot run in a migration.  A
 * syntax error, or a character the server encoding lacks, is returned in
 * err rather than raised, so that migrate_validate can list every problem
 * of a folder in one call: the parser holds no resources but memory (here
 * the scratch context), so its error can be caught without a
 * subtransaction.
 */
static int
pg_check_script(void *ctx, const mig_script *s, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	ErrorContextCallback cb;
	List	   *volatile stmts = NIL;
	volatile int rc = MIG_OK;
	ListCell   *lc;
	const char *volatile outside = NULL;
	volatile int outside_at = 0;

	mp->script = s;
	mp->stmt_off = -1;
	mp->text = NULL;
	mp->text_len = 0;
	mp->converted = false;
	mp->check_pos = 0;
	cb.callback = check_error_callback;
	cb.arg = mp;
	cb.previous = error_context_stack;
	PG_TRY();
	{
		error_context_stack = &cb;
		mp->text = utf8_to_server(s->sql, s->len, &mp->text_len);
		mp->converted = (size_t) mp->text_len != s->len ||
			memcmp(mp->text, s->sql, s->len) != 0;
		stmts = raw_parser(mp->text, RAW_PARSE_DEFAULT);
		error_context_stack = cb.previous;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* PG_CATCH has put back the caller's error_context_stack */
		MemoryContextSwitchTo(mp->scratch);
		edata = CopyErrorData();
		if (check_passes_on(edata->sqlerrcode))
			PG_RE_THROW();
		FlushErrorState();
		check_error(mp, edata, err);
		rc = MIG_ERROR;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(mp->scratch);

	/*
	 * What never runs (transaction control, COPY with the client) is
	 * refused first, in either mode; then what can run only outside a
	 * transaction: CALL migrate_run runs the migration so, function mode
	 * refuses it.
	 */
	foreach(lc, stmts)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		bool		top_level;
		const char *what = refused_statement(rs->stmt, &top_level);

		if (what == NULL)
			continue;
		if (top_level && !s->down)
		{
			if (outside == NULL)
			{
				outside = what;
				outside_at = rs->stmt_location;
			}
			continue;
		}
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
					"%s cannot run in migration file \"%s\"", what, s->file);
		if (top_level)
		{
			mig_err_detail(err, "Rollback scripts run inside a transaction, in which this statement cannot run.");
			mig_err_hint(err, "Remove the statement from the rollback script and run it separately, for example from psql.");
		}
		else
		{
			mig_err_detail(err, "Migrations may not end a transaction, and have no client to copy from or to.");
			mig_err_hint(err, "Remove the statement from the migration; COPY from a server file works.");
		}
		err->offset = script_offset(mp, mig_pg_statement_start(mp, rs->stmt_location));
		rc = MIG_ERROR;
		outside = NULL;
		break;
	}
	if (outside != NULL && mp->host.exec_outside != NULL)
		rc = MIG_OUTSIDE;
	else if (outside != NULL)
	{
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
					"%s cannot run in migration file \"%s\"", outside, s->file);
		mig_err_detail(err, "SELECT %s runs migrations inside the caller's transaction, in which this statement cannot run; nothing was applied.",
					   "migrate_apply");
		mig_err_hint(err, "%s", mp->host.outside_hint);
		err->offset = script_offset(mp, mig_pg_statement_start(mp, outside_at));
		rc = MIG_ERROR;
	}
	mp->script = NULL;
	mp->text = NULL;
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

/*
 * Runs the statements of the script set up in mp (arg: their raw parse
 * trees) through SPI; one attempt of pg_exec.
 */
static int
run_statements(MigPg *mp, void *arg, mig_err *err)
{
	List	   *stmts = (List *) arg;
	const mig_script *s = mp->script;
	SPIExecuteOptions opts;
	ListCell   *lc;

	memset(&opts, 0, sizeof(opts));
	opts.read_only = false;
	opts.tcount = 0;
	opts.dest = None_Receiver;

	foreach(lc, stmts)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		int			off,
					end;
		char	   *stmt = mig_pg_statement_text(mp, rs, &off, &end);
		int			ret;

		CHECK_FOR_INTERRUPTS();
		mig_pg_crash_point(mp);
		mp->stmt_off = off;
		ret = SPI_execute_extended(stmt, &opts);
		MemoryContextSwitchTo(mp->scratch); /* SPI leaves its own current */
		if (ret < 0)
		{
			mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
						"statement cannot run in migration file \"%s\": %s",
						s->file, SPI_result_code_string(ret));
			err->offset = script_offset(mp, off);
			return MIG_ERROR;
		}
		pfree(stmt);
	}
	mp->stmt_off = -1;
	return MIG_OK;
}

/* One attempt of a script under the rail's lock_timeout. */
static int
run_railed_statements(MigPg *mp, void *arg, mig_err *err)
{
	return mig_pg_rail_timed(mp, run_statements, arg, err);
}

/*
 * Runs s statement by statement through SPI, under the blocking rail
 * (pg_rails.c: lock_timeout for the statements; in procedure mode the
 * retries too, a subtransaction per attempt, where in function mode
 * run_core retries the whole call).  A failing statement raises its own
 * error (SQLSTATE kept) with the file and line as context.  Rows a
 * statement returns (a SELECT that backfills data, say) are discarded as
 * they come rather than collected in memory.
 */
static int
pg_exec(void *ctx, const mig_script *s, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = CurrentMemoryContext;
	ErrorContextCallback cb;
	List	   *stmts;
	int			rc;

	mig_pg_script_begin(mp, s, &cb);
	stmts = raw_parser(mp->text, RAW_PARSE_DEFAULT);
	if (mp->procedure && mp->rail_timeout_ms > 0 && mp->rail_retries > 0)
		rc = mig_pg_railed(mp, run_railed_statements, stmts, err);
	else
		rc = run_railed_statements(mp, stmts, err);
	mig_pg_script_done(mp, &cb, old);
	return rc;
}

/* ---- history ---- */

/* Fills err for an unexpected SPI result. */
static int
spi_failed(mig_err *err, const char *what, int ret)
{
	mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not %s migrate_history: %s",
				what, SPI_result_code_string(ret));
	return MIG_ERROR;
}

/*
 * Receives the history rows as the executor produces them and hands each
 * to the core, instead of SPI copying all of them into a tuple table
 * first: with 10,000 rows, megabytes of memory newly touched per call.
 */
typedef struct HistoryDest
{
	DestReceiver pub;
	mig_row_cb	cb;
	void	   *arg;
	int			rc;				/* MIG_OK, or the callback's code */
} HistoryDest;

static bool
history_row(TupleTableSlot *slot, DestReceiver *self)
{
	HistoryDest *d = (HistoryDest *) self;
	mig_hist_row row;
	Datum	   *v;
	bool	   *n;
	const char *s[7];

	CHECK_FOR_INTERRUPTS();
	slot_getallattrs(slot);
	v = slot->tts_values;
	n = slot->tts_isnull;
	for (int c = 0; c < 7; c++)
		s[c] = n[c] ? NULL : TextDatumGetCString(v[c]);
	memset(&row, 0, sizeof(row));
	row.version = s[0];
	row.name = s[1];
	row.file = s[2];
	row.checksum = s[3];
	row.checksum_norm = s[4];
	row.applied_at = s[5];
	row.file_id = s[6];
	row.exec_ms = n[7] ? -1 : DatumGetFloat8(v[7]);
	row.rank = DatumGetInt64(v[8]);
	row.has_down = DatumGetBool(v[9]) ? 1 : 0;
	d->rc = d->cb(d->arg, &row);
	for (int c = 0; c < 7; c++)
		if (s[c] != NULL)
			pfree((char *) s[c]);
	return d->rc == MIG_OK;		/* false stops the scan */
}

static void
history_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
history_shutdown(DestReceiver *self)
{
}

/* Visits every history row; returns MIG_OK, cb's non-zero code, or
 * MIG_ERROR.  A row's strings live until cb returns. */
static int
pg_history_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	HistoryDest d;
	SPIExecuteOptions opts;
	char	   *sql;
	int			ret;

	memset(&d, 0, sizeof(d));
	d.pub.receiveSlot = history_row;
	d.pub.rStartup = history_startup;
	d.pub.rShutdown = history_shutdown;
	d.pub.rDestroy = history_shutdown;
	/* not DestNone, for which SPI reports a SELECT as SPI_OK_UTILITY */
	d.pub.mydest = DestTuplestore;
	d.cb = cb;
	d.arg = arg;
	d.rc = MIG_OK;
	memset(&opts, 0, sizeof(opts));
	/* Not read-only: a read-only SPI call would reuse the caller's
	 * snapshot, taken before the lock. */
	opts.read_only = false;
	opts.dest = &d.pub;

	/* applied_at is formatted only for migrate_status: applying and rolling
	 * back never look at it. */
	sql = psprintf("SELECT version, name, up_file, checksum, checksum_norm, "
				   "%s, file_id, execution_ms, installed_rank, "
				   "down_sql IS NOT NULL FROM %s",
				   mp->want_applied_at ? "applied_at::pg_catalog.text" :
				   "NULL::pg_catalog.text", mp->history);
	ret = SPI_execute_extended(sql, &opts);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_SELECT)
		return spi_failed(err, "read", ret);
	return d.rc;
}

/* Text column col (1-based) of row as a C string in the current context,
 * or NULL. */
static const char *
text_col(SPITupleTable *tt, uint64 row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tt->vals[row], tt->tupdesc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Records one applied migration. */
static int
pg_history_add(void *ctx, const mig_record *rec, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[10] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[10];
	char		nulls[10];
	char	   *sql;
	int			ret;

	mig_pg_crash_point(mp);
	memset(nulls, ' ', sizeof(nulls));
	values[0] = mig_pg_text_datum(rec->version, strlen(rec->version));
	values[1] = mig_pg_text_datum(rec->name, strlen(rec->name));
	values[2] = mig_pg_text_datum(rec->up_file, strlen(rec->up_file));
	if (rec->down_file != NULL)
		values[3] = mig_pg_text_datum(rec->down_file, strlen(rec->down_file));
	else
		nulls[3] = 'n';
	values[4] = mig_pg_text_datum(rec->checksum, strlen(rec->checksum));
	values[5] = Float8GetDatum(rec->exec_ms);
	values[6] = mig_pg_text_datum(rec->up_sql, rec->up_len);
	if (rec->down_sql != NULL)
		values[7] = mig_pg_text_datum(rec->down_sql, rec->down_len);
	else
		nulls[7] = 'n';
	if (rec->file_id != NULL)
		values[8] = CStringGetTextDatum(rec->file_id);
	else
		nulls[8] = 'n';
	if (rec->checksum_norm != NULL)
		values[9] = CStringGetTextDatum(rec->checksum_norm);
	else
		nulls[9] = 'n';

	sql = psprintf("INSERT INTO %s (version, name, up_file, down_file, "
				   "checksum, execution_ms, up_sql, down_sql, file_id, "
				   "checksum_norm) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
				   mp->history);
	ret = SPI_execute_with_args(sql, 10, types, values, nulls, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT || SPI_processed != 1)
		return spi_failed(err, "insert into", ret);
	return mig_pg_forget_progress(mp, rec->version, err);
}

/* Deletes the history row of one version. */
static int
pg_history_remove(void *ctx, const char *version, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *sql;
	int			ret;
	uint64		n;

	mig_pg_crash_point(mp);
	values[0] = mig_pg_text_datum(version, strlen(version));
	sql = psprintf("DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1",
				   mp->history);
	ret = SPI_execute_with_args(sql, 1, types, values, NULL, false, 0);
	n = SPI_processed;
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_DELETE)
		return spi_failed(err, "delete from", ret);
	if (n != 1)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s is not in migrate_history", version);
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* Returns in *sql (memory from pg_alloc, in UTF-8) the stored down script
 * of version, or NULL when it has none. */
static int
pg_history_down(void *ctx, const char *version, char **sql, size_t *len,
				mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *query;
	const char *down = NULL;
	int			ret;
	int			rc = MIG_OK;

	*sql = NULL;
	*len = 0;
	values[0] = mig_pg_text_datum(version, strlen(version));
	query = psprintf("SELECT down_sql FROM %s "
					 "WHERE version OPERATOR(pg_catalog.=) $1", mp->history);
	ret = SPI_execute_with_args(query, 1, types, values, NULL, false, 0);
	MemoryContextSwitchTo(mp->scratch);
	if (ret != SPI_OK_SELECT)
		rc = spi_failed(err, "read", ret);
	else if (SPI_processed == 1)
		down = text_col(SPI_tuptable, 0, 1);
	if (down != NULL)
	{
		char	   *utf8 = pg_server_to_any(down, strlen(down), PG_UTF8);
		size_t		n = strlen(utf8);

		*sql = pg_alloc(mp, n + 1);
		if (*sql == NULL)
		{
			mig_err_nomem(err);
			rc = MIG_NOMEM;
		}
		else
		{
			memcpy(*sql, utf8, n + 1);
			*len = n;
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

/*
 * migrate_repair: brings the history row of r->version in line with its
 * file (name, files, checksums, down script, file identity; a NULL down
 * file or script keeps the stored one) and writes an audit row to
 * migrate_repairs (old and new checksum; who and when by default).
 */
static int
pg_history_repair(void *ctx, const mig_repair_row *r, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[9];
	char		nulls[9];
	const char *str[9];
	size_t		lens[9];
	char	   *sql;
	int			ret;
	uint64		n;

	str[0] = r->version;
	str[1] = r->name;
	str[2] = r->up_file;
	str[3] = r->down_file;
	str[4] = r->checksum;
	str[5] = r->checksum_norm;
	str[6] = r->down_sql;
	str[7] = r->file_id;
	str[8] = r->old_checksum;
	for (int i = 0; i < 9; i++)
	{
		lens[i] = i == 6 ? r->down_len : (str[i] ? strlen(str[i]) : 0);
		nulls[i] = str[i] ? ' ' : 'n';
		values[i] = str[i] ? mig_pg_text_datum(str[i], lens[i]) : (Datum) 0;
	}

	sql = psprintf("UPDATE %s SET name = $2, up_file = $3, "
				   "down_file = COALESCE($4, down_file), checksum = $5, "
				   "checksum_norm = $6, down_sql = COALESCE($7, down_sql), "
				   "file_id = $8 WHERE version OPERATOR(pg_catalog.=) $1",
				   mp->history);
	ret = SPI_execute_with_args(sql, 8, types, values, nulls, false, 0);
	n = SPI_processed;
	if (ret != SPI_OK_UPDATE)
	{
		MemoryContextSwitchTo(old);
		return spi_failed(err, "update", ret);
	}
	if (n != 1)
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(mp->scratch);
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s is not in migrate_history", r->version);
		return MIG_ERROR;
	}
	sql = psprintf("INSERT INTO %s (version, old_checksum, new_checksum) "
				   "VALUES ($1, $2, $3)", mp->repairs);
	values[1] = values[8];
	nulls[1] = nulls[8];
	values[2] = values[4];
	nulls[2] = nulls[4];
	ret = SPI_execute_with_args(sql, 3, types, values, nulls, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL,
					"could not insert into migrate_repairs: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* ---- the off-hours script (migrate_script) ---- */

/* Whether sql[0..len) holds needle (a NUL-terminated string). */
static bool
holds(const char *sql, size_t len, const char *needle)
{
	size_t		n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++)
		if (sql[i] == needle[0] && memcmp(sql + i, needle, n) == 0)
			return true;
	return false;
}

/*
 * Appends sql[0..len) to buf as a dollar-quoted literal whose tag the text
 * does not hold ($migrate$, $migrate_1$...): the script stays readable, the
 * text is taken as it is (no escapes), and no part of it can end the
 * literal early.  NULL gives NULL.
 */
static void
append_dollar(StringInfo buf, const char *sql, size_t len)
{
	char		tag[32] = "$migrate";

	if (sql == NULL)
	{
		appendStringInfoString(buf, "NULL");
		return;
	}
	/* no "$tag" at all, so that neither "$tag$" inside nor a text ending
	 * in "$tag" can close the literal before its end */
	for (int i = 1; holds(sql, len, tag); i++)
		snprintf(tag, sizeof(tag), "$migrate_%d", i);
	appendStringInfo(buf, "%s$", tag);
	appendBinaryStringInfo(buf, sql, (int) len);
	appendStringInfo(buf, "%s$", tag);
}

/* Appends s as a quoted literal, or NULL. */
static void
append_literal(StringInfo buf, const char *s)
{
	appendStringInfoString(buf, s ? quote_literal_cstr(s) : "NULL");
}

/*
 * The SQL of one part of an off-hours script, in UTF-8 like the rest of
 * the script (migrate_script converts the whole), in memory from pg_alloc:
 *
 *   BEGIN   opens the transaction and waits for the migration lock (the
 *           same key migrate_apply takes), then sets the rail's
 *           lock_timeout for the migrations (a script has no retries: a
 *           statement that cannot get its lock in time fails the script,
 *           which then changes nothing);
 *   RECORD  inserts the history row as migrate_apply would (the version is
 *           UNIQUE: a script run twice fails there and changes nothing);
 *   FORGET  deletes the row of a repeatable about to run again;
 *   END     commits.
 */
static int
pg_script_part(void *ctx, int part, const mig_record *rec,
			   const mig_lock_opts *lock, char **sql, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	StringInfoData buf;
	int			rc = MIG_OK;

	*sql = NULL;
	initStringInfo(&buf);
	switch (part)
	{
		case MIG_PART_BEGIN:
			mig_pg_rail_set(mp, lock);
			appendStringInfo(&buf, "BEGIN;\n"
							 "-- the migration lock, as migrate_apply and migrate_run take it\n"
							 "SELECT pg_catalog.pg_advisory_xact_lock(" INT64_FORMAT ");\n",
							 (int64) MIGRATE_LOCK_KEY);
			if (mp->rail_timeout_ms > 0)
				appendStringInfo(&buf, "-- how long a statement may queue behind other sessions' locks (lock_timeout=, or migrate.lock_timeout)\n"
								 "SET LOCAL lock_timeout = '%dms';\n", mp->rail_timeout_ms);
			break;
		case MIG_PART_RECORD:
			if (rec == NULL)
				break;
			appendStringInfo(&buf, "INSERT INTO %s (version, name, up_file, down_file, "
							 "checksum, checksum_norm, execution_ms, up_sql, down_sql)\n"
							 "VALUES (", mp->history);
			append_literal(&buf, rec->version);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->name);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->up_file);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->down_file);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->checksum);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->checksum_norm);
			appendStringInfoString(&buf, ", NULL,\n");
			append_dollar(&buf, rec->up_sql, rec->up_len);
			appendStringInfoString(&buf, ",\n");
			append_dollar(&buf, rec->down_sql, rec->down_len);
			appendStringInfoString(&buf, ");\n");
			break;
		case MIG_PART_FORGET:
			if (rec == NULL)
				break;
			appendStringInfo(&buf, "DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) ",
							 mp->history);
			append_literal(&buf, rec->version);
			appendStringInfoString(&buf, ";\n");
			break;
		case MIG_PART_END:
			appendStringInfoString(&buf, "COMMIT;\n");
			break;
	}
	if (buf.len == 0)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "unknown part %d of a migration script", part);
		rc = MIG_ERROR;
	}
	else if ((*sql = pg_alloc(mp, buf.len + 1)) == NULL)
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	else
		memcpy(*sql, buf.data, buf.len + 1);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

/* A notice from the core (a migration applied, a lock skipped, a file
 * only reformatted). */
static void
pg_notice(void *ctx, const char *message, const char *detail)
{
	ereport(NOTICE,
			(errmsg_internal("%s", message),
			 detail ? errdetail_internal("%s", detail) : 0));
}

/* ---- the no-op shortcut (common/mig_noop.c) ---- */

/*
 * The state of the history's trigger that counts every change: the xmin of
 * its pg_trigger row when it is present and enabled ALWAYS, else
 * InvalidTransactionId.  Disabling it to edit the history by hand turns
 * the shortcut off, and enabling it again writes a new row: a digest
 * stored before then is not used.
 */
static TransactionId
history_counted(Oid history)
{
	Relation	rel = table_open(history, AccessShareLock);
	TriggerDesc *td = rel->trigdesc;
	Oid			tgoid = InvalidOid;
	TransactionId xmin = InvalidTransactionId;

	for (int i = 0; td != NULL && i < td->numtriggers; i++)
		if (strcmp(td->triggers[i].tgname, "migrate_history_changed") == 0 &&
			td->triggers[i].tgenabled == TRIGGER_FIRES_ALWAYS)
			tgoid = td->triggers[i].tgoid;
	table_close(rel, AccessShareLock);
	if (OidIsValid(tgoid))
	{
		Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;

		ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(tgoid));
		scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1, &key);
		if (HeapTupleIsValid(tup = systable_getnext(scan)))
			xmin = HeapTupleHeaderGetRawXmin(tup->t_data);
		systable_endscan(scan);
		table_close(tgrel, AccessShareLock);
	}
	return xmin;
}

/* Whether the current user holds every privilege of mode on rel. */
static bool
may(Oid rel, AclMode mode)
{
	return pg_class_aclmask(rel, GetUserId(), mode, ACLMASK_ALL) == mode;
}

/* The sequence's count of history changes (0 before the first). */
static int64
history_gen(Oid seq)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		d;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seq);
	fcinfo->args[0].isnull = false;
	d = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(d);
}

/*
 * The digest stored by the last call that found its folder fully applied,
 * if the history has not changed since: its count of changes is still the
 * sequence's (which every session sees at once), and the trigger that
 * keeps that count is on and has been since.  Any row with that count and
 * trigger state will do, whatever the snapshot that shows it: each was a
 * folder found fully applied against the history as it still is.  Read
 * without SQL, which in a new backend costs more than the rows.
 * Remembers both for verified_put.
 */
static int
pg_verified_get(void *ctx, char *out, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	Relation	rel;
	TableScanDesc scan;
	Snapshot	snap;
	HeapTuple	tup;

	out[0] = '\0';
	mp->may_verify = false;
	if (!may(mp->verified_oid, ACL_SELECT | ACL_INSERT | ACL_DELETE) ||
		!may(mp->gen_oid, ACL_SELECT) ||
		!TransactionIdIsValid(mp->trigger_xmin = history_counted(mp->history_oid)))
		return MIG_OK;
	mp->gen_seen = history_gen(mp->gen_oid);
	mp->may_verify = true;
	rel = table_open(mp->verified_oid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while (out[0] == '\0' &&
		   (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull,
					xnull;
		Datum		gen = heap_getattr(tup, 2, RelationGetDescr(rel), &isnull);
		Datum		xmin = heap_getattr(tup, 3, RelationGetDescr(rel), &xnull);
		Datum		digest;

		if (isnull || xnull || DatumGetInt64(gen) != mp->gen_seen ||
			DatumGetTransactionId(xmin) != mp->trigger_xmin)
			continue;
		digest = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);
		if (!isnull && VARSIZE_ANY_EXHDR(DatumGetTextPP(digest)) < MIG_DIGEST_MAX)
			text_to_cstring_buffer(DatumGetTextPP(digest), out, MIG_DIGEST_MAX);
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return MIG_OK;
}

/* Stores the digest of a folder found fully applied, with the count of
 * history changes and the trigger's state verified_get saw, in place of
 * the last one. */
static int
pg_verified_put(void *ctx, const char *digest, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old;
	Oid			types[3] = {TEXTOID, INT8OID, XIDOID};
	Datum		values[3];
	char	   *sql;
	int			ret;

	if (!mp->may_verify)
		return MIG_OK;
	old = MemoryContextSwitchTo(mp->scratch);
	sql = psprintf("WITH gone AS (DELETE FROM %s) "
				   "INSERT INTO %s (digest, history_gen, trigger_xmin) VALUES ($1, $2, $3)",
				   mp->verified, mp->verified);
	values[0] = CStringGetTextDatum(digest);
	values[1] = Int64GetDatum(mp->gen_seen);
	values[2] = TransactionIdGetDatum(mp->trigger_xmin);
	ret = SPI_execute_with_args(sql, 3, types, values, NULL, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not write migrate_verified: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* ---- another tool's history (migrate_adopt) ---- */

/*
 * Sets *exists when the table, and column if not NULL, exists, the table
 * name resolving through search_path as an unqualified name does.
 */
static int
pg_table_info(void *ctx, const char *table, const char *column, int *exists,
			  mig_err *err)
{
	Oid			relid;

	relid = RangeVarGetRelid(makeRangeVar(NULL, pstrdup(table), -1), NoLock,
							 true);
	*exists = OidIsValid(relid) &&
		(column == NULL || get_attnum(relid, column) != InvalidAttrNumber);
	return MIG_OK;
}

/* Runs one SELECT of ncols columns and hands each row to cb as text. */
static int
pg_query_text(void *ctx, const char *sql, int ncols,
			  int (*cb) (void *arg, const char *const *cells), void *arg,
			  mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	SPITupleTable *tt;
	const char **cells;
	int			ret;
	int			rc = MIG_OK;

	ret = SPI_execute(sql, false, 0);
	MemoryContextSwitchTo(mp->scratch);
	if (ret != SPI_OK_SELECT || SPI_tuptable->tupdesc->natts < ncols)
	{
		MemoryContextSwitchTo(old);
		mig_err_set(err, MIG_SQLSTATE_INTERNAL,
					"could not read the other tool's history: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	tt = SPI_tuptable;
	cells = palloc(sizeof(char *) * ncols);
	for (uint64 i = 0; i < SPI_processed && rc == MIG_OK; i++)
	{
		CHECK_FOR_INTERRUPTS();
		for (int c = 0; c < ncols; c++)
			cells[c] = SPI_getvalue(tt->vals[i], tt->tupdesc, c + 1);
		rc = cb(arg, cells);
	}
	SPI_freetuptable(tt);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

/* ---- set-up, tear-down, errors ---- */

/*
 * The checksums of files this backend has read, kept across calls so that
 * a later call checks an unchanged file with one lstat (see mig_cache.c).
 * A backend serves one connection, so this is the connection's cache.  Its
 * memory lives in a context under TopMemoryContext; an allocation failure
 * only means a smaller cache.
 */
static MemoryContext cache_cxt = NULL;
static mig_cache *file_cache = NULL;

static void *
cache_alloc(size_t n)
{
	return MemoryContextAllocExtended(cache_cxt, n,
									  MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
}

static void
cache_release(void *p)
{
	if (p != NULL)
		pfree(p);
}

static mig_cache *
backend_cache(void)
{
	if (file_cache == NULL)
	{
		if (cache_cxt == NULL)
			cache_cxt = AllocSetContextCreate(TopMemoryContext,
											  "migrate file cache",
											  ALLOCSET_DEFAULT_SIZES);
		file_cache = mig_cache_create(cache_alloc, cache_release);
	}
	return file_cache;
}

MigPg *
mig_pg_begin(Oid fn_oid, bool procedure)
{
	MemoryContext parent = procedure ? PortalContext : CurrentMemoryContext;
	MemoryContext cxt;
	MigPg	   *mp;
	Oid			nsp;
	char	   *schema;

	cxt = AllocSetContextCreate(parent, "migrate", ALLOCSET_DEFAULT_SIZES);
	mp = MemoryContextAllocZero(cxt, sizeof(MigPg));
	mp->cxt = cxt;
	mp->scratch = AllocSetContextCreate(cxt, "migrate scratch",
										ALLOCSET_DEFAULT_SIZES);
	mp->procedure = procedure;

	/* The functions live in the extension's schema, so does the history. */
	nsp = get_func_namespace(fn_oid);
	schema = get_namespace_name(nsp);
	if (schema == NULL)
		elog(ERROR, "cache lookup failed for the schema of function %u",
			 fn_oid);
	mp->history = MemoryContextStrdup(cxt,
									  psprintf("%s.migrate_history",
											   quote_identifier(schema)));
	mp->repairs = MemoryContextStrdup(cxt,
									  psprintf("%s.migrate_repairs",
											   quote_identifier(schema)));
	mp->progress = MemoryContextStrdup(cxt,
									   psprintf("%s.migrate_progress",
												quote_identifier(schema)));
	mp->verified = MemoryContextStrdup(cxt,
									   psprintf("%s.migrate_verified",
												quote_identifier(schema)));
	/* the no-op shortcut's tables came with 0.2 */
	mp->history_oid = get_relname_relid("migrate_history", nsp);
	mp->verified_oid = get_relname_relid("migrate_verified", nsp);
	mp->gen_oid = get_relname_relid("migrate_history_gen", nsp);
	mig_pg_rail_set(mp, NULL);
	mp->rail_attempt = 1;		/* until mig_pg_railed counts attempts */

	mp->host.ctx = mp;
	mp->host.alloc = pg_alloc;
	mp->host.release = pg_release;
	mp->host.open_file = pg_open_file;
	mp->host.open_dir = pg_open_dir;
	mp->host.close_file = pg_close_file;
	mp->host.list_dir = pg_list_dir;
	mp->host.lock = pg_lock;
	mp->host.unlock = pg_unlock;
	mp->host.checkpoint = procedure ? pg_checkpoint : NULL;
	mp->host.history_load = pg_history_load;
	mp->host.history_add = pg_history_add;
	mp->host.history_remove = pg_history_remove;
	mp->host.history_down = pg_history_down;
	mp->host.history_repair = pg_history_repair;
	mp->host.script_part = pg_script_part;
	mp->host.notice = pg_notice;
	mp->host.check_script = pg_check_script;
	mp->host.exec = pg_exec;
	/* outside a transaction: only a CALL can commit around each statement */
	mp->host.exec_outside = procedure ? mig_pg_exec_outside : NULL;
	mp->host.outside_hint = procedure ? NULL :
		"Use CALL migrate_run(...), which runs such a migration outside a transaction, one statement at a time.";
	if (OidIsValid(mp->history_oid) && OidIsValid(mp->verified_oid) &&
		OidIsValid(mp->gen_oid))
	{
		mp->host.verified_get = pg_verified_get;
		mp->host.verified_put = pg_verified_put;
	}
	mp->host.table_info = pg_table_info;
	mp->host.query_text = pg_query_text;
	mp->host.engine = "postgres";
	mp->host.cache = backend_cache();
	mp->host.keeps_file_id = 1;
	mp->host.max_file_size = (size_t) max_file_kb * 1024;
	mp->host.refuse_writable = 1;
	return mp;
}

void
mig_pg_end(MigPg *mp)
{
	release_session_lock(mp);
	MemoryContextDelete(mp->cxt);
}

/* A valid SQLSTATE: five digits or upper-case letters. */
static bool
valid_sqlstate(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return s[5] == '\0';
}

void
mig_pg_report(const mig_err *err)
{
	const char *st = err->sqlstate;
	int			code;

	if (err->code == MIG_NOMEM)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 err->context[0] ? errcontext("%s", err->context) : 0));
	if (valid_sqlstate(st))
		code = MAKE_SQLSTATE(st[0], st[1], st[2], st[3], st[4]);
	else
		code = ERRCODE_INTERNAL_ERROR;
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s", err->message[0] ? err->message :
							 "migration failed"),
			 err->detail[0] ? errdetail_internal("%s", err->detail) : 0,
			 err->hint[0] ? errhint("%s", err->hint) : 0,
			 err->context[0] ? errcontext("%s", err->context) : 0));
	pg_unreachable();
}
