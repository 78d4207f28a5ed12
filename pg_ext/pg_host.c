/*
 * pg_host.c -- the mig_host of the PostgreSQL extension: its set-up and the
 * callbacks that are the server's basic services.
 *
 * Everything the core asks of the server goes through the host filled in
 * here (mig_pg_begin):
 *
 *   memory      palloc_extended(MCXT_ALLOC_NO_OOM) in a private context, so
 *               the core sees NULL on exhaustion and an abort frees it all;
 *   files       OpenTransientFile / AllocateDir, closed by an abort;
 *   notices     ereport(NOTICE);
 *
 * and here too are the extension's settings and crash points, the switch
 * to the owner's rights for the extension's own tables, and the reporting
 * of the core's errors.  The other callbacks are in their own files:
 *
 *   lock        pg_xact.c: pg_advisory_xact_lock (function mode) or
 *               pg_advisory_lock (procedure mode), always before the
 *               history is read, and the units of work;
 *   scripts     pg_script.c: raw_parser() splits a script into statements
 *               (and finds the ones that cannot run through SPI before
 *               anything runs); each statement then runs with SPI_execute,
 *               under the blocking rail of pg_rails.c (lock_timeout,
 *               retries);
 *   encodings   pg_encoding.c: the core's UTF-8 to the database's encoding
 *               and back.
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
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

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

/* ---- notices ---- */

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

	mig_pg_encoding_init();
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
	mp->host.lock = mig_pg_lock;
	mp->host.unlock = mig_pg_unlock;
	mp->host.checkpoint = procedure ? mig_pg_checkpoint : NULL;
	mig_pg_history_host(mp, nsp);
	mp->host.notice = pg_notice;
	mp->host.check_script = mig_pg_check_script;
	mp->host.dry_run_as_run = procedure ? NULL : pg_dry_run_as_run;
	mp->host.exec = mig_pg_exec;
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
	mig_pg_release_session_lock(mp);
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
