/*
 * mig.h -- the engine-agnostic migration core.
 *
 * The core discovers migration files in a folder, parses their names,
 * checksums them, plans what is applied, pending, changed, missing or out of
 * order, and drives apply and rollback.  It never includes sqlite3.h or
 * postgres.h: it reaches the database, the file system and memory only
 * through a mig_host (a context pointer plus function pointers) that each
 * adapter (sqlite_ext/, pg_ext/) fills in.  It has no globals, never prints
 * and never exits; every entry point returns MIG_OK or an error code and
 * fills a mig_err that the adapter turns into the engine's own error.
 *
 * Memory: everything the core allocates comes from host->alloc and is given
 * back through host->release before the entry point returns, on success and
 * on error.  A host whose callbacks may long-jump (PostgreSQL's ereport)
 * must hand out memory from a context that the abort frees, and open files
 * through an API that the abort closes; the core holds nothing else.
 */
#ifndef MIG_H
#define MIG_H

#include <stddef.h>
#include <stdint.h>

/* Return codes of every core function and host callback. */
enum {
	MIG_OK = 0,
	MIG_ERROR = 1,			/* described in the mig_err */
	MIG_NOMEM = 2,			/* an allocation failed */
	MIG_BUSY = 3,			/* host->lock only: another caller holds the
							 * migration lock (err says who, 55P03) */
	MIG_OUTSIDE = 4			/* host->check_script only: the script can run,
							 * but outside a transaction (exec_outside) */
};

#define MIG_MSG_MAX		1024
#define MIG_DETAIL_MAX	4096
#define MIG_HINT_MAX	512
#define MIG_CTX_MAX		768

/*
 * An error, in the shape of a PostgreSQL error report: a short lower-case
 * message, optional detail and hint sentences, a SQLSTATE, and a context
 * line naming the migration file, version and line.  Fixed-size buffers, so
 * that reporting an error never allocates.
 */
typedef struct mig_err {
	int			code;			/* MIG_OK, MIG_ERROR or MIG_NOMEM */
	char		sqlstate[6];	/* five characters and a NUL */
	char		message[MIG_MSG_MAX];
	char		detail[MIG_DETAIL_MAX];
	char		hint[MIG_HINT_MAX];
	char		context[MIG_CTX_MAX];	/* "migration 3 (3_a.up.sql), line 7" or
										 * "rollback of migration 3 (a), line 2" */
	long		offset;			/* set by exec/check_script: byte offset of
								 * the failing statement or token, or -1 */
	int			sys_errno;		/* errno of a failed system call, or 0 */
} mig_err;

/* One script the core asks the host to check or run. */
typedef struct mig_script {
	const char *sql;			/* not NUL-terminated; no BOM, no NUL bytes,
								 * valid UTF-8; sql[len] can be read: the
								 * NUL ending the file's text (or a down
								 * script history_down returned, which
								 * hosts end with a NUL), or the byte of
								 * the file that follows a section */
	size_t		len;
	const char *file;			/* file name inside the folder, or "history"
								 * for a down script read back from history */
	const char *version;		/* canonical version text */
	int			down;			/* 1 when this is a rollback script */
	const char *text;			/* the whole file the script is part of (a
								 * section of a dbmate or goose file), for */
	size_t		text_len;		/* line numbers: see mig_script_line */
	const char *nontransactional;	/* the marker asking to run it outside a
									 * transaction (-- +goose NO TRANSACTION,
									 * ...), or NULL */
	const char *checksum;		/* of the file, "crc32:xxxxxxxx" */
	int			first_line;		/* when text is NULL (a down script read
								 * back from the history): the line of
								 * sql[0] in file, from 1 (0: 1) */
} mig_script;

/* One row of the history as the host reads it back (strings are the host's,
 * valid only during the callback). */
typedef struct mig_hist_row {
	const char *version;		/* canonical version text */
	const char *name;
	const char *file;			/* up file name as applied, may be NULL */
	const char *checksum;
	const char *checksum_norm;	/* normalised checksum (mig_record), may be
								 * NULL (rows written before it was kept,
								 * adopted rows) */
	const char *applied_at;		/* the engine's text form, may be NULL */
	double		exec_ms;
	int64_t		rank;			/* order of application, increasing */
	int			has_down;		/* a down script was stored */
	const char *file_id;		/* identity of the up file when it was read
								 * (mig_record.file_id); read by the core
								 * only when host->keeps_file_id */
	int			down_outside;	/* the down script runs outside a
								 * transaction (mig_record.down_outside) */
	int			down_noop;		/* a down script was stored and holds no
								 * statement: rolling back runs nothing */
	int			ahead;			/* recorded by an off-hours script of the
								 * migrations the impact policy flags
								 * (mig_record.ahead) */
} mig_hist_row;

/* What the host stores for a migration it has just applied. */
typedef struct mig_record {
	const char *version;
	const char *name;
	const char *up_file;
	const char *down_file;		/* NULL when there is none */
	const char *checksum;		/* "crc32:xxxxxxxx" of the file's bytes */
	const char *checksum_norm;	/* the same of the file normalised: no BOM,
								 * \n line ends, no trailing white space on
								 * a line or blank lines at the end; equal
								 * checksum_norm but different checksum
								 * means a whitespace-only edit */
	const char *up_sql;
	size_t		up_len;
	const char *down_sql;		/* NULL when there is none */
	size_t		down_len;
	double		exec_ms;
	const char *file_id;		/* identity of the up file as read (device,
								 * inode, size, mtime, ctime), or NULL when
								 * it changed too recently to be trusted */
	int			down_outside;	/* the down script must run outside a
								 * transaction (marked so, or holding a
								 * statement that cannot run in one) */
	int			down_line;		/* line of down_sql[0] in down_file, from 1
								 * (0 when there is no down script) */
	int			down_noop;		/* down_sql holds no statement: rolling
								 * back runs nothing (its tool's rule for a
								 * missing down, or an empty one) */
	int			ahead;			/* recorded by an off-hours script of the
								 * migrations the policy flags (migrate_script
								 * only=flagged) while migrations before it
								 * were still pending: those apply later
								 * without being out of order */
} mig_record;

