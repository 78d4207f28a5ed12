/*
 * mig_files.c -- the folder and its files: discovery and name validation,
 * safe reading (regular files only, no symlinks, a size cap), content checks
 * (NUL bytes, UTF-8, BOM) and checksums (zlib's CRC-32).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "mig_int.h"

/* ---- discovery ---- */

typedef struct found {
	mig_name	n;
	char	   *file;
} found;

typedef struct listing {
	mig_arena  *a;
	mig_vec		names;			/* char *: candidate .sql names */
} listing;

static int
collect(void *arg, const char *name)
{
	listing    *l = arg;
	size_t		len = strlen(name);
	char	  **slot;

	/* hidden files (.#x, .x.swp) and anything that is not .sql (x.sql~,
	 * #x.sql#, x.sql.orig, README.md) are not migrations */
	if (name[0] == '.' || len < 4 || strcmp(name + len - 4, ".sql") != 0)
		return MIG_OK;
	slot = mig_vec_push(&l->names);
	if (slot == NULL || (*slot = mig_arena_strndup(l->a, name, len)) == NULL)
		return MIG_NOMEM;
	return MIG_OK;
}

static int
found_cmp(const void *x, const void *y)
{
	const found *a = x,
			   *b = y;
	int			c = mig_version_cmp(a->n.version, b->n.version);

	if (c == 0)
		c = a->n.kind - b->n.kind;
	return c ? c : strcmp(a->file, b->file);
}

static int
str_cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *) x, *(char *const *) y);
}

/* Fails with the list of names when there is any. */
static int
refuse_names(mig_err *err, mig_vec *bad, const char *state, const char *one,
			 const char *many, const char *intro)
{
	const char *const *names = (const char *const *) bad->items;

	if (bad->n == 0)
		return MIG_OK;
	if (bad->n > 1)
		qsort(bad->items, bad->n, sizeof(char *), str_cmp);
	if (bad->n == 1)
		mig_err_set(err, state, one, names[0]);
	else
		mig_err_set(err, state, many, bad->n);
	mig_err_list(err, intro, names, bad->n);
	return MIG_ERROR;
}

