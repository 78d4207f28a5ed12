/*
 * sq_tables.c -- the eponymous table-valued functions:
 *
 *   SELECT version, name, state FROM migrate_status('db/migrations');
 *   SELECT * FROM migrate_validate('db/migrations');    -- every problem
 *   SELECT version, sql FROM migrate_plan('db/migrations' [, 'target=42']);
 *   SELECT * FROM migrate_status(readfile('m.tar.gz'));  -- the folder as data
 *   SELECT statement, relation, rewrites FROM migrate_impact('db/migrations');
 *   SELECT * FROM migrate_status('db/migrations', 'schema=acme');  -- a tenant
 *   SELECT * FROM migrate_apply_each('db/migrations', json_array('a.db', 'b.db'));
 *   SELECT * FROM migrate_status_each('db/migrations', json_array('a.db', 'b.db'));
 *
 * One module serves them all: xFilter runs the core's entry point once
 * (for each tenant, sq_each.c) and keeps its rows until the cursor closes.
 * But migrate_apply_each they read and change nothing but the folder and
 * the history, and they are DIRECTONLY like the functions.
 */
#include <string.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

#define MAX_COLS 16

typedef struct cell {
	int			type;			/* SQLITE_NULL, SQLITE_TEXT, SQLITE_FLOAT,
								 * SQLITE_INTEGER */
	char	   *text;
	size_t		len;
	double		real;
	int64_t		integer;
} cell;

typedef struct cursor cursor;

/* One table function: its columns (the last nargs are its hidden
 * arguments, path first) and what fills its rows. */
typedef struct table_def {
	const char *name;
	const char *columns;		/* of CREATE TABLE x(...) */
	int			ncols;			/* visible columns */
	int			nargs;			/* 1: path; 2: path, options (optional);
								 * the fan-out: path, tenants [, options] */
	int			(*fill) (const mig_host *h, const char *path, const char *options,
						 cursor *c, mig_err *err);
	int			which;			/* MIG_OPTIONS_* of the options */
	int			each;			/* 0, or a fan-out: EACH_APPLY, EACH_STATUS */
} table_def;

enum { EACH_APPLY = 1, EACH_STATUS = 2 };

#define MAX_ARGS 3

typedef struct vtab {
	sqlite3_vtab base;
	sqlite3    *db;
	const table_def *def;
} vtab;

struct cursor {
	sqlite3_vtab_cursor base;
	int			ncols;
	cell	   *cells;			/* n rows of ncols */
	size_t		n;
	size_t		cap;
	size_t		at;
	int			oom;
};

/* ---- rows ---- */

/* A new row of NULLs, or NULL when out of memory. */
static cell *
add_row(cursor *c)
{
	cell	   *r;

	if (c->n == c->cap)
	{
		size_t		cap = c->cap ? c->cap * 2 : 32;
		cell	   *cells = sqlite3_realloc64(c->cells, cap * c->ncols * sizeof(cell));

		if (cells == NULL)
			return NULL;
		c->cells = cells;
		c->cap = cap;
	}
	r = &c->cells[c->n++ * c->ncols];
	memset(r, 0, c->ncols * sizeof(cell));
	return r;
}

static void
set_text(cursor *c, cell *k, const char *s, size_t len)
{
	if (s == NULL)
		return;
	if ((k->text = sqlite3_malloc64(len + 1)) == NULL)
	{
		c->oom = 1;
		return;
	}
	memcpy(k->text, s, len);
	k->text[len] = '\0';
	k->len = len;
	k->type = SQLITE_TEXT;
}

static void
set_str(cursor *c, cell *k, const char *s)
{
	set_text(c, k, s, s ? strlen(s) : 0);
}

static void
clear_rows(cursor *c)
{
	for (size_t i = 0; i < c->n * c->ncols; i++)
		sqlite3_free(c->cells[i].text);
	sqlite3_free(c->cells);
	c->cells = NULL;
	c->n = c->cap = c->at = 0;
	c->oom = 0;
}

/* ---- migrate_status ---- */

