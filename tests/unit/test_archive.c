/*
 * test_archive.c -- unit tests of the folder as data: SHA-256, archives
 * (every refusal, an archive applied the same as its folder, the last
 * archive kept, the allocation-failure sweep) and entries added one by one.
 */
#define _GNU_SOURCE
#include "test_core.h"

/* ---- the folder as data (mig_sha256.c, mig_source.c, mig_archive.c) ---- */

static void
sha_of(const char *data, size_t len, size_t step, char out[65])
{
	mig_sha256	s;

	mig_sha256_init(&s);
	for (size_t i = 0; i < len; i += step)
		mig_sha256_update(&s, data + i, len - i < step ? len - i : step);
	mig_sha256_hex(&s, out);
}

/* FIPS 180-4's examples (and NIST's one million "a"), fed whole and in
 * pieces that straddle the 64-byte blocks. */
void
test_sha256(void)
{
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	char	   *million = malloc(1000000);
	char		hex[65];

	memset(million, 'a', 1000000);
	sha_of("", 0, 1, hex);
	CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0,
		  "sha256 of nothing: %s", hex);
	sha_of("abc", 3, 3, hex);
	CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
		  "sha256 of abc: %s", hex);
	sha_of(two, strlen(two), 7, hex);
	CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0,
		  "sha256 of the 448-bit example, 7 bytes at a time: %s", hex);
	sha_of(million, 1000000, 1000, hex);
	CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
		  "sha256 of a million a: %s", hex);
	free(million);
}

/* One entry of an archive a test writes. */
typedef struct aentry {
	const char *name;
	unsigned	type;			/* AE_IFREG, AE_IFDIR, AE_IFLNK... */
	const char *data;			/* file text, or a link's target */
	int			hard;			/* a hard link to data */
} aentry;

/* Writes entries into an archive (format: "tar", "tar.gz", "zip", "ustar")
 * in malloc'd *out; returns its length. */
static size_t
make_archive(const char *format, const aentry *ents, int n, char **out)
{
	size_t		cap = 64 * 1024 * 1024,
				used = 0;
	struct archive *a = archive_write_new();
	char	   *buf = malloc(cap);

	if (strcmp(format, "zip") == 0)
		archive_write_set_format_zip(a);
	else if (strcmp(format, "ustar") == 0)
		archive_write_set_format_ustar(a);
	else
		archive_write_set_format_pax_restricted(a);
	if (strcmp(format, "tar.gz") == 0)
		archive_write_add_filter_gzip(a);
	archive_write_open_memory(a, buf, cap, &used);
	for (int i = 0; i < n; i++)
	{
		struct archive_entry *e = archive_entry_new();

		archive_entry_set_pathname(e, ents[i].name);
		archive_entry_set_filetype(e, ents[i].type ? ents[i].type : AE_IFREG);
		archive_entry_set_perm(e, 0644);
		if (ents[i].hard)
			archive_entry_set_hardlink(e, ents[i].data);
		else if (ents[i].type == AE_IFLNK)
			archive_entry_set_symlink(e, ents[i].data);
		else if (ents[i].type == 0 || ents[i].type == AE_IFREG)
			archive_entry_set_size(e, (la_int64_t) strlen(ents[i].data));
		archive_write_header(a, e);
		if (!ents[i].hard && (ents[i].type == 0 || ents[i].type == AE_IFREG))
			archive_write_data(a, ents[i].data, strlen(ents[i].data));
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	*out = buf;
	return used;
}

/* mig_source_archive of entries written as format: MIG_OK or the error
 * (err filled), the source freed again. */
static int
read_archive(mig_host *h, const char *format, const aentry *ents, int n, mig_err *e)
{
	char	   *buf;
	size_t		len = make_archive(format, ents, n, &buf);
	mig_source *s = NULL;
	int			rc = mig_source_archive(h, buf, len, &s, e);

	mig_source_free(s);
	free(buf);
	return rc;
}

#define REFUSES(h, fmt, ents, state, msg) do { \
	mig_err e_; \
	int rc_ = read_archive(h, fmt, ents, (int) (sizeof(ents) / sizeof(ents[0])), &e_); \
	CHECK(rc_ == MIG_ERROR && strcmp(e_.sqlstate, state) == 0 && strcmp(e_.message, msg) == 0, \
		  "%s: %s %s", msg, e_.sqlstate, e_.message); \
} while (0)

/* Every bad archive refused, with its SQLSTATE and message, and nothing
 * left allocated. */
