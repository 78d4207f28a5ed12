/*
 * mig_adopt.c -- starting from a database that was migrated before:
 * switching over from another tool in one call (mig_adopt), or marking it
 * as being at a version (mig_baseline).
 *
 * A database migrated by Flyway, golang-migrate, morph, dbmate, goose,
 * sqlx or diesel carries that tool's history table.  mig_adopt reads it
 * (through host->table_info and host->query_text, never changing it),
 * checks it against the folder, and records the migrations it had applied
 * in our history, with their files' SQL as the up and down scripts, so
 * that the next migrate_apply runs exactly what the old tool had not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mig_int.h"

int32_t
mig_flyway_checksum(const char *buf, size_t len)
{
	uLong		crc = crc32(0L, Z_NULL, 0);
	size_t		i = 0;

	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	while (i < len)
	{
		size_t		j = i;

		while (j < len && buf[j] != '\n' && buf[j] != '\r')
			j++;
		crc = crc32_z(crc, (const Bytef *) buf + i, j - i);
		if (j < len && buf[j] == '\r' && j + 1 < len && buf[j + 1] == '\n')
			j++;
		i = j + 1;
	}
	return (int32_t) (uint32_t) (crc & 0xffffffffUL);
}

/* What another tool's history says of one version, row by row. */
typedef struct seen {
	char	   *version;		/* canonical */
	char	   *raw;			/* as the tool wrote it */
	int			applied;		/* this row applies (1) or undoes (0) it */
	int			has_sum;
	int32_t		sum;			/* Flyway's checksum */
	size_t		seq;			/* row order: the last row decides */
} seen;

typedef struct tool tool;

struct tool {
	const char *name;
	const char *table;
	const char *must_have;		/* a column that tells it apart, or NULL */
	const char *must_lack;
	unsigned	layouts;		/* 1 << MIG_LAYOUT_* it writes */
	int			ncols;
	const char *cols;			/* the SELECT list over its own columns */
	const char *order_by;		/* or NULL */
	int			(*row) (void *arg, const char *const *cells);
};


typedef struct adopt {
	const mig_host *h;
	mig_arena  *a;
	const tool *t;
	mig_vec		seen;			/* seen */
	char	   *upto;			/* golang-migrate: every version up to it */
	char	   *baseline;		/* Flyway baseline: likewise */
	char		problem[512];	/* a dirty or failed migration */
	int			oom;
} adopt;

static int
truthy(const char *s)
{
	return s && (strcmp(s, "1") == 0 || strcmp(s, "t") == 0 || strcmp(s, "true") == 0);
}

/* Canonical version of a cell (a repeatable's R__ key as it is); NULL,
 * and a problem noted, when it is none. */
static char *
version_of(adopt *ad, const char *cell)
{
	int			oom = 0;
	char	   *v = NULL;

	if (cell && strncmp(cell, "R__", 3) == 0)
		oom = (v = mig_arena_strdup(ad->a, cell)) == NULL;
	else if (cell)
		v = mig_version_canonical(ad->a, cell, &oom);
	if (oom)
		ad->oom = 1;
	else if (v == NULL && ad->problem[0] == '\0')
		snprintf(ad->problem, sizeof(ad->problem), "%s recorded \"%s\", which is not a version",
				 ad->t->name, cell ? cell : "NULL");
	return v;
}

static int
note(adopt *ad, const char *cell, int applied, const char *sum)
{
	seen	   *s;
	char	   *v = version_of(ad, cell);

	if (v == NULL)
		return ad->oom ? MIG_NOMEM : MIG_OK;
	if ((s = mig_vec_push(&ad->seen)) == NULL || (s->raw = mig_arena_strdup(ad->a, cell)) == NULL)
		return MIG_NOMEM;
	s->version = v;
	s->applied = applied;
	s->seq = ad->seen.n;
	if (sum)
	{
		s->has_sum = 1;
		s->sum = (int32_t) strtol(sum, NULL, 10);
	}
	return MIG_OK;
}

/* ---- one reader per tool: cells as in the tool's SELECT ---- */

