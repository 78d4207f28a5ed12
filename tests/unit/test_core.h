/*
 * test_core.h -- what the core's unit tests share: the TAP harness (CHECK),
 * the fake host (fake_host.c), the fixture helpers, and every test function,
 * which main() in test_core.c calls in order.
 */
#ifndef TEST_CORE_H
#define TEST_CORE_H

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>
#include <archive.h>
#include <archive_entry.h>

#include "mig_int.h"

/* ---- a tiny TAP harness ---- */
extern int	tests,
			failures;

#define CHECK(cond, ...) check_((cond), #cond, __FILE__, __LINE__, __VA_ARGS__)
void		check_(int ok, const char *cond, const char *file, int line, const char *fmt, ...);

/* ---- the fake host ---- */
typedef struct frow {
	char	   *version,
			   *name,
			   *file,
			   *checksum,
			   *norm,
			   *down,
			   *file_id;
	int64_t		rank;
} frow;

typedef struct fake {
	frow		rows[2100];
	int			n;
	int64_t		next_rank;
	char		log[65536];		/* scripts run, "version:up|" */
	int			opens;			/* open_file calls */
	long		allocs,
				frees,
				fail_at;		/* fail the fail_at-th allocation (1-based), 0 = never */
	size_t		live,
				peak;
	int			busy;			/* lock() answers MIG_BUSY */
	int			notices,
				repairs;
	char		notice[1024];	/* the last one */
	int			locked,
				commits,
				rollbacks;
	/* a snapshot of rows taken at lock, restored on rollback */
	frow		saved[2100];
	int			saved_n;
	/* the no-op shortcut: the stored digest, the count of history changes
	 * it was stored at and the count now (a test editing rows by hand
	 * counts it, as PostgreSQL's trigger does) */
	char		verified[MIG_DIGEST_MAX];
	long		verified_gen,
				gen,
				gen_seen;
	int			loads,			/* history_load calls */
				puts;			/* verified_put calls */
} fake;

void		free_rows(frow *rows, int n);
void		f_release(void *ctx, void *q);
int			f_lock(void *ctx, const mig_lock_opts *o, mig_err *err);
int			f_verified_get(void *ctx, char *out, mig_err *err);
int			f_verified_put(void *ctx, const char *digest, mig_err *err);
void		host_init(mig_host *h, fake *f);
void		host_done(fake *f);
void	   *plain_alloc(size_t n);

/* ---- folders ---- */
extern char dir[256];
extern mig_err err;

void		put(const char *name, const char *text, size_t len);
#define PUT(name, text) put(name, text, strlen(text))
const char *mkpath(const char *name);
void		fresh(void);
int			apply(mig_host *h, int64_t *n);

/* ---- tests ---- */
/* test_names.c */
void		test_versions(void);
void		test_flyway_checksum(void);
void		test_sql_helpers(void);
void		test_layout_rules(void);
void		test_layout_folders(void);
void		test_file_id_format(void);
/* test_apply.c */
void		test_apply_and_down(void);
void		test_refusals(void);
void		test_missing_folder(void);
void		test_status(void);
void		test_oom_sweep(void);
void		test_memory_bound(void);
void		test_cache(void);
void		test_noop_shortcut(void);
/* test_ops.c */
void		test_ops(void);
/* test_archive.c */
void		test_sha256(void);
void		test_archive_refusals(void);
void		test_archive_as_folder(void);
void		test_source_entries(void);
void		test_archive_kept(void);
void		test_archive_oom(void);
/* test_options.c */
void		test_options(void);
void		test_options_split(void);

#endif
