/*
 * fuzz_plan.c -- libFuzzer target for the planner: folder against history
 * (common/mig_plan.c), discovery (mig_files.c), validate and plan
 * (mig_ops.c) and apply (mig_run.c), through a fake host.
 *
 * Input: one flags byte, then lines ('\n'-separated):
 *   f NAME<TAB>CONTENT     a migration file (mode 0644)
 *   w NAME<TAB>CONTENT     the same, writable by group and others
 *   h VERSION<TAB>NAME<TAB>SUM<TAB>FLAGS     a history row, in rank order
 *   e                      list_dir fails (the folder cannot be read)
 * CONTENT takes the escapes \n \r \0 and \\.  SUM is "@FILE" (the
 * checksums of that file, so the row is applied), "~FILE" (a raw checksum
 * that differs but the same normalised one: reformatted) or a literal
 * checksum; the row's file is FILE, else NULL.  FLAGS: d has_down, n no
 * checksum_norm, i a file_id.  VERSION is canonicalised as a host stores
 * it (rows that are no version are skipped, as are repeated versions: the
 * history's version is unique).
 * Flags byte: bits 0-1 the options of plan and apply ("", "target=3",
 * "out_of_order=true", "ignore_missing=true"), bit 2 keeps_file_id, bit 3
 * exec_outside provided, bit 7 out-of-memory mode: the next byte N fails
 * the (N+1)th allocation of every call, and only the general invariants
 * hold.  Scripts containing SYNTAX fail check_script (42601), OUTSIDE ask
 * for exec_outside, FAIL fail exec (P0001); a leading transaction keyword
 * is refused (0A000).
 *
 * A NAME with '/' is a file in a subfolder (a diesel 1_a/up.sql, an
 * engine's sqlite/1_a.up.sql; at most 3 parts, none empty, "." or "..").
 *
 * The folder is mostly virtual: list_dir yields the names, and open_file
 * returns a fresh memfd (a regular file for fstat) holding the content.
 * The core also looks at paths itself (kind_of in mig_files.c, to tell
 * diesel and per-engine folders; mig_file_id_now in mig_cache.c), so the
 * folder is a real empty folder under /dev/shm, made once per process,
 * where each input's subfolders are made (mkdir) and removed afterwards;
 * files are never written, so the core's lstat of a file finds nothing
 * (file identities never match: files are always read; the cache is
 * NULL), and a name that is also a subfolder opens as that folder.
 *
 * Invariants (abort on violation):
 *  - every call returns MIG_OK, MIG_ERROR or MIG_NOMEM, with a message on
 *    error; afterwards no host memory is live, no descriptor open, no lock
 *    held;
 *  - status, validate and plan take no lock, run and record nothing;
 *    scripts given to exec are valid UTF-8 without NUL; history_add never
 *    records a version twice, records the checksum of the file, and only
 *    under the lock;
 *  - status: versions strictly increasing by mig_version_cmp (the core's
 *    order, mig_layout.c: canonical versions part by dotted part, a longer
 *    part being the larger number, equal lengths by bytes, fewer parts
 *    first; repeatables "R__name" after every version, by name) -- or,
 *    in a folder whose tool orders by text (diesel, dbmate: mig_discover
 *    says which), unique and in the order discovery gives the files --,
 *    known states,
 *    "applied" exactly when history and file agree on the checksum,
 *    "missing" exactly when there is no file, the file's checksum shown;
 *  - validate: always MIG_OK (problems are reported, not returned), known
 *    kinds and severities;
 *  - plan: exactly the status rows the options apply, in order (so a
 *    subset of pending/out_of_order/outdated, nothing applied), with the
 *    right kind and checksum; when status fails, validate reports an
 *    error and plan fails too (but with target=, which reads fewer
 *    files); when validate reports no error, plan and apply must not fail
 *    with 55000/42710/42602;
 *  - apply: fails as plan did when plan failed, running nothing (but
 *    the migrations before a pending goose Go migration, where both
 *    stop); else runs
 *    what plan listed, in order (a prefix ending at FAIL if exec fails);
 *    after it succeeded a second plan lists nothing.
 * FUZZ_PLAN_DEBUG=1 prints what each call gave, to study a seed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mig_int.h"

#define MAX_FILES	40
#define MAX_ROWS	40
#define MAX_LIST	(MAX_FILES + MAX_ROWS)

static void bail(void);

#define CHECK(c) do { if (!(c)) { \
	fprintf(stderr, "fuzz_plan: invariant failed at line %d: %s\n", __LINE__, #c); \
	bail(); } } while (0)

typedef struct vfile {
	char	   *name;
	char	   *data;
	size_t		len;
	int			writable;
} vfile;

typedef struct hrow {
	char	   *version,
			   *name,
			   *file,
			   *checksum,
			   *norm,
			   *file_id;
	int			has_down;
	int64_t		rank;
} hrow;

enum { PH_READ, PH_APPLY };

typedef struct fz {
	vfile		files[MAX_FILES];
	int			nfiles;
	char	   *dirs[MAX_FILES * 2];	/* subfolders, parents first */
	int			ndirs;
	int			list_fails;
	hrow		rows[MAX_ROWS + MAX_FILES];
	int			nrows;
	hrow		saved[MAX_ROWS + MAX_FILES];
	int			nsaved;
	int64_t		next_rank;
	int			phase;
	int			locked;
	int			fds;
	size_t		live;
	long		allocs,
				fail_at;
	char	   *ran[MAX_FILES];	/* versions exec'd, in order */
	int			nran;
	int			ran_fail;		/* the last one ran into FAIL */
} fz;

