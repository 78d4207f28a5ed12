/*
 * mig_err.c -- filling a mig_err: message, detail, hint, SQLSTATE and the
 * "migration V (file), line N" context.  Never allocates.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mig_int.h"

void
mig_err_clear(mig_err *err)
{
	err->code = MIG_OK;
	memcpy(err->sqlstate, "00000", 6);
	err->message[0] = err->detail[0] = err->hint[0] = err->context[0] = '\0';
	err->offset = -1;
	err->sys_errno = 0;
}

/*
 * Copies src[0..n) into dst (room bytes with the NUL): whole when it fits,
 * else its beginning, "..." and its end (where the reason usually is: a
 * long path is cut in its middle), cut between characters; bytes that are
 * not valid UTF-8 (a file name in another encoding) become '?', so that
 * every message is valid text for the engine and its clients.
 */
static void
fit(char *dst, size_t room, const char *src, size_t n)
{
	const unsigned char *s = (const unsigned char *) src;
	size_t		head = n,
				tail = n,
				o = 0;

	if (room == 0)
		return;
	if (n + 1 > room)
	{
		size_t		keep = room > 4 ? room - 4 : 0;

		head = keep / 2;
		while (head > 0 && (s[head] & 0xc0) == 0x80)
			head--;
		tail = n - (keep - head);
		while (tail < n && (s[tail] & 0xc0) == 0x80)
			tail++;
	}
	for (size_t i = 0, k; i < n && o + 1 < room; i += k)
	{
		if (i == head)
		{
			memcpy(dst + o, "...", 3);
			o += 3;
			i = tail;
			if (i >= n)
				break;
		}
		k = mig_utf8_char(s + i, n - i);
		if (k == 0)
		{
			dst[o++] = '?';
			k = 1;
		}
		else
		{
			memcpy(dst + o, src + i, k);	/* head is a character boundary */
			o += k;
		}
	}
	dst[o] = '\0';
}

/* Appends a formatted text to buf (size cap), fitted as fit() does. */
static void
append(char *buf, size_t cap, const char *fmt, va_list ap)
{
	char		text[4 * MIG_PATH_MAX];
	size_t		used = strlen(buf);
	int			n;

	if (used + 1 >= cap)
		return;
	n = vsnprintf(text, sizeof(text), fmt, ap);
	if (n < 0)
		return;
	fit(buf + used, cap - used, text, (size_t) n < sizeof(text) ? (size_t) n : sizeof(text) - 1);
}

void
mig_err_set(mig_err *err, const char *sqlstate, const char *fmt,...)
{
	va_list		ap;

	mig_err_clear(err);
	err->code = MIG_ERROR;
	memcpy(err->sqlstate, sqlstate, 5);
	err->sqlstate[5] = '\0';
	va_start(ap, fmt);
	append(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

void
mig_err_detail(mig_err *err, const char *fmt,...)
{
	va_list		ap;

	if (err->detail[0])
		strncat(err->detail, " ", sizeof(err->detail) - strlen(err->detail) - 1);
	va_start(ap, fmt);
	append(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
}

void
mig_err_hint(mig_err *err, const char *fmt,...)
{
	va_list		ap;

	err->hint[0] = '\0';
	va_start(ap, fmt);
	append(err->hint, sizeof(err->hint), fmt, ap);
	va_end(ap);
}

void
mig_err_nomem(mig_err *err)
{
	mig_err_set(err, MIG_SQLSTATE_NOMEM, "out of memory");
	err->code = MIG_NOMEM;
}

void
mig_err_errno(mig_err *err, int e, const char *what, const char *path)
{
	const char *state;

	switch (e)
	{
		case ENOENT:
		case ENOTDIR:
			state = "58P01";	/* undefined_file */
			break;
		case EACCES:
		case EPERM:
		case ELOOP:
			state = MIG_SQLSTATE_UNSAFE_FILE;
			break;
		case ENOMEM:
			mig_err_nomem(err);
			return;
		default:
			state = "58030";	/* io_error */
			break;
	}
	if (e == ELOOP)
	{
		mig_err_set(err, state, "file \"%s\" is a symbolic link", path);
		mig_err_detail(err, "Migration files must be regular files.");
	}
	else
		mig_err_set(err, state, "could not %s \"%s\": %s", what, path,
					strerror(e));
	err->sys_errno = e;
}

void
mig_err_at(mig_err *err, const mig_script *s)
{
	char		line[32] = "";

	if (err->offset >= 0 && (size_t) err->offset <= s->len)
		snprintf(line, sizeof(line), ", line %d",
				 mig_script_line(s, (size_t) err->offset));
	snprintf(err->context, sizeof(err->context), "%smigration %s (%s)%s",
			 s->down ? "rollback of " : "", s->version, s->file, line);
}

void
mig_err_list(mig_err *err, const char *intro, const char *const *names,
			 size_t n)
{
	char		list[MIG_DETAIL_MAX] = "";
	size_t		i,
				shown = n < 20 ? n : 20;

	for (i = 0; i < shown; i++)
	{
		size_t		used = strlen(list);

		snprintf(list + used, sizeof(list) - used, "%s%s",
				 i == 0 ? "" : (i + 1 == n ? " and " : ", "), names[i]);
	}
	if (n > shown)
	{
		size_t		used = strlen(list);

		snprintf(list + used, sizeof(list) - used, " and %zu more", n - shown);
	}
	mig_err_detail(err, "%s%s.", intro, list);
}
