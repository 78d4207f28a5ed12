/*
 * sq_outside.c -- migrations outside a transaction on SQLite: the progress
 * of their statements in main.migrate_progress, the connection settings a
 * script changed put back after it, and the runner that takes each
 * statement with its progress so that none runs twice and a later call
 * resumes where one stopped.  The lock file they hold is in sq_lock.c.
 */
#include <stdio.h>
#include <string.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

/* ---- migrations outside a transaction ---- */

/*
 * A migration marked non-transactional (goose NO TRANSACTION, dbmate
 * transaction:false, sqlx -- no-transaction, morph), and the down script
 * of one recorded so, runs statement by statement outside the unit of
 * work, so that PRAGMA foreign_keys=off and the documented table rebuild
 * (with its own BEGIN and COMMIT) work.  While it runs, no transaction of
 * ours holds the write lock, so the migration lock is a lock file beside
 * the database ("{db}-migrate-lock", flock: released by the kernel when the
 * process dies, so it cannot go stale), which the runner takes while it
 * holds the write lock and gives back only once it holds it again; so a
 * caller that holds the write lock and finds the lock file free knows
 * that no migration is half way through, and one that finds it held lets
 * go of the write lock and waits (sq_lock).
 *
 * main.migrate_progress records how far it got: the offset past the last
 * statement done, how many, and the checksum of the bytes before that
 * offset.  A later call resumes at the failed statement when those bytes
 * are unchanged.  No statement runs twice (outside_step): a statement and
 * the progress that covers it commit together wherever the statement
 * allows it.
 */
static const char progress_ddl[] =
"CREATE TABLE IF NOT EXISTS main.migrate_progress(\n"
"  version          TEXT PRIMARY KEY,\n"	/* an up half way is pending, a */
"  done_checksum    TEXT NOT NULL,\n"	/* down half way applied: never */
"  next_offset      INTEGER NOT NULL,\n"	/* both of one version */
"  statements_done  INTEGER NOT NULL,\n"
"  updated_at       TEXT NOT NULL,\n"
"  last_error       TEXT,\n"
"  down             INTEGER NOT NULL DEFAULT 0\n"
")";

/* 1 when main.migrate_progress exists. */
int
sq_progress_exists(sq_ctx *c)
{
	return sqlite3_table_column_metadata(c->db, "main", "migrate_progress", NULL,
										 NULL, NULL, NULL, NULL, NULL) == SQLITE_OK;
}

/* Makes sure main.migrate_progress exists with its down column. */
static int
progress_ready(sq_ctx *c, mig_err *err)
{
	if (sq_run(c, progress_ddl, err) != MIG_OK)
		return err->code;
	if (!sq_has_column(c, "migrate_progress", "down"))
		return sq_run(c, "ALTER TABLE main.migrate_progress ADD COLUMN down INTEGER NOT NULL DEFAULT 0", err);
	return MIG_OK;
}

int
sq_progress_load(void *ctx, mig_progress_cb cb, void *arg, mig_err *err)
{
	sq_ctx	   *c = ctx;
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK,
				src = SQLITE_DONE;

	if (!sq_progress_exists(c))
		return MIG_OK;
	if (sqlite3_prepare_v2(c->db, sq_has_column(c, "migrate_progress", "down") ?
						   "SELECT version, down, statements_done, next_offset, done_checksum,"
						   " last_error, updated_at FROM main.migrate_progress" :
						   "SELECT version, 0, statements_done, next_offset, done_checksum,"
						   " last_error, updated_at FROM main.migrate_progress",
						   -1, &st, NULL) != SQLITE_OK)
		return sq_db_error(c, err, "could not read migrate_progress");
	while (rc == MIG_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
	{
		mig_progress_row r;

		memset(&r, 0, sizeof(r));
		r.version = (const char *) sqlite3_column_text(st, 0);
		r.down = sqlite3_column_int(st, 1);
		r.statements_done = sqlite3_column_int64(st, 2);
		r.next_offset = sqlite3_column_int64(st, 3);
		r.done_checksum = (const char *) sqlite3_column_text(st, 4);
		r.last_error = (const char *) sqlite3_column_text(st, 5);
		r.updated_at = (const char *) sqlite3_column_text(st, 6);
		if (r.version == NULL)
		{
			rc = sq_db_error(c, err, "could not read migrate_progress");
			break;
		}
		rc = cb(arg, &r);
	}
	if (rc == MIG_OK && src != SQLITE_DONE)
		rc = sq_db_error(c, err, "could not read migrate_progress");
	sqlite3_finalize(st);
	return rc;
}

int
sq_progress_forget(void *ctx, const char *version, int down, mig_err *err)
{
	sq_ctx	   *c = ctx;
	char	   *sql;
	int			rc;

	if (!sq_progress_exists(c))
		return MIG_OK;
	if ((rc = progress_ready(c, err)) != MIG_OK)
		return rc;
	sql = sqlite3_mprintf("DELETE FROM main.migrate_progress WHERE version = %Q AND down = %d",
						  version, down != 0);
	rc = sql ? sq_run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);
	sqlite3_free(sql);
	return rc;
}

