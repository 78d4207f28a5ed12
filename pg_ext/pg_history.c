/*
 * pg_history.c -- the mig_host callbacks of the PostgreSQL extension that
 * read and write the history tables, all through SPI with $n parameters
 * (or, for the no-op shortcut's one row, a heap scan):
 *
 *   history     @extschema@.migrate_history: rows streamed to the core as
 *               the executor produces them, one row added, removed, read
 *               back for its down script, or repaired (with an audit row in
 *               migrate_repairs);
 *   off-hours   the SQL of migrate_script that records each migration as
 *               migrate_apply would;
 *   no-op       migrate_verified and the change count migrate_history_gen
 *               (common/mig_noop.c), from version 0.2;
 *   adoption    another tool's history table, for migrate_adopt.
 *
 * The rest of the host is in pg_host.c.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "tcop/dest.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "catalog/pg_class.h"
#include "access/relation.h"

#include "pg_host.h"

/* ---- history ---- */

/* Fills err for an unexpected SPI result. */
static int
spi_failed(mig_err *err, const char *what, int ret)
{
	mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not %s migrate_history: %s",
				what, SPI_result_code_string(ret));
	return MIG_ERROR;
}

/*
 * Receives the history rows as the executor produces them and hands each
 * to the core, instead of SPI copying all of them into a tuple table
 * first: with 10,000 rows, megabytes of memory newly touched per call.
 */
typedef struct HistoryDest
{
	DestReceiver pub;
	mig_row_cb	cb;
	void	   *arg;
	int			rc;				/* MIG_OK, or the callback's code */
} HistoryDest;

static bool
history_row(TupleTableSlot *slot, DestReceiver *self)
{
	HistoryDest *d = (HistoryDest *) self;
	mig_hist_row row;
	Datum	   *v;
	bool	   *n;
	const char *s[8];

	CHECK_FOR_INTERRUPTS();
	slot_getallattrs(slot);
	v = slot->tts_values;
	n = slot->tts_isnull;
	for (int c = 0; c < 7; c++)
	{
		char	   *cell;

		if (n[c])
		{
			s[c] = NULL;
			continue;
		}
		/* in UTF-8 for the core */
		cell = TextDatumGetCString(v[c]);
		s[c] = mig_pg_utf8(cell);
		if (s[c] != cell)
			pfree(cell);
	}
	s[7] = n[10] ? NULL : TextDatumGetCString(v[10]);
	memset(&row, 0, sizeof(row));
	row.version = s[0];
	row.name = s[1];
	row.file = s[2];
	row.checksum = s[3];
	row.checksum_norm = s[4];
	row.applied_at = s[5];
	row.file_id = s[6];
	row.exec_ms = n[7] ? -1 : DatumGetFloat8(v[7]);
	row.rank = DatumGetInt64(v[8]);
	row.has_down = DatumGetBool(v[9]) ? 1 : 0;
	row.down_outside = s[7] && strcmp(s[7], "outside") == 0;
	row.down_noop = s[7] && strcmp(s[7], "noop") == 0;
	row.ahead = !n[11] && DatumGetBool(v[11]);
	d->rc = d->cb(d->arg, &row);
	for (int c = 0; c < 8; c++)
		if (s[c] != NULL)
			pfree((char *) s[c]);
	return d->rc == MIG_OK;		/* false stops the scan */
}

static void
history_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
history_shutdown(DestReceiver *self)
{
}

/* A callback and its argument, handed through mig_pg_as_owner. */
typedef struct CbArg
{
	void	   *cb;
	void	   *arg;
} CbArg;

/* Visits every history row; returns MIG_OK, cb's non-zero code, or
 * MIG_ERROR.  A row's strings live until cb returns. */
static int
load_history(MigPg *mp, void *cbarg, mig_err *err)
{
	mig_row_cb	cb = (mig_row_cb) ((CbArg *) cbarg)->cb;
	void	   *arg = ((CbArg *) cbarg)->arg;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	HistoryDest d;
	SPIExecuteOptions opts;
	char	   *sql;
	int			ret;

	memset(&d, 0, sizeof(d));
	d.pub.receiveSlot = history_row;
	d.pub.rStartup = history_startup;
	d.pub.rShutdown = history_shutdown;
	d.pub.rDestroy = history_shutdown;
	/* not DestNone, for which SPI reports a SELECT as SPI_OK_UTILITY */
	d.pub.mydest = DestTuplestore;
	d.cb = cb;
	d.arg = arg;
	d.rc = MIG_OK;
	memset(&opts, 0, sizeof(opts));
	/* Not read-only: a read-only SPI call would reuse the caller's
	 * snapshot, taken before the lock. */
	opts.read_only = false;
	opts.dest = &d.pub;

	/* applied_at is formatted only for migrate_status: applying and rolling
	 * back never look at it. */
	sql = psprintf("SELECT version, name, up_file, checksum, checksum_norm, "
				   "%s, file_id, execution_ms, installed_rank, "
				   "down_sql IS NOT NULL, %s, %s FROM %s WHERE %s",
				   mp->want_applied_at ? "applied_at::pg_catalog.text" :
				   "NULL::pg_catalog.text",
				   mp->v03 ? "down_mode" : "NULL::pg_catalog.text",
				   mp->has_ahead ? "ahead" : "false", mp->history,
				   mig_pg_tenant_cond(mp));
	ret = SPI_execute_extended(sql, &opts);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_SELECT)
		return spi_failed(err, "read", ret);
	return d.rc;
}

static int
pg_history_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err)
{
	CbArg		a = {(void *) cb, arg};

	return mig_pg_as_owner((MigPg *) ctx, load_history, &a, err);
}

/* Text column col (1-based) of row as a C string in the current context,
 * or NULL. */
