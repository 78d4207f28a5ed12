/*
 * mig_int.h -- internals shared by the core's files; adapters include only
 * mig.h.
 *
 *   mig_mem.c     arena and growable array over the host allocator
 *   mig_err.c     error formatting
 *   mig_sql.c     SQL text helpers (lines, leading keyword)
 *   mig_layout.c  file-name layouts and version order
 *   mig_sections.c  sections of one-file migrations, non-transactional markers
 *   mig_files.c   folder discovery, safe file reading, content checks,
 *                 checksums
 *   mig_cache.c   file identity; checksums of files already read, across calls
 *   mig_noop.c    the no-op shortcut: a folder found fully applied, digested
 *   mig_plan.c    history against folder: applied, pending, changed...
 *   mig_options.c the options text of migrate_apply
 *   mig_run.c     the apply / rollback / status drivers
 *   mig_adopt.c   importing another tool's history
 *   mig_impact.c  what pending statements will do; the impact policy
 */
#ifndef MIG_INT_H
#define MIG_INT_H

#include "mig.h"

/* ---- memory: an arena of host-allocated chunks, freed at once ---- */
typedef struct mig_chunk mig_chunk;
typedef struct mig_arena {
	const mig_host *h;
	mig_chunk  *head;
	size_t		used;			/* bytes used in head */
	size_t		cap;			/* bytes available in head */
} mig_arena;

void		mig_arena_init(mig_arena *a, const mig_host *h);
/* Returns n bytes aligned for any type, or NULL when out of memory. */
void	   *mig_arena_alloc(mig_arena *a, size_t n);
/* Copies s[0..n) and a NUL into the arena; NULL when out of memory. */
char	   *mig_arena_strndup(mig_arena *a, const char *s, size_t n);
char	   *mig_arena_strdup(mig_arena *a, const char *s);
void		mig_arena_free(mig_arena *a);

/* A growable array of fixed-size items in host memory. */
typedef struct mig_vec {
	const mig_host *h;
	char	   *items;
	size_t		n;
	size_t		cap;
	size_t		size;			/* bytes per item */
} mig_vec;

void		mig_vec_init(mig_vec *v, const mig_host *h, size_t size);
/* Returns a zeroed new last item, or NULL when out of memory. */
void	   *mig_vec_push(mig_vec *v);
/* Makes room for cap items, so that pushing up to that many copies
 * nothing (memory newly touched is what a call with thousands of files
 * spends most on, after the system calls); MIG_OK or MIG_NOMEM. */
int			mig_vec_reserve(mig_vec *v, size_t cap);
#define mig_vec_at(v, T, i) (&((T *) (v)->items)[i])
void		mig_vec_free(mig_vec *v);

/* ---- layouts (mig_layout.c) ---- */
#define MIG_VERSION_MAX 200		/* characters; a longer run is not a version */

enum {
	MIG_LAYOUT_NONE = 0,
	MIG_LAYOUT_UPDOWN,			/* golang-migrate, morph, sqlx reversible */
	MIG_LAYOUT_FLYWAY,
	MIG_LAYOUT_SINGLE,			/* dbmate, goose, sqlx simple: sections */
	MIG_LAYOUT_DIESEL,
	MIG_LAYOUT_FROMTO,			/* MongooseIM: {engine}_{from}_{to}.sql */
	MIG_LAYOUT_VERDIR,			/* memos: {version}/{NN}__{name}.sql */
	MIG_LAYOUTS
};
extern const char *const mig_layout_names[];	/* by MIG_LAYOUT_* */

enum { MIG_KIND_UP = 0, MIG_KIND_DOWN = 1, MIG_KIND_REPEATABLE = 2 };

/*
 * How a folder's migrations are ordered, as its tool orders them
 * (mig_layout.c): by canonical version (mig_version_cmp), or by an order
 * key compared as bytes -- diesel's version as written (dashes removed,
 * leading zeros kept), dbmate's file name.
 */
enum {
	MIG_ORDER_VERSION = 0,
	MIG_ORDER_DIESEL,
	MIG_ORDER_NAME
};

