/* replies.c — SMTP reply texts per reason code and language. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "replies.h"

static const char *const replies_langs[REPLY_LANGS] = { "fr", "en" };

int
replies_lang(const char *code)
{
	for (int i = 0; i < REPLY_LANGS; i++)
		if (code != NULL && strcmp(code, replies_langs[i]) == 0)
			return i;
	return -1;
}

const char *
replies_lang_name(int lang)
{
	return lang >= 0 && lang < REPLY_LANGS ? replies_langs[lang] : "fr";
}

struct replies_parse {
	const char	*path;
	struct replies	*r;
	int		 lang;
	struct buf	*errors;
	int		 seen[REPLY_LANGS][R_COUNT];	/* line of each text */
};

static int
replies_handler(void *user, int line, const char *section, const char *key, const char *value)
{
	struct replies_parse *p = user;
	enum reason r = reason_parse(key);

	(void)section;
	if (r == R_NONE) {
		config_file_error(p->errors, p->path, line, key, "not a reason code");
		return -1;
	}
	for (const char *c = value; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f || *c == '%') {
			config_file_error(p->errors, p->path, line, key,
			    "SMTP replies must be plain ASCII without %%");
			return -1;
		}
	if (p->seen[p->lang][r] != 0) {
		config_file_error(p->errors, p->path, line, key, "set twice (first at line %d)",
		    p->seen[p->lang][r]);
		return -1;
	}
	p->seen[p->lang][r] = line;
	if (*value == '\0') {
		config_file_error(p->errors, p->path, line, key, "must not be empty");
		return -1;
	}
	if (strlen(value) > REPLY_TEXT_MAX) {
		config_file_error(p->errors, p->path, line, key,
		    "longer than %d characters", REPLY_TEXT_MAX);
		return -1;
	}
	free(p->r->text[p->lang][r]);
	if ((p->r->text[p->lang][r] = strdup(value)) == NULL) {
		config_file_error(p->errors, p->path, line, key, "out of memory");
		return -1;
	}
	return 0;
}

struct replies *
replies_load(const char *dir, struct buf *errors)
{
	struct replies_parse p;
	char path[4096];
	int nerrors = 0, n;

	memset(&p, 0, sizeof(p));
	if ((p.r = calloc(1, sizeof(*p.r))) == NULL) {
		buf_printf(errors, "%s: out of memory\n", dir);
		return NULL;
	}
	p.errors = errors;
	for (int lang = 0; lang < REPLY_LANGS; lang++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/replies.%s", dir,
		    replies_langs[lang]) >= sizeof(path)) {
			buf_printf(errors, "%s: path too long\n", dir);
			nerrors++;
			break;
		}
		p.path = path;
		p.lang = lang;
		/* Each file's own missing texts, whatever the other file's errors. */
		n = config_parse_ini(path, 0, replies_handler, &p, errors);
		nerrors += n;
		for (int r = R_NONE + 1; r < R_COUNT && n == 0; r++)
			if (p.r->text[lang][r] == NULL) {
				buf_printf(errors, "%s: no text for %s\n", path,
				    reason_name((enum reason)r));
				nerrors++;
			}
	}
	if (nerrors > 0) {
		replies_free(p.r);
		return NULL;
	}
	return p.r;
}

void
replies_free(struct replies *r)
{
	if (r == NULL)
		return;
	for (int l = 0; l < REPLY_LANGS; l++)
		for (int i = 0; i < R_COUNT; i++)
			free(r->text[l][i]);
	free(r);
}

int
replies_format(const struct replies *rep, enum reason r, int lang, char *out, size_t size)
{
	size_t o;
	int n;

	if ((n = snprintf(out, size, "%s:", reason_name(r))) < 0 || (size_t)n >= size)
		return -1;
	o = (size_t)n;
	for (int l = 0; l < REPLY_LANGS; l++) {
		if (lang >= 0 && l != lang)
			continue;
		n = snprintf(out + o, size - o, "%s %s", lang < 0 && l > 0 ? " /" : "",
		    rep != NULL && rep->text[l][r] != NULL ? rep->text[l][r] : "");
		if (n < 0 || (size_t)n >= size - o)
			return -1;
		o += (size_t)n;
	}
	return 0;
}