typedef struct item {
	char	   *version,
			   *state,			/* status state, or plan kind */
			   *file,
			   *checksum,
			   *applied;
	int			has_down;
} item;

typedef struct list {
	item		it[MAX_LIST];
	int			n;
} list;

static char folder[64];			/* the real folder: FOLDER */
#define FOLDER folder

static char *
dupn(const char *s, size_t n)
{
	char	   *p = malloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static char *
dup0(const char *s)
{
	return s ? dupn(s, strlen(s)) : NULL;
}

static const vfile *
file_named(const fz *f, const char *name)
{
	for (int i = 0; i < f->nfiles; i++)
		if (strcmp(f->files[i].name, name) == 0)
			return &f->files[i];
	return NULL;
}

static int
is_dir(const fz *f, const char *name)
{
	for (int i = 0; i < f->ndirs; i++)
		if (strcmp(f->dirs[i], name) == 0)
			return 1;
	return 0;
}

static int
valid_utf8(const char *s, size_t n)
{
	for (size_t i = 0, k; i < n; i += k)
		if ((k = mig_utf8_char((const unsigned char *) s + i, n - i)) == 0)
			return 0;
	return 1;
}

/* ---- the fake host ---- */

static void *
f_alloc(void *ctx, size_t n)
{
	fz		   *f = ctx;
	size_t	   *p;

	if (f->fail_at && ++f->allocs == f->fail_at)
		return NULL;
	p = malloc(n + sizeof(size_t) * 2);
	if (p == NULL)
		return NULL;
	p[0] = n;
	f->live += n;
	return p + 2;
}

static void
f_release(void *ctx, void *q)
{
	fz		   *f = ctx;
	size_t	   *p = (size_t *) q - 2;

	CHECK(q != NULL && f->live >= p[0]);
	f->live -= p[0];
	free(p);
}

static int
f_open(void *ctx, const char *path, mig_err *err)
{
	fz		   *f = ctx;
	size_t		pre = strlen(FOLDER) + 1;
	const vfile *v;
	int			fd;

	if (strncmp(path, FOLDER, pre - 1) != 0 || path[pre - 1] != '/')
	{
		mig_err_errno(err, ENOENT, "open file", path);
		return -1;
	}
	if (is_dir(f, path + pre))
	{
		/* what open(2) gives for a folder: the core's fstat refuses it */
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
		{
			mig_err_errno(err, errno, "open file", path);
			return -1;
		}
		f->fds++;
		return fd;
	}
	if ((v = file_named(f, path + pre)) == NULL)
	{
		mig_err_errno(err, ENOENT, "open file", path);
		return -1;
	}
	if ((fd = memfd_create("mig", MFD_CLOEXEC)) < 0)
	{
		mig_err_errno(err, errno, "open file", path);
		return -1;
	}
	if (fchmod(fd, v->writable ? 0666 : 0644) != 0 ||
		(v->len && write(fd, v->data, v->len) != (ssize_t) v->len) ||
		lseek(fd, 0, SEEK_SET) != 0)
	{
		mig_err_errno(err, errno, "open file", path);
		close(fd);
		return -1;
	}
	f->fds++;
	return fd;
}

static void
f_close(void *ctx, int fd)
{
	fz		   *f = ctx;

	CHECK(f->fds > 0);
	f->fds--;
	close(fd);
}

/* A path a folder could hold: 1 to 3 parts, none empty, "." or "..", or
 * longer than a name can be; not one seen before. */
static int
listable(const fz *f, int i)
{
	const char *n = f->files[i].name;
	int			parts = 0;

	for (const char *p = n;; parts++)
	{
		const char *e = strchr(p, '/');
		size_t		len = e ? (size_t) (e - p) : strlen(p);

		if (len == 0 || len > 255 || (len == 1 && p[0] == '.') ||
			(len == 2 && p[0] == '.' && p[1] == '.') || parts == 3)
			return 0;
		if (e == NULL)
			break;
		p = e + 1;
	}
	for (int k = 0; k < i; k++)
		if (strcmp(f->files[k].name, n) == 0)
			return 0;			/* one entry per name */
	return 1;
}

/* Each entry of the folder at path: the next part of every listable path
 * under it, once. */
static int
f_list(void *ctx, const char *path, mig_name_cb cb, void *arg, mig_err *err)
{
	fz		   *f = ctx;
	size_t		pre = strlen(FOLDER),
				sub;
	const char *seen[MAX_FILES];
	int			nseen = 0;

	if (strncmp(path, FOLDER, pre) != 0 || (path[pre] && path[pre] != '/') ||
		(path[pre] == '/' && !is_dir(f, path + pre + 1)))
	{
		mig_err_errno(err, ENOTDIR, "open directory", path);
		return MIG_ERROR;
	}
	if (f->list_fails)
	{
		mig_err_errno(err, EACCES, "open directory", path);
		return MIG_ERROR;
	}
	path += path[pre] ? pre + 1 : pre;	/* "" or the subfolder */
	sub = strlen(path);
	for (int i = 0; i < f->nfiles; i++)
	{
		const char *n = f->files[i].name,
				   *e;
		char		part[256];
		size_t		len;
		int			rc,
					dup = 0;

		if (!listable(f, i) || (sub && (strncmp(n, path, sub) != 0 || n[sub] != '/')))
			continue;
		n += sub ? sub + 1 : 0;
		e = strchr(n, '/');
		len = e ? (size_t) (e - n) : strlen(n);
		for (int k = 0; k < nseen; k++)
			dup |= strncmp(seen[k], n, len) == 0 &&
				(seen[k][len] == '\0' || seen[k][len] == '/');
		if (dup)
			continue;
		seen[nseen++] = n;
		memcpy(part, n, len);
		part[len] = '\0';
		if ((rc = cb(arg, part)) != 0)
			return rc;
	}
	return MIG_OK;
}

/* Makes the real subfolders of the input's paths, parents first. */
static void
make_dirs(fz *f)
{
	char		path[MIG_PATH_MAX];

	for (int i = 0; i < f->nfiles; i++)
	{
		const char *n = f->files[i].name;

		if (!listable(f, i))
			continue;
		for (const char *e = strchr(n, '/'); e; e = strchr(e + 1, '/'))
		{
			char	   *d = dupn(n, (size_t) (e - n));

			if (is_dir(f, d) || f->ndirs == MAX_FILES * 2 ||
				snprintf(path, sizeof(path), "%s/%s", FOLDER, d) >= (int) sizeof(path) ||
				mkdir(path, 0755) != 0)
			{
				free(d);
				continue;
			}
			f->dirs[f->ndirs++] = d;
		}
	}
}

static void
remove_dirs(fz *f)
{
	char		path[MIG_PATH_MAX];

	for (int i = f->ndirs - 1; i >= 0; i--)
	{
		snprintf(path, sizeof(path), "%s/%s", FOLDER, f->dirs[i]);
		CHECK(rmdir(path) == 0);
		free(f->dirs[i]);
	}
	f->ndirs = 0;
}

static void
remove_folder(void)
{
	rmdir(folder);
}

static fz  *current;			/* the input being run, for bail() */

/* Aborts (a crash for libFuzzer), leaving no folder behind. */
static void
bail(void)
{
	char		path[MIG_PATH_MAX];

	for (int i = current ? current->ndirs - 1 : -1; i >= 0; i--)
	{
		snprintf(path, sizeof(path), "%s/%s", FOLDER, current->dirs[i]);
		rmdir(path);
	}
	remove_folder();
	abort();
}

static void
free_row(hrow *r)
{
	free(r->version);
	free(r->name);
	free(r->file);
	free(r->checksum);
	free(r->norm);
	free(r->file_id);
	memset(r, 0, sizeof(*r));
}

static void
copy_row(hrow *to, const hrow *from)
{
	*to = *from;
	to->version = dup0(from->version);
	to->name = dup0(from->name);
	to->file = dup0(from->file);
	to->checksum = dup0(from->checksum);
	to->norm = dup0(from->norm);
	to->file_id = dup0(from->file_id);
}

static int
f_lock(void *ctx, const mig_lock_opts *o, mig_err *err)
{
	fz		   *f = ctx;

	(void) o;
	(void) err;
	CHECK(f->phase == PH_APPLY && !f->locked);
	f->locked = 1;
	for (int i = 0; i < f->nrows; i++)
		copy_row(&f->saved[i], &f->rows[i]);
	f->nsaved = f->nrows;
	return MIG_OK;
}

static int
f_unlock(void *ctx, int commit, mig_err *err)
{
	fz		   *f = ctx;

	(void) err;
	CHECK(f->locked);
	if (commit)
		for (int i = 0; i < f->nsaved; i++)
			free_row(&f->saved[i]);
	else
	{
		for (int i = 0; i < f->nrows; i++)
			free_row(&f->rows[i]);
		memcpy(f->rows, f->saved, sizeof(hrow) * (size_t) f->nsaved);
		f->nrows = f->nsaved;
	}
	f->nsaved = 0;
	f->locked = 0;
	return MIG_OK;
}

static int
f_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err)
{
	fz		   *f = ctx;

	(void) err;
	for (int i = f->nrows - 1; i >= 0; i--)	/* any order: backwards */
	{
		const hrow *r = &f->rows[i];
		mig_hist_row h = {r->version, r->name, r->file, r->checksum, r->norm,
			"2024-01-01 00:00:00", 1.0, r->rank, r->has_down, r->file_id, 0, 0, 0};
		int			rc = cb(arg, &h);

		if (rc)
			return rc;
	}
	return MIG_OK;
}