typedef struct mig_name {
	char	   *version;		/* canonical: no leading zeros per part;
								 * "R__{name}" for a repeatable */
	char	   *name;			/* description part of the file name */
	char	   *key;			/* diesel: the version as diesel compares it,
								 * else NULL */
	char	   *from;			/* MongooseIM: the release it upgrades from
								 * (canonical), else NULL */
	const char *engine;			/* MongooseIM: the engine of the prefix
								 * ("postgres", "mysql"...), else NULL */
	unsigned short width;		/* digits of the version as written (small:
								 * discovery holds one per file) */
	unsigned char kind;			/* MIG_KIND_* */
	unsigned char layout;		/* MIG_LAYOUT_* */
	unsigned char go;			/* a goose Go migration ({version}_x.go) */
	unsigned char dbmate;		/* a name only dbmate takes: the digits are
								 * not followed by '_' */
} mig_name;

/* Parses a file name.  Returns 1 and fills out (strings in the arena) when
 * it fits a layout, 0 when it does not, -1 when out of memory. */
int			mig_parse_name(mig_arena *a, const char *file, mig_name *out);
/* The same for a diesel folder name, {version}_{name} (or {version}). */
int			mig_parse_dir_name(mig_arena *a, const char *dir, mig_name *out);
/* 1 when dir names a version folder (memos: 0.22, digits and dots). */
int			mig_verdir_name(const char *dir);
/* Parses file {NN}__{name}.sql of version folder dir (memos).  1, 0 or -1
 * as mig_parse_name. */
int			mig_parse_verdir_file(mig_arena *a, const char *dir, const char *file,
								  mig_name *out);
/* The engine ("postgres", "sqlite", "mysql"...) that word (n bytes) names
 * as a per-engine folder or MongooseIM prefix (pgsql, sqlite3...), or
 * NULL. */
const char *mig_engine_named(const char *word, size_t n);
/* 1 when file is the fresh-install schema that sits beside a layout's
 * migrations (MongooseIM's pg.sql, memos' LATEST.sql): not a migration. */
int			mig_baseline_file(const char *file, int layout);
/* The order key of migration file path (inside the folder read) for
 * order (MIG_ORDER_*), in a; NULL when path gives none (or out of memory:
 * *oom set). */
char	   *mig_order_key(mig_arena *a, int order, const char *path, int *oom);
/* Orders two migrations of a folder of that order: by key (NULL keys: the
 * versions), else by canonical version. */
int			mig_order_cmp(int order, const char *key_a, const char *version_a,
						  const char *key_b, const char *version_b);
/* The canonical form of a version written by another tool ("000042",
 * "1.1", "1_1", "2018-01-14-171611"); NULL when it is not a version
 * (*oom set when out of memory). */
char	   *mig_version_canonical(mig_arena *a, const char *s, int *oom);
/* Reads a version given as an argument (migrate_baseline, migrate_down_to,
 * target=) into *out (in a); fails with 22023 naming it, what prefixed
 * ("" or "target "), when it is not one. */
int			mig_version_arg(mig_arena *a, const char *text, const char *what,
							char **out, mig_err *err);
/* Non-zero for the key of a repeatable migration (R__{name}). */
int			mig_is_repeatable(const char *version);
/* Orders two canonical versions: negative, zero or positive. */
int			mig_version_cmp(const char *a, const char *b);
/* A sort key for a canonical version: its value when it is one number of
 * at most 18 digits (most versions), else MIG_NO_KEY.  Two keys that are
 * not MIG_NO_KEY are ordered as mig_version_cmp orders their versions, so
 * a sort compares them first and the strings only when one has none. */
#define MIG_NO_KEY UINT64_MAX
uint64_t	mig_version_key(const char *v);
/* Non-zero when s is a canonical version (what mig_parse_name produces). */
int			mig_version_valid(const char *s);
/* Names the layouts accepted, for error hints. */
extern const char mig_layout_hint[];

/* ---- sections (mig_sections.c) ---- */
enum { MIG_FORMAT_PLAIN = 0, MIG_FORMAT_DBMATE, MIG_FORMAT_GOOSE };

typedef struct mig_sections {
	int			format;			/* MIG_FORMAT_* */
	size_t		up_off,			/* the up script is text[up_off..up_end) */
				up_end;
	int			has_down;
	size_t		down_off,
				down_end;
	const char *no_txn;			/* the marker asking to run the up script
								 * outside a transaction, or NULL */
	size_t		no_txn_off;
	const char *down_no_txn;	/* the same of the down script (dbmate marks
								 * each section; goose, sqlx and morph the
								 * whole file) */
} mig_sections;

