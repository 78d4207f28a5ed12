/*
 * mig_plan.c -- the history held against the folder.  Every migration gets
 * one state: applied (recorded, file unchanged), changed (recorded, file
 * checksum differs), missing (recorded, no file), pending (file only, newer
 * than everything applied) or out_of_order (file only, older than the
 * newest applied migration).  Files and history rows are matched by
 * version; "older" is in the order of the folder's tool (mig_layout.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mig_int.h"

const char *const mig_state_names[] = {
	"applied", "pending", "changed", "missing", "out_of_order", "outdated",
	"reformatted"
};

/* A copy of s in the arena (NULL stays NULL); sets *oom when out of
 * memory. */
static char *
dup_or_null(mig_arena *a, const char *s, int *oom)
{
	char	   *d = s ? mig_arena_strdup(a, s) : NULL;

	if (s && d == NULL)
		*oom = 1;
	return d;
}

static int
progress_cb(void *arg, const mig_progress_row *r)
{
	mig_plan   *p = arg;
	mig_progress **slot = mig_vec_push(&p->progress);
	mig_progress *g = slot ? mig_arena_alloc(&p->arena, sizeof(mig_progress)) : NULL;
	int			oom = 0;

	if (g == NULL || r->version == NULL)
		return MIG_NOMEM;
	*slot = g;
	memset(g, 0, sizeof(*g));
	g->version = dup_or_null(&p->arena, r->version, &oom);
	g->down = r->down != 0;
	g->statements_done = r->statements_done;
	g->next_offset = r->next_offset;
	g->done_checksum = dup_or_null(&p->arena, r->done_checksum ? r->done_checksum : "", &oom);
	g->last_error = dup_or_null(&p->arena, r->last_error, &oom);
	g->updated_at = dup_or_null(&p->arena, r->updated_at, &oom);
	return oom ? MIG_NOMEM : MIG_OK;
}

