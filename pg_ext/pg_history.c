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
	const char *s[7];

	CHECK_FOR_INTERRUPTS();
	slot_getallattrs(slot);
	v = slot->tts_values;
	n = slot->tts_isnull;
	for (int c = 0; c < 7; c++)
		s[c] = n[c] ? NULL : TextDatumGetCString(v[c]);
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
	d->rc = d->cb(d->arg, &row);
	for (int c = 0; c < 7; c++)
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

/* Visits every history row; returns MIG_OK, cb's non-zero code, or
 * MIG_ERROR.  A row's strings live until cb returns. */
static int
pg_history_load(void *ctx, mig_row_cb cb, void *arg, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
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
				   "down_sql IS NOT NULL FROM %s",
				   mp->want_applied_at ? "applied_at::pg_catalog.text" :
				   "NULL::pg_catalog.text", mp->history);
	ret = SPI_execute_extended(sql, &opts);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_SELECT)
		return spi_failed(err, "read", ret);
	return d.rc;
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

/* Records one applied migration. */
static int
pg_history_add(void *ctx, const mig_record *rec, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[10] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[10];
	char		nulls[10];
	char	   *sql;
	int			ret;

	mig_pg_crash_point(mp);
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

	sql = psprintf("INSERT INTO %s (version, name, up_file, down_file, "
				   "checksum, execution_ms, up_sql, down_sql, file_id, "
				   "checksum_norm) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
				   mp->history);
	ret = SPI_execute_with_args(sql, 10, types, values, nulls, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT || SPI_processed != 1)
		return spi_failed(err, "insert into", ret);
	return mig_pg_forget_progress(mp, rec->version, err);
}

/* Deletes the history row of one version. */
static int
pg_history_remove(void *ctx, const char *version, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *sql;
	int			ret;
	uint64		n;

	mig_pg_crash_point(mp);
	values[0] = mig_pg_text_datum(version, strlen(version));
	sql = psprintf("DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) $1",
				   mp->history);
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
	return MIG_OK;
}

/* Returns in *sql (memory from the host's alloc, in UTF-8) the stored down
 * script of version, or NULL when it has none. */
