/*
 * sq_history.c -- the history of the SQLite host: main.migrate_history, its
 * DDL and the columns an earlier build lacks, its reads and writes (load,
 * add, remove, the stored down script, repair), the audit trail of repairs
 * in main.migrate_repairs, and the reading of another tool's history for
 * migrate_adopt.
 */
#define _DEFAULT_SOURCE
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

const char sq_history_ddl[] =
"CREATE TABLE IF NOT EXISTS main.migrate_history(\n"
"  installed_rank INTEGER PRIMARY KEY,\n"
"  version        TEXT NOT NULL UNIQUE,\n"
"  name           TEXT NOT NULL,\n"
"  up_file        TEXT NOT NULL,\n"
"  down_file      TEXT,\n"
"  checksum       TEXT NOT NULL,\n"
"  checksum_norm  TEXT,\n"
"  applied_at     TEXT NOT NULL,\n"
"  execution_ms   REAL NOT NULL,\n"
"  file_id        TEXT,\n"		/* before the scripts: a no-op reads it and */
"  applied_by     TEXT,\n"		/* not them, which may overflow pages */
"  down_mode      TEXT,\n"
"  down_line      INTEGER,\n"
"  ahead          INTEGER,\n"		/* recorded ahead by an off-hours script */
"  up_sql         TEXT NOT NULL,\n"
"  down_sql       TEXT\n"
")";

/*
 * Columns a history made by an earlier build lacks, added when the lock is
 * taken: the normalised checksum; who applied the migration (the
 * operating-system user: SQLite has no roles, whoever can write the file
 * decides what it holds); how its down script runs (transaction, outside
 * a transaction, or noop when it holds no statement) and the line of the
 * down file it starts at.
 */
static const char *const added_columns[][2] = {
	{"checksum_norm", "TEXT"},
	{"applied_by", "TEXT"},
	{"down_mode", "TEXT"},
	{"down_line", "INTEGER"},
	{"ahead", "INTEGER"},		/* mig_record.ahead (sq_impact.c) */
};

/* Every repair of a recorded checksum (migrate_repair): an audit trail. */
static const char repairs_ddl[] =
"CREATE TABLE IF NOT EXISTS main.migrate_repairs(\n"
"  version        TEXT NOT NULL,\n"
"  old_checksum   TEXT NOT NULL,\n"	/* '' when there is none */
"  new_checksum   TEXT NOT NULL,\n"
"  repaired_by    TEXT,\n"
"  repaired_at    TEXT NOT NULL,\n"
"  action         TEXT\n"		/* repair, discard_partial, record; NULL in
								 * rows of earlier builds: repair */
")";

/* 1 when table main.t has column col. */
int
sq_has_column(sq_ctx *c, const char *t, const char *col)
{
	return sqlite3_table_column_metadata(c->db, "main", t, col, NULL, NULL, NULL,
										 NULL, NULL) == SQLITE_OK;
}

