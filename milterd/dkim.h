/* dkim.h — DKIM verification with libopendkim, key lookups through dns.c, and
 * a per-signature report for the policy to judge. (The dkim_ prefix belongs
 * to libopendkim; this module's functions are dkimv_.) */
#ifndef MILTERD_DKIM_H
#define MILTERD_DKIM_H

#include <stddef.h>

#include "buf.h"
#include "dns.h"

#define DKIMV_MAXSIGS 8		/* signatures looked at per message */

enum dkimv_result {
	DKIMV_PASS,
	DKIMV_FAIL,		/* signature or body hash did not match */
	DKIMV_TEMPERROR,	/* key lookup failed temporarily */
	DKIMV_PERMERROR,	/* broken signature or key */
	DKIMV_SKIPPED,		/* not evaluated: it could not matter (no key fetched) */
};

struct dkimv_sig {
	enum dkimv_result result;
	char		 domain[256];	/* d=, lowercased */
	char		 selector[64];
	char		 algorithm[24];	/* "rsa-sha256", "ed25519-sha256", ... */
	unsigned int	 key_bits;
	int		 pass;		/* signature and body hash verified */
	int		 skipped;	/* not evaluated (DKIMV_SKIPPED) */
	int		 temporary;	/* key lookup failed temporarily */
	int		 testing;	/* the key says t=y: its domain is testing DKIM */
	char		 error[96];	/* why it did not pass */
	char		 headers[512];	/* h=, lowercased, ':'-separated, no spaces */
	int		 has_length;	/* l= present */
	unsigned long long length;	/* l= value */
	unsigned long long body_length;	/* canonicalized body length seen */
	long long	 timestamp;	/* t=, or -1 */
	char		 b_prefix[9];	/* first characters of b= for A-R */
	const char	*dnssec;	/* of the key lookup */
};

struct dkimv;

/* Once per process: the library handle, resolving through dns. */
int		 dkimv_init(struct dns *dns, int timeout, struct buf *err);
void		 dkimv_shutdown(void);

/* Per message. Every call returns 0, or -1 with a temporary failure
 * (out of memory, library trouble) described in err. */
struct dkimv	*dkimv_new(const char *id, struct buf *err);
int		 dkimv_header(struct dkimv *, const char *name, const char *value,
		    struct buf *err);
/* Which signer domains (d=) are worth their key: the others are skipped,
 * their key never fetched. NULL: every signature is evaluated. */
typedef int	(*dkimv_worth_fn)(void *arg, const char *domain);
int		 dkimv_eoh(struct dkimv *, dkimv_worth_fn worth, void *arg, struct buf *err);
int		 dkimv_body(struct dkimv *, const unsigned char *p, size_t n,
		    struct buf *err);
/* Verifies and fills sigs (at most max); returns how many, or -1. */
int		 dkimv_eom(struct dkimv *, struct dkimv_sig *sigs, size_t max,
		    struct buf *err);
void		 dkimv_free(struct dkimv *);

#endif
