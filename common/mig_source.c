/*
 * mig_source.c -- a migration folder's contents in memory: the data forms
 * of the functions (an archive, mig_archive.c, or a JSON object an adapter
 * walks), read by the same discovery, checks and checksums as a folder on
 * disk.
 *
 * Entries are kept sorted by path, '/' ordering before every other byte, so
 * that the entries of a folder, and everything below it, sit together: a
 * listing is one binary search and a walk.  A file's identity, as a file on
 * disk is known by its inode and times, is its content: the CRC-32 of its
 * bytes and their number (computed when first asked for).  A call that
 * finds an applied file's identity in the history trusts the checksums
 * recorded with it, and the no-op shortcut digests identities -- here,
 * the content itself.  Nothing stronger is needed: the recorded checksum
 * an identity vouches for is that same CRC-32, and an equal CRC-32 is what
 * "unchanged" means for any file.  (A SHA-256 of each file made a no-op of
 * 1,000 migrations cost more than all the rest of the call.)
 *
 * Rules an entry must follow, the same for every kind of source: a path
 * relative to the folder ("./" in front is dropped, as tar writes it),
 * neither absolute nor with "." or ".." or empty parts, valid UTF-8 without
 * control characters, at most MAX_NAME bytes; a file at most the host's
 * max_file_size, all files together at most its max_archive_size, at most
 * MIG_MAX_ENTRIES entries; no path twice, and none both a file and a
 * folder.  Anything outside the source is never read: nothing here opens a
 * file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mig_int.h"

#define MAX_NAME	1024		/* bytes of an entry's path */

struct mig_blob {
	char	   *path;			/* relative to the folder; NUL-terminated */
	char	   *data;			/* NUL-terminated; NULL for a folder */
	size_t		len;
	int			dir;			/* a folder */
	int			id_set;
	char		id[48];			/* "mem:crc32:xxxxxxxx:<bytes>" */
};

struct mig_source {
	const mig_host *h;
	mig_arena	arena;			/* paths, data, this struct's strings */
	mig_vec		blobs;			/* mig_blob, sorted by path once sealed */
	const char *noun;			/* "archive", "JSON object" */
	size_t		files;			/* regular files */
	size_t		total;			/* their bytes */
	int			sealed;
	char		kind[16];		/* "tar.gz", "zip"; "" for JSON */
	char		sha[65];		/* of the bytes sent, or of the files */
	char		label[96];
	char		logged[192];
};

/* ---- order and lookup ---- */

/* strcmp with '/' before every other byte: a folder's entries, and all
 * below them, are contiguous ("a/b", "a/b/c", "a/b-c", "a-b"). */
static int
path_cmp(const char *a, const char *b)
{
	for (;; a++, b++)
	{
		unsigned char ca = (unsigned char) *a,
					cb = (unsigned char) *b;

		if (ca != cb || ca == '\0')
		{
			ca = ca == '/' ? 1 : ca;
			cb = cb == '/' ? 1 : cb;
			return (ca > cb) - (ca < cb);
		}
	}
}

static int
blob_cmp(const void *x, const void *y)
{
	return path_cmp(((const mig_blob *) x)->path, ((const mig_blob *) y)->path);
}

