/* reason.h — the stable reason codes of DESIGN.md and the request states they
 * are read from: the vocabulary every layer shares (logs, evidence, stats,
 * replies, the decision), so it depends on nothing. */
#ifndef MILTERD_REASON_H
#define MILTERD_REASON_H

/* Reason codes, in the order of the contract; R_COUNT last. */
enum reason {
	R_NONE = 0,		/* no decision (yet) */
	R_VERIFIED,
	R_ALREADY_VERIFIED,
	R_UNKNOWN_TOKEN,
	R_EXPIRED,
	R_FROM_MISMATCH,
	R_DOMAIN_NOT_ALLOWED,
	R_NOT_AUTHENTICATED,
	R_TOKEN_NOT_SIGNED,
	R_ADDRESS_IN_USE,
	R_MALFORMED,
	R_TEMPORARY,
	R_COUNT
};

const char	*reason_name(enum reason);	/* "none" for R_NONE or out of range */
enum reason	 reason_parse(const char *);	/* R_NONE if unknown */

/* A request's state as stored (milterd.requests.state), expiry and end of
 * validity already applied by the query that read it. */
enum request_state {
	REQ_PENDING,
	REQ_VERIFIED,
	REQ_EXPIRED,		/* pending past its deadline */
	REQ_REVOKED,		/* revoked, or superseded by a newer request */
	REQ_LAPSED,		/* verified, past its end without re-certification */
	REQ_ADDRESS_CHANGED,	/* verified, ended: the account's address changed */
	REQ_RENEWED,		/* verified, ended: a re-certification replaced it */
	REQ_NSTATES
};

const char		*request_state_name(enum request_state);
/* REQ_NSTATES if unknown. */
enum request_state	 request_state_parse(const char *);

#endif
