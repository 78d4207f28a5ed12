/*
 * mig_ops.c -- the operator's entry points beside apply and rollback:
 * validate, repair, plan (dry run) and the off-hours script.
 */
#include <string.h>

#include "mig_int.h"

static int
not_yet(mig_err *err, const char *what)
{
	mig_err_clear(err);
	mig_err_set(err, "0A000", "%s is not implemented yet", what);
	return MIG_ERROR;
}

int
mig_validate(const mig_host *h, const char *path, mig_problem_cb cb, void *arg,
			 mig_err *err)
{
	(void) h, (void) path, (void) cb, (void) arg;
	return not_yet(err, "migrate_validate");
}

int
mig_repair(const mig_host *h, const char *path, int64_t *repaired, mig_err *err)
{
	(void) h, (void) path;
	*repaired = 0;
	return not_yet(err, "migrate_repair");
}

int
mig_plan_pending(const mig_host *h, const char *path, const char *options,
				 mig_pending_cb cb, void *arg, mig_err *err)
{
	(void) h, (void) path, (void) options, (void) cb, (void) arg;
	return not_yet(err, "migrate_plan");
}

int
mig_script_text(const mig_host *h, const char *path, const char *options,
				char **text, size_t *len, mig_err *err)
{
	(void) h, (void) path, (void) options;
	*text = NULL;
	*len = 0;
	return not_yet(err, "migrate_script");
}
