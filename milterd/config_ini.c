/* config_ini.c — the INI front-end every configuration file shares (milterd.conf,
 * policy files, reply texts): libinih fed one line at a time, errors as
 * FILE:LINE: key: what, "did you mean" on misspelt keys. */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "config.h"

/* One file being read. */
struct ini_parse {
	const char	*path;
	FILE		*fp;
	int		 lineno;
	int		 sections;	/* [sections] allowed */
	struct buf	*errors;
	int		 nerrors;
	char		*line;		/* getline buffer */
	size_t		 linecap;
	config_ini_handler handler;
	void		*user;
};

void
config_file_verror(struct buf *errors, const char *path, int line, const char *key,
    const char *fmt, va_list ap)
{
	buf_printf(errors, "%s:%d: ", path, line);
	if (key != NULL)
		buf_printf(errors, "%s: ", key);
	buf_vprintf(errors, fmt, ap);
	buf_putc(errors, '\n');
}

void
config_file_error(struct buf *errors, const char *path, int line, const char *key,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_file_verror(errors, path, line, key, fmt, ap);
	va_end(ap);
}

/* Levenshtein distance, for "did you mean" on misspelt keys. */
static size_t
config_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;

			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, sizeof(cur));
	}
	return prev[lb];
}

const char *
config_suggest(const char *name, const char *(*key)(size_t))
{
	const char *best = NULL, *k;
	size_t bestd = 3;

	for (size_t i = 0; (k = key(i)) != NULL; i++) {
		size_t d = config_distance(name, k);

		if (d < bestd) {
			bestd = d;
			best = k;
		}
	}
	return best;
}

/* libinih reader: one physical line per call, so p->lineno always names the
 * line the handler is looking at. Lines inih would misread are reported
 * here and replaced by an empty line. */
static char *
config_ini_reader(char *dst, int size, void *user)
{
	struct ini_parse *p = user;
	ssize_t n;
	char *s;

	n = getline(&p->line, &p->linecap, p->fp);
	if (n == -1)
		return NULL;
	p->lineno++;
	dst[0] = '\0';
	if (memchr(p->line, '\0', (size_t)n) != NULL) {
		config_file_error(p->errors, p->path, p->lineno, NULL, "NUL byte in line");
		p->nerrors++;
		return dst;
	}
	s = str_trim(p->line);
	if (*s == '\0' || *s == '#' || *s == ';')
		return dst;
	/* "# comment" after a value, like ";" (inih's own inline comment). */
	for (char *c = s + 1; *c; c++)
		if (*c == '#' && (c[-1] == ' ' || c[-1] == '\t')) {
			*c = '\0';
			s = str_trim(s);
			break;
		}
	if (strlen(s) >= (size_t)size - 1) {
		config_file_error(p->errors, p->path, p->lineno, NULL,
		    "line longer than %d characters", size - 2);
		p->nerrors++;
		return dst;
	}
	if (*s == '[') {
		if (s[strlen(s) - 1] != ']')
			config_file_error(p->errors, p->path, p->lineno, NULL,
			    "unterminated section header");
		else if (!p->sections)
			config_file_error(p->errors, p->path, p->lineno, NULL,
			    "sections are not used in this file (only policy files have them)");
		else {
			snprintf(dst, (size_t)size, "%s\n", s);
			return dst;
		}
		p->nerrors++;
		return dst;
	}
	if (strpbrk(s, "=:") == NULL || *s == '=' || *s == ':') {
		config_file_error(p->errors, p->path, p->lineno, NULL, "expected 'key = value'");
		p->nerrors++;
		return dst;
	}
	/* Leading white space would make inih read a continuation line. */
	snprintf(dst, (size_t)size, "%s\n", s);
	return dst;
}

static int
config_ini_dispatch(void *user, const char *section, const char *name, const char *value)
{
	struct ini_parse *p = user;

	if (p->handler(p->user, p->lineno, section, name, value) == -1)
		p->nerrors++;
	return 1;
}

int
config_parse_ini(const char *path, int sections, config_ini_handler handler, void *user,
    struct buf *errors)
{
	struct ini_parse p;
	struct stat st;
	int rc;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.sections = sections;
	p.errors = errors;
	p.handler = handler;
	p.user = user;
	if ((p.fp = fopen(path, "r")) == NULL) {
		buf_printf(errors, "%s: cannot open: %s\n", path, strerror(errno));
		return 1;
	}
	/* fopen() takes a directory; its first read would fail with no line to name. */
	if (fstat(fileno(p.fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		buf_printf(errors, "%s: cannot read: %s\n", path, strerror(EISDIR));
		fclose(p.fp);
		return 1;
	}
	rc = ini_parse_stream(config_ini_reader, &p, config_ini_dispatch, &p);
	if (rc != 0 && p.nerrors == 0) {
		config_file_error(errors, path, rc > 0 ? rc : p.lineno, NULL, "cannot parse");
		p.nerrors++;
	}
	if (ferror(p.fp)) {
		config_file_error(errors, path, p.lineno, NULL, "read error");
		p.nerrors++;
	}
	fclose(p.fp);
	free(p.line);
	return p.nerrors;
}
