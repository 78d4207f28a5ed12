/*
 * test_ops.c -- unit tests of the operations beside apply: normalised
 * checksums, notices, the skip rule, validate, repair, plan and script.
 */
#define _GNU_SOURCE
#include "test_core.h"

static int
count_problem(void *arg, const mig_problem *p)
{
	char	   *out = arg;

	strcat(out, p->kind);
	strcat(out, " ");
	return MIG_OK;
}

static int
count_pending(void *arg, const mig_pending *m)
{
	char	   *out = arg;

	strcat(out, m->version);
	strcat(out, " ");
	return MIG_OK;
}

/* The normalised checksum by its definition, line by line (the code of
 * mig_checksum_norm before it fed runs of lines at once). */
static void
checksum_norm_by_line(const char *buf, size_t len, char out[16])
{
	unsigned long crc = crc32_z(0L, Z_NULL, 0);
	size_t		i = 0,
				blank = 0;

	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	while (i < len)
	{
		size_t		s = i,
					e;

		while (i < len && buf[i] != '\n' && buf[i] != '\r')
			i++;
		e = i;
		if (i < len)
			i += buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n' ? 2 : 1;
		while (e > s && (buf[e - 1] == ' ' || buf[e - 1] == '\t' ||
						 buf[e - 1] == '\f' || buf[e - 1] == '\v'))
			e--;
		if (e == s)
		{
			blank++;
			continue;
		}
		for (; blank > 0; blank--)
			crc = crc32_z(crc, (const Bytef *) "\n", 1);
		crc = crc32_z(crc, (const Bytef *) buf + s, e - s);
		crc = crc32_z(crc, (const Bytef *) "\n", 1);
	}
	snprintf(out, 16, "crc32:%08lx", crc & 0xffffffffUL);
}

/* Normalised checksums, notices, the skip rule, and validate, repair, plan
 * and script through the fake host, with an allocation sweep of each. */