/* Adds the columns that a history made by an earlier build lacks. */
int
sq_upgrade_history(sq_ctx *c)
{
	int			rc = SQLITE_OK;

	for (size_t i = 0; rc == SQLITE_OK && i < sizeof(added_columns) / sizeof(added_columns[0]); i++)
	{
		char	   *sql;

		if (sq_has_column(c, "migrate_history", added_columns[i][0]))
			continue;
		sql = sqlite3_mprintf("ALTER TABLE main.migrate_history ADD COLUMN %s %s",
							  added_columns[i][0], added_columns[i][1]);
		rc = sql ? sqlite3_exec(c->db, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
		sqlite3_free(sql);
	}
	return rc;
}

/* ---- history ---- */

int
sq_history_exists(sq_ctx *c)
{
	return sqlite3_table_column_metadata(c->db, "main", "migrate_history", NULL,
										 NULL, NULL, NULL, NULL, NULL) == SQLITE_OK;
}

int
sq_history_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK,
				src;

	if (!sq_history_exists(c))
		return MIG_OK;
	/* a history of an earlier build, read without the lock (status),
	 * lacks down_mode until the next call that takes the lock */
	if (sqlite3_prepare_v2(c->db, !sq_has_column(c, "migrate_history", "down_mode") ?
						   "SELECT version, name, up_file, checksum, applied_at, execution_ms,"
						   " installed_rank, down_sql IS NOT NULL, file_id, checksum_norm,"
						   " NULL, 0 FROM main.migrate_history" :
						   !sq_has_column(c, "migrate_history", "ahead") ?
						   "SELECT version, name, up_file, checksum, applied_at, execution_ms,"
						   " installed_rank, down_sql IS NOT NULL, file_id, checksum_norm,"
						   " down_mode, 0 FROM main.migrate_history" :
						   "SELECT version, name, up_file, checksum, applied_at, execution_ms,"
						   " installed_rank, down_sql IS NOT NULL, file_id, checksum_norm,"
						   " down_mode, ahead FROM main.migrate_history",
						   -1, &st, NULL) != SQLITE_OK)
		return sq_db_error(c, err, "could not read migrate_history");
	while (rc == MIG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
	{
		mig_hist_row r;

		memset(&r, 0, sizeof(r));
		r.version = (const char *) sqlite3_column_text(st, 0);
		r.name = (const char *) sqlite3_column_text(st, 1);
		r.file = (const char *) sqlite3_column_text(st, 2);
		r.checksum = (const char *) sqlite3_column_text(st, 3);
		r.applied_at = (const char *) sqlite3_column_text(st, 4);
		r.exec_ms = sqlite3_column_double(st, 5);
		r.rank = sqlite3_column_int64(st, 6);
		r.has_down = sqlite3_column_int(st, 7);
		r.file_id = (const char *) sqlite3_column_text(st, 8);
		r.checksum_norm = (const char *) sqlite3_column_text(st, 9);
		{
			const char *mode = (const char *) sqlite3_column_text(st, 10);

			r.down_outside = mode && strcmp(mode, "outside") == 0;
			r.down_noop = mode && strcmp(mode, "noop") == 0;
		}
		r.ahead = sqlite3_column_int(st, 11) != 0;
		if (r.version == NULL)
		{
			rc = sq_db_error(c, err, "could not read migrate_history");
			break;
		}
		rc = cb(arg, &r);
	}
	if (rc == MIG_OK && src != SQLITE_DONE)
		rc = sq_db_error(c, err, "could not read migrate_history");
	sqlite3_finalize(st);
	return rc;
}

/* How a down script runs, as the history's down_mode says it. */
const char *
sq_down_mode(const char *down_sql, int noop, int outside)
{
	return down_sql == NULL ? NULL : noop ? "noop" : outside ? "outside" : "transaction";
}

/* The operating-system user running this process (the audit's and the
 * history's applied_by), looked up once per call; NULL if unknown. */
const char *
sq_caller(sq_ctx *c)
{
	if (!c->who_set)
	{
		char		buf[1024];
		struct passwd pw,
				   *found = NULL;

		c->who[0] = '\0';
		if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &found) == 0 && found)
			snprintf(c->who, sizeof(c->who), "%s", found->pw_name);
		else
			snprintf(c->who, sizeof(c->who), "uid %ld", (long) geteuid());
		c->who_set = 1;
	}
	return c->who;
}

