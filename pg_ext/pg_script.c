/*
 * pg_script.c -- the migration scripts: checked with the server's own
 * parser, run through SPI.
 *
 *   script helpers   a script copied into the scratch context in the
 *                    server encoding, the offsets of its statements and
 *                    lines, and the error context callback naming the
 *                    migration, its file and the line (shared with
 *                    pg_outside.c);
 *   check_script     raw_parser() splits a script into statements and
 *                    finds the ones that cannot run through SPI (or only
 *                    outside a transaction) before anything runs; a syntax
 *                    error goes back to the core in a mig_err;
 *   exec             each statement runs with SPI_execute, under the
 *                    blocking rail of pg_rails.c (lock_timeout, retries),
 *                    a stored down script as the role that stored it.
 */
#include "postgres.h"

#include "commands/defrem.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "pg_host.h"

/* ---- script helpers ---- */

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
long
mig_pg_script_offset(const MigPg *mp, int off)
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
		errcontext("%smigration %s (%s), line %d", what,
				   mig_pg_report_text(s->version), mig_pg_report_text(s->file),
				   mig_script_line(s, (size_t) mig_pg_script_offset(mp, off)));
	else
		errcontext("%smigration %s (%s)", what, mig_pg_report_text(s->version),
				   mig_pg_report_text(s->file));
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
	char	   *text;
	size_t		len,
				bad;

	MemoryContextSwitchTo(mp->scratch);
	mp->script = s;
	mp->stmt_off = -1;
	mp->text = NULL;
	mp->text_len = 0;
	mp->converted = false;

	/* checked before anything ran (check_script), but for a down script
	 * read back from the history */
	text = mig_pg_to_server(s->sql, s->len, &len, &bad);
	if (text == NULL)
	{
		mig_err		err;

		mig_pg_untranslatable(s->sql, s->len, bad, &err);
		snprintf(err.context, sizeof(err.context), "%smigration %s (%s), line %d",
				 s->down ? "rollback of " : "", s->version, s->file,
				 mig_script_line(s, bad));
		mig_pg_report(&err);
	}

	cb->callback = script_error_callback;
	cb->arg = mp;
	cb->previous = error_context_stack;
	error_context_stack = cb;

	mp->text = text;
	mp->text_len = (int) len;
	mp->converted = len != s->len || memcmp(text, s->sql, s->len) != 0;
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
 * run outside one (by a background worker, pg_worker.c).  Transaction
 * control never can: each statement outside a transaction is its own
 * transaction, committed with its progress, and a block spanning several
 * would break resuming at the failed one.  Nor can COPY from or to the
 * client, which a worker does not have.
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
		case T_AlterTableStmt:
			foreach(lc, ((AlterTableStmt *) stmt)->cmds)
			{
				AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

				if (cmd->subtype == AT_DetachPartition &&
					((PartitionCmd *) cmd->def)->concurrent)
					return "ALTER TABLE ... DETACH PARTITION CONCURRENTLY";
			}
			break;
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