/* A down script read back from the history (host->history_down). */
typedef struct mig_down {
	char	   *sql;			/* from host->alloc, with a NUL at sql[len],
								 * or NULL when none */
	size_t		len;
	char	   *file;			/* from host->alloc: the file it was read
								 * from when applied, or NULL */
	int			line;			/* line of sql[0] in that file, from 1 (0:
								 * unknown, rows of older builds) */
	int			outside;		/* it must run outside a transaction */
} mig_stored_down;

/* How far a migration that runs outside a transaction got, statement by
 * statement, when it stopped half way (host->progress_load).  An up half
 * way is a pending migration; a down half way, an applied one. */
typedef struct mig_progress_row {
	const char *version;
	int			down;			/* its down script was running */
	int64_t		statements_done;
	int64_t		next_offset;	/* bytes of the script done (of the UTF-8
								 * script the core handed to exec_outside) */
	const char *done_checksum;	/* mig_checksum of script[0..next_offset) */
	const char *last_error;		/* what stopped it, or NULL */
	const char *updated_at;		/* the engine's text, or NULL */
} mig_progress_row;

typedef int (*mig_progress_cb) (void *arg, const mig_progress_row *row);

/* Longest folder digest (mig_host.verified_get), with its NUL. */
#define MIG_DIGEST_MAX 64

/* Longest mig_record.file_id, with its NUL. */
#define MIG_FILE_ID_MAX 112

/* Checksums of files already read, kept by an adapter across calls
 * (mig_cache.c); optional. */
typedef struct mig_cache mig_cache;

/* Creates an empty cache whose memory comes from alloc/release (which
 * must outlive calls); NULL when out of memory. */
mig_cache  *mig_cache_create(void *(*alloc) (size_t), void (*release) (void *));
void		mig_cache_destroy(mig_cache *c);

/* mig_lock_opts.wait_ms of the option wait=forever */
#define MIG_WAIT_FOREVER (-2)

/*
 * What a call asks of the migration lock and of the statements it runs,
 * from its options text (mig_apply_with); other entry points pass the
 * defaults.  -1 means the host's own default.
 */
typedef struct mig_lock_opts {
	long		wait_ms;		/* longest wait for the migration lock: -1
								 * the host's default (PostgreSQL: as
								 * long as it takes; SQLite: the busy
								 * timeout, else 60 s), MIG_WAIT_FOREVER
								 * as long as it takes, 0 no wait */
	int			skip_if_locked; /* when the wait ends without the lock:
								 * 1 the call returns 0 with a notice
								 * naming the holder, 0 it fails (55P03) */
	long		lock_timeout_ms;	/* lock_timeout of migration statements
									 * (PostgreSQL): -1 the server's
									 * migrate.lock_timeout, 0 none */
	int			lock_retries;	/* times a migration that hit that timeout
								 * is tried again, with backoff: -1 the
								 * server's migrate.lock_retries */
	int			verbose;		/* verbose=: 1 show each migration to a
								 * person (SQLite: a line on standard
								 * error), 0 never, -1 the host's default */
} mig_lock_opts;

/* A history row brought in line with its file by mig_repair. */
typedef struct mig_repair_row {
	const char *version;
	const char *name;			/* from the file name now */
	const char *up_file;
	const char *down_file;		/* NULL: keep the stored one */
	const char *old_checksum;	/* as recorded, for the audit */
	const char *checksum;		/* of the file now */
	const char *checksum_norm;
	const char *down_sql;		/* the file's down script now; NULL: keep */
	size_t		down_len;		/* the stored one */
	const char *file_id;		/* may be NULL */
	int			down_outside;	/* with down_sql: see mig_record */
	int			down_line;
	int			down_noop;
} mig_repair_row;

/* Parts of the script mig_script_text writes, asked of host->script_part. */
enum {
	MIG_PART_BEGIN = 0,			/* open the transaction, take the lock,
								 * make sure the history exists */
	MIG_PART_RECORD,			/* record rec as applied (fails when its
								 * version is already recorded) */
	MIG_PART_FORGET,			/* remove rec->version from the history (a
								 * repeatable about to run again) */
	MIG_PART_END,				/* commit */
	MIG_PART_BODY,				/* rec->up_sql as the script runs it; fails
								 * (naming the file) when the text would
								 * swallow what follows it in the script, as
								 * a comment or string left open does */
	MIG_PART_BEGIN_RUN,			/* mode=run: as BEGIN, under a lock that
								 * outlives the commits that follow */
	MIG_PART_END_RUN,			/* mode=run: commit and release that lock */
	MIG_PART_LEAVE,				/* mode=run: commit what came before; the
								 * statements that follow run outside a
								 * transaction, one at a time */
	MIG_PART_REENTER			/* mode=run: open the transaction again */
};

/*
 * Impact (mig_impact.c): what one statement of a pending migration will do
 * to the live database, as the host's analysis finds it without running
 * anything.  Lock modes are PostgreSQL's table lock modes in its own order
 * of strength (storage/lockdefs.h); a host without table locks (SQLite,
 * where one writer locks the whole database) reports MIG_LOCK_NONE.
 */
