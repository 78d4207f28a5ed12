/*
 * mig_run.c -- the drivers behind migrate_apply, migrate_down and
 * migrate_status.  Each takes the host's lock before it reads the history,
 * validates everything before it runs anything, and gives back every byte
 * it allocated before it returns.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mig_int.h"

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* ms rounded to three decimals (a microsecond). */
static double
round_ms(double ms)
{
	return (double) (int64_t) (ms * 1000.0 + 0.5) / 1000.0;
}

int
mig_path_given(const mig_host *h, const char **path, mig_err *err)
{
	if (h->source)
	{
		*path = mig_source_label(h->source);
		return 1;
	}
	if (*path != NULL && (*path)[0] != '\0')
		return 1;
	mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "migration folder path must not be empty");
	return 0;
}

/* Makes sure a failure carries a message, and returns rc. */
static int
failed(mig_err *err, int rc)
{
	if (rc == MIG_NOMEM && err->code != MIG_NOMEM)
		mig_err_nomem(err);
	else if (err->code == MIG_OK)
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "a host callback failed without a message");
	return rc;
}

int
mig_lock(const mig_host *h, const mig_lock_opts *o, mig_err *err)
{
	mig_lock_opts defaults = {-1, 0, -1, -1, -1};
	int			rc = h->lock(h->ctx, o ? o : &defaults, err);

	if (rc == MIG_BUSY && o && o->skip_if_locked)
	{
		mig_notice(h, err->detail[0] ? err->detail : NULL,
				   "skipped: %s", err->message);
		mig_err_clear(err);
		return MIG_BUSY;
	}
	if (rc == MIG_BUSY)
		rc = MIG_ERROR;
	return rc == MIG_OK ? MIG_OK : failed(err, rc);
}

void
mig_notice(const mig_host *h, const char *detail, const char *fmt,...)
{
	char		msg[MIG_MSG_MAX];
	va_list		ap;

	if (h->notice == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	h->notice(h->ctx, msg, detail);
}

int
mig_finish(const mig_host *h, int rc, mig_err *err)
{
	if (rc == MIG_OK)
	{
		rc = h->unlock(h->ctx, 1, err);
		if (rc == MIG_OK)
			return MIG_OK;
		failed(err, rc);
	}
	{
		mig_err		ignored;

		mig_err_clear(&ignored);
		h->unlock(h->ctx, 0, &ignored);
	}
	return rc;
}

/* Runs host->check_script or host->exec on s and names the file, version
 * and line in the error. */
int
mig_run_script(const mig_host *h, int (*fn) (void *, const mig_script *, mig_err *),
		   const mig_script *s, mig_err *err)
{
	int			rc;

	err->offset = -1;
	rc = fn(h->ctx, s, err);
	if (rc != MIG_OK && rc != MIG_OUTSIDE)
	{
		failed(err, rc);
		if (err->context[0] == '\0')
			mig_err_at(err, s);
	}
	return rc;
}

/*
 * Says in err's detail what became of the migrations a failed call had
 * applied before the failure: rolled back with it (one unit of work), or
 * committed (a host that commits after each migration).
 */
void
mig_undone_detail(int64_t applied, int64_t committed, mig_err *err)
{
	int64_t		undone = applied - committed;

	if (applied == 0 || err->code == MIG_NOMEM)
		return;
	if (committed > 0)
		mig_err_detail(err, "The first %lld migration%s this call applied stay%s applied (committed).",
					   (long long) committed, committed == 1 ? "" : "s", committed == 1 ? "s" : "");
	if (undone > 0)
		mig_err_detail(err, "The %s%lld migration%s this call applied %s rolled back with it.",
					   committed > 0 ? "next " : "", (long long) undone, undone == 1 ? "" : "s",
					   undone == 1 ? "was" : "were");
}

/* Refuses a migration that must run outside a transaction where the host
 * cannot run it so. */
static int
refuse_outside(const mig_script *s, const char *hint, mig_err *err)
{
	if (s->nontransactional)
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
					"migration %s (%s) is marked to run outside a transaction (%s)",
					s->version, s->file, s->nontransactional);
	else
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
					"migration %s (%s) has statements that cannot run inside a transaction",
					s->version, s->file);
	mig_err_detail(err, "Nothing was applied.");
	mig_err_hint(err, "%s", hint ? hint :
				 "Running migrations outside a transaction is not available here; if its statements can run in a transaction, remove the marker.");
	return MIG_ERROR;
}