static const char *
text_col(SPITupleTable *tt, uint64 row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tt->vals[row], tt->tupdesc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* How a stored down script runs, as migrate_history.down_mode says. */
static const char *
down_mode(const char *down_sql, int noop, int outside)
{
	return down_sql == NULL ? NULL : noop ? "noop" : outside ? "outside" : "transaction";
}

/* Records one applied migration, as applied by the caller. */
static int
add_history(MigPg *mp, void *arg, mig_err *err)
{
	const mig_record *rec = (const mig_record *) arg;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[13] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID, TEXTOID, INT4OID};
	Datum		values[13];
	char		nulls[13];
	const char *mode = down_mode(rec->down_sql, rec->down_noop, rec->down_outside);
	char	   *sql;
	int			ret;

	mig_pg_crash_point(mp);
	if (mig_pg_record_fits(rec, err) != MIG_OK)
	{
		MemoryContextSwitchTo(old);
		return MIG_ERROR;
	}
	memset(nulls, ' ', sizeof(nulls));
	values[0] = mig_pg_text_datum(rec->version, strlen(rec->version));
	values[1] = mig_pg_text_datum(rec->name, strlen(rec->name));
	values[2] = mig_pg_text_datum(rec->up_file, strlen(rec->up_file));
	if (rec->down_file != NULL)
		values[3] = mig_pg_text_datum(rec->down_file, strlen(rec->down_file));
	else
		nulls[3] = 'n';
	values[4] = mig_pg_text_datum(rec->checksum, strlen(rec->checksum));
	values[5] = Float8GetDatum(rec->exec_ms);
	values[6] = mig_pg_text_datum(rec->up_sql, rec->up_len);
	if (rec->down_sql != NULL)
		values[7] = mig_pg_text_datum(rec->down_sql, rec->down_len);
	else
		nulls[7] = 'n';
	if (rec->file_id != NULL)
		values[8] = CStringGetTextDatum(rec->file_id);
	else
		nulls[8] = 'n';
	if (rec->checksum_norm != NULL)
		values[9] = CStringGetTextDatum(rec->checksum_norm);
	else
		nulls[9] = 'n';
	values[10] = DirectFunctionCall1(namein, CStringGetDatum(mp->caller_name));
	if (mode != NULL)
		values[11] = CStringGetTextDatum(mode);
	else
		nulls[11] = 'n';
	values[12] = Int32GetDatum(rec->down_line);
	if (rec->down_sql == NULL)
		nulls[12] = 'n';

	if (mp->v03)
		sql = psprintf("INSERT INTO %s (version, name, up_file, down_file, "
					   "checksum, execution_ms, up_sql, down_sql, file_id, "
					   "checksum_norm, applied_by, down_mode, down_line, down_by, applied_at%s) "
					   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $11, "
					   "pg_catalog.clock_timestamp()%s%s)",
					   mp->history, mp->has_tenants ? ", tenant" : "",
					   mp->has_tenants ? ", " : "", mp->has_tenants ? mp->tenant_lit : "");
	else
		sql = psprintf("INSERT INTO %s (version, name, up_file, down_file, "
					   "checksum, execution_ms, up_sql, down_sql, file_id, "
					   "checksum_norm, applied_by, applied_at) "
					   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
					   "pg_catalog.clock_timestamp())",
					   mp->history);
	ret = SPI_execute_with_args(sql, mp->v03 ? 13 : 11, types, values, nulls, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT || SPI_processed != 1)
		return spi_failed(err, "insert into", ret);
	mig_pg_call_note(mp, rec->version);
	return mig_pg_forget_progress(mp, rec->version, err);
}

static int
pg_history_add(void *ctx, const mig_record *rec, mig_err *err)
{
	return mig_pg_as_owner((MigPg *) ctx, add_history, (void *) rec, err);
}

static int remove_history(MigPg *mp, void *arg, mig_err *err);

typedef struct RecordArg
{
	const mig_record *rec;
	bool		replace;
} RecordArg;

static int
record_for_script(MigPg *mp, void *arg, mig_err *err)
{
	RecordArg  *a = (RecordArg *) arg;
	int			rc = MIG_OK;

	if (a->replace)
		rc = remove_history(mp, (void *) a->rec->version, err);
	if (rc == MIG_OK)
		rc = add_history(mp, (void *) a->rec, err);
	return rc;
}

int
mig_pg_script_record(MigPg *mp, const mig_record *rec, bool replace, mig_err *err)
{
	RecordArg	a = {rec, replace};

	return mig_pg_as_owner(mp, record_for_script, &a, err);
}

/* Deletes the history row of one version, and the progress of its down
 * script if it ran outside a transaction. */
static int
remove_history(MigPg *mp, void *arg, mig_err *err)
{
	const char *version = (const char *) arg;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *sql;
	int			ret;
	uint64		n;

	mig_pg_crash_point(mp);
	values[0] = mig_pg_text_datum(version, strlen(version));
	sql = psprintf("DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
				   mp->history, mig_pg_tenant_cond(mp));
	ret = SPI_execute_with_args(sql, 1, types, values, NULL, false, 0);
	n = SPI_processed;
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_DELETE)
		return spi_failed(err, "delete from", ret);
	if (n != 1)
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s is not in migrate_history", version);
		return MIG_ERROR;
	}
	mig_pg_call_note(mp, version);
	if (mp->v03)
		return mig_pg_forget_down_progress(mp, version, err);
	return MIG_OK;
}

static int
pg_history_remove(void *ctx, const char *version, mig_err *err)
{
	return mig_pg_as_owner((MigPg *) ctx, remove_history, (void *) version, err);
}

/* A copy of server-encoded s in UTF-8, from the host's alloc; NULL (and
 * *oom) when out of memory. */
static char *
utf8_copy(MigPg *mp, const char *s, size_t *len, bool *oom)
{
	const char *utf8 = mig_pg_utf8(s);
	size_t		n = strlen(utf8);
	char	   *copy = mp->host.alloc(mp, n + 1);

	if (copy == NULL)
	{
		*oom = true;
		return NULL;
	}
	memcpy(copy, utf8, n + 1);
	if (len)
		*len = n;
	return copy;
}

