/*
 * mig_sha256.c -- SHA-256 (FIPS 180-4), for what must name content beyond
 * doubt: a file of an archive or JSON object (its identity, as a file on
 * disk is named by its inode and times) and the archive itself (in the call
 * log, where sha256sum of the file sent gives the same).  Written from the
 * standard's text; checked against its examples in tests/unit/test_archive.c.
 */
#include <string.h>

#include "mig_int.h"

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROTR(x, n)	(((x) >> (n)) | ((x) << (32 - (n))))

/* Processes one 64-byte block into the state. */
static void
block(uint32_t st[8], const unsigned char *p)
{
	uint32_t	w[64],
				a = st[0],
				b = st[1],
				c = st[2],
				d = st[3],
				e = st[4],
				f = st[5],
				g = st[6],
				h = st[7];

	for (int t = 0; t < 16; t++)
		w[t] = (uint32_t) p[4 * t] << 24 | (uint32_t) p[4 * t + 1] << 16 |
			(uint32_t) p[4 * t + 2] << 8 | (uint32_t) p[4 * t + 3];
	for (int t = 16; t < 64; t++)
	{
		uint32_t	s0 = ROTR(w[t - 15], 7) ^ ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3),
					s1 = ROTR(w[t - 2], 17) ^ ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);

		w[t] = w[t - 16] + s0 + w[t - 7] + s1;
	}
	for (int t = 0; t < 64; t++)
	{
		uint32_t	t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) +
			((e & f) ^ (~e & g)) + K[t] + w[t],
					t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) +
			((a & b) ^ (a & c) ^ (b & c));

		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	st[0] += a;
	st[1] += b;
	st[2] += c;
	st[3] += d;
	st[4] += e;
	st[5] += f;
	st[6] += g;
	st[7] += h;
}

void
mig_sha256_init(mig_sha256 *s)
{
	static const uint32_t h0[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
	};

	memcpy(s->state, h0, sizeof(h0));
	s->bytes = 0;
	s->used = 0;
}

void
mig_sha256_update(mig_sha256 *s, const void *data, size_t len)
{
	const unsigned char *p = data;

	s->bytes += len;
	if (s->used > 0)
	{
		size_t		take = 64 - s->used < len ? 64 - s->used : len;

		memcpy(s->buf + s->used, p, take);
		s->used += take;
		p += take;
		len -= take;
		if (s->used < 64)
			return;
		block(s->state, s->buf);
		s->used = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		block(s->state, p);
	memcpy(s->buf, p, len);
	s->used = len;
}

void
mig_sha256_hex(mig_sha256 *s, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t	bits = s->bytes * 8;
	unsigned char pad[72] = {0x80};
	size_t		n = (s->used < 56 ? 56 : 120) - s->used;

	for (int i = 0; i < 8; i++)
		pad[n + i] = (unsigned char) (bits >> (56 - 8 * i));
	mig_sha256_update(s, pad, n + 8);
	for (int i = 0; i < 32; i++)
	{
		unsigned char b = (unsigned char) (s->state[i / 4] >> (24 - 8 * (i % 4)));

		out[2 * i] = hex[b >> 4];
		out[2 * i + 1] = hex[b & 15];
	}
	out[64] = '\0';
}