int
sq_history_add(void *ctx, const mig_record *r, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st;

	if (c->add == NULL &&
		sqlite3_prepare_v3(c->db,
						   "INSERT INTO main.migrate_history(version, name, up_file, down_file,"
						   " checksum, applied_at, execution_ms, up_sql, down_sql, file_id, checksum_norm,"
						   " applied_by, down_mode, down_line)"
						   " VALUES(?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),"
						   " ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)", -1, SQLITE_PREPARE_PERSISTENT,
						   &c->add, NULL) != SQLITE_OK)
		return sq_db_error(c, err, "could not record the migration");
	st = c->add;
	if (sqlite3_bind_text(st, 1, r->version, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 3, r->up_file, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 4, r->down_file, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 5, r->checksum, -1, SQLITE_STATIC) ||
		sqlite3_bind_double(st, 6, r->exec_ms) ||
		sqlite3_bind_text64(st, 7, r->up_sql, r->up_len, SQLITE_STATIC, SQLITE_UTF8) ||
		(r->down_sql ? sqlite3_bind_text64(st, 8, r->down_sql, r->down_len, SQLITE_STATIC, SQLITE_UTF8)
		 : sqlite3_bind_null(st, 8)) ||
		sqlite3_bind_text(st, 9, r->file_id, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 10, r->checksum_norm, -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 11, sq_caller(c), -1, SQLITE_STATIC) ||
		sqlite3_bind_text(st, 12, sq_down_mode(r->down_sql, r->down_noop, r->down_outside), -1,
						  SQLITE_STATIC) ||
		(r->down_sql ? sqlite3_bind_int(st, 13, r->down_line) : sqlite3_bind_null(st, 13)) ||
		sqlite3_step(st) != SQLITE_DONE)
	{
		int			rc = sq_db_error(c, err, "could not record the migration");

		sqlite3_reset(st);
		return rc;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	sq_call_note(c, r->version);
	if (c->outside_version[0] && strcmp(c->outside_version, r->version) == 0)
	{
		/* recorded: the progress of its statements is done with */
		char	   *sql = sqlite3_mprintf("DELETE FROM main.migrate_progress WHERE version = %Q",
										  r->version);
		int			rc = sql ? sq_run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);

		sqlite3_free(sql);
		sq_release_outside(c);
		return rc;
	}
	return MIG_OK;
}

int
sq_history_remove(void *ctx, const char *version, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			ok;

	ok = sqlite3_prepare_v2(c->db, "DELETE FROM main.migrate_history WHERE version = ?1",
							-1, &st, NULL) == SQLITE_OK &&
		sqlite3_bind_text(st, 1, version, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	if (!ok)
		return sq_db_error(c, err, "could not remove the migration from the history");
	sq_call_note(c, version);
	/* rolled back: the progress of a down script that ran outside a
	 * transaction is done with, and so is the lock file it held (given
	 * back with the write lock held, as in history_add) */
	if (sq_progress_exists(c))
	{
		char	   *sql = sqlite3_mprintf("DELETE FROM main.migrate_progress WHERE version = %Q",
										  version);
		int			rc = sql ? sq_run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);

		sqlite3_free(sql);
		if (rc != MIG_OK)
			return rc;
	}
	if (c->outside_version[0] && strcmp(c->outside_version, version) == 0)
		sq_release_outside(c);
	return MIG_OK;
}

/* A copy of column col of st from sqlite3_malloc64, or NULL (*oom set
 * when out of memory). */
static char *
column_copy(sqlite3_stmt *st, int col, size_t *len, int *oom)
{
	const char *text = (const char *) sqlite3_column_text(st, col);
	size_t		n = (size_t) sqlite3_column_bytes(st, col);
	char	   *copy;

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return NULL;
	if (text == NULL || (copy = sqlite3_malloc64(n + 1)) == NULL)
	{
		*oom = 1;
		return NULL;
	}
	memcpy(copy, text, n + 1);
	if (len)
		*len = n;
	return copy;
}

