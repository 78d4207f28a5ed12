/*
 * mig_cache.c -- knowing that a file is unchanged without reading it.
 *
 * A file's identity is its device, inode, size, modification time and
 * change time.  Any write to a file sets its change time to the kernel's
 * current (coarse) clock, which no user can set back, so a file whose
 * identity is the one recorded when it was read has not been written
 * since -- provided the recorded change time was already older than the
 * read by more than the clock's granularity.  Files changed just before
 * they were read ("racily clean", as git calls it) get no identity.
 *
 * Two users: the history keeps the identity of each applied file (so a
 * first call on a new connection needs one lstat per file), and a
 * per-connection cache keeps checksums of files read since (so later
 * calls do too).
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mig_int.h"

#define RACY_NS		(200LL * 1000 * 1000)	/* 200 ms: far above any tick */
#define MAX_ENTRIES	(1u << 20)

static int64_t
ns(struct timespec t)
{
	return (int64_t) t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Writes v in decimal at p; returns the end. */
static char *
put_u64(char *p, uint64_t v)
{
	char		digits[20];
	int			n = 0;

	do
		digits[n++] = (char) ('0' + v % 10);
	while ((v /= 10) != 0);
	while (n > 0)
		*p++ = digits[--n];
	return p;
}

static char *
put_i64(char *p, int64_t v)
{
	if (v >= 0)
		return put_u64(p, (uint64_t) v);
	*p++ = '-';
	return put_u64(p, 0 - (uint64_t) v);
}

/* "dev:ino:size:mtime:ctime", at most 104 characters.  By hand: a no-op
 * formats one per applied file, and snprintf was 3% of its time. */
static void
format_id(char *out, uint64_t dev, uint64_t ino, int64_t size, int64_t mtime,
		  int64_t ctime)
{
	char	   *p = out;

	p = put_u64(p, dev);
	*p++ = ':';
	p = put_u64(p, ino);
	*p++ = ':';
	p = put_i64(p, size);
	*p++ = ':';
	p = put_i64(p, mtime);
	*p++ = ':';
	p = put_i64(p, ctime);
	*p = '\0';
}

int
mig_file_id_of(const mig_text *t, char *out)
{
	out[0] = '\0';
	if (t->blob)
	{
		mig_blob_id(t->blob, out);	/* its content: never racy */
		return 1;
	}
	if (t->ctime_ns >= t->read_ns - RACY_NS)
		return 0;
	format_id(out, t->dev, t->ino, (int64_t) t->len, t->mtime_ns, t->ctime_ns);
	return 1;
}

int64_t
mig_wall_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return ns(now);
}

/* lstat of dir/file, relative to dirfd when it is not -1; 0 unless it is
 * a regular file the host would read. */
static int
look(const mig_host *h, int dirfd, const char *dir, const char *file,
	 struct stat *st)
{
	char		path[MIG_PATH_MAX];
	int			looked;

	/* relative to the open folder the kernel looks up one name, not every
	 * component of the path again */
	if (dirfd >= 0)
		looked = fstatat(dirfd, file, st, AT_SYMLINK_NOFOLLOW) == 0;
	else
		looked = mig_join(path, dir, file) &&
			fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW) == 0;
	return looked && S_ISREG(st->st_mode) &&
		!(h->refuse_writable && (st->st_mode & (S_IWGRP | S_IWOTH)));
}

int
mig_file_id_now(const mig_host *h, int dirfd, const char *dir, const char *file,
				char *out)
{
	return mig_file_id_settled(h, dirfd, dir, file, INT64_MAX, out);
}

int
mig_file_id_settled(const mig_host *h, int dirfd, const char *dir, const char *file,
					int64_t now_ns, char *out)
{
	struct stat st;

	out[0] = '\0';
	if (MIG_IN_MEMORY(h))
		return mig_source_id(h->source, dir, file, out);
	if (!look(h, dirfd, dir, file, &st) || ns(st.st_ctim) >= now_ns - RACY_NS)
		return 0;
	format_id(out, (uint64_t) st.st_dev, (uint64_t) st.st_ino, (int64_t) st.st_size,
			  ns(st.st_mtim), ns(st.st_ctim));
	return 1;
}

