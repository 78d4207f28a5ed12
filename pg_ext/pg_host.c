/*
 * pg_host.c -- the mig_host callbacks of the PostgreSQL extension.
 *
 * Everything the core asks of the server goes through here:
 *
 *   memory      palloc_extended(MCXT_ALLOC_NO_OOM) in a private context, so
 *               the core sees NULL on exhaustion and an abort frees it all;
 *   files       OpenTransientFile / AllocateDir, closed by an abort;
 *   lock        pg_advisory_xact_lock (function mode) or pg_advisory_lock
 *               (procedure mode), always before the history is read;
 *   scripts     raw_parser() splits a script into statements (and finds the
 *               ones that cannot run through SPI before anything runs); each
 *               statement then runs with SPI_execute, under the blocking
 *               rail of pg_rails.c (lock_timeout, retries);
 *   notices     ereport(NOTICE);
 *   encodings   the core's UTF-8 to the database's encoding and back (see
 *               "text helpers" below).
 *
 * The history's callbacks (its tables, the off-hours script's parts, the
 * no-op shortcut, another tool's history) are in pg_history.c; statements
 * outside a transaction in pg_outside.c.
 *
 * Errors raised by the server while a script runs (a failing statement, a
 * syntax error, a cancel) propagate as they are, keeping their SQLSTATE; an
 * error context callback adds "migration <version> (<file>), line <n>".
 * Errors found by these callbacks themselves go back to the core in a mig_err.
 */
#include "postgres.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "storage/fd.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/acl.h"
#include "utils/syscache.h"

#include "pg_host.h"

/* ---- memory ---- */

/*
 * migrate.fail_alloc (superuser, hidden): a testing aid in the manner of
 * SQLite's fault injection.  When n > 0, the n-th allocation the core asks
 * for in each call fails, so a test can sweep n and check that every
 * failure ends in a clean "out of memory" error with nothing changed.
 */
static int	fail_alloc = 0;

/*
 * migrate.crash_at (superuser, hidden): a testing aid for crash atomicity
 * (tests/stress/pg_stress.sh).  When n > 0, the backend SIGKILLs itself at
 * the n-th crash point of each call, as a kill -9 from outside would: the
 * postmaster then restarts the cluster through crash recovery.  Crash
 * points are the boundaries of the call's work: before each migration
 * statement run through SPI (up or down scripts), before each history write
 * (add or remove), and in procedure mode before each commit.
 */
static int	crash_at = 0;

/* migrate.max_file_size (superuser): the largest migration file read, in
 * kB; bigger ones are refused with 54000. */
static int	max_file_kb = (int) (MIG_DEFAULT_MAX_FILE / 1024);

static void clear_mark_at_abort(XactEvent event, void *arg);
static void clear_mark_at_subabort(SubXactEvent event, SubTransactionId my,
								   SubTransactionId parent, void *arg);

