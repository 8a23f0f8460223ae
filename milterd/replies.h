/* replies.h — the SMTP reply text of each reason code, per language, from
 * templates/replies.LANG. */
#ifndef MILTERD_REPLIES_H
#define MILTERD_REPLIES_H

#include <stddef.h>

#include "buf.h"
#include "reason.h"

#define REPLY_LANGS	2	/* fr, en */
#define REPLY_TEXT_MAX	190	/* per language: an SMTP reply line is short */

struct replies {
	char	*text[REPLY_LANGS][R_COUNT];	/* [lang][enum reason] */
};

/* Loads DIR/replies.fr and DIR/replies.en; every reason must be present, in
 * plain ASCII, at most REPLY_TEXT_MAX characters. NULL with errors appended
 * (FILE:LINE: key: ...). */
struct replies	*replies_load(const char *dir, struct buf *errors);
void		 replies_free(struct replies *);
/* Index of a language code ("fr", "en"), -1 if unknown. */
int		 replies_lang(const char *code);
const char	*replies_lang_name(int lang);	/* "fr" when lang is out of range */
/* "reason: text" in language lang, or in every language joined by " / " when
 * lang is -1 (no request known, so no language). 0, or -1 if it did not fit
 * size (out then holds nothing usable). */
int		 replies_format(const struct replies *, enum reason, int lang, char *out,
		    size_t size);

#endif