static int
status_row(void *arg, const mig_status_row *r)
{
	cursor	   *c = arg;
	cell	   *k = add_row(c);

	if (k == NULL)
		return MIG_NOMEM;
	set_str(c, &k[0], r->version);
	set_str(c, &k[1], r->name);
	set_str(c, &k[2], r->state);
	set_str(c, &k[3], r->file);
	set_str(c, &k[4], r->checksum);
	set_str(c, &k[5], r->applied_checksum);
	set_str(c, &k[6], r->applied_at);
	if (r->exec_ms >= 0)
		k[7].type = SQLITE_FLOAT, k[7].real = r->exec_ms;
	if (r->rank > 0)
		k[8].type = SQLITE_INTEGER, k[8].integer = r->rank;
	k[9].type = SQLITE_INTEGER, k[9].integer = r->has_down;
	set_str(c, &k[10], !r->has_down ? "none" : r->down_noop ? "noop" : "script");
	if (r->statements_done >= 0)
		k[11].type = SQLITE_INTEGER, k[11].integer = r->statements_done;
	set_str(c, &k[12], r->last_error);
	return c->oom ? MIG_NOMEM : MIG_OK;
}

static int
fill_status(const mig_host *h, const char *path, const char *options, cursor *c,
			mig_err *err)
{
	(void) options;
	return mig_status(h, path, status_row, c, err);
}

/* ---- migrate_validate ---- */

static int
problem_row(void *arg, const mig_problem *p)
{
	cursor	   *c = arg;
	cell	   *k = add_row(c);

	if (k == NULL)
		return MIG_NOMEM;
	set_str(c, &k[0], p->version);
	set_str(c, &k[1], p->file);
	set_str(c, &k[2], p->kind);
	set_str(c, &k[3], p->severity);
	set_str(c, &k[4], p->sqlstate);
	set_str(c, &k[5], p->message);
	return c->oom ? MIG_NOMEM : MIG_OK;
}

static int
fill_validate(const mig_host *h, const char *path, const char *options, cursor *c,
			  mig_err *err)
{
	return mig_validate_with(h, path, options, problem_row, c, err);
}

/* ---- migrate_plan ---- */

static int
pending_row(void *arg, const mig_pending *m)
{
	cursor	   *c = arg;
	cell	   *k = add_row(c);

	if (k == NULL)
		return MIG_NOMEM;
	set_str(c, &k[0], m->version);
	set_str(c, &k[1], m->name);
	set_str(c, &k[2], m->file);
	set_str(c, &k[3], m->kind);
	set_text(c, &k[4], m->sql, m->len);
	set_text(c, &k[5], m->down_sql, m->down_len);
	set_str(c, &k[6], m->checksum);
	k[7].type = SQLITE_INTEGER, k[7].integer = m->outside;
	k[8].type = SQLITE_INTEGER, k[8].integer = m->statements_done;
	return c->oom ? MIG_NOMEM : MIG_OK;
}

static int
fill_plan(const mig_host *h, const char *path, const char *options, cursor *c,
		  mig_err *err)
{
	return mig_plan_pending(h, path, options, pending_row, c, err);
}

/* ---- migrate_impact (sq_impact.c) ---- */

static int
impact_row(void *arg, mig_impact_row *r)
{
	cursor	   *c = arg;
	cell	   *k = add_row(c);

	if (k == NULL)
		return MIG_NOMEM;
	set_str(c, &k[0], r->version);
	set_str(c, &k[1], r->file);
	k[2].type = SQLITE_INTEGER, k[2].integer = r->line;
	set_str(c, &k[3], r->statement);
	set_str(c, &k[4], r->relation);
	k[5].type = SQLITE_INTEGER, k[5].integer = r->rewrites != 0;
	k[6].type = SQLITE_INTEGER, k[6].integer = r->scans != 0;
	if (r->pages >= 0)
		k[7].type = SQLITE_INTEGER, k[7].integer = r->pages;
	if (r->bytes >= 0)
		k[8].type = SQLITE_INTEGER, k[8].integer = r->bytes;
	if (r->rows >= 0)
		k[9].type = SQLITE_INTEGER, k[9].integer = r->rows;
	set_str(c, &k[10], r->advice);
	set_str(c, &k[11], r->policy);
	return c->oom ? MIG_NOMEM : MIG_OK;
}