/* Reads the file of migration f that holds its up script (down = 0) or
 * its down script (down = 1) into *t. */
static int
read_file_of(const mig_host *h, const char *dir, const mig_file *f, int down,
			 mig_text *t, mig_err *err)
{
	return mig_text_read(h, dir, down && f->down ? f->down : f->up, t, err);
}

/*
 * Checks one script of a pending migration before anything runs.  An up
 * script that must run outside a transaction gives MIG_OUTSIDE (or is
 * refused where the host cannot run it so).  A down script that must --
 * marked so, or holding a statement that cannot run in one -- sets
 * *down_outside: applying never depends on whether its down script could
 * run in a transaction; rolling back decides.
 */
static int
check_script(const mig_host *h, const mig_plan *p, const mig_text *t, const mig_file *f,
			 int down, int *down_outside, mig_err *err)
{
	mig_script	s;
	int			rc = mig_text_script(t, f, down, &s, err);

	if (rc != MIG_OK || s.sql == NULL || (down && mig_script_empty(&s)))
		return rc;				/* (an empty down script runs nothing anywhere) */
	if (h->check_script && s.len > 0)
		rc = mig_run_script(h, h->check_script, &s, err);
	if (down)
	{
		if (rc == MIG_OUTSIDE || (rc == MIG_OK && s.nontransactional))
		{
			*down_outside = 1;
			rc = MIG_OK;
		}
		return rc;
	}
	if ((rc == MIG_OK && s.nontransactional) || rc == MIG_OUTSIDE)
	{
		if (h->exec_outside == NULL && !(p && p->run_mode))
			return refuse_outside(&s, h->outside_hint, err);
		rc = MIG_OUTSIDE;
	}
	return rc;
}

int
mig_down_outside(const mig_host *h, const mig_file *f, const mig_text *up,
				 const mig_text *down, int *outside, mig_err *err)
{
	*outside = 0;
	if (f->down && down)
		return check_script(h, NULL, down, f, 1, outside, err);
	if (f->layout == MIG_LAYOUT_SINGLE)
		return check_script(h, NULL, up, f, 1, outside, err);
	return MIG_OK;
}

/* Keeps t in *slot (a copy in the plan's arena) when the budget allows
 * -- the first file always: memory is bounded by the largest file anyway,
 * and a single big migration is then read once, not twice -- else frees
 * it. */
static void
keep(const mig_host *h, mig_plan *p, mig_text *t, mig_text **slot)
{
	if ((p->kept == 0 || p->kept + t->len <= MIG_KEEP_BUDGET) &&
		(*slot = mig_arena_alloc(&p->arena, sizeof(mig_text))) != NULL)
	{
		p->kept += t->len;
		**slot = *t;
	}
	else
		mig_text_free(h, t);	/* read again when applied */
}

/* Validates a pending migration before anything runs; keeps the up file's
 * checksum in e->checksum (and the down file's in e->down_sum) and,
 * within the budget, the files themselves. */
int
mig_check_pending(const mig_host *h, mig_plan *p, mig_entry *e, mig_err *err)
{
	const mig_file *f = e->file;
	mig_text	t;
	int			rc;

	if (f->go)
		return MIG_OK;			/* never run here: apply stops before it */
	if ((rc = read_file_of(h, p->dir, f, 0, &t, err)) != MIG_OK)
		return rc;
	memcpy(e->checksum, t.checksum, sizeof(t.checksum));
	memcpy(e->norm, t.norm, sizeof(t.norm));
	e->down_outside = 0;
	rc = check_script(h, p, &t, f, 0, NULL, err);
	if (rc == MIG_OUTSIDE)
	{
		e->outside = 1;
		rc = MIG_OK;
	}
	if (rc == MIG_OK && f->layout == MIG_LAYOUT_SINGLE)
		rc = check_script(h, p, &t, f, 1, &e->down_outside, err);	/* its down section */
	if (rc != MIG_OK)
	{
		mig_text_free(h, &t);
		return rc;
	}
	keep(h, p, &t, &e->up);
	if (f->down == NULL)
		return MIG_OK;
	if ((rc = read_file_of(h, p->dir, f, 1, &t, err)) != MIG_OK)
		return rc;
	memcpy(e->down_sum, t.checksum, sizeof(t.checksum));
	rc = check_script(h, p, &t, f, 1, &e->down_outside, err);
	if (rc == MIG_OK)
		keep(h, p, &t, &e->down);
	else
		mig_text_free(h, &t);
	return rc;
}

