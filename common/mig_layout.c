/*
 * mig_layout.c -- which file names are migrations, and in what order, as
 * each tool has it.
 *
 *   updown   golang-migrate, morph, sqlx (reversible):
 *              {version}_{name}.up.sql, optional {version}_{name}.down.sql
 *   flyway   V{version}__{name}.sql, undo U{version}__{name}.sql; versions
 *              are dotted (1.2.10) or underscored (1_2 = 1.2)
 *   single   dbmate, goose, sqlx (simple): {version}_{name}.sql, one file
 *              whose sections (mig_sections.c) hold the up and down SQL;
 *              dbmate also takes {version}{anything}.sql, goose also
 *              {version}_{name}.go (Go migrations, run by the application)
 *   diesel   {version}_{name}/up.sql and down.sql, where the version may be
 *              written 2018-01-14-171611
 *   fromto   MongooseIM's upgrade scripts {engine}_{from}_{to}.sql, one
 *              set per engine (pgsql_4.2.0_5.0.0.sql, mysql_..., mssql_...)
 *   verdir   memos: {version}/{NN}__{name}.sql, version folders holding a
 *              numbered sequence
 *
 * Flyway's repeatable R__{name}.sql files are keyed "R__{name}" and come
 * after every version.
 *
 * A migration's version (its identity, kept in the history) is canonical:
 * leading zeros of each dotted part dropped, and trailing zero parts, so
 * 1.0 is 1 as Flyway has it; two files of one canonical version are
 * duplicates.  Order is each tool's own (mig_order_cmp): most compare
 * versions as numbers, part by part (9 < 10 < 000011); diesel and dbmate
 * compare text (MIG_ORDER_DIESEL, MIG_ORDER_NAME).
 */
#include <stdio.h>
#include <string.h>

#include "mig_int.h"


const char	mig_layout_hint[] =
"Migration files are named {version}_{name}.up.sql and .down.sql "
"(golang-migrate), V{version}__{name}.sql and U{version}__{name}.sql "
"(Flyway), {version}_{name}.sql (dbmate, goose, sqlx), "
"{version}_{name}/up.sql (diesel), {engine}_{from}_{to}.sql (MongooseIM) or "
"{version}/{NN}__{name}.sql (version folders), where version is a number.";

const char *const mig_layout_names[] = {
	"", "golang-migrate", "Flyway", "dbmate/goose/sqlx", "diesel", "MongooseIM",
	"version folders"
};

/*
 * Names an engine goes by, as a per-engine folder (Mattermost's
 * db/migrations/{mysql,postgres}, memos' store/migration/{sqlite,...}) or
 * as the prefix of MongooseIM's upgrade scripts and fresh-install files
 * (priv/migrations/pgsql_5.0.0_5.1.0.sql, priv/pg.sql, priv/mysql.sql,
 * priv/azuresql.sql), and the engine each means: mig_host.engine for ours.
 */
static const char *const engine_names[][2] = {
	{"sqlite", "sqlite"}, {"sqlite3", "sqlite"},
	{"postgres", "postgres"}, {"postgresql", "postgres"}, {"pgsql", "postgres"},
	{"pg", "postgres"},
	{"mysql", "mysql"}, {"mariadb", "mariadb"},
	{"mssql", "mssql"}, {"sqlserver", "mssql"}, {"azuresql", "mssql"},
	{"cockroachdb", "cockroachdb"}, {"oracle", "oracle"}
};

const char *
mig_engine_named(const char *word, size_t n)
{
	if (n == 0 || n > 11 || word[0] < 'a' || word[0] > 'z')
		return NULL;			/* most names, at once: no engine's */
	for (size_t i = 0; i < sizeof(engine_names) / sizeof(engine_names[0]); i++)
		if (strlen(engine_names[i][0]) == n && memcmp(word, engine_names[i][0], n) == 0)
			return engine_names[i][1];
	return NULL;
}

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

