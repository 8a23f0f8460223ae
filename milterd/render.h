/* render.h — templates: challenge mails rendered from complete RFC 5322
 * messages with {{placeholders}}, and the SMTP reply texts per language. */
#ifndef MILTERD_RENDER_H
#define MILTERD_RENDER_H

#include <stddef.h>

#include "buf.h"

struct render_var {
	const char	*name;
	const char	*value;
};

/* Renders template text. {{name}} is replaced by its value: in the header
 * block the value must be one line (CR, LF and NUL are refused), and header
 * fields holding non-ASCII text come out RFC 2047 encoded (UTF-8, Q); in the
 * body values are inserted as they are, CR/LF normalised. An unknown
 * placeholder is an error. Output lines end with CRLF. 0 or -1 (err set). */
int	render_text(const char *tmpl, const struct render_var *vars, size_t nvars,
	    struct buf *out, struct buf *err);
/* Same, reading the template from a file. */
int	render_file(const char *path, const struct render_var *vars, size_t nvars,
	    struct buf *out, struct buf *err);

/* SMTP reply texts: one file per language, "reason = text" lines, ASCII
 * only (SMTP replies are ASCII). */
#define REPLY_LANGS 2	/* fr, en */
struct replies {
	char	*text[REPLY_LANGS][16];	/* [lang][enum reason] */
};

/* Loads DIR/replies.fr and DIR/replies.en; every reason must be present.
 * NULL with errors appended (FILE:LINE: ...). */
struct replies	*replies_load(const char *dir, struct buf *errors);
void		 replies_free(struct replies *);
/* Index of a language code ("fr", "en"), -1 if unknown. */
int		 replies_lang(const char *code);
const char	*replies_lang_name(int lang);

#endif
