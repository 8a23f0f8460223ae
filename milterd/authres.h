/* authres.h — RFC 8601 Authentication-Results: the header we add, and
 * recognising headers that claim to be ours. */
#ifndef MILTERD_AUTHRES_H
#define MILTERD_AUTHRES_H

#include <stddef.h>

#include "buf.h"
#include "dkim.h"
#include "spf.h"

/* What the header says, already judged by the caller. */
struct authres_input {
	const char		*authserv_id;
	const struct dkimv_sig	*sigs;
	const char *const	*sig_why;	/* per signature: how it was judged */
	size_t			 nsigs;
	const struct spf_outcome *mailfrom;	/* NULL: no MAIL FROM identity */
	const char		*mailfrom_why;
	const struct spf_outcome *helo;		/* NULL: no usable HELO name */
	const char		*helo_name;
	const char		*helo_why;
	const char		*verdict;	/* milterd's reason code */
};

/* Writes the header value (without the name, without a leading space) into
 * out; 0, or -1 when memory ran out. */
int	authres_build(struct buf *out, const struct authres_input *);
/* Whether an existing Authentication-Results value claims authserv_id. */
int	authres_is_ours(const char *value, const char *authserv_id);

#endif
