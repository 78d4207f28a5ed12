/*
 * sq_each.c -- the fan-out over tenant database files (issue 22):
 *
 *   SELECT * FROM migrate_apply_each('db/migrations', json_array('t/a.db', 't/b.db'));
 *   SELECT * FROM migrate_apply_each(readfile('m.tar.gz'), 't/a.db', 'on_error=continue');
 *   SELECT * FROM migrate_status_each('db/migrations', (SELECT json_group_array(path) FROM tenants));
 *
 * The folder (or its contents) is read and checked once, then each tenant
 * file in turn is opened on a connection of its own (sq_tenant.c),
 * migrated by the core exactly as migrate_apply migrates a database (its
 * lock, its history, its progress, its call log row, one transaction),
 * and closed.  A tenant's failure rolls back that tenant's unit of work
 * only; earlier tenants stay migrated, and the call goes on or stops as
 * on_error= and canary= say, reporting every tenant in a row.  A separate
 * connection rather than ATTACH: the same isolation (the tenant is main
 * there: unqualified names, its own tables), without touching the
 * caller's connection (no schema of the caller's to reload, no attached
 * name to clash with, no transaction of the caller's to join), and about
 * as fast (an ATTACH opens the file the same way).
 *
 * The no-op reads first: a tenant found up to date in a read transaction
 * is reported so without the write lock and without a write (no journal,
 * no sync, no call log row), which made the no-op over 1,000 files 4x
 * faster; any other tenant goes the whole way, under the lock.
 *
 * SQLite runs one tenant at a time here: parallel=N (N > 1) is refused.
 * Several processes may fan out over the same tenants at once; each
 * tenant's lock keeps them apart, and each migration applies once.
 */
#include <stdio.h>
#include <string.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

static void *
sq_alloc64(size_t n)
{
	return sqlite3_malloc64(n);
}

/* A list of tenant paths (strings from sqlite3_malloc64). */
typedef struct tenants {
	char	  **path;
	size_t		n;
} tenants;

static void
tenants_free(tenants *t)
{
	for (size_t i = 0; i < t->n; i++)
		sqlite3_free(t->path[i]);
	sqlite3_free(t->path);
	t->path = NULL;
	t->n = 0;
}

/* Sets err from the connection's last error (reading the tenant list). */
static int
list_failed(sqlite3 *db, mig_err *err)
{
	if (sqlite3_errcode(db) == SQLITE_NOMEM)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "could not read the list of tenants: %s",
				sqlite3_errmsg(db));
	return MIG_ERROR;
}

/*
 * Reads the tenants argument v: a JSON array of database file paths
 * (json_array(...), json_group_array(...)), or a single path.  Anything
 * else, or an element that is not a non-empty string, is an argument
 * error (22023).
 */
