/*
 * mig_archive.c -- a migration folder sent as an archive: a tar, a
 * gzip-compressed tar or a zip (a Java jar is one), read from memory with
 * libarchive into a source (mig_source.c) that the core then reads like a
 * folder.
 *
 *   tar czf - -C db/migrations .      the whole client side
 *
 * Only regular files and folders are taken: a symbolic or hard link, a
 * device, a FIFO or a socket is refused, naming it, and nothing is ever
 * extracted or looked up on disk.  Limits are enforced while the data is
 * decompressed, so that a compression bomb stops at the limit: each file
 * within the host's max_file_size, all of them within its max_archive_size,
 * at most MIG_MAX_ENTRIES entries.  Corrupt or truncated data is 22P03 with
 * libarchive's own reason.  A zip's META-INF/ (a jar's manifest) and
 * __MACOSX/ (what macOS's Finder adds) are not part of the folder.
 *
 * libarchive converts entry names to and from the current locale; a
 * database server may run in "C", where a UTF-8 name cannot be converted
 * and is lost.  So the names are read with the thread's LC_CTYPE set to
 * C.UTF-8 for the time of the call (uselocale, which changes nothing for
 * other threads), and taken as the bytes the archive holds: a name that
 * is not UTF-8 is refused, never reinterpreted.
 */
#include <archive.h>
#include <archive_entry.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "mig_int.h"

#define READ_CHUNK	(64 * 1024)

/* Whether name belongs to a zip's packaging, not to the folder. */
static int
zip_packaging(const char *name)
{
	return strncmp(name, "META-INF/", 9) == 0 || strncmp(name, "__MACOSX/", 9) == 0 ||
		strcmp(name, "META-INF") == 0 || strcmp(name, "__MACOSX") == 0;
}

/* Fails with what libarchive said about a, while reading entry name (or
 * before any entry when name is NULL). */
static int
unreadable(struct archive *a, const mig_source *s, const char *name, mig_err *err)
{
	const char *why = archive_error_string(a);

	mig_err_set(err, "22P03", "could not read the %s: %s", mig_source_noun(s),
				why ? why : "unknown error");
	if (name)
		mig_err_detail(err, "It stopped in entry \"%s\".", name);
	mig_err_hint(err, "Send a tar, gzip-compressed tar or zip archive of the migration folder, such as tar czf - -C db/migrations . writes.");
	return MIG_ERROR;
}

/* Refuses entry name, which is no regular file or folder. */
static int
not_regular(const mig_source *s, const char *name, const char *what, mig_err *err)
{
	while (name[0] == '.' && name[1] == '/')
		name += 2;				/* as tar writes it: "./a" is "a" */
	mig_err_set(err, MIG_SQLSTATE_UNSAFE_FILE, "entry \"%s\" of the %s is %s", name,
				mig_source_noun(s), what);
	mig_err_detail(err, "Migration files must be regular files; links are never followed and nothing outside the archive is read.");
	return MIG_ERROR;
}

/*
 * Reads the data of the current entry (name, of declared size, or -1 when
 * the archive does not say) into *buf (grown as needed, host memory),
 * stopping as soon as it passes the limits: the per-file one, and left,
 * what the total allows.  *got receives its length.
 */
static int
read_data(struct archive *a, const mig_host *h, const mig_source *s, const char *name,
		  int64_t size, size_t left, char **buf, size_t *cap, size_t *got, mig_err *err)
{
	size_t		max_file = mig_source_max_file(s),
				n = 0;

	if (size > 0 && (uint64_t) size > max_file)
	{
		mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "file \"%s\" of the %s is too large", name,
					mig_source_noun(s));
		mig_err_detail(err, "It has %lld bytes; the limit is %zu bytes.", (long long) size, max_file);
		return MIG_ERROR;
	}
	for (;;)
	{
		la_ssize_t	r;

		if (*cap - n < READ_CHUNK + 1)
		{
			size_t		want = *cap ? *cap * 2 : READ_CHUNK * 2;
			char	   *more;

			/* room for the whole file at once when its size is known, but
			 * never more than the limits allow it to hold */
			if (size > 0 && (uint64_t) size + READ_CHUNK + 1 > want)
				want = ((uint64_t) size < left ? (size_t) size : left) + READ_CHUNK + 1;
			if (want < n + READ_CHUNK + 1)
				want = n + READ_CHUNK + 1;
			if ((more = h->alloc(h->ctx, want)) == NULL)
			{
				mig_err_nomem(err);
				return MIG_NOMEM;
			}
			if (*buf)
			{
				memcpy(more, *buf, n);
				h->release(h->ctx, *buf);
			}
			*buf = more;
			*cap = want;
		}
		r = archive_read_data(a, *buf + n, READ_CHUNK);
		if (r < 0)
			return unreadable(a, s, name, err);
		if (r == 0)
			break;
		n += (size_t) r;
		if (n > max_file)
		{
			mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "file \"%s\" of the %s is too large", name,
						mig_source_noun(s));
			mig_err_detail(err, "It has more than %zu bytes, the limit.", max_file);
			return MIG_ERROR;
		}
		if (n > left)
		{
			mig_err_set(err, MIG_SQLSTATE_TOO_BIG, "the files of the %s are too large",
						mig_source_noun(s));
			mig_err_detail(err, "They hold more than %zu bytes, the limit of all the files of one %s together; it stopped in \"%s\".",
						   mig_source_max_total(s), mig_source_noun(s), name);
			return MIG_ERROR;
		}
	}
	*got = n;
	return MIG_OK;
}

