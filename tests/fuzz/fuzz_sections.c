/*
 * fuzz_sections.c -- libFuzzer target for the parsing of file contents
 * (common/mig_sections.c, mig_files.c's content checks, mig_sql.c,
 * Flyway's checksum).  The first byte picks the layout; the rest is the
 * file.  Invariants: sections lie inside the file and in order, a script
 * handed out is valid UTF-8 without NUL bytes, and line numbers grow with
 * offsets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mig_int.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int layouts[] = {
		MIG_LAYOUT_UPDOWN, MIG_LAYOUT_FLYWAY, MIG_LAYOUT_SINGLE, MIG_LAYOUT_DIESEL
	};
	mig_file	f = {0};
	mig_text	t = {0};
	mig_script	s;
	mig_err		err;
	size_t		wlen,
				at;

	if (size == 0)
		return 0;
	f.layout = layouts[data[0] % 4];
	f.version = "1";
	f.name = "x";
	f.up = "1_x.sql";
	t.len = size - 1;
	t.buf = malloc(t.len + 1);
	memcpy(t.buf, data + 1, t.len);
	t.buf[t.len] = '\0';

	for (int down = 0; down <= 1; down++)
	{
		mig_err_clear(&err);
		if (mig_text_script(&t, &f, down, &s, &err) != MIG_OK)
		{
			if (err.message[0] == '\0')
				abort();		/* every refusal says why */
			continue;
		}
		if (s.sql == NULL)
		{
			if (!down || f.layout != MIG_LAYOUT_SINGLE)
				abort();		/* only a one-file migration lacks a down */
			continue;
		}
		if (s.sql < t.buf || s.sql + s.len > t.buf + t.len || memchr(s.sql, '\0', s.len))
			abort();
		if (mig_script_line(&s, 0) > mig_script_line(&s, s.len))
			abort();
		at = mig_first_word(s.sql, s.len, data[0] & 1, &wlen);
		if (at + wlen > s.len)
			abort();
		mig_is_txn_control(s.sql + at, wlen);
	}
	mig_flyway_checksum(t.buf, t.len);
	free(t.buf);
	return 0;
}
