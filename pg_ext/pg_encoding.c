/*
 * pg_encoding.c -- text helpers: the engine's UTF-8 and the server
 * encoding.
 *
 * The core works in UTF-8; every string handed to the server is converted
 * to the database's encoding, and every string read back for the core from
 * it (see the comment below).  A character the encoding lacks is found, not
 * raised: a script or a name with one gets a 22P05 error naming its file,
 * version and line (mig_pg_name_fits, mig_pg_record_fits), and a report
 * shows it as \uXXXX (mig_pg_report_text).
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "pg_host.h"

/* ---- text helpers: the engine's UTF-8 and the server encoding ---- */

/*
 * The core works in UTF-8 throughout: file names, versions, the files' SQL,
 * its messages.  The server keeps text in the database's encoding.  Every
 * string handed to the server (a result column, a notice, an error, a
 * script to run, a history row) is converted from UTF-8 to it, and every
 * string read back for the core (history rows, another tool's history, the
 * arguments) from it to UTF-8:
 *
 *   UTF8       nothing to convert;
 *   SQL_ASCII  nothing either: PostgreSQL gives such bytes no meaning and
 *              converts nothing, so the files' UTF-8 is stored and run as it
 *              is, and reads right with client_encoding UTF8 (see
 *              "Encodings" in pg_ext/README.md);
 *   others     the default conversion between UTF8 and the database's
 *              encoding, looked up once per backend (a database's encoding
 *              never changes) and called with noError, so that a character
 *              the encoding lacks is found rather than raised: a script or
 *              a name with one gets a 22P05 error naming its file, version
 *              and line, and a report (a notice, an error) shows it as
 *              \uXXXX rather than failing itself.
 */
static bool enc_ready = false;
static bool enc_convert = false;	/* the database is neither UTF8 nor
									 * SQL_ASCII */
static FmgrInfo enc_to_server;	/* UTF8 to the database's encoding */
static FmgrInfo enc_from_server;	/* and back */

/* Looks the conversions up, once per backend (needs a transaction: called
 * by mig_pg_begin and the argument readers, never from an error path). */
void
mig_pg_encoding_init(void)
{
	int			db = GetDatabaseEncoding();
	Oid			to,
				from;

	if (enc_ready)
		return;
	if (db != PG_UTF8 && db != PG_SQL_ASCII)
	{
		to = FindDefaultConversionProc(PG_UTF8, db);
		from = FindDefaultConversionProc(db, PG_UTF8);
		if (!OidIsValid(to) || !OidIsValid(from))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("default conversion function for encoding \"%s\" to \"%s\" does not exist",
							OidIsValid(to) ? GetDatabaseEncodingName() : "UTF8",
							OidIsValid(to) ? "UTF8" : GetDatabaseEncodingName())));
		fmgr_info_cxt(to, &enc_to_server, TopMemoryContext);
		fmgr_info_cxt(from, &enc_from_server, TopMemoryContext);
		enc_convert = true;
	}
	enc_ready = true;
}

/* Whether s[0..len) has a byte outside ASCII, the only ones that may need
 * converting (every server encoding is a superset of ASCII). */
static bool
has_non_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (IS_HIGHBIT_SET(s[i]))
			return true;
	return false;
}

/*
 * Converts src[0..len) with fn, from encoding from to encoding to, up to the
 * first character it cannot convert; returns the result, NUL-terminated, in
 * the current memory context, its length in *out_len, and in *done how many
 * bytes of src were converted (len when all).  Raises only when out of
 * memory, so it may run in an error context callback.
 */
static char *
convert_upto(FmgrInfo *fn, int from, int to, const char *src, size_t len,
			 size_t *out_len, size_t *done)
{
	char	   *dst;

	if (len >= (size_t) (PG_INT32_MAX / MAX_CONVERSION_GROWTH))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("out of memory"),
				 errdetail("String of %zu bytes is too long for encoding conversion.", len)));
	dst = MemoryContextAllocHuge(CurrentMemoryContext,
								 len * MAX_CONVERSION_GROWTH + 1);
	*done = (size_t) DatumGetInt32(FunctionCall6(fn, Int32GetDatum(from),
												 Int32GetDatum(to),
												 CStringGetDatum(src),
												 CStringGetDatum(dst),
												 Int32GetDatum((int32) len),
												 BoolGetDatum(true)));
	*out_len = strlen(dst);
	if (len > 1000000)			/* give back what a big text did not use */
		dst = repalloc_huge(dst, *out_len + 1);
	return dst;
}

/*
 * Returns UTF-8 s[0..len) in the server encoding, NUL-terminated, in the
 * current memory context (a copy even when nothing changes), and its length
 * in *out_len; or NULL when a character has no equivalent there (or is not
 * UTF-8), with its byte offset in *bad.
 */
