/* authres.h — RFC 8601 Authentication-Results: the header we add, and
 * recognising headers that claim to be ours. */
#ifndef MILTERD_AUTHRES_H
#define MILTERD_AUTHRES_H

#include "buf.h"
#include "dkim.h"
#include "policy.h"
#include "spf.h"

/* Writes the header value (without the name) into out. */
int	authres_build(struct buf *out, const char *authserv_id,
	    const struct dkimv_sig *sigs, size_t nsigs, const struct policy_decision *d);
/* Appends the SPF results (MAIL FROM may be NULL) to a value from
 * authres_build(), before the verdict comment. */
void	authres_spf(struct buf *out, const struct spf_outcome *mailfrom,
	    const struct spf_outcome *helo, const char *helo_name,
	    const struct policy_decision *d, int internal);
/* Whether an existing Authentication-Results value claims authserv_id. */
int	authres_is_ours(const char *value, const char *authserv_id);

#endif