/* Case-insensitive ends_with for an ASCII suffix. */
static int
ends_with_ci(const char *s, size_t len, const char *suffix)
{
	size_t		n = strlen(suffix);

	if (len < n)
		return 0;
	for (size_t i = 0; i < n; i++)
	{
		char		c = s[len - n + i];

		if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != suffix[i])
			return 0;
	}
	return 1;
}

/* Flyway: V1.2__x.sql, U1.2__x.sql, R__x.sql (repeatable).  The prefix is
 * case-sensitive and the suffix is not, as Flyway's ResourceNameParser
 * has them (findPrefix uses startsWith, stripSuffix compares upper
 * case); the version is parts of digits split at '.' or '_' (Flyway's
 * MigrationVersion replaces '_' by '.' and reads each part as a
 * BigInteger). */
static int
parse_flyway(mig_arena *a, const char *file, size_t len, mig_name *out)
{
	const char *sep = strstr(file + 1, "__");
	int			oom = 0;

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

/* 1 when s[0..n) is parts of digits separated by single dots. */
static int
dotted(const char *s, size_t n)
{
	if (n == 0 || n > MIG_VERSION_MAX || !is_digit(s[0]) || !is_digit(s[n - 1]))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_digit(s[i]) && !(s[i] == '.' && is_digit(s[i + 1])))
			return 0;
	return 1;
}

/*
 * MongooseIM's upgrade scripts, priv/migrations/{engine}_{from}_{to}.sql
 * (pgsql_4.2.0_5.0.0.sql, mysql_..., mssql_..., cockroachdb_...): each
 * upgrades the schema of one engine from release {from} to release {to}
 * (its doc/migrations/{from}_{to}.md says when to run it).  The version is
 * the release it upgrades to.
 */
static int
parse_fromto(mig_arena *a, const char *file, size_t len, mig_name *out)
{
	const char *u1 = strchr(file, '_'),
			   *u2;
	int			oom = 0;

	if (u1 == NULL || (out->engine = mig_engine_named(file, (size_t) (u1 - file))) == NULL)
		return 0;
	u2 = strchr(u1 + 1, '_');
	if (u2 == NULL || !dotted(u1 + 1, (size_t) (u2 - u1 - 1)) ||
		len < 4 || (size_t) (u2 + 1 - file) >= len - 4 ||
		!dotted(u2 + 1, len - 4 - (size_t) (u2 + 1 - file)))
		return 0;
	out->from = canonical(a, u1 + 1, (size_t) (u2 - u1 - 1), ".", &oom);
	if (out->from)
		out->version = canonical(a, u2 + 1, len - 4 - (size_t) (u2 + 1 - file), ".", &oom);
	if (out->version == NULL)
		return oom ? -1 : 0;
	out->layout = MIG_LAYOUT_FROMTO;
	out->kind = MIG_KIND_UP;
	out->name = mig_arena_strndup(a, u1 + 1, len - 4 - (size_t) (u1 + 1 - file));
	return out->name ? 1 : -1;
}