enum {
	MIG_LOCK_NONE = 0,
	MIG_LOCK_ACCESS_SHARE,
	MIG_LOCK_ROW_SHARE,
	MIG_LOCK_ROW_EXCLUSIVE,
	MIG_LOCK_SHARE_UPDATE_EXCLUSIVE,
	MIG_LOCK_SHARE,
	MIG_LOCK_SHARE_ROW_EXCLUSIVE,
	MIG_LOCK_EXCLUSIVE,
	MIG_LOCK_ACCESS_EXCLUSIVE,
	MIG_LOCK_MODES
};

typedef struct mig_impact_row {
	/* filled by the host (strings its own, valid during the callback) */
	size_t		offset;			/* of the statement's first word in s->sql */
	const char *statement;		/* its first words */
	const char *relation;		/* schema-qualified, as the statement
								 * resolves it; NULL: none, or one created
								 * earlier in the plan */
	int			lock;			/* MIG_LOCK_*: the strongest it takes on
								 * relation */
	int			rewrites;		/* the table or index is rewritten */
	int			scans;			/* the whole table is read under that lock */
	int64_t		bytes;			/* relation's size now; -1: unknown */
	int64_t		pages;			/* SQLite: its pages; -1 elsewhere */
	int64_t		rows;			/* its rows now (an estimate where the
								 * engine keeps one); -1: unknown */
	const char *blocked_by;		/* sessions that now hold or wait for a
								 * conflicting lock on it, or NULL */
	const char *advice;			/* the safer form, or NULL */
	/* filled by the core */
	const char *version;
	const char *file;
	int			line;			/* of the statement, in its file */
	const char *policy;			/* NULL, "refused" (the policy refuses it)
								 * or "accepted" (its migration accepts the
								 * risk: -- migrate:accept) */
} mig_impact_row;

typedef int (*mig_impact_cb) (void *arg, mig_impact_row *row);

/* The impact policy: a statement is refused when the relation it touches
 * is larger than max_bytes and it rewrites it (no_rewrite) or takes a lock
 * on it stronger than max_lock. */
typedef struct mig_policy {
	int			max_lock;		/* MIG_LOCK_*; 0: no limit */
	int			no_rewrite;
	int64_t		max_bytes;		/* relations up to this size are spared */
} mig_policy;

typedef int (*mig_row_cb) (void *arg, const mig_hist_row *row);
typedef int (*mig_name_cb) (void *arg, const char *name);

/*
 * The host interface.  Every callback receives ctx first, returns MIG_OK or
 * an error code, and on error fills err (message, sqlstate) itself.
 */