static int
f_add(void *ctx, const mig_record *r, mig_err *err)
{
	fz		   *f = ctx;
	const vfile *v;
	char		sum[16];
	hrow	   *w;

	(void) err;
	CHECK(f->phase == PH_APPLY && f->locked);
	CHECK(r->version && r->name && r->up_file && r->checksum && r->up_sql);
	for (int i = 0; i < f->nrows; i++)
		CHECK(mig_version_cmp(f->rows[i].version, r->version) != 0);	/* unique */
	CHECK((v = file_named(f, r->up_file)) != NULL);
	mig_checksum(v->data, v->len, sum);
	CHECK(strcmp(sum, r->checksum) == 0);
	CHECK(f->nrows < MAX_ROWS + MAX_FILES);
	w = &f->rows[f->nrows++];
	w->version = dup0(r->version);
	w->name = dup0(r->name);
	w->file = dup0(r->up_file);
	w->checksum = dup0(r->checksum);
	w->norm = dup0(r->checksum_norm);
	w->file_id = dup0(r->file_id);
	w->has_down = r->down_sql != NULL;
	w->rank = ++f->next_rank;
	return MIG_OK;
}

static int
f_remove(void *ctx, const char *version, mig_err *err)
{
	fz		   *f = ctx;

	(void) err;
	CHECK(f->phase == PH_APPLY && f->locked);
	for (int i = 0; i < f->nrows; i++)
		if (strcmp(f->rows[i].version, version) == 0)
		{
			free_row(&f->rows[i]);
			f->rows[i] = f->rows[--f->nrows];
			return MIG_OK;
		}
	CHECK(!"history_remove of a version not recorded");
	return MIG_OK;
}

