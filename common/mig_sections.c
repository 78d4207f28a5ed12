/*
 * mig_sections.c -- the up and down sections of one-file migrations, and
 * the markers that ask for a migration to run outside a transaction.
 *
 *   dbmate  -- migrate:up [transaction:false]  ...  -- migrate:down ...
 *   goose   -- +goose Up  ...  -- +goose Down  ...  (annotations in any case,
 *           at the start of a line; StatementBegin/StatementEnd are
 *           comments to the engines, which split statements themselves;
 *           -- +goose NO TRANSACTION)
 *   sqlx    the whole file is the up script; -- no-transaction on line one
 *   morph   -- morph:nontransactional
 *
 * Markers are whole-line comments, found line by line; the SQL between
 * them is never split here.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mig_int.h"

/* One line without its terminator. */
typedef struct line {
	const char *p;
	size_t		n;
	size_t		off;			/* offset of the line in the text */
	size_t		next;			/* offset of the following line */
} line;

static int
next_line(const char *text, size_t len, size_t at, line *l)
{
	const char *nl;

	if (at >= len)
		return 0;
	l->p = text + at;
	l->off = at;
	nl = memchr(l->p, '\n', len - at);
	l->n = nl ? (size_t) (nl - l->p) : len - at;
	l->next = nl ? at + l->n + 1 : len;
	while (l->n > 0 && (l->p[l->n - 1] == '\r' || l->p[l->n - 1] == ' ' || l->p[l->n - 1] == '\t'))
		l->n--;
	return 1;
}

/* If the line is "--" then white space then word (any case), returns the
 * offset just past word within the line, else 0. */
static size_t
comment_word(const line *l, const char *word, int need_space)
{
	size_t		i = 2,
				w = strlen(word);

	if (l->n < 2 || l->p[0] != '-' || l->p[1] != '-')
		return 0;
	if (need_space && (i >= l->n || !isspace((unsigned char) l->p[i])))
		return 0;
	while (i < l->n && isspace((unsigned char) l->p[i]))
		i++;
	if (l->n - i < w || strncasecmp(l->p + i, word, w) != 0)
		return 0;
	i += w;
	if (i < l->n && !isspace((unsigned char) l->p[i]) && word[w - 1] != ':')
		return 0;
	return i;
}

/* The rest of the line after offset i, trimmed. */
static void
rest(const line *l, size_t i, const char **p, size_t *n)
{
	while (i < l->n && isspace((unsigned char) l->p[i]))
		i++;
	*p = l->p + i;
	*n = l->n - i;
}

static int
is(const char *p, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

static int
fail(mig_err *err, const mig_script *where, size_t off, const char *fmt, const char *arg)
{
	mig_script	s = *where;

	mig_err_set(err, MIG_SQLSTATE_BAD_NAME, fmt, s.file, arg);
	err->offset = (long) off;
	s.sql = s.text;
	s.len = s.text_len;
	mig_err_at(err, &s);
	return MIG_ERROR;
}

int
mig_sections_parse(const char *text, size_t len, size_t start, int layout,
				   const mig_script *where, mig_sections *sec, mig_err *err)
{
	line		l;
	size_t		at = start;
	int			goose = 0,
				dbmate = 0,
				first = 1;
	long		up_line = -1,
				down_line = -1;

	memset(sec, 0, sizeof(*sec));
	sec->up_off = start;
	sec->up_end = len;
	while (next_line(text, len, at, &l))
	{
		size_t		i;
		const char *arg;
		size_t		argn;

		at = l.next;
		if (first && comment_word(&l, "no-transaction", 0) == l.n && l.n > 0)
		{
			sec->no_txn = sec->down_no_txn = "-- no-transaction";
			sec->no_txn_off = l.off;
		}
		first = 0;
		if ((i = comment_word(&l, "morph:nontransactional", 0)) == l.n && l.n > 0)
		{
			sec->no_txn = sec->down_no_txn = "-- morph:nontransactional";
			sec->no_txn_off = l.off;
		}
		if (layout != MIG_LAYOUT_SINGLE)
			continue;
		if ((i = comment_word(&l, "+goose", 1)) != 0)
		{
			goose = 1;
			rest(&l, i, &arg, &argn);
			if (is(arg, argn, "up"))
			{
				if (up_line >= 0)
					return fail(err, where, l.off, "migration file \"%s\" has a second %s annotation", "-- +goose Up");
				up_line = (long) l.off;
				sec->up_off = l.next;
			}
			else if (is(arg, argn, "down"))
			{
				if (up_line < 0)
					return fail(err, where, l.off, "migration file \"%s\" has %s before -- +goose Up", "-- +goose Down");
				if (down_line >= 0)
					return fail(err, where, l.off, "migration file \"%s\" has a second %s annotation", "-- +goose Down");
				down_line = (long) l.off;
				sec->up_end = l.off;
				sec->down_off = l.next;
			}
			else if (is(arg, argn, "no transaction"))
			{
				/* goose runs both sections of such a file outside a
				 * transaction (pressly/goose, migration_sql.go,
				 * getSQLStatements: NO TRANSACTION clears one useTx flag
				 * of the whole file) */
				sec->no_txn = sec->down_no_txn = "-- +goose NO TRANSACTION";
				sec->no_txn_off = l.off;
			}
			else if (!is(arg, argn, "statementbegin") && !is(arg, argn, "statementend"))
			{
				char		shown[80];

				snprintf(shown, sizeof(shown), "%.*s", (int) (l.n < 60 ? l.n : 60), l.p);
				return fail(err, where, l.off, "migration file \"%s\" has the goose annotation \"%s\", which is not supported",
							shown);
			}
		}
		else if ((i = comment_word(&l, "migrate:up", 0)) != 0 ||
				 (i = comment_word(&l, "migrate:down", 0)) != 0)
		{
			int			up = comment_word(&l, "migrate:up", 0) != 0;

			dbmate = 1;
			rest(&l, i, &arg, &argn);
			if (up ? up_line >= 0 : down_line >= 0)
				return fail(err, where, l.off, "migration file \"%s\" has a second %s line",
							up ? "-- migrate:up" : "-- migrate:down");
			if (!up && up_line < 0)
				return fail(err, where, l.off, "migration file \"%s\" has %s before -- migrate:up", "-- migrate:down");
			if (up)
			{
				up_line = (long) l.off;
				sec->up_off = l.next;
			}
			else
			{
				down_line = (long) l.off;
				sec->up_end = l.off;
				sec->down_off = l.next;
			}
			/* dbmate reads the options of each section's own line
			 * (amacneil/dbmate, pkg/dbmate/migration.go): transaction:false
			 * on "-- migrate:down" concerns the down script only */
			if (argn && strstr(arg, "transaction:false"))
			{
				if (up)
				{
					sec->no_txn = "-- migrate:up transaction:false";
					sec->no_txn_off = l.off;
				}
				else
					sec->down_no_txn = "-- migrate:down transaction:false";
			}
		}
	}
	if (goose && dbmate)
		return fail(err, where, start, "migration file \"%s\" mixes goose and dbmate markers%s", "");
	if ((goose || dbmate) && up_line < 0)
		return fail(err, where, start, "migration file \"%s\" has no %s line",
					goose ? "-- +goose Up" : "-- migrate:up");
	sec->format = goose ? MIG_FORMAT_GOOSE : dbmate ? MIG_FORMAT_DBMATE : MIG_FORMAT_PLAIN;
	sec->has_down = down_line >= 0;
	if (sec->has_down)
		sec->down_end = len;
	return MIG_OK;
}