int
mig_discover(const mig_host *h, mig_arena *a, const char *dir, mig_vec *files,
			 mig_err *err)
{
	listing		l;
	mig_vec		ok,
				bad,
				dup,
				orphan;
	size_t		i,
				j;
	int			rc;

	l.a = a;
	mig_vec_init(&l.names, h, sizeof(char *));
	mig_vec_init(&ok, h, sizeof(found));
	mig_vec_init(&bad, h, sizeof(char *));
	mig_vec_init(&dup, h, sizeof(char *));
	mig_vec_init(&orphan, h, sizeof(char *));

	rc = h->list_dir(h->ctx, dir, collect, &l, err);
	if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	for (i = 0; rc == MIG_OK && i < l.names.n; i++)
	{
		char	   *file = *mig_vec_at(&l.names, char *, i);
		mig_name	n;
		int			fits = mig_parse_name(a, file, &n);
		void	   *slot;

		if (fits < 0)
			rc = MIG_NOMEM;
		else if (fits == 0)
		{
			if ((slot = mig_vec_push(&bad)) == NULL)
				rc = MIG_NOMEM;
			else
				*(char **) slot = file;
		}
		else if ((slot = mig_vec_push(&ok)) == NULL)
			rc = MIG_NOMEM;
		else
		{
			((found *) slot)->n = n;
			((found *) slot)->file = file;
		}
	}
	if (rc == MIG_OK && ok.n > 1)
		qsort(ok.items, ok.n, sizeof(found), found_cmp);

	/* group by version: one up file, at most one down file */
	for (i = 0; rc == MIG_OK && i < ok.n; i = j)
	{
		found	   *f = mig_vec_at(&ok, found, i);
		size_t		ups = 0,
					downs = 0;
		mig_file   *m;

		for (j = i; j < ok.n; j++)
		{
			found	   *g = mig_vec_at(&ok, found, j);

			if (mig_version_cmp(g->n.version, f->n.version) != 0)
				break;
			if (g->n.kind == MIG_KIND_UP)
				ups++;
			else
				downs++;
		}
		if (ups > 1 || downs > 1)
		{
			/* one entry per version: "3 (3_a.up.sql, 003_b.up.sql)" */
			char		text[1024] = "";
			char	  **slot = mig_vec_push(&dup);

			for (size_t k = i; k < j; k++)
			{
				size_t		used = strlen(text);

				snprintf(text + used, sizeof(text) - used, "%s%s",
						 k == i ? "" : ", ", mig_vec_at(&ok, found, k)->file);
			}
			if (slot == NULL)
				rc = MIG_NOMEM;
			else
			{
				char		item[1200];

				snprintf(item, sizeof(item), "%s (%s)", f->n.version, text);
				if ((*slot = mig_arena_strdup(a, item)) == NULL)
					rc = MIG_NOMEM;
			}
			continue;
		}
		if (ups == 0)
		{
			char	  **slot = mig_vec_push(&orphan);

			if (slot == NULL)
				rc = MIG_NOMEM;
			else
				*slot = f->file;
			continue;
		}
		if ((m = mig_vec_push(files)) == NULL)
		{
			rc = MIG_NOMEM;
			break;
		}
		m->version = f->n.version;
		for (size_t k = i; k < j; k++)
		{
			found	   *g = mig_vec_at(&ok, found, k);

			if (g->n.kind == MIG_KIND_UP)
			{
				m->up = g->file;
				m->name = g->n.name;
			}
			else
				m->down = g->file;
		}
	}

	if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	if (rc == MIG_OK)
	{
		rc = refuse_names(err, &bad, MIG_SQLSTATE_BAD_NAME,
						  "file name \"%s\" does not fit any migration layout",
						  "%zu file names do not fit any migration layout",
						  "Files: ");
		if (rc != MIG_OK)
			mig_err_hint(err, "%s", mig_layout_hint);
	}
	if (rc == MIG_OK)
	{
		rc = refuse_names(err, &dup, MIG_SQLSTATE_DUPLICATE,
						  "more than one file for migration version %s",
						  "%zu migration versions have more than one file",
						  "Versions and files: ");
		if (rc != MIG_OK)
		{
			mig_err_hint(err, "Give every migration a version of its own.");
		}
	}
	if (rc == MIG_OK)
	{
		rc = refuse_names(err, &orphan, MIG_SQLSTATE_BAD_NAME,
						  "down file \"%s\" has no matching up file",
						  "%zu down files have no matching up file",
						  "Files: ");
		if (rc != MIG_OK)
			mig_err_hint(err, "Every {version}_{name}.down.sql needs a {version}_{name}.up.sql.");
	}
	mig_vec_free(&l.names);
	mig_vec_free(&ok);
	mig_vec_free(&bad);
	mig_vec_free(&dup);
	mig_vec_free(&orphan);
	return rc;
}

/* ---- reading ---- */

void
mig_checksum(const char *buf, size_t len, char out[16])
{
	unsigned long crc = crc32_z(0L, (const Bytef *) buf, len);

	snprintf(out, 16, "crc32:%08lx", crc & 0xffffffffUL);
}

