/* challenge.h — the challenge mail of a request: rendered from templates/,
 * submitted through sendmail -t -i. */
#ifndef MILTERD_CHALLENGE_H
#define MILTERD_CHALLENGE_H

#include "buf.h"
#include "config.h"

/* Renders templates/challenge.LANG.eml for a fresh request. expires is the
 * human-readable deadline. 0, or -1 with err set. */
int	challenge_render(const struct config *, const char *account, const char *email,
	    const char *token, int lang, const char *expires, struct buf *out,
	    struct buf *err);
/* Pipes a rendered message (CRLF lines) to cfg->sendmail_path -t -i. */
int	challenge_send(const struct config *, const char *msg, struct buf *err);

#endif
