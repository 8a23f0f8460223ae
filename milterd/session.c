/* session.c — connection and message state; screening of verification
 * recipients at RCPT time. */
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "log.h"
#include "session.h"

static const char *const reason_names[] = {
	[R_NONE] = "none",
	[R_VERIFIED] = "verified",
	[R_ALREADY_VERIFIED] = "already_verified",
	[R_UNKNOWN_TOKEN] = "unknown_token",
	[R_EXPIRED] = "expired",
	[R_FROM_MISMATCH] = "from_mismatch",
	[R_DOMAIN_NOT_ALLOWED] = "domain_not_allowed",
	[R_NOT_AUTHENTICATED] = "not_authenticated",
	[R_TOKEN_NOT_SIGNED] = "token_not_signed",
	[R_MALFORMED] = "malformed",
	[R_TEMPORARY] = "temporary",
};

const char *
reason_name(enum reason r)
{
	return (unsigned)r < sizeof(reason_names) / sizeof(reason_names[0]) ?
	    reason_names[r] : "none";
}

struct session *
session_new(struct config *cfg)
{
	struct session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	config_ref(cfg);
	s->cfg = cfg;
	str_copy(s->client_addr, "unknown", sizeof(s->client_addr));
	return s;
}

void
session_free(struct session *s)
{
	if (s == NULL)
		return;
	config_unref(s->cfg);
	free(s);
}

void
session_set_client(struct session *s, const char *host, const struct sockaddr *sa)
{
	str_copy(s->client_host, host ? host : "", sizeof(s->client_host));
	if (sa == NULL)
		str_copy(s->client_addr, "unknown", sizeof(s->client_addr));
	else if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		    s->client_addr, sizeof(s->client_addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    s->client_addr, sizeof(s->client_addr));
	else
		str_copy(s->client_addr, "local", sizeof(s->client_addr));
}

void
session_msg_reset(struct session *s)
{
	memset(&s->msg, 0, sizeof(s->msg));
}

static void
verdict_set(struct verdict *v, enum reason r, const char *rcode, const char *xcode,
    const char *text)
{
	v->reason = r;
	v->rcode = rcode;
	v->xcode = xcode;
	snprintf(v->text, sizeof(v->text), "%s: %s", reason_name(r), text);
}

int
session_rcpt(struct session *s, struct store *st, const char *rcpt, struct verdict *v)
{
	struct msg *m = &s->msg;
	char token[TOKEN_LEN + 1], prefix[TOKEN_PREFIX_LEN + 1];
	unsigned char hash[TOKEN_HASH_LEN];
	struct store_request req;
	struct buf err;
	enum store_rc rc;

	switch (address_verify_rcpt(rcpt, s->cfg->verify_local, s->cfg->verify_domain, token)) {
	case RCPT_OTHER:
		return 0;
	case RCPT_VERIFY_MALFORMED:
		verdict_set(v, R_MALFORMED, "550", "5.1.1",
		    "this verification address holds no valid token;"
		    " reply to the challenge mail without changing its address");
		log_msg(LOG_NOTICE, m->qid, "rcpt=%s reason=malformed reply=550", rcpt);
		return 1;
	case RCPT_VERIFY:
		break;
	}
	token_hash(token, hash);
	token_hash_prefix(hash, prefix);
	if (m->has_token) {
		if (memcmp(m->hash, hash, sizeof(hash)) == 0)
			return 0;
		verdict_set(v, R_MALFORMED, "452", "4.5.3",
		    "one verification per message; send this one separately");
		log_msg(LOG_NOTICE, m->qid, "token=%s reason=malformed reply=452"
		    " detail=second token in one message", prefix);
		return 1;
	}
	buf_init(&err);
	rc = store_lookup(st, hash, &req, &err);
	switch (rc) {
	case STORE_TEMPFAIL:
		verdict_set(v, R_TEMPORARY, "451", "4.3.0",
		    "the verification service is temporarily unavailable; your mail"
		    " server will retry");
		log_msg(LOG_WARNING, m->qid, "token=%s reason=temporary reply=451 detail=%s",
		    prefix, err.s);
		buf_free(&err);
		return 1;
	case STORE_NOTFOUND:
		verdict_set(v, R_UNKNOWN_TOKEN, "550", "5.1.1",
		    "this verification address is unknown; reply to the most recent"
		    " challenge mail or ask for a new one");
		log_msg(LOG_NOTICE, m->qid, "token=%s reason=unknown_token reply=550", prefix);
		buf_free(&err);
		return 1;
	case STORE_OK:
		break;
	}
	buf_free(&err);
	switch (req.state) {
	case REQ_EXPIRED:
		verdict_set(v, R_EXPIRED, "550", "5.1.1",
		    "this verification request has expired; ask for a new one");
		break;
	case REQ_REVOKED:
		verdict_set(v, R_UNKNOWN_TOKEN, "550", "5.1.1",
		    "this verification request was cancelled or replaced by a newer"
		    " one; reply to the most recent challenge mail");
		break;
	case REQ_PENDING:
	case REQ_VERIFIED:
		/* A verified request continues too: a retried copy of a
		 * successful reply must get its 250, not a bounce. */
		m->has_token = 1;
		memcpy(m->token, token, sizeof(token));
		memcpy(m->hash, hash, sizeof(hash));
		memcpy(m->hash_prefix, prefix, sizeof(prefix));
		m->req = req;
		log_msg(LOG_INFO, m->qid, "token=%s request=%lld state=%s rcpt accepted",
		    prefix, req.id, store_state_name(req.state));
		return 0;
	}
	log_msg(LOG_NOTICE, m->qid, "token=%s request=%lld reason=%s reply=550", prefix,
	    req.id, reason_name(v->reason));
	return 1;
}
