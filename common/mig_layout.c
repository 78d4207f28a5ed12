/*
 * mig_layout.c -- which file names are migrations, and in what order.
 *
 * Layout: golang-migrate / morph / Mattermost,
 *   {version}_{name}.up.sql   and optionally   {version}_{name}.down.sql
 * where version is a run of digits of any width.  Versions are compared
 * as numbers (9 < 10 < 000011), never as strings: the canonical form drops
 * leading zeros, so the order is by length, then bytes.  Dotted versions
 * (1.2.10) compare part by part; the canonical form keeps the dots.
 */
#include <string.h>

#include "mig_int.h"

#define MIG_VERSION_MAX 200		/* digits; a longer run is not a version */

const char	mig_layout_hint[] =
"Migration files are named {version}_{name}.up.sql, with an optional "
"{version}_{name}.down.sql, where version is a number.";

/* Validates UTF-8 and refuses control characters in a file name. */
static int
name_printable(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p)
	{
		int			n;

		if (*p < 0x20 || *p == 0x7f)
			return 0;
		if (*p < 0x80)
		{
			p++;
			continue;
		}
		n = (*p >= 0xf0 && *p <= 0xf4) ? 3 : (*p >= 0xe0) ? 2 : (*p >= 0xc2) ? 1 : -1;
		if (n < 0 || *p > 0xf4)
			return 0;
		for (p++; n > 0; n--, p++)
			if ((*p & 0xc0) != 0x80)
				return 0;
	}
	return 1;
}

static int
ends_with(const char *s, size_t len, const char *suffix)
{
	size_t		n = strlen(suffix);

	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int
mig_parse_name(mig_arena *a, const char *file, mig_name *out)
{
	size_t		len = strlen(file),
				digits = 0,
				zeros = 0,
				tail;
	const char *name;

	while (file[digits] >= '0' && file[digits] <= '9')
		digits++;
	if (digits == 0 || digits > MIG_VERSION_MAX || file[digits] != '_')
		return 0;
	if (ends_with(file, len, ".up.sql"))
	{
		out->kind = MIG_KIND_UP;
		tail = strlen(".up.sql");
	}
	else if (ends_with(file, len, ".down.sql"))
	{
		out->kind = MIG_KIND_DOWN;
		tail = strlen(".down.sql");
	}
	else
		return 0;
	if (digits + 1 + tail > len || !name_printable(file))
		return 0;
	while (zeros + 1 < digits && file[zeros] == '0')
		zeros++;
	name = file + digits + 1;
	out->version = mig_arena_strndup(a, file + zeros, digits - zeros);
	out->name = mig_arena_strndup(a, name, len - tail - (digits + 1));
	if (out->version == NULL || out->name == NULL)
		return -1;
	return 1;
}

/* Length of the numeric part starting at s (up to '.' or the end). */
static size_t
part_len(const char *s)
{
	size_t		n = 0;

	while (s[n] && s[n] != '.')
		n++;
	return n;
}

int
mig_version_cmp(const char *a, const char *b)
{
	for (;;)
	{
		size_t		la = part_len(a),
					lb = part_len(b);
		int			c;

		if (la != lb)
			return la < lb ? -1 : 1;
		c = memcmp(a, b, la);
		if (c)
			return c;
		a += la;
		b += lb;
		if (*a == '\0' || *b == '\0')
			return (*a != '\0') - (*b != '\0');
		a++;
		b++;
	}
}

int
mig_version_valid(const char *s)
{
	size_t		n;

	do
	{
		n = part_len(s);
		if (n == 0 || n > MIG_VERSION_MAX || (n > 1 && s[0] == '0'))
			return 0;
		for (size_t i = 0; i < n; i++)
			if (s[i] < '0' || s[i] > '9')
				return 0;
		s += n;
	} while (*s++ == '.');
	return 1;
}