/* The entry of version, or NULL (entries are in version order). */
static mig_entry *
entry_of(mig_plan *p, const char *version)
{
	size_t		lo = 0,
				hi = p->entries.n;

	while (lo < hi)
	{
		size_t		mid = (lo + hi) / 2;
		mig_entry  *e = mig_vec_at(&p->entries, mig_entry, mid);
		int			c = mig_version_cmp(e->file ? e->file->version : e->hist->version, version);

		if (c == 0)
			return e;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Points each entry at the progress of its script that stopped half way:
 * an up script's for a pending migration, a down script's for an applied
 * one.  Other rows stay unmatched (their migration left the folder). */
static void
attach_progress(mig_plan *p)
{
	for (size_t i = 0; i < p->progress.n; i++)
	{
		mig_progress *g = *mig_vec_at(&p->progress, mig_progress *, i);
		mig_entry  *e = entry_of(p, g->version);

		if (e && (g->down ? e->hist != NULL : e->hist == NULL && e->file != NULL))
		{
			e->partial = g;
			g->matched = 1;
		}
	}
}

const mig_progress *
mig_plan_partial(const mig_plan *p, int down)
{
	for (size_t i = 0; i < p->progress.n; i++)
	{
		const mig_progress *g = *mig_vec_at(&p->progress, mig_progress *, i);

		if (g->down == down)
			return g;
	}
	return NULL;
}

static int
hist_cb(void *arg, const mig_hist_row *r)
{
	mig_plan   *p = arg;
	mig_hist  **slot = mig_vec_push(&p->hist);
	mig_hist   *h = slot ? mig_arena_alloc(&p->arena, sizeof(mig_hist)) : NULL;

	if (h == NULL)
		return MIG_NOMEM;
	*slot = h;
	memset(h, 0, sizeof(*h));
	h->version = mig_arena_strdup(&p->arena, r->version);
	h->name = mig_arena_strdup(&p->arena, r->name ? r->name : "");
	h->file = mig_arena_strdup(&p->arena, r->file);
	h->checksum = mig_arena_strdup(&p->arena, r->checksum ? r->checksum : "");
	h->checksum_norm = mig_arena_strdup(&p->arena, r->checksum_norm ? r->checksum_norm : "");
	h->applied_at = mig_arena_strdup(&p->arena, r->applied_at);
	h->file_id = p->keeps_file_id && r->file_id ? mig_arena_strdup(&p->arena, r->file_id) : NULL;
	h->exec_ms = r->exec_ms;
	h->rank = r->rank;
	h->has_down = r->has_down;
	h->down_outside = r->down_outside != 0;
	h->down_noop = r->down_noop != 0;
	h->ahead = r->ahead != 0;
	if (h->version == NULL || h->name == NULL || h->checksum == NULL || h->checksum_norm == NULL ||
		(r->file && h->file == NULL) || (r->applied_at && h->applied_at == NULL) ||
		(p->keeps_file_id && r->file_id && h->file_id == NULL))
		return MIG_NOMEM;
	return MIG_OK;
}

static int
hist_cmp(const void *x, const void *y)
{
	return mig_version_cmp((*(mig_hist *const *) x)->version,
						   (*(mig_hist *const *) y)->version);
}

static int
add_entry(mig_plan *p, const mig_file *f, const mig_hist *h, int state)
{
	mig_entry  *e = mig_vec_push(&p->entries);

	if (e == NULL)
		return MIG_NOMEM;
	e->file = f;
	e->hist = h;
	e->state = state;
	p->count[state]++;
	return MIG_OK;
}

/* A changed applied file: an error, but for a repeatable, which runs
 * again. */
static int
changed(const mig_file *f)
{
	return mig_is_repeatable(f->version) ? MIG_OUTDATED : MIG_CHANGED;
}

/* The state of an applied migration whose file now has these checksums. */
static int
applied_state(const mig_file *f, const mig_hist *r, const char *sum, const char *norm)
{
	if (strcmp(sum, r->checksum) == 0)
		return MIG_APPLIED;
	if (r->checksum_norm[0] && norm[0] && strcmp(norm, r->checksum_norm) == 0)
		return MIG_REFORMATTED;
	return changed(f);
}

/* Adds the entry of applied migration r, whose file is f: its checksums
 * are the recorded ones when the file's identity (looked up relative to
 * dirfd, the folder opened, or -1) is the one recorded (or cached), else
 * the file is read. */
static int
add_applied(const mig_host *h, mig_plan *p, int dirfd, const mig_file *f,
			const mig_hist *r, mig_err *err)
{
	mig_text	t;
	char		sum[16] = "",
				norm[16] = "",
				id[MIG_FILE_ID_MAX] = "";
	int			known = 0,
				rc;
	mig_entry  *e;

	if ((r->file_id || h->cache) && mig_file_id_now(h, dirfd, p->dir, f->up, id))
	{
		if (r->file_id && strcmp(id, r->file_id) == 0 &&
			strlen(r->checksum) < sizeof(sum) && strlen(r->checksum_norm) < sizeof(norm))
		{
			strcpy(sum, r->checksum);
			strcpy(norm, r->checksum_norm);
			known = 1;
		}
		if (!known)
			known = mig_cache_get(h->cache, p->dir, f->up, id, sum, norm);
	}
	if (!known)
	{
		if ((rc = mig_text_read(h, p->dir, f->up, &t, err)) != MIG_OK)
		{
			if (rc == MIG_NOMEM || p->problems == NULL)
				return rc;
			/* validating: note it, and go on as if unchanged */
			rc = mig_problem_add(&p->arena, p->problems, f->version, f->up, "bad_file", 0, err);
			mig_err_clear(err);
			return rc == MIG_OK ? add_entry(p, f, r, MIG_APPLIED) : rc;
		}
		mig_cache_put(h->cache, p->dir, f->up, &t);
		memcpy(sum, t.checksum, sizeof(sum));
		memcpy(norm, t.norm, sizeof(norm));
		mig_text_free(h, &t);
	}
	/* a Go migration ran in the application: its file (code that may be
	 * refactored since) is not held against what ran */
	if ((rc = add_entry(p, f, r, f->go ? MIG_APPLIED : applied_state(f, r, sum, norm))) != MIG_OK)
		return rc;
	e = mig_vec_at(&p->entries, mig_entry, p->entries.n - 1);
	memcpy(e->checksum, sum, sizeof(sum));
	memcpy(e->norm, norm, sizeof(norm));
	return MIG_OK;
}

int
mig_problem_add(mig_arena *a, mig_vec *problems, const char *version, const char *file,
				const char *kind, int warning, const mig_err *e)
{
	mig_found  *f = mig_vec_push(problems);
	char		msg[MIG_CTX_MAX + MIG_MSG_MAX + 4];

	if (f == NULL)
		return MIG_NOMEM;
	snprintf(msg, sizeof(msg), "%s%s%s", e->context, e->context[0] ? ": " : "", e->message);
	f->version = version ? mig_arena_strdup(a, version) : NULL;
	f->file = file ? mig_arena_strdup(a, file) : NULL;
	f->kind = kind;
	f->warning = warning;
	memcpy(f->sqlstate, e->sqlstate, sizeof(f->sqlstate));
	f->message = mig_arena_strdup(a, msg);
	if (f->message == NULL || (version && f->version == NULL) || (file && f->file == NULL))
		return MIG_NOMEM;
	return MIG_OK;
}

/* The history row of version (p->hist is sorted by version; keys[i] is
 * mig_version_key of row i, and key that of version: numbers compared
 * first, as discovery sorts), or NULL. */
static mig_hist *
hist_of(const mig_plan *p, const uint64_t *keys, const char *version, uint64_t key,
		size_t *at)
{
	size_t		lo = 0,
				hi = p->hist.n;

	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;
		int			c = keys[mid] != MIG_NO_KEY && key != MIG_NO_KEY
			? (keys[mid] > key) - (keys[mid] < key)
			: mig_version_cmp((*mig_vec_at(&p->hist, mig_hist *, mid))->version, version);

		if (c == 0)
		{
			*at = mid;
			return *mig_vec_at(&p->hist, mig_hist *, mid);
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Entries in a text order: by key (a missing migration whose recorded
 * file gives none: its version), then version. */
static int
entry_cmp(const void *x, const void *y)
{
	const mig_entry *a = x,
			   *b = y;
	const char *va = a->file ? a->file->version : a->hist->version,
			   *vb = b->file ? b->file->version : b->hist->version;
	int			c = strcmp(a->key ? a->key : va, b->key ? b->key : vb);

	return c ? c : mig_version_cmp(va, vb);
}

/*
 * The folder against the history where the tool orders by text (diesel,
 * dbmate): files (in that order) matched to history rows by version, the
 * rows without a file placed by the key of the file they recorded, then
 * pending files before the last applied one marked out of order.
 */
static int
merge_by_key(const mig_host *h, mig_plan *p, int dirfd, mig_err *err)
{
	char	   *matched = p->hist.n ? mig_arena_alloc(&p->arena, p->hist.n) : NULL;
	uint64_t   *keys = p->hist.n ? mig_arena_alloc(&p->arena, p->hist.n * sizeof(uint64_t)) : NULL;
	size_t		last = SIZE_MAX;
	int			rc = MIG_OK;

	if (p->hist.n && (matched == NULL || keys == NULL))
		return MIG_NOMEM;
	if (p->hist.n)
		memset(matched, 0, p->hist.n);
	for (size_t j = 0; j < p->hist.n; j++)
		keys[j] = mig_version_key((*mig_vec_at(&p->hist, mig_hist *, j))->version);
	for (size_t i = 0; rc == MIG_OK && i < p->files.n; i++)
	{
		mig_file   *f = mig_vec_at(&p->files, mig_file, i);
		size_t		at = 0;
		mig_hist   *r = hist_of(p, keys, f->version, mig_version_key(f->version), &at);

		if (r)
		{
			matched[at] = 1;
			rc = add_applied(h, p, dirfd, f, r, err);
		}
		else
			rc = add_entry(p, f, NULL, MIG_PENDING);
		if (rc == MIG_OK)
			mig_vec_at(&p->entries, mig_entry, p->entries.n - 1)->key = f->key;
	}
	for (size_t j = 0; rc == MIG_OK && j < p->hist.n; j++)
	{
		mig_hist   *r = *mig_vec_at(&p->hist, mig_hist *, j);
		int			oom = 0;
		char	   *key;

		if (matched[j])
			continue;
		key = mig_order_key(&p->arena, p->order, r->file, &oom);
		if (oom || (rc = add_entry(p, NULL, r, MIG_MISSING)) != MIG_OK)
			return MIG_NOMEM;
		mig_vec_at(&p->entries, mig_entry, p->entries.n - 1)->key = key;
	}
	if (rc != MIG_OK)
		return rc;
	/* the files are in order: only rows without a file need placing */
	if (p->entries.n > p->files.n && p->entries.n > 1)
		qsort(p->entries.items, p->entries.n, sizeof(mig_entry), entry_cmp);
	for (size_t i = 0; i < p->entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p->entries, mig_entry, i);

		/* a row recorded ahead by an off-hours script leaves the pending
		 * migrations before it in order (mig_record.ahead) */
		if (e->hist && !mig_is_repeatable(e->hist->version) && !e->hist->ahead)
			last = i;
	}
	if (last == SIZE_MAX)
		return MIG_OK;
	p->max_applied = mig_vec_at(&p->entries, mig_entry, last)->hist->version;
	for (size_t i = 0; i < last; i++)
	{
		mig_entry  *e = mig_vec_at(&p->entries, mig_entry, i);

		if (e->state == MIG_PENDING && !mig_is_repeatable(e->file->version))
		{
			e->state = MIG_OUT_OF_ORDER;
			p->count[MIG_PENDING]--;
			p->count[MIG_OUT_OF_ORDER]++;
		}
	}
	return MIG_OK;
}

int
mig_plan_after(const mig_plan *p, const mig_file *f, const char *target)
{
	if (p->order == MIG_ORDER_VERSION)
		return mig_version_cmp(f->version, target) > 0;
	/* the place of target's own file, if the folder has one */
	for (size_t i = 0; i < p->files.n; i++)
	{
		const mig_file *t = mig_vec_at(&p->files, mig_file, i);

		if (mig_version_cmp(t->version, target) == 0)
			return mig_order_cmp(p->order, f->key, f->version, t->key, t->version) > 0;
	}
	return strcmp(f->key ? f->key : f->version, target) > 0;
}

void
mig_plan_mark_target(mig_plan *p, const char *target)
{
	const mig_file *t = NULL;

	for (size_t i = 0; p->order != MIG_ORDER_VERSION && t == NULL && i < p->files.n; i++)
		if (mig_version_cmp(mig_vec_at(&p->files, mig_file, i)->version, target) == 0)
			t = mig_vec_at(&p->files, mig_file, i);
	for (size_t i = 0; i < p->entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p->entries, mig_entry, i);
		const mig_file *f = e->file;

		if (f == NULL)
			continue;
		if (p->order == MIG_ORDER_VERSION)
			e->after_target = mig_version_cmp(f->version, target) > 0;
		else if (t)
			e->after_target = mig_order_cmp(p->order, f->key, f->version, t->key, t->version) > 0;
		else
			e->after_target = strcmp(f->key ? f->key : f->version, target) > 0;
	}
}

int
mig_plan_build(const mig_host *h, const char *dir, mig_plan *p, mig_err *err)
{
	return mig_plan_collect(h, dir, p, NULL, err);
}

int
mig_plan_collect(const mig_host *h, const char *dir, mig_plan *p, mig_vec *problems,
				 mig_err *err)
{
	size_t		i = 0,
				j = 0;
	int			dirfd = -1,
				rc;

	memset(p, 0, sizeof(*p));
	p->problems = problems;
	mig_arena_init(&p->arena, h);
	mig_vec_init(&p->files, h, sizeof(mig_file));
	mig_vec_init(&p->hist, h, sizeof(mig_hist *));
	mig_vec_init(&p->entries, h, sizeof(mig_entry));
	mig_vec_init(&p->progress, h, sizeof(mig_progress *));
	p->dir = dir;
	p->in_memory = MIG_IN_MEMORY(h);
	p->keeps_file_id = h->keeps_file_id;

	rc = h->history_load(h->ctx, hist_cb, p, err);
	if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	if (rc != MIG_OK)
		return rc;
	if (h->progress_load && (rc = h->progress_load(h->ctx, progress_cb, p, err)) != MIG_OK)
	{
		if (rc == MIG_NOMEM)
			mig_err_nomem(err);
		return rc;
	}
	p->history_read = 1;
	if (p->hist.n > 1)
		qsort(p->hist.items, p->hist.n, sizeof(mig_hist *), hist_cmp);
	for (size_t k = p->hist.n; k > 0 && p->max_applied == NULL; k--)
		if (!mig_is_repeatable((*mig_vec_at(&p->hist, mig_hist *, k - 1))->version) &&
			!(*mig_vec_at(&p->hist, mig_hist *, k - 1))->ahead)
			p->max_applied = (*mig_vec_at(&p->hist, mig_hist *, k - 1))->version;
	if (dir && (rc = mig_discover(h, &p->arena, dir, &p->files, p->problems, &p->order,
								   err)) != MIG_OK)
		return rc;
	if ((rc = mig_vec_reserve(&p->entries, p->files.n + p->hist.n)) != MIG_OK)
	{
		mig_err_nomem(err);
		return rc;
	}
	if (dir && h->open_dir && !MIG_IN_MEMORY(h) && p->hist.n > 0 && p->files.n > 0 &&
		(dirfd = h->open_dir(h->ctx, dir, err)) < 0)
		mig_err_clear(err);		/* then by whole paths */

	if (p->order != MIG_ORDER_VERSION)
	{
		p->max_applied = NULL;
		rc = merge_by_key(h, p, dirfd, err);
		if (rc == MIG_NOMEM)
			mig_err_nomem(err);
	}
	while (p->order == MIG_ORDER_VERSION && rc == MIG_OK && (i < p->files.n || j < p->hist.n))
	{
		mig_file   *f = i < p->files.n ? mig_vec_at(&p->files, mig_file, i) : NULL;
		mig_hist   *r = j < p->hist.n ? *mig_vec_at(&p->hist, mig_hist *, j) : NULL;
		int			c = f == NULL ? 1 : r == NULL ? -1 : mig_version_cmp(f->version, r->version);

		if (c < 0)
		{
			rc = add_entry(p, f, NULL,
						   p->max_applied && mig_version_cmp(f->version, p->max_applied) < 0 &&
						   !mig_is_repeatable(f->version) ? MIG_OUT_OF_ORDER : MIG_PENDING);
			i++;
		}
		else if (c > 0)
		{
			rc = add_entry(p, NULL, r, MIG_MISSING);
			j++;
		}
		else
		{
			rc = add_applied(h, p, dirfd, f, r, err);
			i++;
			j++;
		}
		if (rc == MIG_NOMEM)
			mig_err_nomem(err);
	}
	if (dirfd >= 0)
		h->close_file(h->ctx, dirfd);
	if (rc == MIG_OK)
		attach_progress(p);
	return rc;
}

void
mig_plan_free(mig_plan *p)
{
	if (p->arena.h == NULL)
		return;
	for (size_t i = 0; i < p->entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p->entries, mig_entry, i);

		if (e->up)
			mig_text_free(p->arena.h, e->up);
		if (e->down)
			mig_text_free(p->arena.h, e->down);
	}
	mig_vec_free(&p->files);
	mig_vec_free(&p->hist);
	mig_vec_free(&p->entries);
	mig_vec_free(&p->progress);
	mig_arena_free(&p->arena);
}

/* "3 (3_a.up.sql)" for the first 20 entries in the state, into names[]. */
static void
describe(const mig_plan *p, int state, mig_arena *a, const char **names)
{
	size_t		n = 0;

	for (size_t i = 0; i < p->entries.n; i++)
	{
		const mig_entry *e = mig_vec_at(&p->entries, mig_entry, i);
		char		buf[600];

		if (e->state != state)
			continue;
		if (n == 20)			/* mig_err_list shows 20 and counts the rest */
			break;
		snprintf(buf, sizeof(buf), "%s (%s)",
				 e->file ? e->file->version : e->hist->version,
				 e->file ? e->file->up : e->hist->file ? e->hist->file : e->hist->name);
		names[n++] = mig_arena_strdup(a, buf);
		if (names[n - 1] == NULL)
			names[n - 1] = "?";
	}
}

static const mig_entry *
first_in(const mig_plan *p, int state)
{
	for (size_t i = 0; i < p->entries.n; i++)
		if (mig_vec_at(&p->entries, mig_entry, i)->state == state)
			return mig_vec_at(&p->entries, mig_entry, i);
	return NULL;
}

static void
hint(const mig_plan *p, int state, mig_err *err)
{
	if (state == MIG_CHANGED)
		mig_err_hint(err, "Restore the files as they were applied and put the change in a new migration, or after a review record the files as they are with migrate_repair.");
	else if (state == MIG_MISSING)
		mig_err_hint(err, "Restore the files: applied migrations must stay in the folder (or accept it with the option ignore_missing=true).");
	else
		mig_err_hint(err, "Give new migrations versions above %s, roll back the later ones first, or apply it anyway with the option out_of_order=true.",
					 p->max_applied);
}

void
mig_entry_error(const mig_plan *p, const mig_entry *e, mig_err *err)
{
	if (e->state == MIG_CHANGED)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"applied migration %s has changed since it was applied",
					e->file->version);
		mig_err_detail(err, "File \"%s\" now has checksum %s; %s was recorded when it was applied.",
					   e->file->up, e->checksum, e->hist->checksum);
	}
	else if (e->state == MIG_MISSING)
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"applied migration %s (%s) is missing from \"%s\"",
					e->hist->version, e->hist->file ? e->hist->file : e->hist->name, p->dir);
	else
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"pending migration %s (%s) is older than the latest applied migration %s",
					e->file->version, e->file->up, p->max_applied);
	hint(p, e->state, err);
}

