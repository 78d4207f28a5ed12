/*
 * migrate.c -- the SQLite extension: schema migrations applied from inside
 * the database by SQL functions.
 *
 *   .load ./build/migrate
 *   SELECT migrate_apply('db/migrations');           -- number applied
 *   SELECT migrate_apply('db/migrations', 'target=42, out_of_order=true');
 *   SELECT * FROM migrate_status('db/migrations');   -- one row a migration
 *   SELECT migrate_down(1);                          -- number rolled back
 *   SELECT migrate_down_to('3');                     -- back to version 3
 *   SELECT * FROM migrate_history;                   -- what was applied
 *   SELECT migrate_adopt('db/migrations');           -- take over from
 *                                                    -- Flyway, goose...
 *   SELECT migrate_baseline('db/migrations', '42');  -- mark as at 42
 *   SELECT * FROM migrate_validate('db/migrations'); -- every problem
 *   SELECT migrate_repair('db/migrations');          -- accept edits
 *   SELECT migrate_record('db/migrations', '5');     -- ran elsewhere
 *   SELECT * FROM migrate_plan('db/migrations');     -- dry run
 *   SELECT migrate_script('db/migrations');          -- off-hours script
 *   SELECT migrate_apply(readfile('m.tar.gz'));      -- the folder as data:
 *   SELECT migrate_apply(json_object('1_a.up.sql', 'CREATE TABLE a(x);'));
 *                                                    -- every function above
 *                                                    -- takes them
 *
 * This file is the thin edge: it registers the functions, turns their
 * arguments into calls of the core (common/mig.h) with the host from
 * sq_host.c, and the core's errors into SQL errors.  The functions have
 * side effects, so they are SQLITE_DIRECTONLY: no trigger or view can call
 * them.
 */
#include <stdio.h>
#include <string.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT1

char *
sq_error_text(const char *fn, const mig_err *err)
{
	return sqlite3_mprintf("%s: %s%s%s%s%s%s%s", fn,
						   err->context, err->context[0] ? ": " : "", err->message,
						   err->detail[0] ? "\nDETAIL:  " : "", err->detail,
						   err->hint[0] ? "\nHINT:  " : "", err->hint);
}

void
sq_report(sqlite3_context *fctx, const char *fn, const mig_err *err)
{
	char	   *msg;

	if (err->code == MIG_NOMEM)
	{
		sqlite3_result_error_nomem(fctx);
		return;
	}
	msg = sq_error_text(fn, err);
	if (msg == NULL)
	{
		sqlite3_result_error_nomem(fctx);
		return;
	}
	sqlite3_result_error(fctx, msg, -1);
	if (strcmp(err->sqlstate, MIG_SQLSTATE_LOCK) == 0)
		sqlite3_result_error_code(fctx, SQLITE_BUSY);
	else if (strcmp(err->sqlstate, SQ_SQLSTATE_CANCELED) == 0)
		sqlite3_result_error_code(fctx, SQLITE_INTERRUPT);
	sqlite3_free(msg);
}

/* The call log's row of a call that failed or skipped, written after it
 * (best effort: an error writing it is not the call's error; after an
 * out-of-memory error nothing can be written until the statement ends). */
static void
log_failure(sq_ctx *c, const mig_err *err)
{
	mig_err		ignored;

	mig_err_clear(&ignored);
	if (err->code != MIG_NOMEM)
		(void) sq_call_log(c, "error", err, &ignored);
}

static void
log_skipped(sq_ctx *c)
{
	mig_err		ignored;

	mig_err_clear(&ignored);
	if (c->skipped)
		(void) sq_call_log(c, "skipped", NULL, &ignored);
}

/*
 * Runs a core entry point that takes the folder (a path, an archive or a
 * JSON object: sq_source.c) and a text (the options, or a version) and
 * returns a count, as the SQL function fn.  The options are argument
 * opt_arg, read as those of entry point which (MIG_OPTIONS_*): their
 * schema= names the tenant the entry point runs on (sq_tenant.c), and the
 * rest goes to it (as its text when text_arg is opt_arg).
 */
