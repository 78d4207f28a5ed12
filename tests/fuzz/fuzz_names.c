/*
 * fuzz_names.c -- libFuzzer target for file-name and version parsing
 * (common/mig_layout.c).  Besides not crashing, it checks invariants:
 * a parsed version is canonical (or a repeatable's key), compares equal
 * to itself, canonicalises to itself, and orders consistently against the
 * version of the second half of the input.
 *
 *   make fuzz            (longer run)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mig_int.h"

static void *
f_alloc(void *ctx, size_t n)
{
	(void) ctx;
	return malloc(n);
}

static void
f_release(void *ctx, void *p)
{
	(void) ctx;
	free(p);
}

static const char *
parse(mig_arena *a, const char *s, int dir)
{
	mig_name	n;
	int			rc = dir ? mig_parse_dir_name(a, s, &n) : mig_parse_name(a, s, &n);

	if (rc != 1)
		return NULL;
	if (n.name == NULL || n.version == NULL)
		abort();
	if (!mig_is_repeatable(n.version))
	{
		int			oom;
		char	   *again = mig_version_canonical(a, n.version, &oom);

		if (!mig_version_valid(n.version) || again == NULL || strcmp(again, n.version) != 0)
			abort();			/* canonical form is a fixed point */
	}
	if (mig_version_cmp(n.version, n.version) != 0)
		abort();
	return n.version;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mig_host	h = {0};
	mig_arena	a;
	char	   *s = malloc(size + 1);
	char	   *half;
	const char *v1,
			   *v2;
	int			oom;

	h.alloc = f_alloc;
	h.release = f_release;
	mig_arena_init(&a, &h);
	memcpy(s, data, size);
	s[size] = '\0';
	half = memchr(s, '\n', size);
	if (half)
		*half++ = '\0';
	v1 = parse(&a, s, 0);
	parse(&a, s, 1);
	mig_version_canonical(&a, s, &oom);
	if (half)
	{
		v2 = parse(&a, half, 0);
		if (v1 && v2)
		{
			int			c1 = mig_version_cmp(v1, v2),
						c2 = mig_version_cmp(v2, v1);
			uint64_t	k1,
						k2;

			if ((c1 < 0) != (c2 > 0) || (c1 == 0) != (c2 == 0) ||
				(c1 == 0 && strcmp(v1, v2) != 0))
				abort();		/* antisymmetric; equal only when identical */
			k1 = mig_version_key(v1);
			k2 = mig_version_key(v2);
			if (k1 != MIG_NO_KEY && k2 != MIG_NO_KEY &&
				((k1 < k2) != (c1 < 0) || (k1 == k2) != (c1 == 0)))
				abort();		/* keys order as the versions do */
		}
	}
	mig_arena_free(&a);
	free(s);
	return 0;
}