typedef struct DownArg
{
	const char *version;
	mig_stored_down *d;
} DownArg;

/* Fills a->d with the stored down script of a->version (memory from the
 * host's alloc, in UTF-8; d->sql NULL when it has none), and notes in
 * mp->down_role the role that stored it, as whom it runs. */
static int
read_down(MigPg *mp, void *arg, mig_err *err)
{
	DownArg    *a = (DownArg *) arg;
	mig_stored_down *d = a->d;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *query;
	int			ret;
	int			rc = MIG_OK;
	bool		oom = false;

	memset(d, 0, sizeof(*d));
	mp->down_role = InvalidOid;
	values[0] = mig_pg_text_datum(a->version, strlen(a->version));
	query = psprintf("SELECT down_sql, down_file, %s, %s, %s::pg_catalog.text FROM %s "
					 "WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
					 mp->v03 ? "down_line" : "NULL::pg_catalog.int4",
					 mp->v03 ? "down_mode" : "NULL::pg_catalog.text",
					 mp->v03 ? "COALESCE(down_by, applied_by)" : "applied_by", mp->history,
					 mig_pg_tenant_cond(mp));
	ret = SPI_execute_with_args(query, 1, types, values, NULL, false, 0);
	MemoryContextSwitchTo(mp->scratch);
	if (ret != SPI_OK_SELECT)
		rc = spi_failed(err, "read", ret);
	else if (SPI_processed == 1)
	{
		const char *down = text_col(SPI_tuptable, 0, 1);
		const char *file = text_col(SPI_tuptable, 0, 2);
		const char *mode = text_col(SPI_tuptable, 0, 4);
		const char *by = text_col(SPI_tuptable, 0, 5);
		bool		isnull;
		Datum		line = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);

		if (down != NULL)
		{
			d->sql = utf8_copy(mp, down, &d->len, &oom);
			d->file = file ? utf8_copy(mp, file, NULL, &oom) : NULL;
			d->line = isnull ? 0 : DatumGetInt32(line);
			d->outside = mode && strcmp(mode, "outside") == 0;
			if (by != NULL && !OidIsValid(mp->down_role = get_role_oid(by, true)))
			{
				mig_err_set(err, "42704", "role \"%s\" that applied migration %s does not exist",
							by, a->version);
				mig_err_detail(err, "Its down script runs with the rights of the role that stored it.");
				mig_err_hint(err, "A superuser can set migrate_history.applied_by of that row to an existing role.");
				rc = MIG_ERROR;
			}
		}
	}
	if (oom)
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	if (rc != MIG_OK)
	{
		if (d->sql)
			mp->host.release(mp, d->sql);
		if (d->file)
			mp->host.release(mp, d->file);
		memset(d, 0, sizeof(*d));
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

static int
pg_history_down(void *ctx, const char *version, mig_stored_down *d, mig_err *err)
{
	DownArg		a = {version, d};

	return mig_pg_as_owner((MigPg *) ctx, read_down, &a, err);
}

/*
 * migrate_repair: brings the history row of r->version in line with its
 * file (name, files, checksums, down script and how it runs, file
 * identity; a NULL down file or script keeps the stored one) and writes an
 * audit row to migrate_repairs (old and new checksum, the caller, when).
 * A new down script is the caller's: it will run with the caller's rights.
 */
static int
repair_history(MigPg *mp, void *arg, mig_err *err)
{
	const mig_repair_row *r = (const mig_repair_row *) arg;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[12] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID, TEXTOID, INT4OID};
	Datum		values[12];
	char		nulls[12];
	const char *str[9];
	const char *mode = down_mode(r->down_sql, r->down_noop, r->down_outside);
	size_t		lens[9];
	char	   *sql;
	int			ret;
	uint64		n;
	mig_record	rec = {.version = r->version, .name = r->name,
		.up_file = r->up_file, .down_file = r->down_file,
	.down_sql = r->down_sql, .down_len = r->down_len};

	if (mig_pg_record_fits(&rec, err) != MIG_OK)
	{
		MemoryContextSwitchTo(old);
		return MIG_ERROR;
	}
	str[0] = r->version;
	str[1] = r->name;
	str[2] = r->up_file;
	str[3] = r->down_file;
	str[4] = r->checksum;
	str[5] = r->checksum_norm;
	str[6] = r->down_sql;
	str[7] = r->file_id;
	str[8] = r->old_checksum;
	for (int i = 0; i < 9; i++)
	{
		lens[i] = i == 6 ? r->down_len : (str[i] ? strlen(str[i]) : 0);
		nulls[i] = str[i] ? ' ' : 'n';
		values[i] = str[i] ? mig_pg_text_datum(str[i], lens[i]) : (Datum) 0;
	}
	values[9] = DirectFunctionCall1(namein, CStringGetDatum(mp->caller_name));
	nulls[9] = ' ';
	values[10] = mode ? CStringGetTextDatum(mode) : (Datum) 0;
	nulls[10] = mode ? ' ' : 'n';
	values[11] = Int32GetDatum(r->down_line);
	nulls[11] = r->down_sql ? ' ' : 'n';

	if (mp->v03)
		sql = psprintf("UPDATE %s SET name = $2, up_file = $3, "
					   "down_file = COALESCE($4, down_file), checksum = $5, "
					   "checksum_norm = $6, down_sql = COALESCE($7, down_sql), "
					   "file_id = $8, "
					   "down_by = CASE WHEN $7 IS NULL THEN down_by ELSE $10 END, "
					   "down_mode = CASE WHEN $7 IS NULL THEN down_mode ELSE $11 END, "
					   "down_line = CASE WHEN $7 IS NULL THEN down_line ELSE $12 END "
					   "WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
					   mp->history, mig_pg_tenant_cond(mp));
	else
		sql = psprintf("UPDATE %s SET name = $2, up_file = $3, "
					   "down_file = COALESCE($4, down_file), checksum = $5, "
					   "checksum_norm = $6, down_sql = COALESCE($7, down_sql), "
					   "file_id = $8 WHERE version OPERATOR(pg_catalog.=) $1",
					   mp->history);
	ret = SPI_execute_with_args(sql, mp->v03 ? 12 : 8, types, values, nulls, false, 0);
	n = SPI_processed;
	if (ret != SPI_OK_UPDATE)
	{
		MemoryContextSwitchTo(old);
		return spi_failed(err, "update", ret);
	}
	if (n != 1)
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(mp->scratch);
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s is not in migrate_history", r->version);
		return MIG_ERROR;
	}
	sql = psprintf("INSERT INTO %s (version, old_checksum, new_checksum, repaired_by%s) "
				   "VALUES ($1, $2, $3, $4%s%s)", mp->repairs,
				   mp->has_tenants ? ", tenant" : "", mp->has_tenants ? ", " : "",
				   mp->has_tenants ? mp->tenant_lit : "");
	values[1] = values[8];
	nulls[1] = nulls[8];
	values[2] = values[4];
	nulls[2] = nulls[4];
	values[3] = values[9];
	nulls[3] = ' ';
	types[3] = NAMEOID;
	ret = SPI_execute_with_args(sql, 4, types, values, nulls, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL,
					"could not insert into migrate_repairs: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	mig_pg_call_note(mp, r->version);
	return MIG_OK;
}

