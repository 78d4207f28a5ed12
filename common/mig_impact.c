/*
 * mig_impact.c -- what the pending migrations will do to the live
 * database, statement by statement, and the policy that refuses the risky
 * ones before anything runs:
 *
 *   SELECT * FROM migrate_impact('db/migrations');
 *   SELECT migrate_apply('db/migrations', 'no_rewrite=true, max_size=100MB');
 *   SELECT migrate_script('db/migrations', 'only=flagged, no_rewrite=true');
 *
 * The engine's analysis is the host's (host->impact: PostgreSQL's parser
 * and lock rules, SQLite's rebuilds and scans); here are the order of the
 * scripts, the statements' lines, and the policy shared by both engines.
 * A statement breaks the policy when the relation it touches is larger
 * than max_size and it rewrites it (no_rewrite=true) or takes a lock on it
 * stronger than max_lock.  A migration accepts such a risk with a comment
 * line that names the risk and the relation, so that accepting one
 * rewrite never accepts another (a later edit that rewrites a second
 * table is refused again):
 *
 *   -- migrate:accept rewrite public.users
 *   -- migrate:accept lock,rewrite users, orders
 *
 * A name without a schema matches the relation in any schema; case is
 * ignored.  The marker is part of the file, so of its checksum: the risk
 * accepted is reviewed with the migration and recorded with it.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mig_int.h"

/* pg_locks.mode of each MIG_LOCK_* (PostgreSQL: lockdefs.h, lock.c
 * lock_mode_names), weakest first. */
static const char *const lock_names[MIG_LOCK_MODES] = {
	NULL, "AccessShareLock", "RowShareLock", "RowExclusiveLock",
	"ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock",
	"ExclusiveLock", "AccessExclusiveLock"
};

const char *
mig_lock_name(int mode)
{
	return mode > 0 && mode < MIG_LOCK_MODES ? lock_names[mode] : NULL;
}

int
mig_lock_parse(const char *s, size_t n)
{
	if (n == 4 && strncasecmp(s, "none", 4) == 0)
		return MIG_LOCK_NONE;
	for (int m = 1; m < MIG_LOCK_MODES; m++)
		if (strlen(lock_names[m]) == n && strncasecmp(s, lock_names[m], n) == 0)
			return m;
	return -1;
}

int
mig_policy_of(const mig_host *h, const mig_options *o, mig_policy *pol)
{
	*pol = h->policy;
	if (o->policy_given & MIG_POLICY_MAX_LOCK)
		pol->max_lock = o->policy.max_lock;
	if (o->policy_given & MIG_POLICY_NO_REWRITE)
		pol->no_rewrite = o->policy.no_rewrite;
	if (o->policy_given & MIG_POLICY_MAX_SIZE)
		pol->max_bytes = o->policy.max_bytes;
	if (pol->max_bytes < 0)
		pol->max_bytes = 0;
	return (pol->max_lock > MIG_LOCK_NONE && pol->max_lock < MIG_LOCK_ACCESS_EXCLUSIVE) ||
		pol->no_rewrite;
}

/* ---- what a statement breaks ---- */

enum { BREAKS_REWRITE = 1, BREAKS_LOCK = 2 };

/* The parts of pol that row r breaks (BREAKS_*), 0 when none.  A relation
 * created earlier in the plan (NULL) or of unknown size is spared. */
static int
breaks(const mig_policy *pol, const mig_impact_row *r)
{
	int			what = 0;

	if (r->relation == NULL || r->bytes < 0 || r->bytes <= pol->max_bytes)
		return 0;
	if (pol->no_rewrite && r->rewrites)
		what |= BREAKS_REWRITE;
	if (pol->max_lock > MIG_LOCK_NONE && r->lock > pol->max_lock)
		what |= BREAKS_LOCK;
	return what;
}

/* "12 MB", rounded as PostgreSQL's pg_size_pretty rounds (dbsize.c): a
 * unit from ten of it on, halves rounded away from zero. */
