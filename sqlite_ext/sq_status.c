/*
 * sq_status.c -- migrate_status(path), an eponymous table-valued function:
 *
 *   SELECT version, name, state FROM migrate_status('db/migrations');
 *
 * xFilter runs the core's mig_status once and keeps its rows (metadata
 * only, never file contents) until the cursor closes.
 */
#include <string.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

enum {
	COL_VERSION, COL_NAME, COL_STATE, COL_FILE, COL_CHECKSUM,
	COL_APPLIED_CHECKSUM, COL_APPLIED_AT, COL_EXECUTION_MS,
	COL_INSTALLED_RANK, COL_HAS_DOWN, COL_PATH
};

typedef struct row {
	char	   *text[7];		/* COL_VERSION .. COL_APPLIED_AT */
	double		exec_ms;
	int64_t		rank;
	int			has_down;
} row;

typedef struct vtab {
	sqlite3_vtab base;
	sqlite3    *db;
} vtab;

typedef struct cursor {
	sqlite3_vtab_cursor base;
	row		   *rows;
	size_t		n;
	size_t		cap;
	size_t		at;
	int			oom;
} cursor;

static int
st_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
		   sqlite3_vtab **out, char **err)
{
	vtab	   *vt;
	int			rc;

	(void) aux;
	(void) argc;
	(void) argv;
	(void) err;
	rc = sqlite3_declare_vtab(db,
							  "CREATE TABLE x(version TEXT, name TEXT, state TEXT, file TEXT,"
							  " checksum TEXT, applied_checksum TEXT, applied_at TEXT,"
							  " execution_ms REAL, installed_rank INTEGER, has_down INTEGER,"
							  " path HIDDEN)");
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
	if ((vt = sqlite3_malloc64(sizeof(*vt))) == NULL)
		return SQLITE_NOMEM;
	memset(vt, 0, sizeof(*vt));
	vt->db = db;
	*out = &vt->base;
	return SQLITE_OK;
}

static int
st_disconnect(sqlite3_vtab *vt)
{
	sqlite3_free(vt);
	return SQLITE_OK;
}

static int
st_best_index(sqlite3_vtab *vt, sqlite3_index_info *info)
{
	(void) vt;
	for (int i = 0; i < info->nConstraint; i++)
	{
		const struct sqlite3_index_constraint *k = &info->aConstraint[i];

		if (k->iColumn != COL_PATH || k->op != SQLITE_INDEX_CONSTRAINT_EQ)
			continue;
		if (!k->usable)
			return SQLITE_CONSTRAINT;
		info->aConstraintUsage[i].argvIndex = 1;
		info->aConstraintUsage[i].omit = 1;
		info->idxNum = 1;
		info->estimatedCost = 10;
		return SQLITE_OK;
	}
	info->idxNum = 0;
	info->estimatedCost = 1e12;
	return SQLITE_OK;
}

static int
st_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out)
{
	cursor	   *c = sqlite3_malloc64(sizeof(*c));

	(void) vt;
	if (c == NULL)
		return SQLITE_NOMEM;
	memset(c, 0, sizeof(*c));
	*out = &c->base;
	return SQLITE_OK;
}

static void
clear_rows(cursor *c)
{
	for (size_t i = 0; i < c->n; i++)
		for (int k = 0; k < 7; k++)
			sqlite3_free(c->rows[i].text[k]);
	sqlite3_free(c->rows);
	c->rows = NULL;
	c->n = c->cap = c->at = 0;
}

static int
st_close(sqlite3_vtab_cursor *cur)
{
	clear_rows((cursor *) cur);
	sqlite3_free(cur);
	return SQLITE_OK;
}

static char *
dup(cursor *c, const char *s)
{
	char	   *p;

	if (s == NULL)
		return NULL;
	if ((p = sqlite3_mprintf("%s", s)) == NULL)
		c->oom = 1;
	return p;
}