/* Finds the sections of text[start..len) for a file of the given layout
 * (only MIG_LAYOUT_SINGLE files have sections; every layout may carry a
 * non-transactional marker).  where names the file for errors. */
int			mig_sections_parse(const char *text, size_t len, size_t start,
							   int layout, const mig_script *where,
							   mig_sections *sec, mig_err *err);

/* ---- files (mig_files.c) ---- */
#define MIG_PATH_MAX 4096
/* Writes a "/" b into out[MIG_PATH_MAX]; 0 when it does not fit. */
int			mig_join(char *out, const char *a, const char *b);

typedef struct mig_file {
	char	   *version;
	char	   *name;
	char	   *key;			/* order key (mig_order_key), or NULL */
	char	   *up;				/* paths inside the folder */
	char	   *down;			/* NULL when there is no down file (a
								 * one-file migration keeps its down SQL in a
								 * section of up) */
	int			layout;			/* MIG_LAYOUT_* */
	int			go;				/* a goose Go migration: never run here */
} mig_file;

/* Lists the folder and returns its migrations in files (items mig_file,
 * strings in the arena), in the order their tool runs them, and that
 * order (MIG_ORDER_*) in *order when it is not NULL.  Hidden files,
 * editor leftovers and files not ending in .sql are ignored; a .sql name
 * that fits no layout, a subfolder that is no migration, two files for one
 * version, or a down file without an up file is an error naming every
 * such file -- or, when problems is not NULL (a vector of mig_found), one
 * problem each, the migration left out and the discovery going on. */
int			mig_discover(const mig_host *h, mig_arena *a, const char *dir,
						 mig_vec *files, mig_vec *problems, int *order, mig_err *err);

/* A file's bytes read into host memory. */
typedef struct mig_blob mig_blob;
typedef struct mig_text {
	char	   *buf;			/* from host->alloc; NUL-terminated (a file
								 * of a source in memory: the source's own
								 * bytes, not freed) */
	const mig_blob *blob;		/* that file, or NULL for one on disk */
	size_t		len;			/* bytes in the file */
	char		checksum[16];	/* "crc32:xxxxxxxx" of the raw bytes */
	char		norm[16];		/* the same, normalised (mig_checksum_norm) */
	/* identity of what was read, for mig_cache */
	uint64_t	dev,
				ino;
	int64_t		mtime_ns,
				ctime_ns,
				read_ns;		/* wall clock just before it was opened */
} mig_text;

/* Reads dir/file safely (regular file, not a symlink, size cap, optionally
 * not group/world-writable).  The caller frees with mig_text_free. */
int			mig_text_read(const mig_host *h, const char *dir, const char *file,
						  mig_text *t, mig_err *err);
/* Checks the content of a file of migration f (no NUL byte, valid UTF-8)
 * and returns its up or down script in *s, pointing into t: without a
 * leading UTF-8 BOM, and for a one-file migration the section asked for
 * (s->sql NULL when it has no down section). */
int			mig_text_script(const mig_text *t, const mig_file *f, int down,
							mig_script *s, mig_err *err);
void		mig_text_free(const mig_host *h, mig_text *t);
/* Length of the valid UTF-8 character at s[0..n) (n > 0), or 0. */
size_t		mig_utf8_char(const unsigned char *s, size_t n);
/* The same of buf normalised: no BOM, \n line ends, no white space at line
 * ends, no blank lines at the end. */
void		mig_checksum_norm(const char *buf, size_t len, char out[16]);

/* ---- file identity and checksum cache (mig_cache.c) ---- */
/* Writes the identity "dev:ino:size:mtime:ctime" of what t read into
 * out[MIG_FILE_ID_MAX]; 0 (and "") when the file changed too recently
 * before it was read to be trusted later. */
int			mig_file_id_of(const mig_text *t, char *out);
/* Writes the current identity of dir/file, looked up relative to dirfd
 * (dir opened) when it is not -1; 0 when it is not a regular file the host
 * would read (or cannot be looked at). */
int			mig_file_id_now(const mig_host *h, int dirfd, const char *dir,
							const char *file, char *out);