typedef struct mig_host {
	void	   *ctx;

	/* Memory: alloc returns NULL when out of memory. */
	void	   *(*alloc) (void *ctx, size_t n);
	void		(*release) (void *ctx, void *p);

	/*
	 * Files.  open_file opens path read-only without following a final
	 * symlink and without blocking (O_RDONLY|O_NOFOLLOW|O_NONBLOCK|
	 * O_CLOEXEC) and returns the descriptor, or -1 with err filled (use
	 * mig_err_errno).  The core checks the descriptor with fstat and reads
	 * it with read(2).  list_dir calls cb once for every entry but "." and
	 * "..", and stops early if cb returns non-zero (that code is returned).
	 * open_dir (optional, may be NULL) opens the folder path, following
	 * symlinks (O_RDONLY|O_DIRECTORY|O_CLOEXEC), for the core to lstat its
	 * files relative to it; closed with close_file.
	 */
	int			(*open_file) (void *ctx, const char *path, mig_err *err);
	int			(*open_dir) (void *ctx, const char *path, mig_err *err);
	void		(*close_file) (void *ctx, int fd);
	int			(*list_dir) (void *ctx, const char *path, mig_name_cb cb,
							 void *arg, mig_err *err);

	/*
	 * Unit of work.  lock() takes the migration lock, waiting as the host's
	 * policy says, opens the transaction (or savepoint) and creates the
	 * history if it does not exist; only then does the core read the
	 * history; when it fails it leaves nothing open (the core then calls no
	 * unlock).  When another caller holds the lock past o->wait_ms it
	 * returns MIG_BUSY with err saying who holds it and since when, where
	 * the engine can tell (55P03).  The host keeps o's statement rules
	 * (lock_timeout, retries) for the scripts it runs until unlock.
	 * unlock(commit) ends it: commit != 0 commits, 0 rolls back;
	 * after a failed commit the core calls unlock(0).
	 * checkpoint (optional, may be NULL) is called after each migration is
	 * recorded; a host that commits per migration does it there.
	 */
	int			(*lock) (void *ctx, const mig_lock_opts *o, mig_err *err);
	int			(*unlock) (void *ctx, int commit, mig_err *err);
	int			(*checkpoint) (void *ctx, mig_err *err);

	/* History.  history_load visits every row, in any order; a history
	 * that does not exist yet has no rows.  history_down fills d with the
	 * stored down script of one version (d->sql NULL if none; strings from
	 * alloc, released by the core).  history_remove also forgets the
	 * progress of a down script that ran outside a transaction. */
	int			(*history_load) (void *ctx, mig_row_cb cb, void *arg,
								 mig_err *err);
	int			(*history_add) (void *ctx, const mig_record *rec,
								mig_err *err);
	int			(*history_remove) (void *ctx, const char *version,
								   mig_err *err);
	int			(*history_down) (void *ctx, const char *version, mig_stored_down *d,
								 mig_err *err);
	/* mig_repair: updates the row of r->version as r says and writes an
	 * audit row (old and new checksum, who, when). */
	int			(*history_repair) (void *ctx, const mig_repair_row *r,
								   mig_err *err);
	/* Optional: writes an audit row beside history_repair's, for another
	 * operator action on one version: action is "discard_partial" (its
	 * progress forgotten, migrate_repair partial=discard) or "record"
	 * (recorded as applied without running it); checksums may be NULL. */
	int			(*audit) (void *ctx, const char *version, const char *action,
						  const char *old_checksum, const char *new_checksum,
						  mig_err *err);

	/*
	 * mig_script_text: the engine's SQL for one part of an off-hours script
	 * (MIG_PART_*; rec is NULL for BEGIN and END), in memory from alloc,
	 * NUL-terminated, ending in a newline.  lock: the call's lock rules
	 * (lock_timeout...), for BEGIN only, else NULL.
	 */
	int			(*script_part) (void *ctx, int part, const mig_record *rec,
								const mig_lock_opts *lock, char **sql, mig_err *err);

	/* Optional: a dry run (migrate_plan, migrate_script, migrate_validate)
	 * describes what the procedure form (CALL migrate_run) would do: the
	 * host checks scripts as that form would, accepting statements that
	 * run outside a transaction.  NULL: its apply already runs them. */
	void		(*dry_run_as_run) (void *ctx);

	/* Optional: shows a notice to the caller (PostgreSQL NOTICE, SQLite
	 * sqlite3_log): a migration applied and its duration, a lock skipped,
	 * a whitespace-only edit.  detail may be NULL. */
	void		(*notice) (void *ctx, const char *message, const char *detail);

	/*
	 * Scripts.  check_script (optional) refuses a script that cannot run
	 * here, before anything runs, returning its error (a syntax error
	 * found by the engine's parser too) rather than raising it, so that
	 * mig_validate can list them all; exec runs one whole script.  On error both
	 * set err->offset to the byte offset of the failing statement or token
	 * (or -1); the core then adds the file, version and line.
	 */
	int			(*check_script) (void *ctx, const mig_script *s, mig_err *err);
	int			(*exec) (void *ctx, const mig_script *s, mig_err *err);

	/*
	 * Optional (NULL: such migrations are refused): runs a script that
	 * must run outside a transaction -- an up script marked so
	 * (s->nontransactional) or one for which check_script answered
	 * MIG_OUTSIDE, or a down script recorded so (s->down set).  The host
	 * ends the unit of work (committing what came before) while keeping
	 * the migration lock, runs the statements one at a time, recording
	 * with each how far it got (statement and progress committed together
	 * wherever the statement allows it), so that a call after a failure
	 * resumes at the failed statement (when every byte before it is
	 * unchanged), and opens the unit of work again before it returns; the
	 * core then records the migration with history_add (or removes it
	 * with history_remove), where the host forgets the progress.  On
	 * error the statements that ran stay done.  Offsets and checksums of
	 * the progress are of the script's own (UTF-8) bytes, s->sql.
	 */
	int			(*exec_outside) (void *ctx, const mig_script *s, mig_err *err);
	/* The hints given when such a migration (or down script) is refused
	 * because exec_outside is NULL (PostgreSQL function mode: "use CALL
	 * migrate_run"); NULL for a generic one. */
	const char *outside_hint;
	const char *outside_down_hint;

	/*
	 * Optional (both or neither): the progress of scripts that stopped
	 * half way outside a transaction.  progress_load visits every row;
	 * progress_forget deletes the row of (version, down), if any.
	 */
	int			(*progress_load) (void *ctx, mig_progress_cb cb, void *arg,
								  mig_err *err);
	int			(*progress_forget) (void *ctx, const char *version, int down,
									mig_err *err);

	/*
	 * Another tool's history, for mig_adopt (optional: NULL where adoption
	 * is not available).  Reading a table somebody else created must not
	 * run anybody's code with the caller's rights.  table_info sets
	 * *exists to 1 when table (and, when column is not NULL, that column
	 * of it) exists in schema (NULL: the host's default -- "public" on
	 * PostgreSQL, "main" on SQLite -- never looked up through the caller's
	 * search_path); it fails (42809, naming it) when the table exists but
	 * is not a plain table whose reading runs no code: a view, a foreign
	 * or virtual table, one with rules, row level security, generated
	 * columns or columns of types that are not built in.  query_text reads
	 * "SELECT cols FROM <that table> [ORDER BY order_by]" (cols and
	 * order_by written by the core, over the table's own columns) with no
	 * more rights than the table's owner has and with search_path pinned,
	 * and calls cb with each row's cells as text (NULL for SQL NULL;
	 * booleans as "1"/"0" or "t"/"f"); a non-zero cb result stops it.
	 */
	int			(*table_info) (void *ctx, const char *schema, const char *table,
							   const char *column, int *exists, mig_err *err);
	int			(*query_text) (void *ctx, const char *schema, const char *table,
							   const char *cols, const char *order_by, int ncols,
							   int (*cb) (void *arg, const char *const *cells),
							   void *arg, mig_err *err);

	/* The engine's name, "sqlite" or "postgres": a folder holding
	 * per-engine subfolders (postgres/, sqlite/) is read from this engine's
	 * one.  NULL: no per-engine subfolders. */
	const char *engine;

	/* Optional: a cache that lets a no-op call check applied files with one
	 * lstat each instead of reading them; NULL for none. */
	mig_cache  *cache;

	/*
	 * Optional (both or neither): the no-op shortcut (mig_noop.c), which
	 * lets a call that finds every migration applied skip reading the
	 * history.  verified_get, called under the lock before the history is
	 * read, copies into out[MIG_DIGEST_MAX] the folder digest verified_put
	 * stored last, or "" when there is none -- or when the history has
	 * changed in any way since: the host must notice every change to it,
	 * by this core or by hand, committed in any session.  verified_put
	 * stores the digest of a folder that this call found fully applied,
	 * against the history as it was at verified_get; a host that cannot
	 * write here (a read-only role) does nothing.
	 */
	int			(*verified_get) (void *ctx, char *out, mig_err *err);
	int			(*verified_put) (void *ctx, const char *digest, mig_err *err);

	/* Set when history_add stores mig_record.file_id and history_load
	 * gives it back: a first call on a new connection then checks an
	 * unchanged applied file with one lstat instead of reading it. */
	int			keeps_file_id;

	/* Policy. */
	size_t		max_file_size;	/* bytes; 0 means MIG_DEFAULT_MAX_FILE */
	int			refuse_writable;	/* refuse group/world-writable files */
	size_t		max_archive_size;	/* bytes all the files of a source in
									 * memory may hold together (what an
									 * archive expands to); 0 means
									 * MIG_DEFAULT_MAX_ARCHIVE */

	/*
	 * Optional: the folder's contents in memory (the data forms of the
	 * functions: an archive or a JSON object, see mig_source below).  When
	 * set, every entry point reads its migrations from it, the same way it
	 * reads a folder (layouts, order, checksums, refusals), opens no file
	 * and ignores its path argument (errors name the source by its label,
	 * "archive (tar.gz, 3 files)"); NULL: folders on disk, through the
	 * file callbacks above.
	 */
	const struct mig_source *source;

	/*
	 * Optional (NULL: no impact analysis, no impact policy): calls cb once
	 * per top-level statement of script s, in order, with what it will do
	 * (mig_impact_row, the host's fields), running nothing and taking no
	 * lock beyond catalog lookups; a non-zero cb result stops it and is
	 * returned with err as cb left it.  Scripts come in the order they
	 * would run: first is set for the first of a call, when the host
	 * forgets what earlier calls' scripts created; relations an earlier
	 * script of the same call creates are reported with a NULL relation.
	 * s NULL (cb NULL): the call is over, release what it kept.
	 */
	int			(*impact) (void *ctx, const mig_script *s, int first,
						   mig_impact_cb cb, void *arg, mig_err *err);
	/* The policy's defaults (PostgreSQL: the migrate. settings); the
	 * options of a call override each; all zero: none. */
	mig_policy	policy;
} mig_host;

