/*
 * mig_sql.c -- the little the core knows about SQL text: which line a byte
 * offset is on, and the leading keyword of a statement.  Statements are
 * split by the engines' own parsers, never here.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "mig_int.h"

int
mig_line_at(const char *sql, size_t len, size_t off)
{
	int			line = 1;
	const char *p = sql,
			   *end = sql + (off < len ? off : len);

	while ((p = memchr(p, '\n', (size_t) (end - p))) != NULL)
	{
		line++;
		p++;
	}
	return line;
}

int
mig_script_line(const mig_script *s, size_t off)
{
	if (s->text && s->sql >= s->text && s->sql + s->len <= s->text + s->text_len)
		return mig_line_at(s->text, s->text_len, (size_t) (s->sql - s->text) + off);
	return (s->first_line > 1 ? s->first_line - 1 : 0) + mig_line_at(s->sql, s->len, off);
}

size_t
mig_first_word(const char *sql, size_t len, int nested_comments, size_t *wlen)
{
	size_t		i = 0,
				j;

	while (i < len)
	{
		unsigned char c = (unsigned char) sql[i];

		if (isspace(c))
			i++;
		else if (c == '-' && i + 1 < len && sql[i + 1] == '-')
		{
			while (i < len && sql[i] != '\n')
				i++;
		}
		else if (c == '/' && i + 1 < len && sql[i + 1] == '*')
		{
			int			depth = 1;

			for (i += 2; i < len && depth > 0; i++)
			{
				if (sql[i] == '*' && i + 1 < len && sql[i + 1] == '/')
				{
					depth--;
					i++;
				}
				else if (nested_comments && sql[i] == '/' && i + 1 < len && sql[i + 1] == '*')
				{
					depth++;
					i++;
				}
			}
		}
		else
			break;
	}
	for (j = i; j < len && (isalpha((unsigned char) sql[j]) || sql[j] == '_'); j++)
		;
	*wlen = j - i;
	return i;
}

int
mig_is_txn_control(const char *word, size_t wlen)
{
	/* lengths spelled out: this runs twice for every statement */
	static const struct
	{
		const char *w;
		size_t		len;
	}			words[] = {
		{"BEGIN", 5}, {"COMMIT", 6}, {"END", 3}, {"ROLLBACK", 8}, {"SAVEPOINT", 9},
		{"RELEASE", 7}, {"VACUUM", 6}, {"ATTACH", 6}, {"DETACH", 6}, {"ABORT", 5},
		{"START", 5}
	};

	if (wlen < 3 || wlen > 9)
		return 0;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (words[i].len == wlen && (word[0] | 0x20) == (words[i].w[0] | 0x20) &&
			strncasecmp(words[i].w, word, wlen) == 0)
			return 1;
	return 0;
}