void
mig_pg_define_settings(void)
{
	DefineCustomIntVariable("migrate.max_file_size",
							"Largest migration file that is read; larger ones are refused.",
							NULL, &max_file_kb, (int) (MIG_DEFAULT_MAX_FILE / 1024),
							1, (int) (MaxAllocSize / 1024 / 2), PGC_SUSET,
							GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("migrate.fail_alloc",
							"Makes the n-th allocation of each call fail (for testing).",
							NULL, &fail_alloc, 0, 0, INT_MAX, PGC_SUSET,
							GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
	DefineCustomIntVariable("migrate.crash_at",
							"Makes the backend kill itself at the n-th crash point of each call (for testing).",
							NULL, &crash_at, 0, 0, INT_MAX, PGC_SUSET,
							GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
	mig_pg_define_rail_settings();
	mig_pg_define_call_settings();
	mig_pg_define_impact_settings();
	MarkGUCPrefixReserved("migrate");
	RegisterXactCallback(clear_mark_at_abort, NULL);
	RegisterSubXactCallback(clear_mark_at_subabort, NULL);
}

/* A crash point (see migrate.crash_at): SIGKILLs this backend at the n-th. */
void
mig_pg_crash_point(MigPg *mp)
{
	if (crash_at <= 0 || ++mp->crash_points != crash_at)
		return;
	ereport(LOG,
			(errmsg("migrate.crash_at: killing the backend at crash point %d",
					crash_at)));
	kill(MyProcPid, SIGKILL);
	pg_usleep(10000000L);		/* SIGKILL to oneself arrives before this */
	elog(ERROR, "migrate.crash_at: the backend survived SIGKILL");
}

/* ---- the extension's own tables, as their owner ---- */

/* Set while mig_pg_as_owner runs fn: the guard trigger lets those writes
 * through.  Only this module's code sets it. */
static bool own_write = false;

bool
mig_pg_own_write(void)
{
	return own_write;
}

int
mig_pg_as_owner(MigPg *mp, int (*fn) (MigPg *mp, void *arg, mig_err *err),
				void *arg, mig_err *err)
{
	return mig_pg_as(mp, mp->owner, true, fn, arg, err);
}

void
mig_pg_owner_enter(MigPg *mp, Oid role, bool own, MigPgSave *save)
{
	GetUserIdAndSecContext(&save->user, &save->sec);
	save->own = own_write;
	SetUserIdAndSecContext(role, save->sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save->nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	own_write = own;
}

void
mig_pg_owner_leave(MigPgSave *save)
{
	own_write = save->own;
	AtEOXact_GUC(true, save->nest);
	SetUserIdAndSecContext(save->user, save->sec);
}

int
mig_pg_as(MigPg *mp, Oid role, bool own, int (*fn) (MigPg *mp, void *arg, mig_err *err),
		  void *arg, mig_err *err)
{
	MigPgSave	save;
	int			rc;

	mig_pg_owner_enter(mp, role, own, &save);
	rc = fn(mp, arg, err);
	mig_pg_owner_leave(&save);
	return rc;
}

/*
 * An error leaves mig_pg_as without mig_pg_owner_leave: the abort of the
 * (sub)transaction puts the user and the settings back, and this clears
 * the guard's mark, so that nothing written after an error passes for the
 * extension's own write.
 */
static void
clear_mark_at_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		own_write = false;
		mig_pg_verified_memo_reset();
	}
}

static void
clear_mark_at_subabort(SubXactEvent event, SubTransactionId my, SubTransactionId parent,
					   void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		own_write = false;
		mig_pg_verified_memo_reset();	/* the digests it deleted are back */
	}
}

/* Returns n bytes from the call's context, or NULL when out of memory. */
static void *
pg_alloc(void *ctx, size_t n)
{
	MigPg	   *mp = (MigPg *) ctx;

	if (fail_alloc > 0 && ++mp->allocs == fail_alloc)
		return NULL;
	return MemoryContextAllocExtended(mp->cxt, n,
									  MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
}

static void
pg_release(void *ctx, void *p)
{
	if (p != NULL)
		pfree(p);
}

/* ---- files ---- */

/*
 * A folder or file that cannot be read for want of permission: the one
 * reading it is the database server's operating-system user, not the
 * client's -- say so, and name it.
 */
static void
server_user_hint(int e, mig_err *err)
{
	struct passwd *pw;

	if (e != EACCES && e != EPERM)
		return;
	pw = getpwuid(geteuid());
	mig_err_hint(err, "The database server reads migration files as its operating-system user \"%s\", not as the client: make the folder and its files readable by it, or send the folder's contents instead.",
				 pw ? pw->pw_name : "?");
}

/* Opens path read-only without following a final symlink or blocking on a
 * FIFO; returns the descriptor, or -1 with err filled.  Also where a cancel
 * reaches a call that reads thousands of files. */
static int
pg_open_file(void *ctx, const char *path, mig_err *err)
{
	int			fd;

	CHECK_FOR_INTERRUPTS();
	fd = OpenTransientFile(path,
						   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
						   PG_BINARY);
	if (fd < 0)
	{
		int			e = errno;

		mig_err_errno(err, e, "open file", path);
		server_user_hint(e, err);
	}
	return fd;
}

/* Opens the folder path (following symlinks) for lstat relative to it. */
static int
pg_open_dir(void *ctx, const char *path, mig_err *err)
{
	int			fd = OpenTransientFile(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | PG_BINARY);

	if (fd < 0)
		mig_err_errno(err, errno, "open folder", path);
	return fd;
}

static void
pg_close_file(void *ctx, int fd)
{
	CloseTransientFile(fd);
}

/* Calls cb for each entry of the folder but "." and ".."; returns MIG_OK,
 * the first non-zero code of cb, or MIG_ERROR with err filled. */
static int
pg_list_dir(void *ctx, const char *path, mig_name_cb cb, void *arg,
			mig_err *err)
{
	DIR		   *dir;
	struct dirent *de;
	int			rc = MIG_OK;

	dir = AllocateDir(path);
	if (dir == NULL)
	{
		int			e = errno;

		mig_err_errno(err, e, "open directory", path);
		server_user_hint(e, err);
		return MIG_ERROR;
	}
	while ((de = ReadDir(dir, path)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = cb(arg, de->d_name);
		if (rc != 0)
			break;
	}
	FreeDir(dir);
	return rc;
}

/* ---- locking and units of work ---- */

static void release_session_lock(MigPg *mp);

/*
 * Takes the migration lock.  Function mode: a transaction-level advisory
 * lock, released by the server when the caller's transaction ends.
 * Procedure mode: a session-level one, then a commit, so that the snapshots
 * of everything that follows (the history first) postdate the lock even
 * under REPEATABLE READ.  Waits as o->wait_ms says (pg_rails.c): by default
 * as long as lock_timeout and statement_timeout allow.  Returns MIG_BUSY
 * with the holder in err when the wait ends without the lock.  Keeps o's
 * rail (lock_timeout, lock_retries) for the scripts that follow.
 */
static int
pg_lock(void *ctx, const mig_lock_opts *o, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	int			rc;

	mig_pg_rail_set(mp, o);
	rc = mig_pg_take_lock(mp, o ? o->wait_ms : -1, err);
	if (rc == MIG_BUSY)
		mp->skipped = true;		/* logged as such if the call skips */
	if (rc != MIG_OK)
		return rc;
	if (mp->procedure)
		mp->session_locked = true;
	if ((rc = mig_pg_tenant_locked(mp, err)) != MIG_OK)
	{
		release_session_lock(mp);
		return rc;
	}
	if (mp->procedure)
	{
		mig_pg_crash_point(mp);
		mig_pg_commit(mp);
	}
	return MIG_OK;
}

static void
release_session_lock(MigPg *mp)
{
	if (!mp->session_locked)
		return;
	mp->session_locked = false;
	mig_pg_lock_release(mp);
}

void
mig_pg_guard_begin(MigPgGuard *g)
{
	g->owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	g->open = true;
	MemoryContextSwitchTo(g->cxt);
}

void
mig_pg_guard_end(MigPgGuard *g, bool commit)
{
	if (!g->open)
		return;
	/* open until it ended: a failing release is rolled back by the caller */
	if (commit)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	g->open = false;
	MemoryContextSwitchTo(g->cxt);
	CurrentResourceOwner = g->owner;
}

void
mig_pg_commit(MigPg *mp)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (mp->guard)
		mig_pg_guard_end(mp->guard, true);
	MemoryContextSwitchTo(cxt);
	SPI_commit();
	mp->call_committed = mp->call_count;
	if (mp->guard)
		mig_pg_guard_begin(mp->guard);
	MemoryContextSwitchTo(cxt);
}

void
mig_pg_rollback(MigPg *mp)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (!mp->guard)
	{
		SPI_rollback();
		return;
	}
	/* nothing but the guard's subtransaction was done since the commit */
	mig_pg_guard_end(mp->guard, false);
	mig_pg_guard_begin(mp->guard);
	MemoryContextSwitchTo(cxt);
}

/*
 * Ends the unit of work.  Function mode: nothing, the caller's transaction
 * decides (an error from the core aborts it).  Procedure mode: ends the
 * worker of migrations outside a transaction, if one ran, commits or rolls
 * back what follows the last checkpoint and releases the lock.
 */
static int
pg_unlock(void *ctx, int commit, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;

	/* the call's row goes with what it did */
	if (commit && mig_pg_call_log(mp, "ok", err) != MIG_OK)
		return MIG_ERROR;
	if (!mp->procedure)
		return MIG_OK;
	mig_pg_outside_end(mp, commit != 0);
	if (commit)
	{
		mig_pg_crash_point(mp);
		mig_pg_commit(mp);
	}
	else
		mig_pg_rollback(mp);
	release_session_lock(mp);
	return MIG_OK;
}

/* Procedure mode: commits the migration just applied and recorded. */
static int
pg_checkpoint(void *ctx, mig_err *err)
{
	mig_pg_crash_point((MigPg *) ctx);
	mig_pg_commit((MigPg *) ctx);
	return MIG_OK;
}

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
static void
encoding_init(void)
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
static char *
to_server(const char *s, size_t len, size_t *out_len, size_t *bad)
{
	char	   *conv;
	size_t		done;

	encoding_init();
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

	encoding_init();
	if (!enc_convert || !has_non_ascii(s, len))
		return true;
	conv = to_server(s, len, &len, bad);
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
static void
untranslatable(const char *sql, size_t len, size_t bad, mig_err *err)
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
		untranslatable(sql[i], lens[i], bad, err);
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
	encoding_init();
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
static char *
from_server(const char *s, bool lossy)
{
	size_t		len = strlen(s),
				i = 0;
	int			db = GetDatabaseEncoding();
	StringInfoData buf;

	encoding_init();
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
	return from_server(s, false);
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

	encoding_init();
	if (!enc_convert || !has_non_ascii(s, len))
		return PointerGetDatum(cstring_to_text_with_len(s, (int) len));
	conv = to_server(s, len, &n, &bad);
	if (conv == NULL)
		report_untranslatable_char(PG_UTF8, GetDatabaseEncoding(), s + bad,
								   (int) (len - bad));
	return PointerGetDatum(cstring_to_text_with_len(conv, (int) n));
}

/* Byte offset of 0-based character position chars in s[0..len). */
static int
char_to_byte(const char *s, int len, int chars)
{
	int			off = 0;

	while (chars-- > 0 && off < len)
		off += pg_mblen(s + off);
	return Min(off, len);
}

/*
 * Maps an offset in mp->text to an offset in the script's own bytes: equal
 * unless the text was converted, then the start of the same line.
 */
long
mig_pg_script_offset(const MigPg *mp, int off)
{
	const mig_script *s = mp->script;
	int			line;
	size_t		i;

	if (!mp->converted)
		return off;
	line = mig_line_at(mp->text, mp->text_len, off);
	for (i = 0; i < s->len && line > 1; i++)
		if (s->sql[i] == '\n')
			line--;
	return (long) i;
}

/* Offset of the first word of the statement at off in mp->text. */
int
mig_pg_statement_start(const MigPg *mp, int off)
{
	size_t		wlen;

	return off + (int) mig_first_word(mp->text + off, mp->text_len - off,
									  1, &wlen);
}

/*
 * The text of raw statement rs, from its first word on (comments before it
 * would only clutter the "SQL statement" context of an error), palloc'd in
 * the current memory context; *off and *end receive where it starts and
 * ends in mp->text.
 */
char *
mig_pg_statement_text(const MigPg *mp, const RawStmt *rs, int *off, int *end)
{
	*end = rs->stmt_len > 0 ? rs->stmt_location + rs->stmt_len : mp->text_len;
	*off = mig_pg_statement_start(mp, rs->stmt_location);
	return pnstrdup(mp->text + *off, Max(*end - *off, 0));
}

/*
 * Error context callback while a script is parsed or run: names the
 * migration, its file and the line, and keeps the error's SQLSTATE.  While
 * the whole script is being parsed, a syntax error's position points into
 * the script (not into the caller's query), so it becomes the line number.
 */
static void
script_error_callback(void *arg)
{
	MigPg	   *mp = (MigPg *) arg;
	const mig_script *s = mp->script;
	const char *what = s->down ? "rollback of " : "";
	int			off = -1;

	if (mp->text == NULL)
		off = -1;				/* failed converting it to the server encoding */
	else if (mp->stmt_off >= 0)
		off = mig_pg_statement_start(mp, mp->stmt_off);
	else
	{
		int			pos = geterrposition();

		if (pos > 0)
		{
			off = char_to_byte(mp->text, mp->text_len, pos - 1);
			errposition(0);
		}
	}
	if (off >= 0)
		errcontext("%smigration %s (%s), line %d", what,
				   mig_pg_report_text(s->version), mig_pg_report_text(s->file),
				   mig_script_line(s, (size_t) mig_pg_script_offset(mp, off)));
	else
		errcontext("%smigration %s (%s)", what, mig_pg_report_text(s->version),
				   mig_pg_report_text(s->file));
	mig_pg_rail_error_context(mp);

	if (!mp->procedure)
	{
		int			code = geterrcode();

		if (code == ERRCODE_OUT_OF_MEMORY)
			errhint("migrate_apply runs all pending migrations in one transaction, which holds a lock on every object they create: "
					"CALL migrate_run(...) commits after each migration, or increase max_locks_per_transaction.");
		else if (code == ERRCODE_UNSAFE_NEW_ENUM_VALUE_USAGE)
			errhint("migrate_apply runs all pending migrations in one transaction: "
					"CALL migrate_run(...) commits after each migration, so a later migration can use the new value.");
	}
}

/*
 * Prepares mp for parsing or running s: copies it into the scratch context
 * in the server encoding and pushes the error context callback (cb is the
 * caller's frame).  script_done pops it and frees the copy.
 */
void
mig_pg_script_begin(MigPg *mp, const mig_script *s, ErrorContextCallback *cb)
{
	char	   *text;
	size_t		len,
				bad;

	MemoryContextSwitchTo(mp->scratch);
	mp->script = s;
	mp->stmt_off = -1;
	mp->text = NULL;
	mp->text_len = 0;
	mp->converted = false;

	/* checked before anything ran (check_script), but for a down script
	 * read back from the history */
	text = to_server(s->sql, s->len, &len, &bad);
	if (text == NULL)
	{
		mig_err		err;

		untranslatable(s->sql, s->len, bad, &err);
		snprintf(err.context, sizeof(err.context), "%smigration %s (%s), line %d",
				 s->down ? "rollback of " : "", s->version, s->file,
				 mig_script_line(s, bad));
		mig_pg_report(&err);
	}

	cb->callback = script_error_callback;
	cb->arg = mp;
	cb->previous = error_context_stack;
	error_context_stack = cb;

	mp->text = text;
	mp->text_len = (int) len;
	mp->converted = len != s->len || memcmp(text, s->sql, s->len) != 0;
}

void
mig_pg_script_done(MigPg *mp, ErrorContextCallback *cb, MemoryContext old)
{
	error_context_stack = cb->previous;
	mp->script = NULL;
	mp->text = NULL;
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
}

/* ---- scripts ---- */

/*
 * Returns the name of a statement that cannot run in a migration run
 * through SPI inside a transaction, or NULL; *top_level says whether it can
 * run outside one (by a background worker, pg_worker.c).  Transaction
 * control never can: each statement outside a transaction is its own
 * transaction, committed with its progress, and a block spanning several
 * would break resuming at the failed one.  Nor can COPY from or to the
 * client, which a worker does not have.
 */
static const char *
refused_statement(Node *stmt, bool *top_level)
{
	ListCell   *lc;

	*top_level = true;
	switch (nodeTag(stmt))
	{
		case T_TransactionStmt:
			*top_level = false;
			return CreateCommandName(stmt);
		case T_CreatedbStmt:
		case T_DropdbStmt:
		case T_CreateTableSpaceStmt:
		case T_DropTableSpaceStmt:
		case T_AlterSystemStmt:
			return CreateCommandName(stmt);
		case T_VacuumStmt:
			if (((VacuumStmt *) stmt)->is_vacuumcmd)
				return "VACUUM";
			break;
		case T_IndexStmt:
			if (((IndexStmt *) stmt)->concurrent)
				return "CREATE INDEX CONCURRENTLY";
			break;
		case T_DropStmt:
			if (((DropStmt *) stmt)->concurrent)
				return "DROP INDEX CONCURRENTLY";
			break;
		case T_ReindexStmt:
			{
				ReindexStmt *r = (ReindexStmt *) stmt;

				if (r->kind != REINDEX_OBJECT_INDEX &&
					r->kind != REINDEX_OBJECT_TABLE)
					return "REINDEX SCHEMA, SYSTEM or DATABASE";
				foreach(lc, r->params)
				{
					DefElem    *opt = lfirst_node(DefElem, lc);

					if (strcmp(opt->defname, "concurrently") == 0 &&
						defGetBoolean(opt))
						return "REINDEX CONCURRENTLY";
				}
				break;
			}
		case T_AlterTableStmt:
			foreach(lc, ((AlterTableStmt *) stmt)->cmds)
			{
				AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

				if (cmd->subtype == AT_DetachPartition &&
					((PartitionCmd *) cmd->def)->concurrent)
					return "ALTER TABLE ... DETACH PARTITION CONCURRENTLY";
			}
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "tablespace") == 0)
					return "ALTER DATABASE SET TABLESPACE";
			}
			break;
		case T_CopyStmt:
			*top_level = false;
			if (((CopyStmt *) stmt)->filename == NULL)
				return ((CopyStmt *) stmt)->is_from ?
					"COPY FROM STDIN" : "COPY TO STDOUT";
			break;
		case T_ClusterStmt:
			if (((ClusterStmt *) stmt)->relation == NULL)
				return "CLUSTER without a table name";
			break;
		case T_DiscardStmt:
			if (((DiscardStmt *) stmt)->target == DISCARD_ALL)
				return "DISCARD ALL";
			break;
		default:
			break;
	}
	return NULL;
}

