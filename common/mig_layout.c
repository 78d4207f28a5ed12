/*
 * mig_layout.c -- which file names are migrations, and in what order.
 *
 *   updown   golang-migrate, morph, sqlx (reversible):
 *              {version}_{name}.up.sql, optional {version}_{name}.down.sql
 *   flyway   V{version}__{name}.sql, undo U{version}__{name}.sql; versions
 *              are dotted (1.2.10) or underscored (1_2 = 1.2)
 *   single   dbmate, goose, sqlx (simple): {version}_{name}.sql, one file
 *              whose sections (mig_sections.c) hold the up and down SQL
 *   diesel   {version}_{name}/up.sql and down.sql, where the version may be
 *              written 2018-01-14-171611
 *
 * Flyway's repeatable R__{name}.sql files are keyed "R__{name}" and come
 * after every version.
 *
 * Versions are compared as numbers (9 < 10 < 000011), never as strings:
 * the canonical form drops leading zeros of each dotted part (and trailing
 * zero parts, so 1.0 is 1, as Flyway has it), and order is by length, then
 * bytes, part by part.
 */
#include <string.h>

#include "mig_int.h"


const char	mig_layout_hint[] =
"Migration files are named {version}_{name}.up.sql and .down.sql "
"(golang-migrate), V{version}__{name}.sql and U{version}__{name}.sql "
"(Flyway), {version}_{name}.sql (dbmate, goose, sqlx) or "
"{version}_{name}/up.sql (diesel), where version is a number.";

const char *const mig_layout_names[] = {
	"", "golang-migrate", "Flyway", "dbmate/goose/sqlx", "diesel"
};

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

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Canonical version from s[0..n): parts of digits separated by one of the
 * characters in seps; with dashes allowed ('-' in seps) a dash between
 * digits is dropped, as in diesel's 2018-01-14-171611.  Returns the arena
 * copy, or NULL when it is not a version (*oom set when out of memory).
 */
static char *
canonical(mig_arena *a, const char *s, size_t n, const char *seps, int *oom)
{
	char		buf[MIG_VERSION_MAX + 2];
	size_t		out = 0,
				i = 0,
				keep = 0;
	int			parts = 0,
				dashes = strchr(seps, '-') != NULL;
	char	   *v;

	if (n == 0 || n > MIG_VERSION_MAX)
		return NULL;
	for (;;)
	{
		size_t		start;

		if (parts)
			buf[out++] = '.';
		start = out;
		for (; i < n && (is_digit(s[i]) || (dashes && s[i] == '-')); i++)
		{
			if (s[i] != '-')
				buf[out++] = s[i];
			else if (out == start || i + 1 >= n || !is_digit(s[i + 1]))
				return NULL;
		}
		if (out == start)
			return NULL;
		while (out - start > 1 && buf[start] == '0')	/* 007 is 7 */
		{
			memmove(buf + start, buf + start + 1, out - start - 1);
			out--;
		}
		if (!(out - start == 1 && buf[start] == '0'))
			keep = out;			/* end of the last non-zero part */
		parts++;
		if (i >= n)
			break;
		if (s[i] == '-' || strchr(seps, s[i]) == NULL || i + 1 >= n)
			return NULL;
		i++;
	}
	if (parts > 1)
		out = keep ? keep : 1;	/* 1.0 is 1, 0.0 is 0 */
	if ((v = mig_arena_strndup(a, buf, out)) == NULL)
		*oom = 1;
	return v;
}

char *
mig_version_canonical(mig_arena *a, const char *s, int *oom)
{
	*oom = 0;
	return canonical(a, s, strlen(s), "._-", oom);
}

int
mig_version_arg(mig_arena *a, const char *text, const char *what, char **out,
				mig_err *err)
{
	int			oom = 0;

	*out = text ? mig_version_canonical(a, text, &oom) : NULL;
	if (*out)
		return MIG_OK;
	if (oom)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "%s\"%s\" is not a migration version",
				what, text ? text : "NULL");
	mig_err_hint(err, "Give a number such as 20240101120000, or a dotted one such as 1.2.");
	return MIG_ERROR;
}

