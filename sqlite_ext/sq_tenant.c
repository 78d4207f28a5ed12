/*
 * sq_tenant.c -- tenants (issue 22): a database of its own for each
 * customer, migrated by the same folder.
 *
 *   ATTACH 'tenants/acme.db' AS acme;
 *   SELECT migrate_apply('db/migrations', 'schema=acme');
 *   SELECT * FROM migrate_status('db/migrations', 'schema=acme');
 *   SELECT * FROM migrate_apply_each('db/migrations', json_array('a.db', 'b.db'));
 *
 * A tenant is a database file.  With schema=S, the database attached as S
 * is migrated as if it were main: unqualified names resolve there, and its
 * history, progress, call log and lock file are its own.  SQLite resolves
 * an unqualified name to temp, then main, then the attached databases, and
 * CREATE without a qualifier goes to main, so no setting of the caller's
 * connection can make S behave as main.  Instead the function opens a
 * second connection on exactly the file SQLite attached as S, where S *is*
 * main, runs the core there, and closes it.  The fan-out functions
 * (sq_each.c) open each tenant file the same way.
 *
 * The second connection is a sandbox as much as a copy: it is opened
 * read-write without create (or read-only), never interpreting the name
 * as a URI, with the same VFS; it carries the caller's busy timeout and
 * the settings that change what a migration's statements do (foreign
 * keys, triggers, defensive mode, trusted schema, double-quoted strings,
 * legacy ALTER TABLE); it has none of the application's functions,
 * collations or extensions, so no view, trigger or generated column of a
 * tenant file can reach them, and its statements can change nothing but
 * the tenant.  A tenant whose own tables (migrate_history,
 * migrate_progress, migrate_calls, migrate_repairs) are views or carry
 * triggers is refused: the extension's own statements on them must do
 * what they say.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

/* Fills err for a tenant that cannot be opened (path: its file). */
static int
tenant_errno(mig_err *err, int e, const char *path)
{
	if (e == ENOENT)
	{
		mig_err_set(err, "58P01", "tenant database \"%s\" does not exist", path);
		mig_err_detail(err, "A tenant's database file is never created here.");
		mig_err_hint(err, "Create it first (an empty file or sqlite3 \"%s\" \"VACUUM\"), or leave it out of the list.", path);
	}
	else
		mig_err_set(err, e == EACCES || e == EPERM || e == ELOOP ? MIG_SQLSTATE_UNSAFE_FILE : "58030",
					"could not open tenant database \"%s\": %s", path,
					e == ELOOP ? "it is a symbolic link" : strerror(e));
	err->sys_errno = e;
	return MIG_ERROR;
}

/* Refuses file path (what it is) as a tenant. */
static int
not_a_file(mig_err *err, const char *path, const char *what)
{
	mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE, "tenant database \"%s\" is %s", path, what);
	mig_err_detail(err, "A tenant is a regular database file, named by its own path.");
	return MIG_ERROR;
}

/*
 * Refuses the file of identity st when a database of the caller's
 * connection is that file and has a transaction open on it: the tenant's
 * connection would wait for that transaction, which waits for the call.
 */
