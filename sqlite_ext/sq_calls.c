/*
 * sq_calls.c -- what happened, for people: the lines a person at the
 * sqlite3 shell sees as migrations run (sq_show), and the call log of the
 * SQLite extension: one row in
 * main.migrate_calls per call of a function that writes (migrate_apply,
 * migrate_down, migrate_down_to, migrate_repair, migrate_adopt,
 * migrate_baseline): when, which operating-system user, what folder and
 * options, which migrations it applied, recorded, repaired or rolled back,
 * and how it ended.  A call that succeeds writes its row in its own unit
 * of work (so it commits with what it did); one that fails or skips
 * writes it after, as a statement of its own (best effort: a database
 * that cannot be written then has no row).  Rows older than 90 days go.
 * migrate_apply_each writes none for a tenant it found up to date by
 * reading alone (sq_each.c): that tenant is not written at all.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

static const char calls_ddl[] =
"CREATE TABLE IF NOT EXISTS main.migrate_calls(\n"
"  id           INTEGER PRIMARY KEY,\n"
"  started_at   TEXT NOT NULL,\n"
"  finished_at  TEXT NOT NULL,\n"
"  function     TEXT NOT NULL,\n"
"  role         TEXT,\n"			/* the operating-system user */
"  source       TEXT,\n"
"  options      TEXT,\n"
"  migrations   INTEGER NOT NULL,\n"
"  versions     TEXT,\n"
"  outcome      TEXT NOT NULL,\n"	/* ok, error, skipped */
"  sqlstate     TEXT,\n"
"  message      TEXT,\n"
"  pid          INTEGER\n"
")";

void
sq_call_begin(sq_ctx *c, const char *fn, const char *source, const char *options)
{
	time_t		now = time(NULL);
	struct tm	tm;

	c->log_fn = fn;
	c->log_source = source;
	c->log_options = options;
	c->log_count = 0;
	c->log_versions[0] = '\0';
	c->log_done = 0;
	c->skipped = 0;
	if (gmtime_r(&now, &tm))
		strftime(c->log_started, sizeof(c->log_started), "%Y-%m-%dT%H:%M:%SZ", &tm);
	else
		c->log_started[0] = '\0';
}

void
sq_call_note(sq_ctx *c, const char *version)
{
	size_t		used = strlen(c->log_versions);

	if (c->log_fn == NULL)
		return;
	if (used + strlen(version) + 8 < sizeof(c->log_versions))
		snprintf(c->log_versions + used, sizeof(c->log_versions) - used, "%s%s",
				 c->log_count ? ", " : "", version);
	else if (used + 5 < sizeof(c->log_versions) && strcmp(c->log_versions + used - 3, "...") != 0)
		strcat(c->log_versions, ", ...");
	c->log_count++;
}

int
sq_call_log(sq_ctx *c, const char *outcome, const mig_err *e, mig_err *err)
{
	sqlite3_stmt *st = NULL;
	char		message[MIG_MSG_MAX + MIG_CTX_MAX + 16] = "";
	int			rc;
	int			timeout = -1;

	if (c->log_fn == NULL || c->log_done)
		return MIG_OK;
	/* a refused or failed call writes no row where a planted trigger would
	 * run on it (an "ok" one was checked under the lock) */
	if (strcmp(outcome, "ok") != 0)
	{
		mig_err		ignored;

		mig_err_clear(&ignored);
		if (sq_planted_trigger(c, &ignored) != MIG_OK)
			return MIG_OK;
	}
	if (e)
		snprintf(message, sizeof(message), "%s%s%s", e->message,
				 e->context[0] ? "\nCONTEXT:  " : "", e->context);
	/* after the call (it failed or skipped, and holds no lock): one try,
	 * no wait -- a call that skips because another holds the database
	 * must not then wait for it to write its row */
	if (strcmp(outcome, "ok") != 0 && sqlite3_get_autocommit(c->db))
	{
		if (sqlite3_prepare_v2(c->db, "PRAGMA busy_timeout", -1, &st, NULL) == SQLITE_OK &&
			sqlite3_step(st) == SQLITE_ROW)
			timeout = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
		st = NULL;
		sqlite3_busy_timeout(c->db, 0);
	}
	rc = sqlite3_exec(c->db, calls_ddl, NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "DELETE FROM main.migrate_calls"
						  " WHERE finished_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-90 days')",
						  NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(c->db,
								"INSERT INTO main.migrate_calls(started_at, finished_at, function, role,"
								" source, options, migrations, versions, outcome, sqlstate, message, pid)"
								" VALUES(?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?2, ?3, ?4, ?5, ?6,"
								" ?7, ?8, ?9, ?10, ?11)", -1, &st, NULL);
	if (rc == SQLITE_OK)
	{
		sqlite3_bind_text(st, 1, c->log_started, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, c->log_fn, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, sq_caller(c), -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, c->log_source, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, c->log_options, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, c->log_count);
		sqlite3_bind_text(st, 7, c->log_versions[0] ? c->log_versions : NULL, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 8, outcome, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 9, e ? e->sqlstate : NULL, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 10, e ? message : NULL, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 11, (sqlite3_int64) getpid());
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(c->db);
	}
	sqlite3_finalize(st);
	if (timeout >= 0)
		sqlite3_busy_timeout(c->db, timeout);
	if (rc != SQLITE_OK)
	{
		if ((rc & 0xff) == SQLITE_NOMEM)
		{
			mig_err_nomem(err);
			return MIG_NOMEM;
		}
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not write migrate_calls: %s",
					sqlite3_errmsg(c->db));
		return MIG_ERROR;
	}
	c->log_done = 1;
	return MIG_OK;
}

void
sq_show(sq_ctx *c, const char *message)
{
	int			show = c->verbose >= 0 ? c->verbose : isatty(0) && isatty(2);

	if (show)
	{
		fprintf(stderr, "%s: %s\n", c->fn, message);
		fflush(stderr);
	}
}