static int
f_down(void *ctx, const char *version, mig_stored_down *d, mig_err *err)
{
	(void) ctx;
	(void) version;
	(void) err;
	memset(d, 0, sizeof(*d));
	return MIG_OK;
}

static void
check_given(const mig_script *s)
{
	CHECK(s->sql && s->file && s->version && s->checksum);
	CHECK(memchr(s->sql, '\0', s->len) == NULL && valid_utf8(s->sql, s->len));
}

static int
f_check(void *ctx, const mig_script *s, mig_err *err)
{
	size_t		wlen,
				at;
	const char *bad;

	(void) ctx;
	CHECK(s->sql && s->file && s->version);
	CHECK(memchr(s->sql, '\0', s->len) == NULL && valid_utf8(s->sql, s->len));
	at = mig_first_word(s->sql, s->len, 0, &wlen);
	CHECK(at + wlen <= s->len);
	if (mig_is_txn_control(s->sql + at, wlen))
	{
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL, "transaction control");
		err->offset = (long) at;
		return MIG_ERROR;
	}
	if ((bad = memmem(s->sql, s->len, "SYNTAX", 6)) != NULL)
	{
		mig_err_set(err, "42601", "syntax error at SYNTAX");
		err->offset = bad - s->sql;
		return MIG_ERROR;
	}
	if (memmem(s->sql, s->len, "OUTSIDE", 7) != NULL)
		return MIG_OUTSIDE;
	return MIG_OK;
}

static int
run(fz *f, const mig_script *s, mig_err *err)
{
	const char *bad = memmem(s->sql, s->len, "FAIL", 4);

	CHECK(f->phase == PH_APPLY && f->locked && !s->down);
	check_given(s);
	CHECK(f->nran < MAX_FILES && !f->ran_fail);
	f->ran[f->nran++] = dup0(s->version);
	if (bad)
	{
		f->ran_fail = 1;
		mig_err_set(err, "P0001", "raised at FAIL");
		err->offset = bad - s->sql;
		return MIG_ERROR;
	}
	return MIG_OK;
}

static int
f_exec(void *ctx, const mig_script *s, mig_err *err)
{
	return run(ctx, s, err);
}

static int
f_exec_outside(void *ctx, const mig_script *s, mig_err *err)
{
	return run(ctx, s, err);
}

static void
f_notice(void *ctx, const char *message, const char *detail)
{
	(void) ctx;
	(void) detail;
	CHECK(message && message[0]);
}

/* ---- decoding ---- */

static void *
p_alloc(void *ctx, size_t n)
{
	(void) ctx;
	return malloc(n);
}

static void
p_release(void *ctx, void *p)
{
	(void) ctx;
	free(p);
}

/* Unescapes s[0..n) (\n \r \0 \\) into a new buffer. */
static char *
unescape(const char *s, size_t n, size_t *len)
{
	char	   *out = malloc(n + 1);
	size_t		o = 0;

	for (size_t i = 0; i < n; i++)
	{
		char		c = s[i];

		if (c == '\\' && i + 1 < n && strchr("nr0\\", s[i + 1]))
		{
			i++;
			c = s[i] == 'n' ? '\n' : s[i] == 'r' ? '\r' : s[i] == '0' ? '\0' : '\\';
		}
		out[o++] = c;
	}
	out[o] = '\0';
	*len = o;
	return out;
}