/* mig_file_id_now, and 0 as well when the file changed less than 200 ms
 * before now_ns (mig_wall_ns), too recently for its identity to vouch for
 * its bytes later (as in mig_file_id_of). */
int			mig_file_id_settled(const mig_host *h, int dirfd, const char *dir,
								const char *file, int64_t now_ns, char *out);
/* The wall clock, in nanoseconds since the epoch. */
int64_t		mig_wall_ns(void);
/* FNV-1a (64-bit) of p[0..n), continuing from h (MIG_FNV_BASIS to start). */
#define MIG_FNV_BASIS 1469598103934665603ULL
uint64_t	mig_fnv1a(uint64_t h, const char *p, size_t n);
/* 1 and the checksums when the cache holds dir/file with identity id. */
int			mig_cache_get(mig_cache *c, const char *dir, const char *file,
						  const char *id, char checksum[16], char norm[16]);
/* Remembers the checksum of what t read from dir/file, unless it changed
 * too recently to be trusted; out of memory only means it is not cached. */
void		mig_cache_put(mig_cache *c, const char *dir, const char *file,
						  const mig_text *t);

/* ---- SHA-256 (mig_sha256.c) ---- */
typedef struct mig_sha256 {
	uint32_t	state[8];
	uint64_t	bytes;
	unsigned char buf[64];
	size_t		used;
} mig_sha256;

void		mig_sha256_init(mig_sha256 *s);
void		mig_sha256_update(mig_sha256 *s, const void *data, size_t len);
/* Ends s and writes its digest as 64 lower-case hex digits and a NUL. */
void		mig_sha256_hex(mig_sha256 *s, char out[65]);

/* ---- the folder read: on disk, or a source in memory (mig_source.c) ----
 *
 * Discovery, reading, checksums and file identity go through these, so
 * that a folder and its contents in memory are read by the same code.  The
 * folder of a source in memory is named by its label (mig_source_label),
 * and its subfolders by label/path, as a folder's are by dir/path. */

/* Whether the folder read is in memory (host->source). */
#define MIG_IN_MEMORY(h) ((h)->source != NULL)
/* Calls cb for each entry of folder dir of the source, as host->list_dir
 * does for a folder on disk. */
int			mig_source_list(const mig_source *s, const char *dir, mig_name_cb cb,
							void *arg, mig_err *err);
/* S_IFREG or S_IFDIR of dir/name in the source, or 0 when it has none. */
unsigned	mig_source_kind(const mig_source *s, const char *dir, const char *name);
/* "Reads" dir/file of the source into t: its bytes, not copied, and their
 * checksums; fails as reading a missing file or a folder would. */
int			mig_source_read(const mig_source *s, const char *dir, const char *file,
							mig_text *t, mig_err *err);
/* The identity of dir/file of the source ("mem:crc32:<hex>:<bytes>", its
 * content) into out[MIG_FILE_ID_MAX]; 0 when it holds no such file. */
int			mig_source_id(const mig_source *s, const char *dir, const char *file,
						  char *out);
/* The identity of the file b. */
void		mig_blob_id(const mig_blob *b, char *out);
/* For mig_archive.c: adds an entry (a folder when dir is set: data NULL),
 * and says what the source was made from -- kind ("tar.gz", "zip") and
 * the SHA-256 of the bytes sent -- for its label. */
int			mig_source_put(mig_source *s, const char *name, size_t name_len,
						   const char *data, size_t len, int dir, mig_err *err);
void		mig_source_describe(mig_source *s, const char *kind, const char *sha_hex);
/* The largest file and total the source takes (host's or default). */
size_t		mig_source_max_file(const mig_source *s);
size_t		mig_source_max_total(const mig_source *s);
/* What the source is called in errors: "archive", "JSON object". */
const char *mig_source_noun(const mig_source *s);
/* Bytes of the source's files. */
size_t		mig_source_bytes(const mig_source *s);
/* A copy of sealed source s in the memory of host into (which also gives
 * its limits); MIG_OK or MIG_NOMEM (nothing then allocated). */
int			mig_source_copy(const mig_source *s, const mig_host *into, mig_source **out);