int
sq_history_down(void *ctx, const char *version, mig_stored_down *d, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK,
				oom = 0;

	memset(d, 0, sizeof(*d));
	if (sqlite3_prepare_v2(c->db, "SELECT down_sql, down_file, down_line, down_mode"
						   " FROM main.migrate_history WHERE version = ?1",
						   -1, &st, NULL) != SQLITE_OK ||
		sqlite3_bind_text(st, 1, version, -1, SQLITE_STATIC) != SQLITE_OK)
		rc = sq_db_error(c, err, "could not read the down script");
	else if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
	{
		const char *mode = (const char *) sqlite3_column_text(st, 3);

		d->sql = column_copy(st, 0, &d->len, &oom);
		d->file = column_copy(st, 1, NULL, &oom);
		d->line = sqlite3_column_int(st, 2);
		d->outside = mode && strcmp(mode, "outside") == 0;
		if (oom)
		{
			sqlite3_free(d->sql);
			sqlite3_free(d->file);
			d->sql = d->file = NULL;
			mig_err_nomem(err);
			rc = MIG_NOMEM;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

/* Makes sure main.migrate_repairs exists with its action column. */
static int
repairs_ready(sq_ctx *c)
{
	int			rc = sqlite3_exec(c->db, repairs_ddl, NULL, NULL, NULL);

	if (rc == SQLITE_OK && !sq_has_column(c, "migrate_repairs", "action"))
		rc = sqlite3_exec(c->db, "ALTER TABLE main.migrate_repairs ADD COLUMN action TEXT",
						  NULL, NULL, NULL);
	return rc;
}

int
sq_audit(void *ctx, const char *version, const char *action, const char *old_checksum,
		 const char *new_checksum, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			ok;

	ok = repairs_ready(c) == SQLITE_OK &&
		sqlite3_prepare_v2(c->db,
						   "INSERT INTO main.migrate_repairs(version, old_checksum, new_checksum,"
						   " repaired_by, repaired_at, action) VALUES(?1, coalesce(?2, ''),"
						   " coalesce(?3, ''), ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?5)",
						   -1, &st, NULL) == SQLITE_OK &&
		sqlite3_bind_text(st, 1, version, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(st, 2, old_checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(st, 3, new_checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(st, 4, sq_caller(c), -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(st, 5, action, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_step(st) == SQLITE_DONE;
	sqlite3_finalize(st);
	return ok ? MIG_OK : sq_db_error(c, err, "could not write the audit row");
}

int
sq_history_repair(void *ctx, const mig_repair_row *r, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *up = NULL,
			   *audit = NULL;
	const char *who = sq_caller(c);
	int			ok;

	ok = repairs_ready(c) == SQLITE_OK &&
		sqlite3_prepare_v2(c->db,
						   "UPDATE main.migrate_history SET name = ?2, up_file = ?3,"
						   " down_file = coalesce(?4, down_file), checksum = ?5, checksum_norm = ?6,"
						   " down_sql = CASE WHEN ?7 IS NULL THEN down_sql ELSE ?7 END, file_id = ?8,"
						   " down_mode = coalesce(?9, down_mode), down_line = CASE WHEN ?7 IS NULL"
						   " THEN down_line ELSE ?10 END"
						   " WHERE version = ?1", -1, &up, NULL) == SQLITE_OK &&
		sqlite3_prepare_v2(c->db,
						   "INSERT INTO main.migrate_repairs(version, old_checksum, new_checksum,"
						   " repaired_by, repaired_at, action) VALUES(?1, ?2, ?3, ?4,"
						   " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'repair')", -1, &audit, NULL) == SQLITE_OK &&
		sqlite3_bind_text(up, 1, r->version, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 2, r->name, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 3, r->up_file, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 4, r->down_file, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 5, r->checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 6, r->checksum_norm, -1, SQLITE_STATIC) == SQLITE_OK &&
		(r->down_sql ? sqlite3_bind_text64(up, 7, r->down_sql, r->down_len, SQLITE_STATIC,
										   SQLITE_UTF8) : sqlite3_bind_null(up, 7)) == SQLITE_OK &&
		sqlite3_bind_text(up, 8, r->file_id, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(up, 9, sq_down_mode(r->down_sql, r->down_noop, r->down_outside), -1,
						  SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_int(up, 10, r->down_line) == SQLITE_OK &&
		sqlite3_step(up) == SQLITE_DONE &&
		sqlite3_bind_text(audit, 1, r->version, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(audit, 2, r->old_checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(audit, 3, r->checksum, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(audit, 4, who, -1, SQLITE_TRANSIENT) == SQLITE_OK &&
		sqlite3_step(audit) == SQLITE_DONE;
	sqlite3_finalize(up);
	sqlite3_finalize(audit);
	if (ok)
		sq_call_note(c, r->version);
	return ok ? MIG_OK : sq_db_error(c, err, "could not repair the history");
}

/* ---- another tool's history ---- */

/*
 * Looks up table in schema (an attached database; NULL: main) -- never in
 * temp or another attached database that could shadow it -- and refuses
 * one whose reading could run code: a view, a virtual table (its module's
 * code), generated columns (expressions, which may call functions the
 * application registered).  A plain table's rows are read by SQLite
 * alone.
 */
int
sq_table_info(void *ctx, const char *schema, const char *table, const char *column,
			  int *exists, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	const char *db = schema ? schema : "main";
	char	   *sql = sqlite3_mprintf("SELECT type, sql FROM \"%w\".sqlite_schema"
									  " WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE", db);
	int			rc = MIG_OK,
				src;

	*exists = 0;
	if (sql == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	src = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	sqlite3_free(sql);
	if (src != SQLITE_OK)
	{
		mig_err_set(err, "3F000", "database \"%s\" is not attached: %s", db, sqlite3_errmsg(c->db));
		sqlite3_finalize(st);
		return MIG_ERROR;
	}
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	if ((src = sqlite3_step(st)) == SQLITE_ROW)
	{
		const char *type = (const char *) sqlite3_column_text(st, 0);
		const char *ddl = (const char *) sqlite3_column_text(st, 1);

		if (type && strcmp(type, "table") == 0 && ddl &&
			sqlite3_strnicmp(ddl, "CREATE VIRTUAL", 14) != 0)
			*exists = 1;
		else
		{
			mig_err_set(err, "42809", "\"%s\".\"%s\" is not a plain table", db, table);
			mig_err_detail(err, "Reading a %s could run code that is not SQLite's own; migrate_adopt reads only plain tables.",
						   type && strcmp(type, "view") == 0 ? "view" : "virtual table");
			mig_err_hint(err, "Point migrate_adopt at the database that holds the tool's own table, with the option schema=.");
			rc = MIG_ERROR;
		}
	}
	else if (src != SQLITE_DONE)
		rc = sq_db_error(c, err, "could not look up the other tool's history");
	sqlite3_finalize(st);
	if (rc != MIG_OK || !*exists)
		return rc;
	/* generated columns are expressions evaluated as rows are read */
	if (sqlite3_prepare_v2(c->db, "SELECT count(*) FILTER (WHERE hidden IN (2, 3)),"
						   " count(*) FILTER (WHERE name = ?1 COLLATE NOCASE)"
						   " FROM pragma_table_xinfo(?2, ?3)", -1, &st, NULL) != SQLITE_OK)
		return sq_db_error(c, err, "could not look up the other tool's history");
	sqlite3_bind_text(st, 1, column ? column : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, db, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
	{
		if (sqlite3_column_int(st, 0) > 0)
		{
			mig_err_set(err, "42809", "\"%s\".\"%s\" has generated columns", db, table);
			mig_err_detail(err, "Reading them evaluates expressions, which could run code that is not SQLite's own; migrate_adopt reads only plain tables.");
			rc = MIG_ERROR;
		}
		else if (column && sqlite3_column_int(st, 1) == 0)
			*exists = 0;
	}
	else
		rc = sq_db_error(c, err, "could not look up the other tool's history");
	sqlite3_finalize(st);
	return rc;
}

int
sq_query_text(void *ctx, const char *schema, const char *table, const char *cols,
			  const char *order_by, int ncols,
			  int (*cb) (void *arg, const char *const *cells), void *arg, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	const char *cells[8];
	char	   *sql;
	int			rc = MIG_OK,
				src = SQLITE_DONE;

	sql = sqlite3_mprintf("SELECT %s FROM \"%w\".\"%w\"%s%s", cols, schema ? schema : "main",
						  table, order_by ? " ORDER BY " : "", order_by ? order_by : "");
	if (sql == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	src = ncols > 8 ? SQLITE_ERROR : sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	sqlite3_free(sql);
	if (src != SQLITE_OK)
		return sq_db_error(c, err, "could not read the other tool's history");
	while (rc == MIG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
	{
		for (int i = 0; i < ncols; i++)
			cells[i] = (const char *) sqlite3_column_text(st, i);
		rc = cb(arg, cells);
	}
	if (rc == MIG_OK && src != SQLITE_DONE)
		rc = sq_db_error(c, err, "could not read the other tool's history");
	sqlite3_finalize(st);
	return rc;
}