/* The text of e's up file (down = 0) or down file: the one kept since
 * validation, or read again into *tmp. */
static int
text_of(const mig_host *h, const char *dir, mig_entry *e, int down,
		mig_text *tmp, const mig_text **t, mig_err *err)
{
	const mig_text *kept = down && e->file->down ? e->down : e->up;

	if (kept)
	{
		*t = kept;
		return MIG_OK;
	}
	*t = tmp;
	return read_file_of(h, dir, e->file, down, tmp, err);
}

/*
 * The down script of migration f into *ds, from its down file's text down
 * (when it has one) or its up file's up: ds->sql NULL when it has none,
 * empty when its tool rolls it back by running nothing.
 */
static int
down_script(const mig_file *f, const mig_text *up, const mig_text *down,
			mig_script *ds, mig_err *err)
{
	memset(ds, 0, sizeof(*ds));
	if (f->down || f->layout == MIG_LAYOUT_SINGLE)
		return mig_text_script(f->down ? down : up, f, 1, ds, err);
	if (f->layout == MIG_LAYOUT_UPDOWN)
	{
		/* golang-migrate (and morph, its fork) roll back a version without
		 * a .down.sql file by running nothing: migrate.go, newMigration,
		 * 'create "empty" migration' on os.ErrNotExist.  Flyway without
		 * an undo file and diesel without down.sql refuse (diesel:
		 * file_based_migrations.rs, NoMigrationRevertFile).  Flyway's undo
		 * runs the U file of the version it undoes (flyway/flywaydb.org,
		 * documentation/command/undo.md); its docs say nothing of a
		 * version without one and the undo code is not open source, so
		 * that is refused rather than guessed a no-op. */
		ds->sql = up->buf + up->len;
		ds->len = 0;
		ds->file = f->up;
		ds->version = f->version;
		ds->down = 1;
	}
	return MIG_OK;
}

int
mig_entry_scripts(const mig_host *h, const char *dir, mig_entry *e, mig_text tmp[2],
				  const mig_text **up, mig_script *s, mig_script *ds, mig_err *err)
{
	const mig_file *f = e->file;
	const mig_text *dt = NULL;
	int			rc = text_of(h, dir, e, 0, &tmp[0], up, err);

	memset(ds, 0, sizeof(*ds));
	if (rc == MIG_OK)
		rc = mig_text_script(*up, f, 0, s, err);
	if (rc == MIG_OK && strcmp((*up)->checksum, e->checksum) != 0)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration file \"%s\" changed while migrations were being applied", f->up);
		rc = MIG_ERROR;
	}
	if (rc == MIG_OK && f->down)
	{
		rc = text_of(h, dir, e, 1, &tmp[1], &dt, err);
		/* read again (beyond the budget): every byte stored must be a
		 * byte validated */
		if (rc == MIG_OK && e->down_sum[0] && strcmp(dt->checksum, e->down_sum) != 0)
		{
			mig_err_set(err, MIG_SQLSTATE_STATE,
						"migration file \"%s\" changed while migrations were being applied", f->down);
			rc = MIG_ERROR;
		}
	}
	if (rc == MIG_OK)
		rc = down_script(f, *up, dt, ds, err);
	return rc;
}

int
mig_file_scripts(const mig_host *h, const char *dir, const mig_file *f, mig_text *up,
				 mig_text *down, mig_script *s, mig_script *ds, mig_err *err)
{
	int			rc = mig_text_read(h, dir, f->up, up, err);

	memset(ds, 0, sizeof(*ds));
	if (rc == MIG_OK)
		rc = mig_text_script(up, f, 0, s, err);
	if (rc == MIG_OK && f->down)
		rc = mig_text_read(h, dir, f->down, down, err);
	if (rc == MIG_OK)
		rc = down_script(f, up, f->down ? down : NULL, ds, err);
	return rc;
}