static void
run_path_fn(sqlite3_context *fctx, int argc, sqlite3_value **argv, const char *fn,
			int (*entry) (const mig_host *, const char *, const char *, int64_t *, mig_err *),
			const sq_caches *caches, int which, int text_arg, int opt_arg)
{
	sqlite3    *caller = sqlite3_context_db_handle(fctx);
	const char *options = argc > opt_arg ? (const char *) sqlite3_value_text(argv[opt_arg]) : NULL;
	const char *text = argc > text_arg ? (const char *) sqlite3_value_text(argv[text_arg]) : NULL;
	const char *path,
			   *logged;
	char	   *rest = NULL;
	sqlite3    *tenant = NULL;
	mig_source *src = NULL;
	sq_ctx		c;
	mig_host	h;
	mig_err		err;
	int64_t		count = 0;

	if (sq_tenant_enter(caller, fn, options, which, 0, &tenant, &rest, &err) != MIG_OK)
	{
		sq_report(fctx, fn, &err);
		return;
	}
	if (text_arg == opt_arg)
		text = rest;
	sq_host_init(&h, &c, tenant ? tenant : caller, fn);
	h.cache = caches ? caches->files : NULL;
	if (sq_folder_arg(caller, &h, argv[0], caches ? caches->archives : NULL, &path, &src, &logged,
					  &err) != MIG_OK)
	{
		if (logged)				/* data that could not be read: logged */
		{
			sq_call_begin(&c, fn, logged, options);
			log_failure(&c, &err);
		}
		sq_report(fctx, fn, &err);
	}
	else
	{
		sq_call_begin(&c, fn, logged, options);
		if (entry(&h, path, text, &count, &err) != MIG_OK)
		{
			log_failure(&c, &err);
			sq_report(fctx, fn, &err);
		}
		else
		{
			log_skipped(&c);
			sqlite3_result_int64(fctx, count);
		}
	}
	mig_source_free(src);
	sqlite3_free(rest);
	sq_tenant_close(tenant);
}

/* migrate_apply(path [, options]) -> number of migrations applied */
static void
fn_apply(sqlite3_context *fctx, int argc, sqlite3_value **argv)
{
	run_path_fn(fctx, argc, argv, "migrate_apply", mig_apply_with, sqlite3_user_data(fctx),
				MIG_OPTIONS_APPLY, 1, 1);
}

/* migrate_repair(path [, options]) -> number of history rows brought in
 * line with their files after a reviewed edit */
static int
repair_entry(const mig_host *h, const char *path, const char *options, int64_t *n, mig_err *err)
{
	return mig_repair_with(h, path, options, n, err);
}

static void
fn_repair(sqlite3_context *fctx, int argc, sqlite3_value **argv)
{
	run_path_fn(fctx, argc, argv, "migrate_repair", repair_entry, NULL, MIG_OPTIONS_REPAIR, 1, 1);
}

/* migrate_script(path [, options]) -> one SQL script applying the pending
 * migrations and recording them, for a DBA to run off-hours (against the
 * tenant's file, with schema=) */
