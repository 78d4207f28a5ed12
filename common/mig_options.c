/*
 * mig_options.c -- the options text of migrate_apply(path, options) (and
 * migrate_run, migrate_plan, migrate_script), read the same way on every
 * engine:
 *
 *   'target=20240101120000, out_of_order=true, wait=0, if_locked=skip'
 *   'max_lock=ShareUpdateExclusiveLock, no_rewrite=true, max_size=100MB'
 *
 * Pairs key=value separated by commas or white space; booleans are
 * true/false, on/off, yes/no or 1/0; durations are a whole number with an
 * optional unit ms, s or min (a bare number is milliseconds, as for
 * PostgreSQL's lock_timeout).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mig_int.h"

enum { O_TARGET, O_OUT_OF_ORDER, O_IGNORE_MISSING, O_WAIT, O_IF_LOCKED,
O_LOCK_TIMEOUT, O_LOCK_RETRIES, O_PARTIAL, O_SCHEMA, O_MODE, O_VERBOSE,
O_ON_ERROR, O_CANARY, O_PARALLEL, O_MAX_LOCK, O_NO_REWRITE, O_MAX_SIZE, O_ONLY,
O_COUNT };

static const char *const keys[O_COUNT] = {
	"target", "out_of_order", "ignore_missing", "wait", "if_locked",
	"lock_timeout", "lock_retries", "partial", "schema", "mode", "verbose",
	"on_error", "canary", "parallel", "max_lock", "no_rewrite", "max_size", "only"
};

/* Which entry points take each option (MIG_USE_*). */
#define APPLY_LIKE (MIG_USE_APPLY)
static const unsigned uses[O_COUNT] = {
	APPLY_LIKE, APPLY_LIKE, APPLY_LIKE, APPLY_LIKE | MIG_USE_REPAIR | MIG_USE_ADOPT,
	APPLY_LIKE | MIG_USE_REPAIR | MIG_USE_ADOPT, APPLY_LIKE, APPLY_LIKE, MIG_USE_REPAIR,
	MIG_USE_ADOPT | MIG_USE_TENANT, MIG_USE_DRYRUN,
	APPLY_LIKE | MIG_USE_REPAIR | MIG_USE_ADOPT,
	MIG_USE_EACH, MIG_USE_EACH, MIG_USE_EACH,
	/* the impact policy (mig_impact.c) */
	APPLY_LIKE | MIG_USE_VALIDATE, APPLY_LIKE | MIG_USE_VALIDATE,
	APPLY_LIKE | MIG_USE_VALIDATE, MIG_USE_SCRIPT
};

/* The options an entry point takes, for the hint of an unknown one. */
static void
known_for(unsigned use, char *out, size_t size)
{
	size_t		n = 0,
				count = 0,
				k;

	for (k = 0; k < O_COUNT; k++)
		count += (uses[k] & use) != 0;
	out[0] = '\0';
	for (k = 0; k < O_COUNT; k++)
	{
		if (!(uses[k] & use))
			continue;
		n++;
		snprintf(out + strlen(out), size - strlen(out), "%s%s",
				 n == 1 ? "" : n == count ? " and " : ", ", keys[k]);
	}
}

static int
is(const char *v, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(v, word, n) == 0;
}

static int
boolean(const char *v, size_t n, int *out)
{
	static const char *const yes[] = {"true", "on", "yes", "1"};
	static const char *const no[] = {"false", "off", "no", "0"};

	for (int i = 0; i < 4; i++)
	{
		if (is(v, n, yes[i]))
			return *out = 1, 1;
		if (is(v, n, no[i]))
			return *out = 0, 1;
	}
	return 0;
}

/* A whole number of at most 9 digits followed by the unit, if any; the
 * digits must be followed by nothing but the unit. */
static int
number(const char *v, size_t n, long *out, size_t *digits)
{
	long		x = 0;
	size_t		i = 0;

	while (i < n && i < 9 && isdigit((unsigned char) v[i]))
		x = x * 10 + (v[i++] - '0');
	if (i == 0 || (i < n && isdigit((unsigned char) v[i])))
		return 0;
	*out = x;
	*digits = i;
	return 1;
}

/* "500ms", "10s", "2min", "250" (ms), or "forever" (MIG_WAIT_FOREVER, when
 * allowed). */