#define MIG_DEFAULT_MAX_FILE	((size_t) 64 * 1024 * 1024)
#define MIG_DEFAULT_MAX_ARCHIVE ((size_t) 256 * 1024 * 1024)
/* Most entries (files and folders) a source in memory may have. */
#define MIG_MAX_ENTRIES			100000

/*
 * A migration folder's contents in memory (mig_source.c, mig_archive.c):
 * what the data forms of the functions read instead of a folder on disk.
 * Built from an archive (tar, gzip-compressed tar or zip, read with
 * libarchive) or entry by entry (an adapter's JSON object of file names and
 * texts), with the same rules for both: names relative to the folder, no
 * absolute or ".." names, valid UTF-8, regular files and folders only, no
 * entry twice, each file within host->max_file_size and all of them within
 * host->max_archive_size.  Its memory comes from the host that built it
 * (freed with mig_source_free); set host->source to read from it.
 */
typedef struct mig_source mig_source;

/* Reads an archive of data[0..len) (not kept: the files are copied) into
 * *out.  Fails naming the entry for every rule above, and 22P03 for data
 * that is no archive, corrupt or cut short. */
int			mig_source_archive(const mig_host *h, const void *data, size_t len,
							   mig_source **out, mig_err *err);
/* Starts a source built entry by entry; noun names it in errors ("JSON
 * object"). */
int			mig_source_new(const mig_host *h, const char *noun, mig_source **out,
						   mig_err *err);
/* Adds file name[0..name_len) (a path relative to the folder) holding
 * data[0..len) (copied).  name may not be a folder of another entry. */
int			mig_source_add(mig_source *s, const char *name, size_t name_len,
						   const char *data, size_t len, mig_err *err);
/* Ends the entries of mig_source_new: checks duplicates and that it holds
 * a file at all (22023 when it holds none). */
int			mig_source_seal(mig_source *s, mig_err *err);
/* "archive (tar.gz, 3 files)" or "JSON object (3 files)": how errors name
 * it. */
const char *mig_source_label(const mig_source *s);
/* "archive sha256:<hex of the bytes sent> (tar.gz, 3 files)" or "JSON
 * object sha256:<hex of its files> (3 files)": how the call log names it. */
const char *mig_source_logged(const mig_source *s);
void		mig_source_free(mig_source *s);

/*
 * The last archive a connection read, kept (mig_archive.c): a deployment
 * sends the same one at every start.  Its memory comes from alloc/release,
 * which must outlive calls.  mig_source_archive_cached reads data as
 * mig_source_archive does, or returns the source kept when data has the
 * same bytes (SHA-256) and the host the same limits; *owned is set when
 * the caller must free the result (an archive too large to keep, or c
 * NULL), else the cache keeps it until the next call or its destruction.
 */
typedef struct mig_source_cache mig_source_cache;

mig_source_cache *mig_source_cache_create(void *(*alloc) (size_t), void (*release) (void *));
void		mig_source_cache_destroy(mig_source_cache *c);
int			mig_source_archive_cached(const mig_host *h, mig_source_cache *c,
									  const void *data, size_t len, mig_source **out,
									  int *owned, mig_err *err);

/* SQLSTATEs the core reports (PostgreSQL's codes; the SQLite adapter shows
 * only the message). */
#define MIG_SQLSTATE_BAD_NAME		"42602"	/* invalid_name */
#define MIG_SQLSTATE_DUPLICATE		"42710"	/* duplicate_object */
#define MIG_SQLSTATE_STATE			"55000"	/* object_not_in_prerequisite_state:
											 * changed, missing, out of order,
											 * no down script */