static int
row_flyway(void *arg, const char *const *c)	/* version, type, checksum, success,
												 * script */
{
	adopt	   *ad = arg;

	if (!truthy(c[3]))
	{
		snprintf(ad->problem, sizeof(ad->problem),
				 "Flyway recorded a failed migration (version %s)", c[0] ? c[0] : c[4] ? c[4] : "none");
		return MIG_OK;
	}
	if (c[0] == NULL && c[1] && strcmp(c[1], "SQL") == 0 && c[4] &&
		strncmp(c[4], "R__", 3) == 0 && strlen(c[4]) > 7)
	{
		/* a repeatable: keyed by its script name without .sql */
		char		key[600];

		snprintf(key, sizeof(key), "%.*s", (int) strlen(c[4]) - 4, c[4]);
		return note(ad, key, 1, c[2]);
	}
	if (c[0] == NULL || c[1] == NULL)	/* schema creation and the like */
		return MIG_OK;
	if (strcmp(c[1], "BASELINE") == 0)
	{
		ad->baseline = version_of(ad, c[0]);
		return ad->oom ? MIG_NOMEM : MIG_OK;
	}
	if (strcmp(c[1], "UNDO_SQL") == 0)
		return note(ad, c[0], 0, NULL);
	if (strcmp(c[1], "SQL") == 0)
		return note(ad, c[0], 1, c[2]);
	return MIG_OK;				/* DELETE, SCHEMA and Java migrations */
}

static int
row_golang(void *arg, const char *const *c)	/* version, dirty */
{
	adopt	   *ad = arg;
	char	   *v = version_of(ad, c[0]);

	if (truthy(c[1]))
		snprintf(ad->problem, sizeof(ad->problem),
				 "golang-migrate marked version %s dirty: it failed half way", c[0] ? c[0] : "?");
	if (v && (ad->upto == NULL || mig_version_cmp(v, ad->upto) > 0))
		ad->upto = v;
	return ad->oom ? MIG_NOMEM : MIG_OK;
}

static int
row_each(void *arg, const char *const *c)	/* version */
{
	return note(arg, c[0], 1, NULL);
}

static int
row_goose(void *arg, const char *const *c)	/* version_id, is_applied */
{
	if (c[0] && strcmp(c[0], "0") == 0)
		return MIG_OK;			/* goose's own first row */
	return note(arg, c[0], truthy(c[1]), NULL);
}

static int
row_sqlx(void *arg, const char *const *c)	/* version, success */
{
	adopt	   *ad = arg;

	if (!truthy(c[1]))
		snprintf(ad->problem, sizeof(ad->problem),
				 "sqlx recorded migration %s as failed", c[0] ? c[0] : "?");
	return note(ad, c[0], 1, NULL);
}

#define L(x) (1u << MIG_LAYOUT_##x)

static const tool tools[] = {
	{"Flyway", "flyway_schema_history", "installed_rank", NULL, L(FLYWAY), 5,
		"CAST(version AS TEXT), CAST(type AS TEXT), CAST(checksum AS TEXT),"
		" CAST(success AS TEXT), CAST(script AS TEXT)", "installed_rank", row_flyway},
	{"golang-migrate", "schema_migrations", "dirty", NULL, L(UPDOWN), 2,
		"CAST(version AS TEXT), CAST(dirty AS TEXT)", NULL, row_golang},
	{"morph", "db_migrations", "name", NULL, L(UPDOWN), 1,
		"CAST(version AS TEXT)", NULL, row_each},
	{"dbmate", "schema_migrations", NULL, "dirty", L(SINGLE), 1,
		"CAST(version AS TEXT)", NULL, row_each},
	{"goose", "goose_db_version", "is_applied", NULL, L(SINGLE), 2,
		"CAST(version_id AS TEXT), CAST(is_applied AS TEXT)", "id", row_goose},
	{"sqlx", "_sqlx_migrations", "success", NULL, L(SINGLE) | L(UPDOWN), 2,
		"CAST(version AS TEXT), CAST(success AS TEXT)", NULL, row_sqlx},
	{"diesel", "__diesel_schema_migrations", "run_on", NULL, L(DIESEL), 1,
		"CAST(version AS TEXT)", NULL, row_each},
};

#define NTOOLS (sizeof(tools) / sizeof(tools[0]))

/* The one tool whose table this database has (in schema, NULL: the
 * host's default) for a folder of layout. */