/* ---- options (mig_options.c) ---- */
typedef struct mig_options {
	const char *target;			/* canonical version to stop at, or NULL */
	int			out_of_order;	/* apply pending migrations older than the
								 * newest applied one */
	int			ignore_missing; /* go on when applied files are gone */
	mig_lock_opts lock;			/* wait, if_locked, lock_timeout,
								 * lock_retries */
	int			partial_discard;	/* migrate_repair: forget the progress of
									 * migrations that stopped half way */
	const char *schema;			/* the tenant (issue 22): a schema on
								 * PostgreSQL, an attached database on
								 * SQLite; for migrate_adopt also where the
								 * other tool's table is; NULL: none */
	int			mode_run;		/* dry runs: describe CALL migrate_run
								 * (mode=run), not SELECT migrate_apply */
	/* fan-out over tenants (migrate_apply_each and the like) */
	int			on_error_continue;	/* on_error=continue: go on to the next
									 * tenant after a failure (default stop) */
	int			canary;			/* canary=N: apply to the first N tenants,
								 * stop there if any failed; 0: none */
	int			parallel;		/* parallel=N: N workers (PostgreSQL); 0 or
								 * 1: one tenant at a time */
	mig_policy	policy;			/* the impact policy's options given, */
	unsigned	policy_given;	/* MIG_POLICY_* bits: which */
	int			only_flagged;	/* migrate_script: only the migrations the
								 * policy refuses */
} mig_options;

/* mig_options.policy_given */
#define MIG_POLICY_MAX_LOCK		1u
#define MIG_POLICY_NO_REWRITE	2u
#define MIG_POLICY_MAX_SIZE		4u

/* Which entry points an option is for (mig_options_parse_for). */
#define MIG_USE_APPLY	1u		/* apply, run, plan, script */
#define MIG_USE_REPAIR	2u
#define MIG_USE_ADOPT	4u
#define MIG_USE_DRYRUN	8u		/* plan, script (mode=) */
#define MIG_USE_TENANT	16u		/* entry points that take schema= as the
								 * tenant */
#define MIG_USE_EACH	32u		/* the fan-out functions (*_each) */
#define MIG_USE_VALIDATE 64u	/* validate: the impact policy */
#define MIG_USE_SCRIPT	128u	/* script only (only=) */

/* The defaults: every field 0 or NULL, lock fields -1 (the host's). */
void		mig_options_default(mig_options *o);
/* Reads options text (NULL or empty: the defaults); strings in a.  The
 * _for form takes only the options of the entry points use (MIG_USE_*);
 * mig_options_parse those of apply. */
int			mig_options_parse(mig_arena *a, const char *text, mig_options *o,
							  mig_err *err);
int			mig_options_parse_for(mig_arena *a, const char *text, unsigned use,
								  mig_options *o, mig_err *err);

/* ---- plan (mig_plan.c) ---- */
enum {
	MIG_APPLIED = 0, MIG_PENDING, MIG_CHANGED, MIG_MISSING, MIG_OUT_OF_ORDER,
	MIG_OUTDATED,				/* a repeatable whose file changed: runs again */
	MIG_REFORMATTED,			/* applied; the file changed in white space only */
	MIG_STATES
};
extern const char *const mig_state_names[];

typedef struct mig_hist {
	char	   *version;
	char	   *name;
	char	   *file;
	char	   *checksum;
	char	   *checksum_norm;	/* "" when not kept */
	char	   *applied_at;
	char	   *file_id;		/* NULL when not kept */
	double		exec_ms;
	int64_t		rank;
	int			has_down;
	int			down_outside;	/* its down script runs outside a transaction */
	int			down_noop;		/* its down script is empty: a no-op */
	int			ahead;			/* recorded ahead by an off-hours script
								 * (mig_record.ahead): not counted when
								 * older pending ones are out of order */
} mig_hist;

/* A script that stopped half way outside a transaction (host->progress_load;
 * strings in the plan's arena). */
typedef struct mig_progress {
	char	   *version;
	int			down;
	int64_t		statements_done;
	int64_t		next_offset;
	char	   *done_checksum;
	char	   *last_error;		/* or NULL */
	char	   *updated_at;		/* or NULL */
	int			matched;		/* an entry of the plan points at it */
} mig_progress;

