/*
 * sq_exec.c -- scripts in the unit of work of the SQLite host: each
 * statement's end found with SQLite's tokenizer and its leading keyword
 * checked before anything runs (sq_check_script), then the script run in
 * the transaction the lock opened, one prepared statement at a time with
 * explicit lengths (sq_exec).  The helpers here also serve the runner of
 * migrations outside a transaction (sq_outside.c).
 */
#include <string.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

/* ---- scripts ---- */

/*
 * A NUL-terminated view of s with the same offsets: s->sql itself when a
 * NUL follows it (mig.h: sql[len] can be read), else a copy in *copy (from
 * sqlite3_malloc64, freed by the caller).  NULL when out of memory.
 *
 * Statements are prepared with a length that takes in that NUL.  Given a
 * length whose last byte is not a NUL, sqlite3_prepare parses a copy of
 * the text it was given (prepare.c), so preparing the statements of a
 * script one after the other copied the rest of the script each time:
 * quadratic in the size of the file (a 48 MB file of 1,215 INSERTs took
 * 65 s against 0.2 s in the sqlite3 shell).  A section that another
 * follows (the up section of a dbmate or goose file) is copied once.
 */
const char *
sq_script_text(const mig_script *s, char **copy)
{
	*copy = NULL;
	if (s->sql[s->len] == '\0')
		return s->sql;
	if ((*copy = sqlite3_malloc64(s->len + 1)) == NULL)
		return NULL;
	memcpy(*copy, s->sql, s->len);
	(*copy)[s->len] = '\0';
	return *copy;
}

/*
 * The offset just past the statement that starts at sql[start]: the first
 * ';' at which sqlite3_complete() -- SQLite's own tokenizer, which knows
 * strings, comments and trigger bodies -- finds the text from start
 * complete, or len when none does (a copy of each candidate, NUL-ended,
 * goes through sc).  Nothing is prepared, so this works on statements
 * that no longer would.  0 when out of memory.
 */
size_t
sq_statement_end(const char *sql, size_t start, size_t len, sq_scratch *sc)
{
	const char *semi;

	for (size_t i = start; i < len; i = (size_t) (semi - sql) + 1)
	{
		size_t		n;

		if ((semi = memchr(sql + i, ';', len - i)) == NULL)
			break;
		n = (size_t) (semi - sql) + 1 - start;
		if (n + 1 > sc->size)
		{
			size_t		size = n + 1 > 2 * sc->size ? n + 1 : 2 * sc->size;
			char	   *grown = sqlite3_realloc64(sc->buf, size);

			if (grown == NULL)
				return 0;
			sc->buf = grown;
			sc->size = size;
		}
		memcpy(sc->buf, sql + start, n);
		sc->buf[n] = '\0';
		if (sqlite3_complete(sc->buf))
			return start + n;
	}
	return len;
}

/* 1 when the word at w (wlen bytes) is kw, in any case. */
int
sq_word_is(const char *w, size_t wlen, const char *kw)
{
	return strlen(kw) == wlen && sqlite3_strnicmp(w, kw, (int) wlen) == 0;
}

/* Refuses the statement at sql[0..len) when it controls transactions. */
static int
refuse_txn_control(const mig_script *s, size_t start, size_t len, mig_err *err)
{
	size_t		wlen,
				at = mig_first_word(s->sql + start, len, 0, &wlen);

	if (!mig_is_txn_control(s->sql + start + at, wlen))
		return MIG_OK;
	mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
				"migration files must not control transactions: %.*s is not allowed",
				(int) wlen, s->sql + start + at);
	mig_err_detail(err, "Each call applies its migrations in one transaction, so BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE, VACUUM, ATTACH and DETACH cannot run inside them.");
	err->offset = (long) (start + at);
	return MIG_ERROR;
}

/*
 * Finds each statement's end with the tokenizer (sq_statement_end) and checks
 * its leading keyword, before anything runs.  A script marked to run
 * outside a transaction may hold any statement; an up script so marked is
 * refused here inside the caller's transaction and where no lock can be
 * had (a shared in-memory database), while a down script so marked only
 * runs when its migration is rolled back, and is refused then, if at all.
 */
