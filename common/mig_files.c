/*
 * mig_files.c -- the folder and its files: discovery and name validation,
 * safe reading (regular files only, no symlinks, a size cap), content checks
 * (NUL bytes, UTF-8, BOM) and checksums (zlib's CRC-32).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "mig_int.h"

/* ---- discovery ---- */

int
mig_join(char *out, const char *a, const char *b)
{
	size_t		la = strlen(a);
	int			n = snprintf(out, MIG_PATH_MAX, "%s%s%s", a,
							 la && a[la - 1] == '/' ? "" : "/", b);

	return n >= 0 && n < MIG_PATH_MAX;
}

/* Fails for a path too long to use. */
static int
too_long(mig_err *err, const char *a, const char *b)
{
	mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "path \"%s/%s\" is too long", a, b);
	return MIG_ERROR;
}

typedef struct found {
	mig_name	n;
	char	   *file;			/* path inside the folder */
	uint64_t	key;			/* mig_version_key(n.version), for the sort */
} found;

typedef struct listing {
	mig_arena  *a;
	mig_vec		names;			/* char *: every entry but hidden ones */
} listing;

static int
collect(void *arg, const char *name)
{
	listing    *l = arg;
	char	  **slot;

	if (name[0] == '.')			/* hidden files: .#x, .x.swp, .git */
		return MIG_OK;
	slot = mig_vec_push(&l->names);
	if (slot == NULL || (*slot = mig_arena_strdup(l->a, name)) == NULL)
		return MIG_NOMEM;
	return MIG_OK;
}

/* Lists dir into l->names (strings in the arena). */
static int
list(const mig_host *h, mig_arena *a, const char *dir, listing *l, mig_err *err)
{
	int			rc;

	l->a = a;
	mig_vec_init(&l->names, h, sizeof(char *));
	rc = h->list_dir(h->ctx, dir, collect, l, err);
	if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	return rc;
}

/* S_IFDIR, S_IFREG, S_IFLNK... of dir/name without following a link, or
 * 0 when it cannot be looked at. */
static unsigned
kind_of(const char *dir, const char *name)
{
	char		path[MIG_PATH_MAX];
	struct stat st;

	if (!mig_join(path, dir, name) || fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	return st.st_mode & S_IFMT;
}

static int
found_cmp(const void *x, const void *y)
{
	const found *a = x,
			   *b = y;
	int			c = a->key != MIG_NO_KEY && b->key != MIG_NO_KEY
		? (a->key > b->key) - (a->key < b->key)
		: mig_version_cmp(a->n.version, b->n.version);

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

static int
push_str(mig_vec *v, char *s)
{
	char	  **slot = mig_vec_push(v);

	if (slot == NULL || s == NULL)
		return MIG_NOMEM;
	*slot = s;
	return MIG_OK;
}

/* Refuses a folder entry that is a symbolic link: the folder read would
 * not be the one given. */
static int
refuse_link(mig_err *err, const char *dir, const char *name)
{
	mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE, "\"%s/%s\" is a symbolic link", dir, name);
	mig_err_detail(err, "Migration folders must be real folders, not symbolic links.");
	return MIG_ERROR;
}

/*
 * Refuses a .sql name that no layout could describe properly: one that is
 * not valid UTF-8 (its bytes could not even be shown), or whose version
 * is longer than any version (rather than "fits no layout").
 */
static int
odd_name(const char *dir, const char *name, mig_err *err)
{
	const char *p = name;
	size_t		run = 0;

	for (size_t i = 0, k, n = strlen(name); i < n; i += k)
		if ((k = mig_utf8_char((const unsigned char *) name + i, n - i)) == 0)
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_BYTES, "file name \"%s\" in \"%s\" is not valid UTF-8",
						name, dir);
			mig_err_detail(err, "Byte %zu of the name is not part of a UTF-8 character.", i + 1);
			mig_err_hint(err, "Rename the file: migration file names must be UTF-8.");
			return MIG_ERROR;
		}
	if (*p == 'V' || *p == 'U')
		p++;
	while (p[run] && (strchr("0123456789", p[run]) != NULL))
		run++;
	if (run > MIG_VERSION_MAX)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_NAME,
					"the version of file name \"%s\" is longer than %d digits (%zu)", name,
					MIG_VERSION_MAX, run);
		mig_err_hint(err, "Give it a shorter version, such as a timestamp 20240101120000.");
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* The folder names each engine may have of its own, as in Mattermost's
 * db/migrations/{postgres,sqlite}. */
