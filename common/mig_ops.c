/*
 * mig_ops.c -- the operator's entry points beside apply and rollback:
 * validate (every problem in one pass), repair (after a reviewed edit),
 * plan (a dry run) and the off-hours script.  Plan and script share
 * apply's preparation (mig_prepare), so they refuse exactly what apply
 * would refuse and list exactly what it would run.
 */
#include <stdio.h>
#include <string.h>

#include "mig_int.h"

/* ---- validate ---- */

/* The kind of problem a failed check of a pending file is. */
static const char *
file_problem(const mig_err *e)
{
	if (strcmp(e->sqlstate, "42601") == 0)
		return "syntax_error";
	if (strcmp(e->sqlstate, MIG_SQLSTATE_TXN_CONTROL) == 0)
		return "not_allowed";
	return "bad_file";
}

/* 1 when a problem already names version (a duplicate version, say). */
static int
noted(const mig_vec *problems, const char *version)
{
	for (size_t i = 0; i < problems->n; i++)
	{
		const mig_found *f = mig_vec_at(problems, mig_found, i);

		if (f->version && mig_version_cmp(f->version, version) == 0)
			return 1;
	}
	return 0;
}

/*
 * Notes a script that stopped half way outside a transaction: a warning
 * (the next call resumes it), or an error when a byte before the point it
 * resumes at has changed since (the next call refuses it, 55000).
 */
static int
note_partial(const mig_host *h, mig_plan *p, const mig_entry *e, const mig_progress *g)
{
	mig_err		e2;
	const char *file = e && e->file ? e->file->up : e && e->hist ? e->hist->file : NULL;
	int			changed = 0;

	mig_err_clear(&e2);
	if (e && e->file && !g->down)
	{
		mig_text	t;
		mig_script	s;
		mig_err		ignored;
		char		sum[16];

		if (mig_text_read(h, p->dir, e->file->up, &t, &ignored) == MIG_OK)
		{
			if (mig_text_script(&t, e->file, 0, &s, &ignored) == MIG_OK && s.sql)
			{
				if (g->next_offset >= 0 && (uint64_t) g->next_offset <= s.len)
					mig_checksum(s.sql, (size_t) g->next_offset, sum);
				changed = g->next_offset < 0 || (uint64_t) g->next_offset > s.len ||
					strcmp(sum, g->done_checksum) != 0;
			}
			mig_text_free(h, &t);
		}
	}
	if (changed)
	{
		mig_err_set(&e2, MIG_SQLSTATE_STATE,
					"migration %s stopped half way, and its statements that ran outside a transaction have changed since",
					g->version);
		return mig_problem_add(&p->arena, p->problems, g->version, file, "partial_changed", 0, &e2);
	}
	if (g->down)
		mig_err_set(&e2, "01000",
					"migration %s is half rolled back: %lld statement%s of its down script ran outside a transaction; the next rollback resumes at the failed one%s%s",
					g->version, (long long) g->statements_done, g->statements_done == 1 ? "" : "s",
					g->last_error ? ": " : "", g->last_error ? g->last_error : "");
	else
		mig_err_set(&e2, "01000",
					"migration %s stopped half way: %lld statement%s ran outside a transaction; %s%s%s",
					g->version, (long long) g->statements_done, g->statements_done == 1 ? "" : "s",
					e ? "the next apply resumes at the failed one" : "its file is gone",
					g->last_error ? ": " : "", g->last_error ? g->last_error : "");
	return mig_problem_add(&p->arena, p->problems, g->version, file,
						   g->down ? "partial_down" : "partial", 1, &e2);
}

