/* session.c — connection and message state; the steps of a verification mail
 * from RCPT to end of message. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "address.h"
#include "align.h"
#include "dns.h"
#include "authres.h"
#include "log.h"
#include "session.h"
#include "stats.h"

static int session_messages;	/* in flight, all connections */

void
session_msg_begin(struct session *s)
{
	if (!s->in_message) {
		s->in_message = 1;
		__atomic_add_fetch(&session_messages, 1, __ATOMIC_SEQ_CST);
	}
}

void
session_msg_end(struct session *s)
{
	if (s->in_message) {
		s->in_message = 0;
		__atomic_sub_fetch(&session_messages, 1, __ATOMIC_SEQ_CST);
	}
}

int
session_in_flight(void)
{
	return __atomic_load_n(&session_messages, __ATOMIC_SEQ_CST);
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
	session_msg_end(s);
	session_msg_reset(s);
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

int
session_set_client_text(struct session *s, const char *host, const char *ip)
{
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;

	memset(&a4, 0, sizeof(a4));
	memset(&a6, 0, sizeof(a6));
	if (inet_pton(AF_INET, ip, &a4.sin_addr) == 1) {
		a4.sin_family = AF_INET;
		session_set_client(s, host, (struct sockaddr *)&a4);
	} else if (inet_pton(AF_INET6, ip, &a6.sin6_addr) == 1) {
		a6.sin6_family = AF_INET6;
		session_set_client(s, host, (struct sockaddr *)&a6);
	} else
		return -1;
	return 0;
}

int
session_init_libs(const struct config *cfg, struct dns **dns, struct buf *err)
{
	if (align_init() == -1) {
		buf_puts(err, "cannot load the Public Suffix List");
		return -1;
	}
	if ((*dns = dns_open(cfg->dns_resolver, cfg->dns_trust_anchor, cfg->dns_timeout,
	    err)) == NULL)
		return -1;
	if (dkimv_init(*dns, cfg->dns_timeout, err) == -1 || spf_init(*dns, err) == -1) {
		dkimv_shutdown();
		dns_close(*dns);
		*dns = NULL;
		return -1;
	}
	return 0;
}

void
session_shutdown_libs(struct dns *dns)
{
	spf_shutdown();
	dkimv_shutdown();
	dns_close(dns);
}

void
session_msg_reset(struct session *s)
{
	struct msg *m = &s->msg;
	struct session_header *hs[] = { &m->from, &m->to, &m->cc, &m->subject, &m->message_id };

	dkimv_free(m->dkim);
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		free(hs[i]->value);
	memset(m, 0, sizeof(*m));
}

/* Evidence for a decision taken at RCPT on a known request. */
static void
session_rcpt_evidence(struct session *s, struct store *st, const struct store_request *req,
    enum reason r)
{
	struct store_evidence ev = {
		.request_id = req->id, .token_hash = s->msg.hash, .reason = reason_name(r),
		.stage = "rcpt", .client_addr = s->client_addr, .helo = s->helo,
		.mail_from = s->msg.mail_from, .queue_id = s->msg.qid[0] ? s->msg.qid : NULL,
		.token_prefix = s->msg.hash_prefix,
	};
	char final[32];
	struct buf err;

	if (s->dry_run)
		return;
	buf_init(&err);
	if (store_decide(st, &ev, final, sizeof(final), &err) != STORE_OK)
		log_warn("evidence not recorded: %s", err.s);
	buf_free(&err);
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
		policy_reply(v, R_MALFORMED, "550", "5.1.1", s->cfg->replies, -1);
		stats_decision(R_MALFORMED, 1);
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
		policy_reply(v, R_MALFORMED, "452", "4.5.3", s->cfg->replies, -1);
		log_msg(LOG_NOTICE, m->qid, "token=%s reason=malformed reply=452"
		    " detail=second token in one message", prefix);
		return 1;
	}
	buf_init(&err);
	rc = store_lookup(st, hash, &req, &err);
	if (rc == STORE_TEMPFAIL) {
		policy_reply(v, R_TEMPORARY, "451", "4.3.0", s->cfg->replies, -1);
		stats_tempfail(ST_DATABASE);
		stats_decision(R_TEMPORARY, 1);
		log_msg(LOG_WARNING, m->qid, "token=%s reason=temporary reply=451 detail=%s",
		    prefix, err.s);
		buf_free(&err);
		return 1;
	}
	buf_free(&err);
	if (rc == STORE_NOTFOUND) {
		policy_reply(v, R_UNKNOWN_TOKEN, "550", "5.1.1", s->cfg->replies, -1);
		stats_decision(R_UNKNOWN_TOKEN, 1);
		log_msg(LOG_NOTICE, m->qid, "token=%s reason=unknown_token reply=550", prefix);
		return 1;
	}
	memcpy(m->hash, hash, sizeof(hash));
	memcpy(m->hash_prefix, prefix, sizeof(prefix));
	switch (req.state) {
	case REQ_EXPIRED:
		policy_reply(v, R_EXPIRED, "550", "5.1.1", s->cfg->replies, req.lang);
		break;
	case REQ_REVOKED:
		/* Revoked or superseded: the token no longer selects a request. */
		policy_reply(v, R_UNKNOWN_TOKEN, "550", "5.1.1", s->cfg->replies, req.lang);
		break;
	case REQ_PENDING:
	case REQ_VERIFIED:
		/* A verified request continues too: a retried copy of a
		 * successful reply must get its 250, not a bounce. */
		m->has_token = 1;
		memcpy(m->token, token, sizeof(token));
		m->req = req;
		log_msg(LOG_INFO, m->qid, "token=%s request=%lld state=%s rcpt accepted",
		    prefix, req.id, store_state_name(req.state));
		return 0;
	}
	log_msg(LOG_NOTICE, m->qid, "token=%s request=%lld reason=%s reply=550", prefix,
	    req.id, reason_name(v->reason));
	stats_decision(v->reason, 1);
	session_rcpt_evidence(s, st, &req, v->reason);
	return 1;
}

