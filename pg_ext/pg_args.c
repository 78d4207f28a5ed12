/*
 * pg_args.c -- what every SQL-callable function of migrate checks of the
 * session and reads of its arguments before the core runs: privileges
 * (pg_read_server_files for a folder on the server), a writable
 * transaction, READ COMMITTED in function mode, a non-atomic CALL in
 * procedure mode; the folder (a path, an archive or a JSON object), the
 * options text and its schema= (pg_tenant.c), text in UTF-8 and back.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/resowner.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "mb/pg_wchar.h"
#include "utils/rel.h"

#include "pg_host.h"
#include "pg_core.h"

/*
 * Raises 42501 unless the current user may read server files: a superuser
 * or a role with the privileges of pg_read_server_files, as pg_read_file.
 */
void
mig_pg_check_read_privilege(const char *fname)
{
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read migration files"),
				 errdetail("Only superusers and roles with privileges of the \"%s\" role may call %s.",
						   "pg_read_server_files", fname)));
}

/* Raises an error unless this transaction may change the database. */
void
mig_pg_check_writable(const char *fname)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("%s cannot run during recovery", fname),
				 errhint("Apply migrations on the primary server.")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("%s cannot run in a read-only transaction", fname)));
}

/*
 * Function mode runs in the caller's transaction.  Under REPEATABLE READ or
 * SERIALIZABLE its snapshot predates the migration lock, so it would not see
 * migrations another session applied while this one waited: refuse.
 */
void
mig_pg_check_function_mode(const char *fname)
{
	mig_pg_check_writable(fname);
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("%s cannot run in a %s transaction", fname,
						IsolationIsSerializable() ? "SERIALIZABLE" :
						"REPEATABLE READ"),
				 errdetail("The transaction's snapshot was taken before the migration lock, so it could miss migrations applied by another session."),
				 errhint("Use READ COMMITTED, or CALL migrate_run(...) outside a transaction block.")));
}

/* Raises 2D000 unless the procedure fname was called where it can commit:
 * a CALL of its own, outside a transaction block.  instead names the
 * function form to use otherwise. */
void
mig_pg_check_procedure_mode(FunctionCallInfo fcinfo, const char *fname, const char *instead)
{
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("%s cannot run inside a transaction block", fname),
				 errdetail("%s commits after each migration, which is possible only in a CALL that is not inside BEGIN, a multi-statement query string or a function.", fname),
				 errhint("CALL %s(...) as a statement of its own, or use SELECT %s everything in the caller's transaction.",
						 fname, instead)));
}

/*
 * The folder argument as an absolute path in UTF-8, as the core takes every
 * name: relative paths are relative to the data directory, as for
 * pg_read_file.
 */
static char *
folder_arg(text *arg)
{
	char	   *path = mig_pg_utf8(text_to_cstring(arg));

	if (path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration folder path must not be empty")));
	if (!is_absolute_path(path))
		path = psprintf("%s/%s", DataDir, path);
	canonicalize_path(path);
	return path;
}

/*
 * The folder, the first argument of fname, into call: a path on the server
 * (text), or the folder's contents sent as data -- an archive (bytea) or a
 * JSON object (jsonb) -- as the function's declared argument says.  Who
 * may call each form is checked here: the path form reads server files,
 * so it needs superuser or pg_read_server_files whatever EXECUTE grants
 * say; the data forms read no server file and need no more than EXECUTE
 * on the function (the extension grants it to pg_database_owner).  Either
 * way the migrations run with the caller's rights (no function is
 * SECURITY DEFINER) and the history is written only by the functions.
 */
void
mig_pg_source_arg(FunctionCallInfo fcinfo, CoreCall *call, const char *fname)
{
	Oid		   *types;
	int			nargs;

	(void) get_func_signature(fcinfo->flinfo->fn_oid, &types, &nargs);
	if (nargs < 1)
		elog(ERROR, "%s declared without a folder argument", fname);
	if (types[0] == TEXTOID)
		mig_pg_check_read_privilege(fname);
	if (PG_ARGISNULL(0))		/* data forms and procedures: not STRICT */
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration folder %s must not be NULL",
						types[0] == TEXTOID ? "path" : "data")));
	if (types[0] == TEXTOID)
		call->path = folder_arg(PG_GETARG_TEXT_PP(0));
	else if (types[0] == BYTEAOID)
		call->archive = PG_GETARG_BYTEA_PP(0);
	else if (types[0] == JSONBOID)
		call->json = PG_GETARG_JSONB_P(0);
	else
		elog(ERROR, "%s declared with a folder argument of type %u", fname, types[0]);
}

/*
 * A call of the function named fname whose first argument is the folder:
 * checks who may call it (mig_pg_source_arg) and that it is in function mode, and
 * reads the folder.
 */
CoreCall *
mig_pg_folder_call(FunctionCallInfo fcinfo, const char *fname,
			int (*op) (const mig_host *, CoreCall *, mig_err *))
{
	CoreCall   *call = mig_pg_new_call(CurrentMemoryContext, op);

	call->logged_as = fname;	/* apply, adopt, baseline, repair: all write */
	mig_pg_source_arg(fcinfo, call, fname);
	mig_pg_check_function_mode(fname);
	return call;
}

/* The options text of the call's second argument, when it has one, in cxt
 * (in UTF-8). */
const char *
mig_pg_options_arg(FunctionCallInfo fcinfo, MemoryContext cxt)
{
	if (PG_NARGS() < 2 || PG_ARGISNULL(1))
		return NULL;
	return MemoryContextStrdup(cxt, mig_pg_utf8(text_to_cstring(PG_GETARG_TEXT_PP(1))));
}

/*
 * The options text of argument idx (NULL when the function has none there
 * or it is NULL) in cxt, in UTF-8, to be read for schema= as entry point
 * which reads its options (MIG_OPTIONS_*) before the call: the tenant.
 */
void
mig_pg_tenant_arg(FunctionCallInfo fcinfo, CoreCall *call, int idx, int which, bool writes,
		   MemoryContext cxt)
{
	if (PG_NARGS() <= idx || PG_ARGISNULL(idx))
		return;
	call->tenant_options = MemoryContextStrdup(cxt, mig_pg_utf8(text_to_cstring(PG_GETARG_TEXT_PP(idx))));
	call->tenant_kind = which;
	call->tenant_writes = writes;
	if (which != MIG_OPTIONS_NONE)
		call->options = call->tenant_options;
}

/* A text argument in UTF-8, in the current memory context. */
char *
mig_pg_utf8_arg(text *arg)
{
	return mig_pg_utf8(text_to_cstring(arg));
}

/* UTF-8 s as a text Datum in the server encoding (names the core checked
 * with mig_pg_name_fits, or ASCII). */
Datum
mig_pg_cstring_datum(const char *s)
{
	return mig_pg_text_datum(s, strlen(s));
}