/* Notes the problem of one entry of the plan, if it has one. */
static int
check_entry(const mig_host *h, mig_plan *p, mig_entry *e, mig_err *err)
{
	const char *version = e->file ? e->file->version : e->hist->version;
	const char *file = e->file ? e->file->up : e->hist->file;
	mig_options all;
	mig_err		e2;
	int			rc;

	mig_options_default(&all);
	mig_err_clear(&e2);
	if (e->partial && (rc = note_partial(h, p, e, e->partial)) != MIG_OK)
		return rc;
	switch (e->state)
	{
		case MIG_CHANGED:
		case MIG_MISSING:
		case MIG_OUT_OF_ORDER:
			if (e->state == MIG_MISSING && noted(p->problems, version))
				return MIG_OK;
			mig_entry_error(p, e, &e2);
			rc = mig_problem_add(&p->arena, p->problems, version, file,
								 mig_state_names[e->state], 0, &e2);
			if (rc != MIG_OK || e->state != MIG_OUT_OF_ORDER)
				return rc;
			break;				/* its files are checked too */
		case MIG_REFORMATTED:
			mig_err_set(&e2, "01000", "applied migration %s was reformatted since it was applied",
						version);
			return mig_problem_add(&p->arena, p->problems, version, file,
								   "reformatted", 1, &e2);
		case MIG_PENDING:
		case MIG_OUTDATED:
			break;
		default:
			return MIG_OK;
	}
	if (e->file->go)
	{
		/* apply stops before it */
		mig_go_error(p, e, p->dir, &e2);
		return mig_problem_add(&p->arena, p->problems, version, file, "go_migration", 0, &e2);
	}
	all.out_of_order = 1;
	if (!mig_to_apply(e, &all))
		return MIG_OK;
	rc = mig_check_pending(h, p, e, &e2);
	if (rc == MIG_NOMEM)
	{
		*err = e2;
		return rc;
	}
	if (rc != MIG_OK)
		return mig_problem_add(&p->arena, p->problems, version, file, file_problem(&e2), 0, &e2);
	if (e->outside && h->exec_outside == NULL && h->dry_run_as_run)
	{
		/* this form cannot run it; the procedure form can */
		mig_err_set(&e2, "01000",
					"migration %s (%s) runs outside a transaction, statement by statement: it needs CALL migrate_run",
					version, file);
		return mig_problem_add(&p->arena, p->problems, version, file, "needs_migrate_run", 1, &e2);
	}
	return MIG_OK;
}

/* Notes a statement the impact policy refuses as a problem of its
 * migration. */
static int
policy_problem(void *arg, const mig_impact_row *r, const mig_err *e)
{
	return mig_problem_add(&((mig_plan *) arg)->arena, ((mig_plan *) arg)->problems,
						   r->version, r->file, "policy", 0, e);
}

/* Notes every statement the impact policy of o refuses among the pending
 * migrations whose files are sound (the others already have a problem). */
static int
collect_policy(const mig_host *h, mig_plan *p, const mig_options *o, mig_err *err)
{
	mig_impact_pass ip;
	mig_options all;
	int			rc = MIG_OK;

	mig_impact_begin(&ip, h, o);
	if (!ip.active || h->impact == NULL)
		return MIG_OK;
	ip.on_refusal = policy_problem;
	ip.refusal_arg = p;
	mig_options_default(&all);
	all.out_of_order = 1;
	for (size_t i = 0; rc == MIG_OK && i < p->entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p->entries, mig_entry, i);
		mig_text	tmp[2] = {{0}, {0}};
		const mig_text *up = NULL;
		mig_script	s,
					ds;

		if (e->file == NULL || e->file->go || !mig_to_apply(e, &all) ||
			noted(p->problems, e->file->version))
			continue;
		rc = mig_entry_scripts(h, p->dir, e, tmp, &up, &s, &ds, err);
		if (rc == MIG_OK)
			rc = mig_impact_script(&ip, e, &s, err);
		mig_text_free(h, &tmp[0]);
		mig_text_free(h, &tmp[1]);
		if (rc == MIG_ERROR)
		{
			/* a file that changed since it was checked, say */
			rc = mig_problem_add(&p->arena, p->problems, e->file->version, e->file->up,
								 file_problem(err), 0, err);
			mig_err_clear(err);
		}
	}
	mig_impact_end(&ip);
	return rc;
}

int
mig_validate(const mig_host *h, const char *path, mig_problem_cb cb, void *arg,
			 mig_err *err)
{
	return mig_validate_with(h, path, NULL, cb, arg, err);
}