static int
pg_history_repair(void *ctx, const mig_repair_row *r, mig_err *err)
{
	return mig_pg_as_owner((MigPg *) ctx, repair_history, (void *) r, err);
}

typedef struct AuditArg
{
	const char *version;
	const char *action;
	const char *old_checksum;
	const char *new_checksum;
} AuditArg;

/* One audit row in migrate_repairs (0.3: with its action). */
static int
write_audit(MigPg *mp, void *arg, mig_err *err)
{
	AuditArg   *a = (AuditArg *) arg;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, NAMEOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			ret;

	values[0] = mig_pg_text_datum(a->version, strlen(a->version));
	values[1] = a->old_checksum ? CStringGetTextDatum(a->old_checksum) : (Datum) 0;
	nulls[1] = a->old_checksum ? ' ' : 'n';
	values[2] = a->new_checksum ? CStringGetTextDatum(a->new_checksum) : (Datum) 0;
	nulls[2] = a->new_checksum ? ' ' : 'n';
	values[3] = DirectFunctionCall1(namein, CStringGetDatum(mp->caller_name));
	values[4] = CStringGetTextDatum(a->action);
	ret = SPI_execute_with_args(mp->has_tenants ?
								psprintf("INSERT INTO %s (version, old_checksum, new_checksum, repaired_by, action, tenant) "
										 "VALUES ($1, $2, $3, $4, $5, %s)", mp->repairs, mp->tenant_lit) :
								psprintf(mp->v03 ?
										 "INSERT INTO %s (version, old_checksum, new_checksum, repaired_by, action) "
										 "VALUES ($1, $2, $3, $4, $5)" :
										 "INSERT INTO %s (version, old_checksum, new_checksum, repaired_by) "
										 "VALUES ($1, $2, $3, $4)", mp->repairs),
								mp->v03 ? 5 : 4, types, values, nulls, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not insert into migrate_repairs: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

static int
pg_audit(void *ctx, const char *version, const char *action, const char *old_checksum,
		 const char *new_checksum, mig_err *err)
{
	AuditArg	a = {version, action, old_checksum, new_checksum};

	return mig_pg_as_owner((MigPg *) ctx, write_audit, &a, err);
}

/* ---- the off-hours script (migrate_script) ---- */

/* Whether sql[0..len) holds needle (a NUL-terminated string). */
static bool
holds(const char *sql, size_t len, const char *needle)
{
	size_t		n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++)
		if (sql[i] == needle[0] && memcmp(sql + i, needle, n) == 0)
			return true;
	return false;
}

/*
 * Appends sql[0..len) to buf as a dollar-quoted literal whose tag the text
 * does not hold ($migrate$, $migrate_1$...): the script stays readable, the
 * text is taken as it is (no escapes), and no part of it can end the
 * literal early.  NULL gives NULL.
 */
static void
append_dollar(StringInfo buf, const char *sql, size_t len)
{
	char		tag[32] = "$migrate";

	if (sql == NULL)
	{
		appendStringInfoString(buf, "NULL");
		return;
	}
	/* no "$tag" at all, so that neither "$tag$" inside nor a text ending
	 * in "$tag" can close the literal before its end */
	for (int i = 1; holds(sql, len, tag); i++)
		snprintf(tag, sizeof(tag), "$migrate_%d", i);
	appendStringInfo(buf, "%s$", tag);
	appendBinaryStringInfo(buf, sql, (int) len);
	appendStringInfo(buf, "%s$", tag);
}

/* Appends s as a quoted literal, or NULL. */
static void
append_literal(StringInfo buf, const char *s)
{
	appendStringInfoString(buf, s ? quote_literal_cstr(s) : "NULL");
}

/*
 * The SQL of one part of an off-hours script, in UTF-8 like the rest of
 * the script (migrate_script converts the whole), in memory from the
 * host's alloc:
 *
 *   BEGIN   opens the transaction and waits for the migration lock (the
 *           same key migrate_apply takes), then sets the rail's
 *           lock_timeout for the migrations (a script has no retries: a
 *           statement that cannot get its lock in time fails the script,
 *           which then changes nothing);
 *   RECORD  inserts the history row as migrate_apply would (the version is
 *           UNIQUE: a script run twice fails there and changes nothing);
 *   FORGET  deletes the row of a repeatable about to run again;
 *   END     commits.
 */
static int
pg_script_part(void *ctx, int part, const mig_record *rec,
			   const mig_lock_opts *lock, char **sql, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	StringInfoData buf;
	int			rc = MIG_OK;

	*sql = NULL;
	initStringInfo(&buf);
	switch (part)
	{
		case MIG_PART_BEGIN:
			mig_pg_rail_set(mp, lock);
			appendStringInfo(&buf, "BEGIN;\n"
							 "-- the migration lock, as migrate_apply and migrate_run take it\n"
							 "SELECT pg_catalog.pg_advisory_xact_lock(" INT64_FORMAT ");\n",
							 (int64) MIGRATE_LOCK_KEY);
			if (mp->rail_timeout_ms > 0)
				appendStringInfo(&buf, "-- how long a statement may queue behind other sessions' locks (lock_timeout=, or migrate.lock_timeout)\n"
								 "SET LOCAL lock_timeout = '%dms';\n", mp->rail_timeout_ms);
			break;
		case MIG_PART_RECORD:
			if (rec == NULL)
				break;
			if (!mp->v03)
			{
				appendStringInfo(&buf, "INSERT INTO %s (version, name, up_file, down_file, "
								 "checksum, checksum_norm, execution_ms, up_sql, down_sql)\n"
								 "VALUES (", mp->history);
			}
			else
			{
				/* no role may write the history but through the
				 * functions: the record is a call, which needs the
				 * migration lock the script took, and stores the calling
				 * role as the one whose rights the down script runs with */
				appendStringInfo(&buf, "SELECT %s.migrate_script_record(", mp->nsp_q);
			}
			append_literal(&buf, rec->version);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->name);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->up_file);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->down_file);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->checksum);
			appendStringInfoString(&buf, ", ");
			append_literal(&buf, rec->checksum_norm);
			appendStringInfoString(&buf, mp->v03 ? ",\n" : ", NULL,\n");
			append_dollar(&buf, rec->up_sql, rec->up_len);
			appendStringInfoString(&buf, ",\n");
			append_dollar(&buf, rec->down_sql, rec->down_len);
			if (mp->v03)
			{
				appendStringInfoString(&buf, ", ");
				append_literal(&buf, down_mode(rec->down_sql, rec->down_noop, rec->down_outside));
				if (rec->down_sql)
					appendStringInfo(&buf, ", %d", rec->down_line);
				else
					appendStringInfoString(&buf, ", NULL");
				appendStringInfo(&buf, ", %s", mp->replace_next ? "true" : "false");
				mp->replace_next = false;
			}
			appendStringInfoString(&buf, ");\n");
			/* recorded ahead of older pending migrations (pg_impact.c) */
			if (rec->ahead && !mp->has_ahead)
			{
				mig_err_set(err, MIG_SQLSTATE_STATE,
							"migration %s would be recorded ahead of older pending migrations, which this extension version cannot record",
							rec->version);
				mig_err_hint(err, "ALTER EXTENSION migrate UPDATE.");
				rc = MIG_ERROR;
			}
			else if (rec->ahead)
			{
				appendStringInfo(&buf, "SELECT %s.migrate_script_ahead(", mp->nsp_q);
				append_literal(&buf, rec->version);
				appendStringInfoString(&buf, ");\n");
			}
			break;
		case MIG_PART_FORGET:
			if (rec == NULL)
				break;
			if (mp->v03)
			{
				/* the record that follows replaces the row */
				mp->replace_next = true;
				appendStringInfoString(&buf, "-- a repeatable that runs again: its row is replaced\n");
				break;
			}
			appendStringInfo(&buf, "DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) ",
							 mp->history);
			append_literal(&buf, rec->version);
			appendStringInfoString(&buf, ";\n");
			break;
		case MIG_PART_BODY:
			if (rec == NULL)
				break;
			appendBinaryStringInfo(&buf, rec->up_sql, (int) rec->up_len);
			if (buf.len == 0)
				appendStringInfoString(&buf, "-- (empty)");
			break;
		case MIG_PART_END:
			appendStringInfoString(&buf, "COMMIT;\n");
			break;
		case MIG_PART_BEGIN_RUN:
			/* as CALL migrate_run: a session lock (released when psql
			 * ends, also after an error), a transaction per migration */
			mig_pg_rail_set(mp, lock);
			appendStringInfo(&buf, "-- Written by migrate_script with mode=run: what CALL migrate_run would do.\n"
							 "-- Run it with psql -v ON_ERROR_STOP=1 -f.  A migration that runs outside a\n"
							 "-- transaction runs statement by statement, without the resume of\n"
							 "-- CALL migrate_run: after a failure there, its statements before the\n"
							 "-- failed one stay done.\n"
							 "-- the migration lock, held by this session until the end\n"
							 "SELECT pg_catalog.pg_advisory_lock(" INT64_FORMAT ");\n"
							 "BEGIN;\n", (int64) MIGRATE_LOCK_KEY);
			if (mp->rail_timeout_ms > 0)
				appendStringInfo(&buf, "SET LOCAL lock_timeout = '%dms';\n", mp->rail_timeout_ms);
			break;
		case MIG_PART_END_RUN:
			appendStringInfo(&buf, "COMMIT;\nSELECT pg_catalog.pg_advisory_unlock(" INT64_FORMAT ");\n",
							 (int64) MIGRATE_LOCK_KEY);
			break;
		case MIG_PART_LEAVE:
			appendStringInfoString(&buf, "COMMIT;\n-- outside a transaction, one statement at a time, as CALL migrate_run runs them\n");
			break;
		case MIG_PART_REENTER:
			appendStringInfoString(&buf, "BEGIN;\n");
			if (mp->rail_timeout_ms > 0)
				appendStringInfo(&buf, "SET LOCAL lock_timeout = '%dms';\n", mp->rail_timeout_ms);
			break;
	}
	if (rc != MIG_OK)
		;						/* err says why */
	else if (buf.len == 0)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "unknown part %d of a migration script", part);
		rc = MIG_ERROR;
	}
	else if ((*sql = mp->host.alloc(mp, buf.len + 1)) == NULL)
	{
		mig_err_nomem(err);
		rc = MIG_NOMEM;
	}
	else
		memcpy(*sql, buf.data, buf.len + 1);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

