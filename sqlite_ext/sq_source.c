/*
 * sq_source.c -- the folder argument of the SQLite functions: a path, or
 * the folder's contents (the data forms):
 *
 *   SELECT migrate_apply('db/migrations');                   -- a folder
 *   SELECT migrate_apply(readfile('migrations.tar.gz'));     -- an archive
 *   SELECT migrate_apply(json_object('1_a.up.sql', 'CREATE TABLE a(x);'));
 *
 * A BLOB is an archive (tar, gzip-compressed tar or zip: common/
 * mig_archive.c); a TEXT whose first character other than white space is
 * '{' is a JSON object of file names and texts, walked with SQLite's own
 * json_each (a folder whose name starts with '{' is given as './{...');
 * any other TEXT is a path.  Files of either kind are held to the same
 * rules (common/mig_source.c); all of them together to the smaller of the
 * core's default (256 MiB) and the connection's SQLITE_LIMIT_LENGTH, which
 * the sqlite3 shell sets with .limit length N.
 */
#include <string.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

/* Whether text t (a function argument) is a JSON object. */
static int
json_text(const unsigned char *t)
{
	while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r')
		t++;
	return *t == '{';
}

/* Sets err from the connection's last error; MIG_NOMEM or MIG_ERROR. */
static int
sql_failed(sqlite3 *db, mig_err *err)
{
	if (sqlite3_errcode(db) == SQLITE_NOMEM)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not read the JSON object: %s",
				sqlite3_errmsg(db));
	return MIG_ERROR;
}

/* Refuses a JSON value that is not a file's text. */
static int
not_text(const char *key, const char *type, mig_err *err)
{
	const char *what = strcmp(type, "object") == 0 ? "an object" :
		strcmp(type, "array") == 0 ? "an array" :
		strcmp(type, "integer") == 0 || strcmp(type, "real") == 0 ? "a number" :
		strcmp(type, "true") == 0 || strcmp(type, "false") == 0 ? "a boolean" : "null";

	mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "the JSON value of \"%s\" is not a string", key);
	mig_err_detail(err, "It is %s; each value must be the text of the file its name names.", what);
	if (strcmp(type, "object") == 0)
		mig_err_hint(err, "Name a file in a subfolder by its path, as {\"postgres/1_a.up.sql\": \"...\"}, rather than with a nested object.");
	return MIG_ERROR;
}

/*
 * Reads JSON object v into a source of h, with SQLite's JSON functions:
 * each member a file (its key the path, its value the text).
 */
static int
json_source(sqlite3 *db, const mig_host *h, sqlite3_value *v, mig_source **out,
			mig_err *err)
{
	sqlite3_stmt *st = NULL;
	mig_source *s = NULL;
	int			rc,
				src;

	*out = NULL;
	if (sqlite3_prepare_v2(db, "SELECT json_valid(?1), CASE WHEN json_valid(?1) THEN json_type(?1) END", -1, &st, NULL) != SQLITE_OK)
		return sql_failed(db, err);
	sqlite3_bind_value(st, 1, v);
	if (sqlite3_step(st) != SQLITE_ROW)
	{
		rc = sql_failed(db, err);
		sqlite3_finalize(st);
		return rc;
	}
	if (!sqlite3_column_int(st, 0) || sqlite3_column_type(st, 1) == SQLITE_NULL ||
		strcmp((const char *) sqlite3_column_text(st, 1), "object") != 0)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "the migration folder given as JSON is %s",
					sqlite3_column_int(st, 0) ? "not an object" : "not valid JSON");
		mig_err_hint(err, "Give an object of file names and texts, as json_object('1_a.up.sql', 'CREATE TABLE a(x);').");
		sqlite3_finalize(st);
		return MIG_ERROR;
	}
	sqlite3_finalize(st);
	if ((rc = mig_source_new(h, "JSON object", &s, err)) != MIG_OK)
		return rc;
	if (sqlite3_prepare_v2(db, "SELECT key, type, value FROM json_each(?1)", -1, &st, NULL) != SQLITE_OK)
	{
		mig_source_free(s);
		return sql_failed(db, err);
	}
	sqlite3_bind_value(st, 1, v);
	while (rc == MIG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
	{
		const char *key = (const char *) sqlite3_column_text(st, 0);
		int			klen = sqlite3_column_bytes(st, 0);
		const char *type = (const char *) sqlite3_column_text(st, 1);
		const char *text;
		int			len;

		if (key == NULL || type == NULL)
		{
			rc = sql_failed(db, err);
			break;
		}
		if (strcmp(type, "text") != 0)
		{
			rc = not_text(key, type, err);
			break;
		}
		text = (const char *) sqlite3_column_text(st, 2);
		len = sqlite3_column_bytes(st, 2);
		if (text == NULL && len > 0)
		{
			rc = sql_failed(db, err);
			break;
		}
		rc = mig_source_add(s, key, (size_t) klen, text ? text : "", (size_t) len, err);
	}
	if (rc == MIG_OK && src != SQLITE_DONE)
		rc = sql_failed(db, err);
	sqlite3_finalize(st);
	if (rc == MIG_OK)
		rc = mig_source_seal(s, err);
	if (rc != MIG_OK)
	{
		mig_source_free(s);
		return rc;
	}
	*out = s;
	return MIG_OK;
}

int
sq_folder_arg(sqlite3 *db, mig_host *h, sqlite3_value *v, mig_source_cache *kept,
			  const char **path, mig_source **src, const char **logged, mig_err *err)
{
	int			owned = 1;
	int			limit = sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1);
	int			rc;

	mig_err_clear(err);
	*path = NULL;
	*src = NULL;
	*logged = NULL;
	if (limit > 0 && (size_t) limit < MIG_DEFAULT_MAX_ARCHIVE)
		h->max_archive_size = (size_t) limit;
	if (sqlite3_value_type(v) == SQLITE_NULL)
	{
		mig_err_set(err, "22004", "the migration folder path must not be NULL");
		return MIG_ERROR;
	}
	if (sqlite3_value_type(v) == SQLITE_BLOB)
	{
		const void *data = sqlite3_value_blob(v);
		int			len = sqlite3_value_bytes(v);

		if (data == NULL && len > 0)
		{
			mig_err_nomem(err);
			return MIG_NOMEM;
		}
		rc = mig_source_archive_cached(h, kept, data ? data : "", (size_t) len, src, &owned,
									   err);
	}
	else
	{
		const unsigned char *t = sqlite3_value_text(v);

		if (t == NULL)
		{
			mig_err_nomem(err);
			return MIG_NOMEM;
		}
		if (!json_text(t))
		{
			*path = *logged = (const char *) t;
			return MIG_OK;
		}
		rc = json_source(db, h, v, src, err);
	}
	if (rc != MIG_OK)
	{
		*logged = sqlite3_value_type(v) == SQLITE_BLOB ? "archive (unreadable)" :
			"JSON object (unreadable)";
		return rc;
	}
	h->source = *src;
	*path = mig_source_label(*src);
	*logged = mig_source_logged(*src);
	if (!owned)
		*src = NULL;			/* the cache's: not the caller's to free */
	return MIG_OK;
}