int
mig_validate_with(const mig_host *h, const char *path, const char *options,
				  mig_problem_cb cb, void *arg, mig_err *err)
{
	mig_plan	p;
	mig_vec		problems;
	mig_arena	a;
	mig_options o;
	int			rc;

	mig_err_clear(err);
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	mig_arena_init(&a, h);
	rc = mig_options_parse_for(&a, options, MIG_USE_VALIDATE, &o, err);
	mig_arena_free(&a);			/* the policy's options hold no string */
	if (rc != MIG_OK)
		return rc;
	mig_vec_init(&problems, h, sizeof(mig_found));
	rc = mig_plan_collect(h, path, &p, &problems, err);
	/* checked as CALL migrate_run would: a migration that only it can
	 * apply is noted, not an error */
	p.run_mode = 1;
	if (h->dry_run_as_run)
		h->dry_run_as_run(h->ctx);
	if (rc == MIG_ERROR && p.history_read)
	{
		/* the folder itself cannot be used: that is the one problem */
		rc = mig_problem_add(&p.arena, &problems, NULL, NULL, "folder", 0, err);
		mig_err_clear(err);
	}
	else
	{
		for (size_t i = 0; rc == MIG_OK && i < p.entries.n; i++)
			rc = check_entry(h, &p, mig_vec_at(&p.entries, mig_entry, i), err);
		for (size_t i = 0; rc == MIG_OK && i < p.progress.n; i++)
		{
			const mig_progress *g = *mig_vec_at(&p.progress, mig_progress *, i);

			if (!g->matched)
				rc = note_partial(h, &p, NULL, g);
		}
		/* what the impact policy would refuse, once the files are known
		 * to be sound */
		if (rc == MIG_OK)
			rc = collect_policy(h, &p, &o, err);
	}
	for (size_t i = 0; rc == MIG_OK && i < problems.n; i++)
	{
		const mig_found *f = mig_vec_at(&problems, mig_found, i);
		mig_problem pr;

		pr.version = f->version;
		pr.file = f->file;
		pr.kind = f->kind;
		pr.severity = f->warning ? "warning" : "error";
		pr.sqlstate = f->sqlstate;
		pr.message = f->message;
		rc = cb(arg, &pr);
	}
	if (rc == MIG_NOMEM && err->code != MIG_NOMEM)
		mig_err_nomem(err);
	mig_plan_free(&p);
	mig_vec_free(&problems);
	return rc;
}

/* ---- repair ---- */

/* Fails unless the file of applied entry e is the migration that was
 * applied: an edit of it, not another migration with its version (two
 * folders sharing one history, say). */
static int
same_migration(const mig_entry *e, mig_err *err)
{
	const mig_file *f = e->file;
	const mig_hist *r = e->hist;

	if (strcmp(f->name, r->name) == 0 && (r->file == NULL || strcmp(f->up, r->file) == 0))
		return MIG_OK;
	mig_err_set(err, MIG_SQLSTATE_STATE,
				"file \"%s\" is not the migration %s that was applied", f->up, f->version);
	mig_err_detail(err, "Version %s was applied from \"%s\" (%s); this folder's file has another %s. migrate_repair records edits of an applied migration, never another migration, which has not run. Nothing was repaired.",
				   r->version, r->file ? r->file : r->name, r->name,
				   r->file && strcmp(f->up, r->file) != 0 ? "name" : "description");
	mig_err_hint(err, "If the file was renamed after review, rename it back; if it is another folder's migration, versions must be unique across the folders that share a history.");
	return MIG_ERROR;
}