static const char *const engine_dirs[][3] = {
	{"sqlite", "sqlite", "sqlite3"},
	{"postgres", "postgres", "postgresql"},
};

/*
 * When dir holds per-engine folders, sets *sub to the host's one ("" when
 * there are none).  Fails when there are some but not the host's.
 */
static int
engine_folder(const mig_host *h, const char *dir, listing *l, const char **sub,
			  mig_err *err)
{
	const char *other = NULL;

	*sub = "";
	for (size_t i = 0; i < l->names.n; i++)
	{
		const char *name = *mig_vec_at(&l->names, char *, i);

		for (size_t e = 0; e < sizeof(engine_dirs) / sizeof(engine_dirs[0]); e++)
		{
			unsigned	kind;

			if (strcmp(name, engine_dirs[e][1]) != 0 && strcmp(name, engine_dirs[e][2]) != 0)
				continue;
			if ((kind = kind_of(dir, name)) == S_IFLNK)
				return refuse_link(err, dir, name);
			if (kind == S_IFDIR)
			{
				if (h->engine && strcmp(h->engine, engine_dirs[e][0]) == 0)
				{
					*sub = name;
					return MIG_OK;
				}
				other = name;
			}
		}
	}
	if (other && h->engine)
	{
		mig_err_set(err, "58P01", "\"%s\" has a folder for another engine (%s/) but none for %s",
					dir, other, h->engine);
		mig_err_hint(err, "Put this engine's migrations in %s/%s/.", dir, h->engine);
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* Adds the up.sql and down.sql of a diesel folder. */
static int
diesel_folder(const mig_host *h, mig_arena *a, const char *dir, const char *name,
			  const mig_name *n, mig_vec *ok, mig_vec *bad, mig_err *err)
{
	char		path[MIG_PATH_MAX];
	listing		l;
	int			rc,
				ups = 0;

	if (!mig_join(path, dir, name))
		return too_long(err, dir, name);
	if ((rc = list(h, a, path, &l, err)) != MIG_OK)
	{
		mig_vec_free(&l.names);
		return rc;
	}
	for (size_t i = 0; rc == MIG_OK && i < l.names.n; i++)
	{
		const char *f = *mig_vec_at(&l.names, char *, i);
		int			down = strcmp(f, "down.sql") == 0;
		found	   *slot;
		char		rel[MIG_PATH_MAX];

		if (strcmp(f, "up.sql") != 0 && !down)
			continue;			/* diesel's metadata.toml and the like */
		ups += !down;
		if (!mig_join(rel, name, f))
			rc = too_long(err, name, f);
		else if ((slot = mig_vec_push(ok)) == NULL)
			rc = MIG_NOMEM;
		else
		{
			slot->n = *n;
			slot->n.kind = down ? MIG_KIND_DOWN : MIG_KIND_UP;
			slot->file = mig_arena_strdup(a, rel);
			if (slot->file == NULL)
				rc = MIG_NOMEM;
		}
	}
	if (rc == MIG_OK && ups == 0 && mig_join(path, name, "up.sql (missing)"))
		rc = push_str(bad, mig_arena_strdup(a, path));
	mig_vec_free(&l.names);
	if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	return rc;
}

/* Fails when the migrations found use more than one layout, listing the
 * files of each. */
static int
one_layout(mig_vec *ok, mig_err *err)
{
	size_t		count[MIG_LAYOUT_DIESEL + 1] = {0};
	int			layouts = 0,
				first = MIG_LAYOUT_NONE,
				second = MIG_LAYOUT_NONE;

	for (size_t i = 0; i < ok->n; i++)
		if (count[mig_vec_at(ok, found, i)->n.layout]++ == 0)
		{
			layouts++;
			if (first == MIG_LAYOUT_NONE)
				first = mig_vec_at(ok, found, i)->n.layout;
			else if (second == MIG_LAYOUT_NONE)
				second = mig_vec_at(ok, found, i)->n.layout;
		}
	if (layouts <= 1)
		return MIG_OK;
	mig_err_set(err, MIG_SQLSTATE_BAD_NAME, "migration folder mixes the %s and %s layouts%s",
				mig_layout_names[first], mig_layout_names[second], layouts > 2 ? ", and more" : "");
	for (int l = MIG_LAYOUT_UPDOWN; l <= MIG_LAYOUT_DIESEL; l++)
	{
		const char *names[20];
		size_t		n = 0;
		char		intro[64];

		if (count[l] == 0)
			continue;
		for (size_t i = 0; i < ok->n && n < 20; i++)
			if (mig_vec_at(ok, found, i)->n.layout == l)
				names[n++] = mig_vec_at(ok, found, i)->file;
		snprintf(intro, sizeof(intro), "%s: ", mig_layout_names[l]);
		mig_err_list(err, intro, names, count[l]);
	}
	mig_err_hint(err, "Keep one layout per folder.");
	return MIG_ERROR;
}

/* Notes each name of v as a problem (validating) instead of failing:
 * message one with the name; version is the name up to its first space
 * when with_version is set. */
static int
note_names(mig_arena *a, mig_vec *problems, mig_vec *v, const char *kind,
		   const char *state, const char *one, int with_version)
{
	int			rc = MIG_OK;

	for (size_t i = 0; rc == MIG_OK && i < v->n; i++)
	{
		const char *name = *mig_vec_at(v, char *, i);
		const char *sp = strchr(name, ' ');
		char	   *version = NULL,
				   *file = NULL;
		mig_err		e;

		mig_err_clear(&e);
		mig_err_set(&e, state, one, name);
		/* "3 (3_a.up.sql, 003_b.up.sql)": version 3, those files */
		if (with_version && sp && strlen(sp) >= 3 &&
			((version = mig_arena_strndup(a, name, (size_t) (sp - name))) == NULL ||
			 (file = mig_arena_strndup(a, sp + 2, strlen(sp) - 3)) == NULL))
			return MIG_NOMEM;
		rc = mig_problem_add(a, problems, version, with_version ? file : name, kind, 0, &e);
	}
	return rc;
}

/* Validating: notes the problems of the folder and goes on. */
static int
note_problems(mig_arena *a, mig_vec *problems, mig_vec *ok, mig_vec *bad,
			  mig_vec *dup, mig_vec *orphan)
{
	mig_err		e;
	int			rc;

	mig_err_clear(&e);
	rc = note_names(a, problems, bad, "bad_name", MIG_SQLSTATE_BAD_NAME,
					"file name \"%s\" does not fit any migration layout", 0);
	if (rc == MIG_OK && one_layout(ok, &e) != MIG_OK)
		rc = mig_problem_add(a, problems, NULL, NULL, "mixed_layouts", 0, &e);
	if (rc == MIG_OK)
		rc = note_names(a, problems, dup, "duplicate", MIG_SQLSTATE_DUPLICATE,
						"more than one file for migration version %s", 1);
	if (rc == MIG_OK)
		rc = note_names(a, problems, orphan, "orphan_down", MIG_SQLSTATE_BAD_NAME,
						"down file \"%s\" has no matching up file", 0);
	return rc;
}

int
mig_discover(const mig_host *h, mig_arena *a, const char *dir, mig_vec *files,
			 mig_vec *problems, mig_err *err)
{
	listing		l;
	mig_vec		ok,
				bad,
				dup,
				orphan;
	const char *sub = "";
	char		folder[MIG_PATH_MAX];
	size_t		i,
				j;
	int			rc;

	mig_vec_init(&ok, h, sizeof(found));
	mig_vec_init(&bad, h, sizeof(char *));
	mig_vec_init(&dup, h, sizeof(char *));
	mig_vec_init(&orphan, h, sizeof(char *));

	rc = list(h, a, dir, &l, err);
	if (rc == MIG_OK)
		rc = engine_folder(h, dir, &l, &sub, err);
	if (rc == MIG_OK && sub[0])
	{
		mig_vec_free(&l.names);
		rc = mig_join(folder, dir, sub) ? list(h, a, folder, &l, err) : too_long(err, dir, sub);
	}
	else if (strlen(dir) < sizeof(folder))
		strcpy(folder, dir);
	else
		rc = too_long(err, dir, "");
	if (rc == MIG_OK)
		rc = mig_vec_reserve(&ok, l.names.n);

	for (i = 0; rc == MIG_OK && i < l.names.n; i++)
	{
		char	   *name = *mig_vec_at(&l.names, char *, i);
		size_t		len = strlen(name);
		char	   *file = name;
		mig_name	n;
		int			fits;

		if (sub[0])				/* files are named from the folder given */
		{
			char		rel[MIG_PATH_MAX];

			if (!mig_join(rel, sub, name))
			{
				rc = too_long(err, sub, name);
				break;
			}
			if ((file = mig_arena_strdup(a, rel)) == NULL)
			{
				rc = MIG_NOMEM;
				break;
			}
		}
		if (len < 4 || strcmp(name + len - 4, ".sql") != 0)
		{
			/* not .sql (README.md, x.sql~, #x.sql#, x.sql.orig): a diesel
			 * folder, or nothing of ours */
			unsigned	kind;

			fits = mig_parse_dir_name(a, name, &n);
			kind = fits > 0 ? kind_of(folder, name) : 0;
			if (kind == S_IFDIR)
				rc = diesel_folder(h, a, folder, file, &n, &ok, &bad, err);
			else if (kind == S_IFLNK)
				rc = refuse_link(err, folder, name);
			else if (fits < 0)
				rc = MIG_NOMEM;
			continue;
		}
		if (odd_name(folder, file, err) != MIG_OK)
		{
			if (problems == NULL)
			{
				rc = MIG_ERROR;
				break;
			}
			rc = mig_problem_add(a, problems, NULL, file, "bad_name", 0, err);
			mig_err_clear(err);
			continue;
		}
		fits = mig_parse_name(a, name, &n);
		if (fits < 0)
			rc = MIG_NOMEM;
		else if (fits == 0)
			rc = push_str(&bad, file);
		else
		{
			found	   *slot = mig_vec_push(&ok);

			if (slot == NULL)
				rc = MIG_NOMEM;
			else
			{
				slot->n = n;
				slot->file = file;
			}
		}
	}
	if (rc == MIG_OK && ok.n > 1)
	{
		/* keys first: 10,000 migrations, 20,000 files, take some
		 * 280,000 comparisons */
		for (i = 0; i < ok.n; i++)
		{
			found	   *f = mig_vec_at(&ok, found, i);

			f->key = mig_version_key(f->n.version);
		}
		qsort(ok.items, ok.n, sizeof(found), found_cmp);
	}

	/* group by version: one up file, at most one down file; room for
	 * the most there can be (untouched memory costs nothing) */
	if (rc == MIG_OK)
		rc = mig_vec_reserve(files, files->n + ok.n);
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
			if (g->n.kind == MIG_KIND_DOWN)
				downs++;
			else
				ups++;
		}
		if (ups > 1 || downs > 1)
		{
			/* one entry per version: "3 (3_a.up.sql, 003_b.up.sql)" */
			char		item[1200];
			size_t		used;

			used = (size_t) snprintf(item, sizeof(item), "%s (", f->n.version);
			for (size_t k = i; k < j && used < sizeof(item); k++)
				used += (size_t) snprintf(item + used, sizeof(item) - used, "%s%s",
										  k == i ? "" : ", ", mig_vec_at(&ok, found, k)->file);
			if (used < sizeof(item))
				snprintf(item + used, sizeof(item) - used, ")");
			rc = push_str(&dup, mig_arena_strdup(a, item));
			continue;
		}
		if (ups == 0)
		{
			rc = push_str(&orphan, f->file);
			continue;
		}
		if ((m = mig_vec_push(files)) == NULL)
		{
			rc = MIG_NOMEM;
			break;
		}
		m->version = f->n.version;
		m->layout = f->n.layout;
		for (size_t k = i; k < j; k++)
		{
			found	   *g = mig_vec_at(&ok, found, k);

			if (g->n.kind == MIG_KIND_DOWN)
				m->down = g->file;
			else
			{
				m->up = g->file;
				m->name = g->n.name;
			}
		}
	}

	if (rc == MIG_OK && problems)
		rc = note_problems(a, problems, &ok, &bad, &dup, &orphan);
	if (rc == MIG_NOMEM)
		mig_err_nomem(err);
	if (rc == MIG_OK && problems == NULL)
	{
		rc = refuse_names(err, &bad, MIG_SQLSTATE_BAD_NAME,
						  "file name \"%s\" does not fit any migration layout",
						  "%zu file names do not fit any migration layout",
						  "Files: ");
		if (rc != MIG_OK)
			mig_err_hint(err, "%s", mig_layout_hint);
	}
	if (rc == MIG_OK && problems == NULL)
		rc = one_layout(&ok, err);
	if (rc == MIG_OK && problems == NULL)
	{
		rc = refuse_names(err, &dup, MIG_SQLSTATE_DUPLICATE,
						  "more than one file for migration version %s",
						  "%zu migration versions have more than one file",
						  "Versions and files: ");
		if (rc != MIG_OK)
			mig_err_hint(err, "Give every migration a version of its own.");
	}
	if (rc == MIG_OK && problems == NULL)
	{
		rc = refuse_names(err, &orphan, MIG_SQLSTATE_BAD_NAME,
						  "down file \"%s\" has no matching up file",
						  "%zu down files have no matching up file",
						  "Files: ");
		if (rc != MIG_OK)
			mig_err_hint(err, "Every down or undo file needs the up file of its version.");
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
	mig_checksum_of(mig_checksum_add(0, buf, len), out);
}

uint32_t
mig_checksum_add(uint32_t crc, const char *buf, size_t len)
{
	return (uint32_t) (crc32_z(crc, (const Bytef *) buf, len) & 0xffffffffUL);
}

void
mig_checksum_of(uint32_t crc, char out[16])
{
	snprintf(out, 16, "crc32:%08lx", (unsigned long) crc);
}

/*
 * The checksum of the text as a reader sees it: a leading UTF-8 BOM left
 * out, lines ended by \n whatever they were ended by (\r\n, \r, or nothing
 * at the end), white space at line ends and blank lines at the end of the
 * file left out.  Two files with equal normalised but different raw
 * checksums differ only in white space.
 */
void
mig_checksum_norm(const char *buf, size_t len, char out[16])
{
	unsigned long crc = crc32_z(0L, Z_NULL, 0);
	size_t		i = 0,
				blank = 0;		/* empty lines not written yet */

	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	while (i < len)
	{
		size_t		s = i,
					e;

		while (i < len && buf[i] != '\n' && buf[i] != '\r')
			i++;
		e = i;
		if (i < len)
			i += buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n' ? 2 : 1;
		while (e > s && (buf[e - 1] == ' ' || buf[e - 1] == '\t' ||
						 buf[e - 1] == '\f' || buf[e - 1] == '\v'))
			e--;
		if (e == s)
		{
			blank++;
			continue;
		}
		for (; blank > 0; blank--)
			crc = crc32_z(crc, (const Bytef *) "\n", 1);
		crc = crc32_z(crc, (const Bytef *) buf + s, e - s);
		crc = crc32_z(crc, (const Bytef *) "\n", 1);
	}
	snprintf(out, 16, "crc32:%08lx", crc & 0xffffffffUL);
}

int
mig_text_read(const mig_host *h, const char *dir, const char *file,
			  mig_text *t, mig_err *err)
{
	char		path[MIG_PATH_MAX];
	size_t		cap = h->max_file_size ? h->max_file_size : MIG_DEFAULT_MAX_FILE,
				got = 0;
	struct stat st;
	int			fd,
				rc = MIG_OK;

	t->buf = NULL;
	t->len = 0;
	t->read_ns = mig_wall_ns();
	if (!mig_join(path, dir, file))
		return too_long(err, dir, file);
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
	mig_checksum_norm(t->buf, t->len, t->norm);
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

size_t
mig_utf8_char(const unsigned char *s, size_t n)
{
	unsigned char c = s[0],
				lo = 0x80,
				hi = 0xbf;
	size_t		more;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		more = 1;
	else if (c >= 0xe0 && c <= 0xef)
	{
		more = 2;
		if (c == 0xe0)
			lo = 0xa0;			/* no overlong forms */
		if (c == 0xed)
			hi = 0x9f;			/* no surrogates */
	}
	else if (c >= 0xf0 && c <= 0xf4)
	{
		more = 3;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;			/* nothing above U+10FFFF */
	}
	else
		return 0;
	if (more >= n || s[1] < lo || s[1] > hi)
		return 0;				/* cut short by the end, or not a sequence */
	for (size_t k = 2; k <= more; k++)
		if ((s[k] & 0xc0) != 0x80)
			return 0;
	return more + 1;
}

/* Offset of the first byte that is not valid UTF-8, or -1. */
static long
utf8_invalid(const unsigned char *s, size_t n)
{
	for (size_t i = 0, k; i < n; i += k)
		if ((k = mig_utf8_char(s + i, n - i)) == 0)
			return (long) i;
	return -1;
}

int
mig_text_script(const mig_text *t, const mig_file *f, int down, mig_script *s,
				mig_err *err)
{
	const char *file = down && f->down ? f->down : f->up;
	const char *nul = memchr(t->buf, '\0', t->len);
	size_t		start = 0;
	mig_sections sec;
	long		bad;

	memset(s, 0, sizeof(*s));
	s->sql = t->buf;
	s->len = t->len;
	s->text = t->buf;
	s->text_len = t->len;
	s->file = file;
	s->version = f->version;
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
		start = 3;				/* PostgreSQL rejects a BOM; strip one */
	if (mig_sections_parse(t->buf, t->len, start, f->layout, s, &sec, err) != MIG_OK)
		return MIG_ERROR;
	s->nontransactional = down ? sec.down_no_txn : sec.no_txn;
	s->checksum = t->checksum;
	if (f->layout == MIG_LAYOUT_SINGLE && down)
	{
		if (!sec.has_down && sec.format == MIG_FORMAT_GOOSE)
		{
			/* goose rolls back a file without -- +goose Down by running
			 * nothing and deleting its version row (pressly/goose,
			 * migration_sql.go: the Down direction collects no
			 * statements): an empty down script, a no-op */
			s->sql = t->buf + t->len;
			s->len = 0;
			return MIG_OK;
		}
		if (!sec.has_down)
		{
			s->sql = NULL;		/* no down section: dbmate requires one
								 * (amacneil/dbmate, pkg/dbmate/migration.go,
								 * ErrParseMissingDown), sqlx's one-file
								 * migrations cannot be reverted */
			s->len = 0;
			return MIG_OK;
		}
		s->sql = t->buf + sec.down_off;
		s->len = sec.down_end - sec.down_off;
	}
	else
	{
		s->sql = t->buf + sec.up_off;
		s->len = sec.up_end - sec.up_off;
	}
	return MIG_OK;
}