static void
size_text(int64_t bytes, char *out, size_t size)
{
	static const char *const units[] = {"kB", "MB", "GB", "TB", "PB"};
	int64_t		x = bytes;
	const int64_t limit = 10 * 1024,
				limit2 = limit * 2 - 1;

	if (x < limit)
	{
		snprintf(out, size, "%lld bytes", (long long) x);
		return;
	}
	x >>= 9;					/* one bit more, for the rounding */
	for (int u = 0;; u++)
	{
		if (x < limit2 || u == 4)
		{
			snprintf(out, size, "%lld %s", (long long) ((x + 1) / 2), units[u]);
			return;
		}
		x >>= 10;
	}
}

/* "12 MB, 200000 rows" (SQLite: "300 pages, 1200 kB, 200000 rows"). */
static void
relation_size(const mig_impact_row *r, char *out, size_t size)
{
	char		sz[32];

	size_text(r->bytes, sz, sizeof(sz));
	if (r->pages >= 0)
		snprintf(out, size, "%lld page%s, %s", (long long) r->pages,
				 r->pages == 1 ? "" : "s", sz);
	else
		snprintf(out, size, "%s", sz);
	if (r->rows >= 0)
		snprintf(out + strlen(out), size - strlen(out), ", %lld row%s",
				 (long long) r->rows, r->rows == 1 ? "" : "s");
}

/* Whether ASCII names a and b are equal, ignoring case and double quotes. */
static int
same_name(const char *a, size_t an, const char *b, size_t bn)
{
	size_t		i = 0,
				j = 0;

	for (;;)
	{
		while (i < an && a[i] == '"')
			i++;
		while (j < bn && b[j] == '"')
			j++;
		if (i == an || j == bn)
			return i == an && j == bn;
		if (tolower((unsigned char) a[i]) != tolower((unsigned char) b[j]))
			return 0;
		i++;
		j++;
	}
}

/* Whether marker name (n bytes) names relation: the whole schema-qualified
 * name, or without a dot its last part. */
static int
names(const char *name, size_t n, const char *relation)
{
	const char *dot = strrchr(relation, '.');

	if (memchr(name, '.', n) || dot == NULL)
		return same_name(name, n, relation, strlen(relation));
	return same_name(name, n, dot + 1, strlen(dot + 1));
}

/* Fills err for a malformed marker at offset off of text. */
static int
bad_marker(const mig_script *s, const char *text, size_t len, size_t off, const char *why,
		   mig_err *err)
{
	mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "malformed -- migrate:accept line: %s", why);
	mig_err_hint(err, "Write it as -- migrate:accept rewrite public.users, or lock,rewrite and several relations separated by commas.");
	snprintf(err->context, sizeof(err->context), "migration %s (%s), line %d",
			 s->version, s->file, mig_line_at(text, len, off));
	return MIG_ERROR;
}

/*
 * Sets *ok when every part what (BREAKS_*) of the risk on relation is
 * accepted by a "-- migrate:accept" line of s's file (the whole file: a
 * dbmate or goose file may carry it above its sections).  A malformed
 * marker is an error naming its line.
 */
static int
accepted(const mig_script *s, const char *relation, int what, int *ok, mig_err *err)
{
	const char *text = s->text ? s->text : s->sql;
	size_t		len = s->text ? s->text_len : s->len;
	int			got = 0;

	for (size_t at = 0; at < len;)
	{
		const char *nl = memchr(text + at, '\n', len - at);
		size_t		end = nl ? (size_t) (nl - text) : len,
					i = at,
					line = at;
		int			kinds = 0;

		at = nl ? end + 1 : len;
		while (i < end && (text[i] == ' ' || text[i] == '\t'))
			i++;
		if (end - i < 2 || text[i] != '-' || text[i + 1] != '-')
			continue;
		i += 2;
		while (i < end && (text[i] == ' ' || text[i] == '\t'))
			i++;
		if (end - i < 14 || strncasecmp(text + i, "migrate:accept", 14) != 0)
			continue;
		i += 14;
		if (i < end && !isspace((unsigned char) text[i]))
			continue;			/* another word */
		/* the risks: rewrite, lock, or both separated by a comma */
		for (;;)
		{
			size_t		w;

			while (i < end && isspace((unsigned char) text[i]))
				i++;
			for (w = i; w < end && isalpha((unsigned char) text[w]); w++)
				;
			if (w - i == 7 && strncasecmp(text + i, "rewrite", 7) == 0)
				kinds |= BREAKS_REWRITE;
			else if (w - i == 4 && strncasecmp(text + i, "lock", 4) == 0)
				kinds |= BREAKS_LOCK;
			else
				return bad_marker(s, text, len, line, "it names no risk (rewrite or lock)", err);
			i = w;
			if (i < end && text[i] == ',')
			{
				i++;
				continue;
			}
			break;
		}
		/* the relations */
		{
			int			any = 0;

			for (;;)
			{
				size_t		w;

				while (i < end && (isspace((unsigned char) text[i]) || text[i] == ','))
					i++;
				if (i >= end)
					break;
				for (w = i; w < end && !isspace((unsigned char) text[w]) && text[w] != ','; w++)
					;
				any = 1;
				if (names(text + i, w - i, relation))
					got |= kinds;
				i = w;
			}
			if (!any)
				return bad_marker(s, text, len, line, "it names no relation", err);
		}
	}
	*ok = (got & what) == what;
	return MIG_OK;
}