/* ---- the no-op shortcut (common/mig_noop.c) ---- */

/*
 * The state of the history's trigger that counts every change: the xmin of
 * its pg_trigger row when it is present and enabled ALWAYS, else
 * InvalidTransactionId.  Disabling it to edit the history by hand turns
 * the shortcut off, and enabling it again writes a new row: a digest
 * stored before then is not used.
 */
static TransactionId
history_counted(Oid history)
{
	Relation	rel = table_open(history, AccessShareLock);
	TriggerDesc *td = rel->trigdesc;
	Oid			tgoid = InvalidOid;
	TransactionId xmin = InvalidTransactionId;

	for (int i = 0; td != NULL && i < td->numtriggers; i++)
		if (strcmp(td->triggers[i].tgname, "migrate_history_changed") == 0 &&
			td->triggers[i].tgenabled == TRIGGER_FIRES_ALWAYS)
			tgoid = td->triggers[i].tgoid;
	table_close(rel, AccessShareLock);
	if (OidIsValid(tgoid))
	{
		Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;

		ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(tgoid));
		scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1, &key);
		if (HeapTupleIsValid(tup = systable_getnext(scan)))
			xmin = HeapTupleHeaderGetRawXmin(tup->t_data);
		systable_endscan(scan);
		table_close(tgrel, AccessShareLock);
	}
	return xmin;
}