#define MIG_SQLSTATE_BAD_ARG		"22023"	/* invalid_parameter_value */
#define MIG_SQLSTATE_UNSAFE_FILE	"42501"	/* insufficient_privilege: symlink,
											 * not a regular file, writable */
#define MIG_SQLSTATE_TOO_BIG		"54000"	/* program_limit_exceeded */
#define MIG_SQLSTATE_BAD_BYTES		"22021"	/* character_not_in_repertoire */
#define MIG_SQLSTATE_TXN_CONTROL	"0A000"	/* feature_not_supported */
#define MIG_SQLSTATE_LOCK			"55P03"	/* lock_not_available */
#define MIG_SQLSTATE_IN_USE			"55006"	/* object_in_use */
#define MIG_SQLSTATE_NOMEM			"53200"	/* out_of_memory */
#define MIG_SQLSTATE_INTERNAL		"XX000"	/* internal_error */
#define MIG_SQLSTATE_POLICY			"55000"	/* the impact policy refuses a
											 * statement */

/* ---- entry points (mig_run.c) ---- */

/* Applies every pending migration of the folder at path, in version order,
 * inside one unit of work (host lock/unlock).  *applied receives the count
 * (0 when nothing is pending).  Nothing is applied when validation finds a
 * problem. */
int			mig_apply(const mig_host *h, const char *path, int64_t *applied,
					  mig_err *err);

/* mig_apply with an options text (NULL or empty: the defaults):
 *   target=V             apply only up to version V (repeatables still run)
 *   out_of_order=true    apply pending migrations older than the newest
 *                        applied one instead of refusing
 *   ignore_missing=true  go on when applied migrations' files are gone
 *   wait=D               wait at most D for the migration lock (0: not at
 *                        all; "forever")
 *   if_locked=skip       when the lock stays held: return 0 with a notice
 *                        naming the holder (default if_locked=error: 55P03)
 *   lock_timeout=D       lock_timeout of migration statements (PostgreSQL)
 *   lock_retries=N       retries of a migration that hit it, with backoff
 * durations D as 500ms, 10s, 2min (a bare number is milliseconds); pairs
 * separated by commas or spaces; an unknown or malformed option is an
 * error (22023) before anything runs. */
int			mig_apply_with(const mig_host *h, const char *path, const char *options,
						   int64_t *applied, mig_err *err);

/* Appends to err's detail what became of the migrations a failed call had
 * applied before the failure (applied of them, committed of those for
 * good): "rolled back with it" or "stay applied (committed)".  For a host
 * whose server errors do not return through mig_apply_with (PostgreSQL's
 * long jump), with *applied as the call left it. */
void		mig_undone_detail(int64_t applied, int64_t committed, mig_err *err);

/* Whether mig_apply_with(h, path, options) would find nothing to do, read
 * without the lock: *idle = 1 when the history holds every migration of
 * the folder applied and unchanged, none half way, so that the call would
 * apply nothing, refuse nothing and say nothing; 0 in any other case (then
 * only mig_apply_with, under the lock, can tell).  The host reads the
 * history and progress in one read transaction around it (a consistent
 * snapshot) and writes nothing.  An error (err) tells nothing either. */
int			mig_apply_idle(const mig_host *h, const char *path, const char *options,
						   int *idle, mig_err *err);

/* Rolls back the last n applied migrations (by order of application) using
 * the down scripts stored in the history.  Refuses, changing nothing, when
 * one of them has no down script or fewer than n are applied. */
int			mig_down(const mig_host *h, int64_t n, int64_t *rolled_back,
					 mig_err *err);

/* Imports another tool's history (Flyway, golang-migrate, morph, dbmate,
 * goose, sqlx, diesel) as applied history for the matching files of the
 * folder, running nothing and leaving that tool's table untouched.  Only
 * when our history is empty; refuses a history that does not match the
 * folder (a recorded version without a file, a Flyway checksum that
 * differs, a dirty or failed migration).  *adopted receives the count. */
int			mig_adopt(const mig_host *h, const char *path, int64_t *adopted,
					  mig_err *err);

/* mig_adopt with an options text: schema=S reads the other tool's table
 * in schema S (PostgreSQL; SQLite: the attached database S) instead of
 * the host's default; wait= and if_locked= as for apply. */
int			mig_adopt_with(const mig_host *h, const char *path, const char *options,
						   int64_t *adopted, mig_err *err);

/* Marks a database that already has the schema of the folder's migrations
 * up to version (an existing deployment starting with versioned
 * migrations): records each of those migrations as applied, with its up
 * and down SQL, running nothing.  Only when our history is empty.
 * *recorded receives the count. */
int			mig_baseline(const mig_host *h, const char *path, const char *version,
						 int64_t *recorded, mig_err *err);

/* Flyway's checksum of a file: CRC-32 of its lines without terminators
 * (\n, \r\n or \r), a leading UTF-8 BOM left out, as a signed 32-bit
 * number. */
int32_t		mig_flyway_checksum(const char *buf, size_t len);

/* Records the pending migration version of the folder as applied without
 * running anything (a goose Go migration the application ran, or a script
 * run by hand), with an audit row through host->audit (action "record").  It
 * must be the next migration to apply.  *recorded receives the count (1). */
int			mig_record_applied(const mig_host *h, const char *path, const char *version,
							   int64_t *recorded, mig_err *err);

/* Rolls back every applied migration whose version is above version,
 * newest applied first, with the stored down scripts; refuses, changing
 * nothing, when one of them has none.  *rolled_back receives the count. */
int			mig_down_to(const mig_host *h, const char *version, int64_t *rolled_back,
						mig_err *err);