void
mig_partial_down_error(const mig_progress *g, mig_err *err)
{
	mig_err_set(err, MIG_SQLSTATE_STATE,
				"migration %s is half rolled back: %lld statement%s of its down script ran outside a transaction",
				g->version, (long long) g->statements_done, g->statements_done == 1 ? "" : "s");
	if (g->last_error)
		mig_err_detail(err, "It stopped on: %s", g->last_error);
	mig_err_hint(err, "Finish rolling it back first (the next rollback of it resumes at its failed statement), then apply.");
}

void
mig_partial_up_error(const mig_progress *g, const char *file, mig_err *err)
{
	mig_err_set(err, MIG_SQLSTATE_STATE,
				"migration %s%s%s%s stopped half way: %lld statement%s of it ran outside a transaction",
				g->version, file ? " (" : "", file ? file : "", file ? ")" : "",
				(long long) g->statements_done, g->statements_done == 1 ? "" : "s");
	mig_err_detail(err, "Rolling back other migrations now could undo what those statements did, and the next apply would not run them again. Nothing was rolled back.");
	if (g->last_error)
		mig_err_detail(err, "It stopped on: %s", g->last_error);
	mig_err_hint(err, "Complete it first (fix the failed statement and apply again: it resumes there), or undo its statements by hand and discard its progress with migrate_repair(folder, 'partial=discard').");
}