static int
find_tool(const mig_host *h, const char *schema, int layout, const tool **found,
		  mig_err *err)
{
	const tool *hit[NTOOLS];
	size_t		n = 0;
	char		looked[512] = "";

	for (size_t i = 0; i < NTOOLS; i++)
	{
		const tool *t = &tools[i];
		int			yes = 0,
					rc;

		if (!(t->layouts & (1u << layout)))
			continue;
		snprintf(looked + strlen(looked), sizeof(looked) - strlen(looked), "%s%s (%s)",
				 looked[0] ? ", " : "", t->table, t->name);
		if ((rc = h->table_info(h->ctx, schema, t->table, t->must_have, &yes, err)) != MIG_OK)
			return rc;
		if (yes && t->must_lack &&
			(rc = h->table_info(h->ctx, schema, t->table, t->must_lack, &yes, err)) == MIG_OK)
			yes = !yes;
		if (rc != MIG_OK)
			return rc;
		if (yes)
			hit[n++] = t;
	}
	if (n == 1)
	{
		*found = hit[0];
		return MIG_OK;
	}
	if (n == 0)
	{
		mig_err_set(err, "42P01", "no other tool's history found for a %s folder",
					mig_layout_names[layout]);
		mig_err_detail(err, "Looked for %s.", looked);
	}
	else
	{
		mig_err_set(err, MIG_SQLSTATE_STATE, "more than one tool's history found: %s (%s) and %s (%s)",
					hit[0]->table, hit[0]->name, hit[1]->table, hit[1]->name);
		mig_err_hint(err, "Drop the table of the tool that is no longer in use, or rename it.");
	}
	return MIG_ERROR;
}

static int
seen_cmp(const void *x, const void *y)
{
	const seen *a = x,
			   *b = y;
	int			c = mig_version_cmp(a->version, b->version);

	return c ? c : (a->seq < b->seq ? -1 : a->seq > b->seq);
}