bool
mig_pg_outside_only(Node *stmt)
{
	bool		top_level;

	return refused_statement(stmt, &top_level) != NULL && top_level;
}

/*
 * Error classes that a check never turns into a problem of the script: a
 * cancel or shutdown (57), exhausted resources (53), a system error (58)
 * and internal errors (XX) go on as errors.
 */
static bool
check_passes_on(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_SYSTEM_ERROR:
		case ERRCODE_INTERNAL_ERROR:
			return true;
		default:
			return false;
	}
}

/*
 * Error context callback while a script is checked: keeps the position of
 * a syntax error (a character position in mp->text) in mp->check_pos and
 * takes it off the error, so that a caller's SPI callback does not move it
 * to its own query.
 */
static void
check_error_callback(void *arg)
{
	MigPg	   *mp = (MigPg *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		mp->check_pos = pos;
		errposition(0);
	}
}

/* Fills err from an error the parser raised: its SQLSTATE, message, detail
 * and hint (in UTF-8), and the offset of its position in the script. */
static void
check_error(MigPg *mp, const ErrorData *edata, mig_err *err)
{
	mig_err_set(err, unpack_sql_state(edata->sqlerrcode), "%s",
				edata->message ? from_server(edata->message, true) : "syntax error");
	if (edata->detail)
		mig_err_detail(err, "%s", from_server(edata->detail, true));
	if (edata->hint)
		mig_err_hint(err, "%s", from_server(edata->hint, true));
	if (mp->check_pos > 0 && mp->text != NULL)
		err->offset = mig_pg_script_offset(mp, char_to_byte(mp->text, mp->text_len,
													 mp->check_pos - 1));
}