static void
session_fail(struct msg *m, const char *what, const char *why)
{
	if (m->failed)
		return;
	m->failed = 1;
	snprintf(m->failure, sizeof(m->failure), "%s: %s", what, why);
}

static void
session_keep(struct msg *m, struct session_header *h, const char *value)
{
	char *copy = strdup(value);

	if (copy == NULL) {
		session_fail(m, "header", "out of memory");
		return;
	}
	free(h->value);
	h->value = copy;
	h->count++;
}

/* The header value as signed: its leading space restored when the MTA
 * stripped it, and folding as CRLF (Postfix hands folded lines over with a
 * bare LF, which DKIM canonicalization would otherwise keep). */
static int
session_header_value(struct buf *v, const char *value, int leadspc)
{
	const char *c = value, *lf;

	if (!leadspc && buf_putc(v, ' ') == -1)
		return -1;
	while ((lf = strchr(c, '\n')) != NULL) {
		if (buf_append(v, c, (size_t)(lf - c)) == -1 ||
		    ((lf == value || lf[-1] != '\r') && buf_putc(v, '\r') == -1) ||
		    buf_putc(v, '\n') == -1)
			return -1;
		c = lf + 1;
	}
	return buf_puts(v, c);
}

void
session_header(struct session *s, const char *name, const char *value)
{
	struct msg *m = &s->msg;
	struct buf err, v;
	size_t n = strlen(name);

	if (!m->has_token)
		return;
	/* "From :" is obsolete syntax some parsers read differently. */
	if (n > 4 && strncasecmp(name, "From", 4) == 0 &&
	    strspn(name + 4, " \t") == n - 4) {
		m->from_bad_name = 1;
		session_keep(m, &m->from, value);
	} else if (strcasecmp(name, "From") == 0)
		session_keep(m, &m->from, value);
	else if (strcasecmp(name, "To") == 0)
		session_keep(m, &m->to, value);
	else if (strcasecmp(name, "Cc") == 0)
		session_keep(m, &m->cc, value);
	else if (strcasecmp(name, "Subject") == 0)
		session_keep(m, &m->subject, value);
	else if (strcasecmp(name, "Message-ID") == 0)
		session_keep(m, &m->message_id, value);
	else if (strcasecmp(name, "Authentication-Results") == 0) {
		m->ar_count++;
		if (authres_is_ours(value, s->cfg->authserv_id) && m->nar_ours < SESSION_AR_MAX)
			m->ar_ours[m->nar_ours++] = m->ar_count;
	}
	if (m->failed)
		return;
	buf_init(&err);
	buf_init(&v);
	if (m->dkim == NULL && (m->dkim = dkimv_new(m->qid, &err)) == NULL)
		session_fail(m, "dkim", err.s);
	else if (session_header_value(&v, value, s->leadspc) == -1)
		session_fail(m, "header", "out of memory");
	else if (dkimv_header(m->dkim, name, v.s, &err) == -1)
		session_fail(m, "dkim", err.s);
	buf_free(&v);
	buf_free(&err);
}

void
session_eoh(struct session *s)
{
	struct msg *m = &s->msg;
	struct buf err;

	if (!m->has_token || m->failed)
		return;
	buf_init(&err);
	if (m->dkim == NULL && (m->dkim = dkimv_new(m->qid, &err)) == NULL)
		session_fail(m, "dkim", err.s);
	else if (dkimv_eoh(m->dkim, &err) == -1)
		session_fail(m, "dkim", err.s);
	buf_free(&err);
}