/* -- connection settings -- */

/*
 * Connection settings a migration may change with a PRAGMA (SQLite's
 * pragma list): those that live in the connection, not in the database
 * file, and can be read back.  After a script that ran outside a
 * transaction, failed or not, each one it changed is put back as the
 * caller had it (restore_settings): a table rebuild must not leave the
 * caller's connection with foreign_keys off.  Settings kept in the
 * database (journal_mode WAL, user_version, application_id, page_size,
 * auto_vacuum, encoding) stay as the migration set them.  Left alone:
 * case_sensitive_like, which cannot be read back, and the process-wide
 * soft_heap_limit, hard_heap_limit, temp_store_directory and
 * data_store_directory.  per_schema: read and set for main (cache_size
 * of an attached database is not put back).
 */
static const struct
{
	const char *name;
	int			per_schema;
	int			table;			/* readable as a table-valued function */
}			settings[] = {
	{"foreign_keys", 0, 1}, {"defer_foreign_keys", 0, 1}, {"recursive_triggers", 0, 1},
	{"legacy_alter_table", 0, 1}, {"ignore_check_constraints", 0, 1},
	{"writable_schema", 0, 1}, {"trusted_schema", 0, 1}, {"cell_size_check", 0, 1},
	{"query_only", 0, 1}, {"reverse_unordered_selects", 0, 1}, {"automatic_index", 0, 1},
	{"read_uncommitted", 0, 1}, {"count_changes", 0, 1}, {"empty_result_callbacks", 0, 1},
	{"full_column_names", 0, 1}, {"short_column_names", 0, 1},
	{"checkpoint_fullfsync", 0, 1}, {"fullfsync", 0, 1}, {"busy_timeout", 0, 1},
	{"threads", 0, 1}, {"analysis_limit", 0, 1}, {"temp_store", 0, 1},
	{"cache_size", 1, 1}, {"cache_spill", 1, 1}, {"synchronous", 1, 1},
	{"secure_delete", 1, 0}, {"locking_mode", 1, 1}, {"journal_size_limit", 1, 1},
	{"wal_autocheckpoint", 0, 0}, {"mmap_size", 1, 0},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))
#define SETTING_MAX 32

/* The value of each setting, "" where it cannot be read (a pragma
 * compiled out, mmap_size of an in-memory database). */
typedef struct saved_settings
{
	char		value[N_SETTINGS][SETTING_MAX];
} saved_settings;

/* Copies column col of st (a row) into out[SETTING_MAX]; an SQLite result
 * code. */
static int
setting_value(sqlite3_stmt *st, int col, char *out)
{
	const char *v = (const char *) sqlite3_column_text(st, col);

	out[0] = '\0';
	if (v)
		snprintf(out, SETTING_MAX, "%s", v);
	return v || sqlite3_column_type(st, col) == SQLITE_NULL ? SQLITE_OK : SQLITE_NOMEM;
}