void
mig_file_record(const mig_file *f, const mig_text *up, const mig_script *s,
				const mig_script *ds, mig_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->version = f->version;
	rec->name = f->name;
	rec->up_file = f->up;
	rec->down_file = f->down ? f->down :
		ds->sql && f->layout == MIG_LAYOUT_SINGLE ? f->up : NULL;
	rec->checksum = up->checksum;
	rec->checksum_norm = up->norm;
	rec->up_sql = s->sql;
	rec->up_len = s->len;
	rec->down_sql = ds->sql;
	rec->down_len = ds->sql ? ds->len : 0;
	rec->down_line = ds->sql ? mig_script_line(ds, 0) : 0;
	rec->down_noop = ds->sql && mig_script_empty(ds);
}

int
mig_script_empty(const mig_script *s)
{
	size_t		wlen;

	return mig_first_word(s->sql, s->len, 1, &wlen) == s->len;
}

/* Runs one pending migration and records it with its down script. */
static int
apply_one(const mig_host *h, const char *dir, mig_entry *e, mig_err *err)
{
	mig_text	tmp[2] = {{0}, {0}};
	const mig_text *up = NULL;
	mig_script	s,
				ds;
	mig_record	rec;
	char		id[MIG_FILE_ID_MAX];
	double		t0 = now_ms();
	int			rc = mig_entry_scripts(h, dir, e, tmp, &up, &s, &ds, err);

	if (rc == MIG_OK)
	{
		/* announced before it runs: a long one shows at once what runs */
		if (e->partial)
			mig_notice(h, NULL, "resuming migration %s (%s) after its %lld statement%s done",
					   e->file->version, e->file->up, (long long) e->partial->statements_done,
					   e->partial->statements_done == 1 ? "" : "s");
		else
			mig_notice(h, NULL, "applying migration %s (%s)%s", e->file->version, e->file->up,
					   e->outside ? " outside a transaction, statement by statement" : "");
		t0 = now_ms();
		rc = mig_run_script(h, e->outside ? h->exec_outside : h->exec, &s, err);
	}
	if (rc == MIG_OK)
	{
		mig_file_record(e->file, up, &s, &ds, &rec);
		rec.down_outside = e->down_outside;
		/* milliseconds to the microsecond: the clock says no more */
		rec.exec_ms = round_ms(now_ms() - t0);
		rec.file_id = mig_file_id_of(up, id) ? id : NULL;
		rc = h->history_add(h->ctx, &rec, err);
		if (rc != MIG_OK)
			failed(err, rc);
		else
			mig_notice(h, NULL, "applied migration %s (%s) in %.1f ms",
					   e->file->version, e->file->up, rec.exec_ms);
	}
	mig_text_free(h, &tmp[0]);
	mig_text_free(h, &tmp[1]);
	if (rc == MIG_OK && h->checkpoint && (rc = h->checkpoint(h->ctx, err)) != MIG_OK)
		failed(err, rc);
	return rc;
}

int
mig_to_apply(const mig_entry *e, const mig_options *o)
{
	if (e->state == MIG_OUTDATED)
		return 1;				/* repeatables run whatever the target */
	if (e->state != MIG_PENDING && !(e->state == MIG_OUT_OF_ORDER && o->out_of_order))
		return 0;
	return o->target == NULL || mig_is_repeatable(e->file->version) || !e->after_target;
}

/*
 * goose runs Go migrations compiled into the application (goose: Go
 * sources are registered with goose.AddMigration, provider_collect.go);
 * migrate runs SQL only.  So a pending Go migration stops apply before
 * it: the application runs it, migrate_record records it, and the next
 * apply goes on after it.
 */
void
mig_go_error(const mig_plan *p, const mig_entry *e, const char *path, mig_err *err)
{
	const char *before = NULL;
	char		folder[MIG_PATH_MAX + 4];

	/* the folder as the call named it: a path, or the same data again */
	if (p->in_memory)
		snprintf(folder, sizeof(folder), "<the same %s>",
				 strncmp(path, "JSON", 4) == 0 ? "JSON object" : "archive");
	else
		snprintf(folder, sizeof(folder), "'%s'", path);
	path = folder;
	for (size_t i = 0; i < p->entries.n; i++)
	{
		const mig_entry *b = mig_vec_at(&p->entries, mig_entry, i);

		if (b == e)
			break;
		if (b->file && !mig_is_repeatable(b->file->version))
			before = b->file->version;
	}
	mig_err_set(err, MIG_SQLSTATE_STATE,
				"migration %s (%s) is a goose Go migration, which migrate cannot run",
				e->file->version, e->file->up);
	mig_err_detail(err, "Applying stops before it: Go migrations run in the application.");
	if (before && e->state == MIG_PENDING)
		mig_err_hint(err, "Apply the migrations before it (with the option target=%s if this error rolled them back), run it with the application, record it as applied with migrate_record(%s, '%s'), then apply again.",
					 before, path, e->file->version);
	else
		mig_err_hint(err, "Run it with the application, record it as applied with migrate_record(%s, '%s'), then apply again.",
					 path, e->file->version);
}