static int
fill_impact(const mig_host *h, const char *path, const char *options, cursor *c,
			mig_err *err)
{
	return mig_impact(h, path, options, impact_row, c, err);
}

/* ---- migrate_apply_each, migrate_status_each ---- */

static int
apply_each_row(void *arg, const sq_each_row *r)
{
	cursor	   *c = arg;
	cell	   *k = add_row(c);

	if (k == NULL)
		return MIG_NOMEM;
	set_str(c, &k[0], r->tenant);
	k[1].type = SQLITE_INTEGER, k[1].integer = r->applied;
	set_str(c, &k[2], r->status);
	set_str(c, &k[3], r->sqlstate);
	set_str(c, &k[4], r->error);
	return c->oom ? MIG_NOMEM : MIG_OK;
}

static int
status_each_row(void *arg, const sq_each_row *r)
{
	cursor	   *c = arg;
	cell	   *k = add_row(c);

	if (k == NULL)
		return MIG_NOMEM;
	set_str(c, &k[0], r->tenant);
	if (r->applied >= 0)
		k[1].type = SQLITE_INTEGER, k[1].integer = r->applied;
	if (r->pending >= 0)
		k[2].type = SQLITE_INTEGER, k[2].integer = r->pending;
	set_str(c, &k[3], r->latest);
	set_str(c, &k[4], r->status);
	set_str(c, &k[5], r->sqlstate);
	set_str(c, &k[6], r->error);
	return c->oom ? MIG_NOMEM : MIG_OK;
}

static const table_def tables[] = {
	{"migrate_status",
		"version TEXT, name TEXT, state TEXT, file TEXT, checksum TEXT,"
		" applied_checksum TEXT, applied_at TEXT, execution_ms REAL,"
		" installed_rank INTEGER, has_down INTEGER, down TEXT,"
		" statements_done INTEGER, last_error TEXT, path HIDDEN, options HIDDEN",
	13, 2, fill_status, MIG_OPTIONS_NONE, 0},
	{"migrate_validate",
		"version TEXT, file TEXT, problem TEXT, severity TEXT, sqlstate TEXT,"
		" message TEXT, path HIDDEN, options HIDDEN",
	6, 2, fill_validate, MIG_OPTIONS_VALIDATE, 0},
	{"migrate_plan",
		"version TEXT, name TEXT, file TEXT, kind TEXT, sql TEXT, down_sql TEXT,"
		" checksum TEXT, outside INTEGER, statements_done INTEGER,"
		" path HIDDEN, options HIDDEN",
	9, 2, fill_plan, MIG_OPTIONS_DRYRUN, 0},
	{"migrate_impact",
		"version TEXT, file TEXT, line INTEGER, statement TEXT, relation TEXT,"
		" rewrites INTEGER, scans INTEGER, relation_pages INTEGER, relation_bytes INTEGER,"
		" relation_rows INTEGER, advice TEXT, policy TEXT, path HIDDEN, options HIDDEN",
	12, 2, fill_impact, MIG_OPTIONS_APPLY, 0},
	{"migrate_apply_each",
		"tenant TEXT, applied INTEGER, status TEXT, sqlstate TEXT, error TEXT,"
		" source HIDDEN, tenants HIDDEN, options HIDDEN",
	5, 3, NULL, MIG_OPTIONS_EACH, EACH_APPLY},
	{"migrate_status_each",
		"tenant TEXT, applied INTEGER, pending INTEGER, latest TEXT, state TEXT,"
		" sqlstate TEXT, error TEXT, source HIDDEN, tenants HIDDEN",
	7, 2, NULL, MIG_OPTIONS_NONE, EACH_STATUS},
};

/* ---- the module ---- */