int
mig_plan_check(const mig_plan *p, const mig_options *o, mig_err *err)
{
	static const int order[] = {MIG_CHANGED, MIG_MISSING, MIG_OUT_OF_ORDER};
	int			state = -1;
	const mig_entry *e;
	const mig_progress *g = mig_plan_partial(p, 1);
	size_t		n;

	if (g)
	{
		mig_partial_down_error(g, err);
		return MIG_ERROR;
	}
	for (int k = 0; k < 3; k++)
		if (p->count[order[k]] &&
			!(order[k] == MIG_MISSING && o->ignore_missing) &&
			!(order[k] == MIG_OUT_OF_ORDER && o->out_of_order))
		{
			state = order[k];
			break;
		}
	if (state < 0)
		return MIG_OK;
	n = p->count[state];
	e = first_in(p, state);
	if (n == 1)
		mig_entry_error(p, e, err);
	else if (state == MIG_CHANGED)
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"%zu applied migrations have changed since they were applied", n);
	else if (state == MIG_MISSING)
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"%zu applied migrations are missing from \"%s\"", n, p->dir);
	else
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"%zu pending migrations are older than the latest applied migration %s",
					n, p->max_applied);
	if (n > 1)
	{
		mig_arena	a;
		const char **names;

		hint(p, state, err);
		mig_arena_init(&a, p->arena.h);
		names = mig_arena_alloc(&a, sizeof(char *) * 20);
		if (names)
		{
			describe(p, state, &a, names);
			mig_err_list(err, "Migrations: ", names, n);
		}
		mig_arena_free(&a);
	}
	if (p->count[MIG_CHANGED] + p->count[MIG_MISSING] + p->count[MIG_OUT_OF_ORDER] > n)
		mig_err_detail(err, "There are other problems too: %zu changed, %zu missing, %zu out of order; migrate_validate lists every problem.",
					   p->count[MIG_CHANGED], p->count[MIG_MISSING], p->count[MIG_OUT_OF_ORDER]);
	return MIG_ERROR;
}
