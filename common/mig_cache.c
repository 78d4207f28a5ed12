/*
 * mig_cache.c -- checksums of files already read, kept across calls, so a
 * no-op migrate_apply checks each applied file with one lstat instead of
 * open, fstat, read and close.
 *
 * An entry is trusted only while the file's identity is unchanged: device,
 * inode, size, modification time and change time.  Any write to a file
 * sets its change time to the kernel's current (coarse) clock, which no
 * user can set back, so an edit after the file was read always misses --
 * provided the change time recorded was already older than the read by
 * more than the clock's granularity.  Files changed just before they were
 * read ("racily clean", as git calls it) are therefore not cached.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mig_int.h"

#define RACY_NS		(200LL * 1000 * 1000)	/* 200 ms: far above any tick */
#define MAX_ENTRIES	(1u << 20)

typedef struct slot {
	uint64_t	key;			/* FNV-1a of the path; 0 = empty */
	uint64_t	dev,
				ino;
	int64_t		size,
				mtime_ns,
				ctime_ns;
	char		checksum[16];
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
	uint64_t	h = 1469598103934665603ULL;

	for (const char *p = dir; *p; p++)
		h = (h ^ (unsigned char) *p) * 1099511628211ULL;
	h = (h ^ '/') * 1099511628211ULL;
	for (const char *p = file; *p; p++)
		h = (h ^ (unsigned char) *p) * 1099511628211ULL;
	return h ? h : 1;
}

static int64_t
ns(struct timespec t)
{
	return (int64_t) t.tv_sec * 1000000000LL + t.tv_nsec;
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
mig_cache_get(mig_cache *c, const mig_host *h, const char *dir,
			  const char *file, char checksum[16])
{
	char		path[4096];
	struct stat st;
	slot	   *s;

	if (c == NULL || c->n == 0)
		return 0;
	if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path) ||
		fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		!S_ISREG(st.st_mode) ||
		(h->refuse_writable && (st.st_mode & (S_IWGRP | S_IWOTH))))
		return 0;
	s = find(c, path_key(dir, file));
	if (s == NULL || s->key == 0 || s->dev != (uint64_t) st.st_dev ||
		s->ino != (uint64_t) st.st_ino || s->size != (int64_t) st.st_size ||
		s->mtime_ns != ns(st.st_mtim) || s->ctime_ns != ns(st.st_ctim))
		return 0;
	memcpy(checksum, s->checksum, 16);
	return 1;
}

void
mig_cache_put(mig_cache *c, const char *dir, const char *file, const mig_text *t)
{
	uint64_t	key;
	slot	   *s;

	if (c == NULL || t->ctime_ns >= t->read_ns - RACY_NS)
		return;
	if ((c->n + 1) * 2 > c->cap && !grow(c))
		return;
	key = path_key(dir, file);
	s = find(c, key);
	if (s->key == 0)
		c->n++;
	s->key = key;
	s->dev = t->dev;
	s->ino = t->ino;
	s->size = (int64_t) t->len;
	s->mtime_ns = t->mtime_ns;
	s->ctime_ns = t->ctime_ns;
	memcpy(s->checksum, t->checksum, 16);
}
