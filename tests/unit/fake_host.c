/*
 * fake_host.c -- the harness of the core's unit tests (test_core.c and the
 * test_*.c files beside it): a tiny TAP printer behind CHECK, the fake host
 * (an in-memory history, a script runner that logs what it is given, and an
 * allocator that counts and can fail the Nth allocation), and the fixture
 * helpers on a real temporary folder (fresh, put/PUT, mkpath, apply).
 */
#define _GNU_SOURCE
#include "test_core.h"

/* ---- a tiny TAP harness ---- */
int		tests,
			failures;

void
check_(int ok, const char *cond, const char *file, int line, const char *fmt, ...)
{
	va_list		ap;

	printf("%sok %d - ", ok ? "" : "not ", ++tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!ok)
	{
		failures++;
		printf("#   failed: %s at %s:%d\n", cond, file, line);
	}
}

/* ---- the fake host ---- */
static char *
xdup(const char *s, size_t n)
{
	char	   *p = malloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void *
f_alloc(void *ctx, size_t n)
{
	fake	   *f = ctx;
	size_t	   *p;

	if (f->fail_at && ++f->allocs == f->fail_at)
		return NULL;
	if (!f->fail_at)
		f->allocs++;
	p = malloc(n + sizeof(size_t) * 2);
	p[0] = n;
	f->live += n;
	if (f->live > f->peak)
		f->peak = f->live;
	return p + 2;
}

void
f_release(void *ctx, void *q)
{
	fake	   *f = ctx;
	size_t	   *p = (size_t *) q - 2;

	f->frees++;
	f->live -= p[0];
	free(p);
}

static int
f_open(void *ctx, const char *path, mig_err *err)
{
	int			fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	((fake *) ctx)->opens++;
	if (fd < 0)
		mig_err_errno(err, errno, "open file", path);
	return fd;
}

static void
f_close(void *ctx, int fd)
{
	(void) ctx;
	close(fd);
}

static int
f_list(void *ctx, const char *path, mig_name_cb cb, void *arg, mig_err *err)
{
	DIR		   *d = opendir(path);
	struct dirent *de;
	int			rc = MIG_OK;

	(void) ctx;
	if (!d)
	{
		mig_err_errno(err, errno, "open directory", path);
		return MIG_ERROR;
	}
	while (rc == MIG_OK && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = cb(arg, de->d_name);
	closedir(d);
	return rc;
}

void
free_rows(frow *rows, int n)
{
	for (int i = 0; i < n; i++)
	{
		free(rows[i].version);
		free(rows[i].name);
		free(rows[i].file);
		free(rows[i].checksum);
		free(rows[i].norm);
		free(rows[i].down);
		free(rows[i].file_id);
	}
}

static void
copy_rows(frow *to, const frow *from, int n)
{
	for (int i = 0; i < n; i++)
	{
		to[i] = from[i];
		to[i].version = strdup(from[i].version);
		to[i].name = strdup(from[i].name);
		to[i].file = strdup(from[i].file);
		to[i].checksum = strdup(from[i].checksum);
		to[i].norm = from[i].norm ? strdup(from[i].norm) : NULL;
		to[i].down = from[i].down ? strdup(from[i].down) : NULL;
		to[i].file_id = from[i].file_id ? strdup(from[i].file_id) : NULL;
	}
}

int
f_lock(void *ctx, const mig_lock_opts *o, mig_err *err)
{
	fake	   *f = ctx;

	(void) o;
	if (f->busy)
	{
		mig_err_set(err, MIG_SQLSTATE_LOCK, "held by backend 42");
		return MIG_BUSY;
	}
	f->locked = 1;
	copy_rows(f->saved, f->rows, f->n);
	f->saved_n = f->n;
	return MIG_OK;
}

static int
f_unlock(void *ctx, int commit, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	if (commit)
	{
		f->commits++;
		free_rows(f->saved, f->saved_n);
	}
	else
	{
		f->rollbacks++;
		free_rows(f->rows, f->n);
		memcpy(f->rows, f->saved, sizeof(frow) * f->saved_n);
		f->n = f->saved_n;
	}
	f->saved_n = 0;
	f->locked = 0;
	return MIG_OK;
}

static int
f_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->loads++;
	for (int i = f->n - 1; i >= 0; i--)	/* any order: give it backwards */
	{
		mig_hist_row r = {f->rows[i].version, f->rows[i].name, f->rows[i].file,
			f->rows[i].checksum, f->rows[i].norm, "2024-01-01", 1.5, f->rows[i].rank,
		f->rows[i].down != NULL, f->rows[i].file_id, 0, 0, 0};
		int			rc = cb(arg, &r);

		if (rc)
			return rc;
	}
	return MIG_OK;
}

static int
f_add(void *ctx, const mig_record *r, mig_err *err)
{
	fake	   *f = ctx;
	frow	   *w = &f->rows[f->n++];

	(void) err;
	f->gen++;
	w->version = strdup(r->version);
	w->name = strdup(r->name);
	w->file = strdup(r->up_file);
	w->checksum = strdup(r->checksum);
	w->norm = r->checksum_norm ? strdup(r->checksum_norm) : NULL;
	w->down = r->down_sql ? xdup(r->down_sql, r->down_len) : NULL;
	w->file_id = r->file_id ? strdup(r->file_id) : NULL;
	w->rank = ++f->next_rank;
	return MIG_OK;
}

static int
f_remove(void *ctx, const char *version, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->gen++;
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->rows[i].version, version) == 0)
		{
			free_rows(&f->rows[i], 1);
			f->rows[i] = f->rows[--f->n];
			return MIG_OK;
		}
	return MIG_OK;
}