static int
duration(const char *v, size_t n, int forever_ok, long *ms)
{
	long		x;
	size_t		d;
	const char *unit;
	size_t		ulen;

	if (forever_ok && is(v, n, "forever"))
		return *ms = MIG_WAIT_FOREVER, 1;
	if (!number(v, n, &x, &d))
		return 0;
	unit = v + d;
	ulen = n - d;
	if (ulen == 0 || is(unit, ulen, "ms"))
		*ms = x;
	else if (is(unit, ulen, "s"))
		*ms = x * 1000;
	else if (is(unit, ulen, "min"))
		*ms = x * 60000;
	else
		return 0;
	return *ms <= INT_MAX;		/* what PostgreSQL's lock_timeout holds */
}

/* "100MB", "1GB", "500kB", "2TB" (units of 1024, as PostgreSQL's memory
 * settings, any case) or a bare number of bytes. */
static int
size_bytes(const char *v, size_t n, int64_t *out)
{
	static const char *const units[] = {"b", "kb", "mb", "gb", "tb"};
	int64_t		x = 0;
	size_t		i = 0;

	while (i < n && i < 15 && isdigit((unsigned char) v[i]))
		x = x * 10 + (v[i++] - '0');
	if (i == 0 || (i < n && isdigit((unsigned char) v[i])))
		return 0;
	if (i == n)
		return *out = x, 1;
	for (int u = 0; u < 5; u++)
		if (is(v + i, n - i, units[u]))
		{
			for (int k = 0; k < u; k++)
				x *= 1024;		/* 15 digits times 1024^4 fits */
			return *out = x, 1;
		}
	return 0;
}

static int
bad_value(mig_err *err, const char *key, const char *want, const char *v, size_t n)
{
	mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "option %s takes %s, not \"%.*s\"",
				key, want, (int) n, v);
	return MIG_ERROR;
}