typedef struct mig_entry {
	const mig_file *file;		/* NULL when missing from the folder */
	const mig_hist *hist;		/* NULL when not applied */
	const char *key;			/* order key in a text order (a missing
								 * migration's from its recorded file) */
	int			state;
	char		checksum[16];	/* of the file, when there is one */
	char		norm[16];		/* the same normalised, or "" */
	int			outside;		/* runs outside a transaction (exec_outside) */
	int			down_outside;	/* its down script would (validated pending
								 * migrations) */
	char		down_sum[16];	/* checksum of the down file as validated, or "" */
	const mig_progress *partial;	/* it stopped half way: an up (pending
									 * entries) or its down (applied ones) */
	int			after_target;	/* comes after the option target= (set by
								 * mig_prepare) */
	mig_text   *up;				/* a pending migration's files as validated, */
	mig_text   *down;			/* kept (in the arena) for the apply pass
								 * while they fit MIG_KEEP_BUDGET, else NULL */
} mig_entry;

/* Bytes of validated pending files kept in memory between the validation
 * and the apply pass, so small folders are read once; larger ones are read
 * again, so memory stays bounded whatever the number of migrations. */
#define MIG_KEEP_BUDGET ((size_t) 8 * 1024 * 1024)

/* A problem mig_validate found (strings in the plan's arena). */
typedef struct mig_found {
	char	   *version;		/* or NULL */
	char	   *file;			/* or NULL */
	const char *kind;			/* see mig_problem */
	int			warning;
	char		sqlstate[6];
	char	   *message;		/* context and message of the error */
} mig_found;

typedef struct mig_plan {
	mig_vec    *problems;		/* mig_found: problems noted to go on
								 * (mig_plan_collect), or NULL */
	mig_arena	arena;
	mig_vec		files;			/* mig_file, by version */
	mig_vec		hist;			/* mig_hist *, by version (the rows live in
								 * the arena: a growing vector of pointers
								 * copies and touches far less) */
	mig_vec		entries;		/* mig_entry, by version */
	mig_vec		progress;		/* mig_progress *, scripts half way */
	const char *dir;
	int			order;			/* MIG_ORDER_* of the folder */
	const char *max_applied;	/* version of the last applied migration in
								 * the folder's order, or NULL */
	size_t		count[MIG_STATES];	/* entries per state */
	size_t		kept;			/* bytes of mig_entry.up/down held */
	int			history_read;	/* the history was read (a later failure
								 * is the folder's) */
	int			keeps_file_id;	/* the host's history keeps file identities */
	int			run_mode;		/* checks as CALL migrate_run makes them:
								 * statements outside a transaction can run
								 * (a dry run with mode=run, or validate) */
	int			in_memory;		/* dir is a source in memory (its label) */
} mig_plan;

/* Reads the history (and, when dir is not NULL, the folder, checksumming
 * each applied file) and classifies every migration.  Free with
 * mig_plan_free, also after an error. */
int			mig_plan_build(const mig_host *h, const char *dir, mig_plan *p,
						   mig_err *err);
/* The same, noting in problems (a vector of mig_found, for mig_validate)
 * what would fail it, and going on. */
int			mig_plan_collect(const mig_host *h, const char *dir, mig_plan *p,
							 mig_vec *problems, mig_err *err);
void		mig_plan_free(mig_plan *p);
/* Notes problem e (its context and message) of kind in problems, strings
 * in a. */
int			mig_problem_add(mig_arena *a, mig_vec *problems, const char *version,
							const char *file, const char *kind, int warning,
							const mig_err *e);
/* Fills err with the error of entry e (changed, missing or out of order)
 * as mig_plan_check reports a single one. */
void		mig_entry_error(const mig_plan *p, const mig_entry *e, mig_err *err);
/* The first script of direction down (0 up, 1 down) that stopped half
 * way, or NULL. */
const mig_progress *mig_plan_partial(const mig_plan *p, int down);
/* The errors of a migration half rolled back (apply refuses to go on), and
 * of one applied half way (rollbacks refuse to go on); file may be NULL. */
void		mig_partial_down_error(const mig_progress *g, mig_err *err);
void		mig_partial_up_error(const mig_progress *g, const char *file, mig_err *err);
/* Whether file f comes after version target in the folder's order. */
int			mig_plan_after(const mig_plan *p, const mig_file *f, const char *target);
/* Sets after_target of every entry with a file (target: canonical). */
void		mig_plan_mark_target(mig_plan *p, const char *target);
/* Fails when the plan has changed, missing or out-of-order migrations
 * (the last two unless the options accept them). */