int
mig_prepare(const mig_host *h, const char *path, const mig_options *o, mig_plan *p,
			mig_err *err)
{
	int			rc = mig_plan_build(h, path, p, err);

	/* a dry run of CALL migrate_run checks as that form would */
	if (o->mode_run)
	{
		p->run_mode = 1;
		if (h->dry_run_as_run)
			h->dry_run_as_run(h->ctx);
	}
	if (rc == MIG_OK && o->target)
		mig_plan_mark_target(p, o->target);
	if (rc == MIG_OK)
		rc = mig_plan_check(p, o, err);
	for (size_t i = 0; rc == MIG_OK && i < p->entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p->entries, mig_entry, i);

		if (mig_to_apply(e, o))
			rc = mig_check_pending(h, p, e, err);
	}
	if (rc == MIG_OK && p->count[MIG_REFORMATTED])
	{
		const mig_entry *e = NULL;

		for (size_t i = 0; e == NULL; i++)
			if (mig_vec_at(&p->entries, mig_entry, i)->state == MIG_REFORMATTED)
				e = mig_vec_at(&p->entries, mig_entry, i);
		mig_notice(h, "Only white space, line ends or a byte order mark changed; migrate_repair records the files as they are now.",
				   p->count[MIG_REFORMATTED] == 1 ?
				   "applied migration %s (%s) was reformatted since it was applied" :
				   "applied migration %s (%s) and %zu more were reformatted since they were applied",
				   e->file->version, e->file->up, p->count[MIG_REFORMATTED] - 1);
	}
	return rc;
}

int
mig_apply(const mig_host *h, const char *path, int64_t *applied, mig_err *err)
{
	return mig_apply_with(h, path, NULL, applied, err);
}

int
mig_apply_with(const mig_host *h, const char *path, const char *options,
			   int64_t *applied, mig_err *err)
{
	mig_plan	p;
	mig_arena	a;
	mig_options o;
	mig_noop	noop;
	int64_t		committed = 0;	/* of *applied, those committed for good */
	int			rc,
				stopped = 0;
	size_t		i;

	mig_err_clear(err);
	*applied = 0;
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	mig_arena_init(&a, h);
	if ((rc = mig_options_parse(&a, options, &o, err)) != MIG_OK)
	{
		mig_arena_free(&a);
		return rc;
	}
	if ((rc = mig_lock(h, &o.lock, err)) != MIG_OK)
	{
		mig_arena_free(&a);
		return rc == MIG_BUSY ? MIG_OK : rc;
	}
	if ((rc = mig_noop_check(h, path, &noop, err)) != MIG_OK || noop.known)
	{
		mig_arena_free(&a);
		if (rc != MIG_OK)
			failed(err, rc);
		return mig_finish(h, rc, err);
	}
	rc = mig_prepare(h, path, &o, &p, err);
	/* the impact policy, before anything runs */
	if (rc == MIG_OK)
		rc = mig_policy_enforce(h, path, &p, &o, err);
	if (rc == MIG_OK)
		rc = mig_noop_remember(h, &p, &noop, err);
	/* in version order: repeatables come last, as Flyway runs them */
	for (i = 0; rc == MIG_OK && i < p.entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p.entries, mig_entry, i);

		if (!mig_to_apply(e, &o))
			continue;
		if (e->file->go)
		{
			/* keep what ran before it, and say why it stopped */
			mig_go_error(&p, e, path, err);
			stopped = 1;
			break;
		}
		if (e->state == MIG_OUTDATED &&
			(rc = h->history_remove(h->ctx, e->file->version, err)) != MIG_OK)
			break;
		/* running outside a transaction commits what came before */
		if (e->outside)
			committed = *applied;
		rc = apply_one(h, path, e, err);
		if (rc == MIG_OK)
			(*applied)++;
		if (rc == MIG_OK && h->checkpoint)
			committed = *applied;
	}
	/* the folder is applied in full now: the next call may take the
	 * shortcut without reading the history again */
	if (rc == MIG_OK && !stopped && *applied > 0)
		rc = mig_noop_remember_applied(h, &p, &noop, (size_t) *applied, err);
	mig_plan_free(&p);
	mig_arena_free(&a);
	if (rc != MIG_OK)
	{
		failed(err, rc);
		mig_undone_detail(*applied, committed, err);
		*applied = committed;
	}
	if (stopped && *applied > 0)
	{
		/* commit what ran before it (where this call commits at all) */
		mig_err		stop = *err;

		mig_err_clear(err);
		if ((rc = mig_finish(h, MIG_OK, err)) != MIG_OK)
			return rc;
		*err = stop;
		return MIG_ERROR;
	}
	if (stopped)
		rc = MIG_ERROR;			/* nothing ran: nothing to keep */
	return mig_finish(h, rc, err);
}