/*
 * Parses s with the server's own parser and refuses it (0A000, with the
 * offset of the statement) if a statement cannot run in a migration.  A
 * syntax error, or a character the server encoding lacks (in the text or
 * the file name, which the history keeps), is returned in err rather than
 * raised, so that migrate_validate can list every problem
 * of a folder in one call: the parser holds no resources but memory (here
 * the scratch context), so its error can be caught without a
 * subtransaction.
 */
static int
pg_check_script(void *ctx, const mig_script *s, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	ErrorContextCallback cb;
	List	   *volatile stmts = NIL;
	volatile int rc = MIG_OK;
	ListCell   *lc;
	const char *volatile outside = NULL;
	volatile int outside_at = 0;
	char	   *text = NULL;
	size_t		len,
				bad;

	mp->script = s;
	mp->stmt_off = -1;
	mp->text = NULL;
	mp->text_len = 0;
	mp->converted = false;
	mp->check_pos = 0;

	/* its file name and its text in the server encoding, or 22P05 naming
	 * the file (and the line) before anything runs */
	rc = mig_pg_name_fits(s->version, s->file, err);
	if (rc == MIG_OK && (text = to_server(s->sql, s->len, &len, &bad)) == NULL)
	{
		untranslatable(s->sql, s->len, bad, err);
		rc = MIG_ERROR;
	}
	if (rc != MIG_OK)
	{
		mp->script = NULL;
		MemoryContextSwitchTo(old);
		MemoryContextReset(mp->scratch);
		return rc;
	}
	mp->text = text;
	mp->text_len = (int) len;
	mp->converted = len != s->len || memcmp(text, s->sql, s->len) != 0;

	cb.callback = check_error_callback;
	cb.arg = mp;
	cb.previous = error_context_stack;
	PG_TRY();
	{
		error_context_stack = &cb;
		stmts = raw_parser(mp->text, RAW_PARSE_DEFAULT);
		error_context_stack = cb.previous;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* PG_CATCH has put back the caller's error_context_stack */
		MemoryContextSwitchTo(mp->scratch);
		edata = CopyErrorData();
		if (check_passes_on(edata->sqlerrcode))
			PG_RE_THROW();
		FlushErrorState();
		check_error(mp, edata, err);
		rc = MIG_ERROR;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(mp->scratch);

	/*
	 * What never runs (transaction control, COPY with the client) is
	 * refused first, in either mode; then what can run only outside a
	 * transaction: CALL migrate_run runs the migration so, function mode
	 * refuses it.
	 */
	foreach(lc, stmts)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		bool		top_level;
		const char *what = refused_statement(rs->stmt, &top_level);

		if (what == NULL)
			continue;
		if (top_level)
		{
			if (outside == NULL)
			{
				outside = what;
				outside_at = rs->stmt_location;
			}
			continue;
		}
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
					"%s cannot run in migration file \"%s\"", what, s->file);
		mig_err_detail(err, "Migrations may not end a transaction, and have no client to copy from or to.");
		mig_err_hint(err, "Remove the statement from the migration; COPY from a server file works.");
		err->offset = mig_pg_script_offset(mp, mig_pg_statement_start(mp, rs->stmt_location));
		rc = MIG_ERROR;
		outside = NULL;
		break;
	}
	/* a down script that must run outside a transaction is recorded so;
	 * rolling it back decides where it can run */
	if (outside != NULL && (mp->host.exec_outside != NULL || mp->dry_run_procedure || s->down))
		rc = MIG_OUTSIDE;
	else if (outside != NULL)
	{
		mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
					"%s cannot run in migration file \"%s\"", outside, s->file);
		if (mp->fname && (strcmp(mp->fname, "migrate_plan") == 0 ||
						  strcmp(mp->fname, "migrate_script") == 0))
		{
			/* a dry run names itself, and the form that can run it */
			mig_err_detail(err, "%s describes what SELECT migrate_apply would do, which runs migrations inside the caller's transaction, in which this statement cannot run.",
						   mp->fname);
			mig_err_hint(err, "With the option mode=run, %s describes CALL migrate_run, which runs such a migration outside a transaction, one statement at a time.",
						 mp->fname);
		}
		else
		{
			mig_err_detail(err, "%s runs migrations inside the caller's transaction, in which this statement cannot run; nothing was applied.",
						   mp->fname ? mp->fname : "migrate_apply");
			mig_err_hint(err, "%s", mp->host.outside_hint);
		}
		err->offset = mig_pg_script_offset(mp, mig_pg_statement_start(mp, outside_at));
		rc = MIG_ERROR;
	}
	mp->script = NULL;
	mp->text = NULL;
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	/* an up script CALL migrate_run will run outside a transaction: its
	 * worker can start now */
	if (mp->procedure && !s->down && (rc == MIG_OUTSIDE || (rc == MIG_OK && s->nontransactional)))
		mig_pg_outside_prestart(mp);
	return rc;
}