void
test_archive_refusals(void)
{
	mig_host	h;
	fake		f;
	aentry		symlink[] = {{"1_a.up.sql", 0, "x", 0}, {"2_b.up.sql", AE_IFLNK, "/etc/passwd", 0}},
				hard[] = {{"1_a.up.sql", 0, "x", 0}, {"2_b.up.sql", AE_IFREG, "1_a.up.sql", 1}},
				fifo[] = {{"2_b.up.sql", AE_IFIFO, "", 0}},
				dev[] = {{"2_b.up.sql", AE_IFCHR, "", 0}},
				dotdot[] = {{"../1_a.up.sql", 0, "x", 0}},
				inner[] = {{"postgres/../../1_a.up.sql", 0, "x", 0}},
				abs[] = {{"/1_a.up.sql", 0, "x", 0}},
				dup[] = {{"1_a.up.sql", 0, "x", 0}, {"./1_a.up.sql", 0, "y", 0}},
				both[] = {{"a", 0, "x", 0}, {"a/1_a.up.sql", 0, "y", 0}},
				latin1[] = {{"1_caf\xe9.up.sql", 0, "x", 0}},
				control[] = {{"1_a\t.up.sql", 0, "x", 0}},
				dirs[] = {{"./", AE_IFDIR, "", 0}, {"./postgres/", AE_IFDIR, "", 0}},
				big[] = {{"1_a.up.sql", 0, "0123456789A", 0}},
				many[] = {{"1_a.up.sql", 0, "0123456789", 0}, {"2_b.up.sql", 0, "0123456789", 0},
		{"3_c.up.sql", 0, "0123456789", 0}};
	mig_err		e;
	mig_source *s = NULL;
	char	   *buf;
	size_t		len;
	int			rc;

	host_init(&h, &f);
	REFUSES(&h, "tar.gz", symlink, "42501", "entry \"2_b.up.sql\" of the archive is a symbolic link");
	REFUSES(&h, "tar", hard, "42501", "entry \"2_b.up.sql\" of the archive is a hard link");
	REFUSES(&h, "tar", fifo, "42501", "entry \"2_b.up.sql\" of the archive is a FIFO");
	REFUSES(&h, "tar", dev, "42501", "entry \"2_b.up.sql\" of the archive is a device");
	REFUSES(&h, "tar", dotdot, "42501", "entry \"../1_a.up.sql\" of the archive leads out of the folder (\"..\")");
	REFUSES(&h, "zip", inner, "42501", "entry \"postgres/../../1_a.up.sql\" of the archive leads out of the folder (\"..\")");
	REFUSES(&h, "tar", abs, "42501", "entry \"/1_a.up.sql\" of the archive has an absolute path");
	REFUSES(&h, "tar", dup, "42710", "entry \"1_a.up.sql\" appears more than once in the archive");
	REFUSES(&h, "zip", dup, "42710", "entry \"1_a.up.sql\" appears more than once in the archive");
	REFUSES(&h, "tar", both, "42710", "entry \"a\" of the archive is both a file and a folder");
	REFUSES(&h, "ustar", latin1, "22021", "entry name \"1_caf\\xe9.up.sql\" of the archive is not valid UTF-8");
	REFUSES(&h, "tar", control, "42602", "entry name \"1_a\\x09.up.sql\" of the archive holds a control character");
	REFUSES(&h, "tar.gz", dirs, "22023", "the archive holds no files");
	h.max_file_size = 10;
	REFUSES(&h, "tar.gz", big, "54000", "file \"1_a.up.sql\" of the archive is too large");
	REFUSES(&h, "zip", big, "54000", "file \"1_a.up.sql\" of the archive is too large");
	h.max_file_size = 0;
	h.max_archive_size = 25;
	REFUSES(&h, "tar.gz", many, "54000", "the files of the archive are too large");
	h.max_archive_size = 0;
	CHECK(f.live == 0, "nothing left allocated after the refusals (%zu bytes)", f.live);

	rc = mig_source_archive(&h, "", 0, &s, &e);
	CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "22023") == 0 &&
		  strcmp(e.message, "the archive is empty") == 0, "no bytes: %s", e.message);
	rc = mig_source_archive(&h, "-- not an archive\nCREATE TABLE a(x);\n", 37, &s, &e);
	CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "22P03") == 0 &&
		  strcmp(e.message, "could not read the archive: Unrecognized archive format") == 0,
		  "SQL text is no archive: %s", e.message);
	len = make_archive("tar.gz", many, 3, &buf);
	rc = mig_source_archive(&h, buf, len / 2, &s, &e);
	CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "22P03") == 0 &&
		  strncmp(e.message, "could not read the archive: ", 28) == 0,
		  "a tar.gz cut in half: %s", e.message);
	buf[len / 2] ^= 0x55;
	rc = mig_source_archive(&h, buf, len, &s, &e);
	CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "22P03") == 0,
		  "a tar.gz with a byte changed: %s", e.message);
	free(buf);

	/* a bomb: 32 MiB of spaces in a few kB, stopped at the limit */
	{
		char	   *zeros = calloc(1, 32 * 1024 * 1024 + 1);
		aentry		bomb[] = {{"1_a.up.sql", 0, zeros, 0}};

		memset(zeros, ' ', 32 * 1024 * 1024);
		len = make_archive("tar.gz", bomb, 1, &buf);
		h.max_archive_size = 1024 * 1024;
		f.peak = f.live;
		rc = mig_source_archive(&h, buf, len, &s, &e);
		CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "54000") == 0 && len < 200 * 1024 &&
			  f.peak < 4 * 1024 * 1024,
			  "a %zu-byte archive of 32 MiB stops at the 1 MiB limit (peak %zu bytes): %s",
			  len, f.peak, e.message);
		h.max_archive_size = 0;
		free(buf);
		free(zeros);
	}
	/* more entries than MIG_MAX_ENTRIES */
	{
		aentry	   *lots = calloc(MIG_MAX_ENTRIES + 1, sizeof(aentry));
		char	   *names = malloc((size_t) (MIG_MAX_ENTRIES + 1) * 16);

		for (int i = 0; i <= MIG_MAX_ENTRIES; i++)
		{
			snprintf(names + (size_t) i * 16, 16, "d%d", i);
			lots[i].name = names + (size_t) i * 16;
			lots[i].type = AE_IFDIR;
		}
		len = make_archive("tar.gz", lots, MIG_MAX_ENTRIES + 1, &buf);
		rc = mig_source_archive(&h, buf, len, &s, &e);
		CHECK(rc == MIG_ERROR && strcmp(e.sqlstate, "54000") == 0 &&
			  strcmp(e.message, "the archive has more than 100000 entries") == 0,
			  "%d entries: %s", MIG_MAX_ENTRIES + 1, e.message);
		free(buf);
		free(lots);
		free(names);
	}
	CHECK(f.live == 0, "nothing left allocated (%zu bytes)", f.live);
	host_done(&f);
}