static int
t_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
		  sqlite3_vtab **out, char **err)
{
	const table_def *def = aux;
	vtab	   *vt;
	char	   *ddl;
	int			rc;

	(void) argc;
	(void) argv;
	(void) err;
	if ((ddl = sqlite3_mprintf("CREATE TABLE x(%s)", def->columns)) == NULL)
		return SQLITE_NOMEM;
	rc = sqlite3_declare_vtab(db, ddl);
	sqlite3_free(ddl);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
	if ((vt = sqlite3_malloc64(sizeof(*vt))) == NULL)
		return SQLITE_NOMEM;
	memset(vt, 0, sizeof(*vt));
	vt->db = db;
	vt->def = def;
	*out = &vt->base;
	return SQLITE_OK;
}

static int
t_disconnect(sqlite3_vtab *vt)
{
	sqlite3_free(vt);
	return SQLITE_OK;
}

/* The hidden arguments must be given as equality constraints: idxNum has
 * bit k set when argument k (0 path, 1 options) is, passed as argv in
 * that order. */
static int
t_best_index(sqlite3_vtab *base, sqlite3_index_info *info)
{
	const table_def *def = ((vtab *) base)->def;
	int			at[MAX_ARGS] = {-1, -1, -1},
				next = 1;

	for (int i = 0; i < info->nConstraint; i++)
	{
		const struct sqlite3_index_constraint *k = &info->aConstraint[i];
		int			arg = k->iColumn - def->ncols;

		if (arg < 0 || arg >= def->nargs || k->op != SQLITE_INDEX_CONSTRAINT_EQ)
			continue;
		if (!k->usable)
			return SQLITE_CONSTRAINT;
		at[arg] = i;
	}
	info->idxNum = 0;
	for (int arg = 0; arg < MAX_ARGS; arg++)
		if (at[arg] >= 0)
		{
			info->aConstraintUsage[at[arg]].argvIndex = next++;
			info->aConstraintUsage[at[arg]].omit = 1;
			info->idxNum |= 1 << arg;
		}
	info->estimatedCost = info->idxNum & 1 ? 10 : 1e12;
	return SQLITE_OK;
}

static int
t_open(sqlite3_vtab *base, sqlite3_vtab_cursor **out)
{
	cursor	   *c = sqlite3_malloc64(sizeof(*c));

	if (c == NULL)
		return SQLITE_NOMEM;
	memset(c, 0, sizeof(*c));
	c->ncols = ((vtab *) base)->def->ncols;
	*out = &c->base;
	return SQLITE_OK;
}

static int
t_close(sqlite3_vtab_cursor *cur)
{
	clear_rows((cursor *) cur);
	sqlite3_free(cur);
	return SQLITE_OK;
}