static int
read_tenants(sqlite3 *db, sqlite3_value *v, tenants *out, mig_err *err)
{
	const unsigned char *text;
	sqlite3_stmt *st = NULL;
	size_t		cap = 0;
	int			src,
				rc = MIG_OK;

	out->path = NULL;
	out->n = 0;
	if (sqlite3_value_type(v) != SQLITE_TEXT)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "the tenants must be a JSON array of database file paths");
		mig_err_hint(err, "Give json_array('tenants/a.db', 'tenants/b.db'), or a single path.");
		return MIG_ERROR;
	}
	if ((text = sqlite3_value_text(v)) == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
		text++;
	if (*text != '[')
	{
		/* one path */
		size_t		n = strlen((const char *) text);

		if ((out->path = sqlite3_malloc64(sizeof(char *))) == NULL ||
			(out->path[0] = sqlite3_malloc64(n + 1)) == NULL)
		{
			sqlite3_free(out->path);
			out->path = NULL;
			mig_err_nomem(err);
			return MIG_NOMEM;
		}
		memcpy(out->path[0], sqlite3_value_text(v), (size_t) sqlite3_value_bytes(v) + 1);
		out->n = 1;
		if (out->path[0][0] == '\0')
		{
			tenants_free(out);
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "a tenant's database path is empty");
			return MIG_ERROR;
		}
		return MIG_OK;
	}
	if (sqlite3_prepare_v2(db, "SELECT json_valid(?1), key, type, value FROM json_each(?1)"
						   " WHERE json_valid(?1)", -1, &st, NULL) != SQLITE_OK)
		return list_failed(db, err);
	sqlite3_bind_value(st, 1, v);
	while (rc == MIG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
	{
		const char *type = (const char *) sqlite3_column_text(st, 2);
		const unsigned char *path = sqlite3_column_text(st, 3);
		int			len = sqlite3_column_bytes(st, 3);

		if (type == NULL)
		{
			rc = list_failed(db, err);
			break;
		}
		if (strcmp(type, "text") != 0 || len == 0)
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "tenant %lld of the list is %s, not a database file path",
						(long long) sqlite3_column_int64(st, 1) + 1,
						strcmp(type, "text") == 0 ? "empty" : type);
			mig_err_hint(err, "Give a JSON array of paths, such as json_array('tenants/a.db', 'tenants/b.db').");
			rc = MIG_ERROR;
			break;
		}
		if (path == NULL)
		{
			rc = list_failed(db, err);
			break;
		}
		if (out->n == cap)
		{
			size_t		ncap = cap ? cap * 2 : 16;
			char	  **grown = sqlite3_realloc64(out->path, ncap * sizeof(char *));

			if (grown == NULL)
			{
				mig_err_nomem(err);
				rc = MIG_NOMEM;
				break;
			}
			out->path = grown;
			cap = ncap;
		}
		if ((out->path[out->n] = sqlite3_malloc64((size_t) len + 1)) == NULL)
		{
			mig_err_nomem(err);
			rc = MIG_NOMEM;
			break;
		}
		memcpy(out->path[out->n++], path, (size_t) len + 1);
	}
	if (rc == MIG_OK && src != SQLITE_DONE)
		rc = list_failed(db, err);
	sqlite3_finalize(st);
	if (rc == MIG_OK && out->n == 0 && strcmp((const char *) text, "[]") != 0)
	{
		/* json_each found nothing: not valid JSON (an empty array is fine);
		 * or, in a valid array that is not empty, SQLite's JSON reader ran
		 * out of memory, which it does not always say */
		if (sqlite3_prepare_v2(db, "SELECT json_valid(?1),"
							   " CASE WHEN json_valid(?1) THEN json_array_length(?1) END",
							   -1, &st, NULL) != SQLITE_OK)
			return list_failed(db, err);
		sqlite3_bind_value(st, 1, v);
		if (sqlite3_step(st) != SQLITE_ROW)
			rc = list_failed(db, err);
		else if (!sqlite3_column_int(st, 0))
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "the list of tenants is not valid JSON");
			mig_err_hint(err, "Give a JSON array of paths, such as json_array('tenants/a.db', 'tenants/b.db').");
			rc = MIG_ERROR;
		}
		else if (sqlite3_column_int64(st, 1) != 0)
		{
			mig_err_nomem(err);
			rc = MIG_NOMEM;
		}
		sqlite3_finalize(st);
	}
	if (rc != MIG_OK)
		tenants_free(out);
	return rc;
}

/* Problems of the folder itself, which no tenant's history changes: the
 * call fails with the first of them before any tenant is opened. */
static int
problem_of_source(const char *kind)
{
	static const char *const kinds[] = {"folder", "bad_name", "duplicate", "orphan_down",
	"mixed_layouts", "bad_file", "not_allowed", "chain"};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kind, kinds[i]) == 0)
			return 1;
	return 0;
}