int
mig_parse_name(mig_arena *a, const char *file, mig_name *out)
{
	size_t		len = strlen(file),
				digits = 0;
	int			oom = 0;

	memset(out, 0, sizeof(*out));
	if (!name_printable(file) || !ends_with(file, len, ".sql"))
		return 0;

	/* Flyway: V1.2__x.sql, U1.2__x.sql (R__x.sql: repeatable) */
	if ((file[0] == 'V' || file[0] == 'U' || file[0] == 'R'))
	{
		const char *sep = strstr(file + 1, "__");

		if (sep == NULL || (size_t) (sep - file) + 2 + 4 > len)
			return 0;
		if (file[0] == 'R')
		{
			if (sep != file + 1 || len == 7)
				return 0;
			out->layout = MIG_LAYOUT_FLYWAY;
			out->kind = MIG_KIND_REPEATABLE;
			out->name = mig_arena_strndup(a, sep + 2, len - 4 - (size_t) (sep + 2 - file));
			out->version = mig_arena_strndup(a, file, len - 4);	/* R__name */
			return out->name && out->version ? 1 : -1;
		}
		out->version = canonical(a, file + 1, (size_t) (sep - file - 1), "._", &oom);
		if (out->version == NULL)
			return oom ? -1 : 0;
		out->layout = MIG_LAYOUT_FLYWAY;
		out->kind = file[0] == 'V' ? MIG_KIND_UP : MIG_KIND_DOWN;
		out->name = mig_arena_strndup(a, sep + 2, len - 4 - (size_t) (sep + 2 - file));
		return out->name ? 1 : -1;
	}

	while (file[digits] >= '0' && file[digits] <= '9')
		digits++;
	if (digits == 0 || file[digits] != '_')
		return 0;
	out->version = canonical(a, file, digits, "", &oom);
	if (out->version == NULL)
		return oom ? -1 : 0;
	if (ends_with(file, len, ".up.sql") && len >= digits + 1 + 7)
	{
		out->layout = MIG_LAYOUT_UPDOWN;
		out->kind = MIG_KIND_UP;
		len -= 7;
	}
	else if (ends_with(file, len, ".down.sql") && len >= digits + 1 + 9)
	{
		out->layout = MIG_LAYOUT_UPDOWN;
		out->kind = MIG_KIND_DOWN;
		len -= 9;
	}
	else
	{
		out->layout = MIG_LAYOUT_SINGLE;
		out->kind = MIG_KIND_UP;
		len -= 4;
	}
	out->name = mig_arena_strndup(a, file + digits + 1, len - (digits + 1));
	return out->name ? 1 : -1;
}

int
mig_parse_dir_name(mig_arena *a, const char *dir, mig_name *out)
{
	const char *sep = strchr(dir, '_');
	int			oom = 0;

	memset(out, 0, sizeof(*out));
	if (sep == NULL || sep == dir || !name_printable(dir))
		return 0;
	out->version = canonical(a, dir, (size_t) (sep - dir), "-", &oom);
	if (out->version == NULL)
		return oom ? -1 : 0;
	out->layout = MIG_LAYOUT_DIESEL;
	out->kind = MIG_KIND_UP;
	out->name = mig_arena_strdup(a, sep + 1);
	return out->name ? 1 : -1;
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
mig_is_repeatable(const char *version)
{
	return version[0] == 'R';
}

int
mig_version_cmp(const char *a, const char *b)
{
	/* repeatables (R__name) come after every version, by name */
	if (mig_is_repeatable(a) || mig_is_repeatable(b))
		return mig_is_repeatable(a) != mig_is_repeatable(b)
			? mig_is_repeatable(a) - mig_is_repeatable(b) : strcmp(a, b);
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

uint64_t
mig_version_key(const char *v)
{
	uint64_t	k = 0;
	size_t		n;

	for (n = 0; v[n] >= '0' && v[n] <= '9'; n++)
	{
		if (n == 18)
			return MIG_NO_KEY;
		k = k * 10 + (uint64_t) (v[n] - '0');
	}
	return n > 0 && v[n] == '\0' ? k : MIG_NO_KEY;
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