/* Looks for the token in one body chunk and across its start; keeps the
 * chunk's last TOKEN_LEN bytes for the next one. */
static void
session_body_search(struct msg *m, const char *p, size_t n)
{
	char window[2 * TOKEN_LEN + 2];
	size_t head = n < TOKEN_LEN + 1 ? n : TOKEN_LEN + 1, keep;

	memcpy(window, m->body_tail, m->body_tail_len);
	memcpy(window + m->body_tail_len, p, head);
	if (token_find(window, m->body_tail_len + head, m->token) || token_find(p, n, m->token)) {
		m->body_has_token = 1;
		return;
	}
	/* The new tail: the last TOKEN_LEN bytes of (old tail + chunk). */
	if (n >= TOKEN_LEN) {
		memcpy(m->body_tail, p + n - TOKEN_LEN, TOKEN_LEN);
		m->body_tail_len = TOKEN_LEN;
	} else {
		keep = m->body_tail_len + n > TOKEN_LEN ? TOKEN_LEN - n : m->body_tail_len;
		memmove(m->body_tail, m->body_tail + m->body_tail_len - keep, keep);
		memcpy(m->body_tail + keep, p, n);
		m->body_tail_len = keep + n;
	}
}

void
session_body(struct session *s, const unsigned char *p, size_t n)
{
	struct msg *m = &s->msg;
	struct buf err;

	if (!m->has_token || m->failed)
		return;
	buf_init(&err);
	if (m->dkim != NULL && dkimv_body(m->dkim, p, n, &err) == -1)
		session_fail(m, "dkim", err.s);
	buf_free(&err);
	if (!m->body_has_token)
		session_body_search(m, (const char *)p, n);
}

/* SPF for the MAIL FROM identity and, for the record, HELO. Clients on
 * loopback or internal networks are not evaluated: they never pass. */
static void
session_spf(const struct session *s, struct session_eom *out)
{
	char mailfrom[ADDRESS_MAXLEN + 1];

	out->internal_client = config_internal_client(s->cfg, s->client_addr);
	out->has_mailfrom = address_envelope(s->msg.mail_from, mailfrom, sizeof(mailfrom)) == 0;
	if (out->internal_client) {
		str_copy(out->spf_mailfrom.why, "internal client", sizeof(out->spf_mailfrom.why));
		str_copy(out->spf_helo.why, "internal client", sizeof(out->spf_helo.why));
		if (out->has_mailfrom)
			str_copy(out->spf_mailfrom.domain, strrchr(mailfrom, '@') + 1,
			    sizeof(out->spf_mailfrom.domain));
		return;
	}
	if (out->has_mailfrom)
		spf_check(s->client_addr, s->helo, mailfrom, &out->spf_mailfrom);
	if (s->helo[0] != '\0')
		spf_check(s->client_addr, s->helo, s->helo, &out->spf_helo);
}

/* Counters for one end-of-message decision. */
static void
session_count(const struct session_eom *out, const struct policy_decision *d, enum reason r,
    int failed, int dbfail)
{
	for (int i = 0; i < out->nsigs; i++)
		stats_dkim(out->sigs[i].result);
	if (out->nsigs == 0)
		stats_dkim_none();
	if (out->has_mailfrom && !out->internal_client)
		stats_spf(out->spf_mailfrom.result);
	stats_decision(r, 0);
	if (r == R_TEMPORARY)
		stats_tempfail(dbfail ? ST_DATABASE : failed ? ST_INTERNAL :
		    d->reason == R_TEMPORARY ? ST_DNS : ST_INTERNAL);
}

