/* challenge.h — the challenge mail of a request: rendered from templates/,
 * submitted through sendmail -t -i. */
#ifndef MILTERD_CHALLENGE_H
#define MILTERD_CHALLENGE_H

#include "buf.h"
#include "config.h"

/* A fresh request's challenge. */
struct challenge {
	const char	*kind;		/* template: "challenge" or "recertify" */
	const char	*account;
	const char	*email;
	const char	*token;
	int		 lang;		/* replies_lang() */
	const char	*expires;	/* the request's deadline, human-readable */
	const char	*ends;		/* recertify: when the certification ends */
};

/* Renders templates/KIND.LANG.eml. 0, or -1 with err set. */
int	challenge_render(const struct config *, const struct challenge *, struct buf *out,
	    struct buf *err);
/* Pipes a rendered message (CRLF lines) to cfg->sendmail_path -t -i: 0, or
 * -1 with err set; CHALLENGE_STALLED (err set) when it had not finished after
 * cfg->sendmail_timeout seconds and was killed. */
#define CHALLENGE_STALLED	(-2)
int	challenge_send(const struct config *, const char *msg, struct buf *err);

#endif