/*
 * Runs the statements of the script set up in mp (arg: their raw parse
 * trees) through SPI; one attempt of pg_exec.
 */
static int
run_statements(MigPg *mp, void *arg, mig_err *err)
{
	List	   *stmts = (List *) arg;
	const mig_script *s = mp->script;
	SPIExecuteOptions opts;
	ListCell   *lc;

	memset(&opts, 0, sizeof(opts));
	opts.read_only = false;
	opts.tcount = 0;
	opts.dest = None_Receiver;

	foreach(lc, stmts)
	{
		RawStmt    *rs = lfirst_node(RawStmt, lc);
		int			off,
					end;
		char	   *stmt = mig_pg_statement_text(mp, rs, &off, &end);
		int			ret;

		CHECK_FOR_INTERRUPTS();
		mig_pg_crash_point(mp);
		mp->stmt_off = off;
		ret = SPI_execute_extended(stmt, &opts);
		MemoryContextSwitchTo(mp->scratch); /* SPI leaves its own current */
		if (ret < 0)
		{
			mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
						"statement cannot run in migration file \"%s\": %s",
						s->file, SPI_result_code_string(ret));
			err->offset = mig_pg_script_offset(mp, off);
			return MIG_ERROR;
		}
		pfree(stmt);
	}
	mp->stmt_off = -1;
	return MIG_OK;
}