static int
set_option(mig_arena *a, int k, const char *val, size_t vlen, mig_options *o,
		   mig_err *err)
{
	long		x;
	size_t		d;

	switch (k)
	{
		case O_TARGET:
			{
				char	   *copy = mig_arena_strndup(a, val, vlen),
						   *target;
				int			rc;

				if (copy == NULL)
				{
					mig_err_nomem(err);
					return MIG_NOMEM;
				}
				if ((rc = mig_version_arg(a, copy, "target ", &target, err)) != MIG_OK)
					return rc;
				o->target = target;
				return MIG_OK;
			}
		case O_OUT_OF_ORDER:
		case O_IGNORE_MISSING:
			if (!boolean(val, vlen, k == O_OUT_OF_ORDER ? &o->out_of_order : &o->ignore_missing))
				return bad_value(err, keys[k], "true or false", val, vlen);
			return MIG_OK;
		case O_WAIT:
			if (!duration(val, vlen, 1, &o->lock.wait_ms))
				return bad_value(err, keys[k], "a duration such as 0, 500ms, 30s or 2min, or forever",
								 val, vlen);
			return MIG_OK;
		case O_IF_LOCKED:
			if (is(val, vlen, "skip"))
				o->lock.skip_if_locked = 1;
			else if (is(val, vlen, "error"))
				o->lock.skip_if_locked = 0;
			else
				return bad_value(err, keys[k], "skip or error", val, vlen);
			return MIG_OK;
		case O_LOCK_TIMEOUT:
			if (!duration(val, vlen, 0, &o->lock.lock_timeout_ms))
				return bad_value(err, keys[k], "a duration such as 0 (none), 200ms or 5s",
								 val, vlen);
			return MIG_OK;
		case O_LOCK_RETRIES:
			if (!number(val, vlen, &x, &d) || d != vlen || x > 1000)
				return bad_value(err, keys[k], "a number of retries from 0 to 1000", val, vlen);
			o->lock.lock_retries = (int) x;
			return MIG_OK;
		case O_SCHEMA:
			if (vlen == 0 || vlen > 63 || (o->schema = mig_arena_strndup(a, val, vlen)) == NULL)
			{
				if (vlen == 0 || vlen > 63)
					return bad_value(err, keys[k], "a schema name of 1 to 63 bytes", val, vlen);
				mig_err_nomem(err);
				return MIG_NOMEM;
			}
			return MIG_OK;
		case O_VERBOSE:
			if (!boolean(val, vlen, &o->lock.verbose))
				return bad_value(err, keys[k], "true or false", val, vlen);
			return MIG_OK;
		case O_MODE:
			if (is(val, vlen, "run"))
				o->mode_run = 1;
			else if (is(val, vlen, "apply"))
				o->mode_run = 0;
			else
				return bad_value(err, keys[k], "run (what CALL migrate_run would do) or apply", val, vlen);
			return MIG_OK;
		case O_ON_ERROR:
			if (is(val, vlen, "continue"))
				o->on_error_continue = 1;
			else if (is(val, vlen, "stop"))
				o->on_error_continue = 0;
			else
				return bad_value(err, keys[k], "stop or continue", val, vlen);
			return MIG_OK;
		case O_CANARY:
		case O_PARALLEL:
			if (!number(val, vlen, &x, &d) || d != vlen || x > 10000 ||
				(k == O_PARALLEL && x < 1))
				return bad_value(err, keys[k], k == O_CANARY ?
								 "a number of tenants from 0 to 10000" :
								 "a number of workers from 1 to 10000", val, vlen);
			*(k == O_CANARY ? &o->canary : &o->parallel) = (int) x;
			return MIG_OK;
		case O_MAX_LOCK:
			{
				int			mode = mig_lock_parse(val, vlen);

				if (mode < 0)
				{
					bad_value(err, keys[k], "a lock mode as pg_locks names it", val, vlen);
					mig_err_hint(err, "The modes, weakest first: AccessShareLock, RowShareLock, RowExclusiveLock, ShareUpdateExclusiveLock, ShareLock, ShareRowExclusiveLock, ExclusiveLock, AccessExclusiveLock; or none.");
					return MIG_ERROR;
				}
				o->policy.max_lock = mode;
				o->policy_given |= MIG_POLICY_MAX_LOCK;
				return MIG_OK;
			}
		case O_NO_REWRITE:
			if (!boolean(val, vlen, &o->policy.no_rewrite))
				return bad_value(err, keys[k], "true or false", val, vlen);
			o->policy_given |= MIG_POLICY_NO_REWRITE;
			return MIG_OK;
		case O_MAX_SIZE:
			if (!size_bytes(val, vlen, &o->policy.max_bytes))
				return bad_value(err, keys[k], "a size such as 100MB, 1GB or 500kB", val, vlen);
			o->policy_given |= MIG_POLICY_MAX_SIZE;
			return MIG_OK;
		case O_ONLY:
			if (is(val, vlen, "flagged"))
				o->only_flagged = 1;
			else if (is(val, vlen, "all"))
				o->only_flagged = 0;
			else
				return bad_value(err, keys[k], "flagged or all", val, vlen);
			return MIG_OK;
		case O_PARTIAL:
			if (is(val, vlen, "discard"))
				o->partial_discard = 1;
			else if (is(val, vlen, "keep"))
				o->partial_discard = 0;
			else
				return bad_value(err, keys[k], "discard or keep", val, vlen);
			return MIG_OK;
	}
	return MIG_OK;
}

void
mig_options_default(mig_options *o)
{
	memset(o, 0, sizeof(*o));
	o->lock.wait_ms = -1;
	o->lock.skip_if_locked = 0;
	o->lock.lock_timeout_ms = -1;
	o->lock.lock_retries = -1;
	o->lock.verbose = -1;
}

int
mig_options_parse(mig_arena *a, const char *text, mig_options *o, mig_err *err)
{
	return mig_options_parse_for(a, text, MIG_USE_APPLY, o, err);
}