/* The kind of archive a read: "tar", "tar.gz" or "zip". */
static const char *
kind_of_archive(struct archive *a)
{
	int			gz = 0;

	for (int i = 0; i < archive_filter_count(a); i++)
		gz |= archive_filter_code(a, i) == ARCHIVE_FILTER_GZIP;
	if ((archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_ZIP)
		return "zip";
	return gz ? "tar.gz" : "tar";
}

/* Reads every entry of a into s. */
static int
read_entries(struct archive *a, const mig_host *h, mig_source *s, mig_err *err)
{
	struct archive_entry *e;
	char	   *buf = NULL;
	size_t		cap = 0,
				total = 0;
	int			rc = MIG_OK;

	while (rc == MIG_OK)
	{
		int			r = archive_read_next_header(a, &e);
		const char *name;
		unsigned	type;
		size_t		got = 0;

		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
		{
			rc = unreadable(a, s, NULL, err);
			break;
		}
		/* the bytes the archive holds; the UTF-8 form only when the
		 * archive said its names are UTF-8 and gave no other */
		if ((name = archive_entry_pathname(e)) == NULL &&
			(name = archive_entry_pathname_utf8(e)) == NULL)
		{
			mig_err_set(err, MIG_SQLSTATE_BAD_BYTES, "an entry name of the %s is not valid UTF-8",
						mig_source_noun(s));
			mig_err_hint(err, "Rename the file: migration file names must be UTF-8.");
			rc = MIG_ERROR;
			break;
		}
		if ((archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_ZIP &&
			zip_packaging(name))
			continue;
		type = archive_entry_filetype(e);
		if (archive_entry_hardlink(e) != NULL)
			rc = not_regular(s, name, "a hard link", err);
		else if (type == AE_IFLNK || archive_entry_symlink(e) != NULL)
			rc = not_regular(s, name, "a symbolic link", err);
		else if (type == AE_IFDIR)
			rc = mig_source_put(s, name, strlen(name), NULL, 0, 1, err);
		else if (type != AE_IFREG)
			rc = not_regular(s, name, type == AE_IFIFO ? "a FIFO" : type == AE_IFSOCK ? "a socket" :
							 type == AE_IFCHR || type == AE_IFBLK ? "a device" : "not a regular file",
							 err);
		else if ((rc = read_data(a, h, s, name, archive_entry_size_is_set(e) ? archive_entry_size(e) : -1,
								 mig_source_max_total(s) - total, &buf, &cap, &got, err)) == MIG_OK)
		{
			rc = mig_source_put(s, name, strlen(name), buf ? buf : "", got, 0, err);
			total += got;
		}
	}
	if (buf)
		h->release(h->ctx, buf);
	return rc;
}

/* mig_source_archive, with the SHA-256 of data already known (hex). */
static int
read_archive(const mig_host *h, const void *data, size_t len, const char *hex,
			 mig_source **out, mig_err *err)
{
	mig_source *s = NULL;
	struct archive *a = NULL;
	locale_t	utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
	locale_t	old = utf8 != (locale_t) 0 ? uselocale(utf8) : (locale_t) 0;
	int			rc;

	*out = NULL;
	mig_err_clear(err);
	rc = mig_source_new(h, "archive", &s, err);
	if (rc == MIG_OK && len == 0)
	{
		mig_err_set(err, MIG_SQLSTATE_BAD_ARG, "the archive is empty");
		mig_err_hint(err, "Send the migration folder's contents, as tar czf - -C db/migrations . writes them.");
		rc = MIG_ERROR;
	}
	if (rc == MIG_OK && (a = archive_read_new()) == NULL)
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	if (rc == MIG_OK &&
		(archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
		 archive_read_support_format_tar(a) != ARCHIVE_OK ||
		 archive_read_support_format_zip(a) != ARCHIVE_OK ||
		 archive_read_open_memory(a, data, len) != ARCHIVE_OK))
		rc = unreadable(a, s, NULL, err);
	if (rc == MIG_OK)
		rc = read_entries(a, h, s, err);
	if (rc == MIG_OK)
	{
		mig_source_describe(s, kind_of_archive(a), hex);
		rc = mig_source_seal(s, err);
	}
	if (a)
		archive_read_free(a);
	if (utf8 != (locale_t) 0)
	{
		uselocale(old);
		freelocale(utf8);
	}
	if (rc != MIG_OK)
	{
		mig_source_free(s);
		return rc;
	}
	*out = s;
	return MIG_OK;
}

/* The SHA-256 of data[0..len) as hex into out[65]. */
static void
sha_hex(const void *data, size_t len, char *out)
{
	mig_sha256	sha;

	mig_sha256_init(&sha);
	mig_sha256_update(&sha, data, len);
	mig_sha256_hex(&sha, out);
}

int
mig_source_archive(const mig_host *h, const void *data, size_t len, mig_source **out,
				   mig_err *err)
{
	char		hex[65];

	sha_hex(data, len, hex);
	return read_archive(h, data, len, hex, out, err);
}

/* ---- the last archive of a connection, kept ---- */

/*
 * A deployment sends the same archive again and again (a no-op, at each
 * start of the application): reading it once per connection is enough.
 * The cache keeps the source of the last archive read, in memory of its
 * own allocator (which must outlive calls), when its files fit
 * MIG_KEEP_BUDGET; an archive of the same bytes (by their SHA-256) read
 * under the same limits is that source again.
 */
struct mig_source_cache {
	mig_host	host;			/* the cache's allocator, the limits of the
								 * source kept */
	void	   *(*alloc) (size_t);
	void		(*release) (void *);
	mig_source *kept;
	char		sha[65];
};

static void *
cache_alloc(void *ctx, size_t n)
{
	return ((mig_source_cache *) ctx)->alloc(n);
}

static void
cache_release(void *ctx, void *p)
{
	((mig_source_cache *) ctx)->release(p);
}

mig_source_cache *
mig_source_cache_create(void *(*alloc) (size_t), void (*release) (void *))
{
	mig_source_cache *c = alloc(sizeof(*c));

	if (c == NULL)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->alloc = alloc;
	c->release = release;
	c->host.ctx = c;
	c->host.alloc = cache_alloc;
	c->host.release = cache_release;
	return c;
}

void
mig_source_cache_destroy(mig_source_cache *c)
{
	if (c == NULL)
		return;
	mig_source_free(c->kept);
	c->release(c);
}

int
mig_source_archive_cached(const mig_host *h, mig_source_cache *c, const void *data,
						  size_t len, mig_source **out, int *owned, mig_err *err)
{
	char		hex[65];
	int			rc;

	*out = NULL;
	*owned = 1;
	sha_hex(data, len, hex);
	if (c == NULL)
		return read_archive(h, data, len, hex, out, err);
	if (c->kept && strcmp(c->sha, hex) == 0 &&
		c->host.max_file_size == h->max_file_size &&
		c->host.max_archive_size == h->max_archive_size)
	{
		*out = c->kept;
		*owned = 0;
		return MIG_OK;
	}
	/* read with the caller's memory (an error then frees nothing of the
	 * cache's), and a copy kept when small enough */
	if ((rc = read_archive(h, data, len, hex, out, err)) != MIG_OK)
		return rc;
	mig_source_free(c->kept);
	c->kept = NULL;
	c->host.max_file_size = h->max_file_size;
	c->host.max_archive_size = h->max_archive_size;
	if (mig_source_bytes(*out) <= MIG_KEEP_BUDGET &&
		mig_source_copy(*out, &c->host, &c->kept) == MIG_OK)
		strcpy(c->sha, hex);
	return MIG_OK;
}