/* One attempt of a script under the rail's lock_timeout. */
static int
run_railed_statements(MigPg *mp, void *arg, mig_err *err)
{
	return mig_pg_rail_timed(mp, run_statements, arg, err);
}

/*
 * Runs s statement by statement through SPI, under the blocking rail
 * (pg_rails.c: lock_timeout for the statements; in procedure mode the
 * retries too, a subtransaction per attempt, where in function mode
 * run_core retries the whole call).  A failing statement raises its own
 * error (SQLSTATE kept) with the file and line as context.  Rows a
 * statement returns (a SELECT that backfills data, say) are discarded as
 * they come rather than collected in memory.
 */
static int
pg_exec(void *ctx, const mig_script *s, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = CurrentMemoryContext;
	ErrorContextCallback cb;
	List	   *stmts;
	int			rc;

	Oid			save_user;
	int			save_sec;
	int			nest;

	mig_pg_script_begin(mp, s, &cb);
	stmts = raw_parser(mp->text, RAW_PARSE_DEFAULT);
	GetUserIdAndSecContext(&save_user, &save_sec);
	if (s->down)
		mig_pg_down_role_enter(mp);
	/* a tenant's migration runs in its schema (an error's abort undoes it) */
	nest = mig_pg_tenant_path_enter(mp);
	if (mp->procedure && mp->rail_timeout_ms > 0 && mp->rail_retries > 0)
		rc = mig_pg_railed(mp, run_railed_statements, stmts, err);
	else
		rc = run_railed_statements(mp, stmts, err);
	mig_pg_tenant_path_leave(nest);
	SetUserIdAndSecContext(save_user, save_sec);
	mig_pg_script_done(mp, &cb, old);
	return rc;
}