int
sq_check_script(void *ctx, const mig_script *s, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sq_scratch	sc = {NULL, 0};
	size_t		start,
				end;
	int			rc = MIG_OK;

	if (s->nontransactional)
	{
		if (s->down)
			return MIG_OUTSIDE;
		if (c->locked ? c->in_txn : !sqlite3_get_autocommit(c->db))
		{
			mig_err_set(err, "25001",
						"it must run outside a transaction, and %s was called inside one", c->fn);
			mig_err_detail(err, "It is marked to run outside a transaction (%s); nothing was applied.",
						   s->nontransactional);
			mig_err_hint(err, "Call %s in autocommit mode, with no transaction open.", c->fn);
			return MIG_ERROR;
		}
		if (sq_lock_target(c, NULL, 0) == LOCK_SHARED_MEMORY)
			return sq_refuse_shared_memory(c, s, err);
		return MIG_OUTSIDE;
	}
	for (start = 0; rc == MIG_OK && start < s->len; start = end)
	{
		if ((end = sq_statement_end(s->sql, start, s->len, &sc)) == 0)
		{
			mig_err_nomem(err);
			rc = MIG_NOMEM;
		}
		else
			rc = refuse_txn_control(s, start, end - start, err);
	}
	sqlite3_free(sc.buf);
	return rc;
}

/* Fills err for statement at s->sql[at] that failed with SQLite result rc
 * (its message, the offset of the failing token or of the statement). */
int
sq_stmt_failed(sq_ctx *c, const mig_script *s, size_t at, int rc, mig_err *err)
{
	int			off = sqlite3_error_offset(c->db);
	size_t		wlen,
				kw = mig_first_word(s->sql + at, s->len - at, 0, &wlen);

	if ((rc & 0xff) == SQLITE_NOMEM)
		mig_err_nomem(err);
	else
		mig_err_set(err, (rc & 0xff) == SQLITE_INTERRUPT ? SQ_SQLSTATE_CANCELED : "42000",
					"%s", sqlite3_errmsg(c->db));
	err->offset = (long) at + (off >= 0 ? off : (long) kw);
	return err->code;
}

/* Prepares the statement at text[at] (text: sq_script_text of s) into *st,
 * NULL when only white space and comments are left, and sets *next to the
 * offset past it. */
int
sq_prepare_at(sq_ctx *c, const mig_script *s, const char *text, size_t at,
		   sqlite3_stmt **st, size_t *next, mig_err *err)
{
	const char *tail = NULL;
	int			rc = sqlite3_prepare_v3(c->db, text + at, (int) (s->len - at + 1), 0, st,
										&tail);

	if (rc != SQLITE_OK)
	{
		sqlite3_finalize(*st);
		*st = NULL;
		return sq_stmt_failed(c, s, at, rc, err);
	}
	/* no progress cannot happen: NUL bytes are refused */
	*next = tail && tail > text + at && tail <= text + s->len ? (size_t) (tail - text) : s->len;
	return MIG_OK;
}

/* Steps st to its end and resets it: SQLITE_OK or the error code (the
 * connection's error message stays the statement's). */
int
sq_step_all(sqlite3_stmt *st)
{
	int			rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Runs the script in the transaction lock() opened, one statement at a
 * time, refusing transaction control. */
int
sq_exec(void *ctx, const mig_script *s, mig_err *err)
{
	sq_ctx	   *c = ctx;
	char	   *copy;
	const char *text = sq_script_text(s, &copy);
	size_t		at = 0,
				next = 0;
	int			rc = MIG_OK,
				src;

	if (text == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	for (; rc == MIG_OK && at < s->len; at = next)
	{
		sqlite3_stmt *st = NULL;

		rc = sq_prepare_at(c, s, text, at, &st, &next, err);
		if (rc == MIG_OK && st)
			rc = refuse_txn_control(s, at, next - at, err);
		if (rc == MIG_OK && st && (src = sq_step_all(st)) != SQLITE_OK)
			rc = sq_stmt_failed(c, s, at, src, err);
		sqlite3_finalize(st);
	}
	sqlite3_free(copy);
	return rc;
}