/*
 * Reads every setting into *out: those readable as table-valued functions
 * in one statement, the others with a PRAGMA each (a handful of statements
 * in all, since each is traced and costs a prepare); an SQLite result
 * code.
 */
static int
read_settings(sq_ctx *c, saved_settings *out)
{
	char	   *sql = sqlite3_mprintf("SELECT 0");
	sqlite3_stmt *st = NULL;
	int			rc,
				col = 1;

	for (size_t i = 0; sql && i < N_SETTINGS; i++)
	{
		char	   *more;

		if (!settings[i].table)
			continue;
		more = sqlite3_mprintf("%s, (SELECT * FROM pragma_%s%s)", sql, settings[i].name,
							   settings[i].per_schema ? " WHERE schema = 'main'" : "");
		sqlite3_free(sql);
		sql = more;
	}
	if (sql == NULL)
		return SQLITE_NOMEM;
	rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	sqlite3_free(sql);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = SQLITE_OK;
	for (size_t i = 0; rc == SQLITE_OK && i < N_SETTINGS; i++)
		if (settings[i].table)
			rc = setting_value(st, col++, out->value[i]);
	sqlite3_finalize(st);
	for (size_t i = 0; rc == SQLITE_OK && i < N_SETTINGS; i++)
	{
		if (settings[i].table)
			continue;
		out->value[i][0] = '\0';
		if ((sql = sqlite3_mprintf("PRAGMA %s%s", settings[i].per_schema ? "main." : "",
								   settings[i].name)) == NULL)
			return SQLITE_NOMEM;
		rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
		sqlite3_free(sql);
		if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
			rc = setting_value(st, 0, out->value[i]);
		else if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
		sqlite3_finalize(st);
	}
	return rc;
}

static int
save_settings(sq_ctx *c, saved_settings *saved, mig_err *err)
{
	if (read_settings(c, saved) != SQLITE_OK)
		return sq_db_error(c, err, "could not read the connection's settings");
	return MIG_OK;
}

/*
 * Puts back each setting that differs from saved (in autocommit mode:
 * foreign_keys cannot change inside a transaction), with a notice for one
 * SQLite does not take back (locking_mode stays exclusive in a database
 * that entered WAL mode under it); now is room for the values read.
 */
static int
restore_settings(sq_ctx *c, const saved_settings *saved, saved_settings *now, mig_err *err)
{
	int			changed = 0;

	if (read_settings(c, now) != SQLITE_OK)
		return sq_db_error(c, err, "could not read the connection's settings");
	for (size_t i = 0; i < N_SETTINGS; i++)
	{
		char	   *sql;
		int			rc;

		if (saved->value[i][0] == '\0' || strcmp(now->value[i], saved->value[i]) == 0)
			continue;
		sql = sqlite3_mprintf("PRAGMA %s%s = %s", settings[i].per_schema ? "main." : "",
							  settings[i].name, saved->value[i]);
		rc = sql ? sq_run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);
		sqlite3_free(sql);
		if (rc != MIG_OK)
			return rc;
		changed = 1;
	}
	if (!changed)
		return MIG_OK;
	if (read_settings(c, now) != SQLITE_OK)
		return sq_db_error(c, err, "could not read the connection's settings");
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (saved->value[i][0] != '\0' && strcmp(now->value[i], saved->value[i]) != 0)
		{
			char	   *msg = sqlite3_mprintf("could not put back PRAGMA %s = %s of this connection: it stays %s",
											  settings[i].name, saved->value[i], now->value[i]);

			if (msg)
				sq_notice(c, msg, NULL);
			sqlite3_free(msg);
		}
	/* an exclusive lock kept by locking_mode=exclusive goes at the next
	 * read of the database file */
	return sq_run(c, "PRAGMA main.schema_version", err);
}

/* 1 when the statement sql[0..len) is a PRAGMA that a resume replays:
 * one of the settings above, journal_mode (which lives in the connection
 * in the rollback-journal modes) or case_sensitive_like. */