int			mig_plan_check(const mig_plan *p, const mig_options *o, mig_err *err);

/* ---- the no-op shortcut (mig_noop.c) ---- */
typedef struct mig_noop {
	char		digest[MIG_DIGEST_MAX];	/* the folder's, or "" */
	uint64_t	names;			/* hash of its migrations' names alone */
	int			known;			/* digest is the one stored: nothing to do */
} mig_noop;

/* Under the lock, before the history is read: the folder's digest and
 * whether it is the one the host stored (all zero when the host keeps
 * none). */
int			mig_noop_check(const mig_host *h, const char *dir, mig_noop *n,
						   mig_err *err);
/* After planning: has the host store n's digest when plan p found every
 * migration of that same folder applied and unchanged. */
int			mig_noop_remember(const mig_host *h, const mig_plan *p,
							  const mig_noop *n, mig_err *err);
/* After applying: the same, when every migration of p that was not
 * applied is one of the applied_now this call applied (all of them went
 * through): the history is now the folder's, written under the lock. */
int			mig_noop_remember_applied(const mig_host *h, const mig_plan *p,
									  const mig_noop *n, size_t applied_now,
									  mig_err *err);

/* ---- drivers (mig_run.c) ---- */
/* 1 when the call has a folder to read: the host's source in memory (then
 * *path becomes its label), or a non-empty *path; 0 with err filled
 * otherwise. */
int			mig_path_given(const mig_host *h, const char **path, mig_err *err);
/* Takes the host's lock as o says (NULL: the defaults).  MIG_BUSY when it
 * is held and o->skip_if_locked: the holder was shown as a notice and the
 * caller returns 0 without error; otherwise the lock or an error. */