/* Brings the history row of applied entry e in line with its files. */
static int
repair_one(const mig_host *h, const char *dir, mig_entry *e, mig_err *err)
{
	const mig_file *f = e->file;
	mig_text	up = {0},
				down = {0};
	mig_script	s,
				ds;
	mig_repair_row r;
	char		id[MIG_FILE_ID_MAX];
	int			outside = 0;
	int			rc = mig_file_scripts(h, dir, f, &up, &down, &s, &ds, err);

	if (rc == MIG_OK && ds.sql)
		rc = mig_down_outside(h, f, &up, f->down ? &down : NULL, &outside, err);
	if (rc == MIG_OK)
	{
		memset(&r, 0, sizeof(r));
		r.version = f->version;
		r.name = f->name;
		r.up_file = f->up;
		r.down_file = f->down ? f->down :
			ds.sql && f->layout == MIG_LAYOUT_SINGLE ? f->up : NULL;
		r.old_checksum = e->hist->checksum;
		r.checksum = up.checksum;
		r.checksum_norm = up.norm;
		r.down_sql = ds.sql;
		r.down_len = ds.sql ? ds.len : 0;
		r.down_outside = outside;
		r.down_line = ds.sql ? mig_script_line(&ds, 0) : 0;
		r.down_noop = ds.sql && mig_script_empty(&ds);
		r.file_id = mig_file_id_of(&up, id) ? id : NULL;
		rc = h->history_repair(h->ctx, &r, err);
	}
	if (rc == MIG_OK)
		mig_notice(h, NULL, "repaired migration %s (%s): checksum %s, was %s",
				   f->version, f->up, up.checksum, e->hist->checksum);
	mig_text_free(h, &up);
	mig_text_free(h, &down);
	return rc;
}

/* partial=discard: forgets each script that stopped half way, with an
 * audit row. */
static int
discard_partial(const mig_host *h, const mig_plan *p, int64_t *n, mig_err *err)
{
	int			rc = MIG_OK;

	for (size_t i = 0; rc == MIG_OK && i < p->progress.n; i++)
	{
		const mig_progress *g = *mig_vec_at(&p->progress, mig_progress *, i);

		rc = h->progress_forget(h->ctx, g->version, g->down, err);
		if (rc == MIG_OK && h->audit)
			rc = h->audit(h->ctx, g->version, "discard_partial", g->done_checksum, NULL, err);
		if (rc == MIG_OK)
		{
			mig_notice(h, "What those statements did stays in the database: undo it by hand if that is not done yet.",
					   "discarded the progress of migration %s: %lld statement%s of its %s script had run outside a transaction",
					   g->version, (long long) g->statements_done,
					   g->statements_done == 1 ? "" : "s", g->down ? "down" : "up");
			(*n)++;
		}
	}
	return rc;
}

int
mig_repair(const mig_host *h, const char *path, int64_t *repaired, mig_err *err)
{
	return mig_repair_with(h, path, NULL, repaired, err);
}

int
mig_repair_with(const mig_host *h, const char *path, const char *options,
				int64_t *repaired, mig_err *err)
{
	mig_plan	p;
	mig_arena	a;
	mig_options o;
	int			rc;

	mig_err_clear(err);
	*repaired = 0;
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	if (h->history_repair == NULL)
	{
		mig_err_set(err, "0A000", "repairing the history is not available here");
		return MIG_ERROR;
	}
	mig_arena_init(&a, h);
	rc = mig_options_parse_for(&a, options, MIG_USE_REPAIR, &o, err);
	if (rc == MIG_OK && o.partial_discard && h->progress_forget == NULL)
	{
		mig_err_set(err, "0A000", "migrations that run outside a transaction have no progress to discard here");
		rc = MIG_ERROR;
	}
	mig_arena_free(&a);
	if (rc != MIG_OK)
		return rc;
	if ((rc = mig_lock(h, &o.lock, err)) != MIG_OK)
		return rc == MIG_BUSY ? MIG_OK : rc;
	rc = mig_plan_build(h, path, &p, err);
	/* every file to repair is the migration that was applied, checked
	 * before anything is written */
	for (size_t i = 0; rc == MIG_OK && i < p.entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p.entries, mig_entry, i);

		if (e->state == MIG_CHANGED || e->state == MIG_REFORMATTED)
			rc = same_migration(e, err);
	}
	for (size_t i = 0; rc == MIG_OK && i < p.entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p.entries, mig_entry, i);

		if (e->state != MIG_CHANGED && e->state != MIG_REFORMATTED)
			continue;
		if ((rc = repair_one(h, path, e, err)) == MIG_OK)
			(*repaired)++;
	}
	if (rc == MIG_OK && o.partial_discard)
		rc = discard_partial(h, &p, repaired, err);
	mig_plan_free(&p);
	rc = mig_finish(h, rc, err);
	if (rc != MIG_OK)
		*repaired = 0;
	return rc;
}