/* The files a folder and its archive share. */
static const aentry same[] = {
	{"./", AE_IFDIR, "", 0},
	{"./README.md", 0, "# not a migration\n", 0},
	{"./1_a.up.sql", 0, "CREATE TABLE a(x);\r\n", 0},
	{"./1_a.down.sql", 0, "DROP TABLE a;\n", 0},
	{"./2_b.up.sql", 0, "\xef\xbb\xbf" "CREATE TABLE b(x);\n", 0},
	{"./10_c.up.sql", 0, "CREATE TABLE c(x); -- caf\xc3\xa9\n", 0},
};

/* A folder applied from disk and as an archive: the same history, and a
 * database switches between them without anything to do. */
void
test_archive_as_folder(void)
{
	mig_host	hd,
				ha;
	fake		fd,
				fa;
	mig_source *s = NULL;
	char	   *buf;
	size_t		len = make_archive("tar.gz", same, 6, &buf);
	int64_t		n = -1;
	int			rc,
				equal = 1,
				loads;

	fresh();
	for (int i = 1; i < 6; i++)
		put(same[i].name + 2, same[i].data, strlen(same[i].data));
	host_init(&hd, &fd);
	host_init(&ha, &fa);
	rc = mig_source_archive(&ha, buf, len, &s, &err);
	CHECK(rc == MIG_OK && strcmp(mig_source_label(s), "archive (tar.gz, 5 files)") == 0,
		  "a tar.gz read: %s", rc == MIG_OK ? mig_source_label(s) : err.message);
	ha.source = s;
	rc = mig_apply(&hd, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 3, "the folder applies 3");
	rc = mig_apply(&ha, "ignored: the source is the folder", &n, &err);
	CHECK(rc == MIG_OK && n == 3 && strcmp(fa.log, fd.log) == 0,
		  "the archive applies the same 3, the same way: %s", fa.log);
	for (int i = 0; i < 3 && fa.n == 3 && fd.n == 3; i++)
		equal &= strcmp(fa.rows[i].version, fd.rows[i].version) == 0 &&
			strcmp(fa.rows[i].file, fd.rows[i].file) == 0 &&
			strcmp(fa.rows[i].checksum, fd.rows[i].checksum) == 0 &&
			strcmp(fa.rows[i].norm, fd.rows[i].norm) == 0 &&
			strcmp(fa.rows[i].down ? fa.rows[i].down : "", fd.rows[i].down ? fd.rows[i].down : "") == 0;
	CHECK(fa.n == 3 && fd.n == 3 && equal, "with the same history: versions, files, checksums, downs");
	CHECK(fa.n == 3 && strncmp(fa.rows[0].file_id, "mem:crc32:", 10) == 0,
		  "an archive's file is known by its content: %s", fa.n ? fa.rows[0].file_id : "");

	/* switching sources: the database applied from disk, now the archive */
	hd.source = s;
	fd.log[0] = '\0';
	rc = mig_apply(&hd, NULL, &n, &err);
	CHECK(rc == MIG_OK && n == 0 && fd.log[0] == '\0', "the archive on the folder's database: nothing to do");
	hd.source = NULL;
	fa.log[0] = '\0';
	rc = mig_apply(&ha, NULL, &n, &err);
	ha.source = NULL;
	rc |= mig_apply(&ha, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 0 && fa.log[0] == '\0', "and the folder on the archive's: nothing to do");
	ha.source = s;

	/* the no-op shortcut digests the content */
	ha.verified_get = f_verified_get;
	ha.verified_put = f_verified_put;
	rc = mig_apply(&ha, NULL, &n, &err);
	loads = fa.loads;
	rc |= mig_apply(&ha, NULL, &n, &err);
	CHECK(rc == MIG_OK && fa.puts == 1 && fa.loads == loads,
		  "an archive found applied is remembered, at once (no racy window): the next call reads no history");
	mig_source_free(s);
	free(buf);
	{
		aentry		edited[6];

		memcpy(edited, same, sizeof(edited));
		edited[4].data = "CREATE TABLE b(y);\n";
		len = make_archive("zip", edited, 6, &buf);
		rc = mig_source_archive(&ha, buf, len, &s, &err);
		ha.source = s;
		rc |= mig_apply(&ha, NULL, &n, &err);
		CHECK(rc == MIG_ERROR && fa.loads == loads + 1 && strcmp(err.sqlstate, "55000") == 0 &&
			  strcmp(err.message, "applied migration 2 has changed since it was applied") == 0,
			  "an edited file of an applied migration: another digest, refused: %s", err.message);
		mig_source_free(s);
		free(buf);
	}
	ha.source = NULL;
	CHECK(fa.live == 0 && fd.live == 0, "nothing left allocated");
	host_done(&fa);
	host_done(&fd);
}