static int
replayed_pragma(const char *sql, size_t len)
{
	size_t		wlen,
				at = mig_first_word(sql, len, 0, &wlen),
				dlen,
				dot;

	if (!sq_word_is(sql + at, wlen, "PRAGMA"))
		return 0;
	at += wlen;
	at += mig_first_word(sql + at, len - at, 0, &wlen);
	/* schema.name */
	dot = at + wlen + mig_first_word(sql + at + wlen, len - at - wlen, 0, &dlen);
	if (dot < len && sql[dot] == '.')
		at = dot + 1 + mig_first_word(sql + dot + 1, len - dot - 1, 0, &wlen);
	if (sq_word_is(sql + at, wlen, "journal_mode") || sq_word_is(sql + at, wlen, "case_sensitive_like"))
		return 1;
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (sq_word_is(sql + at, wlen, settings[i].name))
			return 1;
	return 0;
}

/* -- running the statements -- */

/* How the runner treats a statement, by its leading keyword. */
enum
{
	KIND_PLAIN,					/* shares a transaction with its progress */
	KIND_TXN,					/* BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT,
								 * RELEASE: the migration's own transaction */
	KIND_AUTOCOMMIT				/* PRAGMA, VACUUM: as they come */
};

static int
statement_kind(const char *sql, size_t len)
{
	static const char *const txn[] = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"};
	size_t		wlen,
				at = mig_first_word(sql, len, 0, &wlen);

	for (size_t i = 0; i < sizeof(txn) / sizeof(txn[0]); i++)
		if (sq_word_is(sql + at, wlen, txn[i]))
			return KIND_TXN;
	if (sq_word_is(sql + at, wlen, "PRAGMA") || sq_word_is(sql + at, wlen, "VACUUM"))
		return KIND_AUTOCOMMIT;
	return KIND_PLAIN;
}

/* A script running outside a transaction. */
typedef struct outside_run
{
	sq_ctx	   *c;
	const mig_script *s;
	const char *text;			/* sq_script_text of s */
	size_t		at;				/* offset of the next statement */
	int64_t		done;			/* statements done */
	uint32_t	crc;			/* mig_checksum_add of the bytes before at */
	sqlite3_stmt *mark;			/* UPDATE of its progress row */
	sqlite3_stmt *begin;		/* BEGIN IMMEDIATE, COMMIT, ROLLBACK */
	sqlite3_stmt *commit;
	sqlite3_stmt *rollback;
} outside_run;

/* Records in the progress row that the statements up to offset next are
 * done (done of them, sum the checksum of those bytes). */