/* ---- plan (dry run) ---- */

int
mig_each_pending(const mig_host *h, const char *path, const char *options, unsigned use,
				 int (*begin) (void *arg, const mig_options *o, mig_err *err),
				 int (*fn) (void *arg, const mig_entry *e, const mig_text *up,
							const mig_script *s, const mig_script *ds, mig_err *err),
				 void *arg, mig_err *err)
{
	mig_arena	a;
	mig_options o;
	mig_plan	p;
	int			rc;

	mig_err_clear(err);
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	mig_arena_init(&a, h);
	rc = mig_options_parse_for(&a, options, use, &o, err);
	if (rc == MIG_OK && begin)
		rc = begin(arg, &o, err);
	if (rc == MIG_OK)
	{
		rc = mig_prepare(h, path, &o, &p, err);
		for (size_t i = 0; rc == MIG_OK && i < p.entries.n; i++)
		{
			mig_entry  *e = mig_vec_at(&p.entries, mig_entry, i);
			mig_text	tmp[2] = {{0}, {0}};
			const mig_text *up = NULL;
			mig_script	s,
						ds;

			if (!mig_to_apply(e, &o))
				continue;
			if (e->file->go)
			{
				mig_go_error(&p, e, path, err);	/* as apply stops */
				rc = MIG_ERROR;
				break;
			}
			rc = mig_entry_scripts(h, path, e, tmp, &up, &s, &ds, err);
			if (rc == MIG_OK)
				rc = fn(arg, e, up, &s, &ds, err);
			mig_text_free(h, &tmp[0]);
			mig_text_free(h, &tmp[1]);
		}
		mig_plan_free(&p);
	}
	mig_arena_free(&a);
	if (rc == MIG_NOMEM && err->code != MIG_NOMEM)
		mig_err_nomem(err);
	return rc;
}

typedef struct plan_arg {
	mig_pending_cb cb;
	void	   *arg;
	mig_impact_pass ip;			/* the impact policy, failing the plan as
								 * it fails apply */
} plan_arg;

static int
plan_begin(void *arg, const mig_options *o, mig_err *err)
{
	plan_arg   *pa = arg;

	(void) err;
	mig_impact_begin(&pa->ip, pa->ip.h, o);
	pa->ip.stop = 1;
	return MIG_OK;
}

static int
plan_one(void *arg, const mig_entry *e, const mig_text *up, const mig_script *s,
		 const mig_script *ds, mig_err *err)
{
	plan_arg   *pa = arg;
	mig_pending m;
	int			rc;

	if (pa->ip.active && (rc = mig_impact_script(&pa->ip, e, s, err)) != MIG_OK)
		return rc;

	m.version = e->file->version;
	m.name = e->file->name;
	m.file = e->file->up;
	m.kind = e->state == MIG_OUTDATED ? "rerun" :
		mig_is_repeatable(e->file->version) ? "repeatable" : "versioned";
	m.sql = s->sql;
	m.len = s->len;
	m.down_sql = ds->sql;
	m.down_len = ds->sql ? ds->len : 0;
	m.checksum = up->checksum;
	m.outside = e->outside;
	m.statements_done = e->partial ? e->partial->statements_done : 0;
	rc = pa->cb(pa->arg, &m);
	if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	return rc;
}

int
mig_plan_pending(const mig_host *h, const char *path, const char *options,
				 mig_pending_cb cb, void *arg, mig_err *err)
{
	plan_arg	pa;
	int			rc;

	memset(&pa, 0, sizeof(pa));
	pa.cb = cb;
	pa.arg = arg;
	pa.ip.h = h;
	pa.ip.first = 1;
	rc = mig_each_pending(h, path, options, MIG_USE_APPLY | MIG_USE_DRYRUN, plan_begin, plan_one, &pa, err);
	mig_impact_end(&pa.ip);
	return rc;
}