char *
mig_pg_to_server(const char *s, size_t len, size_t *out_len, size_t *bad)
{
	char	   *conv;
	size_t		done;

	mig_pg_encoding_init();
	if (!enc_convert || !has_non_ascii(s, len))
	{
		*out_len = len;
		return pnstrdup(s, len);
	}
	conv = convert_upto(&enc_to_server, PG_UTF8, GetDatabaseEncoding(), s,
						len, out_len, &done);
	if (done < len)
	{
		pfree(conv);
		*bad = done;
		return NULL;
	}
	return conv;
}

/* Whether UTF-8 s[0..len) has an equivalent in the server encoding; when
 * not, *bad is the offset of the first character that has none. */
static bool
fits(const char *s, size_t len, size_t *bad)
{
	char	   *conv;

	mig_pg_encoding_init();
	if (!enc_convert || !has_non_ascii(s, len))
		return true;
	conv = mig_pg_to_server(s, len, &len, bad);
	if (conv == NULL)
		return false;
	pfree(conv);
	return true;
}

/*
 * Writes the bytes of the character at s[0..len) into buf as PostgreSQL's
 * errors show them ("0xe2 0x82 0xac") and returns its length, or 0 when s
 * does not start with a valid UTF-8 character (then buf shows its first
 * byte).
 */
static int
char_bytes(const char *s, size_t len, char *buf, size_t size)
{
	int			k = pg_encoding_verifymbchar(PG_UTF8, s, (int) Min(len, 8));
	size_t		o = 0;

	buf[0] = '\0';
	for (int i = 0; i < Max(k, 1) && o + 6 <= size; i++)
		o += snprintf(buf + o, size - o, "%s0x%02x", i ? " " : "",
					  (unsigned char) s[i]);
	return Max(k, 0);
}

/*
 * Fills err for the character at script sql[bad] that the server encoding
 * lacks: PostgreSQL's own message (22P05), err->offset at it, so that the
 * core names the file, version and line.
 */
void
mig_pg_untranslatable(const char *sql, size_t len, size_t bad, mig_err *err)
{
	char		bytes[48];

	if (char_bytes(sql + bad, len - bad, bytes, sizeof(bytes)) == 0)
		mig_err_set(err, MIG_SQLSTATE_BAD_BYTES,
					"invalid byte sequence for encoding \"UTF8\": %s", bytes);
	else
	{
		mig_err_set(err, "22P05",
					"character with byte sequence %s in encoding \"UTF8\" has no equivalent in encoding \"%s\"",
					bytes, GetDatabaseEncodingName());
		mig_err_detail(err, "Migration files are UTF-8; their statements run in the database's encoding, %s, which has no such character.",
					   GetDatabaseEncodingName());
		mig_err_hint(err, "Change the migration, or migrate a database whose encoding has the character, such as UTF8.");
	}
	err->offset = (long) bad;
}

/* MIG_OK when file and version (either may be NULL) can be stored in the
 * server encoding; else 22P05 in err naming the one that cannot. */