static int
mark(outside_run *r, size_t next, int64_t done, const char *sum, mig_err *err)
{
	sqlite3_stmt *m = r->mark;

	if (sqlite3_bind_text(m, 1, r->s->version, -1, SQLITE_STATIC) != SQLITE_OK ||
		sqlite3_bind_text(m, 2, sum, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
		sqlite3_bind_int64(m, 3, (sqlite3_int64) next) != SQLITE_OK ||
		sqlite3_bind_int64(m, 4, done) != SQLITE_OK ||
		sq_step_all(m) != SQLITE_OK)
		return sq_db_error(r->c, err, "could not record progress");
	return MIG_OK;
}

/*
 * Runs the statement at r->at and records it as done so that no statement
 * runs twice, whatever moment the process dies at:
 * - an ordinary statement in autocommit mode runs as BEGIN IMMEDIATE;
 *   statement; progress; COMMIT: both or neither;
 * - inside the migration's own transaction (BEGIN ... COMMIT, as in the
 *   table rebuild), the progress is written inside it after each
 *   statement, and the progress that covers a statement ending it is
 *   written before it: they commit together, and a rollback (or a crash)
 *   takes the progress back with the statements, so a resume never lands
 *   inside that transaction;
 * - a PRAGMA or VACUUM outside that transaction runs in autocommit mode,
 *   as some must (PRAGMA foreign_keys is ignored inside a transaction,
 *   journal_mode=WAL and VACUUM fail in one, and defer_foreign_keys ends
 *   at the next COMMIT), with its progress committed after it: a crash
 *   between the two runs it again on resume, which is safe: a PRAGMA sets
 *   a value (setting it again changes nothing), reads, or does upkeep that
 *   leaves every row as it was (wal_checkpoint, incremental_vacuum,
 *   optimize), and every resume replays the setting PRAGMAs before it
 *   anyway; VACUUM rebuilds the file with the same content.  (VACUUM
 *   INTO a file fails when the file exists: run again, it stops with that
 *   error rather than doing anything twice.)
 */
static int
outside_step(outside_run *r, mig_err *err)
{
	sq_ctx	   *c = r->c;
	const mig_script *s = r->s;
	sqlite3_stmt *st = NULL;
	size_t		next;
	uint32_t	crc;
	char		sum[16];
	int			wrapped,
				kind,
				src,
				rc;

	if ((rc = sq_prepare_at(c, s, r->text, r->at, &st, &next, err)) != MIG_OK)
		return rc;
	if (st == NULL)
	{
		r->at = next;			/* comments only: nothing to record */
		return MIG_OK;
	}
	crc = mig_checksum_add(r->crc, r->text + r->at, next - r->at);
	mig_checksum_of(crc, sum);
	kind = statement_kind(s->sql + r->at, next - r->at);
	wrapped = kind == KIND_PLAIN && sqlite3_get_autocommit(c->db);
	if (wrapped && sq_step_all(r->begin) != SQLITE_OK)
		rc = sq_db_error(c, err, "BEGIN IMMEDIATE");
	else if (kind == KIND_TXN && !sqlite3_get_autocommit(c->db))
		rc = mark(r, next, r->done + 1, sum, err);
	if (rc == MIG_OK && (src = sq_step_all(st)) != SQLITE_OK)
		rc = sq_stmt_failed(c, s, r->at, src, err);
	/* after a statement that ended the transaction, again: a ROLLBACK took
	 * the progress written before it back */
	if (rc == MIG_OK)
		rc = mark(r, next, r->done + 1, sum, err);
	if (rc == MIG_OK && wrapped && sq_step_all(r->commit) != SQLITE_OK)
		rc = sq_db_error(c, err, "COMMIT");
	if (rc != MIG_OK && wrapped && !sqlite3_get_autocommit(c->db))
		sq_step_all(r->rollback);
	sqlite3_finalize(st);
	if (rc == MIG_OK)
	{
		r->at = next;
		r->done++;
		r->crc = crc;
	}
	return rc;
}

/*
 * On a resume: does again to this connection what the statements done
 * did to theirs, which did not outlive it -- the PRAGMAs among them that
 * set a connection setting (replayed_pragma), with the transaction
 * statements around them, so that a PRAGMA that had no effect inside the
 * migration's own transaction (foreign_keys) has none again.  The
 * statements are found with the tokenizer (sq_statement_end); no other is
 * prepared: a statement that ran may not prepare any more (CREATE TABLE
 * of the table it created), and skipping everything after such a failure
 * once lost a PRAGMA foreign_keys=OFF and let a DROP TABLE cascade.
 */
static int
replay(outside_run *r, mig_err *err)
{
	sq_ctx	   *c = r->c;
	const char *sql = r->s->sql;
	sq_scratch	sc = {NULL, 0};
	size_t		start,
				end;
	int			rc = MIG_OK;

	for (start = 0; rc == MIG_OK && start < r->at; start = end)
	{
		sqlite3_stmt *st = NULL;
		int			src;

		if ((end = sq_statement_end(sql, start, r->at, &sc)) == 0)
		{
			mig_err_nomem(err);
			rc = MIG_NOMEM;
			break;
		}
		if (statement_kind(sql + start, end - start) != KIND_TXN &&
			!replayed_pragma(sql + start, end - start))
			continue;
		/* its own length: SQLite copies this statement alone */
		src = sqlite3_prepare_v3(c->db, sql + start, (int) (end - start), 0, &st, NULL);
		if (src == SQLITE_OK && st)
			src = sq_step_all(st);
		if (src != SQLITE_OK)
			rc = sq_stmt_failed(c, r->s, start, src, err);
		sqlite3_finalize(st);
	}
	sqlite3_free(sc.buf);
	return rc;
}

/* Reads how far an earlier attempt at s got (*start, *done, *crc: 0 for
 * none), refusing when the bytes it ran have changed since, or records
 * that this one starts. */
static int
progress_start(sq_ctx *c, const mig_script *s, size_t *start, int64_t *done, uint32_t *crc,
			   mig_err *err)
{
	sqlite3_stmt *st = NULL;
	int			rc = MIG_OK;

	*start = 0;
	*done = 0;
	*crc = 0;
	if (progress_ready(c, err) != MIG_OK)
		return err->code;
	if (sqlite3_prepare_v2(c->db, "SELECT done_checksum, next_offset, statements_done"
						   " FROM main.migrate_progress WHERE version = ?1 AND down = ?2",
						   -1, &st, NULL) != SQLITE_OK ||
		sqlite3_bind_text(st, 1, s->version, -1, SQLITE_STATIC) != SQLITE_OK ||
		sqlite3_bind_int(st, 2, s->down != 0) != SQLITE_OK)
		rc = sq_db_error(c, err, "could not read migrate_progress");
	else if (sqlite3_step(st) == SQLITE_ROW)
	{
		const char *sum = (const char *) sqlite3_column_text(st, 0);
		int64_t		off = sqlite3_column_int64(st, 1);
		char		now[16] = "";

		*done = sqlite3_column_int64(st, 2);
		if (off >= 0 && (uint64_t) off <= s->len)
		{
			*crc = mig_checksum_add(0, s->sql, (size_t) off);
			mig_checksum_of(*crc, now);
		}
		if (sum == NULL || strcmp(now, sum) != 0)
		{
			mig_err_set(err, MIG_SQLSTATE_STATE,
						"its statements that ran outside a transaction have changed since");
			mig_err_detail(err, "%lld of its statements ran (its first %lld bytes).",
						   (long long) *done, (long long) off);
			mig_err_hint(err, "Restore those statements as they ran; the failed statement and those after it may change.");
			rc = MIG_ERROR;
		}
		else
			*start = (size_t) off;
	}
	sqlite3_finalize(st);
	if (rc == MIG_OK && *start == 0)
	{
		char		empty[16];
		char	   *sql;

		mig_checksum_of(0, empty);
		*done = 0;
		sql = sqlite3_mprintf("INSERT OR REPLACE INTO main.migrate_progress(version, done_checksum,"
							  " next_offset, statements_done, updated_at, last_error, down)"
							  " VALUES(%Q, %Q, 0, 0, strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now'), NULL, %d)",
							  s->version, empty, s->down != 0);
		rc = sql ? sq_run(c, sql, err) : (mig_err_nomem(err), MIG_NOMEM);
		sqlite3_free(sql);
	}
	return rc;
}

/* Prepares the statements the runner steps for every statement of the
 * script (before the unit of work ends: SQLite may prepare nothing more
 * after an out-of-memory error until the calling statement ends). */
static int
prepare_runner(outside_run *r, mig_err *err)
{
	sqlite3 *db = r->c->db;

	if (sqlite3_prepare_v3(db, "UPDATE main.migrate_progress SET done_checksum = ?2,"
						   " next_offset = ?3, statements_done = ?4, last_error = NULL,"
						   " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE version = ?1",
						   -1, SQLITE_PREPARE_PERSISTENT, &r->mark, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &r->begin, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "COMMIT", -1, &r->commit, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "ROLLBACK", -1, &r->rollback, NULL) != SQLITE_OK)
		return sq_db_error(r->c, err, "could not record progress");
	return MIG_OK;
}

/* Refuses to run s outside a transaction inside the caller's. */
static int
refuse_in_txn(sq_ctx *c, const mig_script *s, mig_err *err)
{
	mig_err_set(err, "25001", "%s must run outside a transaction, and %s was called inside one",
				s->down ? "its down script" : "it", c->fn);
	mig_err_detail(err, "It %s to run outside a transaction (%s); nothing was %s.",
				   s->down ? "was recorded" : "is marked",
				   s->nontransactional ? s->nontransactional : "a statement that cannot run in one",
				   s->down ? "rolled back" : "applied");
	mig_err_hint(err, "Call %s in autocommit mode, with no transaction open.", c->fn);
	return MIG_ERROR;
}

/*
 * Runs s (an up script, or with s->down a down script) outside a
 * transaction: takes the lock file, records the start (or finds where an
 * earlier attempt stopped) and commits it with what came before, replays
 * the connection settings of the statements done, runs the rest one at a
 * time (outside_step), puts back the connection settings the script
 * changed, and opens the unit of work again for the core to record it.
 * On error the statements done stay done and last_error says why.
 */
int
sq_exec_outside(void *ctx, const mig_script *s, mig_err *err)
{
	sq_ctx	   *c = ctx;
	outside_run r;
	saved_settings *saved = NULL;	/* [0] the caller's, [1] room */
	char	   *copy = NULL;
	int			rc;

	if (c->in_txn)
		return refuse_in_txn(c, s, err);
	memset(&r, 0, sizeof(r));
	r.c = c;
	r.s = s;
	rc = sq_take_outside_lock(c, s, err);
	if (rc == MIG_OK)
		rc = progress_start(c, s, &r.at, &r.done, &r.crc, err);
	if (rc == MIG_OK && ((r.text = sq_script_text(s, &copy)) == NULL ||
						 (saved = sqlite3_malloc64(2 * sizeof(*saved))) == NULL))
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	if (rc == MIG_OK)
		rc = save_settings(c, saved, err);
	if (rc == MIG_OK)
		rc = prepare_runner(&r, err);
	/* commit what came before (and the progress row): from here on no
	 * transaction is ours */
	if (rc == MIG_OK && (rc = sq_run(c, "COMMIT", err)) == MIG_OK)
		c->locked = 0;
	if (rc == MIG_OK && r.at > 0)
		rc = replay(&r, err);
	while (rc == MIG_OK && r.at < s->len)
		rc = outside_step(&r, err);
	if (rc == MIG_OK && !sqlite3_get_autocommit(c->db))
	{
		mig_err_set(err, "25000", "it ends inside the transaction it opened");
		mig_err_detail(err, "The statements of that transaction were rolled back; the next call runs them again.");
		mig_err_hint(err, "End the transaction with COMMIT.");
		err->offset = (long) s->len;
		rc = MIG_ERROR;
	}
	if (rc != MIG_OK && !c->locked)
	{
		mig_err		ignored;
		char	   *sql;

		/* a transaction the script opened itself is rolled back, and the
		 * error noted beside the progress */
		if (!sqlite3_get_autocommit(c->db))
			sq_step_all(r.rollback);
		sql = sqlite3_mprintf("UPDATE main.migrate_progress SET last_error = %Q WHERE version = %Q",
							  err->message, s->version);
		mig_err_clear(&ignored);
		if (sql)
			sq_run(c, sql, &ignored);
		sqlite3_free(sql);
	}
	if (!c->locked && saved)
	{
		mig_err		ignored;
		int			back = restore_settings(c, &saved[0], &saved[1], rc == MIG_OK ? err : &ignored);

		if (rc == MIG_OK)
			rc = back;
	}
	sqlite3_finalize(r.mark);
	sqlite3_finalize(r.begin);
	sqlite3_finalize(r.commit);
	sqlite3_finalize(r.rollback);
	sqlite3_free(saved);
	sqlite3_free(copy);
	if (rc == MIG_OK)
	{
		/* the lock again, for the history row and what follows */
		if ((rc = sq_run(c, "BEGIN IMMEDIATE", err)) == MIG_OK)
		{
			c->locked = 1;
			snprintf(c->outside_version, sizeof(c->outside_version), "%s", s->version);
		}
	}
	return rc;
}