/* The sequence's count of history changes (0 before the first). */
static int64
history_gen(Oid seq)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		d;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seq);
	fcinfo->args[0].isnull = false;
	d = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(d);
}

/*
 * The digest stored by the last call that found its folder fully applied,
 * if the history has not changed since: its count of changes is still the
 * sequence's (which every session sees at once), and the trigger that
 * keeps that count is on and has been since.  Any row with that count and
 * trigger state will do, whatever the snapshot that shows it: each was a
 * folder found fully applied against the history as it still is.  Read
 * without SQL, which in a new backend costs more than the rows.
 * Remembers both for verified_put.
 */
static int
get_verified(MigPg *mp, void *arg, mig_err *err)
{
	char	   *out = (char *) arg;
	Relation	rel;
	TableScanDesc scan = NULL;
	SysScanDesc iscan = NULL;
	ScanKeyData key;
	Oid			idx = InvalidOid;
	Snapshot	snap;
	HeapTuple	tup;
	AttrNumber	tenant_att;

	out[0] = '\0';
	mp->may_verify = false;
	/* read without SQL (and so without the caller's rights), written as
	 * the owner: every caller gets the shortcut */
	if (!TransactionIdIsValid(mp->trigger_xmin = history_counted(mp->history_oid)))
		return MIG_OK;
	mp->gen_seen = history_gen(mp->gen_oid);
	mp->may_verify = true;
	rel = table_open(mp->verified_oid, AccessShareLock);
	/* 0.3: a digest per tenant, found through the index on tenant (a
	 * thousand tenants have a thousand rows, and a fan-out reads them once
	 * per tenant) */
	tenant_att = mp->has_tenants ? get_attnum(mp->verified_oid, "tenant") : InvalidAttrNumber;
	if (tenant_att > 0)
		idx = get_relname_relid("migrate_verified_tenant", RelationGetNamespace(rel));
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (OidIsValid(idx))
	{
		ScanKeyEntryInitialize(&key, 0, tenant_att, BTEqualStrategyNumber, InvalidOid,
							   TupleDescAttr(RelationGetDescr(rel), tenant_att - 1)->attcollation,
							   F_TEXTEQ, CStringGetTextDatum(mp->tenant));
		iscan = systable_beginscan(rel, idx, true, snap, 1, &key);
	}
	else
		scan = table_beginscan(rel, snap, 0, NULL);
	while (out[0] == '\0' &&
		   (tup = iscan ? systable_getnext(iscan) :
			heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull,
					xnull;
		Datum		gen = heap_getattr(tup, 2, RelationGetDescr(rel), &isnull);
		Datum		xmin = heap_getattr(tup, 3, RelationGetDescr(rel), &xnull);
		Datum		digest;

		if (isnull || xnull || DatumGetInt64(gen) != mp->gen_seen ||
			DatumGetTransactionId(xmin) != mp->trigger_xmin)
			continue;
		if (tenant_att > 0)
		{
			Datum		t = heap_getattr(tup, tenant_att, RelationGetDescr(rel), &isnull);

			if (isnull || strcmp(TextDatumGetCString(t), mp->tenant) != 0)
				continue;
		}
		digest = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);
		if (!isnull && VARSIZE_ANY_EXHDR(DatumGetTextPP(digest)) < MIG_DIGEST_MAX)
			text_to_cstring_buffer(DatumGetTextPP(digest), out, MIG_DIGEST_MAX);
	}
	if (iscan)
		systable_endscan(iscan);
	else
		table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return MIG_OK;
}

static int
pg_verified_get(void *ctx, char *out, mig_err *err)
{
	return mig_pg_as_owner((MigPg *) ctx, get_verified, out, err);
}

/* Stores the digest of a folder found fully applied, with the count of
 * history changes and the trigger's state verified_get saw, in place of
 * the last one. */