int
mig_apply_idle(const mig_host *h, const char *path, const char *options, int *idle,
			   mig_err *err)
{
	mig_plan	p;
	mig_arena	a;
	mig_options o;
	int			rc;

	mig_err_clear(err);
	*idle = 0;
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	mig_arena_init(&a, h);
	if ((rc = mig_options_parse(&a, options, &o, err)) != MIG_OK)
	{
		mig_arena_free(&a);
		return rc;
	}
	rc = mig_plan_build(h, path, &p, err);
	/* every migration of the folder applied, unchanged to the byte: the
	 * only state in which apply neither runs nor refuses anything, nor says
	 * anything (a reformatted file gets a notice), whatever the options;
	 * none half way; and a history at all (apply creates one) */
	if (rc == MIG_OK && p.entries.n > 0 && p.progress.n == 0 &&
		p.count[MIG_APPLIED] == p.entries.n)
	{
		*idle = 1;
		for (size_t i = 0; i < p.entries.n; i++)
			if (mig_vec_at(&p.entries, mig_entry, i)->partial)
				*idle = 0;
	}
	mig_plan_free(&p);
	mig_arena_free(&a);
	return rc == MIG_OK ? MIG_OK : failed(err, rc);
}

static int
rank_desc(const void *x, const void *y)
{
	const mig_hist *a = *(mig_hist *const *) x,
			   *b = *(mig_hist *const *) y;

	return a->rank < b->rank ? 1 : a->rank > b->rank ? -1 : 0;
}

/* Checks that the last n applied migrations can be rolled back: each has
 * a down script, and one that must run outside a transaction can run so
 * here. */
static int
check_down(const mig_host *h, mig_hist **last, int64_t n, size_t applied, mig_err *err)
{
	const char *lacking[20];
	size_t		missing = 0;

	if ((uint64_t) n > applied)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG,
					"cannot roll back %lld migrations: only %zu are applied",
					(long long) n, applied);
		mig_err_detail(err, "Nothing was rolled back.");
		return MIG_ERROR;
	}
	for (int64_t k = 0; k < n; k++)
		if (!last[k]->has_down)
		{
			if (missing < 20)
				lacking[missing] = last[k]->version;
			missing++;
		}
	if (missing == 1)
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s has no down script", lacking[0]);
	else if (missing > 1)
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"%zu of the migrations to roll back have no down script", missing);
	if (missing)
	{
		mig_err_list(err, "Nothing was rolled back. Versions without one: ", lacking, missing);
		mig_err_hint(err, "A down script is stored when a migration is applied with one: a .down.sql or Flyway undo file, a dbmate or goose down section, or a diesel down.sql.");
		return MIG_ERROR;
	}
	for (int64_t k = 0; h->exec_outside == NULL && k < n; k++)
		if (last[k]->down_outside)
		{
			mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
						"the down script of migration %s (%s) must run outside a transaction",
						last[k]->version, last[k]->file ? last[k]->file : last[k]->name);
			mig_err_detail(err, "It is marked to run outside a transaction, or holds a statement that cannot run in one. Nothing was rolled back.");
			mig_err_hint(err, "%s", h->outside_down_hint ? h->outside_down_hint :
						 "Rolling back outside a transaction is not available here.");
			return MIG_ERROR;
		}
	return MIG_OK;
}