bool
mig_pg_outside_only(Node *stmt)
{
	bool		top_level;

	return refused_statement(stmt, &top_level) != NULL && top_level;
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

/* Fills err from an error the parser raised: its SQLSTATE, message, detail
 * and hint (in UTF-8), and the offset of its position in the script. */
static void
check_error(MigPg *mp, const ErrorData *edata, mig_err *err)
{
	mig_err_set(err, unpack_sql_state(edata->sqlerrcode), "%s",
				edata->message ? mig_pg_from_server(edata->message, true) : "syntax error");
	if (edata->detail)
		mig_err_detail(err, "%s", mig_pg_from_server(edata->detail, true));
	if (edata->hint)
		mig_err_hint(err, "%s", mig_pg_from_server(edata->hint, true));
	if (mp->check_pos > 0 && mp->text != NULL)
		err->offset = mig_pg_script_offset(mp, char_to_byte(mp->text, mp->text_len,
													 mp->check_pos - 1));
}

/*
 * Parses s with the server's own parser and refuses it (0A000, with the
 * offset of the statement) if a statement cannot run in a migration.  A
 * syntax error, or a character the server encoding lacks (in the text or
 * the file name, which the history keeps), is returned in err rather than
 * raised, so that migrate_validate can list every problem
 * of a folder in one call: the parser holds no resources but memory (here
 * the scratch context), so its error can be caught without a
 * subtransaction.
 */
int
mig_pg_check_script(void *ctx, const mig_script *s, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	ErrorContextCallback cb;
	List	   *volatile stmts = NIL;
	volatile int rc = MIG_OK;
	ListCell   *lc;
	const char *volatile outside = NULL;
	volatile int outside_at = 0;
	char	   *text = NULL;
	size_t		len,
				bad;

	mp->script = s;
	mp->stmt_off = -1;
	mp->text = NULL;
	mp->text_len = 0;
	mp->converted = false;
	mp->check_pos = 0;

	/* its file name and its text in the server encoding, or 22P05 naming
	 * the file (and the line) before anything runs */
	rc = mig_pg_name_fits(s->version, s->file, err);
	if (rc == MIG_OK && (text = mig_pg_to_server(s->sql, s->len, &len, &bad)) == NULL)
	{
		mig_pg_untranslatable(s->sql, s->len, bad, err);
		rc = MIG_ERROR;
	}
	if (rc != MIG_OK)
	{
		mp->script = NULL;
		MemoryContextSwitchTo(old);
		MemoryContextReset(mp->scratch);
		return rc;
	}
	mp->text = text;
	mp->text_len = (int) len;
	mp->converted = len != s->len || memcmp(text, s->sql, s->len) != 0;

	cb.callback = check_error_callback;
	cb.arg = mp;
	cb.previous = error_context_stack;
	PG_TRY();
	{
		error_context_stack = &cb;
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
		if (top_level)
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
		mig_err_detail(err, "Migrations may not end a transaction, and have no client to copy from or to.");
		mig_err_hint(err, "Remove the statement from the migration; COPY from a server file works.");
		err->offset = mig_pg_script_offset(mp, mig_pg_statement_start(mp, rs->stmt_location));
		rc = MIG_ERROR;
		outside = NULL;
		break;
	}
	/* a down script that must run outside a transaction is recorded so;
	 * rolling it back decides where it can run */
	if (outside != NULL && (mp->host.exec_outside != NULL || mp->dry_run_procedure || s->down))
		rc = MIG_OUTSIDE;
	else if (outside != NULL)
	{
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
					"%s cannot run in migration file \"%s\"", outside, s->file);
		if (mp->fname && (strcmp(mp->fname, "migrate_plan") == 0 ||
						  strcmp(mp->fname, "migrate_script") == 0))
		{
			/* a dry run names itself, and the form that can run it */
			mig_err_detail(err, "%s describes what SELECT migrate_apply would do, which runs migrations inside the caller's transaction, in which this statement cannot run.",
						   mp->fname);
			mig_err_hint(err, "With the option mode=run, %s describes CALL migrate_run, which runs such a migration outside a transaction, one statement at a time.",
						 mp->fname);
		}
		else
		{
			mig_err_detail(err, "%s runs migrations inside the caller's transaction, in which this statement cannot run; nothing was applied.",
						   mp->fname ? mp->fname : "migrate_apply");
			mig_err_hint(err, "%s", mp->host.outside_hint);
		}
		err->offset = mig_pg_script_offset(mp, mig_pg_statement_start(mp, outside_at));
		rc = MIG_ERROR;
	}
	mp->script = NULL;
	mp->text = NULL;
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	/* an up script CALL migrate_run will run outside a transaction: its
	 * worker can start now */
	if (mp->procedure && !s->down && (rc == MIG_OUTSIDE || (rc == MIG_OK && s->nontransactional)))
		mig_pg_outside_prestart(mp);
	return rc;
}

/*
 * Runs the statements of the script set up in mp (arg: their raw parse
 * trees) through SPI; one attempt of mig_pg_exec.
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
			err->offset = mig_pg_script_offset(mp, off);
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
 * mig_pg_run_core retries the whole call).  A failing statement raises its own
 * error (SQLSTATE kept) with the file and line as context.  Rows a
 * statement returns (a SELECT that backfills data, say) are discarded as
 * they come rather than collected in memory.
 */
int
mig_pg_exec(void *ctx, const mig_script *s, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = CurrentMemoryContext;
	ErrorContextCallback cb;
	List	   *stmts;
	int			rc;

	Oid			save_user;
	int			save_sec;
	int			nest;

	mig_pg_script_begin(mp, s, &cb);
	stmts = raw_parser(mp->text, RAW_PARSE_DEFAULT);
	GetUserIdAndSecContext(&save_user, &save_sec);
	if (s->down)
		mig_pg_down_role_enter(mp);
	/* a tenant's migration runs in its schema (an error's abort undoes it) */
	nest = mig_pg_tenant_path_enter(mp);
	if (mp->procedure && mp->rail_timeout_ms > 0 && mp->rail_retries > 0)
		rc = mig_pg_railed(mp, run_railed_statements, stmts, err);
	else
		rc = run_railed_statements(mp, stmts, err);
	mig_pg_tenant_path_leave(nest);
	SetUserIdAndSecContext(save_user, save_sec);
	mig_pg_script_done(mp, &cb, old);
	return rc;
}

/*
 * Before a stored down script runs: switches to the role that stored it
 * (migrate_history.applied_by, written by the functions as their caller),
 * so that it never runs with more rights than that role had -- a
 * superuser rolling back a deploy role's migration runs its down script
 * as the deploy role.  The caller must have that role's privileges
 * (a superuser, a member, or the role itself), else 42501.  The switch
 * forbids SET ROLE and SET SESSION AUTHORIZATION inside the script, as a
 * SECURITY DEFINER function does; the caller puts the user back after the
 * script (or an abort does).
 */
void
mig_pg_down_role_enter(MigPg *mp)
{
	Oid			user;
	int			sec;

	if (!OidIsValid(mp->down_role) || mp->down_role == mp->caller)
		return;
	if (!has_privs_of_role(mp->caller, mp->down_role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to roll back migration %s", mp->script->version),
				 errdetail("Its down script was stored by role \"%s\" and runs with that role's rights, which role \"%s\" does not have.",
						   GetUserNameFromId(mp->down_role, false),
						   GetUserNameFromId(mp->caller, false)),
				 errhint("Roll it back as \"%s\" or as a member of that role.",
						 GetUserNameFromId(mp->down_role, false))));
	GetUserIdAndSecContext(&user, &sec);
	SetUserIdAndSecContext(mp->down_role, sec | SECURITY_LOCAL_USERID_CHANGE);
}