static int
put_verified(MigPg *mp, void *arg, mig_err *err)
{
	const char *digest = (const char *) arg;
	MemoryContext old;
	Oid			types[3] = {TEXTOID, INT8OID, XIDOID};
	Datum		values[3];
	char	   *sql;
	int			ret;

	if (!mp->may_verify)
		return MIG_OK;
	old = MemoryContextSwitchTo(mp->scratch);
	if (mp->has_tenants)
		sql = psprintf("WITH gone AS (DELETE FROM %s WHERE %s) "
					   "INSERT INTO %s (digest, history_gen, trigger_xmin, tenant) "
					   "VALUES ($1, $2, $3, %s)",
					   mp->verified, mig_pg_tenant_cond(mp), mp->verified, mp->tenant_lit);
	else
		sql = psprintf("WITH gone AS (DELETE FROM %s) "
					   "INSERT INTO %s (digest, history_gen, trigger_xmin) VALUES ($1, $2, $3)",
					   mp->verified, mp->verified);
	values[0] = CStringGetTextDatum(digest);
	values[1] = Int64GetDatum(mp->gen_seen);
	values[2] = TransactionIdGetDatum(mp->trigger_xmin);
	ret = SPI_execute_with_args(sql, 3, types, values, NULL, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	/* the history trigger's note of a tenant whose digests it deleted no
	 * longer holds (pg_tenant.c) */
	mig_pg_verified_memo_reset();
	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not write migrate_verified: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

static int
pg_verified_put(void *ctx, const char *digest, mig_err *err)
{
	return mig_pg_as_owner((MigPg *) ctx, put_verified, (void *) digest, err);
}

/* ---- another tool's history (migrate_adopt) ---- */

/*
 * The table of another tool: looked up in one schema (the option schema=,
 * else public), never through the caller's search_path, which a role with
 * CREATE on an earlier schema could shadow it through.  Returns its OID,
 * or InvalidOid when there is none; fails (42809) for a relation whose
 * reading could run code: only a plain table -- no view, foreign,
 * partitioned or other relation, no rule, no row level security policy
 * (which are expressions), no column of a type that is not built in
 * (whose output function or cast could be anybody's code).  It is read
 * with ONLY, so no child table is read with it.
 */
static Oid
other_table(const char *schema, const char *table, mig_err *err, bool *bad)
{
	const char *nspname = schema ? schema : "public";
	Oid			nsp = get_namespace_oid(nspname, true);
	Oid			relid;
	HeapTuple	tup;
	Form_pg_class rel;
	const char *why = NULL;

	*bad = false;
	if (!OidIsValid(nsp))
		return InvalidOid;
	relid = get_relname_relid(table, nsp);
	if (!OidIsValid(relid))
		return InvalidOid;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	rel = (Form_pg_class) GETSTRUCT(tup);
	if (rel->relkind == RELKIND_VIEW || rel->relkind == RELKIND_MATVIEW)
		why = "it is a view";
	else if (rel->relkind == RELKIND_FOREIGN_TABLE)
		why = "it is a foreign table";
	else if (rel->relkind != RELKIND_RELATION)
		why = "it is not a plain table";
	else if (rel->relhasrules)
		why = "it has rules";
	else if (rel->relrowsecurity)
		why = "it has row level security";
	ReleaseSysCache(tup);
	if (why == NULL)
	{
		Relation	r = relation_open(relid, AccessShareLock);
		TupleDesc	desc = RelationGetDescr(r);

		for (int i = 0; i < desc->natts && why == NULL; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && att->atttypid >= FirstNormalObjectId)
				why = psprintf("its column \"%s\" has a type that is not built in",
							   NameStr(att->attname));
		}
		relation_close(r, AccessShareLock);
	}
	if (why != NULL)
	{
		mig_err_set(err, "42809", "\"%s\".\"%s\" is not a table migrate_adopt reads: %s",
					nspname, table, why);
		mig_err_detail(err, "Reading another tool's history must not run anybody's code with the caller's rights, so only a plain table of built-in types without rules or row level security is read.");
		mig_err_hint(err, "Restore that tool's own table, or point migrate_adopt at the schema that holds it with the option schema=.");
		*bad = true;
		return InvalidOid;
	}
	return relid;
}

/*
 * Sets *exists when the table, and column if not NULL, exists in schema
 * (NULL: public) and is a plain table; fails for one that is not.
 */
static int
pg_table_info(void *ctx, const char *schema, const char *table, const char *column,
			  int *exists, mig_err *err)
{
	bool		bad;
	Oid			relid = other_table(schema, table, err, &bad);

	if (bad)
		return MIG_ERROR;
	*exists = OidIsValid(relid) &&
		(column == NULL || get_attnum(relid, column) != InvalidAttrNumber);
	return MIG_OK;
}

typedef struct QueryArg
{
	const char *sql;
	int			ncols;
	int			(*cb) (void *arg, const char *const *cells);
	void	   *arg;
} QueryArg;

/* Runs the SELECT of a->ncols columns and hands each row to a->cb as
 * text. */
static int
read_other(MigPg *mp, void *arg, mig_err *err)
{
	QueryArg   *a = (QueryArg *) arg;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	SPITupleTable *tt;
	const char **cells;
	int			ret;
	int			rc = MIG_OK;

	ret = SPI_execute(a->sql, true, 0);
	MemoryContextSwitchTo(mp->scratch);
	if (ret != SPI_OK_SELECT || SPI_tuptable->tupdesc->natts < a->ncols)
	{
		MemoryContextSwitchTo(old);
		mig_err_set(err, MIG_SQLSTATE_INTERNAL,
					"could not read the other tool's history: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	tt = SPI_tuptable;
	cells = palloc(sizeof(char *) * a->ncols);
	for (uint64 i = 0; i < SPI_processed && rc == MIG_OK; i++)
	{
		CHECK_FOR_INTERRUPTS();
		for (int c = 0; c < a->ncols; c++)
		{
			char	   *cell = SPI_getvalue(tt->vals[i], tt->tupdesc, c + 1);

			cells[c] = cell ? mig_pg_utf8(cell) : NULL;	/* UTF-8 for the core */
		}
		rc = a->cb(a->arg, cells);
	}
	SPI_freetuptable(tt);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

/*
 * Reads the other tool's table as its owner, in a security-restricted
 * context with search_path pinned (as VACUUM and ANALYZE read a table):
 * whatever that table would run, it runs with no more rights than its
 * owner has.  With the checks of other_table nothing runs at all; this is
 * the second wall.
 */
static int
pg_query_text(void *ctx, const char *schema, const char *table, const char *cols,
			  const char *order_by, int ncols,
			  int (*cb) (void *arg, const char *const *cells), void *arg,
			  mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	bool		bad;
	Oid			relid = other_table(schema, table, err, &bad);
	QueryArg	a;
	HeapTuple	tup;
	Oid			owner;

	if (bad)
		return MIG_ERROR;
	if (!OidIsValid(relid))
	{
		mig_err_set(err, "42P01", "table \"%s\" of the other tool is gone", table);
		return MIG_ERROR;
	}
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	a.sql = psprintf("SELECT %s FROM ONLY %s%s%s", cols,
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)),
					 order_by ? " ORDER BY " : "", order_by ? order_by : "");
	a.ncols = ncols;
	a.cb = cb;
	a.arg = arg;
	return mig_pg_as(mp, owner, false, read_other, &a, err);
}

/* ---- progress of scripts that stopped half way ---- */

typedef struct ProgressArg
{
	mig_progress_cb cb;
	void	   *arg;
	const char *version;
	int			down;
} ProgressArg;

static int
load_progress(MigPg *mp, void *arg, mig_err *err)
{
	ProgressArg *a = (ProgressArg *) arg;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	int			ret;
	int			rc = MIG_OK;

	ret = SPI_execute(psprintf("SELECT version, %s, statements_done, next_offset, done_checksum, "
							   "last_error, updated_at::pg_catalog.text FROM %s WHERE %s",
							   mp->v03 ? "down" : "false", mp->progress,
							   mig_pg_tenant_cond(mp)), false, 0);
	MemoryContextSwitchTo(mp->scratch);
	if (ret != SPI_OK_SELECT)
	{
		MemoryContextSwitchTo(old);
		return spi_failed(err, "read", ret);
	}
	mp->no_progress = SPI_processed == 0;
	for (uint64 i = 0; i < SPI_processed && rc == MIG_OK; i++)
	{
		mig_progress_row r;
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		memset(&r, 0, sizeof(r));
		r.version = text_col(SPI_tuptable, i, 1);
		r.down = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull)) ? 1 : 0;
		r.statements_done = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		r.next_offset = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		r.done_checksum = text_col(SPI_tuptable, i, 5);
		r.last_error = text_col(SPI_tuptable, i, 6);
		r.updated_at = text_col(SPI_tuptable, i, 7);
		if (r.version != NULL)
			r.version = mig_pg_utf8(r.version);
		if (r.last_error != NULL)
			r.last_error = mig_pg_utf8(r.last_error);
		rc = a->cb(a->arg, &r);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

static int
pg_progress_load(void *ctx, mig_progress_cb cb, void *arg, mig_err *err)
{
	ProgressArg a = {cb, arg, NULL, 0};

	return mig_pg_as_owner((MigPg *) ctx, load_progress, &a, err);
}

static int
forget_progress(MigPg *mp, void *arg, mig_err *err)
{
	ProgressArg *a = (ProgressArg *) arg;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[2] = {TEXTOID, BOOLOID};
	Datum		values[2];
	int			ret;

	values[0] = mig_pg_text_datum(a->version, strlen(a->version));
	values[1] = BoolGetDatum(a->down != 0);
	ret = SPI_execute_with_args(psprintf(mp->v03 ?
										 "DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1 AND %s AND down OPERATOR(pg_catalog.=) $2" :
										 "DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
										 mp->progress, mig_pg_tenant_cond(mp)),
								mp->v03 ? 2 : 1, types, values, NULL, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_DELETE)
		return spi_failed(err, "delete from", ret);
	return MIG_OK;
}

static int
pg_progress_forget(void *ctx, const char *version, int down, mig_err *err)
{
	ProgressArg a = {NULL, NULL, version, down};

	return mig_pg_as_owner((MigPg *) ctx, forget_progress, &a, err);
}

/* ---- set-up ---- */

void
mig_pg_history_host(MigPg *mp, Oid nsp)
{
	mp->host.history_load = pg_history_load;
	mp->host.history_add = pg_history_add;
	mp->host.history_remove = pg_history_remove;
	mp->host.history_down = pg_history_down;
	mp->host.history_repair = pg_history_repair;
	mp->host.script_part = pg_script_part;
	mp->host.table_info = pg_table_info;
	mp->host.query_text = pg_query_text;
	mp->host.audit = pg_audit;
	mp->host.progress_load = pg_progress_load;
	mp->host.progress_forget = pg_progress_forget;
	/* the no-op shortcut's tables came with 0.2 */
	mp->history_oid = get_relname_relid("migrate_history", nsp);
	if (!OidIsValid(mp->history_oid))
		elog(ERROR, "migrate_history is missing from the extension's schema");
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(mp->history_oid));

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for relation %u", mp->history_oid);
		mp->owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
		ReleaseSysCache(tup);
	}
	/* 0.3: down scripts' mode, progress of both directions, the guard,
	 * the call log */
	mp->v03 = get_attnum(mp->history_oid, "down_mode") != InvalidAttrNumber;
	mp->has_ahead = get_attnum(mp->history_oid, "ahead") != InvalidAttrNumber;
	/* 0.3: tenants (pg_tenant.c) */
	mp->has_tenants = get_attnum(mp->history_oid, "tenant") != InvalidAttrNumber;
	mp->calls_oid = get_relname_relid("migrate_calls", nsp);
	mp->calls = MemoryContextStrdup(mp->cxt, psprintf("%s.%s", mp->nsp_q,
													   quote_identifier("migrate_calls")));
	mp->verified_oid = get_relname_relid("migrate_verified", nsp);
	mp->gen_oid = get_relname_relid("migrate_history_gen", nsp);
	if (OidIsValid(mp->history_oid) && OidIsValid(mp->verified_oid) &&
		OidIsValid(mp->gen_oid))
	{
		mp->host.verified_get = pg_verified_get;
		mp->host.verified_put = pg_verified_put;
	}
}