/* ---- the off-hours script ---- */

typedef struct strbuf {
	const mig_host *h;
	char	   *buf;
	size_t		len,
				cap;
	int			run_mode;		/* mode=run: as CALL migrate_run would */
} strbuf;

static int
put(strbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 4096;
		char	   *fresh;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((fresh = b->h->alloc(b->h->ctx, cap)) == NULL)
			return MIG_NOMEM;
		if (b->buf)
		{
			memcpy(fresh, b->buf, b->len);
			b->h->release(b->h->ctx, b->buf);
		}
		b->buf = fresh;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
	return MIG_OK;
}

/* Appends the host's SQL for one part of the script. */
static int
put_part(strbuf *b, int part, const mig_record *rec, const mig_lock_opts *lock,
		 mig_err *err)
{
	char	   *sql = NULL;
	int			rc = b->h->script_part(b->h->ctx, part, rec, lock, &sql, err);

	if (rc == MIG_OK)
		rc = put(b, sql, strlen(sql));
	if (sql)
		b->h->release(b->h->ctx, sql);
	if (rc == MIG_NOMEM && err->code != MIG_NOMEM)
		mig_err_nomem(err);
	return rc;
}

/* A script's state: its text, and with only=flagged which migrations the
 * policy refuses (mig_impact.c). */
typedef struct script_arg {
	strbuf		b;				/* first: script_begin's put_part takes it */
	int			only_flagged;
	size_t		left_out;		/* pending migrations left out so far */
	size_t		written;		/* migrations written */
	mig_impact_pass ip;
} script_arg;

static int
script_one(void *arg, const mig_entry *e, const mig_text *up, const mig_script *s,
		   const mig_script *ds, mig_err *err)
{
	script_arg *sa = arg;
	strbuf	   *b = &sa->b;
	mig_record	rec;
	char		head[1200];
	int			rc;

	if (sa->only_flagged)
	{
		/* every pending script is analysed, in order: one may create what
		 * a later one changes */
		if ((rc = mig_impact_script(&sa->ip, e, s, err)) != MIG_OK)
			return rc;
		if (sa->ip.refused == 0)
		{
			sa->left_out++;
			return MIG_OK;
		}
	}
	if (e->partial || (e->outside && !sa->b.run_mode))
	{
		if (e->partial)
		{
			mig_err_set(err, MIG_SQLSTATE_STATE,
						"migration %s (%s) stopped half way: %lld of its statements ran outside a transaction",
						e->file->version, e->file->up, (long long) e->partial->statements_done);
			mig_err_detail(err, "A script cannot resume half way, so it would not do what applying does.");
			mig_err_hint(err, "Complete it by applying (it resumes at the failed statement), or write the script only up to the migration before it with the option target=.");
		}
		else
		{
			mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
						"migration %s (%s) must run outside a transaction, statement by statement",
						e->file->version, e->file->up);
			mig_err_detail(err, "By default the script runs every migration in one transaction, as SELECT migrate_apply does.");
			mig_err_hint(err, "Write the script with the option mode=run: it runs such a migration's statements outside a transaction, as CALL migrate_run does (or write it only up to the migration before with target=).");
		}
		return MIG_ERROR;
	}
	mig_file_record(e->file, up, s, ds, &rec);
	rec.down_outside = e->down_outside;
	/* run before the pending migrations left out ahead of it: they
	 * apply later without being out of order */
	rec.ahead = sa->left_out > 0;
	if (sa->only_flagged)
		snprintf(head, sizeof(head), "\n-- migration %s (%s): the policy refuses %d statement%s of it%s\n",
				 e->file->version, e->file->up, sa->ip.refused, sa->ip.refused == 1 ? "" : "s",
				 rec.ahead ? "; recorded ahead of pending migrations left out of this script" : "");
	else
		snprintf(head, sizeof(head), "\n-- migration %s (%s)\n", e->file->version, e->file->up);
	sa->written++;
	rc = put(b, head, strlen(head));
	if (rc == MIG_OK && e->state == MIG_OUTDATED)
		rc = put_part(b, MIG_PART_FORGET, &rec, NULL, err);
	if (e->outside)
	{
		/* mode=run: its statements run one at a time outside a
		 * transaction, then it is recorded in a transaction of its own
		 * (recorded first, a failure would leave it recorded undone) */
		if (rc == MIG_OK)
			rc = put_part(b, MIG_PART_LEAVE, &rec, NULL, err);
		if (rc == MIG_OK)
			rc = put_part(b, MIG_PART_BODY, &rec, NULL, err);
		if (rc == MIG_OK)
			rc = put(b, "\n;\n", 3);
		if (rc == MIG_OK)
			rc = put_part(b, MIG_PART_REENTER, &rec, NULL, err);
		if (rc == MIG_OK)
			rc = put_part(b, MIG_PART_RECORD, &rec, NULL, err);
		if (rc == MIG_NOMEM && err->code != MIG_NOMEM)
			mig_err_nomem(err);
		return rc;
	}
	/* recorded first: run a second time, the script stops before the
	 * migration does anything */
	if (rc == MIG_OK)
		rc = put_part(b, MIG_PART_RECORD, &rec, NULL, err);
	if (rc == MIG_OK)
		rc = put_part(b, MIG_PART_BODY, &rec, NULL, err);
	/* a last line comment or a statement without its semicolon must not
	 * swallow what follows */
	if (rc == MIG_OK)
		rc = put(b, "\n;\n", 3);
	if (rc == MIG_NOMEM && err->code != MIG_NOMEM)
		mig_err_nomem(err);
	return rc;
}

