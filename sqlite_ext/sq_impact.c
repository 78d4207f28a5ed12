/*
 * sq_impact.c -- what a pending migration will do to a SQLite database,
 * without running it (host->impact):
 *
 *   SELECT statement, relation, rewrites, scans, relation_pages, relation_rows
 *     FROM migrate_impact('db/migrations');
 *
 * SQLite has one writer at a time: every statement that writes holds the
 * database's write lock until its transaction ends, so what matters is how
 * long a statement holds it.  That is long when it rebuilds or copies a
 * table (the 12-step table rebuild's INSERT ... SELECT, ALTER TABLE DROP
 * COLUMN, which rewrites every row, VACUUM, which rewrites the whole file,
 * REINDEX) or reads a whole one (CREATE INDEX, a CHECK constraint added
 * with a column, which ALTER TABLE ADD COLUMN tests on every existing row
 * since SQLite 3.37, an UPDATE without WHERE, ANALYZE): the SQLite
 * documentation of ALTER TABLE and of the rebuild procedure ("Making Other
 * Kinds Of Table Schema Changes").  Statements are split as SQLite splits
 * them (sqlite3_complete) and classified by their keywords; none is
 * prepared (a statement may name a table an earlier migration creates).
 *
 * Each table's size is read as it is now: pages and bytes from the dbstat
 * virtual table (when SQLite was built with it), rows by counting them --
 * of plain tables only: reading a view or a virtual table would run code.
 * A table the plan creates (or renames into place) earlier is new: NULL.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

static const char ADV_INDEX[] = "The build reads the whole table under the database's write lock: other writers wait until it ends (readers go on in WAL mode). Run it when writes can wait.";
static const char ADV_COPY[] = "The copy holds the database's write lock for as long as it takes: run the rebuild when writes can wait, or copy in batches in a migration outside a transaction.";
static const char ADV_DROP_COLUMN[] = "DROP COLUMN rewrites every row of the table under the write lock; a column left in place, unused, costs nothing.";
static const char ADV_UPDATE[] = "Update in batches (WHERE rowid BETWEEN ...), each its own transaction, in a migration outside a transaction, so that other writers get the lock between batches.";
static const char ADV_CHECK[] = "A CHECK constraint added with a column is tested on every existing row under the write lock.";
static const char ADV_VACUUM[] = "VACUUM rewrites the whole database file; with auto_vacuum=incremental, PRAGMA incremental_vacuum frees pages in small steps.";

/* A table the plan creates, renames or drops before the statement. */
typedef struct plan_rel {
	char	   *schema;
	char	   *name;
	char	   *was;			/* renamed into place from this (existing)
								 * table, or NULL */
	int			gone;			/* renamed away or dropped */
} plan_rel;

/* A table's size, read once per call. */
typedef struct size_entry {
	char	   *key;			/* "schema.name" */
	int64_t		pages,
				bytes,
				rows;
} size_entry;

typedef struct sq_impact_state {
	plan_rel   *rels;
	size_t		nrels,
				caprels;
	size_entry *sizes;
	size_t		nsizes,
				capsizes;
} sq_impact_state;

/* ---- tokens ---- */

enum { TK_END = 0, TK_WORD, TK_QUOTED, TK_STRING, TK_OTHER };

typedef struct token {
	int			type;
	const char *p;				/* its text (without quotes for TK_QUOTED) */
	size_t		n;
	size_t		off;			/* of the token in the statement */
} token;