/* One problem found by mig_validate: strings valid only during the
 * callback. */
typedef struct mig_problem {
	const char *version;		/* NULL when it concerns no one version */
	const char *file;			/* NULL when it concerns no one file */
	const char *kind;			/* changed, reformatted, missing,
								 * out_of_order, duplicate, bad_name,
								 * orphan_down, mixed_layouts, bad_file,
								 * not_allowed, syntax_error, folder,
								 * go_migration (a pending goose Go
								 * migration), chain (MongooseIM scripts
								 * that overlap), gap (a release without
								 * one) */
	const char *severity;		/* "error": migrate_apply refuses it;
								 * "warning": it does not (a whitespace-only
								 * edit, a gap) */
	const char *sqlstate;		/* the SQLSTATE migrate_apply would give */
	const char *message;		/* the error migrate_apply would give, with
								 * its context ("migration 3 (f), line 2: ") */
} mig_problem;

typedef int (*mig_problem_cb) (void *arg, const mig_problem *p);

/* Lists every problem of the folder against the history, without the lock
 * and without changing anything: names that fit no layout, duplicate
 * versions, down files without an up file, mixed layouts, applied files
 * changed (or only reformatted) or missing, pending ones out of order, and
 * pending files that cannot run (bad bytes, statements refused, syntax
 * errors the engine's parser finds).  Fails only when the folder cannot be
 * listed at all (then that is the one problem reported, kind "folder"). */
int			mig_validate(const mig_host *h, const char *path, mig_problem_cb cb,
						 void *arg, mig_err *err);
/* mig_validate with an options text: the impact policy (max_lock=,
 * max_size=, no_rewrite=) over the host's defaults; each statement it
 * refuses is a problem of kind "policy" (severity error). */
int			mig_validate_with(const mig_host *h, const char *path, const char *options,
							  mig_problem_cb cb, void *arg, mig_err *err);

/* Brings the history of applied migrations whose files were edited after
 * review (states changed and reformatted) in line with the files: their
 * checksums, names and stored down scripts, keeping an audit row each (old
 * checksum, who, when) through host->history_repair.  Takes the lock; runs
 * no migration.  *repaired receives the count. */
int			mig_repair(const mig_host *h, const char *path, int64_t *repaired,
					   mig_err *err);

/* mig_repair with an options text: partial=discard also forgets the
 * progress of every migration that stopped half way outside a transaction
 * (after its statements were undone by hand), with an audit row each;
 * wait= and if_locked= as for apply.  A repaired file must be the
 * migration that was applied (same name and file): another migration
 * with the same version is refused. */
int			mig_repair_with(const mig_host *h, const char *path, const char *options,
							int64_t *repaired, mig_err *err);

/* One migration a call would apply, in order (mig_plan_pending). */
typedef struct mig_pending {
	const char *version;
	const char *name;
	const char *file;
	const char *kind;			/* "versioned", "repeatable" (first run) or
								 * "rerun" (a repeatable whose file changed) */
	const char *sql;			/* the up script, not NUL-terminated */
	size_t		len;
	const char *down_sql;		/* NULL when it has none */
	size_t		down_len;
	const char *checksum;
	int			outside;		/* runs outside a transaction, statement by
								 * statement */
	int64_t		statements_done;	/* a migration that stopped half way:
									 * statements that ran (resumed after
									 * them); else 0 */
} mig_pending;

typedef int (*mig_pending_cb) (void *arg, const mig_pending *m);

/* A dry run of mig_apply_with: the same checks (failing as apply would),
 * without the lock, then cb for each migration apply would run, in
 * order; nothing runs and nothing changes. */
int			mig_plan_pending(const mig_host *h, const char *path, const char *options,
							 mig_pending_cb cb, void *arg, mig_err *err);

/* The pending migrations as one SQL script a DBA can run off-hours (in one
 * transaction, under the same lock, recording the history as migrate_apply
 * would, so that a later call is a no-op): *text (from host->alloc, freed
 * by the caller with host->release) and *len. */
int			mig_script_text(const mig_host *h, const char *path, const char *options,
							char **text, size_t *len, mig_err *err);

/*
 * What every statement of the pending migrations will do to the live
 * database (host->impact), in the order they would run, after the same
 * checks as mig_apply_with (options as for it): cb once per statement, its
 * policy field saying what the policy of the options (and the host's
 * defaults) makes of it.  Runs nothing, takes no lock, changes nothing.
 * The options of the impact policy, which apply, plan and validate
 * enforce before anything runs:
 *   max_lock=MODE        refuse a lock stronger than MODE (pg_locks' name,
 *                        such as ShareUpdateExclusiveLock; none: no limit)
 *   no_rewrite=true      refuse a rewrite of a table or index
 *   max_size=SIZE        ... of a relation larger than SIZE (100MB, 1GB,
 *                        500kB or bytes; default 0: any that is not empty)
 * A migration accepts a risk with a comment line naming it:
 *   -- migrate:accept rewrite public.users
 *   -- migrate:accept lock,rewrite users, orders
 * mig_script_text takes only=flagged: the script holds only the pending
 * migrations the policy refuses, recorded so that a later apply runs the
 * others without calling them out of order.
 */
int			mig_impact(const mig_host *h, const char *path, const char *options,
					   mig_impact_cb cb, void *arg, mig_err *err);

/* The name pg_locks.mode gives lock mode MIG_LOCK_* ("AccessExclusiveLock"),
 * or NULL for MIG_LOCK_NONE. */
const char *mig_lock_name(int mode);