/*
 * Before a stored down script runs: switches to the role that stored it
 * (migrate_history.applied_by, written by the functions as their caller),
 * so that it never runs with more rights than that role had -- a
 * superuser rolling back a deploy role's migration runs its down script
 * as the deploy role.  The caller must have that role's privileges
 * (a superuser, a member, or the role itself), else 42501.  The switch
 * forbids SET ROLE and SET SESSION AUTHORIZATION inside the script, as a
 * SECURITY DEFINER function does; the caller puts the user back after the
 * script (or an abort does).
 */
void
mig_pg_down_role_enter(MigPg *mp)
{
	Oid			user;
	int			sec;

	if (!OidIsValid(mp->down_role) || mp->down_role == mp->caller)
		return;
	if (!has_privs_of_role(mp->caller, mp->down_role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to roll back migration %s", mp->script->version),
				 errdetail("Its down script was stored by role \"%s\" and runs with that role's rights, which role \"%s\" does not have.",
						   GetUserNameFromId(mp->down_role, false),
						   GetUserNameFromId(mp->caller, false)),
				 errhint("Roll it back as \"%s\" or as a member of that role.",
						 GetUserNameFromId(mp->down_role, false))));
	GetUserIdAndSecContext(&user, &sec);
	SetUserIdAndSecContext(mp->down_role, sec | SECURITY_LOCAL_USERID_CHANGE);
}

/* A notice from the core (a migration applied, a lock skipped, a file
 * only reformatted), in the server encoding. */
static void
pg_notice(void *ctx, const char *message, const char *detail)
{
	MigPg	   *mp = (MigPg *) ctx;

	/* a fan-out says one thing per tenant; the rest is for debugging */
	if (mp->each)
		ereport(DEBUG1,
				(errmsg_internal("tenant %s: %s", mp->tenant, mig_pg_report_text(message)),
				 detail ? errdetail_internal("%s", mig_pg_report_text(detail)) : 0));
	else
		ereport(NOTICE,
				(errmsg_internal("%s", mig_pg_report_text(message)),
				 detail ? errdetail_internal("%s", mig_pg_report_text(detail)) : 0));
}

/* ---- set-up, tear-down, errors ---- */

/*
 * The checksums of files this backend has read, kept across calls so that
 * a later call checks an unchanged file with one lstat (see mig_cache.c).
 * A backend serves one connection, so this is the connection's cache.  Its
 * memory lives in a context under TopMemoryContext; an allocation failure
 * only means a smaller cache.
 */
static MemoryContext cache_cxt = NULL;
static mig_cache *file_cache = NULL;