static int
keep_row(void *arg, const mig_status_row *r)
{
	cursor	   *c = arg;
	row		   *w;

	if (c->n == c->cap)
	{
		size_t		cap = c->cap ? c->cap * 2 : 32;
		row		   *rows = sqlite3_realloc64(c->rows, cap * sizeof(row));

		if (rows == NULL)
			return MIG_NOMEM;
		c->rows = rows;
		c->cap = cap;
	}
	w = &c->rows[c->n++];
	w->text[COL_VERSION] = dup(c, r->version);
	w->text[COL_NAME] = dup(c, r->name);
	w->text[COL_STATE] = dup(c, r->state);
	w->text[COL_FILE] = dup(c, r->file);
	w->text[COL_CHECKSUM] = dup(c, r->checksum);
	w->text[COL_APPLIED_CHECKSUM] = dup(c, r->applied_checksum);
	w->text[COL_APPLIED_AT] = dup(c, r->applied_at);
	w->exec_ms = r->exec_ms;
	w->rank = r->rank;
	w->has_down = r->has_down;
	return c->oom ? MIG_NOMEM : MIG_OK;
}

static int
st_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxstr, int argc,
		  sqlite3_value **argv)
{
	cursor	   *c = (cursor *) cur;
	sqlite3_vtab *vt = cur->pVtab;
	const char *path = argc > 0 ? (const char *) sqlite3_value_text(argv[0]) : NULL;
	sq_ctx		sc;
	mig_host	h;
	mig_err		err;

	(void) idxstr;
	clear_rows(c);
	if (idx == 0 || path == NULL)
	{
		sqlite3_free(vt->zErrMsg);
		vt->zErrMsg = sqlite3_mprintf("migrate_status: give the migration folder, as in SELECT * FROM migrate_status('db/migrations')");
		return SQLITE_ERROR;
	}
	sc.db = ((vtab *) vt)->db;
	sc.fn = "migrate_status";
	sq_host_init(&h, &sc);
	if (mig_status(&h, path, keep_row, c, &err) != MIG_OK)
	{
		clear_rows(c);
		if (err.code == MIG_NOMEM)
			return SQLITE_NOMEM;
		sqlite3_free(vt->zErrMsg);
		vt->zErrMsg = sqlite3_mprintf("migrate_status: %s%s%s%s%s", err.message,
									  err.detail[0] ? "\nDETAIL:  " : "", err.detail,
									  err.hint[0] ? "\nHINT:  " : "", err.hint);
		return vt->zErrMsg ? SQLITE_ERROR : SQLITE_NOMEM;
	}
	return SQLITE_OK;
}

static int
st_next(sqlite3_vtab_cursor *cur)
{
	((cursor *) cur)->at++;
	return SQLITE_OK;
}

static int
st_eof(sqlite3_vtab_cursor *cur)
{
	cursor	   *c = (cursor *) cur;

	return c->at >= c->n;
}

static int
st_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
	cursor	   *c = (cursor *) cur;
	row		   *r = &c->rows[c->at];

	if (col < COL_EXECUTION_MS)
	{
		if (r->text[col])
			sqlite3_result_text(ctx, r->text[col], -1, SQLITE_TRANSIENT);
	}
	else if (col == COL_EXECUTION_MS)
	{
		if (r->exec_ms >= 0)
			sqlite3_result_double(ctx, r->exec_ms);
	}
	else if (col == COL_INSTALLED_RANK)
	{
		if (r->rank > 0)
			sqlite3_result_int64(ctx, r->rank);
	}
	else if (col == COL_HAS_DOWN)
		sqlite3_result_int(ctx, r->has_down);
	return SQLITE_OK;
}

static int
st_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid)
{
	*rowid = (sqlite3_int64) ((cursor *) cur)->at + 1;
	return SQLITE_OK;
}

static const sqlite3_module status_module = {
	.iVersion = 0,
	.xConnect = st_connect,
	.xBestIndex = st_best_index,
	.xDisconnect = st_disconnect,
	.xOpen = st_open,
	.xClose = st_close,
	.xFilter = st_filter,
	.xNext = st_next,
	.xEof = st_eof,
	.xColumn = st_column,
	.xRowid = st_rowid,
};

int
sq_status_register(sqlite3 *db)
{
	return sqlite3_create_module(db, "migrate_status", &status_module, NULL);
}