/* One row of migrate_status: strings valid only during the callback. */
typedef struct mig_status_row {
	const char *version;
	const char *name;
	const char *state;			/* applied, pending, changed, reformatted
								 * (a whitespace-only edit), missing,
								 * out_of_order, outdated (a repeatable that
								 * runs again), partial (statements of it ran
								 * outside a transaction before it failed),
								 * partial_down (likewise of its down
								 * script) */
	const char *file;			/* up file in the folder, NULL if missing */
	const char *checksum;		/* of the file; the recorded one if missing */
	const char *applied_checksum;	/* NULL unless applied */
	const char *applied_at;		/* NULL unless applied */
	double		exec_ms;		/* -1 unless applied */
	int64_t		rank;			/* order of application, 0 unless applied */
	int			has_down;		/* a down script exists (stored or file) */
	int			down_noop;		/* and it runs nothing (goose without a Down
								 * section, golang-migrate without a down
								 * file): rolling back only forgets it */
	int64_t		statements_done;	/* partial, partial_down: statements that
									 * ran outside a transaction; else -1 */
	const char *last_error;		/* partial, partial_down: what stopped it,
								 * or NULL */
} mig_status_row;

typedef int (*mig_status_cb) (void *arg, const mig_status_row *row);

/* Reports every migration known to the folder or the history, in version
 * order, without taking the lock or changing anything.  Fails only when the
 * folder itself is unusable (unreadable, duplicate versions, a name that
 * fits no layout). */
int			mig_status(const mig_host *h, const char *path, mig_status_cb cb,
					   void *arg, mig_err *err);

/* ---- tenants (issue 22; mig_options.c) ---- */

/* Which entry point an options text is for (mig_options_split). */
enum {
	MIG_OPTIONS_APPLY = 0,		/* apply, run */
	MIG_OPTIONS_REPAIR,
	MIG_OPTIONS_ADOPT,			/* schema= stays adopt's: no tenant */
	MIG_OPTIONS_DRYRUN,			/* plan */
	MIG_OPTIONS_NONE,			/* an entry point with no options of its own
								 * (status, validate, down, baseline...):
								 * the tenant alone */
	MIG_OPTIONS_EACH,			/* a fan-out over tenants: apply's options
								 * and on_error, canary, parallel */
	MIG_OPTIONS_SCRIPT,			/* script: plan's and only= */
	MIG_OPTIONS_VALIDATE		/* validate: the impact policy (impact
								 * itself takes apply's: MIG_OPTIONS_APPLY) */
};

/* The options an adapter acts on itself, around the entry point. */
typedef struct mig_tenant_options {
	char		schema[64];		/* schema=: the tenant (a schema on
								 * PostgreSQL, an attached database on
								 * SQLite), "" when none; not for EACH */
	int			on_error_continue;	/* EACH: on_error=continue */
	int			canary;			/* EACH: canary=N, 0 for none */
	int			parallel;		/* EACH: parallel=N, 0 when not given */
	int			verbose;		/* verbose=: 1, 0, or -1 when not given */
} mig_tenant_options;

/* Reads options text as the options of entry point which (MIG_OPTIONS_*)
 * plus schema= (the fan-out: on_error=, canary=, parallel= instead),
 * refusing an unknown or malformed one (22023) as the entry point would;
 * fills out, and sets *rest (from h->alloc, freed by the caller; NULL
 * when text is NULL) to the text without those, for the entry point
 * itself.  MIG_OK, or an error in err. */
int			mig_options_split(const mig_host *h, const char *text, int which,
							  mig_tenant_options *out, char **rest, mig_err *err);

/* ---- helpers for adapters (mig_sql.c, mig_err.c, mig_files.c) ---- */

/* Writes "crc32:xxxxxxxx" of buf[0..len) into out[16] (zlib's CRC-32). */
void		mig_checksum(const char *buf, size_t len, char out[16]);
/* The same in pieces, for a text that grows (how far a script got, after
 * each statement): crc starts at 0, mig_checksum_add returns it with
 * buf[0..len) added, mig_checksum_of writes what mig_checksum would write
 * for everything added. */
uint32_t	mig_checksum_add(uint32_t crc, const char *buf, size_t len);
void		mig_checksum_of(uint32_t crc, char out[16]);

/* 1-based line number of byte offset off in sql[0..len). */
int			mig_line_at(const char *sql, size_t len, size_t off);
/* 1-based line, within its file, of byte offset off of the script. */
int			mig_script_line(const mig_script *s, size_t off);

/* Skips white space and SQL comments (-- and C-style) from sql[0..len) and
 * returns the offset of the first word, storing its length in *wlen (0 when
 * the text holds no word).  C-style comments nest when nested_comments is
 * set, as in PostgreSQL; SQLite ends one at the first star-slash. */
size_t		mig_first_word(const char *sql, size_t len, int nested_comments,
						   size_t *wlen);

/* Non-zero when word (wlen bytes, any case) is a statement keyword that
 * controls transactions or the connection and may not appear in a
 * migration: BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE, VACUUM,
 * ATTACH, DETACH, ABORT, START. */
int			mig_is_txn_control(const char *word, size_t wlen);

/* Fills err: code MIG_ERROR, the SQLSTATE and a printf-style message. */
void		mig_err_set(mig_err *err, const char *sqlstate, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
/* Appends a printf-style sentence to err->detail (truncated with "..."). */
void		mig_err_detail(mig_err *err, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
void		mig_err_hint(mig_err *err, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
/* Fills err from errno e for an operation on path ("could not open file
 * \"x\": No such file or directory") with a matching SQLSTATE. */
void		mig_err_errno(mig_err *err, int e, const char *what,
						  const char *path);
/* Out of memory. */
void		mig_err_nomem(mig_err *err);
/* Resets err to "no error". */
void		mig_err_clear(mig_err *err);

#endif							/* MIG_H */