/* Fills err with the refusal of row r (what: BREAKS_*) by pol. */
static void
refusal(const mig_policy *pol, const mig_impact_row *r, int what, const mig_script *s,
		mig_err *err)
{
	char		size[96],
				limit[32],
				rule[128] = "";
	const char *lock = mig_lock_name(r->lock);

	relation_size(r, size, sizeof(size));
	size_text(pol->max_bytes, limit, sizeof(limit));
	if (what & BREAKS_REWRITE)
		mig_err_set(err, MIG_SQLSTATE_POLICY,
					"the migration policy refuses \"%s\": it rewrites %s (%s)%s%s",
					r->statement, r->relation, size, lock ? " under " : "", lock ? lock : "");
	else
		mig_err_set(err, MIG_SQLSTATE_POLICY,
					"the migration policy refuses \"%s\": it takes %s on %s (%s)",
					r->statement, lock, r->relation, size);
	if (what & BREAKS_LOCK)
		snprintf(rule, sizeof(rule), "a lock stronger than %s (max_lock=%s)",
				 mig_lock_name(pol->max_lock), mig_lock_name(pol->max_lock));
	mig_err_detail(err, "The policy refuses, on a relation larger than %s (max_size=), %s%s%s.",
				   limit, what & BREAKS_REWRITE ? "a rewrite (no_rewrite=true)" : "",
				   what == (BREAKS_REWRITE | BREAKS_LOCK) ? " and " : "",
				   what & BREAKS_LOCK ? rule : "");
	mig_err_hint(err, "%s%sTo run it anyway, accept the risk in the migration with the line -- migrate:accept %s%s%s %s, or run it off-hours: migrate_script with only=flagged writes the migrations the policy refuses as a script.",
				 r->advice ? r->advice : "", r->advice ? " " : "",
				 what & BREAKS_LOCK ? "lock" : "",
				 what == (BREAKS_REWRITE | BREAKS_LOCK) ? "," : "",
				 what & BREAKS_REWRITE ? "rewrite" : "", r->relation);
	err->offset = (long) r->offset;
	mig_err_at(err, s);
}

/* ---- a pass over the pending scripts ---- */

void
mig_impact_begin(mig_impact_pass *ip, const mig_host *h, const mig_options *o)
{
	memset(ip, 0, sizeof(*ip));
	ip->h = h;
	ip->first = 1;
	ip->active = mig_policy_of(h, o, &ip->pol);
}

/* host->impact's row callback: the core's fields, the policy, then the
 * caller's callback. */
static int
impact_row(void *arg, mig_impact_row *r)
{
	mig_impact_pass *ip = arg;
	mig_err		e;
	int			what,
				ok = 1,
				rc;

	if ((int64_t) r->offset < ip->done_before)
		return MIG_OK;			/* ran before the migration stopped */
	r->version = ip->s->version;
	r->file = ip->s->file;
	r->line = mig_script_line(ip->s, r->offset);
	r->policy = NULL;
	what = ip->active ? breaks(&ip->pol, r) : 0;
	if (what)
	{
		mig_err_clear(&e);
		if ((rc = accepted(ip->s, r->relation, what, &ok, &e)) != MIG_OK)
		{
			*ip->err = e;
			return rc;
		}
		r->policy = ok ? "accepted" : "refused";
	}
	if (!ok)
	{
		ip->refused++;
		refusal(&ip->pol, r, what, ip->s, &e);
		if (ip->stop)
		{
			mig_err_detail(&e, "Nothing was applied.");
			*ip->err = e;
			return MIG_ERROR;
		}
		if (ip->on_refusal && (rc = ip->on_refusal(ip->refusal_arg, r, &e)) != MIG_OK)
		{
			if (rc == MIG_NOMEM)
				mig_err_nomem(ip->err);
			return rc;
		}
	}
	if (ip->cb && (rc = ip->cb(ip->arg, r)) != MIG_OK)
	{
		if (rc == MIG_NOMEM && ip->err->code != MIG_NOMEM)
			mig_err_nomem(ip->err);
		return rc;
	}
	return MIG_OK;
}