static void
fn_script(sqlite3_context *fctx, int argc, sqlite3_value **argv)
{
	sqlite3    *caller = sqlite3_context_db_handle(fctx);
	const char *options = argc > 1 ? (const char *) sqlite3_value_text(argv[1]) : NULL;
	const char *path,
			   *logged;
	char	   *rest = NULL;
	sqlite3    *tenant = NULL;
	mig_source *src = NULL;
	sq_ctx		c;
	mig_host	h;
	mig_err		err;
	char	   *text = NULL;
	size_t		len = 0;

	if (sq_tenant_enter(caller, "migrate_script", options, MIG_OPTIONS_SCRIPT, 1, &tenant, &rest,
						&err) != MIG_OK)
	{
		sq_report(fctx, "migrate_script", &err);
		return;
	}
	sq_host_init(&h, &c, tenant ? tenant : caller, "migrate_script");
	if (sq_folder_arg(caller, &h, argv[0], NULL, &path, &src, &logged, &err) != MIG_OK ||
		mig_script_text(&h, path, rest, &text, &len, &err) != MIG_OK)
		sq_report(fctx, c.fn, &err);
	else
		sqlite3_result_text64(fctx, text, len, sqlite3_free, SQLITE_UTF8);
	mig_source_free(src);
	sqlite3_free(rest);
	sq_tenant_close(tenant);
}

static int
adopt_entry(const mig_host *h, const char *path, const char *options, int64_t *n, mig_err *err)
{
	return mig_adopt_with(h, path, options, n, err);
}

/* migrate_adopt(path [, options]) -> number of migrations taken over from
 * another tool's history; with schema=S, the tenant S's (whose database
 * holds that tool's table too) */
static void
fn_adopt(sqlite3_context *fctx, int argc, sqlite3_value **argv)
{
	run_path_fn(fctx, argc, argv, "migrate_adopt", adopt_entry, NULL, MIG_OPTIONS_ADOPT, 1, 1);
}

/* migrate_baseline(path, version [, options]) -> number of migrations
 * recorded as applied without running them */
static int
baseline_entry(const mig_host *h, const char *path, const char *version, int64_t *n,
			   mig_err *err)
{
	return mig_baseline(h, path, version, n, err);
}

static void
fn_baseline(sqlite3_context *fctx, int argc, sqlite3_value **argv)
{
	run_path_fn(fctx, argc, argv, "migrate_baseline", baseline_entry, NULL, MIG_OPTIONS_NONE, 1, 2);
}

/* migrate_record(path, version [, options]) -> 1: the next pending
 * migration, which ran elsewhere (a goose Go migration run by the
 * application), recorded as applied without running it, with an audit
 * row */
static int
record_entry(const mig_host *h, const char *path, const char *version, int64_t *n,
			 mig_err *err)
{
	return mig_record_applied(h, path, version, n, err);
}

static void
fn_record(sqlite3_context *fctx, int argc, sqlite3_value **argv)
{
	run_path_fn(fctx, argc, argv, "migrate_record", record_entry, NULL, MIG_OPTIONS_NONE, 1, 2);
}

/* migrate_down([n = 1 [, options]]) -> number of migrations rolled back */
static void
fn_down(sqlite3_context *fctx, int argc, sqlite3_value **argv)
{
	sqlite3    *caller = sqlite3_context_db_handle(fctx);
	const char *options = argc > 1 ? (const char *) sqlite3_value_text(argv[1]) : NULL;
	char	   *rest = NULL;
	sqlite3    *tenant = NULL;
	sq_ctx		c;
	mig_host	h;
	mig_err		err;
	int64_t		n = 1,
				done = 0;

	if (argc >= 1)
	{
		if (sqlite3_value_numeric_type(argv[0]) != SQLITE_INTEGER)
		{
			sqlite3_result_error(fctx, "migrate_down: the number of migrations to roll back must be an integer", -1);
			return;
		}
		n = sqlite3_value_int64(argv[0]);
	}
	if (sq_tenant_enter(caller, "migrate_down", options, MIG_OPTIONS_NONE, 0, &tenant, &rest,
						&err) != MIG_OK)
	{
		sq_report(fctx, "migrate_down", &err);
		return;
	}
	sq_host_init(&h, &c, tenant ? tenant : caller, "migrate_down");
	sq_call_begin(&c, "migrate_down", NULL, options);
	if (mig_down(&h, n, &done, &err) != MIG_OK)
	{
		log_failure(&c, &err);
		sq_report(fctx, c.fn, &err);
	}
	else
		sqlite3_result_int64(fctx, done);
	sqlite3_free(rest);
	sq_tenant_close(tenant);
}

