/* policy.h — policy files (which mail proves an identity) and the one decision:
 * from the facts of a verification mail and the request as the database saw it
 * to a reason code, an SMTP code, an enhanced code and a text. The daemon and
 * `milterctl check` call the same functions; nothing else maps request states
 * or results to reasons. */
#ifndef MILTERD_POLICY_H
#define MILTERD_POLICY_H

#include <stdio.h>

#include "address.h"
#include "align.h"
#include "buf.h"
#include "dkim.h"
#include "reason.h"
#include "replies.h"
#include "spf.h"

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
	int			accounts_per_address;	/* live certifications of one address, 0 = no limit */
	long			recertify_after;	/* seconds a verification lasts, 0 = for ever */
	long			recertify_notice;	/* seconds before its end the new challenge goes */
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
	int			 dnssec_require_line;	/* the first "dnssec = require", or 0 */
};

/* NULL with every error appended to errors as FILE:LINE: key: what. */
struct policy	*policy_load(const char *path, struct buf *errors);
void		 policy_free(struct policy *);
void		 policy_dump(const struct policy *, FILE *);
/* Rules for a domain: the most specific [domain] section, or defaults. */
const struct policy_rules *policy_rules_for(const struct policy *, const char *domain);
/* The same for the domain of an address (defaults without '@'). */
const struct policy_rules *policy_rules_for_address(const struct policy *, const char *addr);
/* PALG_* of an algorithm name ("rsa-sha256"), 0 if none. */
unsigned int	 policy_alg_bit(const char *);
/* The domain rule: not denied, and allowed when an allow list exists. */
int		 policy_domain_allowed(const struct policy *, const char *domain);

/* The request a token selects, as the database saw it. */
struct policy_request {
	enum request_state	 state;		/* expiry and end of validity applied */
	int			 attempts;	/* failed decisions so far */
	const char		*email;		/* lowercased */
	double			 created_at;	/* epoch seconds */
	int			 holders;	/* other accounts this address certifies now;
						 * 0 until the guarded write has counted them */
};

/* What the answer to a reply is written in: SMTP code, enhanced code, text. */
enum verdict_action {
	VA_CONTINUE,	/* nothing to say (a recipient that passes) */
	VA_ACCEPT,
	VA_DISCARD,
	VA_REPLY,	/* rcode/xcode/text */
};

struct verdict {
	enum verdict_action action;
	enum reason	 reason;
	const char	*rcode;		/* "550", "451", "452" */
	const char	*xcode;		/* enhanced status code */
	char		 text[512];	/* "reason: text" */
	const char	*detail;	/* for logs and evidence, or NULL */
};

struct policy_decision;

/* ---- RCPT: one envelope recipient. */
struct policy_rcpt {
	enum rcpt_kind	 kind;		/* address_verify_rcpt() */
	int		 second_token;	/* another token is already in this message */
	int		 mixed;		/* a token and another recipient: the one is
					 * here, the other already in this message */
	int		 envelope_bad;	/* MAIL FROM too long to be an address */
	int		 lookup_failed;	/* the database could not be asked */
	const struct policy_request *req;	/* NULL: no request has this token */
	int		 lang;		/* the request's language, -1 if none */
};

/* 0: the recipient passes (v untouched); 1: refuse it with v. */
int	policy_rcpt(const struct policy *, const struct replies *, const struct policy_rcpt *,
	    struct verdict *v);

/* ---- End of message. */

/* Headers of a message, as far as the decision needs them. */
struct policy_header {
	int		 count;
	const char	*value;		/* the last instance */
};

/* Once the headers are in: From, its domain rule and the request's address
 * (from_bad: why From is malformed before parsing, as a NUL in it, or NULL).
 * Fills d (a reason other than R_NONE: nothing else matters) and so says
 * which identities could align: only those are worth DNS queries (DESIGN.md,
 * "only evaluate what can matter"). */
void	policy_screen(const struct policy *, const struct policy_header *from, const char *from_bad,
	    const struct policy_request *, struct policy_decision *d);
/* Whether a DKIM signer domain (d=) could align with From: its key is worth fetching. */
int	policy_dkim_worth(const struct policy_decision *, const char *d);
/* NULL when SPF for a domain (MAIL FROM, or HELO for the record) could
 * matter: the rules use SPF, it could align, the client is outside; else why
 * it is skipped. */
const char *policy_spf_skip(const struct policy_decision *, const char *domain,
	    int internal_client);

struct policy_input {
	struct policy_header	 to, cc, subject;
	int			 body_has_token;	/* the token appears in the body */
	const struct dkimv_sig	*sigs;
	size_t			 nsigs;
	const char		*token;		/* canonical, from the envelope */
	const struct spf_outcome *spf_mailfrom;	/* NULL: no MAIL FROM identity */
	int			 internal_client; /* never passes SPF */
	const struct policy_request *req;
	const char		*failure;	/* temporary trouble reading the message, or NULL */
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
	const char		*xcode;		/* enhanced status code for a refusal */
	char			 detail[400];
	int			 sig;		/* the signature relied on, or -1 */
	int			 named;		/* the one the detail names (sig, else the
						 * one that mattered most), or -1 */
	struct from_addr	 from;
	int			 from_ok;
	const struct policy_rules *rules;
	struct policy_sigverdict verdicts[DKIMV_MAXSIGS];
	int			 dkim_ok;	/* a signature authenticated and bound the token */
	int			 spf_aligned;	/* MAIL FROM domain aligned with From */
	int			 spf_ok;	/* SPF pass, aligned, outside client */
};

/* Clock skew tolerated between a signer's t= and the request's creation. */
#define POLICY_CLOCK_SKEW 60

/* The decision on a message screened by policy_screen(), settled against
 * in->req (the request as RCPT read it). */
void	policy_decide(const struct policy_input *, struct policy_decision *);
/* Settles a decision again against the request as the database left it when
 * the guarded write did not happen (a concurrent reply verified it, it
 * expired, the address was taken meanwhile). */
void	policy_settle(struct policy_decision *, const struct policy_request *after,
	    int write_lost);
/* The database failed: answer 4xx. */
void	policy_db_failed(struct policy_decision *, const char *why);
/* The answer to a decision; lang is the request's language. */
void	policy_verdict(const struct policy_decision *, const struct replies *, int lang,
	    struct verdict *);

#endif