int			mig_lock(const mig_host *h, const mig_lock_opts *o, mig_err *err);
/* Shows a notice through host->notice, if any (printf-style message). */
void		mig_notice(const mig_host *h, const char *detail, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
/* Runs host->check_script or host->exec on s and names the file, version
 * and line in the error (MIG_OUTSIDE from check_script is no error). */
int			mig_run_script(const mig_host *h,
						   int (*fn) (void *, const mig_script *, mig_err *),
						   const mig_script *s, mig_err *err);
/* Validates the files of a migration to apply before anything runs,
 * keeping its texts within MIG_KEEP_BUDGET and its checksums in e. */
int			mig_check_pending(const mig_host *h, mig_plan *p, mig_entry *e,
							  mig_err *err);
/* Sets *outside when the down script of migration f (from the texts of
 * its up file and, when it has one, its down file) must run outside a
 * transaction: marked so, or the host's check says so. */
int			mig_down_outside(const mig_host *h, const mig_file *f, const mig_text *up,
							 const mig_text *down, int *outside, mig_err *err);
/* Non-zero when script s holds no statement (white space and comments). */
int			mig_script_empty(const mig_script *s);
/* Fills err for pending goose Go migration e, which stops apply (and plan
 * and script) before it: how to go on, from folder path. */
void		mig_go_error(const mig_plan *p, const mig_entry *e, const char *path,
						 mig_err *err);
/* Records migration f of folder dir as applied without running it (a Go
 * migration with no SQL; else with its up and down SQL, as adopt and
 * baseline do); its checksum into sum[16] when sum is not NULL. */
int			mig_record_file(const mig_host *h, const char *dir, const mig_file *f,
							char *sum, mig_err *err);
/* Whether a call with options o applies entry e (after mig_prepare, which
 * marks the entries beyond the option target=). */
int			mig_to_apply(const mig_entry *e, const mig_options *o);
/* What apply does before it runs anything: builds and checks the plan,
 * validates every migration to apply (keeping their texts within the
 * budget), and notes reformatted files in a notice.  Free p afterwards. */
int			mig_prepare(const mig_host *h, const char *path, const mig_options *o,
						mig_plan *p, mig_err *err);
/* The up script s and down script ds (ds->sql NULL when none) of a
 * validated entry; *up is its up file's text, kept or read again into
 * tmp[0] (tmp[1] for a down file): free both with mig_text_free. */
int			mig_entry_scripts(const mig_host *h, const char *dir, mig_entry *e,
							  mig_text tmp[2], const mig_text **up, mig_script *s,
							  mig_script *ds, mig_err *err);
/* Reads the up file of f into *up (and its down file into *down) and
 * finds its up script s and down script ds (ds->sql NULL when none); the
 * caller frees both texts with mig_text_free, also after an error. */
int			mig_file_scripts(const mig_host *h, const char *dir, const mig_file *f,
							 mig_text *up, mig_text *down, mig_script *s,
							 mig_script *ds, mig_err *err);
/* The history record of migration f from those (exec_ms 0, file_id
 * NULL). */
void		mig_file_record(const mig_file *f, const mig_text *up, const mig_script *s,
							const mig_script *ds, mig_record *rec);
/* Ends the unit of work opened by host->lock: commits when rc is MIG_OK,
 * else rolls back keeping the first error; returns the outcome. */
int			mig_finish(const mig_host *h, int rc, mig_err *err);

/* Calls begin (when not NULL) with the options parsed for use
 * (MIG_USE_*), then fn for each migration a call with them would apply,
 * in order, with its scripts, after apply's own checks (mig_prepare); runs
 * nothing (mig_ops.c). */
int			mig_each_pending(const mig_host *h, const char *path, const char *options,
							 unsigned use,
							 int (*begin) (void *arg, const mig_options *o, mig_err *err),
							 int (*fn) (void *arg, const mig_entry *e, const mig_text *up,
										const mig_script *s, const mig_script *ds,
										mig_err *err),
							 void *arg, mig_err *err);

/* ---- impact and its policy (mig_impact.c) ---- */
/* The policy a call enforces: the host's defaults, overridden by the
 * options given; 1 when it refuses anything at all. */
int			mig_policy_of(const mig_host *h, const mig_options *o, mig_policy *pol);

/* One call's pass over its pending scripts in order (mig_impact_begin,
 * mig_impact_script for each, mig_impact_end). */
typedef struct mig_impact_pass {
	const mig_host *h;
	mig_policy	pol;
	int			active;			/* the policy refuses something */
	int			first;			/* no script analysed yet */
	int			stop;			/* fail at the first refused statement */
	mig_impact_cb cb;			/* rows go on to cb(arg, row), or nowhere */
	void	   *arg;
	/* of the script being analysed */
	const mig_script *s;
	int64_t		done_before;	/* a migration resumed half way: its
								 * statements before this offset ran */
	int			refused;		/* statements of it the policy refuses */
	mig_err    *err;			/* the call's */
	/* optional: called for each statement refused (without stop), with
	 * the error apply would give */
	int			(*on_refusal) (void *arg, const mig_impact_row *r, const mig_err *e);
	void	   *refusal_arg;
} mig_impact_pass;

void		mig_impact_begin(mig_impact_pass *ip, const mig_host *h, const mig_options *o);
/* Analyses up script s of entry e (a resumed one from where it resumes):
 * rows to ip->cb; ip->refused counts what the policy refuses, and with
 * ip->stop the first of them fails it (55000: file, line, relation, size
 * and lock).  A host without impact analysis has nothing to report. */
int			mig_impact_script(mig_impact_pass *ip, const mig_entry *e, const mig_script *s,
							  mig_err *err);
void		mig_impact_end(mig_impact_pass *ip);
/* Apply's check before anything runs: fails at the first statement the
 * policy of o refuses among the migrations p would apply. */
int			mig_policy_enforce(const mig_host *h, const char *dir, mig_plan *p,
							   const mig_options *o, mig_err *err);
/* Reads a lock mode name (pg_locks' name, any case; "none": 0); -1 when
 * it is none of them. */
int			mig_lock_parse(const char *s, size_t n);

/* ---- errors (mig_err.c) ---- */
/* Adds "migration V (file), line N" to err->context from err->offset. */
void		mig_err_at(mig_err *err, const mig_script *s);
/* Appends to err->detail a list "a, b, c and N more" of up to 20 names. */
void		mig_err_list(mig_err *err, const char *intro, const char *const *names,
						 size_t n);

#endif							/* MIG_INT_H */
