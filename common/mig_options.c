/*
 * mig_options.c -- the options text of migrate_apply(path, options), read
 * the same way on every engine:
 *
 *   'target=20240101120000, out_of_order=true, ignore_missing=on'
 *
 * Pairs key=value separated by commas or white space; booleans are
 * true/false, on/off, yes/no or 1/0.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mig_int.h"

static const char known[] = "target, out_of_order, ignore_missing";

static int
boolean(const char *v, size_t n, int *out)
{
	static const char *const yes[] = {"true", "on", "yes", "1"};
	static const char *const no[] = {"false", "off", "no", "0"};

	for (int i = 0; i < 4; i++)
	{
		if (strlen(yes[i]) == n && strncasecmp(v, yes[i], n) == 0)
			return *out = 1, 1;
		if (strlen(no[i]) == n && strncasecmp(v, no[i], n) == 0)
			return *out = 0, 1;
	}
	return 0;
}

int
mig_options_parse(mig_arena *a, const char *text, mig_options *o, mig_err *err)
{
	const char *p = text ? text : "";
	unsigned	seen = 0;

	memset(o, 0, sizeof(*o));
	for (;;)
	{
		const char *key,
				   *val;
		size_t		klen,
					vlen;
		unsigned	bit;

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
		if (klen == 6 && strncmp(key, "target", 6) == 0)
		{
			char	   *copy = mig_arena_strndup(a, val, vlen),
					   *target;
			int			rc;

			bit = 1;
			if (copy == NULL)
			{
				mig_err_nomem(err);
				return MIG_NOMEM;
			}
			if ((rc = mig_version_arg(a, copy, "target ", &target, err)) != MIG_OK)
				return rc;
			o->target = target;
		}
		else if ((klen == 12 && strncmp(key, "out_of_order", 12) == 0 && (bit = 2)) ||
				 (klen == 14 && strncmp(key, "ignore_missing", 14) == 0 && (bit = 4)))
		{
			if (!boolean(val, vlen, bit == 2 ? &o->out_of_order : &o->ignore_missing))
			{
				mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "option %.*s takes true or false, not \"%.*s\"",
							(int) klen, key, (int) vlen, val);
				return MIG_ERROR;
			}
		}
		else
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "unknown option \"%.*s\"", (int) klen, key);
			mig_err_hint(err, "The options are %s.", known);
			return MIG_ERROR;
		}
		if (seen & bit)
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "option \"%.*s\" is given twice", (int) klen, key);
			return MIG_ERROR;
		}
		seen |= bit;
	}
}