void
test_ops(void)
{
	mig_host	h;
	fake		f;
	int64_t		n;
	int			rc;
	char		a[16],
				b[16],
				out[1024] = "";
	char	   *text = NULL;
	size_t		len;

	mig_checksum_norm("a\nb\n", 4, a);
	mig_checksum_norm("\xEF\xBB\xBF" "a  \r\nb\t\r\n\r\n\n", 15, b);
	CHECK(strcmp(a, b) == 0, "BOM, CRLF, trailing blanks and blank lines do not count");
	mig_checksum_norm("a\nb", 3, b);
	CHECK(strcmp(a, b) == 0, "a missing last newline does not count");
	mig_checksum_norm("a b\n", 4, b);
	CHECK(strcmp(a, b) != 0, "joining lines does (unlike Flyway's checksum)");
	mig_checksum_norm(" a\nb\n", 6, b);
	CHECK(strcmp(a, b) != 0, "leading white space does");
	/* the normalised checksum feeds runs of normal lines to crc32 at once:
	 * the same value as the definition, line by line, on random texts (a
	 * changed value would make every stored history "reformatted") */
	{
		static const char alphabet[] = "ab \t\f\v\r\n\n\n\xEF\xBB\xBF";
		char		txt[200],
					want[16];
		int			same = 1;

		srand(7);
		for (int round = 0; round < 20000 && same; round++)
		{
			size_t		n = (size_t) (rand() % (int) sizeof(txt));

			for (size_t k = 0; k < n; k++)
				txt[k] = alphabet[rand() % (int) (sizeof(alphabet) - 1)];
			if (round % 3 == 0 && n >= 3)
				memcpy(txt, "\xEF\xBB\xBF", 3);
			checksum_norm_by_line(txt, n, want);
			mig_checksum_norm(txt, n, b);
			same = strcmp(want, b) == 0;
		}
		CHECK(same, "the normalised checksum is the line-by-line one on 20,000 random texts");
		memset(out, '\n', 300);	/* more blank lines in a row than one feed */
		memcpy(out + 300, "x\n", 3);
		checksum_norm_by_line(out, 303, want);
		mig_checksum_norm(out, 303, b);
		CHECK(strcmp(want, b) == 0, "and after 300 blank lines");
		out[0] = '\0';
	}

	fresh();
	PUT("1_a.up.sql", "A\n");
	PUT("2_b.up.sql", "B\n");
	host_init(&h, &f);
	rc = mig_apply(&h, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 2 && f.notices == 4 &&
		  strncmp(f.notice, "applied migration 2 (2_b.up.sql) in ", 36) == 0,
		  "a notice as each migration starts and one as it ends: %s", f.notice);
	PUT("1_a.up.sql", "A  \r\n\r\n");
	PUT("3_c.up.sql", "C\n");
	f.notices = 0;
	rc = mig_apply(&h, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 1 && f.notices == 3, "a reformatted file does not stop apply");
	f.busy = 1;
	rc = mig_apply_with(&h, dir, "if_locked=skip", &n, &err);
	CHECK(rc == MIG_OK && n == 0 && strcmp(f.notice, "skipped: held by backend 42") == 0,
		  "if_locked=skip: 0 and a notice naming the holder (%s)", f.notice);
	rc = mig_apply(&h, dir, &n, &err);
	CHECK(rc == MIG_ERROR && strcmp(err.sqlstate, "55P03") == 0 &&
		  strcmp(err.message, "held by backend 42") == 0, "otherwise the lock error");
	f.busy = 0;

	PUT("2_b.up.sql", "BB\n");
	PUT("0_z.up.sql", "Z\n");
	PUT("4_d.up.sql", "COMMIT;\n");
	PUT("x.sql", "X\n");
	rc = mig_validate(&h, dir, count_problem, out, &err);
	CHECK(rc == MIG_OK && strcmp(out, "bad_name out_of_order reformatted changed not_allowed ") == 0,
		  "validate: %s", out);
	unlink(mkpath("x.sql"));
	unlink(mkpath("0_z.up.sql"));
	unlink(mkpath("4_d.up.sql"));
	out[0] = '\0';
	rc = mig_plan_pending(&h, dir, NULL, count_pending, out, &err);
	CHECK(rc == MIG_ERROR && strstr(err.message, "applied migration 2 has changed"),
		  "plan refuses a changed file: %s", err.message);
	rc = mig_repair(&h, dir, &n, &err);
	CHECK(rc == MIG_OK && n == 2 && f.repairs == 2, "repair: the changed and the reformatted");
	PUT("4_d.up.sql", "D\n");
	PUT("5_e.up.sql", "E\n");
	rc = mig_plan_pending(&h, dir, "target=4", count_pending, out, &err);
	CHECK(rc == MIG_OK && strcmp(out, "4 ") == 0, "plan up to a target: %s", out);
	rc = mig_script_text(&h, dir, NULL, &text, &len, &err);
	CHECK(rc == MIG_OK && strcmp(text, "[0:]\n\n-- migration 4 (4_d.up.sql)\n[1:4]\nD\n\n;\n"
								 "\n-- migration 5 (5_e.up.sql)\n[1:5]\nE\n\n;\n[3:]\n") == 0,
		  "script: the host's parts around each migration's SQL%s", rc == MIG_OK ? "" : err.message);
	f_release(&f, text);
	rc = mig_script_text(&h, dir, "lock_timeout=500ms", &text, &len, &err);
	CHECK(rc == MIG_OK && strncmp(text, "[0:lock_timeout=500]\n", 21) == 0,
		  "script: the start gets the call's lock_timeout: %.30s", rc == MIG_OK ? text : err.message);
	f_release(&f, text);
	CHECK(f.live == 0, "nothing held after the operations");

	/* every allocation failing in turn, for each operation */
	for (int op = 0; op < 4; op++)
	{
		int			clean = 1,
					runs = 0;

		for (long k = 1;; k++)
		{
			f.allocs = 0;
			f.fail_at = k;
			out[0] = '\0';
			text = NULL;
			if (op == 0)
				rc = mig_validate(&h, dir, count_problem, out, &err);
			else if (op == 1)
				rc = mig_plan_pending(&h, dir, NULL, count_pending, out, &err);
			else if (op == 2)
				rc = mig_script_text(&h, dir, NULL, &text, &len, &err);
			else
			{
				mig_err		again;

				PUT("1_a.up.sql", "AA\n");
				rc = mig_repair(&h, dir, &n, &err);

				f.fail_at = 0;
				PUT("1_a.up.sql", "A  \r\n\r\n");
				mig_repair(&h, dir, &n, &again);
			}
			runs++;
			if (text)
				f_release(&f, text);
			if (f.live != 0 || (rc != MIG_OK && (rc != MIG_NOMEM || strcmp(err.sqlstate, "53200"))))
				clean = 0;
			if (rc == MIG_OK)
				break;
		}
		f.fail_at = 0;
		CHECK(runs > 3 && clean, "operation %d: allocation failure at each of %d points: clean", op, runs);
	}
	host_done(&f);
}
