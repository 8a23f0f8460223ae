/* render.c — the one small renderer for challenge mails: {{placeholders}} in a
 * complete RFC 5322 message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

static const char *
render_lookup(const struct render_var *vars, size_t nvars, const char *name, size_t len)
{
	for (size_t i = 0; i < nvars; i++)
		if (strlen(vars[i].name) == len && strncmp(vars[i].name, name, len) == 0)
			return vars[i].value;
	return NULL;
}

/* RFC 2047 Q encoding of len bytes of value as encoded words, folded so that
 * lines stay under 76 characters; only characters RFC 2047 allows in a phrase
 * (5.3) are left as they are, so the words serve in a display name too. */
static void
render_encode_words(struct buf *out, const char *value, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)value, *end = p + len;
	size_t word = 0;

	buf_puts(out, "=?UTF-8?Q?");
	for (; p < end; p++) {
		/* Break between words where possible, never inside a UTF-8
		 * sequence; a token thus stays whole in one encoded word. */
		if ((word > 45 && *p == ' ') || (word > 59 && (*p & 0xc0) != 0x80)) {
			buf_puts(out, "?=\r\n =?UTF-8?Q?");
			word = 0;
		}
		if (*p == ' ') {
			buf_putc(out, '_');
			word++;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("!*+-/", *p) != NULL) {
			buf_putc(out, (char)*p);
			word++;
		} else {
			buf_putc(out, '=');
			buf_putc(out, hex[*p >> 4]);
			buf_putc(out, hex[*p & 15]);
			word += 3;
		}
	}
	buf_puts(out, "?=");
}

/* One header line whose value has 8-bit bytes. An address (a value ending in
 * <addr-spec>, as in "From: Ministère <verify@example.org>") keeps its address
 * as it is and has only its display name encoded, unquoted: an encoded address
 * is no mailbox, and an encoded word inside quotes is not decoded. Anything
 * else is unstructured text, encoded whole. */
static void
render_encode_header(struct buf *out, const char *name, const char *value)
{
	size_t len = strlen(value);
	const char *lt = strrchr(value, '<');
	size_t phrase = lt != NULL ? (size_t)(lt - value) : 0;

	buf_printf(out, "%s: ", name);
	if (lt != NULL && len > 0 && value[len - 1] == '>' && strchr(lt, '@') != NULL) {
		while (phrase > 0 && value[phrase - 1] == ' ')
			phrase--;
		if (phrase >= 2 && value[0] == '"' && value[phrase - 1] == '"') {
			value++;
			phrase -= 2;
		}
		if (phrase > 0) {
			render_encode_words(out, value, phrase);
			buf_putc(out, ' ');
		}
		buf_puts(out, lt);
	} else
		render_encode_words(out, value, len);
	buf_puts(out, "\r\n");
}

static int
render_has_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

/* Fills the placeholders of one line into line; -1 with err set. */
static int
render_line(const char *src, size_t len, int header, const struct render_var *vars,
    size_t nvars, int lineno, struct buf *line, struct buf *err)
{
	const char *p = src, *end = src + len, *open, *close, *v;

	while (p < end) {
		open = memmem(p, (size_t)(end - p), "{{", 2);
		if (open == NULL) {
			buf_append(line, p, (size_t)(end - p));
			break;
		}
		buf_append(line, p, (size_t)(open - p));
		close = memmem(open + 2, (size_t)(end - open - 2), "}}", 2);
		if (close == NULL) {
			buf_printf(err, "line %d: unterminated placeholder", lineno);
			return -1;
		}
		if ((v = render_lookup(vars, nvars, open + 2, (size_t)(close - open - 2))) == NULL) {
			buf_printf(err, "line %d: unknown placeholder {{%.*s}}", lineno,
			    (int)(close - open - 2), open + 2);
			return -1;
		}
		if (header && strpbrk(v, "\r\n") != NULL) {
			buf_printf(err, "line %d: {{%.*s}} would break the header line", lineno,
			    (int)(close - open - 2), open + 2);
			return -1;
		}
		buf_puts(line, v);
		p = close + 2;
	}
	return 0;
}

int
render_text(const char *tmpl, const struct render_var *vars, size_t nvars, struct buf *out,
    struct buf *err)
{
	struct buf line;
	const char *p = tmpl, *nl, *colon;
	int header = 1, lineno = 0, rc = 0;
	size_t len;

	buf_init(&line);
	while (*p) {
		nl = strchr(p, '\n');
		len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		lineno++;
		buf_reset(&line);
		if (render_line(p, len, header, vars, nvars, lineno, &line, err) == -1) {
			rc = -1;
			break;
		}
		if (header && line.len == 0)
			header = 0;
		else if (header && render_has_8bit(line.s) &&
		    (colon = strchr(line.s, ':')) != NULL) {
			char name[128];
			const char *value = colon + 1;

			snprintf(name, sizeof(name), "%.*s", (int)(colon - line.s), line.s);
			while (*value == ' ')
				value++;
			render_encode_header(out, name, value);
			p = nl ? nl + 1 : p + len;
			continue;
		}
		if (!header && line.len > 0) {
			/* Values inserted in the body keep their own lines. */
			for (char *c = line.s; *c; c++) {
				if (*c == '\r')
					continue;
				if (*c == '\n')
					buf_puts(out, "\r\n");
				else
					buf_putc(out, *c);
			}
		} else
			buf_append(out, line.s, line.len);
		buf_puts(out, "\r\n");
		p = nl ? nl + 1 : p + len;
	}
	buf_free(&line);
	if (rc == 0 && header) {
		buf_puts(err, "the template has no blank line between header and body");
		rc = -1;
	}
	return rc;
}

int
render_file(const char *path, const struct render_var *vars, size_t nvars, struct buf *out,
    struct buf *err)
{
	struct buf tmpl, why;
	int rc;

	buf_init(&tmpl);
	if (buf_read_file(&tmpl, path) == -1) {
		buf_printf(err, "%s: %s", path, strerror(errno));
		buf_free(&tmpl);
		return -1;
	}
	buf_init(&why);
	rc = render_text(tmpl.s, vars, nvars, out, &why);
	if (rc == -1)
		buf_printf(err, "%s: %s", path, why.s);
	buf_free(&why);
	buf_free(&tmpl);
	return rc;
}