/* Entries added one by one (a JSON object): the same rules, the same
 * result; and a jar's packaging is not part of its folder. */
void
test_source_entries(void)
{
	mig_host	h;
	fake		f;
	mig_source *s = NULL;
	aentry		jar[] = {{"META-INF/MANIFEST.MF", 0, "Manifest-Version: 1.0\n", 0},
	{"1_a.up.sql", 0, "CREATE TABLE a(x);\n", 0}};
	char	   *buf;
	size_t		len;
	int64_t		n;
	int			rc;

	host_init(&h, &f);
	rc = mig_source_new(&h, "JSON object", &s, &err);
	rc |= mig_source_add(s, "postgres/1_a.up.sql", 19, "CREATE TABLE a(x int);", 22, &err);
	rc |= mig_source_add(s, "sqlite/1_a.up.sql", 17, "CREATE TABLE a(x);", 18, &err);
	rc |= mig_source_seal(s, &err);
	CHECK(rc == MIG_OK && strcmp(mig_source_label(s), "JSON object (2 files)") == 0 &&
		  strncmp(mig_source_logged(s), "JSON object sha256:", 19) == 0,
		  "a JSON object's files: %s", mig_source_logged(s));
	h.source = s;
	h.engine = "sqlite";
	rc = mig_apply(&h, NULL, &n, &err);
	CHECK(rc == MIG_OK && n == 1 && f.n == 1 && strcmp(f.rows[0].file, "sqlite/1_a.up.sql") == 0,
		  "per-engine folders in memory: this engine's read");
	mig_source_free(s);
	rc = mig_source_new(&h, "JSON object", &s, &err);
	rc |= mig_source_add(s, "1_a.up.sql", 10, "x", 1, &err);
	rc |= mig_source_add(s, "1_a.up.sql", 10, "y", 1, &err);
	CHECK(rc == MIG_OK, "duplicates are found when sealed");
	rc = mig_source_seal(s, &err);
	CHECK(rc == MIG_ERROR && strcmp(err.message, "entry \"1_a.up.sql\" appears more than once in the JSON object") == 0,
		  "%s", err.message);
	mig_source_free(s);
	rc = mig_source_new(&h, "JSON object", &s, &err);
	rc = mig_source_add(s, "a\0b.sql", 7, "x", 1, &err);
	CHECK(rc == MIG_ERROR && strcmp(err.sqlstate, "42602") == 0, "a NUL in a name: %s", err.message);
	mig_source_free(s);

	len = make_archive("zip", jar, 2, &buf);
	h.source = NULL;
	host_done(&f);
	host_init(&h, &f);
	rc = mig_source_archive(&h, buf, len, &s, &err);
	h.source = s;
	rc |= mig_apply(&h, NULL, &n, &err);
	CHECK(rc == MIG_OK && n == 1 && strcmp(mig_source_label(s), "archive (zip, 1 file)") == 0,
		  "a jar's META-INF/ is not part of the folder: %s", rc == MIG_OK ? mig_source_label(s) : err.message);
	mig_source_free(s);
	free(buf);
	CHECK(f.live == 0, "nothing left allocated");
	host_done(&f);
}


