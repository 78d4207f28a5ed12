/*
 * test_core.c -- unit tests of the core (common/) against a fake host: an
 * in-memory history, a script runner that logs what it is given, and an
 * allocator that counts and can fail the Nth allocation.  The file system
 * is real (a temporary folder).  Prints TAP; built with ASan and UBSan.
 *
 * These test the core's own logic; the real engines are tested through
 * the sqlite3 shell, Python's sqlite3 module and a PostgreSQL server.
 *
 * This file holds main(), which runs the tests in order; the harness and
 * the fake host are in fake_host.c (declared in test_core.h), the tests in
 * test_names.c, test_apply.c, test_ops.c, test_archive.c and test_options.c.
 */
#define _GNU_SOURCE
#include "test_core.h"

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_versions();
	test_options();
	test_options_split();
	test_file_id_format();
	test_flyway_checksum();
	test_sql_helpers();
	test_apply_and_down();
	test_layout_rules();
	test_layout_folders();
	test_refusals();
	test_missing_folder();
	test_status();
	test_oom_sweep();
	test_memory_bound();
	test_cache();
	test_noop_shortcut();
	test_ops();
	test_sha256();
	test_archive_refusals();
	test_archive_as_folder();
	test_source_entries();
	test_archive_oom();
	test_archive_kept();
	fresh();
	rmdir(dir);
	printf("1..%d\n", tests);
	printf("core: %d passed, %d failed\n", tests - failures, failures);
	return failures != 0;
}