int
mig_parse_name(mig_arena *a, const char *file, mig_name *out)
{
	size_t		len = strlen(file),
				digits = 0;
	int			oom = 0,
				go;

	memset(out, 0, sizeof(*out));
	if (!name_printable(file))
		return 0;
	if ((file[0] == 'V' || file[0] == 'U' || file[0] == 'R') && ends_with_ci(file, len, ".sql"))
		return parse_flyway(a, file, len, out);

	/*
	 * goose takes {version}_{anything}.go as a Go migration, version a
	 * number above zero, and leaves other .go files (helpers) and
	 * _test.go files alone (goose: NumericComponent in migration.go,
	 * collectFilesystemSources in provider_collect.go).
	 */
	go = ends_with(file, len, ".go");
	if (!go && !ends_with(file, len, ".sql"))
		return 0;
	while (is_digit(file[digits]))
		digits++;
	if (go)
	{
		if (digits == 0 || file[digits] != '_' || ends_with(file, len, "_test.go"))
			return 0;
		out->version = canonical(a, file, digits, "", &oom);
		if (out->version == NULL)
			return oom ? -1 : 0;
		if (strcmp(out->version, "0") == 0)
			return 0;			/* goose: "version must be greater than zero" */
		out->layout = MIG_LAYOUT_SINGLE;
		out->kind = MIG_KIND_UP;
		out->go = 1;
		out->width = (unsigned short) digits;
		out->name = mig_arena_strndup(a, file + digits + 1, len - 3 - (digits + 1));
		return out->name ? 1 : -1;
	}
	if (digits == 0)
		return parse_fromto(a, file, len, out);
	out->width = (unsigned short) digits;
	out->version = canonical(a, file, digits, "", &oom);
	if (out->version == NULL)
		return oom ? -1 : 0;
	if (file[digits] != '_')
	{
		/*
		 * dbmate takes every file matching ^(\d+).*\.sql$ (dbmate:
		 * migrationFileRegexp in pkg/dbmate/db.go), so also
		 * 00000000000000-initial-schema.sql or 20240101120000.sql.  A name
		 * ending in .up.sql or .down.sql is a mistyped golang-migrate name,
		 * not that.
		 */
		if (ends_with(file, len, ".up.sql") || ends_with(file, len, ".down.sql"))
			return 0;
		out->layout = MIG_LAYOUT_SINGLE;
		out->kind = MIG_KIND_UP;
		out->dbmate = 1;
		len -= 4;
		if (digits < len && (file[digits] == '-' || file[digits] == '.'))
			digits++;
		out->name = mig_arena_strndup(a, file + digits, len > digits ? len - digits : 0);
		return out->name ? 1 : -1;
	}
	/*
	 * golang-migrate's ^([0-9]+)_(.*)\.(down|up)\.(.*)$ (source/parse.go),
	 * ordered by the uint64 version (source/migration.go keeps a sorted
	 * index).  morph parses the same names (models/parse.go) but applies
	 * pending ones in file-name order (morph.go: sortMigrations), the same
	 * order for versions of one width, as Mattermost writes them (000066);
	 * for mixed widths, which no file tells apart, golang-migrate's order
	 * is kept.
	 */
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
		/*
		 * One file: goose's {version}_{name}.sql, version the digits
		 * before the first '_', a number above zero (pressly/goose,
		 * migration.go: NumericComponent, for .sql as for .go files), and
		 * sqlx's simple migration, <VERSION>_<DESCRIPTION>.sql with VERSION
		 * an i64 above zero, other names ignored (launchbadge/sqlx,
		 * sqlx-core/src/migrate/source.rs: resolve_blocking; the .up.sql
		 * and .down.sql suffixes above are its reversible pair,
		 * sqlx-core/src/migrate/migration_type.rs: MigrationType).
		 */
		out->layout = MIG_LAYOUT_SINGLE;
		out->kind = MIG_KIND_UP;
		len -= 4;
	}
	out->name = mig_arena_strndup(a, file + digits + 1, len - (digits + 1));
	return out->name ? 1 : -1;
}

/*
 * diesel: every folder of the migrations folder is a migration whose
 * version is its name up to the first '_', dashes removed
 * (migrations_internals: version_from_string), and diesel orders
 * migrations by that text compared as a string (diesel_migrations:
 * MigrationVersion is a string; combined_migrations.rs sorts by it), so
 * 20240313 (2024-03-13_170000_x) comes after 20240306170000.  The key
 * keeps that text; the version drops leading zeros, as ever.
 */
