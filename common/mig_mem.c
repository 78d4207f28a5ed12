/*
 * mig_mem.c -- the core's memory: an arena for names and plan data, freed
 * in one go, and a growable array.  Both allocate only through the host.
 */
#include <string.h>

#include "mig_int.h"

struct mig_chunk {
	mig_chunk  *next;
	size_t		pad;			/* keeps data 16-byte aligned */
};

#define MIG_CHUNK_DATA	(64 * 1024)
#define MIG_ALIGN(n)	(((n) + 15) & ~(size_t) 15)

void
mig_arena_init(mig_arena *a, const mig_host *h)
{
	a->h = h;
	a->head = NULL;
	a->used = 0;
	a->cap = 0;
}

/* n bytes from the arena, at a 16-byte boundary when aligned: strings
 * need none, and thousands of short ones (versions, checksums) would
 * otherwise take 16 bytes or more each. */
static void *
arena_take(mig_arena *a, size_t n, int aligned)
{
	size_t		start = aligned ? MIG_ALIGN(a->used) : a->used;
	mig_chunk  *c;
	size_t		cap;

	if (n == 0)
		n = 1;
	if (a->head == NULL || start > a->cap || a->cap - start < n)
	{
		cap = n > MIG_CHUNK_DATA ? n : MIG_CHUNK_DATA;
		c = a->h->alloc(a->h->ctx, sizeof(mig_chunk) + cap);
		if (c == NULL)
			return NULL;
		c->next = a->head;
		a->head = c;
		a->cap = cap;
		start = 0;
	}
	a->used = start + n;
	return (char *) (a->head + 1) + start;
}

void *
mig_arena_alloc(mig_arena *a, size_t n)
{
	return arena_take(a, n, 1);
}

char *
mig_arena_strndup(mig_arena *a, const char *s, size_t n)
{
	char	   *p = arena_take(a, n + 1, 0);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
mig_arena_strdup(mig_arena *a, const char *s)
{
	return s ? mig_arena_strndup(a, s, strlen(s)) : NULL;
}

void
mig_arena_free(mig_arena *a)
{
	while (a->head)
	{
		mig_chunk  *next = a->head->next;

		a->h->release(a->h->ctx, a->head);
		a->head = next;
	}
	a->used = a->cap = 0;
}

void
mig_vec_init(mig_vec *v, const mig_host *h, size_t size)
{
	v->h = h;
	v->items = NULL;
	v->n = 0;
	v->cap = 0;
	v->size = size;
}

int
mig_vec_reserve(mig_vec *v, size_t cap)
{
	char	   *items;

	if (cap <= v->cap)
		return MIG_OK;
	if ((items = v->h->alloc(v->h->ctx, cap * v->size)) == NULL)
		return MIG_NOMEM;
	if (v->n)
		memcpy(items, v->items, v->n * v->size);
	if (v->items)
		v->h->release(v->h->ctx, v->items);
	v->items = items;
	v->cap = cap;
	return MIG_OK;
}

void *
mig_vec_push(mig_vec *v)
{
	char	   *item;

	if (v->n == v->cap && mig_vec_reserve(v, v->cap ? v->cap * 2 : 16) != MIG_OK)
		return NULL;
	item = v->items + v->n++ * v->size;
	memset(item, 0, v->size);
	return item;
}

void
mig_vec_free(mig_vec *v)
{
	if (v->items)
		v->h->release(v->h->ctx, v->items);
	v->items = NULL;
	v->n = v->cap = 0;
}
