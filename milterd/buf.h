/* buf.h — one growable, always NUL-terminated string type with overflow checks. */
#ifndef MILTERD_BUF_H
#define MILTERD_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char	*s;	/* NUL-terminated, never NULL after buf_init */
	size_t	 len;	/* bytes used, not counting the NUL */
	size_t	 cap;	/* bytes allocated */
	int	 failed;	/* an append ran out of memory since buf_init/reset */
};

/* All functions returning int give 0 on success, -1 when memory ran out
 * (the buffer is then left unchanged and marked failed, so that a series of
 * appends can be checked once at its end with buf_failed()). */
void	buf_init(struct buf *);
void	buf_free(struct buf *);
void	buf_reset(struct buf *);
int	buf_reserve(struct buf *, size_t);
int	buf_append(struct buf *, const char *, size_t);
int	buf_puts(struct buf *, const char *);
int	buf_putc(struct buf *, char);
int	buf_printf(struct buf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
int	buf_vprintf(struct buf *, const char *, va_list)
	    __attribute__((format(printf, 2, 0)));
/* Appends a whole file; 0, or -1 with errno set. */
int	buf_read_file(struct buf *, const char *path);
/* Whether an append was lost since buf_init()/buf_reset(). */
int	buf_failed(const struct buf *);

/* Bounded copy: returns 0, or -1 when src did not fit (dst then holds a
 * truncated, NUL-terminated copy). */
int	str_copy(char *dst, const char *src, size_t size);
/* ASCII lowercase in place. */
void	str_lower(char *);
/* Trim ASCII white space at both ends, in place; returns s. */
char	*str_trim(char *s);
/* Whether s is well-formed UTF-8 (RFC 3629). */
int	str_utf8_valid(const char *s);
/* Each byte of s outside a well-formed UTF-8 sequence becomes '?', in place. */
void	str_utf8_mend(char *s);

#endif