int
mig_parse_dir_name(mig_arena *a, const char *dir, mig_name *out)
{
	const char *sep = strchr(dir, '_');
	size_t		n = sep ? (size_t) (sep - dir) : strlen(dir),
				k = 0;
	int			oom = 0;

	memset(out, 0, sizeof(*out));
	if (n == 0 || !name_printable(dir))
		return 0;
	out->version = canonical(a, dir, n, "-", &oom);
	if (out->version == NULL)
		return oom ? -1 : 0;
	if ((out->key = mig_arena_alloc(a, n + 1)) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (dir[i] != '-')
			out->key[k++] = dir[i];
	out->key[k] = '\0';
	out->width = (unsigned short) k;
	out->layout = MIG_LAYOUT_DIESEL;
	out->kind = MIG_KIND_UP;
	out->name = mig_arena_strdup(a, sep ? sep + 1 : "");
	return out->name ? 1 : -1;
}

int
mig_verdir_name(const char *dir)
{
	return dotted(dir, strlen(dir));
}

/*
 * memos keeps store/migration/{driver}/{version}/{NN}__{name}.sql and
 * gives file NN of folder 0.22 the schema version 0.22.{NN+1} (memos:
 * getSchemaVersionOfMigrateScript in store/migrator.go, the version it
 * records in its settings), compared as semantic versions.  So is ours:
 * 0.22/00__x.sql is 0.22.1 (never a trailing zero part: it round-trips).
 */
int
mig_parse_verdir_file(mig_arena *a, const char *dir, const char *file, mig_name *out)
{
	size_t		len = strlen(file),
				digits = 0,
				dl = strlen(dir);
	uint64_t	nn = 0;
	char		buf[MIG_VERSION_MAX + 24];
	int			oom = 0;

	memset(out, 0, sizeof(*out));
	if (!name_printable(file) || !ends_with(file, len, ".sql"))
		return 0;
	while (is_digit(file[digits]))
	{
		if (digits == 18)
			return 0;
		nn = nn * 10 + (uint64_t) (file[digits] - '0');
		digits++;
	}
	if (digits == 0 || strncmp(file + digits, "__", 2) != 0 || dl > MIG_VERSION_MAX)
		return 0;
	snprintf(buf, sizeof(buf), "%s.%llu", dir, (unsigned long long) nn + 1);
	out->version = canonical(a, buf, strlen(buf), ".", &oom);
	if (out->version == NULL)
		return oom ? -1 : 0;
	out->layout = MIG_LAYOUT_VERDIR;
	out->kind = MIG_KIND_UP;
	out->width = (unsigned short) digits;
	out->name = mig_arena_strndup(a, file + digits + 2, len - 4 - (digits + 2));
	return out->name ? 1 : -1;
}

int
mig_baseline_file(const char *file, int layout)
{
	size_t		len = strlen(file);

	if (layout == MIG_LAYOUT_VERDIR)
		return strcmp(file, "LATEST.sql") == 0;	/* memos: LatestSchemaFileName */
	if (layout == MIG_LAYOUT_FROMTO)			/* MongooseIM: priv/pg.sql... */
		return ends_with(file, len, ".sql") && mig_engine_named(file, len - 4) != NULL;
	return 0;
}

char *
mig_order_key(mig_arena *a, int order, const char *path, int *oom)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	char	   *key = NULL;
	mig_name	n;

	*oom = 0;
	if (path == NULL || order == MIG_ORDER_VERSION)
		return NULL;
	if (order == MIG_ORDER_NAME)
	{
		if ((key = mig_arena_strdup(a, slash ? slash + 1 : path)) == NULL)
			*oom = 1;
		return key;
	}
	/* diesel: .../{version}_{name}/up.sql */
	if (slash)
	{
		const char *start = slash;
		char	   *dir;
		int			fits;

		while (start > path && start[-1] != '/')
			start--;
		if ((dir = mig_arena_strndup(a, start, (size_t) (slash - start))) == NULL ||
			(fits = mig_parse_dir_name(a, dir, &n)) < 0)
			*oom = 1;
		else if (fits > 0)
			key = n.key;
	}
	return key;
}

int
mig_order_cmp(int order, const char *key_a, const char *version_a,
			  const char *key_b, const char *version_b)
{
	if (order == MIG_ORDER_VERSION || (key_a == NULL && key_b == NULL))
		return mig_version_cmp(version_a, version_b);
	return strcmp(key_a ? key_a : version_a, key_b ? key_b : version_b);
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
