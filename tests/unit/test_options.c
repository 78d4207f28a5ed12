/*
 * test_options.c -- unit tests of the options text: which options each entry
 * point takes, and mig_options_split's tenant and fan-out options.
 */
#define _GNU_SOURCE
#include "test_core.h"

/* The options text: the fan-out options only where the entry point takes
 * them (MIG_USE_EACH), schema= only where it names the tenant or the adopted
 * tool's schema. */
void
test_options(void)
{
	fake		f;
	mig_host	h;
	mig_arena	a;
	mig_options o;
	mig_err		err;

	host_init(&h, &f);
	mig_arena_init(&a, &h);
	memset(&err, 0, sizeof(err));
	CHECK(mig_options_parse_for(&a, "on_error=continue, canary=3 parallel=2 schema=t1",
								MIG_USE_APPLY | MIG_USE_EACH | MIG_USE_TENANT, &o, &err) == MIG_OK &&
		  o.on_error_continue == 1 && o.canary == 3 && o.parallel == 2 &&
		  strcmp(o.schema, "t1") == 0, "fan-out options read: %s", err.message);
	CHECK(mig_options_parse_for(&a, "", MIG_USE_EACH, &o, &err) == MIG_OK &&
		  o.on_error_continue == 0 && o.canary == 0 && o.parallel == 0 && o.schema == NULL,
		  "fan-out defaults: stop at the first failure, no canary, one at a time");
	CHECK(mig_options_parse_for(&a, "on_error=continue", MIG_USE_APPLY, &o, &err) == MIG_ERROR &&
		  strcmp(err.message, "unknown option \"on_error\"") == 0,
		  "on_error refused outside the fan-out functions: %s", err.message);
	CHECK(mig_options_parse_for(&a, "schema=t1", MIG_USE_APPLY, &o, &err) == MIG_ERROR,
		  "schema= refused where the entry point has no tenants");
	CHECK(mig_options_parse_for(&a, "on_error=maybe", MIG_USE_EACH, &o, &err) == MIG_ERROR &&
		  strcmp(err.message, "option on_error takes stop or continue, not \"maybe\"") == 0,
		  "on_error=maybe: %s", err.message);
	CHECK(mig_options_parse_for(&a, "parallel=0", MIG_USE_EACH, &o, &err) == MIG_ERROR &&
		  mig_options_parse_for(&a, "canary=-1", MIG_USE_EACH, &o, &err) == MIG_ERROR &&
		  mig_options_parse_for(&a, "canary=10001", MIG_USE_EACH, &o, &err) == MIG_ERROR,
		  "parallel=0, canary=-1 and canary=10001 refused");
	mig_arena_free(&a);
	host_done(&f);
}

/* mig_options_split: the tenant and the fan-out's options read and taken
 * out, the rest left for the entry point as given, every error as the
 * entry point would give it. */
void
test_options_split(void)
{
	fake		f;
	mig_host	h;
	mig_tenant_options o;
	mig_err		err;
	char	   *rest = NULL;
	int			rc;

	host_init(&h, &f);
	memset(&err, 0, sizeof(err));
	rc = mig_options_split(&h, " schema=acme, target=3 wait=0", MIG_OPTIONS_APPLY, &o, &rest, &err);
	CHECK(rc == MIG_OK && strcmp(o.schema, "acme") == 0 && rest &&
		  strcmp(rest, "target=3,wait=0") == 0, "schema= taken out: %s", rest ? rest : err.message);
	h.release(h.ctx, rest);
	rc = mig_options_split(&h, "on_error=continue canary=2 verbose=true,target=5", MIG_OPTIONS_EACH,
						   &o, &rest, &err);
	CHECK(rc == MIG_OK && o.on_error_continue == 1 && o.canary == 2 &&
		  o.verbose == 1 && o.schema[0] == '\0' && strcmp(rest, "verbose=true,target=5") == 0,
		  "fan-out options taken out: %s", rest ? rest : err.message);
	h.release(h.ctx, rest);
	CHECK(mig_options_split(&h, NULL, MIG_OPTIONS_NONE, &o, &rest, &err) == MIG_OK && rest == NULL &&
		  o.verbose == -1, "no options: nothing to pass on");
	CHECK(mig_options_split(&h, "target=3", MIG_OPTIONS_NONE, &o, &rest, &err) == MIG_ERROR &&
		  rest == NULL && strcmp(err.message, "unknown option \"target\"") == 0 &&
		  strcmp(err.hint, "The options are schema.") == 0,
		  "an entry point without options takes schema= alone: %s / %s", err.message, err.hint);
	CHECK(mig_options_split(&h, "schema=acme", MIG_OPTIONS_EACH, &o, &rest, &err) == MIG_ERROR &&
		  rest == NULL, "no schema= in a fan-out");
	CHECK(mig_options_split(&h, "schema=", MIG_OPTIONS_APPLY, &o, &rest, &err) == MIG_ERROR &&
		  rest == NULL, "an empty schema= refused: %s", err.message);
	CHECK(mig_options_split(&h, "schema=flyway_s,wait=1", MIG_OPTIONS_ADOPT, &o, &rest, &err) == MIG_OK &&
		  o.schema[0] == '\0' && rest && strcmp(rest, "schema=flyway_s,wait=1") == 0,
		  "adopt's schema= is the other tool's, passed on, not a tenant: [%s] [%s]", o.schema,
		  rest ? rest : "(null)");
	h.release(h.ctx, rest);
	rest = NULL;
	CHECK(mig_options_split(&h, "schema=t1 only=flagged", MIG_OPTIONS_SCRIPT, &o, &rest, &err) == MIG_OK &&
		  strcmp(o.schema, "t1") == 0 && rest && strcmp(rest, "only=flagged") == 0,
		  "script takes only= and a tenant: [%s]", rest ? rest : "(null)");
	h.release(h.ctx, rest);
	rest = NULL;
	host_done(&f);
}