/* The last row of a version decides; returns it, or NULL when never seen. */
static const seen *
last_of(const mig_vec *v, const char *version)
{
	size_t		lo = 0,
				hi = v->n;
	const seen *found = NULL;

	while (lo < hi)				/* binary search for the first >= version */
	{
		size_t		mid = (lo + hi) / 2;

		if (mig_version_cmp(mig_vec_at(v, seen, mid)->version, version) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < v->n && mig_version_cmp(mig_vec_at(v, seen, lo)->version, version) == 0; lo++)
		found = mig_vec_at(v, seen, lo);
	return found;
}

/* Is version applied according to the other tool? */
static int
was_applied(const adopt *ad, const char *version, const seen **row)
{
	*row = last_of(&ad->seen, version);
	if (*row)
		return (*row)->applied;
	return (ad->upto && mig_version_cmp(version, ad->upto) <= 0) ||
		(ad->baseline && mig_version_cmp(version, ad->baseline) <= 0);
}

static int
file_version_cmp(const void *x, const void *y)
{
	return mig_version_cmp((*(const mig_file *const *) x)->version,
						   (*(const mig_file *const *) y)->version);
}

/* Checks the other tool's history against the folder. */
static int
check_match(const mig_host *h, adopt *ad, mig_plan *p, mig_err *err)
{
	const char *missing[20],
			   *mismatch[20];
	char		buf[600];
	size_t		nmissing = 0,
				nmismatch = 0,
				f = 0,
				last = SIZE_MAX;
	const mig_file **by_version = mig_arena_alloc(ad->a, sizeof(mig_file *) * (p->files.n + 1));

	if (by_version == NULL)
		return MIG_NOMEM;
	/* the files by version, to walk beside the tool's rows (the folder is
	 * in its tool's order, which may be another: diesel, dbmate) */
	for (size_t i = 0; i < p->files.n; i++)
		by_version[i] = mig_vec_at(&p->files, mig_file, i);
	if (p->files.n > 1)
		qsort(by_version, p->files.n, sizeof(mig_file *), file_version_cmp);

	/* every version the tool applied has a file (and Flyway's checksum);
	 * goose's versions include its Go migrations, files of the folder */
	for (size_t i = 0; i < ad->seen.n; i++)
	{
		const seen *s = mig_vec_at(&ad->seen, seen, i);
		const seen *last_row = last_of(&ad->seen, s->version);
		const mig_file *file = NULL;

		if (last_row != s || !s->applied)
			continue;
		while (f < p->files.n && mig_version_cmp(by_version[f]->version, s->version) < 0)
			f++;
		if (f < p->files.n && mig_version_cmp(by_version[f]->version, s->version) == 0)
			file = by_version[f];
		if (file == NULL)
		{
			if (nmissing < 20)
				missing[nmissing] = s->raw;
			nmissing++;
		}
		else if (s->has_sum)
		{
			mig_text	t;
			int			rc = mig_text_read(h, p->dir, file->up, &t, err);
			int32_t		sum;

			if (rc != MIG_OK)
				return rc;
			sum = mig_flyway_checksum(t.buf, t.len);
			mig_text_free(h, &t);
			if (sum != s->sum && mig_is_repeatable(s->version))
				((seen *) s)->applied = 0;	/* changed since: Flyway would run it
											 * again, and so will we */
			else if (sum != s->sum)
			{
				snprintf(buf, sizeof(buf), "%s (Flyway recorded %ld, the file has %ld)",
						 file->up, (long) s->sum, (long) sum);
				if (nmismatch < 20 && (mismatch[nmismatch] = mig_arena_strdup(ad->a, buf)) == NULL)
					return MIG_NOMEM;
				nmismatch++;
			}
		}
	}
	/* golang-migrate's one version is a migration it applied */
	if (ad->upto)
	{
		const mig_file *file = NULL;

		for (size_t i = 0; i < p->files.n && file == NULL; i++)
			if (mig_version_cmp(mig_vec_at(&p->files, mig_file, i)->version, ad->upto) == 0)
				file = mig_vec_at(&p->files, mig_file, i);
		if (file == NULL)
		{
			if (nmissing < 20)
				missing[nmissing] = ad->upto;
			nmissing++;
		}
	}
	if (nmissing)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"%s applied %zu migration%s that the folder does not have",
					ad->t->name, nmissing, nmissing == 1 ? "" : "s");
		mig_err_list(err, "Versions: ", missing, nmissing);
		mig_err_hint(err, "Point migrate_adopt at the folder that tool used, with every file it applied.");
		return MIG_ERROR;
	}
	if (nmismatch)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"%zu file%s changed since Flyway applied %s", nmismatch,
					nmismatch == 1 ? "" : "s", nmismatch == 1 ? "it" : "them");
		mig_err_list(err, "Files: ", mismatch, nmismatch);
		mig_err_hint(err, "Restore the files as Flyway applied them.");
		return MIG_ERROR;
	}
	/* files it did not apply must come after the ones it did, in the
	 * folder's order */
	for (size_t i = 0; i < p->files.n; i++)
	{
		const mig_file *file = mig_vec_at(&p->files, mig_file, i);
		const seen *row;

		if (was_applied(ad, file->version, &row) && !mig_is_repeatable(file->version))
			last = i;
	}
	for (size_t i = 0; last != SIZE_MAX && i < last; i++)
	{
		const mig_file *file = mig_vec_at(&p->files, mig_file, i);
		const seen *row;

		if (!mig_is_repeatable(file->version) && !was_applied(ad, file->version, &row))
		{
			mig_err_set(err, MIG_SQLSTATE_STATE,
						"%s did not apply migration %s (%s), which is older than %s that it applied",
						ad->t->name, file->version, file->up,
						mig_vec_at(&p->files, mig_file, last)->version);
			mig_err_hint(err, "Apply it with %s first, or remove it from the folder.", ad->t->name);
			return MIG_ERROR;
		}
	}
	return MIG_OK;
}

/* Records one adopted migration in our history, running nothing (a Go
 * migration without SQL: mig_record.c). */
static int
record(const mig_host *h, const char *dir, const mig_file *f, mig_err *err)
{
	return mig_record_file(h, dir, f, NULL, err);
}

int
mig_adopt(const mig_host *h, const char *path, int64_t *adopted, mig_err *err)
{
	return mig_adopt_with(h, path, NULL, adopted, err);
}

