/* buf.c — growable strings and bounded string helpers used by every module. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void
buf_init(struct buf *b)
{
	static char empty[1];

	b->s = empty;
	b->len = 0;
	b->cap = 0;
	b->failed = 0;
}

void
buf_free(struct buf *b)
{
	if (b->cap > 0)
		free(b->s);
	buf_init(b);
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	b->failed = 0;
	if (b->cap > 0)
		b->s[0] = '\0';
}

int
buf_failed(const struct buf *b)
{
	return b->failed;
}

int
buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;
	char *n;

	if (extra > SIZE_MAX - b->len - 1) {
		b->failed = 1;
		return -1;
	}
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			b->failed = 1;
			return -1;
		}
		cap *= 2;
	}
	n = b->cap ? realloc(b->s, cap) : malloc(cap);
	if (n == NULL) {
		b->failed = 1;
		return -1;
	}
	if (b->cap == 0)
		n[0] = '\0';
	b->s = n;
	b->cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const char *p, size_t n)
{
	if (buf_reserve(b, n) == -1)
		return -1;
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

int
buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_putc(struct buf *b, char c)
{
	return buf_append(b, &c, 1);
}

int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0) {
		b->failed = 1;
		return -1;
	}
	if (buf_reserve(b, (size_t)n) == -1)
		return -1;
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

int
buf_read_file(struct buf *b, const char *path)
{
	char chunk[8192];
	size_t n;
	FILE *fp;
	int rc = 0;

	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		if (buf_append(b, chunk, n) == -1) {
			errno = ENOMEM;
			rc = -1;
			break;
		}
	if (ferror(fp))
		rc = -1;
	fclose(fp);
	return rc;
}

int
str_copy(char *dst, const char *src, size_t size)
{
	size_t n;

	if (size == 0)
		return -1;
	n = strlen(src);
	if (n >= size) {
		memcpy(dst, src, size - 1);
		dst[size - 1] = '\0';
		return -1;
	}
	memcpy(dst, src, n + 1);
	return 0;
}

void
str_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

char *
str_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: shortest
 * form, no surrogates, nothing past U+10FFFF), or 0. */
static size_t
str_utf8_seq(const unsigned char *p)
{
	unsigned int c, n;

	if (*p < 0x80)
		return 1;
	if (*p >= 0xc2 && *p <= 0xdf)
		n = 1, c = *p & 0x1f;
	else if (*p >= 0xe0 && *p <= 0xef)
		n = 2, c = *p & 0x0f;
	else if (*p >= 0xf0 && *p <= 0xf4)
		n = 3, c = *p & 0x07;
	else
		return 0;
	for (unsigned int i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((n == 2 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (n == 3 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	return n + 1;
}

int
str_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	for (; *p; p += n)
		if ((n = str_utf8_seq(p)) == 0)
			return 0;
	return 1;
}

void
str_utf8_mend(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t n;

	while (*p) {
		if ((n = str_utf8_seq(p)) == 0) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
}