/*
 * Before a rollback: no migration may have stopped half way (its
 * statements' effects are in the schema, and a rollback of another one
 * could undo what they built while the next apply would not run them
 * again), and a rollback that stopped half way may only be finished, not
 * left for another.
 */
static int
check_partial(const mig_plan *p, mig_hist **last, int64_t n, mig_err *err)
{
	const mig_progress *up = mig_plan_partial(p, 0),
			   *down = mig_plan_partial(p, 1);

	if (up)
	{
		mig_partial_up_error(up, NULL, err);
		return MIG_ERROR;
	}
	if (down && (n == 0 || strcmp(down->version, last[0]->version) != 0))
	{
		mig_partial_down_error(down, err);
		mig_err_hint(err, "Roll back migration %s first: the rollback resumes at its failed statement.",
					 down->version);
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* Rolls back one applied migration with its stored down script and
 * removes it from the history. */
static int
roll_back_one(const mig_host *h, const mig_hist *r, mig_err *err)
{
	mig_stored_down d;
	mig_script	s;
	double		t0 = now_ms();
	int			rc;

	memset(&d, 0, sizeof(d));
	memset(&s, 0, sizeof(s));
	rc = h->history_down(h->ctx, r->version, &d, err);
	if (rc == MIG_OK && d.sql == NULL)
		rc = check_down(h, (mig_hist **) &r, 1, 1, err);
	if (rc == MIG_OK && d.outside && h->exec_outside == NULL)
	{
		mig_hist	copy = *r;
		mig_hist   *one = &copy;

		copy.down_outside = 1;
		rc = check_down(h, &one, 1, 1, err);
	}
	if (rc == MIG_OK)
	{
		s.sql = d.sql;
		s.len = d.len;
		/* the file and line it came from, for errors (rows of older
		 * builds: the migration's name, lines of the script) */
		s.file = d.file ? d.file : r->file ? r->file : r->name;
		s.first_line = d.line;
		s.version = r->version;
		s.down = 1;
		s.nontransactional = d.outside ? "recorded so when it was applied" : NULL;
		if (s.len > 0)
			rc = mig_run_script(h, d.outside ? h->exec_outside : h->exec, &s, err);
	}
	if (rc == MIG_OK)
		rc = h->history_remove(h->ctx, r->version, err);
	if (rc == MIG_OK)
		mig_notice(h, NULL, "rolled back migration %s (%s) in %.1f ms%s",
				   r->version, r->name, now_ms() - t0, s.len == 0 ? " (its down script runs nothing)" : "");
	if (d.sql)
		h->release(h->ctx, d.sql);
	if (d.file)
		h->release(h->ctx, d.file);
	return rc;
}

/*
 * Rolls back, newest applied first, the last n applied migrations, or with
 * a target every applied migration whose version is above it.
 */
static int
roll_back(const mig_host *h, int64_t n, const char *target, int64_t *rolled_back,
		  mig_err *err)
{
	mig_plan	p;
	mig_hist  **last = NULL;
	int			rc;

	if ((rc = mig_lock(h, NULL, err)) != MIG_OK)
		return rc;
	rc = mig_plan_build(h, NULL, &p, err);
	if (rc == MIG_OK && (last = h->alloc(h->ctx, sizeof(mig_hist *) * (p.hist.n + 1))) == NULL)
		rc = MIG_NOMEM;
	if (rc == MIG_OK)
	{
		size_t		versioned = 0;

		/* repeatables are not rolled back: they run again when changed */
		for (size_t i = 0; i < p.hist.n; i++)
		{
			mig_hist   *r = *mig_vec_at(&p.hist, mig_hist *, i);

			if (!mig_is_repeatable(r->version) &&
				(target == NULL || mig_version_cmp(r->version, target) > 0))
				last[versioned++] = r;
		}
		if (versioned > 1)
			qsort(last, versioned, sizeof(mig_hist *), rank_desc);
		if (target)
			n = (int64_t) versioned;
		rc = check_down(h, last, n, versioned, err);
		if (rc == MIG_OK)
			rc = check_partial(&p, last, n, err);
	}
	for (int64_t k = 0; rc == MIG_OK && k < n; k++)
	{
		rc = roll_back_one(h, last[k], err);
		if (rc == MIG_OK && h->checkpoint)
			rc = h->checkpoint(h->ctx, err);
		if (rc == MIG_OK)
			(*rolled_back)++;
	}
	if (last)
		h->release(h->ctx, last);
	mig_plan_free(&p);
	if (rc != MIG_OK)
		failed(err, rc);
	return mig_finish(h, rc, err);
}

int
mig_down(const mig_host *h, int64_t n, int64_t *rolled_back, mig_err *err)
{
	mig_err_clear(err);
	*rolled_back = 0;
	if (n < 0)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG,
					"number of migrations to roll back must not be negative");
		return MIG_ERROR;
	}
	if (n == 0)
		return MIG_OK;
	return roll_back(h, n, NULL, rolled_back, err);
}