static int
pg_history_down(void *ctx, const char *version, char **sql, size_t *len,
				mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *query;
	const char *down = NULL;
	int			ret;
	int			rc = MIG_OK;

	*sql = NULL;
	*len = 0;
	values[0] = mig_pg_text_datum(version, strlen(version));
	query = psprintf("SELECT down_sql FROM %s "
					 "WHERE version OPERATOR(pg_catalog.=) $1", mp->history);
	ret = SPI_execute_with_args(query, 1, types, values, NULL, false, 0);
	MemoryContextSwitchTo(mp->scratch);
	if (ret != SPI_OK_SELECT)
		rc = spi_failed(err, "read", ret);
	else if (SPI_processed == 1)
		down = text_col(SPI_tuptable, 0, 1);
	if (down != NULL)
	{
		char	   *utf8 = pg_server_to_any(down, strlen(down), PG_UTF8);
		size_t		n = strlen(utf8);

		*sql = mp->host.alloc(mp, n + 1);
		if (*sql == NULL)
		{
			mig_err_nomem(err);
			rc = MIG_NOMEM;
		}
		else
		{
			memcpy(*sql, utf8, n + 1);
			*len = n;
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
}

/*
 * migrate_repair: brings the history row of r->version in line with its
 * file (name, files, checksums, down script, file identity; a NULL down
 * file or script keeps the stored one) and writes an audit row to
 * migrate_repairs (old and new checksum; who and when by default).
 */
static int
pg_history_repair(void *ctx, const mig_repair_row *r, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[9];
	char		nulls[9];
	const char *str[9];
	size_t		lens[9];
	char	   *sql;
	int			ret;
	uint64		n;

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

	sql = psprintf("UPDATE %s SET name = $2, up_file = $3, "
				   "down_file = COALESCE($4, down_file), checksum = $5, "
				   "checksum_norm = $6, down_sql = COALESCE($7, down_sql), "
				   "file_id = $8 WHERE version OPERATOR(pg_catalog.=) $1",
				   mp->history);
	ret = SPI_execute_with_args(sql, 8, types, values, nulls, false, 0);
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
	sql = psprintf("INSERT INTO %s (version, old_checksum, new_checksum) "
				   "VALUES ($1, $2, $3)", mp->repairs);
	values[1] = values[8];
	nulls[1] = nulls[8];
	values[2] = values[4];
	nulls[2] = nulls[4];
	ret = SPI_execute_with_args(sql, 3, types, values, nulls, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL,
					"could not insert into migrate_repairs: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

/*
 * migrate_record: the audit row in migrate_repairs of a migration recorded
 * as applied without running it (no old checksum; action "record", a
 * column that came with 0.3, as did migrate_record).
 */
static int
pg_history_recorded(void *ctx, const char *version, const char *checksum, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char	   *sql;
	int			ret;

	values[0] = mig_pg_text_datum(version, strlen(version));
	values[1] = mig_pg_text_datum(checksum, strlen(checksum));
	sql = psprintf("INSERT INTO %s (version, old_checksum, new_checksum, action) "
				   "VALUES ($1, NULL, $2, 'record')", mp->repairs);
	ret = SPI_execute_with_args(sql, 2, types, values, NULL, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL,
					"could not insert into migrate_repairs: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
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
			appendStringInfo(&buf, "INSERT INTO %s (version, name, up_file, down_file, "
							 "checksum, checksum_norm, execution_ms, up_sql, down_sql)\n"
							 "VALUES (", mp->history);
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
			appendStringInfoString(&buf, ", NULL,\n");
			append_dollar(&buf, rec->up_sql, rec->up_len);
			appendStringInfoString(&buf, ",\n");
			append_dollar(&buf, rec->down_sql, rec->down_len);
			appendStringInfoString(&buf, ");\n");
			break;
		case MIG_PART_FORGET:
			if (rec == NULL)
				break;
			appendStringInfo(&buf, "DELETE FROM %s WHERE version OPERATOR(pg_catalog.=) ",
							 mp->history);
			append_literal(&buf, rec->version);
			appendStringInfoString(&buf, ";\n");
			break;
		case MIG_PART_END:
			appendStringInfoString(&buf, "COMMIT;\n");
			break;
	}
	if (buf.len == 0)
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

/* Whether the current user holds every privilege of mode on rel. */
static bool
may(Oid rel, AclMode mode)
{
	return pg_class_aclmask(rel, GetUserId(), mode, ACLMASK_ALL) == mode;
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
pg_verified_get(void *ctx, char *out, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	Relation	rel;
	TableScanDesc scan;
	Snapshot	snap;
	HeapTuple	tup;

	out[0] = '\0';
	mp->may_verify = false;
	if (!may(mp->verified_oid, ACL_SELECT | ACL_INSERT | ACL_DELETE) ||
		!may(mp->gen_oid, ACL_SELECT) ||
		!TransactionIdIsValid(mp->trigger_xmin = history_counted(mp->history_oid)))
		return MIG_OK;
	mp->gen_seen = history_gen(mp->gen_oid);
	mp->may_verify = true;
	rel = table_open(mp->verified_oid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while (out[0] == '\0' &&
		   (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull,
					xnull;
		Datum		gen = heap_getattr(tup, 2, RelationGetDescr(rel), &isnull);
		Datum		xmin = heap_getattr(tup, 3, RelationGetDescr(rel), &xnull);
		Datum		digest;

		if (isnull || xnull || DatumGetInt64(gen) != mp->gen_seen ||
			DatumGetTransactionId(xmin) != mp->trigger_xmin)
			continue;
		digest = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);
		if (!isnull && VARSIZE_ANY_EXHDR(DatumGetTextPP(digest)) < MIG_DIGEST_MAX)
			text_to_cstring_buffer(DatumGetTextPP(digest), out, MIG_DIGEST_MAX);
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return MIG_OK;
}

/* Stores the digest of a folder found fully applied, with the count of
 * history changes and the trigger's state verified_get saw, in place of
 * the last one. */
static int
pg_verified_put(void *ctx, const char *digest, mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old;
	Oid			types[3] = {TEXTOID, INT8OID, XIDOID};
	Datum		values[3];
	char	   *sql;
	int			ret;

	if (!mp->may_verify)
		return MIG_OK;
	old = MemoryContextSwitchTo(mp->scratch);
	sql = psprintf("WITH gone AS (DELETE FROM %s) "
				   "INSERT INTO %s (digest, history_gen, trigger_xmin) VALUES ($1, $2, $3)",
				   mp->verified, mp->verified);
	values[0] = CStringGetTextDatum(digest);
	values[1] = Int64GetDatum(mp->gen_seen);
	values[2] = TransactionIdGetDatum(mp->trigger_xmin);
	ret = SPI_execute_with_args(sql, 3, types, values, NULL, false, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	if (ret != SPI_OK_INSERT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not write migrate_verified: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

/* ---- another tool's history (migrate_adopt) ---- */

/*
 * Sets *exists when the table, and column if not NULL, exists, the table
 * name resolving through search_path as an unqualified name does.
 */
static int
pg_table_info(void *ctx, const char *table, const char *column, int *exists,
			  mig_err *err)
{
	Oid			relid;

	relid = RangeVarGetRelid(makeRangeVar(NULL, pstrdup(table), -1), NoLock,
							 true);
	*exists = OidIsValid(relid) &&
		(column == NULL || get_attnum(relid, column) != InvalidAttrNumber);
	return MIG_OK;
}

/* Runs one SELECT of ncols columns and hands each row to cb as text. */
static int
pg_query_text(void *ctx, const char *sql, int ncols,
			  int (*cb) (void *arg, const char *const *cells), void *arg,
			  mig_err *err)
{
	MigPg	   *mp = (MigPg *) ctx;
	MemoryContext old = MemoryContextSwitchTo(mp->scratch);
	SPITupleTable *tt;
	const char **cells;
	int			ret;
	int			rc = MIG_OK;

	ret = SPI_execute(sql, false, 0);
	MemoryContextSwitchTo(mp->scratch);
	if (ret != SPI_OK_SELECT || SPI_tuptable->tupdesc->natts < ncols)
	{
		MemoryContextSwitchTo(old);
		mig_err_set(err, MIG_SQLSTATE_INTERNAL,
					"could not read the other tool's history: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	tt = SPI_tuptable;
	cells = palloc(sizeof(char *) * ncols);
	for (uint64 i = 0; i < SPI_processed && rc == MIG_OK; i++)
	{
		CHECK_FOR_INTERRUPTS();
		for (int c = 0; c < ncols; c++)
			cells[c] = SPI_getvalue(tt->vals[i], tt->tupdesc, c + 1);
		rc = cb(arg, cells);
	}
	SPI_freetuptable(tt);
	MemoryContextSwitchTo(old);
	MemoryContextReset(mp->scratch);
	return rc;
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
	mp->host.history_recorded = pg_history_recorded;
	mp->host.script_part = pg_script_part;
	mp->host.table_info = pg_table_info;
	mp->host.query_text = pg_query_text;
	/* the no-op shortcut's tables came with 0.2 */
	mp->history_oid = get_relname_relid("migrate_history", nsp);
	mp->verified_oid = get_relname_relid("migrate_verified", nsp);
	mp->gen_oid = get_relname_relid("migrate_history_gen", nsp);
	if (OidIsValid(mp->history_oid) && OidIsValid(mp->verified_oid) &&
		OidIsValid(mp->gen_oid))
	{
		mp->host.verified_get = pg_verified_get;
		mp->host.verified_put = pg_verified_put;
	}
}