int
mig_pg_name_fits(const char *version, const char *file, mig_err *err)
{
	const char *names[2] = {file, version};

	for (int i = 0; i < 2; i++)
	{
		size_t		len,
					bad;
		char		bytes[48];

		if (names[i] == NULL)
			continue;
		len = strlen(names[i]);
		if (fits(names[i], len, &bad))
			continue;
		char_bytes(names[i] + bad, len - bad, bytes, sizeof(bytes));
		mig_err_set(err, "22P05",
					"%s \"%s\" has a character with no equivalent in encoding \"%s\"",
					i == 0 ? "file name" : "version", names[i],
					GetDatabaseEncodingName());
		mig_err_detail(err, "Its character with byte sequence %s in encoding \"UTF8\" cannot be stored in migrate_history, which keeps the name of every migration applied.",
					   bytes);
		mig_err_hint(err, "Rename the file, or migrate a database whose encoding has the character, such as UTF8.");
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* MIG_OK when the history row of rec can be stored in the server encoding:
 * its version, file names and scripts; else 22P05 in err naming the file,
 * the version and the line of the script. */
int
mig_pg_record_fits(const mig_record *rec, mig_err *err)
{
	const char *files[2] = {rec->up_file,
	rec->down_file ? rec->down_file : rec->up_file};
	const char *sql[2] = {rec->up_sql, rec->down_sql};
	size_t		lens[2] = {rec->up_len, rec->down_len};
	size_t		bad;

	for (int i = 0; i < 2; i++)
	{
		if (files[i] != NULL && mig_pg_name_fits(i == 0 ? rec->version : NULL,
												 files[i], err) != MIG_OK)
		{
			snprintf(err->context, sizeof(err->context), "migration %s (%s)",
					 rec->version, files[i]);
			return MIG_ERROR;
		}
	}
	for (int i = 0; i < 2; i++)
	{
		if (sql[i] == NULL || fits(sql[i], lens[i], &bad))
			continue;
		mig_pg_untranslatable(sql[i], lens[i], bad, err);
		mig_err_detail(err, "The character is on line %d of its %s script.",
					   mig_line_at(sql[i], lens[i], bad), i == 0 ? "up" : "down");
		err->offset = -1;
		snprintf(err->context, sizeof(err->context), "migration %s (%s)",
				 rec->version, files[i] ? files[i] : "?");
		return MIG_ERROR;
	}
	return MIG_OK;
}

/*
 * UTF-8 s for a report (a notice, an error's message, detail, hint or
 * context, a row of migrate_validate) in the server encoding, never failing
 * but when out of memory: a character the encoding lacks becomes \uXXXX
 * (\UXXXXXXXX beyond the Basic Multilingual Plane), a byte that is not
 * UTF-8 '?'.  Returns s itself when nothing changes, else a string in the
 * current memory context.  Looks nothing up once a call has begun, so it
 * may run in an error context callback.
 */
char *
mig_pg_report_text(const char *s)
{
	size_t		len = strlen(s),
				i = 0;
	StringInfoData buf;

	if (!has_non_ascii(s, len))
		return (char *) s;
	mig_pg_encoding_init();
	initStringInfo(&buf);
	while (i < len)
	{
		size_t		j = i;
		int			k;

		/* a run of valid UTF-8, converted as far as it goes each time */
		while (j < len && (k = pg_encoding_verifymbchar(PG_UTF8, s + j,
														(int) Min(len - j, 8))) > 0)
			j += k;
		while (i < j)
		{
			size_t		done = j - i,
						n;

			if (enc_convert && has_non_ascii(s + i, j - i))
			{
				char	   *conv = convert_upto(&enc_to_server, PG_UTF8,
												GetDatabaseEncoding(), s + i,
												j - i, &n, &done);

				appendBinaryStringInfo(&buf, conv, (int) n);
				pfree(conv);
			}
			else
				appendBinaryStringInfo(&buf, s + i, (int) (j - i));
			i += done;
			if (i < j)
			{
				pg_wchar	c = utf8_to_unicode((const unsigned char *) s + i);

				appendStringInfo(&buf, c > 0xFFFF ? "\\U%08x" : "\\u%04x", c);
				i += pg_utf_mblen((const unsigned char *) s + i);
			}
		}
		if (i < len)
		{
			appendStringInfoChar(&buf, '?');	/* not UTF-8 */
			i++;
		}
	}
	return buf.data;
}

/*
 * Server-encoded s (NUL-terminated) in UTF-8: s itself when nothing
 * changes, else a string in the current memory context.  A character with
 * no equivalent in UTF-8 (no server encoding has one in its default
 * conversion, but a hand-made one might) raises PostgreSQL's own error,
 * or, when lossy, becomes '?'.
 */
char *
mig_pg_from_server(const char *s, bool lossy)
{
	size_t		len = strlen(s),
				i = 0;
	int			db = GetDatabaseEncoding();
	StringInfoData buf;

	mig_pg_encoding_init();
	if (!enc_convert || !has_non_ascii(s, len))
		return (char *) s;
	initStringInfo(&buf);
	while (i < len)
	{
		size_t		n,
					done;
		char	   *conv = convert_upto(&enc_from_server, db, PG_UTF8, s + i,
										len - i, &n, &done);

		appendBinaryStringInfo(&buf, conv, (int) n);
		pfree(conv);
		i += done;
		if (i < len)
		{
			int			k = pg_encoding_verifymbchar(db, s + i, (int) (len - i));

			if (!lossy && k <= 0)
				report_invalid_encoding(db, s + i, (int) (len - i));
			if (!lossy)
				report_untranslatable_char(db, PG_UTF8, s + i, (int) (len - i));
			appendStringInfoChar(&buf, '?');
			i += Max(k, 1);
		}
	}
	return buf.data;
}

/* Server-encoded s in UTF-8 for the core (s itself, or a string in the
 * current memory context); PostgreSQL's own error when it cannot be. */
char *
mig_pg_utf8(const char *s)
{
	return mig_pg_from_server(s, false);
}

/* UTF-8 s[0..len) as a text Datum in the server encoding, in the current
 * memory context; raises PostgreSQL's own 22P05 error when a character has
 * no equivalent there (callers check names and scripts first). */
Datum
mig_pg_text_datum(const char *s, size_t len)
{
	size_t		n,
				bad;
	char	   *conv;

	mig_pg_encoding_init();
	if (!enc_convert || !has_non_ascii(s, len))
		return PointerGetDatum(cstring_to_text_with_len(s, (int) len));
	conv = mig_pg_to_server(s, len, &n, &bad);
	if (conv == NULL)
		report_untranslatable_char(PG_UTF8, GetDatabaseEncoding(), s + bad,
								   (int) (len - bad));
	return PointerGetDatum(cstring_to_text_with_len(conv, (int) n));
}