/* The next TAB-separated field of line[*at..n), as a C string, or NULL
 * when it holds a NUL byte (no such name or version). */
static char *
field(const char *line, size_t n, size_t *at)
{
	size_t		s = *at,
				e = s;

	while (e < n && line[e] != '\t')
		e++;
	*at = e < n ? e + 1 : n;
	if (memchr(line + s, '\0', e - s))
		return NULL;
	return dupn(line + s, e - s);
}

static void
add_file(fz *f, const char *line, size_t n, int writable)
{
	size_t		at = 0;
	char	   *name = field(line, n, &at);
	vfile	   *v;

	if (name == NULL || f->nfiles == MAX_FILES)
	{
		free(name);
		return;
	}
	v = &f->files[f->nfiles++];
	v->name = name;
	v->data = unescape(line + at, n - at, &v->len);
	v->writable = writable;
}

static void
add_row(fz *f, const char *line, size_t n)
{
	static const mig_host plain = {.alloc = p_alloc,.release = p_release};
	size_t		at = 0;
	char	   *ver = field(line, n, &at),
			   *name = field(line, n, &at),
			   *sum = field(line, n, &at),
			   *flags = field(line, n, &at),
			   *canon = NULL;
	hrow	   *r;

	if (ver && ver[0] == 'R')
		canon = strncmp(ver, "R__", 3) == 0 && ver[3] ? dup0(ver) : NULL;
	else if (ver)
	{
		mig_arena	a;
		int			oom;
		char	   *c;

		mig_arena_init(&a, &plain);
		c = mig_version_canonical(&a, ver, &oom);
		canon = dup0(c);
		mig_arena_free(&a);
	}
	for (int i = 0; canon && i < f->nrows; i++)
		if (mig_version_cmp(f->rows[i].version, canon) == 0)
		{
			free(canon);
			canon = NULL;
		}
	if (canon == NULL || name == NULL || sum == NULL || f->nrows == MAX_ROWS)
	{
		free(canon);
		goto done;
	}
	r = &f->rows[f->nrows++];
	memset(r, 0, sizeof(*r));
	r->version = canon;
	r->name = dup0(name);
	if ((sum[0] == '@' || sum[0] == '~') && file_named(f, sum + 1))
	{
		const vfile *v = file_named(f, sum + 1);
		char		raw[16],
					norm[16];

		mig_checksum_norm(v->data, v->len, norm);
		if (sum[0] == '@')
			mig_checksum(v->data, v->len, raw);
		else
		{
			/* a trailing blank: another raw checksum, the same normalised */
			char	   *t = malloc(v->len + 1);

			memcpy(t, v->data, v->len);
			t[v->len] = ' ';
			mig_checksum(t, v->len + 1, raw);
			free(t);
		}
		r->checksum = dup0(raw);
		r->norm = dup0(norm);
		r->file = dup0(sum + 1);
	}
	else
	{
		r->checksum = dup0(sum);
		r->norm = dup0(sum);
	}
	if (flags && strchr(flags, 'n'))
	{
		free(r->norm);
		r->norm = NULL;
	}
	r->has_down = flags && strchr(flags, 'd');
	if (flags && strchr(flags, 'i'))
		r->file_id = dup0("1:2:3:4:5");
	r->rank = ++f->next_rank;
done:
	free(ver);
	free(name);
	free(sum);
	free(flags);
}

static void
decode(fz *f, const char *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		const char *nl = memchr(s + i, '\n', n - i);
		size_t		e = nl ? (size_t) (nl - s) : n,
					b = i + 1;

		if (b < e && s[b] == ' ')
			b++;
		if (s[i] == 'f' || s[i] == 'w')
			add_file(f, s + b, e > b ? e - b : 0, s[i] == 'w');
		else if (s[i] == 'h')
			add_row(f, s + b, e > b ? e - b : 0);
		else if (s[i] == 'e')
			f->list_fails = 1;
		i = e + 1;
	}
}

static void
fz_free(fz *f)
{
	for (int i = 0; i < f->nfiles; i++)
	{
		free(f->files[i].name);
		free(f->files[i].data);
	}
	for (int i = 0; i < f->nrows; i++)
		free_row(&f->rows[i]);
	for (int i = 0; i < f->nran; i++)
		free(f->ran[i]);
}

/* ---- the calls ---- */

static void
list_free(list *l)
{
	for (int i = 0; i < l->n; i++)
	{
		free(l->it[i].version);
		free(l->it[i].state);
		free(l->it[i].file);
		free(l->it[i].checksum);
		free(l->it[i].applied);
	}
	l->n = 0;
}

static int
status_cb(void *arg, const mig_status_row *r)
{
	list	   *l = arg;
	item	   *it;

	CHECK(l->n < MAX_LIST);
	CHECK(r->version && r->name && r->state && r->checksum);
	it = &l->it[l->n++];
	it->version = dup0(r->version);
	it->state = dup0(r->state);
	it->file = dup0(r->file);
	it->checksum = dup0(r->checksum);
	it->applied = dup0(r->applied_checksum);
	it->has_down = r->has_down;
	return MIG_OK;
}