uint64_t
mig_fnv1a(uint64_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char) p[i]) * 1099511628211ULL;
	return h;
}

/* ---- the per-connection cache ---- */

typedef struct slot {
	uint64_t	key;			/* FNV-1a of the path; 0 = empty */
	char		id[MIG_FILE_ID_MAX];
	char		checksum[16];
	char		norm[16];
} slot;

struct mig_cache {
	void	   *(*alloc) (size_t);
	void		(*release) (void *);
	slot	   *slots;
	size_t		cap;			/* a power of two, or 0 */
	size_t		n;
};

mig_cache *
mig_cache_create(void *(*alloc) (size_t), void (*release) (void *))
{
	mig_cache  *c = alloc(sizeof(*c));

	if (c == NULL)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->alloc = alloc;
	c->release = release;
	return c;
}

void
mig_cache_destroy(mig_cache *c)
{
	if (c == NULL)
		return;
	if (c->slots)
		c->release(c->slots);
	c->release(c);
}

static uint64_t
path_key(const char *dir, const char *file)
{
	uint64_t	h = mig_fnv1a(MIG_FNV_BASIS, dir, strlen(dir));

	h = mig_fnv1a(h, "/", 1);
	h = mig_fnv1a(h, file, strlen(file));
	return h ? h : 1;
}

static slot *
find(mig_cache *c, uint64_t key)
{
	size_t		i;

	if (c->cap == 0)
		return NULL;
	for (i = key & (c->cap - 1);; i = (i + 1) & (c->cap - 1))
		if (c->slots[i].key == key || c->slots[i].key == 0)
			return &c->slots[i];
}

/* Doubles the table (or empties it at MAX_ENTRIES); 0 when out of memory,
 * which only means nothing more is cached. */
static int
grow(mig_cache *c)
{
	size_t		cap = c->cap ? c->cap * 2 : 1024;
	slot	   *old = c->slots,
			   *fresh;
	size_t		oldcap = c->cap;

	if (c->n >= MAX_ENTRIES)
	{
		memset(c->slots, 0, c->cap * sizeof(slot));
		c->n = 0;
		return 1;
	}
	if ((fresh = c->alloc(cap * sizeof(slot))) == NULL)
		return 0;
	memset(fresh, 0, cap * sizeof(slot));
	c->slots = fresh;
	c->cap = cap;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].key)
			*find(c, old[i].key) = old[i];
	if (old)
		c->release(old);
	return 1;
}

int
mig_cache_get(mig_cache *c, const char *dir, const char *file, const char *id,
			  char checksum[16], char norm[16])
{
	slot	   *s;

	if (c == NULL || c->n == 0 || id[0] == '\0')
		return 0;
	s = find(c, path_key(dir, file));
	if (s == NULL || s->key == 0 || strcmp(s->id, id) != 0)
		return 0;
	memcpy(checksum, s->checksum, 16);
	memcpy(norm, s->norm, 16);
	return 1;
}

void
mig_cache_put(mig_cache *c, const char *dir, const char *file, const mig_text *t)
{
	char		id[MIG_FILE_ID_MAX];
	uint64_t	key;
	slot	   *s;

	if (c == NULL || !mig_file_id_of(t, id))
		return;
	if ((c->n + 1) * 2 > c->cap && !grow(c))
		return;
	key = path_key(dir, file);
	s = find(c, key);
	if (s->key == 0)
		c->n++;
	s->key = key;
	memcpy(s->id, id, sizeof(id));
	memcpy(s->checksum, t->checksum, 16);
	memcpy(s->norm, t->norm, 16);
}