int
mig_down_to(const mig_host *h, const char *version, int64_t *rolled_back, mig_err *err)
{
	mig_arena	a;
	char	   *target;
	int			rc;

	mig_err_clear(err);
	*rolled_back = 0;
	mig_arena_init(&a, h);
	rc = mig_version_arg(&a, version, "", &target, err);
	if (rc == MIG_OK)
		rc = roll_back(h, 0, target, rolled_back, err);
	mig_arena_free(&a);
	return rc;
}

/* Fills the status row of a script that stopped half way and whose
 * migration left the folder and the history both. */
static void
orphan_row(const mig_progress *g, mig_status_row *row)
{
	memset(row, 0, sizeof(*row));
	row->version = g->version;
	row->name = "";
	row->state = "partial";
	row->exec_ms = -1;
	row->statements_done = g->statements_done;
	row->last_error = g->last_error;
}

int
mig_status(const mig_host *h, const char *path, mig_status_cb cb, void *arg,
		   mig_err *err)
{
	mig_plan	p;
	int			rc;

	mig_err_clear(err);
	if (!mig_path_given(h, &path, err))
		return MIG_ERROR;
	rc = mig_plan_build(h, path, &p, err);
	for (size_t i = 0; rc == MIG_OK && i < p.entries.n; i++)
	{
		mig_entry  *e = mig_vec_at(&p.entries, mig_entry, i);
		const mig_hist *r = e->hist;
		mig_status_row row;
		int			has_down = e->file && e->file->down != NULL,
					noop = 0;

		if (e->file && r == NULL)	/* pending: checksum the file now */
		{
			mig_text	t;
			mig_script	ds;
			mig_err		ignored;

			if ((rc = mig_text_read(h, path, e->file->up, &t, err)) != MIG_OK)
				break;
			memcpy(e->checksum, t.checksum, sizeof(t.checksum));
			/* a one-file migration's down section, or its tool's rule for
			 * none (a Go migration has none); a file that cannot be read as
			 * one is reported by apply, not here */
			if (!has_down && !e->file->go &&
				down_script(e->file, &t, NULL, &ds, &ignored) == MIG_OK && ds.sql)
			{
				has_down = 1;
				noop = mig_script_empty(&ds);
			}
			mig_text_free(h, &t);
		}
		memset(&row, 0, sizeof(row));
		row.version = e->file ? e->file->version : r->version;
		row.name = e->file ? e->file->name : r->name;
		row.state = e->partial ? (e->partial->down ? "partial_down" : "partial") :
			mig_state_names[e->state];
		row.file = e->file ? e->file->up : NULL;
		row.checksum = e->file ? e->checksum : r->checksum;
		row.applied_checksum = r ? r->checksum : NULL;
		row.applied_at = r ? r->applied_at : NULL;
		row.exec_ms = r ? r->exec_ms : -1;
		row.rank = r ? r->rank : 0;
		row.has_down = r ? r->has_down : has_down;
		row.down_noop = r ? r->has_down && r->down_noop : noop;
		row.statements_done = e->partial ? e->partial->statements_done : -1;
		row.last_error = e->partial ? e->partial->last_error : NULL;
		rc = cb(arg, &row);
	}
	/* scripts that stopped half way, whose migration is in neither */
	for (size_t i = 0; rc == MIG_OK && i < p.progress.n; i++)
	{
		const mig_progress *g = *mig_vec_at(&p.progress, mig_progress *, i);
		mig_status_row row;

		if (g->matched)
			continue;
		orphan_row(g, &row);
		rc = cb(arg, &row);
	}
	mig_plan_free(&p);
	return rc == MIG_OK ? MIG_OK : failed(err, rc);
}