static int
f_down(void *ctx, const char *version, mig_stored_down *d, mig_err *err)
{
	fake	   *f = ctx;

	memset(d, 0, sizeof(*d));
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->rows[i].version, version) == 0 && f->rows[i].down)
		{
			d->len = strlen(f->rows[i].down);
			if ((d->sql = f_alloc(ctx, d->len + 1)) == NULL)
			{
				mig_err_nomem(err);
				return MIG_NOMEM;
			}
			memcpy(d->sql, f->rows[i].down, d->len + 1);
		}
	return MIG_OK;
}

/* Refuses scripts whose first word is a transaction keyword. */
static int
f_check(void *ctx, const mig_script *s, mig_err *err)
{
	size_t		wlen,
				at = mig_first_word(s->sql, s->len, 0, &wlen);

	(void) ctx;
	if (mig_is_txn_control(s->sql + at, wlen))
	{
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL, "transaction control");
		err->offset = (long) at;
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* Logs "version:up|" or "version:down|"; fails at the word FAIL. */
static int
f_exec(void *ctx, const mig_script *s, mig_err *err)
{
	fake	   *f = ctx;
	const char *bad = memmem(s->sql, s->len, "FAIL", 4);
	size_t		used = strlen(f->log);

	snprintf(f->log + used, sizeof(f->log) - used, "%s:%s|", s->version, s->down ? "down" : "up");
	if (bad)
	{
		mig_err_set(err, "42601", "syntax error at FAIL");
		err->offset = bad - s->sql;
		return MIG_ERROR;
	}
	return MIG_OK;
}

static int
f_repair(void *ctx, const mig_repair_row *r, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->gen++;
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->rows[i].version, r->version) == 0)
		{
			free(f->rows[i].checksum);
			f->rows[i].checksum = strdup(r->checksum);
			f->repairs++;
		}
	return MIG_OK;
}

static int
f_part(void *ctx, int part, const mig_record *rec, const mig_lock_opts *lock,
	   char **sql, mig_err *err)
{
	char		buf[256];

	if (part == MIG_PART_BODY)
	{
		if ((*sql = f_alloc(ctx, rec->up_len + 1)) == NULL)
		{
			mig_err_nomem(err);
			return MIG_NOMEM;
		}
		memcpy(*sql, rec->up_sql, rec->up_len);
		(*sql)[rec->up_len] = '\0';
		return MIG_OK;
	}
	if (lock && lock->lock_timeout_ms >= 0)
		snprintf(buf, sizeof(buf), "[%d:lock_timeout=%ld]\n", part, (long) lock->lock_timeout_ms);
	else
		snprintf(buf, sizeof(buf), "[%d:%s]\n", part, rec ? rec->version : "");
	if ((*sql = f_alloc(ctx, strlen(buf) + 1)) == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	strcpy(*sql, buf);
	return MIG_OK;
}

static void
f_notice(void *ctx, const char *message, const char *detail)
{
	fake	   *f = ctx;

	(void) detail;
	f->notices++;
	snprintf(f->notice, sizeof(f->notice), "%s", message);
}

/* The digest stored, while the history is as it was then. */
int
f_verified_get(void *ctx, char *out, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->gen_seen = f->gen;
	strcpy(out, f->verified_gen == f->gen ? f->verified : "");
	return MIG_OK;
}

int
f_verified_put(void *ctx, const char *digest, mig_err *err)
{
	fake	   *f = ctx;

	(void) err;
	f->puts++;
	snprintf(f->verified, sizeof(f->verified), "%s", digest);
	f->verified_gen = f->gen_seen;
	return MIG_OK;
}

void
host_init(mig_host *h, fake *f)
{
	memset(f, 0, sizeof(*f));
	memset(h, 0, sizeof(*h));
	h->ctx = f;
	h->alloc = f_alloc;
	h->release = f_release;
	h->open_file = f_open;
	h->close_file = f_close;
	h->list_dir = f_list;
	h->lock = f_lock;
	h->unlock = f_unlock;
	h->history_load = f_load;
	h->history_add = f_add;
	h->history_remove = f_remove;
	h->history_down = f_down;
	h->check_script = f_check;
	h->exec = f_exec;
	h->history_repair = f_repair;
	h->script_part = f_part;
	h->notice = f_notice;
	h->keeps_file_id = 1;
}

void
host_done(fake *f)
{
	free_rows(f->rows, f->n);
	f->n = 0;
}

/* ---- folders ---- */
char		dir[256];

void
put(const char *name, const char *text, size_t len)
{
	char		path[512];
	FILE	   *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "wb");
	fwrite(text, 1, len, fp);
	fclose(fp);
}

const char *
mkpath(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

void
fresh(void)
{
	char		cmd[600];

	if (dir[0])
	{
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			abort();
	}
	strcpy(dir, "/tmp/mig_unit_XXXXXX");
	if (mkdtemp(dir) == NULL)
		abort();
}

mig_err		err;

int
apply(mig_host *h, int64_t *n)
{
	return mig_apply(h, dir, n, &err);
}

void *
plain_alloc(size_t n)
{
	return malloc(n);
}
