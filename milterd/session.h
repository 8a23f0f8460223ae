/* session.h — the connection context and the per-message context of one milter
 * session, and the decisions taken on them (RCPT screening). */
#ifndef MILTERD_SESSION_H
#define MILTERD_SESSION_H

#include <netinet/in.h>
#include <arpa/inet.h>

#include "buf.h"
#include "config.h"
#include "store.h"
#include "token.h"

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

/* What the milter should answer. */
struct verdict {
	enum reason	 reason;
	const char	*rcode;		/* "250", "550", "451", "452"; NULL: continue */
	const char	*xcode;		/* enhanced status code */
	char		 text[512];	/* reply text, starts with the reason code */
};

struct msg {
	char		 qid[64];
	char		 mail_from[321];
	int		 has_token;
	char		 token[TOKEN_LEN + 1];
	unsigned char	 hash[TOKEN_HASH_LEN];
	char		 hash_prefix[TOKEN_PREFIX_LEN + 1];
	struct store_request req;
};

struct session {
	struct config	*cfg;		/* snapshot taken at connect */
	char		 client_addr[INET6_ADDRSTRLEN];
	char		 client_host[256];
	char		 helo[256];
	struct msg	 msg;
};

struct session	*session_new(struct config *);
void		 session_free(struct session *);
void		 session_set_client(struct session *, const char *host,
		    const struct sockaddr *);
/* Starts a new message (MAIL FROM); also called on abort. */
void		 session_msg_reset(struct session *);

/* Screens one envelope recipient. Returns 0 to let it pass; otherwise fills
 * v with the reply to give. */
int		 session_rcpt(struct session *, struct store *, const char *rcpt,
		    struct verdict *v);

#endif
