/* spf.h — SPF (RFC 7208) with libspf2, its DNS through milterd's resolver. */
#ifndef MILTERD_SPF_H
#define MILTERD_SPF_H

#include "buf.h"
#include "dns.h"

enum spf_result {
	SPF_R_NONE,
	SPF_R_NEUTRAL,
	SPF_R_PASS,
	SPF_R_FAIL,
	SPF_R_SOFTFAIL,
	SPF_R_TEMPERROR,
	SPF_R_PERMERROR,
	SPF_R_SKIPPED,		/* not evaluated: it could not matter */
};

struct spf_outcome {
	enum spf_result	 result;
	char		 domain[256];	/* the identity's domain */
	char		 why[160];	/* for logs */
};

int		 spf_init(struct dns *dns, struct buf *err);
void		 spf_shutdown(void);
/* Evaluates identity (an address, or a bare domain for HELO) for the client
 * ip; helo is passed for macros. */
void		 spf_check(const char *ip, const char *helo, const char *identity,
		    struct spf_outcome *out);
const char	*spf_result_name(enum spf_result);

#endif