/* Reads the token at s[*i..n), skipping white space and comments. */
static token
next_token(const char *s, size_t n, size_t *i)
{
	token		t = {TK_END, NULL, 0, 0};
	size_t		k = *i;

	for (;;)
	{
		while (k < n && isspace((unsigned char) s[k]))
			k++;
		if (k + 1 < n && s[k] == '-' && s[k + 1] == '-')
		{
			while (k < n && s[k] != '\n')
				k++;
			continue;
		}
		if (k + 1 < n && s[k] == '/' && s[k + 1] == '*')
		{
			k += 2;
			while (k + 1 < n && !(s[k] == '*' && s[k + 1] == '/'))
				k++;
			k = k + 2 < n ? k + 2 : n;
			continue;
		}
		break;
	}
	t.off = k;
	if (k >= n)
	{
		*i = n;
		return t;
	}
	if (isalpha((unsigned char) s[k]) || s[k] == '_' || (unsigned char) s[k] >= 0x80)
	{
		size_t		b = k;

		while (k < n && (isalnum((unsigned char) s[k]) || s[k] == '_' || s[k] == '$' ||
						 (unsigned char) s[k] >= 0x80))
			k++;
		t.type = TK_WORD;
		t.p = s + b;
		t.n = k - b;
	}
	else if (s[k] == '"' || s[k] == '`' || s[k] == '[' || s[k] == '\'')
	{
		char		close = s[k] == '[' ? ']' : s[k];
		size_t		b = ++k;

		while (k < n && !(s[k] == close && !(close != ']' && k + 1 < n && s[k + 1] == close)))
			k += s[k] == close ? 2 : 1;
		t.type = close == '\'' ? TK_STRING : TK_QUOTED;
		t.p = s + b;
		t.n = (k < n ? k : n) - b;
		k = k < n ? k + 1 : n;
	}
	else
	{
		t.type = TK_OTHER;
		t.p = s + k;
		t.n = 1;
		k++;
	}
	*i = k;
	return t;
}

/* The statement's tokens, up to max. */
typedef struct tokens {
	token		t[256];
	int			n;
} tokens;

static void
tokenize(const char *s, size_t n, tokens *ts)
{
	size_t		i = 0;

	ts->n = 0;
	while (ts->n < (int) (sizeof(ts->t) / sizeof(ts->t[0])))
	{
		token		t = next_token(s, n, &i);

		if (t.type == TK_END)
			break;
		ts->t[ts->n++] = t;
	}
}

/* Whether token k is the keyword kw (any case). */
static int
kw(const tokens *ts, int k, const char *word)
{
	return k < ts->n && ts->t[k].type == TK_WORD && strlen(word) == ts->t[k].n &&
		strncasecmp(ts->t[k].p, word, ts->t[k].n) == 0;
}

static int
punct(const tokens *ts, int k, char c)
{
	return k < ts->n && ts->t[k].type == TK_OTHER && ts->t[k].p[0] == c;
}

/* A name token (a word or a quoted identifier). */
static int
is_name(const tokens *ts, int k)
{
	return k < ts->n && (ts->t[k].type == TK_WORD || ts->t[k].type == TK_QUOTED ||
						 ts->t[k].type == TK_STRING);
}

/* Reads [schema.]name at *k into schema (or NULL) and name (sqlite3
 * strings); moves *k past it.  0 when there is no name. */
static int
qualified_name(const tokens *ts, int *k, char **schema, char **name)
{
	*schema = *name = NULL;
	if (!is_name(ts, *k))
		return 0;
	if (punct(ts, *k + 1, '.') && is_name(ts, *k + 2))
	{
		*schema = sqlite3_mprintf("%.*s", (int) ts->t[*k].n, ts->t[*k].p);
		*name = sqlite3_mprintf("%.*s", (int) ts->t[*k + 2].n, ts->t[*k + 2].p);
		*k += 3;
	}
	else
	{
		*name = sqlite3_mprintf("%.*s", (int) ts->t[*k].n, ts->t[*k].p);
		*k += 1;
	}
	return 1;
}

/* The index of the first keyword word at depth 0 from k, or -1. */
static int
find_kw(const tokens *ts, int k, const char *word)
{
	int			depth = 0;

	for (; k < ts->n; k++)
	{
		if (punct(ts, k, '('))
			depth++;
		else if (punct(ts, k, ')'))
			depth--;
		else if (depth == 0 && kw(ts, k, word))
			return k;
	}
	return -1;
}

