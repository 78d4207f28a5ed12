/*
 * pg_impact_ahead.c -- migrate_script_ahead, which an off-hours script of
 * flagged migrations calls to mark the rows it records ahead of older
 * pending ones (the impact policy: see pg_impact.c).
 */

#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "pg_host.h"

static int
mark_ahead(MigPg *mp, void *arg, mig_err *err)
{
	const char *version = (const char *) arg;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *sql;
	int			ret;
	bool		isnull;
	TransactionId xmin;

	values[0] = mig_pg_text_datum(version, strlen(version));
	sql = psprintf("SELECT xmin::pg_catalog.text FROM %s WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
				   mp->history, mig_pg_tenant_cond(mp));
	ret = SPI_execute_with_args(sql, 1, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not read migrate_history: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	xmin = SPI_processed == 1 ?
		(TransactionId) strtoul(TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
																 SPI_tuptable->tupdesc, 1,
																 &isnull)), NULL, 10) :
		InvalidTransactionId;
	if (!TransactionIdIsValid(xmin) || !TransactionIdIsCurrentTransactionId(xmin))
	{
		mig_err_set(err, MIG_SQLSTATE_STATE,
					"migration %s was not recorded by this transaction", version);
		mig_err_detail(err, "migrate_script_ahead marks only a row the same script recorded just before.");
		return MIG_ERROR;
	}
	sql = psprintf("UPDATE %s SET ahead = true WHERE version OPERATOR(pg_catalog.=) $1 AND %s",
				   mp->history, mig_pg_tenant_cond(mp));
	ret = SPI_execute_with_args(sql, 1, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE || SPI_processed != 1)
	{
		mig_err_set(err, MIG_SQLSTATE_INTERNAL, "could not update migrate_history: %s",
					SPI_result_code_string(ret));
		return MIG_ERROR;
	}
	return MIG_OK;
}

/*
 * migrate_script_ahead(version text) RETURNS void
 *
 * What an off-hours script of the migrations the policy flags
 * (migrate_script only=flagged) calls after recording one that runs ahead
 * of older migrations still pending: marks its row, so that a later
 * migrate_apply runs those older ones without calling them out of order.
 * Only the row this transaction recorded, under the migration lock.
 */
PG_FUNCTION_INFO_V1(migrate_script_ahead);
Datum
migrate_script_ahead(PG_FUNCTION_ARGS)
{
	MigPg	   *mp;
	mig_err		err;
	char	   *version = mig_pg_utf8(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	int			rc;

	if (!DatumGetBool(DirectFunctionCall1(pg_try_advisory_xact_lock_int8,
										  Int64GetDatum(MIGRATE_LOCK_KEY))))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("migrate_script_ahead needs the migration lock"),
				 errdetail("Another session holds it."),
				 errhint("Run the whole script written by migrate_script: it takes the lock first.")));
	mp = mig_pg_begin(fcinfo->flinfo->fn_oid, false);
	if (!mp->has_ahead)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migrate_history has no column ahead"),
				 errhint("ALTER EXTENSION migrate UPDATE.")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	mig_err_clear(&err);
	rc = mig_pg_as_owner(mp, mark_ahead, version, &err);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	mig_pg_end(mp);
	if (rc != MIG_OK)
		mig_pg_report(&err);
	PG_RETURN_VOID();
}