/* The first entry whose path is >= key (path_cmp), as an index. */
static size_t
lower_bound(const mig_source *s, const char *key)
{
	size_t		lo = 0,
				hi = s->blobs.n;

	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;

		if (path_cmp(mig_vec_at(&s->blobs, mig_blob, mid)->path, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * The path inside the source of dir (its label, or label/sub) joined with
 * file (NULL: dir itself), into out[MIG_PATH_MAX]; NULL when dir is not
 * the source's.
 */
static const char *
inside(const mig_source *s, const char *dir, const char *file, char *out)
{
	size_t		n = strlen(s->label);
	const char *sub;

	if (strncmp(dir, s->label, n) != 0 || (dir[n] != '\0' && dir[n] != '/'))
		return NULL;
	sub = dir[n] == '/' ? dir + n + 1 : "";
	if (file == NULL || file[0] == '\0')
		return strlen(sub) < MIG_PATH_MAX ? strcpy(out, sub) : NULL;
	if (sub[0] == '\0')
		return strlen(file) < MIG_PATH_MAX ? strcpy(out, file) : NULL;
	return mig_join(out, sub, file) ? out : NULL;
}

/* The entry of path, or NULL. */
static const mig_blob *
find(const mig_source *s, const char *path)
{
	size_t		i = lower_bound(s, path);
	const mig_blob *b;

	if (i >= s->blobs.n)
		return NULL;
	b = mig_vec_at(&s->blobs, mig_blob, i);
	return strcmp(b->path, path) == 0 ? b : NULL;
}

/* Whether some entry lies below folder path ("" is the root). */
static int
has_below(const mig_source *s, const char *path)
{
	char		key[MIG_PATH_MAX + 1];
	size_t		n = strlen(path),
				i;
	const mig_blob *b;

	if (n == 0)
		return s->blobs.n > 0;
	if (n + 1 >= sizeof(key))
		return 0;
	memcpy(key, path, n);
	key[n] = '/';
	key[n + 1] = '\0';
	i = lower_bound(s, key);
	if (i >= s->blobs.n)
		return 0;
	b = mig_vec_at(&s->blobs, mig_blob, i);
	return strncmp(b->path, key, n + 1) == 0;
}

/* ---- reading, for discovery (mig_files.c, mig_cache.c) ---- */

int
mig_source_list(const mig_source *s, const char *dir, mig_name_cb cb, void *arg,
				mig_err *err)
{
	char		rel[MIG_PATH_MAX],
				name[MIG_PATH_MAX];
	const mig_blob *self;
	size_t		n,
				i;
	int			rc = MIG_OK;

	if (inside(s, dir, NULL, rel) == NULL)
	{
		mig_err_errno(err, ENOENT, "open directory", dir);
		return MIG_ERROR;
	}
	n = strlen(rel);
	if ((self = n ? find(s, rel) : NULL) != NULL && !self->dir)
	{
		mig_err_errno(err, ENOTDIR, "open directory", dir);
		return MIG_ERROR;
	}
	if (n && self == NULL && !has_below(s, rel))
	{
		mig_err_errno(err, ENOENT, "open directory", dir);
		return MIG_ERROR;
	}
	if (n)
		rel[n++] = '/';
	rel[n] = '\0';
	name[0] = '\0';
	for (i = n ? lower_bound(s, rel) : 0; rc == MIG_OK && i < s->blobs.n; i++)
	{
		const char *p = mig_vec_at(&s->blobs, mig_blob, i)->path;
		const char *slash;
		size_t		len;

		if (strncmp(p, rel, n) != 0)
			break;
		p += n;
		slash = strchr(p, '/');
		len = slash ? (size_t) (slash - p) : strlen(p);
		/* a folder's entries follow it: its name once */
		if (strlen(name) == len && strncmp(name, p, len) == 0)
			continue;
		memcpy(name, p, len);
		name[len] = '\0';
		rc = cb(arg, name);
	}
	return rc;
}

unsigned
mig_source_kind(const mig_source *s, const char *dir, const char *name)
{
	char		rel[MIG_PATH_MAX];
	const mig_blob *b;

	if (inside(s, dir, name, rel) == NULL)
		return 0;
	if ((b = find(s, rel)) != NULL)
		return b->dir ? S_IFDIR : S_IFREG;
	return has_below(s, rel) ? S_IFDIR : 0;
}

int
mig_source_read(const mig_source *s, const char *dir, const char *file, mig_text *t,
				mig_err *err)
{
	char		rel[MIG_PATH_MAX] = "",
				path[MIG_PATH_MAX];
	const mig_blob *b = NULL;

	memset(t, 0, sizeof(*t));
	if (!mig_join(path, dir, file))
		snprintf(path, sizeof(path), "%s", file);
	if (inside(s, dir, file, rel) == NULL || (b = find(s, rel)) == NULL)
	{
		mig_err_errno(err, has_below(s, rel) ? EISDIR : ENOENT, "open file", path);
		return MIG_ERROR;
	}
	if (b->dir)
	{
		mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE, "\"%s\" is not a regular file", path);
		mig_err_detail(err, "Migration files must be regular files.");
		return MIG_ERROR;
	}
	t->buf = b->data;
	t->len = b->len;
	t->blob = b;
	t->read_ns = mig_wall_ns();
	mig_checksum(t->buf, t->len, t->checksum);
	mig_checksum_norm(t->buf, t->len, t->norm);
	return MIG_OK;
}

void
mig_blob_id(const mig_blob *b, char *out)
{
	mig_blob   *m = (mig_blob *) b;	/* computed once, kept */

	if (!m->id_set)
	{
		char		sum[16];

		mig_checksum(b->data, b->len, sum);
		snprintf(m->id, sizeof(m->id), "mem:%s:%zu", sum, b->len);
		m->id_set = 1;
	}
	strcpy(out, b->id);
}

int
mig_source_id(const mig_source *s, const char *dir, const char *file, char *out)
{
	char		rel[MIG_PATH_MAX];
	const mig_blob *b;

	out[0] = '\0';
	if (inside(s, dir, file, rel) == NULL || (b = find(s, rel)) == NULL || b->dir)
		return 0;
	mig_blob_id(b, out);
	return 1;
}

/* ---- building ---- */

size_t
mig_source_max_file(const mig_source *s)
{
	return s->h->max_file_size ? s->h->max_file_size : MIG_DEFAULT_MAX_FILE;
}

size_t
mig_source_max_total(const mig_source *s)
{
	return s->h->max_archive_size ? s->h->max_archive_size : MIG_DEFAULT_MAX_ARCHIVE;
}

const char *
mig_source_noun(const mig_source *s)
{
	return s->noun;
}

size_t
mig_source_bytes(const mig_source *s)
{
	return s->total;
}

int
mig_source_copy(const mig_source *s, const mig_host *into, mig_source **out)
{
	mig_source *c;
	mig_err		ignored;

	*out = NULL;
	if (mig_source_new(into, s->noun, &c, &ignored) != MIG_OK)
		return MIG_NOMEM;
	memcpy(c->kind, s->kind, sizeof(c->kind));
	memcpy(c->sha, s->sha, sizeof(c->sha));
	memcpy(c->label, s->label, sizeof(c->label));
	memcpy(c->logged, s->logged, sizeof(c->logged));
	c->files = s->files;
	c->total = s->total;
	c->sealed = s->sealed;
	if (mig_vec_reserve(&c->blobs, s->blobs.n) != MIG_OK)
	{
		mig_source_free(c);
		return MIG_NOMEM;
	}
	for (size_t i = 0; i < s->blobs.n; i++)
	{
		const mig_blob *b = mig_vec_at(&s->blobs, mig_blob, i);
		mig_blob   *n = mig_vec_push(&c->blobs);

		*n = *b;
		if ((n->path = mig_arena_strdup(&c->arena, b->path)) == NULL ||
			(!b->dir && (n->data = mig_arena_strndup(&c->arena, b->data, b->len)) == NULL))
		{
			mig_source_free(c);
			return MIG_NOMEM;
		}
	}
	*out = c;
	return MIG_OK;
}

int
mig_source_new(const mig_host *h, const char *noun, mig_source **out, mig_err *err)
{
	mig_source *s = h->alloc(h->ctx, sizeof(mig_source));

	*out = NULL;
	if (s == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	memset(s, 0, sizeof(*s));
	s->h = h;
	s->noun = noun;
	mig_arena_init(&s->arena, h);
	mig_vec_init(&s->blobs, h, sizeof(mig_blob));
	*out = s;
	return MIG_OK;
}

void
mig_source_free(mig_source *s)
{
	if (s == NULL)
		return;
	mig_vec_free(&s->blobs);
	mig_arena_free(&s->arena);
	s->h->release(s->h->ctx, s);
}

/* The name as it can be shown in a message: bytes that are not printable
 * UTF-8 as \xNN, cut to fit out[size]. */
static void
shown(const char *name, size_t len, char *out, size_t size)
{
	size_t		o = 0;

	for (size_t i = 0, k; i < len && o + 8 < size; i += k)
	{
		k = mig_utf8_char((const unsigned char *) name + i, len - i);
		if (k == 0 || (k == 1 && ((unsigned char) name[i] < 0x20 || name[i] == 0x7f)))
		{
			o += (size_t) snprintf(out + o, size - o, "\\x%02x", (unsigned char) name[i]);
			k = 1;
		}
		else
		{
			memcpy(out + o, name + i, k);
			o += k;
		}
	}
	out[o] = '\0';
}

/* Fails for entry name of s with sqlstate and message fmt (one %s: the
 * name as shown, one %s: the noun). */
static int
refuse(const mig_source *s, const char *name, size_t len, const char *sqlstate,
	   const char *fmt, mig_err *err)
{
	char		buf[MAX_NAME * 4 + 8];

	shown(name, len, buf, sizeof(buf));
	mig_err_set(err, sqlstate, fmt, buf, s->noun);
	return MIG_ERROR;
}

/*
 * Checks the path name[0..*len) of an entry and drops a leading "./" (and
 * a trailing "/" of a folder); *skip is set for the folder itself ("." or
 * "./"), which is no entry.
 */
static int
check_name(const mig_source *s, const char **name, size_t *len, int dir, int *skip,
		   mig_err *err)
{
	const char *p = *name;
	size_t		n = *len;

	*skip = 0;
	while (n >= 2 && p[0] == '.' && p[1] == '/')
	{
		p += 2;
		n -= 2;
		while (n > 0 && p[0] == '/')
			p++, n--;
	}
	if (dir && n > 0 && p[n - 1] == '/')
		n--;
	if (n == 0 || (n == 1 && p[0] == '.'))
	{
		if (dir)
		{
			*skip = 1;
			return MIG_OK;
		}
		return refuse(s, *name, *len, MIG_SQLSTATE_BAD_NAME, "%s of the %s is no file name", err);
	}
	if (memchr(p, '\0', n) != NULL)
		return refuse(s, *name, *len, MIG_SQLSTATE_BAD_NAME,
					  "entry name \"%s\" of the %s holds a NUL byte", err);
	for (size_t i = 0, k; i < n; i += k)
		if ((k = mig_utf8_char((const unsigned char *) p + i, n - i)) == 0)
		{
			refuse(s, *name, *len, MIG_SQLSTATE_BAD_BYTES,
				   "entry name \"%s\" of the %s is not valid UTF-8", err);
			mig_err_detail(err, "Byte %zu of the name is not part of a UTF-8 character.", i + 1);
			mig_err_hint(err, "Rename the file: migration file names must be UTF-8.");
			return MIG_ERROR;
		}
		else if (k == 1 && ((unsigned char) p[i] < 0x20 || p[i] == 0x7f))
			return refuse(s, *name, *len, MIG_SQLSTATE_BAD_NAME,
						  "entry name \"%s\" of the %s holds a control character", err);
	if (p[0] == '/')
	{
		refuse(s, *name, *len, MIG_SQLSTATE_UNSAFE_FILE,
			   "entry \"%s\" of the %s has an absolute path", err);
		mig_err_detail(err, "Entry names must be paths relative to the migration folder; nothing outside it is read.");
		return MIG_ERROR;
	}
	for (size_t i = 0; i < n;)
	{
		size_t		e = i;

		while (e < n && p[e] != '/')
			e++;
		if (e - i == 2 && p[i] == '.' && p[i + 1] == '.')
		{
			refuse(s, *name, *len, MIG_SQLSTATE_UNSAFE_FILE,
				   "entry \"%s\" of the %s leads out of the folder (\"..\")", err);
			mig_err_detail(err, "Entry names must be paths relative to the migration folder; nothing outside it is read.");
			return MIG_ERROR;
		}
		if (e == i || (e - i == 1 && p[i] == '.'))
			return refuse(s, *name, *len, MIG_SQLSTATE_BAD_NAME,
						  "entry name \"%s\" of the %s has an empty or \".\" part", err);
		i = e + 1;
	}
	if (n > MAX_NAME)
	{
		refuse(s, *name, *len, MIG_SQLSTATE_TOO_BIG, "entry name \"%s\" of the %s is too long", err);
		mig_err_detail(err, "It has %zu bytes; the limit is %d.", n, MAX_NAME);
		return MIG_ERROR;
	}
	*name = p;
	*len = n;
	return MIG_OK;
}

int
mig_source_put(mig_source *s, const char *name, size_t name_len, const char *data,
			   size_t len, int dir, mig_err *err)
{
	mig_blob   *b;
	int			skip;

	if (check_name(s, &name, &name_len, dir, &skip, err) != MIG_OK)
		return MIG_ERROR;
	if (skip)
		return MIG_OK;
	if (s->blobs.n >= MIG_MAX_ENTRIES)
	{
		mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "the %s has more than %d entries", s->noun,
					MIG_MAX_ENTRIES);
		return MIG_ERROR;
	}
	if (!dir && len > mig_source_max_file(s))
	{
		refuse(s, name, name_len, MIG_SQLSTATE_TOO_BIG, "file \"%s\" of the %s is too large", err);
		mig_err_detail(err, "It has %zu bytes; the limit is %zu bytes.", len, mig_source_max_file(s));
		return MIG_ERROR;
	}
	if (!dir && len > mig_source_max_total(s) - s->total)
	{
		mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "the files of the %s are too large", s->noun);
		mig_err_detail(err, "They hold more than %zu bytes, the limit of all the files of one %s together.",
					   mig_source_max_total(s), s->noun);
		return MIG_ERROR;
	}
	if ((b = mig_vec_push(&s->blobs)) == NULL ||
		(b->path = mig_arena_strndup(&s->arena, name, name_len)) == NULL ||
		(!dir && (b->data = mig_arena_strndup(&s->arena, data ? data : "", len)) == NULL))
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	b->len = dir ? 0 : len;
	b->dir = dir;
	if (!dir)
	{
		s->files++;
		s->total += len;
	}
	return MIG_OK;
}

int
mig_source_add(mig_source *s, const char *name, size_t name_len, const char *data,
			   size_t len, mig_err *err)
{
	return mig_source_put(s, name, name_len, data, len, 0, err);
}

void
mig_source_describe(mig_source *s, const char *kind, const char *sha_hex)
{
	snprintf(s->kind, sizeof(s->kind), "%s", kind ? kind : "");
	snprintf(s->sha, sizeof(s->sha), "%s", sha_hex ? sha_hex : "");
}

int
mig_source_seal(mig_source *s, mig_err *err)
{
	size_t		kept = 0;

	if (s->blobs.n > 1)
		qsort(s->blobs.items, s->blobs.n, sizeof(mig_blob), blob_cmp);
	for (size_t i = 0; i < s->blobs.n; i++)
	{
		mig_blob   *b = mig_vec_at(&s->blobs, mig_blob, i);
		mig_blob   *prev = kept ? mig_vec_at(&s->blobs, mig_blob, kept - 1) : NULL;

		if (prev && strcmp(prev->path, b->path) == 0)
		{
			if (prev->dir && b->dir)
				continue;		/* a folder listed twice: the same folder */
			refuse(s, b->path, strlen(b->path), MIG_SQLSTATE_DUPLICATE,
				   prev->dir != b->dir ? "entry \"%s\" of the %s is both a file and a folder" :
				   "entry \"%s\" appears more than once in the %s", err);
			mig_err_detail(err, "A folder holds one file of each name.");
			return MIG_ERROR;
		}
		*mig_vec_at(&s->blobs, mig_blob, kept++) = *b;
	}
	s->blobs.n = kept;
	s->sealed = 1;
	for (size_t i = 0; i < s->blobs.n; i++)
	{
		const mig_blob *b = mig_vec_at(&s->blobs, mig_blob, i);

		/* a file that has entries below it: a file and a folder */
		if (!b->dir && i + 1 < s->blobs.n &&
			strncmp(mig_vec_at(&s->blobs, mig_blob, i + 1)->path, b->path, strlen(b->path)) == 0 &&
			mig_vec_at(&s->blobs, mig_blob, i + 1)->path[strlen(b->path)] == '/')
		{
			refuse(s, b->path, strlen(b->path), MIG_SQLSTATE_DUPLICATE,
				   "entry \"%s\" of the %s is both a file and a folder", err);
			mig_err_detail(err, "A folder holds one file of each name.");
			return MIG_ERROR;
		}
	}
	if (s->files == 0)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "the %s holds no files", s->noun);
		mig_err_hint(err, "Send the migration folder's contents, as tar czf - -C db/migrations . writes them.");
		return MIG_ERROR;
	}
	if (s->sha[0] == '\0')
	{
		/* entry by entry (JSON): a digest of the files, names and bytes */
		mig_sha256	sha;

		mig_sha256_init(&sha);
		for (size_t i = 0; i < s->blobs.n; i++)
		{
			const mig_blob *b = mig_vec_at(&s->blobs, mig_blob, i);
			char		n[32];

			if (b->dir)
				continue;
			snprintf(n, sizeof(n), "%zu", b->len);
			mig_sha256_update(&sha, b->path, strlen(b->path) + 1);
			mig_sha256_update(&sha, n, strlen(n) + 1);
			mig_sha256_update(&sha, b->data, b->len);
		}
		mig_sha256_hex(&sha, s->sha);
	}
	if (s->kind[0])
	{
		snprintf(s->label, sizeof(s->label), "%s (%s, %zu file%s)", s->noun, s->kind,
				 s->files, s->files == 1 ? "" : "s");
		snprintf(s->logged, sizeof(s->logged), "%s sha256:%s (%s, %zu file%s)", s->noun,
				 s->sha, s->kind, s->files, s->files == 1 ? "" : "s");
	}
	else
	{
		snprintf(s->label, sizeof(s->label), "%s (%zu file%s)", s->noun, s->files,
				 s->files == 1 ? "" : "s");
		snprintf(s->logged, sizeof(s->logged), "%s sha256:%s (%zu file%s)", s->noun, s->sha,
				 s->files, s->files == 1 ? "" : "s");
	}
	return MIG_OK;
}

const char *
mig_source_label(const mig_source *s)
{
	return s->label;
}

const char *
mig_source_logged(const mig_source *s)
{
	return s->logged;
}