/* ---- the plan's tables ---- */

static int
same_name(const char *a, const char *b)
{
	return a && b && sqlite3_stricmp(a, b) == 0;
}

/* The latest word of the plan on schema.name (schema NULL: any), or NULL. */
static plan_rel *
planned(sq_impact_state *st, const char *schema, const char *name)
{
	for (size_t i = st->nrels; i > 0; i--)
	{
		plan_rel   *p = &st->rels[i - 1];

		if (same_name(p->name, name) && (schema == NULL || same_name(p->schema, schema)))
			return p;
	}
	return NULL;
}

/* Notes schema.name as created (was NULL), renamed into place from was, or
 * gone; MIG_OK or MIG_NOMEM. */
static int
plan_add(sq_impact_state *st, const char *schema, const char *name, const char *was, int gone)
{
	plan_rel   *p;

	if (st->nrels == st->caprels)
	{
		size_t		cap = st->caprels ? st->caprels * 2 : 16;
		plan_rel   *fresh = sqlite3_realloc64(st->rels, cap * sizeof(plan_rel));

		if (fresh == NULL)
			return MIG_NOMEM;
		st->rels = fresh;
		st->caprels = cap;
	}
	p = &st->rels[st->nrels];
	memset(p, 0, sizeof(*p));
	p->schema = sqlite3_mprintf("%s", schema ? schema : "main");
	p->name = sqlite3_mprintf("%s", name);
	p->was = was ? sqlite3_mprintf("%s", was) : NULL;
	p->gone = gone;
	if (p->schema == NULL || p->name == NULL || (was && p->was == NULL))
	{
		sqlite3_free(p->schema);
		sqlite3_free(p->name);
		sqlite3_free(p->was);
		return MIG_NOMEM;
	}
	st->nrels++;
	return MIG_OK;
}

static void
state_free(sq_impact_state *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < st->nrels; i++)
	{
		sqlite3_free(st->rels[i].schema);
		sqlite3_free(st->rels[i].name);
		sqlite3_free(st->rels[i].was);
	}
	for (size_t i = 0; i < st->nsizes; i++)
		sqlite3_free(st->sizes[i].key);
	sqlite3_free(st->rels);
	sqlite3_free(st->sizes);
	sqlite3_free(st);
}

/* ---- what a name names now ---- */

/* 1 when schema.name is a table (or with index_ok an index) of the
 * database now; *plain when it is a plain table (not a view or virtual
 * table, whose reading would run code). */
static int
exists(sq_ctx *c, const char *schema, const char *name, int index_ok, int *plain)
{
	sqlite3_stmt *st = NULL;
	char	   *sql = sqlite3_mprintf("SELECT type, sql FROM \"%w\".sqlite_schema WHERE name = ?1 COLLATE NOCASE"
									  " AND type IN ('table', 'index')", schema);
	int			found = 0;

	*plain = 0;
	if (sql && sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK &&
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_step(st) == SQLITE_ROW)
	{
		const char *type = (const char *) sqlite3_column_text(st, 0);
		const char *ddl = (const char *) sqlite3_column_text(st, 1);

		found = type && (strcmp(type, "table") == 0 || index_ok);
		*plain = type && strcmp(type, "table") == 0 && ddl &&
			sqlite3_strnicmp(ddl, "CREATE VIRTUAL", 14) != 0;
	}
	sqlite3_finalize(st);
	sqlite3_free(sql);
	return found;
}

/*
 * Resolves [schema.]name as SQLite would (temp, main, then the attached
 * databases in order) into *out ("schema.name", sqlite3 string), or NULL
 * when it names nothing that exists now, or a table the plan creates
 * earlier (*planned_rel set).  *real is the name of the existing table to
 * measure (a table renamed into place by the plan: the one it was).
 */