int
mig_adopt_with(const mig_host *h, const char *path, const char *options,
			   int64_t *adopted, mig_err *err)
{
	mig_plan	p;
	mig_arena	oa;
	mig_options o;
	adopt		ad;
	int			rc;

	mig_err_clear(err);
	*adopted = 0;
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	if (h->table_info == NULL || h->query_text == NULL)
	{
		mig_err_set(err, "0A000", "adopting another tool's history is not available here");
		return MIG_ERROR;
	}
	mig_arena_init(&oa, h);
	if ((rc = mig_options_parse_for(&oa, options, MIG_USE_ADOPT, &o, err)) != MIG_OK ||
		(rc = mig_lock(h, &o.lock, err)) != MIG_OK)
	{
		mig_arena_free(&oa);
		return rc == MIG_BUSY ? MIG_OK : rc;
	}
	memset(&ad, 0, sizeof(ad));
	ad.h = h;
	mig_vec_init(&ad.seen, h, sizeof(seen));
	rc = mig_plan_build(h, path, &p, err);
	ad.a = &p.arena;
	if (rc == MIG_OK && p.hist.n > 0)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migrate_history already records %zu migrations", p.hist.n);
		mig_err_detail(err, "Adoption imports another tool's history into an empty one.");
		rc = MIG_ERROR;
	}
	if (rc == MIG_OK && p.files.n == 0)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE, "\"%s\" holds no migrations to adopt", path);
		rc = MIG_ERROR;
	}
	if (rc == MIG_OK)
		rc = find_tool(h, o.schema, mig_vec_at(&p.files, mig_file, 0)->layout, &ad.t, err);
	if (rc == MIG_OK)
		rc = h->query_text(h->ctx, o.schema, ad.t->table, ad.t->cols, ad.t->order_by,
						   ad.t->ncols, ad.t->row, &ad, err);
	if (rc == MIG_OK && ad.oom)
		rc = MIG_NOMEM;
	if (rc == MIG_OK && ad.problem[0])
	{
		mig_err_set(err, MIG_SQLSTATE_STATE, "%s", ad.problem);
		mig_err_detail(err, "Nothing was adopted.");
		mig_err_hint(err, "Repair the database and that tool's history with it first.");
		rc = MIG_ERROR;
	}
	if (rc == MIG_OK && ad.seen.n > 1)
		qsort(ad.seen.items, ad.seen.n, sizeof(seen), seen_cmp);
	if (rc == MIG_OK)
		rc = check_match(h, &ad, &p, err);
	for (size_t i = 0; rc == MIG_OK && i < p.files.n; i++)
	{
		const mig_file *f = mig_vec_at(&p.files, mig_file, i);
		const seen *row;

		if (!was_applied(&ad, f->version, &row))
			continue;
		if ((rc = record(h, path, f, err)) == MIG_OK)
			(*adopted)++;
	}
	mig_vec_free(&ad.seen);
	mig_plan_free(&p);
	mig_arena_free(&oa);
	rc = mig_finish(h, rc, err);
	if (rc != MIG_OK)
		*adopted = 0;
	return rc;
}

int
mig_baseline(const mig_host *h, const char *path, const char *version,
			 int64_t *recorded, mig_err *err)
{
	mig_plan	p;
	mig_arena	a;
	char	   *target;
	int			rc;

	mig_err_clear(err);
	*recorded = 0;
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	mig_arena_init(&a, h);
	if ((rc = mig_version_arg(&a, version, "", &target, err)) != MIG_OK)
	{
		mig_arena_free(&a);
		return rc;
	}
	if ((rc = mig_lock(h, NULL, err)) != MIG_OK)
	{
		mig_arena_free(&a);
		return rc;
	}
	rc = mig_plan_build(h, path, &p, err);
	if (rc == MIG_OK && p.hist.n > 0)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migrate_history already records %zu migrations", p.hist.n);
		mig_err_detail(err, "A baseline marks a database that has no history yet.");
		rc = MIG_ERROR;
	}
	for (size_t i = 0; rc == MIG_OK && i < p.files.n; i++)
	{
		const mig_file *f = mig_vec_at(&p.files, mig_file, i);

		if (mig_is_repeatable(f->version) || mig_plan_after(&p, f, target))
			continue;
		if ((rc = record(h, path, f, err)) == MIG_OK)
			(*recorded)++;
	}
	mig_plan_free(&p);
	mig_arena_free(&a);
	rc = mig_finish(h, rc, err);
	if (rc != MIG_OK)
		*recorded = 0;
	return rc;
}