static void *
cache_alloc(size_t n)
{
	return sqlite3_malloc64(n);
}

static void
caches_destroy(void *p)
{
	sq_caches  *c = p;

	mig_cache_destroy(c->files);
	mig_source_cache_destroy(c->archives);
	sqlite3_free(c);
}

/* migrate_down_to(version [, options]) -> number of migrations rolled
 * back */
static void
fn_down_to(sqlite3_context *fctx, int argc, sqlite3_value **argv)
{
	sqlite3    *caller = sqlite3_context_db_handle(fctx);
	const char *version = (const char *) sqlite3_value_text(argv[0]);
	const char *options = argc > 1 ? (const char *) sqlite3_value_text(argv[1]) : NULL;
	char	   *rest = NULL;
	sqlite3    *tenant = NULL;
	sq_ctx		c;
	mig_host	h;
	mig_err		err;
	int64_t		done = 0;

	if (sq_tenant_enter(caller, "migrate_down_to", options, MIG_OPTIONS_NONE, 0, &tenant, &rest,
						&err) != MIG_OK)
	{
		sq_report(fctx, "migrate_down_to", &err);
		return;
	}
	sq_host_init(&h, &c, tenant ? tenant : caller, "migrate_down_to");
	sq_call_begin(&c, "migrate_down_to", NULL, version);
	if (mig_down_to(&h, version, &done, &err) != MIG_OK)
	{
		log_failure(&c, &err);
		sq_report(fctx, c.fn, &err);
	}
	else
		sqlite3_result_int64(fctx, done);
	sqlite3_free(rest);
	sq_tenant_close(tenant);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int
sqlite3_migrate_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi)
{
	const int	flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
	int			rc;

	sq_caches  *caches;

	SQLITE_EXTENSION_INIT2(pApi);
	/* one checksum cache and one kept archive per connection, freed with
	 * migrate_apply */
	if ((caches = sqlite3_malloc64(sizeof(sq_caches))) == NULL)
		rc = SQLITE_NOMEM;
	else if ((caches->files = mig_cache_create(cache_alloc, sqlite3_free)) == NULL ||
			 (caches->archives = mig_source_cache_create(cache_alloc, sqlite3_free)) == NULL)
	{
		mig_cache_destroy(caches->files);
		sqlite3_free(caches);
		rc = SQLITE_NOMEM;
	}
	else
		rc = sqlite3_create_function_v2(db, "migrate_apply", 1, flags, caches, fn_apply,
										NULL, NULL, caches_destroy);
	if (rc == SQLITE_OK)		/* the same cache: freed with the one-argument form */
		rc = sqlite3_create_function(db, "migrate_apply", 2, flags, caches, fn_apply, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_down", 0, flags, NULL, fn_down, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_down", 1, flags, NULL, fn_down, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_down_to", 1, flags, NULL, fn_down_to, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_down", 2, flags, NULL, fn_down, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_down_to", 2, flags, NULL, fn_down_to, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_adopt", 1, flags, NULL, fn_adopt, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_adopt", 2, flags, NULL, fn_adopt, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_baseline", 2, flags, NULL, fn_baseline, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_baseline", 3, flags, NULL, fn_baseline, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_repair", 1, flags, NULL, fn_repair, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_repair", 2, flags, NULL, fn_repair, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_record", 2, flags, NULL, fn_record, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_record", 3, flags, NULL, fn_record, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_script", 1, flags, NULL, fn_script, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "migrate_script", 2, flags, NULL, fn_script, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sq_tables_register(db);
	if (rc != SQLITE_OK && pzErrMsg)
		*pzErrMsg = sqlite3_mprintf("migrate: could not register its functions: %s",
									sqlite3_errstr(rc));
	return rc;
}
