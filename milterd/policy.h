/* policy.h — policy files (which mail proves an identity) and the decision
 * taken on a verification mail. */
#ifndef MILTERD_POLICY_H
#define MILTERD_POLICY_H

#include <stdio.h>

#include "address.h"
#include "align.h"
#include "buf.h"
#include "dkim.h"
#include "spf.h"
#include "store.h"

/* Stable reason codes (DESIGN.md): logs, evidence, replies. */
enum reason {
	R_NONE = 0,
	R_VERIFIED,
	R_ALREADY_VERIFIED,
	R_UNKNOWN_TOKEN,
	R_EXPIRED,
	R_FROM_MISMATCH,
	R_DOMAIN_NOT_ALLOWED,
	R_NOT_AUTHENTICATED,
	R_TOKEN_NOT_SIGNED,
	R_MALFORMED,
	R_TEMPORARY,
};

const char	*reason_name(enum reason);
enum reason	 reason_parse(const char *);	/* R_NONE if unknown */

enum policy_require { PR_DKIM, PR_DKIM_OR_SPF, PR_DKIM_AND_SPF };
enum policy_dnssec { PD_IGNORE, PD_RECORD, PD_REQUIRE };
enum policy_success { PS_ACCEPT, PS_DISCARD };
enum policy_failure { PF_REJECT, PF_ACCEPT };

#define PALG_RSA_SHA256		0x01
#define PALG_ED25519_SHA256	0x02
#define PALG_RSA_SHA1		0x04

/* The rules in force for one From domain. */
struct policy_rules {
	enum policy_require	require;
	enum align_mode		alignment;
	unsigned int		min_rsa_bits;
	unsigned int		algorithms;	/* PALG_* */
	enum policy_dnssec	dnssec;
	int			token_ttl;	/* seconds, for new requests */
	int			max_attempts;	/* failed decisions before lock-out, 0 = none */
	enum policy_success	on_success;
	enum policy_failure	on_failure;
};

struct policy_domain {
	char			*suffix;
	struct policy_rules	 rules;
};

struct policy {
	char			*path;
	char			**allow;	/* domain suffixes */
	size_t			 nallow;
	char			**deny;
	size_t			 ndeny;
	struct policy_rules	 defaults;
	struct policy_domain	*domains;	/* [domain SUFFIX] sections */
	size_t			 ndomains;
};

/* NULL with every error appended to errors as FILE:LINE: key: what. */
struct policy	*policy_load(const char *path, struct buf *errors);
void		 policy_free(struct policy *);
void		 policy_dump(const struct policy *, FILE *);
/* Rules for a From domain: the most specific [domain] section, or defaults. */
const struct policy_rules *policy_rules_for(const struct policy *, const char *domain);
/* The domain rule: not denied, and allowed when an allow list exists. */
int		 policy_domain_allowed(const struct policy *, const char *domain);

/* Headers of a message, as far as the decision needs them. */
struct policy_header {
	int		 count;
	const char	*value;		/* the last instance */
};

struct policy_input {
	struct policy_header	 from, to, cc, subject;
	int			 from_bad_name;	/* "From :" and the like */
	int			 body_has_token;	/* the token appears in the body */
	const struct dkimv_sig	*sigs;
	size_t			 nsigs;
	const char		*token;		/* canonical, from the envelope */
	const struct spf_outcome *spf_mailfrom;	/* NULL: no MAIL FROM identity */
	const struct spf_outcome *spf_helo;
	int			 internal_client; /* never passes SPF */
	const struct store_request *req;
	long long		 now;
};

/* Per-signature judgement, for logs and Authentication-Results. */
struct policy_sigverdict {
	int		 aligned;
	int		 acceptable;	/* passed, aligned, algorithm and key OK */
	int		 binds_token;
	const char	*why;		/* short, when not used */
};

struct policy_decision {
	enum reason		 reason;
	int			 sig;		/* the signature relied on, or -1 */
	struct from_addr	 from;
	int			 from_ok;
	const struct policy_rules *rules;
	struct policy_sigverdict verdicts[DKIMV_MAXSIGS];
	char			 detail[400];
	int			 dkim_ok;	/* a signature authenticated and bound the token */
	int			 spf_aligned;	/* MAIL FROM domain aligned with From */
	int			 spf_ok;	/* SPF pass, aligned, outside client */
	const char		*xcode;		/* enhanced status code for 5xx/4xx */
};

/* What the MTA should answer. */
enum verdict_action {
	VA_CONTINUE,	/* nothing to say yet (RCPT) */
	VA_ACCEPT,
	VA_DISCARD,
	VA_REPLY,	/* rcode/xcode/text */
};

struct verdict {
	enum verdict_action action;
	enum reason	 reason;
	const char	*rcode;		/* "550", "451", "452" */
	const char	*xcode;		/* enhanced status code */
	char		 text[512];	/* starts with the reason code */
};

struct replies;

/* A reply: "reason: text" with the given codes, the text in language lang
 * (replies_lang()), or in every language when lang is -1. */
void	policy_reply(struct verdict *, enum reason, const char *rcode, const char *xcode,
	    const struct replies *, int lang);
/* The answer to a decision whose reason the database settled as final. */
void	policy_verdict(const struct policy_decision *, enum reason final,
	    const struct replies *, int lang, struct verdict *);

/* Clock skew tolerated between a signer's t= and the request's creation. */
#define POLICY_CLOCK_SKEW 60

void	policy_decide(const struct policy *, const struct policy_input *,
	    struct policy_decision *);

#endif