static int
pending_cb(void *arg, const mig_pending *m)
{
	list	   *l = arg;
	item	   *it;

	CHECK(l->n < MAX_LIST);
	CHECK(m->version && m->name && m->file && m->kind && m->sql && m->checksum);
	CHECK(memchr(m->sql, '\0', m->len) == NULL && valid_utf8(m->sql, m->len));
	it = &l->it[l->n++];
	it->version = dup0(m->version);
	it->state = dup0(m->kind);
	it->file = dup0(m->file);
	it->checksum = dup0(m->checksum);
	it->applied = NULL;
	it->has_down = m->down_sql != NULL;
	return MIG_OK;
}

typedef struct problems {
	int			errors,
				warnings;
} problems;

static int
problem_cb(void *arg, const mig_problem *p)
{
	static const char *const kinds[] = {
		"changed", "reformatted", "missing", "out_of_order", "duplicate",
		"bad_name", "orphan_down", "mixed_layouts", "bad_file", "not_allowed",
		"folder", "syntax_error", "go_migration", "chain", "gap"
	};
	problems   *ps = arg;
	int			known = 0;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		known |= strcmp(p->kind, kinds[i]) == 0;
	CHECK(known);
	CHECK(p->message && p->message[0] && p->sqlstate && strlen(p->sqlstate) == 5);
	CHECK(strcmp(p->severity, "error") == 0 || strcmp(p->severity, "warning") == 0);
	if (getenv("FUZZ_PLAN_DEBUG"))
		fprintf(stderr, "  problem %s %s %s: %s\n", p->kind, p->severity, p->sqlstate, p->message);
	if (strcmp(p->severity, "error") == 0)
		ps->errors++;
	else
	{
		ps->warnings++;
		CHECK(strcmp(p->kind, "reformatted") == 0 || strcmp(p->kind, "gap") == 0);
	}
	return MIG_OK;
}

/* What every call leaves: a known code, a message on error, nothing held. */
static void
after(fz *f, int rc, const mig_err *err)
{
	CHECK(rc == MIG_OK || rc == MIG_ERROR || rc == MIG_NOMEM);
	if (rc != MIG_OK)
		CHECK(err->message[0] != '\0' && err->code != MIG_OK);
	CHECK(f->live == 0);
	CHECK(f->fds == 0);
	CHECK(!f->locked);
	f->allocs = 0;				/* the next call fails its own Nth one */
}

static int
state_known(const char *s)
{
	for (int i = 0; i < MIG_STATES; i++)
		if (strcmp(s, mig_state_names[i]) == 0)
			return 1;
	return 0;
}

/* The folder's order and its files' versions and keys, as discovery
 * gives them (plain malloc: not the fake host's counted memory). */
typedef struct folder_order {
	int			order;
	int			n;
	char	   *version[MAX_LIST];
	char	   *key[MAX_LIST];
} folder_order;

static void
discover_order(const mig_host *h, folder_order *fo)
{
	mig_arena	a;
	mig_vec		files;
	mig_err		err;

	memset(fo, 0, sizeof(*fo));
	mig_arena_init(&a, h);
	mig_vec_init(&files, h, sizeof(mig_file));
	if (mig_discover(h, &a, FOLDER, &files, NULL, &fo->order, &err) != MIG_OK)
		fo->order = MIG_ORDER_VERSION;
	for (size_t i = 0; i < files.n && fo->n < MAX_LIST; i++)
	{
		const mig_file *m = mig_vec_at(&files, mig_file, i);

		fo->version[fo->n] = strdup(m->version);
		fo->key[fo->n] = m->key ? strdup(m->key) : NULL;
		fo->n++;
	}
	mig_vec_free(&files);
	mig_arena_free(&a);
}

static void
order_free(folder_order *fo)
{
	for (int i = 0; i < fo->n; i++)
	{
		free(fo->version[i]);
		free(fo->key[i]);
	}
	fo->n = 0;
}

/* Place of version among the files discovery gave, or -1. */
static int
place_of(const folder_order *fo, const char *version)
{
	for (int i = 0; i < fo->n; i++)
		if (mig_version_cmp(fo->version[i], version) == 0)
			return i;
	return -1;
}

/* Whether file is a goose Go migration's. */
static int
is_go(const char *file)
{
	size_t		n = strlen(file);

	return n > 3 && strcmp(file + n - 3, ".go") == 0;
}