int
mig_impact_script(mig_impact_pass *ip, const mig_entry *e, const mig_script *s,
				  mig_err *err)
{
	int			rc;

	ip->s = s;
	ip->refused = 0;
	ip->err = err;
	ip->done_before = e && e->partial ? e->partial->next_offset : 0;
	if (ip->h->impact == NULL)
		return MIG_OK;
	rc = ip->h->impact(ip->h->ctx, s, ip->first, impact_row, ip, err);
	ip->first = 0;
	if (rc == MIG_NOMEM && err->code != MIG_NOMEM)
		mig_err_nomem(err);
	return rc;
}

void
mig_impact_end(mig_impact_pass *ip)
{
	mig_err		ignored;

	if (ip->h && ip->h->impact && !ip->first)
		(void) ip->h->impact(ip->h->ctx, NULL, 0, NULL, NULL, &ignored);
	ip->first = 1;
}

/* ---- apply's check, before anything runs ---- */

int
mig_policy_enforce(const mig_host *h, const char *dir, mig_plan *p, const mig_options *o,
				   mig_err *err)
{
	mig_impact_pass ip;
	int			rc = MIG_OK;

	mig_impact_begin(&ip, h, o);
	if (!ip.active || h->impact == NULL)
		return MIG_OK;
	ip.stop = 1;
	for (size_t i = 0; rc == MIG_OK && i < p->entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p->entries, mig_entry, i);
		mig_text	tmp[2] = {{0}, {0}};
		const mig_text *up = NULL;
		mig_script	s,
					ds;

		if (!mig_to_apply(e, o))
			continue;
		if (e->file->go)
			break;				/* apply stops before it */
		rc = mig_entry_scripts(h, dir, e, tmp, &up, &s, &ds, err);
		if (rc == MIG_OK)
			rc = mig_impact_script(&ip, e, &s, err);
		mig_text_free(h, &tmp[0]);
		mig_text_free(h, &tmp[1]);
	}
	mig_impact_end(&ip);
	return rc;
}

/* ---- migrate_impact ---- */

typedef struct impact_arg {
	mig_impact_pass ip;
} impact_arg;

static int
impact_begin(void *arg, const mig_options *o, mig_err *err)
{
	impact_arg *ia = arg;
	mig_impact_cb cb = ia->ip.cb;
	void	   *cbarg = ia->ip.arg;

	(void) err;
	mig_impact_begin(&ia->ip, ia->ip.h, o);
	ia->ip.cb = cb;
	ia->ip.arg = cbarg;
	return MIG_OK;
}

static int
impact_one(void *arg, const mig_entry *e, const mig_text *up, const mig_script *s,
		   const mig_script *ds, mig_err *err)
{
	(void) up;
	(void) ds;
	return mig_impact_script(&((impact_arg *) arg)->ip, e, s, err);
}

int
mig_impact(const mig_host *h, const char *path, const char *options,
		   mig_impact_cb cb, void *arg, mig_err *err)
{
	impact_arg	ia;
	int			rc;

	mig_err_clear(err);
	if (h->impact == NULL)
	{
		mig_err_set(err, "0A000", "impact analysis is not available here");
		return MIG_ERROR;
	}
	memset(&ia, 0, sizeof(ia));
	ia.ip.h = h;
	ia.ip.first = 1;
	ia.ip.cb = cb;
	ia.ip.arg = arg;
	rc = mig_each_pending(h, path, options, MIG_USE_APPLY, impact_begin, impact_one, &ia, err);
	mig_impact_end(&ia.ip);
	return rc;
}
