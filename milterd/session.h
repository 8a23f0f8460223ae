/* session.h — the connection context and the per-message context of one milter
 * session, and the steps of a verification mail: RCPT screening, headers, body,
 * the decision at end of message. Independent of libmilter, so that
 * `milterctl check` runs exactly this code. */
#ifndef MILTERD_SESSION_H
#define MILTERD_SESSION_H

#include <netinet/in.h>
#include <arpa/inet.h>

#include "buf.h"
#include "config.h"
#include "dkim.h"
#include "policy.h"
#include "spf.h"
#include "store.h"
#include "token.h"

#define SESSION_AR_MAX	 16		/* foreign A-R headers we can remove */

/* The header value of a kept header, and how often it appeared. */
struct session_header {
	int	 count;
	char	*value;			/* last instance, malloc'ed */
};

struct msg {
	char		 qid[64];
	char		 mail_from[321];
	int		 has_token;
	char		 token[TOKEN_LEN + 1];
	unsigned char	 hash[TOKEN_HASH_LEN];
	char		 hash_prefix[TOKEN_PREFIX_LEN + 1];
	struct store_request req;

	struct dkimv	*dkim;
	int		 failed;	/* temporary trouble while reading */
	char		 failure[256];
	struct session_header from, to, cc, subject, message_id;
	int		 from_bad_name;
	int		 ar_count;		/* Authentication-Results seen */
	int		 ar_ours[SESSION_AR_MAX];	/* their 1-based indices */
	int		 nar_ours;
	/* The body is searched for the token as it streams by, not kept: the
	 * last bytes of the previous chunk catch a token split across two. */
	char		 body_tail[TOKEN_LEN + 1];
	size_t		 body_tail_len;
	int		 body_has_token;
};

struct session {
	struct config	*cfg;		/* snapshot taken at connect */
	char		 client_addr[INET6_ADDRSTRLEN];
	char		 client_host[256];
	char		 helo[256];
	int		 leadspc;	/* header values keep their leading space */
	unsigned long	 noreply;	/* SMFIP_NR_* steps the MTA does not wait for */
	int		 dry_run;	/* decide, but write nothing (milterctl check) */
	int		 in_message;	/* counted in session_in_flight() */
	struct msg	 msg;
};

/* What end of message asks of the MTA besides the verdict. */
struct session_eom {
	struct verdict	 verdict;
	struct buf	 authres;	/* Authentication-Results value to insert, or empty */
	const int	*delete_ar;	/* indices of A-R headers to delete */
	int		 ndelete_ar;
	struct policy_decision decision;
	struct dkimv_sig sigs[DKIMV_MAXSIGS];
	int		 nsigs;
	struct spf_outcome spf_mailfrom;	/* valid when has_mailfrom */
	int		 has_mailfrom;
	struct spf_outcome spf_helo;
	int		 internal_client;
	char		 final_reason[32];
};

struct dns;

/* The libraries every decision needs, once per process: the Public Suffix
 * List, the resolver, libopendkim and libspf2 on it. */
int		 session_init_libs(const struct config *, struct dns **, struct buf *err);
void		 session_shutdown_libs(struct dns *);

struct session	*session_new(struct config *);
void		 session_free(struct session *);
void		 session_set_client(struct session *, const char *host,
		    const struct sockaddr *);
/* The same from a textual address (milterctl check); -1 if not an address. */
int		 session_set_client_text(struct session *, const char *host, const char *ip);
/* Starts a new message (MAIL FROM); also used on abort and after EOM. */
void		 session_msg_reset(struct session *);
/* Marks a message as begun (MAIL FROM) or over (EOM, abort, close); the
 * count of messages in flight lets SIGTERM wait for them. */
void		 session_msg_begin(struct session *);
void		 session_msg_end(struct session *);
int		 session_in_flight(void);

/* Screens one envelope recipient. Returns 0 to let it pass; otherwise fills
 * v with the reply to give. */
int		 session_rcpt(struct session *, struct store *, const char *rcpt,
		    struct verdict *v);
/* Message content, in order. None of them fail: trouble is remembered and
 * answered with 451 at end of message. */
void		 session_header(struct session *, const char *name, const char *value);
void		 session_eoh(struct session *);
void		 session_body(struct session *, const unsigned char *p, size_t n);
/* The decision. Fills out (release with session_eom_free). */
void		 session_eom(struct session *, struct store *, struct session_eom *out);
void		 session_eom_free(struct session_eom *);

#endif
