/* render.h — templates: challenge mails rendered from complete RFC 5322
 * messages with {{placeholders}}. */
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

#endif