int
mig_options_parse_for(mig_arena *a, const char *text, unsigned use, mig_options *o,
					  mig_err *err)
{
	const char *p = text ? text : "";
	unsigned	seen = 0;

	mig_options_default(o);
	for (;;)
	{
		const char *key,
				   *val;
		size_t		klen,
					vlen;
		int			k,
					rc;

		while (*p && (isspace((unsigned char) *p) || *p == ','))
			p++;
		if (*p == '\0')
			return MIG_OK;
		key = p;
		while (*p && *p != '=' && *p != ',' && !isspace((unsigned char) *p))
			p++;
		klen = (size_t) (p - key);
		if (*p != '=')
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "option \"%.*s\" has no value", (int) klen, key);
			mig_err_hint(err, "Write options as key=value pairs, such as target=42, out_of_order=true.");
			return MIG_ERROR;
		}
		val = ++p;
		while (*p && *p != ',' && !isspace((unsigned char) *p))
			p++;
		vlen = (size_t) (p - val);
		for (k = 0; k < O_COUNT && !(strlen(keys[k]) == klen && strncmp(key, keys[k], klen) == 0); k++)
			;
		if (k == O_COUNT || !(uses[k] & use))
		{
			char		known[256];

			known_for(use, known, sizeof(known));
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "unknown option \"%.*s\"", (int) klen, key);
			mig_err_hint(err, "The options are %s.", known);
			return MIG_ERROR;
		}
		if (seen & (1u << k))
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "option \"%.*s\" is given twice", (int) klen, key);
			return MIG_ERROR;
		}
		seen |= 1u << k;
		if ((rc = set_option(a, k, val, vlen, o, err)) != MIG_OK)
			return rc;
	}
}

/* The options of each MIG_OPTIONS_* entry point, with the tenant's. */
static unsigned
uses_of(int which)
{
	switch (which)
	{
		case MIG_OPTIONS_APPLY:
			return MIG_USE_APPLY | MIG_USE_TENANT;
		case MIG_OPTIONS_REPAIR:
			return MIG_USE_REPAIR | MIG_USE_TENANT;
		case MIG_OPTIONS_ADOPT:
			/* adopt's schema= is where the other tool's table is (see
			 * mig_options_parse_for): adopt has no tenant of its own */
			return MIG_USE_ADOPT;
		case MIG_OPTIONS_DRYRUN:
			return MIG_USE_APPLY | MIG_USE_DRYRUN | MIG_USE_TENANT;
		case MIG_OPTIONS_SCRIPT:
			return MIG_USE_APPLY | MIG_USE_DRYRUN | MIG_USE_SCRIPT | MIG_USE_TENANT;
		case MIG_OPTIONS_VALIDATE:
			return MIG_USE_VALIDATE | MIG_USE_TENANT;
		case MIG_OPTIONS_EACH:
			return MIG_USE_APPLY | MIG_USE_EACH;
		default:
			return MIG_USE_TENANT;
	}
}

/* Whether key k is one the adapter acts on (left out of the rest). */
static int
outer_key(int k)
{
	return k == O_SCHEMA || k == O_ON_ERROR || k == O_CANARY || k == O_PARALLEL;
}

int
mig_options_split(const mig_host *h, const char *text, int which, mig_tenant_options *out,
				  char **rest, mig_err *err)
{
	mig_arena	a;
	mig_options o;
	const char *p = text;
	size_t		used = 0;
	int			rc;

	memset(out, 0, sizeof(*out));
	out->verbose = -1;
	*rest = NULL;
	mig_err_clear(err);
	mig_arena_init(&a, h);
	rc = mig_options_parse_for(&a, text, uses_of(which), &o, err);
	if (rc == MIG_OK)
	{
		if (o.schema && which != MIG_OPTIONS_ADOPT)
			snprintf(out->schema, sizeof(out->schema), "%s", o.schema);
		out->on_error_continue = o.on_error_continue;
		out->canary = o.canary;
		out->parallel = o.parallel;
		out->verbose = o.lock.verbose;
	}
	mig_arena_free(&a);
	if (rc != MIG_OK || text == NULL)
		return rc;
	/* the text again, valid now: each pair but the adapter's, as given */
	if ((*rest = h->alloc(h->ctx, strlen(text) + 1)) == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	for (;;)
	{
		const char *key;
		size_t		klen;
		int			k;

		while (*p && (isspace((unsigned char) *p) || *p == ','))
			p++;
		if (*p == '\0')
			break;
		key = p;
		while (*p && *p != '=')
			p++;
		klen = (size_t) (p - key);
		while (*p && *p != ',' && !isspace((unsigned char) *p))
			p++;
		for (k = 0; k < O_COUNT && !(strlen(keys[k]) == klen && strncmp(key, keys[k], klen) == 0); k++)
			;
		if (outer_key(k) && !(k == O_SCHEMA && which == MIG_OPTIONS_ADOPT))
			continue;
		if (used)
			(*rest)[used++] = ',';
		memcpy(*rest + used, key, (size_t) (p - key));
		used += (size_t) (p - key);
	}
	(*rest)[used] = '\0';
	return MIG_OK;
}