/* The script's start: the transaction, the lock, the call's lock rules. */
static int
script_begin(void *arg, const mig_options *o, mig_err *err)
{
	script_arg *sa = arg;

	sa->b.run_mode = o->mode_run;
	if (o->only_flagged)
	{
		mig_impact_begin(&sa->ip, sa->b.h, o);
		if (!sa->ip.active)
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "option only=flagged needs an impact policy");
			mig_err_detail(err, "It writes only the migrations the policy refuses, and no policy is set.");
			mig_err_hint(err, "Give max_lock= or no_rewrite=true (and max_size=) with it, or set them as defaults (PostgreSQL: migrate.max_lock, migrate.no_rewrite, migrate.max_size).");
			return MIG_ERROR;
		}
		sa->only_flagged = 1;
	}
	return put_part(&sa->b, o->mode_run ? MIG_PART_BEGIN_RUN : MIG_PART_BEGIN, NULL, &o->lock, err);
}

int
mig_script_text(const mig_host *h, const char *path, const char *options,
				char **text, size_t *len, mig_err *err)
{
	script_arg	sa;
	strbuf	   *b = &sa.b;
	int			rc;

	*text = NULL;
	*len = 0;
	mig_err_clear(err);
	if (h->script_part == NULL)
	{
		mig_err_set(err, "0A000", "writing a migration script is not available here");
		return MIG_ERROR;
	}
	memset(&sa, 0, sizeof(sa));
	b->h = h;
	sa.ip.h = h;
	sa.ip.first = 1;
	rc = mig_each_pending(h, path, options, MIG_USE_APPLY | MIG_USE_DRYRUN | MIG_USE_SCRIPT,
						  script_begin, script_one, &sa, err);
	mig_impact_end(&sa.ip);
	if (rc == MIG_OK && sa.only_flagged && sa.written == 0)
	{
		static const char none[] = "\n-- no pending migration is refused by the policy: nothing to run off-hours\n";

		if ((rc = put(b, none, sizeof(none) - 1)) != MIG_OK)
			mig_err_nomem(err);
	}
	if (rc == MIG_OK)
		rc = put_part(b, b->run_mode ? MIG_PART_END_RUN : MIG_PART_END, NULL, NULL, err);
	if (rc != MIG_OK)
	{
		if (b->buf)
			h->release(h->ctx, b->buf);
		return rc;
	}
	*text = b->buf;
	*len = b->len;
	return MIG_OK;
}