static int
t_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxstr, int argc,
		 sqlite3_value **argv)
{
	cursor	   *c = (cursor *) cur;
	vtab	   *vt = (vtab *) cur->pVtab;
	const table_def *def = vt->def;
	const char *fn = def->name;
	sqlite3_value *args[MAX_ARGS] = {NULL, NULL, NULL};
	sqlite3_value *folder;
	const char *options;
	const char *path,
			   *logged;
	char	   *rest = NULL;
	sqlite3    *tenant = NULL;
	mig_source *src = NULL;
	sq_ctx		sc;
	mig_host	h;
	mig_err		err;
	int			rc,
				n = 0;

	(void) idxstr;
	clear_rows(c);
	/* the arguments given, in order (t_best_index) */
	for (int arg = 0; arg < MAX_ARGS; arg++)
		if ((idx & (1 << arg)) && n < argc)
			args[arg] = argv[n++];
	folder = args[0];
	options = args[def->nargs - 1] && def->nargs > (def->each ? 2 : 1) ?
		(const char *) sqlite3_value_text(args[def->nargs - 1]) : NULL;
	if (folder == NULL || sqlite3_value_type(folder) == SQLITE_NULL)
	{
		sqlite3_free(vt->base.zErrMsg);
		vt->base.zErrMsg = def->each ?
			sqlite3_mprintf("%s: give the migration folder and the tenants, as in SELECT * FROM %s('db/migrations', json_array('tenants/a.db'))",
							fn, fn) :
			sqlite3_mprintf("%s: give the migration folder, as in SELECT * FROM %s('db/migrations')",
							fn, fn);
		return SQLITE_ERROR;
	}
	if (def->each && args[1] == NULL)
	{
		sqlite3_free(vt->base.zErrMsg);
		vt->base.zErrMsg = sqlite3_mprintf("%s: give the tenants, as in SELECT * FROM %s('db/migrations', json_array('tenants/a.db'))",
										   fn, fn);
		return SQLITE_ERROR;
	}
	/* schema=: the tenant, on a read-only connection of its own */
	rc = def->each ? MIG_OK :
		sq_tenant_enter(vt->db, fn, options, def->which, 1, &tenant, &rest, &err);
	if (rc == MIG_OK)
	{
		sq_host_init(&h, &sc, tenant ? tenant : vt->db, fn);
		/* a path, an archive or a JSON object (sq_source.c) */
		rc = sq_folder_arg(vt->db, &h, folder, NULL, &path, &src, &logged, &err);
	}
	if (rc == MIG_OK && def->each == EACH_APPLY)
		rc = sq_apply_each(vt->db, &h, path, logged, args[1], options, apply_each_row, c, &err);
	else if (rc == MIG_OK && def->each == EACH_STATUS)
		rc = sq_status_each(vt->db, &h, path, args[1], status_each_row, c, &err);
	else if (rc == MIG_OK)
		rc = def->fill(&h, path, rest, c, &err);
	mig_source_free(src);
	sqlite3_free(rest);
	sq_tenant_close(tenant);
	if (rc != MIG_OK)
	{
		clear_rows(c);
		if (err.code == MIG_NOMEM || rc == MIG_NOMEM)
			return SQLITE_NOMEM;
		sqlite3_free(vt->base.zErrMsg);
		vt->base.zErrMsg = sq_error_text(fn, &err);
		return vt->base.zErrMsg ? SQLITE_ERROR : SQLITE_NOMEM;
	}
	return SQLITE_OK;
}

static int
t_next(sqlite3_vtab_cursor *cur)
{
	((cursor *) cur)->at++;
	return SQLITE_OK;
}

static int
t_eof(sqlite3_vtab_cursor *cur)
{
	cursor	   *c = (cursor *) cur;

	return c->at >= c->n;
}

static int
t_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
	cursor	   *c = (cursor *) cur;
	const cell *k;

	if (col >= c->ncols)
		return SQLITE_OK;		/* a hidden argument: not kept */
	k = &c->cells[c->at * c->ncols + col];
	if (k->type == SQLITE_TEXT)
		sqlite3_result_text64(ctx, k->text, k->len, SQLITE_TRANSIENT, SQLITE_UTF8);
	else if (k->type == SQLITE_FLOAT)
		sqlite3_result_double(ctx, k->real);
	else if (k->type == SQLITE_INTEGER)
		sqlite3_result_int64(ctx, k->integer);
	return SQLITE_OK;
}

static int
t_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid)
{
	*rowid = (sqlite3_int64) ((cursor *) cur)->at + 1;
	return SQLITE_OK;
}

static const sqlite3_module table_module = {
	.iVersion = 0,
	.xConnect = t_connect,
	.xBestIndex = t_best_index,
	.xDisconnect = t_disconnect,
	.xOpen = t_open,
	.xClose = t_close,
	.xFilter = t_filter,
	.xNext = t_next,
	.xEof = t_eof,
	.xColumn = t_column,
	.xRowid = t_rowid,
};

int
sq_tables_register(sqlite3 *db)
{
	int			rc = SQLITE_OK;

	for (size_t i = 0; rc == SQLITE_OK && i < sizeof(tables) / sizeof(tables[0]); i++)
		rc = sqlite3_create_module(db, tables[i].name, &table_module, (void *) &tables[i]);
	return rc;
}