static int
caller_holds(sqlite3 *caller, const struct stat *st, const char *path, mig_err *err)
{
	const char *name;

	for (int i = 0; (name = sqlite3_db_name(caller, i)) != NULL; i++)
	{
		const char *file = sqlite3_db_filename(caller, name);
		struct stat other;

		if (file == NULL || file[0] == '\0' || stat(file, &other) != 0 ||
			other.st_dev != st->st_dev || other.st_ino != st->st_ino ||
			sqlite3_txn_state(caller, name) == SQLITE_TXN_NONE)
			continue;
		mig_err_set(err, "25001", "tenant \"%s\" is database \"%s\" of this connection, which has a transaction open on it",
					path, name);
		mig_err_detail(err, "The tenant is migrated on a connection of its own, which would wait for that transaction (the caller's, or the statement's own read of it); nothing was changed.");
		mig_err_hint(err, "Migrate this connection's own databases with migrate_apply (schema= for an attached one), or call it on another connection.");
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* The settings of the caller's connection that change what a migration's
 * statements do, given to the tenant's (sqlite3_db_config). */
static const int copied_configs[] = {
	SQLITE_DBCONFIG_ENABLE_FKEY, SQLITE_DBCONFIG_ENABLE_TRIGGER, SQLITE_DBCONFIG_ENABLE_VIEW,
	SQLITE_DBCONFIG_DEFENSIVE, SQLITE_DBCONFIG_TRUSTED_SCHEMA, SQLITE_DBCONFIG_DQS_DDL,
	SQLITE_DBCONFIG_DQS_DML, SQLITE_DBCONFIG_LEGACY_ALTER_TABLE,
};

/* Tables of the extension's own on a tenant: none may be a view or carry
 * a trigger. */
static const char own_tables_check[] =
"SELECT type, name, tbl_name FROM main.sqlite_schema"
" WHERE (type = 'trigger' OR type = 'view') AND lower(tbl_name) IN"
" ('migrate_history', 'migrate_progress', 'migrate_calls', 'migrate_repairs')"
" LIMIT 1";

/* Makes tenant connection t behave as the caller's: its busy timeout and
 * settings; then checks the extension's own tables of the tenant. */
static int
tenant_setup(sqlite3 *caller, sqlite3 *t, const char *path, mig_err *err)
{
	sqlite3_stmt *st = NULL;
	int			timeout = 0,
				recursive = 0,
				rc;

	for (size_t i = 0; i < sizeof(copied_configs) / sizeof(copied_configs[0]); i++)
	{
		int			on = -1;

		if (sqlite3_db_config(caller, copied_configs[i], -1, &on) == SQLITE_OK && on >= 0)
			sqlite3_db_config(t, copied_configs[i], on, NULL);
	}
	if (sqlite3_prepare_v2(caller, "SELECT * FROM pragma_busy_timeout, pragma_recursive_triggers",
						   -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
	{
		timeout = sqlite3_column_int(st, 0);
		recursive = sqlite3_column_int(st, 1);
	}
	sqlite3_finalize(st);
	st = NULL;
	sqlite3_busy_timeout(t, timeout);
	rc = recursive ? sqlite3_exec(t, "PRAGMA recursive_triggers = 1", NULL, NULL, NULL) : SQLITE_OK;
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(t, own_tables_check, -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
	{
		const char *type = (const char *) sqlite3_column_text(st, 0);
		const char *name = (const char *) sqlite3_column_text(st, 1);
		const char *table = (const char *) sqlite3_column_text(st, 2);
		int			view = type && strcmp(type, "view") == 0;

		mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE, view ? "tenant \"%s\": %s is a view" :
					"tenant \"%s\": %s has a trigger", path, view ? name : table);
		if (!view)
			mig_err_detail(err, "Trigger \"%s\" would run with every write of the extension to its own table; nothing was changed.", name ? name : "");
		else
			mig_err_detail(err, "The extension's own table must be a table; nothing was changed.");
		mig_err_hint(err, "Drop it from the tenant's database after checking who put it there.");
		sqlite3_finalize(st);
		return MIG_ERROR;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE && rc != SQLITE_OK)
	{
		if (sqlite3_errcode(t) == SQLITE_NOMEM)
		{
			mig_err_nomem(err);
			return MIG_NOMEM;
		}
		mig_err_set(err, sqlite3_errcode(t) == SQLITE_BUSY ? MIG_SQLSTATE_LOCK : "58030",
					"could not read tenant database \"%s\": %s", path, sqlite3_errmsg(t));
		return MIG_ERROR;
	}
	return MIG_OK;
}

/*
 * Opens file (the name SQLite uses, as given or as sqlite3_db_filename
 * gave it) with vfs (NULL: the default) into *out: read-write without
 * create, or read-only; never as a URI (a name starting with "file:"
 * gets "./" before it, so that no URI setting of the process can read it
 * as one).  st is the file's identity as looked at before: the file
 * opened must be that file, still at its path.
 */
static int
open_file(sqlite3 *caller, const char *file, const char *label, const char *vfs,
		  const struct stat *st, int readonly, sqlite3 **out, mig_err *err)
{
	char	   *name = sqlite3_mprintf("%s%s", strncmp(file, "file:", 5) == 0 ? "./" : "", file);
	sqlite3    *t = NULL;
	struct stat now;
	int			moved = 0,
				rc;

	*out = NULL;
	if (name == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	rc = sqlite3_open_v2(name, &t, readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, vfs);
	sqlite3_free(name);
	if (rc != SQLITE_OK)
	{
		if (t == NULL || rc == SQLITE_NOMEM)
			mig_err_nomem(err);
		else
			mig_err_set(err, "58030", "could not open tenant database \"%s\": %s", label,
						sqlite3_errmsg(t));
		sqlite3_close(t);
		return err->code;
	}
	/* the file opened is the one looked at: not replaced since, at its
	 * path (a directory's writer could swap them in between) */
	if (stat(file, &now) != 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino ||
		(sqlite3_file_control(t, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK && moved))
	{
		sqlite3_close(t);
		mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE, "tenant database \"%s\" was replaced while it was opened",
					label);
		mig_err_detail(err, "Nothing was changed.");
		return MIG_ERROR;
	}
	if ((rc = tenant_setup(caller, t, label, err)) != MIG_OK)
	{
		sqlite3_close(t);
		return rc;
	}
	*out = t;
	return MIG_OK;
}

int
sq_tenant_path(sqlite3 *caller, const char *path, int readonly, sqlite3 **out, mig_err *err)
{
	struct stat st;

	*out = NULL;
	mig_err_clear(err);
	if (path[0] == '\0')
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "a tenant's database path is empty");
		return MIG_ERROR;
	}
	if (lstat(path, &st) != 0)
		return tenant_errno(err, errno, path);
	if (S_ISLNK(st.st_mode))
		return not_a_file(err, path, "a symbolic link");
	if (S_ISDIR(st.st_mode))
		return not_a_file(err, path, "a directory");
	if (!S_ISREG(st.st_mode))
		return not_a_file(err, path, "not a regular file");
	if (caller_holds(caller, &st, path, err) != MIG_OK)
		return MIG_ERROR;
	return open_file(caller, path, path, NULL, &st, readonly, out, err);
}

int
sq_tenant_schema(sqlite3 *caller, const char *schema, int readonly, sqlite3 **out, mig_err *err)
{
	const char *file;
	sqlite3_vfs *vfs = NULL;
	struct stat st;
	int			txn;

	*out = NULL;
	mig_err_clear(err);
	if (schema[0] == '\0' || sqlite3_stricmp(schema, "main") == 0)
		return MIG_OK;			/* the caller's own database */
	if (sqlite3_stricmp(schema, "temp") == 0)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "database \"temp\" cannot be a tenant");
		mig_err_detail(err, "The temporary database belongs to this connection alone and has no file another connection could open.");
		mig_err_hint(err, "ATTACH the tenant's database file and name it with schema=.");
		return MIG_ERROR;
	}
	if ((file = sqlite3_db_filename(caller, schema)) == NULL)
	{
		mig_err_set(err, "3F000", "database \"%s\" is not attached", schema);
		mig_err_hint(err, "ATTACH the tenant's database file AS \"%s\" first.", schema);
		return MIG_ERROR;
	}
	if (sqlite3_file_control(caller, schema, SQLITE_FCNTL_VFS_POINTER, &vfs) != SQLITE_OK)
		vfs = NULL;
	if (file[0] == '\0' || (vfs && vfs->zName && strcmp(vfs->zName, "memdb") == 0))
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "database \"%s\" cannot be a tenant: it is in memory",
					schema);
		mig_err_detail(err, "A tenant is migrated on a connection of its own, opened on the tenant's file; \"%s\" has none.",
					   schema);
		mig_err_hint(err, "ATTACH a database file.");
		return MIG_ERROR;
	}
	/* a transaction of the caller on it would keep the tenant's
	 * connection waiting for the call, which waits for it */
	txn = sqlite3_txn_state(caller, schema);
	if (txn > SQLITE_TXN_NONE)
	{
		mig_err_set(err, "25001", "this connection has a %s transaction open on database \"%s\"",
					txn == SQLITE_TXN_WRITE ? "write" : "read", schema);
		mig_err_detail(err, "The tenant is migrated on a connection of its own, which would wait for that transaction; nothing was changed.");
		mig_err_hint(err, "Commit or roll back first, or call it in autocommit mode.");
		return MIG_ERROR;
	}
	if (stat(file, &st) != 0)
		return tenant_errno(err, errno, file);
	if (caller_holds(caller, &st, file, err) != MIG_OK)
		return MIG_ERROR;
	return open_file(caller, file, file, vfs ? vfs->zName : NULL, &st, readonly, out, err);
}

void
sq_tenant_close(sqlite3 *t)
{
	sqlite3_close_v2(t);
}

int
sq_tenant_enter(sqlite3 *caller, const char *fn, const char *options, int which, int readonly,
				sqlite3 **tdb, char **rest, mig_err *err)
{
	mig_tenant_options o;
	sq_ctx		c;
	mig_host	h;
	int			rc;

	*tdb = NULL;
	sq_host_init(&h, &c, caller, fn);
	if ((rc = mig_options_split(&h, options, which, &o, rest, err)) != MIG_OK)
		return rc;
	if (o.schema[0] && (rc = sq_tenant_schema(caller, o.schema, readonly, tdb, err)) != MIG_OK)
	{
		sqlite3_free(*rest);
		*rest = NULL;
	}
	return rc;
}