void
session_eom(struct session *s, struct store *st, struct session_eom *out)
{
	struct msg *m = &s->msg;
	struct policy_decision *d = &out->decision;
	struct policy_input in;
	const struct dkimv_sig *used;
	struct store_evidence ev;
	struct buf err;
	enum reason r;
	char spfbuf[128];
	int n = 0, dbfail = 0;

	memset(out, 0, sizeof(*out));
	buf_init(&out->authres);
	buf_init(&err);
	d->rules = &s->cfg->pol->defaults;
	if (!m->has_token) {
		out->verdict.action = VA_ACCEPT;
		return;
	}
	if (!m->failed && m->dkim == NULL && (m->dkim = dkimv_new(m->qid, &err)) == NULL)
		session_fail(m, "dkim", err.s);
	if (!m->failed && (n = dkimv_eom(m->dkim, out->sigs, DKIMV_MAXSIGS, &err)) == -1)
		session_fail(m, "dkim", err.s);
	out->nsigs = n > 0 ? n : 0;

	session_spf(s, out);
	memset(&in, 0, sizeof(in));
	in.spf_mailfrom = out->has_mailfrom ? &out->spf_mailfrom : NULL;
	in.spf_helo = &out->spf_helo;
	in.internal_client = out->internal_client;
	in.from = (struct policy_header){ m->from.count, m->from.value };
	in.to = (struct policy_header){ m->to.count, m->to.value };
	in.cc = (struct policy_header){ m->cc.count, m->cc.value };
	in.subject = (struct policy_header){ m->subject.count, m->subject.value };
	in.from_bad_name = m->from_bad_name;
	in.body_has_token = m->body_has_token;
	in.sigs = out->sigs;
	in.nsigs = (size_t)out->nsigs;
	in.token = m->token;
	in.req = &m->req;
	in.now = (long long)time(NULL);
	policy_decide(s->cfg->pol, &in, d);
	if (m->failed) {
		d->reason = R_TEMPORARY;
		d->xcode = "4.3.0";
		snprintf(d->detail, sizeof(d->detail), "%s", m->failure);
	}

	snprintf(spfbuf, sizeof(spfbuf), "mailfrom=%s%s helo=%s%s",
	    out->has_mailfrom ? spf_result_name(out->spf_mailfrom.result) : "none",
	    out->has_mailfrom && d->from_ok ? (d->spf_aligned ? "(aligned)" : "(not aligned)") : "",
	    spf_result_name(out->spf_helo.result), out->internal_client ? " internal" : "");
	used = d->sig >= 0 ? &out->sigs[d->sig] : out->nsigs > 0 ? &out->sigs[0] : NULL;
	ev = (struct store_evidence){
		.request_id = m->req.id, .token_hash = m->hash,
		.from = d->from_ok ? d->from.addr : NULL, .reason = reason_name(d->reason),
		.stage = "eom", .max_attempts = d->rules->max_attempts,
		.client_addr = s->client_addr, .helo = s->helo, .mail_from = m->mail_from,
		.message_id = m->message_id.value, .queue_id = m->qid[0] ? m->qid : NULL,
		.dkim_domain = used ? used->domain : NULL,
		.dkim_selector = used ? used->selector : NULL,
		.dkim_algorithm = used ? used->algorithm : NULL,
		.dkim_key_bits = used ? (int)used->key_bits : 0,
		.dnssec = used && d->rules->dnssec != PD_IGNORE ? used->dnssec : NULL,
		.detail = d->detail,
		.spf_result = spfbuf,
		.token_prefix = m->hash_prefix,
	};
	buf_reset(&err);
	if (s->dry_run) {
		/* What the database would settle, without writing. */
		str_copy(out->final_reason, reason_name(d->reason == R_VERIFIED &&
		    m->req.state == REQ_VERIFIED ? R_ALREADY_VERIFIED : d->reason),
		    sizeof(out->final_reason));
	} else if (store_decide(st, &ev, out->final_reason, sizeof(out->final_reason), &err) !=
	    STORE_OK) {
		dbfail = 1;
		/* No evidence, no decision: the sender's MTA retries. */
		str_copy(out->final_reason, "temporary", sizeof(out->final_reason));
		d->xcode = "4.3.0";
		log_msg(LOG_WARNING, m->qid, "database: %s", err.s);
	}
	r = reason_parse(out->final_reason);
	if (r == R_NONE)
		r = R_TEMPORARY;
	session_count(out, d, r, m->failed, dbfail);
	policy_verdict(d, r, s->cfg->replies, m->req.lang, &out->verdict);
	if (out->verdict.action == VA_ACCEPT || out->verdict.action == VA_DISCARD) {
		d->reason = r;
		authres_build(&out->authres, s->cfg->authserv_id, out->sigs,
		    (size_t)out->nsigs, d);
		authres_spf(&out->authres, out->has_mailfrom ? &out->spf_mailfrom : NULL,
		    &out->spf_helo, s->helo, d, out->internal_client);
		out->delete_ar = m->ar_ours;
		out->ndelete_ar = m->nar_ours;
	}
	log_msg(r == R_VERIFIED || r == R_ALREADY_VERIFIED ? LOG_INFO : LOG_NOTICE, m->qid,
	    "token=%s request=%lld account=%s from=<%s> client=%s dkim=%s%s%s sigs=%d"
	    " spf=%s reason=%s reply=%s detail=%s", m->hash_prefix, m->req.id, m->req.account,
	    d->from_ok ? d->from.addr : "", s->client_addr, used ? used->domain : "none",
	    used ? "/" : "", used ? used->selector : "", out->nsigs, spfbuf, reason_name(r),
	    out->verdict.action == VA_REPLY ? out->verdict.rcode :
	    out->verdict.action == VA_DISCARD ? "discard" : "250", d->detail);
	buf_free(&err);
}

void
session_eom_free(struct session_eom *out)
{
	buf_free(&out->authres);
}