static void
check_status(const fz *f, const list *st, const folder_order *fo)
{
	for (int i = 0; i < st->n; i++)
	{
		const item *it = &st->it[i];
		int			applied = strcmp(it->state, "applied") == 0;

		CHECK(state_known(it->state));
		if (i > 0 && fo->order == MIG_ORDER_VERSION)
			CHECK(mig_version_cmp(st->it[i - 1].version, it->version) < 0);
		for (int j = 0; j < i && fo->order != MIG_ORDER_VERSION; j++)
		{
			CHECK(mig_version_cmp(st->it[j].version, it->version) != 0);
			if (st->it[j].file && it->file)
				CHECK(place_of(fo, st->it[j].version) < place_of(fo, it->version));
		}
		CHECK(mig_is_repeatable(it->version) || mig_version_valid(it->version));
		CHECK((it->file == NULL) == (strcmp(it->state, "missing") == 0));
		CHECK((it->applied == NULL) ==
			  (strcmp(it->state, "pending") == 0 || strcmp(it->state, "out_of_order") == 0));
		if (mig_is_repeatable(it->version))
			CHECK(strcmp(it->state, "out_of_order") != 0 && strcmp(it->state, "changed") != 0);
		if (it->file)
		{
			const vfile *v = file_named(f, it->file);
			char		sum[16];

			CHECK(v != NULL);
			mig_checksum(v->data, v->len, sum);
			CHECK(strcmp(sum, it->checksum) == 0);
			/* in both: applied exactly when equal (a goose Go migration:
			 * always, its file is not held against what ran) */
			if (it->applied && !is_go(it->file))
				CHECK(applied == (strcmp(sum, it->applied) == 0));
			else if (it->applied)
				CHECK(applied);
		}
		else
			CHECK(!applied);
	}
}

static int
to_apply(const item *it, int opt, const folder_order *fo)
{
	int			at,
				t;

	if (strcmp(it->state, "outdated") == 0)
		return 1;
	if (strcmp(it->state, "pending") != 0 &&
		!(opt == 2 && strcmp(it->state, "out_of_order") == 0))
		return 0;
	if (opt != 1 || mig_is_repeatable(it->version))
		return 1;
	if (fo->order == MIG_ORDER_VERSION)
		return mig_version_cmp(it->version, "3") <= 0;
	/* a text order: up to the place of version 3's file, else by key */
	at = place_of(fo, it->version);
	t = place_of(fo, "3");
	CHECK(at >= 0);
	if (t >= 0)
		return mig_order_cmp(fo->order, fo->key[at], fo->version[at], fo->key[t],
							 fo->version[t]) <= 0;
	return strcmp(fo->key[at] ? fo->key[at] : fo->version[at], "3") <= 0;
}

static void
check_plan(const fz *f, const list *st, const list *pl, int opt, const folder_order *fo)
{
	int			k = 0;

	for (int i = 0; i < st->n; i++)
	{
		const item *s = &st->it[i],
				   *p;
		char		sum[16];
		const vfile *v;

		if (!to_apply(s, opt, fo))
			continue;
		CHECK(k < pl->n);
		p = &pl->it[k++];
		CHECK(strcmp(p->version, s->version) == 0);
		CHECK(strcmp(p->file, s->file) == 0);
		CHECK(strcmp(p->state, strcmp(s->state, "outdated") == 0 ? "rerun" :
					 mig_is_repeatable(s->version) ? "repeatable" : "versioned") == 0);
		CHECK((v = file_named(f, p->file)) != NULL);
		mig_checksum(v->data, v->len, sum);
		CHECK(strcmp(sum, p->checksum) == 0);
		/*
		 * A pending migration's has_down in status is whether it has a
		 * down script, which plan hands out (a dbmate/goose down section
		 * too: seed bug_status_has_down_section, found by this target).
		 */
		if (strcmp(s->state, "outdated") != 0)
			CHECK(s->has_down == p->has_down);
	}
	CHECK(k == pl->n);
}

