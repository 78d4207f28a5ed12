/*
 * mig_record.c -- recording migrations as applied without running them:
 * migrate_record (one pending migration that ran elsewhere: a goose Go
 * migration run by the application, a script a DBA ran by hand), and the
 * records migrate_adopt and migrate_baseline write.
 */
#include <string.h>

#include "mig_int.h"

int
mig_record_file(const mig_host *h, const char *dir, const mig_file *f, char *sum,
				mig_err *err)
{
	mig_text	up = {0},
				down = {0};
	mig_script	s,
				ds;
	mig_record	rec;
	char		id[MIG_FILE_ID_MAX];
	int			outside = 0;
	int			rc;

	if (f->go)
	{
		/* its file is Go, not SQL: no up or down script to keep */
		memset(&rec, 0, sizeof(rec));
		if ((rc = mig_text_read(h, dir, f->up, &up, err)) == MIG_OK)
		{
			rec.version = f->version;
			rec.name = f->name;
			rec.up_file = f->up;
			rec.checksum = up.checksum;
			rec.checksum_norm = up.norm;
			rec.up_sql = "";
		}
	}
	else if ((rc = mig_file_scripts(h, dir, f, &up, &down, &s, &ds, err)) == MIG_OK &&
			 (!ds.sql || (rc = mig_down_outside(h, f, &up, f->down ? &down : NULL, &outside,
												err)) == MIG_OK))
	{
		mig_file_record(f, &up, &s, &ds, &rec);
		rec.down_outside = outside;
	}
	if (rc == MIG_OK)
	{
		rec.file_id = mig_file_id_of(&up, id) ? id : NULL;
		rc = h->history_add(h->ctx, &rec, err);
	}
	/* recorded as applied in full: the progress of a start that stopped
	 * half way no longer describes it */
	if (rc == MIG_OK && h->progress_forget)
		rc = h->progress_forget(h->ctx, f->version, 0, err);
	if (rc == MIG_OK && sum)
		memcpy(sum, up.checksum, sizeof(up.checksum));
	mig_text_free(h, &up);
	mig_text_free(h, &down);
	return rc;
}

/* The entry of version in the plan, or NULL; fails (filling err) when it
 * is not one migrate_record may record. */
static const mig_entry *
recordable(const mig_plan *p, const char *version, mig_err *err)
{
	const mig_entry *e = NULL;
	const mig_entry *earlier = NULL;

	for (size_t i = 0; i < p->entries.n && e == NULL; i++)
	{
		const mig_entry *x = mig_vec_at(&p->entries, mig_entry, i);

		if (x->file && mig_version_cmp(x->file->version, version) == 0)
			e = x;
		else if (x->state == MIG_PENDING && earlier == NULL && !mig_is_repeatable(x->file->version))
			earlier = x;
	}
	if (e == NULL)
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "\"%s\" has no migration %s", p->dir, version);
	else if (e->hist)
		mig_err_set(err, MIG_SQLSTATE_STATE, "migration %s (%s) is already applied",
					version, e->file->up);
	else if (mig_is_repeatable(version))
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG,
					"migration %s (%s) is repeatable: it runs again whenever it changes",
					version, e->file->up);
	else if (e->state == MIG_OUT_OF_ORDER)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s (%s) is older than the latest applied migration %s",
					version, e->file->up, p->max_applied);
		mig_err_hint(err, "Only the next migration to apply can be recorded.");
	}
	else if (earlier)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s (%s) is not the next migration to apply",
					version, e->file->up);
		mig_err_detail(err, "Migration %s (%s) comes before it and is pending.",
					   earlier->file->version, earlier->file->up);
		mig_err_hint(err, "Apply or record the migrations before it first.");
	}
	else
		return e;
	return NULL;
}

int
mig_record_applied(const mig_host *h, const char *path, const char *version,
				   int64_t *recorded, mig_err *err)
{
	mig_plan	p;
	mig_arena	a;
	char	   *target;
	char		sum[16] = "";
	const mig_entry *e = NULL;
	int			rc;

	mig_err_clear(err);
	*recorded = 0;
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	if (h->audit == NULL)
	{
		mig_err_set(err, "0A000", "recording a migration is not available here");
		return MIG_ERROR;
	}
	mig_arena_init(&a, h);
	if ((rc = mig_version_arg(&a, version, "", &target, err)) != MIG_OK ||
		(rc = mig_lock(h, NULL, err)) != MIG_OK)
	{
		mig_arena_free(&a);
		return rc;
	}
	rc = mig_plan_build(h, path, &p, err);
	if (rc == MIG_OK && (e = recordable(&p, target, err)) == NULL)
		rc = MIG_ERROR;
	if (rc == MIG_OK)
		rc = mig_record_file(h, path, e->file, sum, err);
	if (rc == MIG_OK)
		rc = h->audit(h->ctx, e->file->version, "record", NULL, sum, err);
	if (rc == MIG_OK)
	{
		mig_notice(h, NULL, "recorded migration %s (%s) as applied without running it",
				   e->file->version, e->file->up);
		*recorded = 1;
	}
	mig_plan_free(&p);
	mig_arena_free(&a);
	if (rc == MIG_NOMEM && err->code != MIG_NOMEM)
		mig_err_nomem(err);
	rc = mig_finish(h, rc, err);
	if (rc != MIG_OK)
		*recorded = 0;
	return rc;
}
