/* store.h — PostgreSQL access for the daemon: a pool of libpq connections with
 * prepared statements that reconnects by itself. */
#ifndef MILTERD_STORE_H
#define MILTERD_STORE_H

#include "buf.h"
#include "token.h"

enum store_rc {
	STORE_OK,
	STORE_NOTFOUND,
	STORE_TEMPFAIL,		/* database unreachable or failing: answer 4xx */
};

enum request_state {
	REQ_PENDING,
	REQ_VERIFIED,
	REQ_EXPIRED,
	REQ_REVOKED,
};

struct store_request {
	long long		id;
	char			account[256];
	char			email[321];
	enum request_state	state;		/* expiry already applied */
	double			created_at;	/* epoch seconds */
	double			expires_at;
	int			lang;		/* replies_lang(), -1 if unknown */
};

struct store;

/* Nothing is connected yet: connections are made on first use. */
struct store	*store_open(const char *conninfo, int size, int timeout);
void		 store_close(struct store *);
const char	*store_state_name(enum request_state);

/* What a decision leaves as evidence (NULL fields are stored as NULL). */
struct store_evidence {
	long long		 request_id;	/* 0: none */
	const unsigned char	*token_hash;	/* TOKEN_HASH_LEN bytes, or NULL */
	const char		*from;		/* header From address */
	const char		*reason;	/* milterd's decision */
	const char		*stage;		/* "rcpt" or "eom" */
	int			 max_attempts;
	const char		*client_addr, *helo, *mail_from, *message_id, *queue_id;
	const char		*dkim_domain, *dkim_selector, *dkim_algorithm;
	int			 dkim_key_bits;	/* 0: none */
	const char		*dnssec, *spf_result, *detail, *token_prefix;
};

/* Records a decision atomically (state change for "verified", evidence row
 * always); final receives the reason the database settled on (at most 32
 * bytes). STORE_TEMPFAIL with err set when the database failed. */
enum store_rc	 store_decide(struct store *, const struct store_evidence *,
		    char *final, size_t finalsize, struct buf *err);

/* Looks a request up by token hash. On STORE_TEMPFAIL, err says why. */
enum store_rc	 store_lookup(struct store *, const unsigned char *hash,
		    struct store_request *out, struct buf *err);

#endif