static int
first_problem(void *arg, const mig_problem *p)
{
	mig_err    *err = arg;

	if (err->code != MIG_OK || strcmp(p->severity, "error") != 0 || !problem_of_source(p->kind))
		return MIG_OK;
	mig_err_set(err, p->sqlstate, "%s", p->message);
	return MIG_OK;
}

/*
 * Reads and checks the folder (or source) once, against an empty history
 * in a private in-memory database: every file, name and statement rule
 * that does not depend on a tenant.  Warms cache with the files'
 * checksums for the tenants.
 */
static int
check_source(const mig_host *src, const char *fn, const char *path, mig_cache *cache,
			 mig_err *err)
{
	sqlite3    *mem = NULL;
	sq_ctx		c;
	mig_host	h;
	mig_err		found;
	int			rc;

	if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
	{
		sqlite3_close(mem);
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	sq_host_init(&h, &c, mem, fn);
	h.source = src->source;
	h.max_archive_size = src->max_archive_size;
	h.cache = cache;
	mig_err_clear(&found);
	rc = mig_validate(&h, path, first_problem, &found, err);
	sqlite3_close(mem);
	if (rc != MIG_OK)
		return rc;
	if (found.code != MIG_OK)
	{
		*err = found;
		mig_err_detail(err, "No tenant was opened.");
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* "context: message" of err, in out[size]. */
static void
error_text(const mig_err *err, char *out, size_t size)
{
	if (err->code == MIG_NOMEM)
		snprintf(out, size, "out of memory");
	else
		snprintf(out, size, "%s%s%s", err->context, err->context[0] ? ": " : "", err->message);
}

/* What the options allow: sets *o; refuses parallel=N, N > 1. */
static int
each_options(const mig_host *h, const char *fn, const char *options, int which,
			 mig_tenant_options *o, char **rest, mig_err *err)
{
	int			rc = mig_options_split(h, options, which, o, rest, err);

	if (rc == MIG_OK && o->parallel > 1)
	{
		sqlite3_free(*rest);
		*rest = NULL;
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL, "parallel=%d is not available on SQLite", o->parallel);
		mig_err_detail(err, "%s migrates one tenant at a time.", fn);
		mig_err_hint(err, "To migrate several at once, run it in several processes, each over its own share of the tenants (or all of them: each tenant's lock keeps them apart).");
		return MIG_ERROR;
	}
	return rc;
}

/*
 * The no-op, read first: 1 when tenant db (host h) needs nothing, as
 * mig_apply_idle finds it in one read transaction (a consistent snapshot
 * of the history and progress), taking no write lock and writing nothing:
 * no journal, no sync, no call log row.  0 when it may need something, or
 * could not be read at once (another connection committing, a history
 * that cannot be read...): then the full call under the write lock
 * decides, and reads the history again there, so each migration still
 * applies once.  -1 when out of memory, or when the read transaction could
 * not be ended (err says which).
 */
static int
read_first_idle(const mig_host *h, sqlite3 *db, const char *path, const char *options,
				mig_err *err)
{
	sqlite3_stmt *st = NULL;
	mig_err		e;
	int			timeout = 0,
				idle = 0,
				rc;

	/* no wait here: a writer in its commit sends the tenant the full way,
	 * which waits as the options say */
	if ((rc = sqlite3_prepare_v2(db, "PRAGMA busy_timeout", -1, &st, NULL)) == SQLITE_OK &&
		(rc = sqlite3_step(st)) == SQLITE_ROW)
		timeout = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
	{
		mig_err_nomem(err);		/* the only way reading a setting fails */
		return -1;
	}
	sqlite3_busy_timeout(db, 0);
	mig_err_clear(&e);
	if ((rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL)) == SQLITE_OK)
	{
		if (mig_apply_idle(h, path, options, &idle, &e) != MIG_OK)
			idle = 0;
		else if ((rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
			idle = 0;
	}
	if ((rc & 0xff) == SQLITE_NOMEM || e.code == MIG_NOMEM)
		mig_err_nomem(err);
	if (!sqlite3_get_autocommit(db) && sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK &&
		!sqlite3_get_autocommit(db) && err->code == MIG_OK)
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not end a read of tenant database \"%s\": %s",
					sqlite3_db_filename(db, "main"), sqlite3_errmsg(db));
	sqlite3_busy_timeout(db, timeout);
	return err->code != MIG_OK ? -1 : idle;
}

int
sq_apply_each(sqlite3 *caller, const mig_host *src, const char *path, const char *logged,
			  sqlite3_value *list, const char *options, sq_each_cb cb, void *arg, mig_err *err)
{
	const char *fn = "migrate_apply_each";
	mig_tenant_options o;
	tenants		t = {NULL, 0};
	char	   *rest = NULL;
	mig_cache  *cache = NULL;
	sq_ctx		show;
	mig_host	sh;
	int			rc,
				stopped = 0,
				canary_failed = 0;

	sq_host_init(&sh, &show, caller, fn);
	if ((rc = each_options(&sh, fn, options, MIG_OPTIONS_EACH, &o, &rest, err)) != MIG_OK)
		return rc;
	show.verbose = o.verbose;
	if ((rc = read_tenants(caller, list, &t, err)) == MIG_OK &&
		(cache = mig_cache_create(sq_alloc64, sqlite3_free)) == NULL)
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	if (rc == MIG_OK)
		rc = check_source(src, fn, path, cache, err);
	for (size_t i = 0; rc == MIG_OK && i < t.n; i++)
	{
		sq_each_row row;
		sqlite3    *db = NULL;
		sq_ctx		c;
		mig_host	h;
		mig_err		e;
		char		text[MIG_MSG_MAX + MIG_CTX_MAX + 4] = "";
		int64_t		count = 0;
		int			failed,
					idle;

		memset(&row, 0, sizeof(row));
		row.tenant = t.path[i];
		row.pending = -1;
		if (stopped)
		{
			row.status = "not_reached";
			if ((rc = cb(arg, &row)) != MIG_OK)
				break;
			continue;
		}
		failed = 1;
		if (sq_tenant_path(caller, t.path[i], 0, &db, &e) == MIG_OK)
		{
			sq_host_init(&h, &c, db, fn);
			h.source = src->source;
			h.max_archive_size = src->max_archive_size;
			h.cache = cache;
			sq_call_begin(&c, fn, logged, options);
			if ((idle = read_first_idle(&h, db, path, rest, &e)) != 0)
				failed = idle < 0;
			else if (mig_apply_with(&h, path, rest, &count, &e) == MIG_OK)
			{
				failed = 0;
				if (c.skipped)
				{
					mig_err		ignored;

					mig_err_clear(&ignored);
					(void) sq_call_log(&c, "skipped", NULL, &ignored);
				}
			}
			else if (e.code != MIG_NOMEM)
			{
				mig_err		ignored;

				mig_err_clear(&ignored);
				(void) sq_call_log(&c, "error", &e, &ignored);
			}
			sq_tenant_close(db);
			row.status = failed ? "failed" : c.skipped ? "skipped_locked" : count > 0 ? "applied" : "up_to_date";
		}
		else
			row.status = "failed";
		if (failed && e.code == MIG_NOMEM)
		{
			/* nothing more can be done in this statement */
			*err = e;
			rc = MIG_NOMEM;
			break;
		}
		row.applied = count;
		if (failed)
		{
			error_text(&e, text, sizeof(text));
			row.sqlstate = e.sqlstate;
			row.error = text;
		}
		{
			char		line[MIG_MSG_MAX + MIG_CTX_MAX + 200];

			if (failed)
				snprintf(line, sizeof(line), "tenant %zu of %zu, %s: failed: %s", i + 1, t.n,
						 t.path[i], text);
			else if (count > 0)
				snprintf(line, sizeof(line), "tenant %zu of %zu, %s: applied %lld", i + 1, t.n,
						 t.path[i], (long long) count);
			else
				snprintf(line, sizeof(line), "tenant %zu of %zu, %s: %s", i + 1, t.n, t.path[i],
						 row.status);
			sq_show(&show, line);
		}
		if ((rc = cb(arg, &row)) != MIG_OK)
			break;
		if (failed)
		{
			if (!o.on_error_continue)
				stopped = 1;
			if (o.canary > 0 && i < (size_t) o.canary)
				canary_failed = 1;
		}
		if (canary_failed && i + 1 >= (size_t) o.canary)
			stopped = 1;
	}
	if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	mig_cache_destroy(cache);
	tenants_free(&t);
	sqlite3_free(rest);
	return rc;
}

/* Counts of migrate_status rows of one tenant. */
typedef struct standing {
	int64_t		applied;
	int64_t		pending;
	int			changed;		/* changed, missing or out of order: apply
								 * refuses */
	int			partial;
	char		latest[256];
	int			oom;
} standing;

static int
count_row(void *arg, const mig_status_row *r)
{
	standing   *s = arg;

	if (r->applied_at || r->rank > 0)
	{
		s->applied++;
		snprintf(s->latest, sizeof(s->latest), "%s", r->version);
	}
	if (strcmp(r->state, "pending") == 0 || strcmp(r->state, "outdated") == 0 ||
		strcmp(r->state, "partial") == 0)
		s->pending++;
	if (strcmp(r->state, "changed") == 0 || strcmp(r->state, "missing") == 0 ||
		strcmp(r->state, "out_of_order") == 0)
		s->changed = 1;
	if (strcmp(r->state, "partial") == 0 || strcmp(r->state, "partial_down") == 0)
		s->partial = 1;
	return MIG_OK;
}

int
sq_status_each(sqlite3 *caller, const mig_host *src, const char *path, sqlite3_value *list,
			   sq_each_cb cb, void *arg, mig_err *err)
{
	const char *fn = "migrate_status_each";
	tenants		t = {NULL, 0};
	mig_cache  *cache = NULL;
	int			rc;

	if ((rc = read_tenants(caller, list, &t, err)) == MIG_OK &&
		(cache = mig_cache_create(sq_alloc64, sqlite3_free)) == NULL)
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	for (size_t i = 0; rc == MIG_OK && i < t.n; i++)
	{
		sq_each_row row;
		standing	s;
		sqlite3    *db = NULL;
		sq_ctx		c;
		mig_host	h;
		mig_err		e;
		char		text[MIG_MSG_MAX + MIG_CTX_MAX + 4] = "";
		int			trc;

		memset(&row, 0, sizeof(row));
		memset(&s, 0, sizeof(s));
		row.tenant = t.path[i];
		if ((trc = sq_tenant_path(caller, t.path[i], 1, &db, &e)) == MIG_OK)
		{
			sq_host_init(&h, &c, db, fn);
			h.source = src->source;
			h.max_archive_size = src->max_archive_size;
			h.cache = cache;
			trc = mig_status(&h, path, count_row, &s, &e);
			sq_tenant_close(db);
		}
		if (trc != MIG_OK && e.code == MIG_NOMEM)
		{
			*err = e;
			rc = MIG_NOMEM;
			break;
		}
		if (trc != MIG_OK)
		{
			error_text(&e, text, sizeof(text));
			row.status = "failed";
			row.sqlstate = e.sqlstate;
			row.error = text;
			row.pending = -1;
			row.applied = -1;
		}
		else
		{
			row.applied = s.applied;
			row.pending = s.pending;
			row.latest = s.latest[0] ? s.latest : NULL;
			row.status = s.changed ? "changed" : s.partial ? "partial" :
				s.pending > 0 ? "pending" : "up_to_date";
		}
		rc = cb(arg, &row);
	}
	mig_cache_destroy(cache);
	tenants_free(&t);
	return rc;
}
