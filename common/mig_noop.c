/*
 * mig_noop.c -- the no-op shortcut.
 *
 * Most calls find nothing to do.  With thousands of migrations, a first
 * call on a PostgreSQL connection spent a quarter of its time reading the
 * history back and holding it against the folder, to learn just that.  So when a
 * call finds every migration applied and unchanged, or has just applied
 * every one that was not, the host stores a digest of the folder: each migration's version, file names and up file
 * identity (device, inode, size, mtime, ctime: mig_cache.c).  A later call
 * whose folder has the same digest, the history unchanged since (the host
 * sees to that: mig_host.verified_get), would reach the same answer, and
 * skips the history.
 *
 * Identities are taken before the history is compared, so a file written
 * after that has another identity and another digest.  A file changed in
 * the last moments (racily clean) gives the folder no digest; so does a
 * folder that discovery refuses, which the full path then reports.
 */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "mig_int.h"

typedef struct digest_state {
	uLong		crc;			/* zlib's CRC-32 */
	uint64_t	fnv;			/* and FNV-1a: 96 bits between them */
	uint64_t	bytes;
} digest_state;

static void
feed(digest_state *d, const char *s)
{
	size_t		n = strlen(s) + 1;	/* with the NUL, so fields cannot run
									 * into each other */

	d->crc = crc32(d->crc, (const Bytef *) s, (uInt) n);
	d->fnv = mig_fnv1a(d->fnv, s, n);
	d->bytes += n;
}

/* Feeds each migration's names: version, files, layout. */
static void
feed_names(digest_state *d, const mig_file *f)
{
	char		layout[2] = {(char) ('0' + f->layout), '\0'};

	feed(d, f->version);
	feed(d, f->up);
	feed(d, f->down ? f->down : "");
	feed(d, layout);
}

/* The names alone, to tell whether the plan saw the same files. */
static uint64_t
names_of(const mig_vec *files)
{
	digest_state d = {0, MIG_FNV_BASIS, 0};

	for (size_t i = 0; i < files->n; i++)
		feed_names(&d, mig_vec_at(files, mig_file, i));
	return d.fnv;
}

/* The folder's digest into n->digest ("" when it has none), and whether it
 * is the one stored. */
static void
folder_digest(const mig_host *h, const char *dir, const char *stored, mig_noop *n)
{
	mig_arena	a;
	mig_vec		files;
	mig_err		ignored;
	digest_state d = {crc32(0L, Z_NULL, 0), MIG_FNV_BASIS, 0};
	char		id[MIG_FILE_ID_MAX];
	int64_t		now = mig_wall_ns();
	int			dirfd = -1,
				ok;

	n->digest[0] = '\0';
	mig_arena_init(&a, h);
	mig_vec_init(&files, h, sizeof(mig_file));
	mig_err_clear(&ignored);
	ok = mig_discover(h, &a, dir, &files, NULL, NULL, &ignored) == MIG_OK;
	if (ok && files.n > 0 && h->open_dir && !MIG_IN_MEMORY(h) &&
		(dirfd = h->open_dir(h->ctx, dir, &ignored)) < 0)
		mig_err_clear(&ignored);	/* then by whole paths */
	feed(&d, "migrate folder digest 1");
	/* in memory: the content alone (an identity is a file's SHA-256), so
	 * that a tar, a zip or a JSON object of the same files is the same */
	feed(&d, MIG_IN_MEMORY(h) ? "in memory" : dir);
	for (size_t i = 0; ok && i < files.n; i++)
	{
		const mig_file *f = mig_vec_at(&files, mig_file, i);

		ok = mig_file_id_settled(h, dirfd, dir, f->up, now, id);
		feed_names(&d, f);
		feed(&d, id);
	}
	if (dirfd >= 0)
		h->close_file(h->ctx, dirfd);
	if (ok)
	{
		snprintf(n->digest, sizeof(n->digest), "1:%zu:%llu:%08lx:%016llx",
				 files.n, (unsigned long long) d.bytes, (unsigned long) d.crc,
				 (unsigned long long) d.fnv);
		n->known = strcmp(stored, n->digest) == 0;
		if (!n->known)			/* for mig_noop_remember */
			n->names = names_of(&files);
	}
	mig_vec_free(&files);
	mig_arena_free(&a);
}

int
mig_noop_check(const mig_host *h, const char *dir, mig_noop *n, mig_err *err)
{
	char		stored[MIG_DIGEST_MAX] = "";
	int			rc;

	memset(n, 0, sizeof(*n));
	if (h->verified_get == NULL || h->verified_put == NULL)
		return MIG_OK;
	if ((rc = h->verified_get(h->ctx, stored, err)) != MIG_OK)
		return rc;
	folder_digest(h, dir, stored, n);
	return MIG_OK;
}

int
mig_noop_remember(const mig_host *h, const mig_plan *p, const mig_noop *n,
				  mig_err *err)
{
	/* Only a folder that is, name for name, the one whose identities were
	 * taken: files may come and go while the call runs. */
	if (n->digest[0] == '\0' || n->known ||
		p->count[MIG_APPLIED] != p->entries.n || names_of(&p->files) != n->names)
		return MIG_OK;
	return h->verified_put(h->ctx, n->digest, err);
}

int
mig_noop_remember_applied(const mig_host *h, const mig_plan *p, const mig_noop *n,
						  size_t applied_now, mig_err *err)
{
	/* as mig_noop_remember, the migrations applied now counting as applied:
	 * the plan saw them pending (or outdated) and each ran and was recorded
	 * in this call; file identities were taken before any was read, so a
	 * file written since has another digest */
	if (n->digest[0] == '\0' || n->known || applied_now == 0 ||
		p->count[MIG_APPLIED] + applied_now != p->entries.n ||
		names_of(&p->files) != n->names)
		return MIG_OK;
	return h->verified_put(h->ctx, n->digest, err);
}