static int
plan_error(const char *sqlstate)
{
	return strcmp(sqlstate, MIG_SQLSTATE_STATE) == 0 ||
		strcmp(sqlstate, MIG_SQLSTATE_DUPLICATE) == 0 ||
		strcmp(sqlstate, MIG_SQLSTATE_BAD_NAME) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const opts[] = {
		"", "target=3", "out_of_order=true", "ignore_missing=true"
	};
	static fz	f;
	mig_host	h;
	mig_err		err,
				perr;
	list		st = {0},
				pl = {0},
				again = {0};
	static folder_order fo;
	problems	ps = {0, 0};
	int			flags,
				opt,
				oom,
				rc_st,
				rc_v,
				rc_pl,
				rc_ap,
				rc;
	int64_t		applied = 0;
	size_t		skip = 1;

	if (size == 0)
		return 0;
	if (folder[0] == '\0')
	{
		strcpy(folder, "/dev/shm/fuzz_plan.XXXXXX");
		if (mkdtemp(folder) == NULL)
		{
			strcpy(folder, "/tmp/fuzz_plan.XXXXXX");
			CHECK(mkdtemp(folder) != NULL);
		}
		atexit(remove_folder);
	}
	memset(&f, 0, sizeof(f));
	current = &f;
	flags = data[0];
	opt = flags & 3;
	oom = (flags & 0x80) != 0;
	if (oom)
	{
		if (size < 2)
			return 0;
		f.fail_at = (long) data[1] + 1;
		skip = 2;
	}
	decode(&f, (const char *) data + skip, size - skip);
	make_dirs(&f);

	memset(&h, 0, sizeof(h));
	h.ctx = &f;
	h.alloc = f_alloc;
	h.release = f_release;
	h.open_file = f_open;
	h.close_file = f_close;
	h.list_dir = f_list;
	h.lock = f_lock;
	h.unlock = f_unlock;
	h.history_load = f_load;
	h.history_add = f_add;
	h.history_remove = f_remove;
	h.history_down = f_down;
	h.check_script = f_check;
	h.exec = f_exec;
	h.exec_outside = flags & 8 ? f_exec_outside : NULL;
	h.notice = f_notice;
	h.engine = "sqlite";
	h.cache = NULL;
	h.keeps_file_id = (flags & 4) != 0;
	h.refuse_writable = 1;

	f.phase = PH_READ;
	rc_st = mig_status(&h, FOLDER, status_cb, &st, &err);
	after(&f, rc_st, &err);
	rc_v = mig_validate(&h, FOLDER, problem_cb, &ps, &err);
	after(&f, rc_v, &err);
	rc_pl = mig_plan_pending(&h, FOLDER, opts[opt], pending_cb, &pl, &perr);
	after(&f, rc_pl, &perr);
	f.phase = PH_APPLY;
	rc_ap = mig_apply_with(&h, FOLDER, opts[opt], &applied, &err);
	after(&f, rc_ap, &err);

	if (!oom)
	{
		f.phase = PH_READ;
		discover_order(&h, &fo);
		CHECK(f.live == 0 && f.fds == 0);
		if (rc_st == MIG_OK)
			check_status(&f, &st, &fo);
		CHECK(rc_v == MIG_OK);
		/* status reads every pending file; plan with a target only
		 * those up to it */
		if (rc_st != MIG_OK)
			CHECK(ps.errors > 0 && (rc_pl != MIG_OK || opt == 1));
		if (ps.errors == 0)
			CHECK(rc_pl == MIG_OK || !plan_error(perr.sqlstate));
		if (rc_pl == MIG_OK && rc_st == MIG_OK)
			check_plan(&f, &st, &pl, opt, &fo);
		if (rc_pl != MIG_OK && strstr(perr.message, "is a goose Go migration"))
		{
			/* apply stops where plan did, after the migrations before --
			 * unless one of those failed as it ran (the dry run runs
			 * nothing) */
			CHECK((rc_ap == rc_pl && strcmp(err.message, perr.message) == 0) ||
				  (rc_ap != MIG_OK && strcmp(err.sqlstate, "P0001") == 0));
		}
		else if (rc_pl != MIG_OK)
		{
			/* apply refuses as the dry run did, running nothing */
			CHECK(rc_ap == rc_pl && f.nran == 0 && applied == 0);
			CHECK(strcmp(err.sqlstate, perr.sqlstate) == 0);
			CHECK(strcmp(err.message, perr.message) == 0);
		}
		else
		{
			/* runs what the dry run listed, up to a FAIL */
			CHECK(f.nran <= pl.n);
			for (int i = 0; i < f.nran; i++)
				CHECK(strcmp(f.ran[i], pl.it[i].version) == 0);
			if (rc_ap == MIG_OK)
				CHECK(f.nran == pl.n && applied == pl.n && !f.ran_fail);
			else
				CHECK(f.ran_fail && strcmp(err.sqlstate, "P0001") == 0);
		}
		if (ps.errors == 0)
			CHECK(rc_ap == MIG_OK || !plan_error(err.sqlstate));
		if (rc_ap == MIG_OK)
		{
			/* a second call is a no-op */
			f.phase = PH_READ;
			rc = mig_plan_pending(&h, FOLDER, opts[opt], pending_cb, &again, &err);
			after(&f, rc, &err);
			CHECK(rc == MIG_OK && again.n == 0);
		}
	}
	if (getenv("FUZZ_PLAN_DEBUG"))	/* to look at what a seed does */
	{
		fprintf(stderr, "options \"%s\": status %d, validate %d (%d errors, %d warnings), plan %d, apply %d (%s %s)\n",
				opts[opt], rc_st, rc_v, ps.errors, ps.warnings, rc_pl, rc_ap,
				rc_ap ? err.sqlstate : "", rc_ap ? err.message : "");
		for (int i = 0; i < st.n; i++)
			fprintf(stderr, "  status %s %s %s%s\n", st.it[i].version, st.it[i].state,
					st.it[i].file ? st.it[i].file : "-", st.it[i].has_down ? " has_down" : "");
		for (int i = 0; i < pl.n; i++)
			fprintf(stderr, "  plan %s %s\n", pl.it[i].version, pl.it[i].state);
		for (int i = 0; i < f.nran; i++)
			fprintf(stderr, "  ran %s\n", f.ran[i]);
	}
	order_free(&fo);
	list_free(&st);
	list_free(&pl);
	list_free(&again);
	remove_dirs(&f);
	fz_free(&f);
	return 0;
}
