/* session.h — the connection context and the per-message context of one milter
 * session, and the steps of a verification mail: RCPT, headers, body, end of
 * message. Each step collects facts; policy.c decides; the store records; the
 * step answers. Independent of the milter protocol, so that `milterctl check`
 * runs exactly this code. */
#ifndef MILTERD_SESSION_H
#define MILTERD_SESSION_H

#include <netinet/in.h>
#include <arpa/inet.h>

#include "buf.h"
#include "dkim.h"
#include "policy.h"
#include "snapshot.h"
#include "spf.h"
#include "store.h"
#include "token.h"

/* The header value of a kept header, and how often it appeared. */
struct session_header {
	int	 count;
	char	*value;			/* last instance, malloc'ed */
};

/* One message (MAIL FROM to end of message). Written and read by the worker
 * serving its connection only. */
struct msg {
	char		 qid[64];
	char		 mail_from[ADDRESS_MAXLEN + 3];	/* as the MTA gave it, <> kept */
	int		 mail_from_bad;	/* too long to be an address */
	int		 has_token;
	int		 has_other;	/* a recipient other than the verify address */
	char		 token[TOKEN_LEN + 1];
	unsigned char	 hash[TOKEN_HASH_LEN];
	char		 hash_prefix[TOKEN_PREFIX_LEN + 1];
	struct store_request req;	/* the request, as RCPT read it */
	struct store	*prospect;	/* store_prospect()'s, until the decision is recorded */
	struct policy_request preq;	/* the same, for the policy */
	int		 lang;		/* the request's reply language */

	struct dkimv	*dkim;		/* made once, when RCPT accepts the token */
	char		 failure[256];	/* temporary trouble while reading, or "" */
	struct session_header from, to, cc, subject, message_id;
	const char	*from_bad;	/* why From is malformed before parsing, or NULL */
	int		 ar_count;		/* Authentication-Results seen */
	int		*ar_ours;	/* 1-based indices of those claiming our id */
	int		 nar_ours, ar_cap;
	/* The body is searched for the token as it streams by, not kept: the
	 * last bytes of the previous chunk catch a token split across two. */
	char		 body_tail[TOKEN_LEN + 1];
	size_t		 body_tail_len;
	int		 body_has_token;
	/* Screened once the headers are in (policy_screen), decided at EOM. */
	int		 screened;
	struct policy_decision decision;
};

struct session {
	struct snapshot	*snap;		/* taken at connect */
	char		 client_addr[INET6_ADDRSTRLEN];
	char		 client_host[256];
	char		 helo[256];
	int		 leadspc;	/* header values keep their leading space */
	unsigned long	 noreply;	/* SMFIP_NR_* steps the MTA does not wait for */
	int		 in_message;	/* counted in stats_in_flight() */
	struct msg	 msg;
};

/* What end of message decided, and asks of the MTA besides the verdict. */
struct session_eom {
	struct verdict	 verdict;
	struct buf	 authres;	/* Authentication-Results value to insert, with
					 * its leading space, or empty */
	const int	*delete_ar;	/* indices of A-R headers to delete */
	int		 ndelete_ar;
	const struct policy_decision *decision;	/* the message's, until the next one */
	struct dkimv_sig sigs[DKIMV_MAXSIGS];
	int		 nsigs;
	struct spf_outcome spf_mailfrom;	/* valid when has_mailfrom */
	int		 has_mailfrom;
	struct spf_outcome spf_helo;		/* valid when has_helo */
	int		 has_helo;
	int		 internal_client;
};

struct dns;

/* The libraries every decision needs, once per process: the Public Suffix
 * List, the resolver, libopendkim and libspf2 on it. */
int		 session_init_libs(const struct config *, struct dns **, struct buf *err);
void		 session_shutdown_libs(struct dns *);

struct session	*session_new(struct snapshot *);
void		 session_free(struct session *);
void		 session_set_client(struct session *, const char *host,
		    const struct sockaddr *);
/* The same from a textual address (milterctl check); -1 if not an address. */
int		 session_set_client_text(struct session *, const char *host, const char *ip);
/* Sets HELO and MAIL FROM; -1 (nothing set) if one does not fit: such an
 * envelope is no verification reply (the caller answers malformed). */
int		 session_set_helo(struct session *, const char *helo);
int		 session_set_mail_from(struct session *, const char *mail_from);
/* Starts a new message (MAIL FROM); also used on abort and after EOM. */
void		 session_msg_reset(struct session *);
/* Marks a message as begun (MAIL FROM) or over (EOM, abort, close). */
void		 session_msg_begin(struct session *);
void		 session_msg_end(struct session *);

/* Screens one envelope recipient. Returns 0 to let it pass; otherwise fills
 * v with the reply to give. */
int		 session_rcpt(struct session *, struct store *, const char *rcpt,
		    struct verdict *v);
/* Message content, in order. None of them fail: trouble is remembered and
 * answered with 451 at end of message. A header's len is its value's length
 * as sent: longer than strlen(value) when the value holds a NUL. */
void		 session_header(struct session *, const char *name, const char *value,
		    size_t len);
void		 session_eoh(struct session *);
void		 session_body(struct session *, const unsigned char *p, size_t n);
/* The decision: collect, decide, record, answer. Fills out (release with
 * session_eom_free). */
void		 session_eom(struct session *, struct store *, struct session_eom *out);
void		 session_eom_free(struct session_eom *);

#endif