/* The last archive kept: the same bytes under the same limits are read
 * once; other bytes, other limits, or an archive too large are read. */
void
test_archive_kept(void)
{
	mig_host	h;
	fake		f;
	mig_source_cache *c = mig_source_cache_create(plain_alloc, free);
	mig_source *s1 = NULL,
			   *s2 = NULL;
	char	   *buf,
			   *big;
	size_t		len = make_archive("tar.gz", same, 6, &buf);
	int			own1,
				own2,
				rc;
	int64_t		n;

	host_init(&h, &f);
	rc = mig_source_archive_cached(&h, c, buf, len, &s1, &own1, &err);
	rc |= mig_source_archive_cached(&h, c, buf, len, &s2, &own2, &err);
	CHECK(rc == MIG_OK && own1 && !own2 && s1 != s2 &&
		  strcmp(mig_source_logged(s1), mig_source_logged(s2)) == 0,
		  "the same archive again: the copy kept, no second read");
	h.source = s2;
	rc = mig_apply(&h, NULL, &n, &err);
	CHECK(rc == MIG_OK && n == 3, "the kept copy applies");
	mig_source_free(s1);
	h.max_file_size = 1000;
	rc = mig_source_archive_cached(&h, c, buf, len, &s1, &own1, &err);
	CHECK(rc == MIG_OK && own1, "other limits: read again");
	mig_source_free(s1);
	h.max_file_size = 0;
	{
		char	   *text = malloc(MIG_KEEP_BUDGET + 2);
		aentry		large[] = {{"1_a.up.sql", 0, text, 0}};
		size_t		blen;

		memset(text, ' ', MIG_KEEP_BUDGET + 1);
		text[MIG_KEEP_BUDGET + 1] = '\0';
		blen = make_archive("tar.gz", large, 1, &big);
		rc = mig_source_archive_cached(&h, c, big, blen, &s1, &own1, &err);
		rc |= mig_source_archive_cached(&h, c, big, blen, &s2, &own2, &err);
		CHECK(rc == MIG_OK && own1 && own2, "one larger than the budget is not kept");
		mig_source_free(s1);
		mig_source_free(s2);
		free(text);
		free(big);
	}
	mig_source_cache_destroy(c);
	free(buf);
	h.source = NULL;
	CHECK(f.live == 0, "nothing of the call's memory left");
	host_done(&f);
}

/* Every allocation of reading an archive and applying it failed in turn:
 * a clean error each time, nothing left, history unchanged. */
void
test_archive_oom(void)
{
	mig_host	h;
	fake		f;
	char	   *buf;
	size_t		len = make_archive("tar.gz", same, 6, &buf);
	int			clean = 1,
				k;

	for (k = 1; k < 400; k++)
	{
		mig_source *s = NULL;
		int64_t		n = 0;
		int			rc;

		host_init(&h, &f);
		f.fail_at = k;
		rc = mig_source_archive(&h, buf, len, &s, &err);
		h.source = s;
		if (rc == MIG_OK)
			rc = mig_apply(&h, NULL, &n, &err);
		mig_source_free(s);
		if (rc == MIG_OK && f.allocs < k)
			break;				/* no allocation failed: done */
		clean &= rc == MIG_NOMEM && f.live == 0 && f.n == 0;
		host_done(&f);
	}
	CHECK(clean && k > 5 && k < 400, "%d allocation failures, each a clean out-of-memory error", k - 1);
	host_done(&f);
	free(buf);
}