static int
resolve(sq_ctx *c, sq_impact_state *st, const char *schema, const char *name, int index_ok,
		char **out, char **real, int *planned_rel, int *plain)
{
	static const char *const order[] = {"temp", "main"};
	sqlite3_stmt *dbs = NULL;
	int			rc = MIG_OK;

	*out = *real = NULL;
	*planned_rel = *plain = 0;
	if (name == NULL)
		return MIG_OK;
	{
		plan_rel   *p = planned(st, schema, name);

		if (p && !p->gone)
		{
			*out = sqlite3_mprintf("%s.%s", p->schema, p->name);
			if (p->was == NULL)
				*planned_rel = 1;
			else
				*real = sqlite3_mprintf("%s.%s", p->schema, p->was);
			if (*out == NULL || (p->was && *real == NULL))
				return MIG_NOMEM;
			if (p->was)
				(void) exists(c, p->schema, p->was, index_ok, plain);
			return MIG_OK;
		}
		if (p && p->gone && schema)
			return MIG_OK;
	}
	if (schema)
	{
		if (exists(c, schema, name, index_ok, plain))
		{
			*out = sqlite3_mprintf("%s.%s", schema, name);
			*real = sqlite3_mprintf("%s.%s", schema, name);
			return *out && *real ? MIG_OK : MIG_NOMEM;
		}
		return MIG_OK;
	}
	for (int i = 0; i < 2; i++)
	{
		plan_rel   *p = planned(st, order[i], name);

		if (p && p->gone)
			continue;
		if (exists(c, order[i], name, index_ok, plain))
		{
			*out = sqlite3_mprintf("%s.%s", order[i], name);
			*real = sqlite3_mprintf("%s.%s", order[i], name);
			return *out && *real ? MIG_OK : MIG_NOMEM;
		}
	}
	/* the attached databases, in the order of PRAGMA database_list */
	if (sqlite3_prepare_v2(c->db, "SELECT name FROM pragma_database_list WHERE seq > 1 ORDER BY seq",
						   -1, &dbs, NULL) != SQLITE_OK)
		return MIG_OK;
	while (rc == MIG_OK && *out == NULL && sqlite3_step(dbs) == SQLITE_ROW)
	{
		const char *db = (const char *) sqlite3_column_text(dbs, 0);

		if (db && exists(c, db, name, index_ok, plain))
		{
			*out = sqlite3_mprintf("%s.%s", db, name);
			*real = sqlite3_mprintf("%s.%s", db, name);
			if (*out == NULL || *real == NULL)
				rc = MIG_NOMEM;
		}
	}
	sqlite3_finalize(dbs);
	return rc;
}

/* Pages, bytes and rows of table real ("schema.name"), read once per call
 * (-1 where unknown). */