static void *
cache_alloc(size_t n)
{
	return MemoryContextAllocExtended(cache_cxt, n,
									  MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
}

static void
cache_release(void *p)
{
	if (p != NULL)
		pfree(p);
}

static mig_cache *
backend_cache(void)
{
	if (file_cache == NULL)
	{
		if (cache_cxt == NULL)
			cache_cxt = AllocSetContextCreate(TopMemoryContext,
											  "migrate file cache",
											  ALLOCSET_DEFAULT_SIZES);
		file_cache = mig_cache_create(cache_alloc, cache_release);
	}
	return file_cache;
}

/* schema.name, quoted, in cxt */
static char *
qualified(MemoryContext cxt, const char *schema, const char *name)
{
	return MemoryContextStrdup(cxt, psprintf("%s.%s", quote_identifier(schema),
											 quote_identifier(name)));
}

/* host->dry_run_as_run: a dry run (plan, script, validate) checks scripts
 * as CALL migrate_run would. */
static void
pg_dry_run_as_run(void *ctx)
{
	((MigPg *) ctx)->dry_run_procedure = true;
}

MigPg *
mig_pg_begin(Oid fn_oid, bool procedure)
{
	MemoryContext parent = procedure ? PortalContext : CurrentMemoryContext;
	MemoryContext cxt;
	MigPg	   *mp;
	Oid			nsp;
	char	   *schema;

	encoding_init();
	cxt = AllocSetContextCreate(parent, "migrate", ALLOCSET_DEFAULT_SIZES);
	mp = MemoryContextAllocZero(cxt, sizeof(MigPg));
	mp->cxt = cxt;
	mp->scratch = AllocSetContextCreate(cxt, "migrate scratch",
										ALLOCSET_DEFAULT_SIZES);
	mp->procedure = procedure;

	/* The functions live in the extension's schema, so does the history. */
	nsp = get_func_namespace(fn_oid);
	schema = get_namespace_name(nsp);
	if (schema == NULL)
		elog(ERROR, "cache lookup failed for the schema of function %u",
			 fn_oid);
	mp->caller = GetUserId();
	mp->caller_name = MemoryContextStrdup(cxt, GetUserNameFromId(mp->caller, false));
	mp->nsp_q = MemoryContextStrdup(cxt, quote_identifier(schema));
	mp->history = qualified(cxt, schema, "migrate_history");
	mp->repairs = qualified(cxt, schema, "migrate_repairs");
	mp->progress = qualified(cxt, schema, "migrate_progress");
	mp->verified = qualified(cxt, schema, "migrate_verified");
	mig_pg_rail_set(mp, NULL);
	mp->rail_attempt = 1;		/* until mig_pg_railed counts attempts */
	mp->tenant = "";			/* none, until mig_pg_tenant_set */
	mp->tenant_lit = "''";

	mp->host.ctx = mp;
	mp->host.alloc = pg_alloc;
	mp->host.release = pg_release;
	mp->host.open_file = pg_open_file;
	mp->host.open_dir = pg_open_dir;
	mp->host.close_file = pg_close_file;
	mp->host.list_dir = pg_list_dir;
	mp->host.lock = pg_lock;
	mp->host.unlock = pg_unlock;
	mp->host.checkpoint = procedure ? pg_checkpoint : NULL;
	mig_pg_history_host(mp, nsp);
	mp->host.notice = pg_notice;
	mp->host.check_script = pg_check_script;
	mp->host.dry_run_as_run = procedure ? NULL : pg_dry_run_as_run;
	mp->host.exec = pg_exec;
	/* outside a transaction: only a CALL can commit around each statement */
	mp->host.exec_outside = procedure ? mig_pg_exec_outside : NULL;
	mp->host.outside_hint = procedure ? NULL :
		"Use CALL migrate_run(...), which runs such a migration outside a transaction, one statement at a time.";
	mp->host.outside_down_hint = procedure ? NULL :
		"Use CALL migrate_run_down(n), which runs such a down script outside a transaction, one statement at a time.";
	mp->host.engine = "postgres";
	mp->host.cache = backend_cache();
	mp->host.keeps_file_id = 1;
	mp->host.max_file_size = (size_t) max_file_kb * 1024;
	mp->host.refuse_writable = 1;
	mig_pg_impact_host(mp);
	return mp;
}

void
mig_pg_end(MigPg *mp)
{
	mig_pg_release(mp);
	MemoryContextDelete(mp->cxt);
}

void
mig_pg_release(MigPg *mp)
{
	mig_pg_outside_end(mp, false);
	release_session_lock(mp);
}

/* A valid SQLSTATE: five digits or upper-case letters. */
static bool
valid_sqlstate(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return s[5] == '\0';
}

void
mig_pg_report(const mig_err *err)
{
	const char *st = err->sqlstate;
	int			code;

	if (err->code == MIG_NOMEM)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 err->context[0] ? errcontext("%s", mig_pg_report_text(err->context)) : 0));
	if (valid_sqlstate(st))
		code = MAKE_SQLSTATE(st[0], st[1], st[2], st[3], st[4]);
	else
		code = ERRCODE_INTERNAL_ERROR;
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s", err->message[0] ?
							 mig_pg_report_text(err->message) : "migration failed"),
			 err->detail[0] ? errdetail_internal("%s", mig_pg_report_text(err->detail)) : 0,
			 err->hint[0] ? errhint("%s", mig_pg_report_text(err->hint)) : 0,
			 err->context[0] ? errcontext("%s", mig_pg_report_text(err->context)) : 0));
	pg_unreachable();
}
