/*
 * sq_script.c -- the off-hours script of the SQLite host (migrate_script):
 * each part of the SQL text a DBA runs with the sqlite3 shell -- its
 * BEGIN with the history's DDL, the migrations' bodies, their history
 * rows, the COMMIT, and in mode=run the steps around a migration outside
 * a transaction.
 */
#include <stdio.h>
#include <string.h>

#include "sq_int.h"
SQLITE_EXTENSION_INIT3

/* ---- the off-hours script ---- */

/* A copy of s[0..len) quoted as an SQL literal ('it''s'), or NULL. */
static char *
quoted(const char *s, size_t len, int *oom)
{
	char	   *copy,
			   *q;

	if (s == NULL)
		return sqlite3_mprintf("NULL");
	if ((copy = sqlite3_malloc64(len + 1)) == NULL)
		return (*oom = 1), NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	q = sqlite3_mprintf("%Q", copy);
	sqlite3_free(copy);
	if (q == NULL)
		*oom = 1;
	return q;
}

int
sq_script_part(void *ctx, int part, const mig_record *r, const mig_lock_opts *lock,
			   char **sql, mig_err *err)
{
	sq_ctx	   *c = ctx;
	char	   *v[9] = {0};
	int			oom = 0;

	(void) lock;				/* SQLite has no lock_timeout */
	switch (part)
	{
		case MIG_PART_BEGIN:
			*sql = sqlite3_mprintf("-- Written by migrate_script.  Run it with the sqlite3 shell's -bail option\n"
								   "-- (sqlite3 -bail app.db < this.sql): without it the shell goes on after\n"
								   "-- an error and commits the statements that did not fail.\n"
								   "BEGIN IMMEDIATE;\n%s;\n", sq_history_ddl);
			break;
		case MIG_PART_END:
		case MIG_PART_END_RUN:
			*sql = sqlite3_mprintf("\nCOMMIT;\n");
			break;
		case MIG_PART_BEGIN_RUN:
			*sql = sqlite3_mprintf("-- Written by migrate_script with mode=run.  Run it with the sqlite3 shell's\n"
								   "-- -bail option (sqlite3 -bail app.db < this.sql).  The statements of a\n"
								   "-- migration marked to run outside a transaction run one at a time, as\n"
								   "-- migrate_apply runs them; while they run no transaction holds the\n"
								   "-- database, so run it when nothing else migrates it.  A failure there\n"
								   "-- leaves the statements before it done: apply the rest with migrate_apply\n"
								   "-- after undoing them, or fix and go on by hand.\n"
								   "BEGIN IMMEDIATE;\n%s;\n", sq_history_ddl);
			break;
		case MIG_PART_LEAVE:
			*sql = sqlite3_mprintf("COMMIT;\n-- outside a transaction, one statement at a time (%s)\n",
								   r->up_file);
			break;
		case MIG_PART_REENTER:
			*sql = sqlite3_mprintf("BEGIN IMMEDIATE;\n");
			break;
		case MIG_PART_FORGET:
			*sql = sqlite3_mprintf("DELETE FROM main.migrate_history WHERE version = %Q;\n", r->version);
			break;
		case MIG_PART_BODY:
			/* the shell splits the script as sqlite3_complete does: a text
			 * ending inside a comment, string or trigger body would take
			 * the history rows and the COMMIT that follow with it */
			if ((*sql = sqlite3_mprintf("%.*s", (int) r->up_len, r->up_sql)) != NULL)
			{
				char	   *probe = sqlite3_mprintf("%s\n;", *sql);

				if (probe == NULL)
				{
					sqlite3_free(*sql);
					*sql = NULL;
				}
				else if (!sqlite3_complete(probe))
				{
					sqlite3_free(probe);
					sqlite3_free(*sql);
					*sql = NULL;
					mig_err_set(err, MIG_SQLSTATE_BAD_NAME,
								"migration %s (%s) ends inside a comment, a string or a trigger body",
								r->version, r->up_file);
					mig_err_detail(err, "In a script, the sqlite3 shell would read the migrations and the COMMIT after it as part of it.");
					mig_err_hint(err, "Close the comment or string at the end of the file.");
					return MIG_ERROR;
				}
				else
					sqlite3_free(probe);
			}
			break;
		default:
			{
				/* the columns of this build, when this database's history
				 * has them (the script is for this database; its BEGIN
				 * creates a missing history with them) */
				int			now = !sq_history_exists(c) || sq_has_column(c, "migrate_history", "down_mode");
				const char *mode = sq_down_mode(r->down_sql, r->down_noop, r->down_outside);
				char		line[16];

				if (r->down_outside && !now)
				{
					mig_err_set(err, MIG_SQLSTATE_TXN_CONTROL,
								"the down script of migration %s (%s) must run outside a transaction",
								r->version, r->up_file);
					mig_err_detail(err, "This database's history, made by an earlier build, cannot say so until a call of this build has taken the lock once.");
					mig_err_hint(err, "Apply it with migrate_apply, or write the script only up to the migration before it with the option target=.");
					return MIG_ERROR;
				}
				snprintf(line, sizeof(line), "%d", r->down_line);
				v[0] = quoted(r->version, strlen(r->version), &oom);
				v[1] = quoted(r->name, strlen(r->name), &oom);
				v[2] = quoted(r->up_file, strlen(r->up_file), &oom);
				v[3] = quoted(r->down_file, r->down_file ? strlen(r->down_file) : 0, &oom);
				v[4] = quoted(r->checksum, strlen(r->checksum), &oom);
				v[5] = quoted(r->checksum_norm, r->checksum_norm ? strlen(r->checksum_norm) : 0, &oom);
				v[6] = quoted(r->up_sql, r->up_len, &oom);
				v[7] = quoted(r->down_sql, r->down_len, &oom);
				v[8] = now ? sqlite3_mprintf(", %Q, %Q, %s", sq_caller(c), mode,
											 r->down_sql ? line : "NULL") :
					sqlite3_mprintf("%s", "");
				if (v[8] == NULL)
					oom = 1;
				*sql = oom ? NULL :
					sqlite3_mprintf("INSERT INTO main.migrate_history(version, name, up_file, down_file,"
									" checksum, checksum_norm, applied_at, execution_ms, up_sql, down_sql%s)\n"
									"VALUES(%s, %s, %s, %s, %s, %s, strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now'), 0,\n%s,\n%s%s);\n",
									now ? ", applied_by, down_mode, down_line" : "",
									v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]);
				/* recorded ahead of older pending migrations (sq_impact.c):
				 * a history of an earlier build gains the column first */
				if (*sql && r->ahead)
				{
					int			add = sq_history_exists(c) && !sq_has_column(c, "migrate_history", "ahead") &&
						!c->ahead_added;
					char	   *more = sqlite3_mprintf("%s%sUPDATE main.migrate_history SET ahead = 1 WHERE version = %s;\n",
													   *sql, add ? "ALTER TABLE main.migrate_history ADD COLUMN ahead INTEGER;\n" : "",
													   v[0]);

					c->ahead_added |= add;
					sqlite3_free(*sql);
					*sql = more;
				}
				for (int i = 0; i < 9; i++)
					sqlite3_free(v[i]);
				break;
			}
	}
	if (*sql == NULL)
	{
		mig_err_nomem(err);
		return MIG_NOMEM;
	}
	return MIG_OK;
}