int
mig_text_read(const mig_host *h, const char *dir, const char *file,
			  mig_text *t, mig_err *err)
{
	char		path[4096];
	size_t		dlen = strlen(dir),
				cap = h->max_file_size ? h->max_file_size : MIG_DEFAULT_MAX_FILE,
				got = 0;
	struct stat st;
	int			fd,
				rc = MIG_OK;

	struct timespec now;

	t->buf = NULL;
	t->len = 0;
	clock_gettime(CLOCK_REALTIME, &now);
	t->read_ns = (int64_t) now.tv_sec * 1000000000LL + now.tv_nsec;
	if ((size_t) snprintf(path, sizeof(path), "%s%s%s", dir,
						  dlen && dir[dlen - 1] == '/' ? "" : "/", file) >= sizeof(path))
	{
		mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "path of \"%s\" is too long", file);
		return MIG_ERROR;
	}
	fd = h->open_file(h->ctx, path, err);
	if (fd < 0)
		return err->code == MIG_OK ? (mig_err_errno(err, EIO, "open file", path), MIG_ERROR) : err->code;
	if (fstat(fd, &st) != 0)
	{
		mig_err_errno(err, errno, "stat file", path);
		rc = MIG_ERROR;
	}
	else if (!S_ISREG(st.st_mode))
	{
		mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE, "\"%s\" is not a regular file", path);
		mig_err_detail(err, "Migration files must be regular files.");
		rc = MIG_ERROR;
	}
	else if (h->refuse_writable && (st.st_mode & (S_IWGRP | S_IWOTH)))
	{
		mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE,
					"file \"%s\" is writable by group or others", path);
		mig_err_hint(err, "Remove the write permission with chmod go-w.");
		rc = MIG_ERROR;
	}
	else if ((size_t) st.st_size > cap)
	{
		mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "file \"%s\" is too large", path);
		mig_err_detail(err, "It has %lld bytes; the limit is %zu bytes.",
					   (long long) st.st_size, cap);
		rc = MIG_ERROR;
	}
	else if ((t->buf = h->alloc(h->ctx, (size_t) st.st_size + 1)) == NULL)
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	else
	{
		/* read one byte more than expected to notice a file that grew */
		size_t		want = (size_t) st.st_size + 1;

		while (got < want)
		{
			ssize_t		n = read(fd, t->buf + got, want - got);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
			{
				mig_err_errno(err, errno, "read file", path);
				rc = MIG_ERROR;
				break;
			}
			if (n == 0)
				break;
			got += (size_t) n;
			if (got < want)
				break;			/* a short read of a regular file is its end */
		}
		if (rc == MIG_OK && got != (size_t) st.st_size)
		{
			mig_err_set(err, "58030", "file \"%s\" changed size while being read", path);
			rc = MIG_ERROR;
		}
	}
	h->close_file(h->ctx, fd);
	if (rc != MIG_OK)
	{
		mig_text_free(h, t);
		return rc;
	}
	t->buf[got] = '\0';
	t->len = got;
	t->dev = (uint64_t) st.st_dev;
	t->ino = (uint64_t) st.st_ino;
	t->mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
	t->ctime_ns = (int64_t) st.st_ctim.tv_sec * 1000000000LL + st.st_ctim.tv_nsec;
	mig_checksum(t->buf, t->len, t->checksum);
	return MIG_OK;
}

void
mig_text_free(const mig_host *h, mig_text *t)
{
	if (t->buf)
		h->release(h->ctx, t->buf);
	t->buf = NULL;
	t->len = 0;
}

/* Offset of the first byte that is not valid UTF-8, or -1. */
static long
utf8_invalid(const unsigned char *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		unsigned char c = s[i];
		unsigned char lo = 0x80,
					hi = 0xbf;
		size_t		more;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			more = 1;
		else if (c >= 0xe0 && c <= 0xef)
		{
			more = 2;
			if (c == 0xe0)
				lo = 0xa0;		/* no overlong forms */
			if (c == 0xed)
				hi = 0x9f;		/* no surrogates */
		}
		else if (c >= 0xf0 && c <= 0xf4)
		{
			more = 3;
			if (c == 0xf0)
				lo = 0x90;
			if (c == 0xf4)
				hi = 0x8f;		/* nothing above U+10FFFF */
		}
		else
			return (long) i;
		if (i + more >= n)
			return (long) i;		/* cut short by the end of the file */
		if (s[i + 1] < lo || s[i + 1] > hi)
			return (long) i;
		for (size_t k = 2; k <= more; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return (long) i;
		i += more + 1;
	}
	return -1;
}

int
mig_text_script(const mig_text *t, const char *file, const char *version,
				int down, mig_script *s, mig_err *err)
{
	const char *nul = memchr(t->buf, '\0', t->len);
	long		bad;

	s->sql = t->buf;
	s->len = t->len;
	s->file = file;
	s->version = version;
	s->down = down;
	if (nul)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_BYTES,
					"migration file \"%s\" contains a NUL byte", file);
		err->offset = nul - t->buf;
		mig_err_at(err, s);
		return MIG_ERROR;
	}
	if ((bad = utf8_invalid((const unsigned char *) t->buf, t->len)) >= 0)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_BYTES,
					"migration file \"%s\" is not valid UTF-8", file);
		mig_err_detail(err, "Byte 0x%02x at offset %ld starts no valid character.",
					   (unsigned char) t->buf[bad], bad);
		err->offset = bad;
		mig_err_at(err, s);
		return MIG_ERROR;
	}
	if (t->len >= 3 && memcmp(t->buf, "\xEF\xBB\xBF", 3) == 0)
	{
		s->sql += 3;			/* PostgreSQL rejects a BOM; strip one */
		s->len -= 3;
	}
	return MIG_OK;
}