static int
size_of(sq_ctx *c, sq_impact_state *st, const char *real, int plain, size_entry *out)
{
	const char *dot = strchr(real, '.');
	char	   *schema,
			   *sql;
	sqlite3_stmt *q = NULL;
	size_entry *e;

	for (size_t i = 0; i < st->nsizes; i++)
		if (sqlite3_stricmp(st->sizes[i].key, real) == 0)
			return *out = st->sizes[i], MIG_OK;
	if (st->nsizes == st->capsizes)
	{
		size_t		cap = st->capsizes ? st->capsizes * 2 : 16;
		size_entry *fresh = sqlite3_realloc64(st->sizes, cap * sizeof(size_entry));

		if (fresh == NULL)
			return MIG_NOMEM;
		st->sizes = fresh;
		st->capsizes = cap;
	}
	e = &st->sizes[st->nsizes];
	e->pages = e->bytes = e->rows = -1;
	if ((e->key = sqlite3_mprintf("%s", real)) == NULL ||
		(schema = sqlite3_mprintf("%.*s", (int) (dot - real), real)) == NULL)
	{
		sqlite3_free(e->key);
		return MIG_NOMEM;
	}
	/* the dbstat virtual table, where SQLite has it */
	if (sqlite3_prepare_v2(c->db, "SELECT pageno, pgsize FROM dbstat WHERE schema = ?1 AND name = ?2"
						   " COLLATE NOCASE AND aggregate = 1", -1, &q, NULL) == SQLITE_OK &&
		sqlite3_bind_text(q, 1, schema, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_bind_text(q, 2, dot + 1, -1, SQLITE_STATIC) == SQLITE_OK &&
		sqlite3_step(q) == SQLITE_ROW)
	{
		e->pages = sqlite3_column_int64(q, 0);
		e->bytes = sqlite3_column_int64(q, 1);
	}
	sqlite3_finalize(q);
	q = NULL;
	if (plain && (sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\".\"%w\"", schema, dot + 1)) != NULL)
	{
		if (sqlite3_prepare_v2(c->db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
			e->rows = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
		sqlite3_free(sql);
	}
	sqlite3_free(schema);
	st->nsizes++;
	*out = *e;
	return MIG_OK;
}

/* The size of the whole database schema (VACUUM): pages and bytes. */
static void
database_size(sq_ctx *c, const char *schema, int64_t *pages, int64_t *bytes)
{
	sqlite3_stmt *q = NULL;
	char	   *sql = sqlite3_mprintf("SELECT page_count * page_size FROM \"%w\".pragma_page_count(),"
									  " \"%w\".pragma_page_size()", schema, schema);
	char	   *sql2 = sqlite3_mprintf("SELECT page_count FROM \"%w\".pragma_page_count()", schema);

	*pages = *bytes = -1;
	if (sql2 && sqlite3_prepare_v2(c->db, sql2, -1, &q, NULL) == SQLITE_OK &&
		sqlite3_step(q) == SQLITE_ROW)
		*pages = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	q = NULL;
	if (sql && sqlite3_prepare_v2(c->db, sql, -1, &q, NULL) == SQLITE_OK &&
		sqlite3_step(q) == SQLITE_ROW)
		*bytes = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_free(sql);
	sqlite3_free(sql2);
}

/* ---- the rules ---- */

enum { OP_NONE = 0, OP_CREATE, OP_DROP, OP_RENAME };

/* What one statement does. */
typedef struct effect {
	char	   *schema;			/* the table as named (sqlite3 strings) */
	char	   *name;
	int			index_ok;		/* the name may be an index's */
	int			rewrites;
	int			scans;
	int			database;		/* VACUUM: the whole database */
	const char *advice;
	/* what it does to the plan's tables, noted once its own table is
	 * resolved: creates op_name, drops it, or renames it to op_to */
	int			op;
	char	   *op_schema;
	char	   *op_name;
	char	   *op_to;
} effect;

static void
effect_free(effect *e)
{
	sqlite3_free(e->schema);
	sqlite3_free(e->name);
	sqlite3_free(e->op_schema);
	sqlite3_free(e->op_name);
	sqlite3_free(e->op_to);
}

/* Sets e's table from the name at *k. */
static void
name_at(const tokens *ts, int k, effect *e)
{
	sqlite3_free(e->schema);
	sqlite3_free(e->name);
	qualified_name(ts, &k, &e->schema, &e->name);
}

/* Skips IF NOT EXISTS / IF EXISTS at *k. */
static void
skip_if(const tokens *ts, int *k)
{
	if (kw(ts, *k, "IF") && kw(ts, *k + 1, "NOT") && kw(ts, *k + 2, "EXISTS"))
		*k += 3;
	else if (kw(ts, *k, "IF") && kw(ts, *k + 1, "EXISTS"))
		*k += 2;
}

/* Notes op on the name at *k (its schema, or deflt). */
static int
note_op(const tokens *ts, int *k, int op, const char *deflt, effect *e)
{
	if (!qualified_name(ts, k, &e->op_schema, &e->op_name))
		return MIG_OK;
	if (e->op_schema == NULL)
		e->op_schema = sqlite3_mprintf("%s", deflt);
	e->op = op;
	return e->op_schema && e->op_name ? MIG_OK : MIG_NOMEM;
}

/* Classifies the statement of tokens ts. */
static int
analyse(const tokens *ts, effect *e)
{
	int			k = 0,
				rc = MIG_OK;

	memset(e, 0, sizeof(*e));
	if (kw(ts, 0, "CREATE"))
	{
		int			temp = 0;

		k = 1;
		if (kw(ts, k, "TEMP") || kw(ts, k, "TEMPORARY"))
			temp = 1, k++;
		if (kw(ts, k, "UNIQUE"))
			k++;
		if (kw(ts, k, "TABLE") || kw(ts, k, "VIEW"))
		{
			int			table = kw(ts, k, "TABLE");

			k++;
			skip_if(ts, &k);
			rc = note_op(ts, &k, OP_CREATE, temp ? "temp" : "main", e);
			/* CREATE TABLE ... AS SELECT ... FROM src copies src */
			if (table && kw(ts, k, "AS"))
			{
				int			from = find_kw(ts, k, "FROM");

				if (from >= 0)
				{
					name_at(ts, from + 1, e);
					e->rewrites = 1;
					e->advice = ADV_COPY;
				}
			}
		}
		else if (kw(ts, k, "INDEX"))
		{
			int			on;

			k++;
			skip_if(ts, &k);
			if ((on = find_kw(ts, k, "ON")) >= 0)
			{
				name_at(ts, on + 1, e);
				e->scans = 1;
				e->advice = ADV_INDEX;
			}
			rc = note_op(ts, &k, OP_CREATE, "main", e);
		}
	}
	else if (kw(ts, 0, "INSERT") || kw(ts, 0, "REPLACE"))
	{
		int			into = find_kw(ts, 0, "INTO"),
					sel = find_kw(ts, 0, "SELECT"),
					from = sel >= 0 ? find_kw(ts, sel, "FROM") : -1;

		if (into >= 0)
			name_at(ts, into + 1, e);
		/* INSERT INTO new SELECT ... FROM old: the rebuild's copy */
		if (from >= 0 && is_name(ts, from + 1))
		{
			name_at(ts, from + 1, e);
			if (find_kw(ts, from, "WHERE") < 0)
			{
				e->rewrites = 1;
				e->advice = ADV_COPY;
			}
			else
				e->scans = 1;
		}
	}
	else if (kw(ts, 0, "UPDATE"))
	{
		k = 1;
		if (kw(ts, k, "OR"))
			k += 2;
		name_at(ts, k, e);
		if (find_kw(ts, k, "WHERE") < 0)
		{
			e->scans = 1;
			e->advice = ADV_UPDATE;
		}
	}
	else if (kw(ts, 0, "DELETE") && kw(ts, 1, "FROM"))
		name_at(ts, 2, e);
	else if (kw(ts, 0, "ALTER") && kw(ts, 1, "TABLE"))
	{
		int			n = 2;

		k = 2;
		name_at(ts, k, e);
		while (k < ts->n && !(kw(ts, k, "ADD") || kw(ts, k, "DROP") || kw(ts, k, "RENAME")))
			k++;
		if (kw(ts, k, "DROP"))
		{
			e->rewrites = 1;
			e->advice = ADV_DROP_COLUMN;
		}
		else if (kw(ts, k, "ADD") && find_kw(ts, k, "CHECK") >= 0)
		{
			e->scans = 1;
			e->advice = ADV_CHECK;
		}
		else if (kw(ts, k, "RENAME") && kw(ts, k + 1, "TO") && is_name(ts, k + 2) &&
				 (rc = note_op(ts, &n, OP_RENAME, "main", e)) == MIG_OK && e->op_name)
		{
			if ((e->op_to = sqlite3_mprintf("%.*s", (int) ts->t[k + 2].n, ts->t[k + 2].p)) == NULL)
				rc = MIG_NOMEM;
		}
	}
	else if (kw(ts, 0, "DROP") && (kw(ts, 1, "TABLE") || kw(ts, 1, "VIEW")))
	{
		k = 2;
		skip_if(ts, &k);
		name_at(ts, k, e);
		rc = note_op(ts, &k, OP_DROP, "main", e);
	}
	else if (kw(ts, 0, "VACUUM"))
	{
		e->database = 1;
		e->scans = 1;
		if (is_name(ts, 1) && !kw(ts, 1, "INTO"))
			e->schema = sqlite3_mprintf("%.*s", (int) ts->t[1].n, ts->t[1].p);
		else
			e->schema = sqlite3_mprintf("main");
		if (find_kw(ts, 1, "INTO") < 0)
		{
			e->rewrites = 1;
			e->advice = ADV_VACUUM;
		}
		if (e->schema == NULL)
			rc = MIG_NOMEM;
	}
	else if (kw(ts, 0, "REINDEX"))
	{
		if (is_name(ts, 1))
		{
			name_at(ts, 1, e);
			e->index_ok = 1;
		}
		e->rewrites = e->scans = 1;
	}
	else if (kw(ts, 0, "ANALYZE"))
	{
		if (is_name(ts, 1))
			name_at(ts, 1, e);
		e->scans = 1;
	}
	return rc;
}

/* Applies what statement e does to the plan's tables, once e's own table
 * is resolved. */
static int
plan_op(sq_impact_state *st, const effect *e)
{
	plan_rel   *p;
	int			created;
	char	   *origin;
	int			rc;

	switch (e->op)
	{
		case OP_CREATE:
			return plan_add(st, e->op_schema, e->op_name, NULL, 0);
		case OP_DROP:
			return plan_add(st, e->op_schema, e->op_name, NULL, 1);
		case OP_RENAME:
			/* the new name is the old table, or still a table of the plan */
			p = planned(st, e->op_schema, e->op_name);
			created = p && !p->gone && p->was == NULL;
			origin = sqlite3_mprintf("%s", p && !p->gone && p->was ? p->was : e->op_name);
			if (origin == NULL)
				return MIG_NOMEM;
			rc = plan_add(st, e->op_schema, e->op_name, NULL, 1);
			if (rc == MIG_OK)
				rc = plan_add(st, e->op_schema, e->op_to, created ? NULL : origin, 0);
			sqlite3_free(origin);
			return rc;
		default:
			return MIG_OK;
	}
}

/* The first words of statement s[0..n), white space folded. */
static char *
first_words(const char *s, size_t n)
{
	sqlite3_str *b = sqlite3_str_new(NULL);
	size_t		i = 0;
	char	   *out;

	while (i < n && (size_t) sqlite3_str_length(b) < 60)
	{
		if (isspace((unsigned char) s[i]))
		{
			while (i < n && isspace((unsigned char) s[i]))
				i++;
			if (i < n)
				sqlite3_str_appendchar(b, 1, ' ');
			continue;
		}
		sqlite3_str_appendchar(b, 1, s[i++]);
		while (i < n && ((unsigned char) s[i] & 0xc0) == 0x80)
			sqlite3_str_appendchar(b, 1, s[i++]);	/* whole characters */
	}
	while (i < n && isspace((unsigned char) s[i]))
		i++;
	out = sqlite3_str_finish(b);
	if (out && i < n)
	{
		char	   *sp = strrchr(out, ' '),
				   *more;

		if (sp && sp > out + 20)
			*sp = '\0';
		more = sqlite3_mprintf("%s ...", out);
		sqlite3_free(out);
		out = more;
	}
	return out;
}

/* Reports the statement at s->sql[start..end) through cb. */
static int
one_statement(sq_ctx *c, sq_impact_state *st, const mig_script *s, size_t start, size_t end,
			  mig_impact_cb cb, void *arg, mig_err *err)
{
	size_t		wlen,
				at = start + mig_first_word(s->sql + start, end - start, 0, &wlen);
	size_t		stop = end;
	tokens	   *ts;
	effect		e;
	mig_impact_row row;
	char	   *shown = NULL,
			   *rel = NULL,
			   *real = NULL;
	int			planned_rel = 0,
				plain = 0,
				rc;

	if (wlen == 0)
		return MIG_OK;			/* white space and comments */
	while (stop > at && (isspace((unsigned char) s->sql[stop - 1]) || s->sql[stop - 1] == ';'))
		stop--;
	if ((ts = sqlite3_malloc64(sizeof(tokens))) == NULL)
		return MIG_NOMEM;
	tokenize(s->sql + at, stop - at, ts);
	rc = analyse(ts, &e);
	sqlite3_free(ts);
	memset(&row, 0, sizeof(row));
	row.offset = at;
	row.pages = row.bytes = row.rows = -1;
	row.lock = MIG_LOCK_NONE;	/* one writer locks the whole database */
	row.rewrites = e.rewrites;
	row.scans = e.scans || e.rewrites;
	row.advice = e.advice;
	if (rc == MIG_OK && (shown = first_words(s->sql + at, stop - at)) == NULL)
		rc = MIG_NOMEM;
	row.statement = shown;
	if (rc == MIG_OK && e.database)
	{
		row.relation = e.schema;
		database_size(c, e.schema, &row.pages, &row.bytes);
	}
	else if (rc == MIG_OK && e.name)
		rc = resolve(c, st, e.schema, e.name, e.index_ok, &rel, &real, &planned_rel, &plain);
	if (rc == MIG_OK && rel && !planned_rel)
	{
		size_entry	z;

		row.relation = rel;
		if (real && (rc = size_of(c, st, real, plain, &z)) == MIG_OK)
		{
			row.pages = z.pages;
			row.bytes = z.bytes;
			row.rows = z.rows;
		}
	}
	if (rc == MIG_OK)
		rc = plan_op(st, &e);
	if (rc == MIG_OK)
		rc = cb(arg, &row);
	else if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	sqlite3_free(shown);
	sqlite3_free(rel);
	sqlite3_free(real);
	effect_free(&e);
	return rc;
}

int
sq_impact(void *ctx, const mig_script *s, int first, mig_impact_cb cb, void *arg,
		  mig_err *err)
{
	sq_ctx	   *c = ctx;
	sq_impact_state *st = c->impact;
	char	   *buf;
	size_t		start = 0;
	int			rc = MIG_OK;

	if (s == NULL || first)
	{
		state_free(st);
		c->impact = st = NULL;
		if (s == NULL)
			return MIG_OK;
	}
	if (st == NULL)
	{
		if ((st = sqlite3_malloc64(sizeof(*st))) == NULL)
		{
			mig_err_nomem(err);
			return MIG_NOMEM;
		}
		memset(st, 0, sizeof(*st));
		c->impact = st;
	}
	/* statements end where sqlite3_complete says, as sq_check_script
	 * splits them (strings, comments and trigger bodies kept whole) */
	if ((buf = sqlite3_malloc64(s->len + 1)) == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	memcpy(buf, s->sql, s->len);
	buf[s->len] = '\0';
	for (size_t i = 0; rc == MIG_OK && i < s->len; i++)
	{
		char		saved;
		int			done;

		if (buf[i] != ';')
			continue;
		saved = buf[i + 1];
		buf[i + 1] = '\0';
		done = sqlite3_complete(buf + start);
		buf[i + 1] = saved;
		if (done)
		{
			rc = one_statement(c, st, s, start, i + 1, cb, arg, err);
			start = i + 1;
		}
	}
	if (rc == MIG_OK && start < s->len)
		rc = one_statement(c, st, s, start, s->len, cb, arg, err);
	sqlite3_free(buf);
	return rc;
}
