/* session.c — connection and message state; the steps of a verification mail
 * from RCPT to end of message: collect facts, ask policy.c, record, answer. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "address.h"
#include "align.h"
#include "authres.h"
#include "dns.h"
#include "log.h"
#include "session.h"
#include "stats.h"

_Static_assert(STORE_HASH_LEN == TOKEN_HASH_LEN, "the store keeps tokens' SHA-256");

/* SPF of HELO is recorded, never a pass: its lookups, all of them, get this
 * long (a dead nameserver for the HELO name would otherwise hold the
 * decision dns_timeout per query). */
#define SESSION_HELO_MS	1000

void
session_msg_begin(struct session *s)
{
	if (!s->in_message) {
		s->in_message = 1;
		stats_in_flight_add(1);
	}
}

void
session_msg_end(struct session *s)
{
	if (s->in_message) {
		s->in_message = 0;
		stats_in_flight_add(-1);
	}
}

struct session *
session_new(struct snapshot *snap)
{
	struct session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	snapshot_ref(snap);
	s->snap = snap;
	(void)str_copy(s->client_addr, "unknown", sizeof(s->client_addr));
	return s;
}

void
session_free(struct session *s)
{
	if (s == NULL)
		return;
	session_msg_end(s);
	session_msg_reset(s);
	snapshot_unref(s->snap);
	free(s);
}

void
session_set_client(struct session *s, const char *host, const struct sockaddr *sa)
{
	/* The host name is for logs only: a long one is dropped, never cut. */
	if (str_copy(s->client_host, host ? host : "", sizeof(s->client_host)) == -1)
		s->client_host[0] = '\0';
	if (sa == NULL)
		(void)str_copy(s->client_addr, "unknown", sizeof(s->client_addr));
	else if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		    s->client_addr, sizeof(s->client_addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    s->client_addr, sizeof(s->client_addr));
	else
		(void)str_copy(s->client_addr, "local", sizeof(s->client_addr));
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

/* A HELO name longer than any hostname is no usable HELO: recorded as none. */
int
session_set_helo(struct session *s, const char *helo)
{
	if (str_copy(s->helo, helo, sizeof(s->helo)) == -1) {
		s->helo[0] = '\0';
		return -1;
	}
	return 0;
}

/* A MAIL FROM longer than any address cannot be the agent's: RCPT refuses a
 * verification recipient in such a transaction (malformed). */
int
session_set_mail_from(struct session *s, const char *mail_from)
{
	if (str_copy(s->msg.mail_from, mail_from, sizeof(s->msg.mail_from)) == -1) {
		s->msg.mail_from[0] = '\0';
		s->msg.mail_from_bad = 1;
		return -1;
	}
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

/* The message's verification, if one may come, no longer will: it is being
 * recorded, or the message ended without one (store_prospect). */
static void
session_prospect_end(struct msg *m)
{
	if (m->prospect != NULL) {
		store_prospect(m->prospect, -1);
		m->prospect = NULL;
	}
}

void
session_msg_reset(struct session *s)
{
	struct msg *m = &s->msg;
	struct session_header *hs[] = { &m->from, &m->to, &m->cc, &m->subject, &m->message_id };

	session_prospect_end(m);
	dkimv_free(m->dkim);
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		free(hs[i]->value);
	free(m->ar_ours);
	memset(m, 0, sizeof(*m));
}

/* Remembers the first temporary trouble of a message: answered 451 at its end. */
static void
session_fail(struct msg *m, const char *what, const char *why)
{
	if (m->failure[0] != '\0')
		return;
	/* Cut if need be: this is the text of a 4xx's log line, not a fact. */
	(void)snprintf(m->failure, sizeof(m->failure), "%s: %s", what, why);
}

/* ------------------------------------------------------------------ RCPT */

/* The evidence of a decision, recorded as is (a refusal: no guard). */
static void
session_evidence(struct session *s, struct store *st, enum reason r, const char *stage,
    const char *detail)
{
	struct store_evidence ev = {
		.request_id = s->msg.req.id, .token_hash = s->msg.hash, .reason = r,
		.stage = stage, .client_addr = s->client_addr, .helo = s->helo,
		.mail_from = s->msg.mail_from, .queue_id = s->msg.qid[0] ? s->msg.qid : NULL,
		.token_prefix = s->msg.hash_prefix, .detail = detail,
	};
	struct store_outcome out;
	struct buf err;

	buf_init(&err);
	if (store_record(st, &ev, NULL, &out, &err) != STORE_OK)
		log_warn("evidence not recorded: %s", err.s);
	buf_free(&err);
}

/* Asks the database for the request of the token in rcpt; fills in. */
static void
session_lookup(struct session *s, struct store *st, const unsigned char *hash,
    struct policy_rcpt *in)
{
	struct msg *m = &s->msg;
	struct buf err;

	buf_init(&err);
	switch (store_lookup(st, hash, &m->req, &err)) {
	case STORE_TEMPFAIL:
		in->lookup_failed = 1;
		stats_tempfail(ST_DATABASE);
		log_msg(LOG_WARNING, m->qid, "token=%s database: %s", m->hash_prefix, err.s);
		break;
	case STORE_OK:
		if (m->req.state == REQ_PENDING && m->prospect == NULL) {
			m->prospect = st;	/* a verification may come */
			store_prospect(st, 1);
		}
		/* No holders yet: the guarded write counts them (store.c, "lookup"). */
		m->preq = (struct policy_request){ m->req.state, m->req.attempts, m->req.email,
		    m->req.created_at, 0 };
		m->lang = replies_lang(m->req.lang);
		in->req = &m->preq;
		in->lang = m->lang;
		break;
	case STORE_NOTFOUND:
		break;
	}
	buf_free(&err);
}

/* The token is the message's from now on; its DKIM context is made now,
 * once, since only a message with a token is looked at. */
static void
session_take_token(struct session *s, const char *token)
{
	struct msg *m = &s->msg;
	struct buf err;

	m->has_token = 1;
	memcpy(m->token, token, sizeof(m->token));
	buf_init(&err);
	if ((m->dkim = dkimv_new(m->qid, &err)) == NULL)
		session_fail(m, "dkim", err.s);
	buf_free(&err);
	log_msg(LOG_INFO, m->qid, "token=%s request=%lld state=%s rcpt accepted",
	    m->hash_prefix, m->req.id, request_state_name(m->req.state));
}

int
session_rcpt(struct session *s, struct store *st, const char *rcpt, struct verdict *v)
{
	const struct snapshot *snap = s->snap;
	struct msg *m = &s->msg;
	char token[TOKEN_LEN + 1], prefix[TOKEN_PREFIX_LEN + 1] = "none";
	unsigned char hash[TOKEN_HASH_LEN];
	struct policy_rcpt in = { .lang = -1 };

	in.kind = address_verify_rcpt(rcpt, snap->cfg->verify_local, snap->cfg->verify_domain,
	    token);
	if (in.kind == RCPT_VERIFY) {
		token_hash(token, hash);
		token_hash_prefix(hash, prefix);
		if (m->has_token && memcmp(m->hash, hash, sizeof(hash)) == 0)
			return 0;	/* the same token twice */
		in.second_token = m->has_token;
		in.mixed = m->has_other;
		in.envelope_bad = m->mail_from_bad;
		if (!in.second_token && !in.mixed) {
			memcpy(m->hash, hash, sizeof(hash));
			memcpy(m->hash_prefix, prefix, sizeof(prefix));
			if (!in.envelope_bad)
				session_lookup(s, st, hash, &in);
		}
	} else if (in.kind == RCPT_OTHER)
		in.mixed = m->has_token;
	if (policy_rcpt(snap->pol, snap->replies, &in, v) == 0) {
		if (in.kind == RCPT_VERIFY)
			session_take_token(s, token);
		else if (in.kind == RCPT_OTHER)
			m->has_other = 1;
		return 0;
	}
	stats_decision(v->reason, 1);
	/* Never the recipient itself once it holds a token: a secret. */
	if (in.kind == RCPT_VERIFY)
		log_msg(v->reason == R_TEMPORARY ? LOG_WARNING : LOG_NOTICE, m->qid,
		    "token=%s reason=%s reply=%s xcode=%s request=%lld detail=%s", prefix,
		    reason_name(v->reason), v->rcode, v->xcode, in.req ? m->req.id : 0LL,
		    v->detail ? v->detail : "");
	else
		log_msg(LOG_NOTICE, m->qid, "rcpt=%s reason=%s reply=%s xcode=%s%s%s", rcpt,
		    reason_name(v->reason), v->rcode, v->xcode, v->detail ? " detail=" : "",
		    v->detail ? v->detail : "");
	/* A refusal of a known request is evidence; unknown tokens are not
	 * (anyone can send them: they would fill the table). */
	if (in.req != NULL)
		session_evidence(s, st, v->reason, "rcpt", v->detail);
	if (!m->has_token)
		memset(&m->req, 0, sizeof(m->req));
	return 1;
}

/* ------------------------------------------------------- headers and body */

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

	if (!leadspc)
		buf_putc(v, ' ');
	while ((lf = strchr(c, '\n')) != NULL) {
		buf_append(v, c, (size_t)(lf - c));
		if (lf == value || lf[-1] != '\r')
			buf_putc(v, '\r');
		buf_putc(v, '\n');
		c = lf + 1;
	}
	buf_puts(v, c);
	return buf_failed(v) ? -1 : 0;
}

/* Where a header the decision reads is kept (From, To, Cc, Subject,
 * Message-ID), or NULL. */
static struct session_header *
session_kept(struct msg *m, const char *name)
{
	static const struct {
		const char *name;
		size_t off;
	} kept[] = {
		{ "From", offsetof(struct msg, from) }, { "To", offsetof(struct msg, to) },
		{ "Cc", offsetof(struct msg, cc) }, { "Subject", offsetof(struct msg, subject) },
		{ "Message-ID", offsetof(struct msg, message_id) },
	};

	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		if (strcasecmp(name, kept[i].name) == 0)
			return (struct session_header *)(void *)((char *)m + kept[i].off);
	return NULL;
}

void
session_header(struct session *s, const char *name, const char *value, size_t len)
{
	struct msg *m = &s->msg;
	struct session_header *h;
	struct buf err, v;
	size_t n = strlen(name);

	if (!m->has_token)
		return;
	/* "From :" is obsolete syntax some parsers read differently. */
	if (n > 4 && strncasecmp(name, "From", 4) == 0 && strspn(name + 4, " \t") == n - 4) {
		m->from_bad = "white space before the colon of From";
		session_keep(m, &m->from, value);
	} else if (strcasecmp(name, "Authentication-Results") == 0) {
		m->ar_count++;
		/* Every one claiming our id goes, however many (a fixed 16 let the
		 * 17th forged dkim=pass through); the MTA's header limit bounds them. */
		if (authres_is_ours(value, s->snap->cfg->authserv_id)) {
			if (m->nar_ours == m->ar_cap) {
				int cap = m->ar_cap ? m->ar_cap * 2 : 4, *grown;

				if ((grown = realloc(m->ar_ours, (size_t)cap * sizeof(*grown))) == NULL) {
					session_fail(m, "header", "out of memory");
					return;
				}
				m->ar_ours = grown;
				m->ar_cap = cap;
			}
			m->ar_ours[m->nar_ours++] = m->ar_count;
		}
	} else if ((h = session_kept(m, name)) != NULL) {
		session_keep(m, h, value);
		/* The rest of a From cut at a NUL is what a reader past the NUL
		 * would see: refused, not parsed in part (DESIGN.md). */
		if (h == &m->from && strlen(value) != len)
			m->from_bad = "NUL in From";
	}
	if (m->failure[0] != '\0')
		return;
	buf_init(&err);
	buf_init(&v);
	if (session_header_value(&v, value, s->leadspc) == -1)
		session_fail(m, "header", "out of memory");
	else if (dkimv_header(m->dkim, name, v.s, &err) == -1)
		session_fail(m, "dkim", err.s);
	buf_free(&v);
	buf_free(&err);
}

/* libopendkim's prescreen asks, for each signer domain, whether its key is worth fetching. */
static int
session_dkim_worth(void *arg, const char *domain)
{
	return policy_dkim_worth(arg, domain);
}

/* What can matter is known once the headers are in. */
static void
session_screen(struct session *s)
{
	struct msg *m = &s->msg;
	struct policy_header from = { m->from.count, m->from.value };

	if (m->screened)
		return;
	policy_screen(s->snap->pol, &from, m->from_bad, &m->preq, &m->decision);
	m->screened = 1;
}

void
session_eoh(struct session *s)
{
	struct msg *m = &s->msg;
	struct buf err;

	if (!m->has_token)
		return;
	session_screen(s);
	if (m->failure[0] != '\0')
		return;
	buf_init(&err);
	if (dkimv_eoh(m->dkim, session_dkim_worth, &m->decision, &err) == -1)
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

	if (!m->has_token || m->failure[0] != '\0')
		return;
	buf_init(&err);
	if (dkimv_body(m->dkim, p, n, &err) == -1)
		session_fail(m, "dkim", err.s);
	buf_free(&err);
	if (!m->body_has_token)
		session_body_search(m, (const char *)p, n);
}

/* ------------------------------------------------- end of message: collect */

/* SPF for the MAIL FROM identity and, for the record, HELO: each evaluated
 * only where it could matter (policy_spf_skip); otherwise skipped, and why. */
static void
session_spf(const struct session *s, const struct policy_decision *d, struct session_eom *out)
{
	char mailfrom[ADDRESS_MAXLEN + 1];
	const char *skip;

	out->internal_client = config_internal_client(s->snap->cfg, s->client_addr);
	out->has_mailfrom = address_envelope(s->msg.mail_from, mailfrom, sizeof(mailfrom)) == 0;
	if (out->has_mailfrom) {
		/* An address has at most 255 characters of domain: it fits. */
		(void)str_copy(out->spf_mailfrom.domain, strrchr(mailfrom, '@') + 1,
		    sizeof(out->spf_mailfrom.domain));
		if ((skip = policy_spf_skip(d, out->spf_mailfrom.domain,
		    out->internal_client)) == NULL)
			spf_check(s->client_addr, s->helo, mailfrom, &out->spf_mailfrom);
		else {
			out->spf_mailfrom.result = SPF_R_SKIPPED;
			(void)str_copy(out->spf_mailfrom.why, skip, sizeof(out->spf_mailfrom.why));
		}
	}
	out->has_helo = address_valid_domain(s->helo);
	if (out->has_helo) {
		(void)str_copy(out->spf_helo.domain, s->helo, sizeof(out->spf_helo.domain));
		if ((skip = policy_spf_skip(d, s->helo, out->internal_client)) == NULL) {
			dns_set_deadline(SESSION_HELO_MS);
			spf_check(s->client_addr, s->helo, s->helo, &out->spf_helo);
			dns_set_deadline(0);
		} else {
			out->spf_helo.result = SPF_R_SKIPPED;
			(void)str_copy(out->spf_helo.why, skip, sizeof(out->spf_helo.why));
		}
	}
}

/* Signatures and SPF results: the facts of the decision. */
static void
session_collect(struct session *s, struct session_eom *out)
{
	struct msg *m = &s->msg;
	struct buf err;
	int n = 0;

	buf_init(&err);
	if (m->failure[0] == '\0' &&
	    (n = dkimv_eom(m->dkim, out->sigs, DKIMV_MAXSIGS, &err)) == -1)
		session_fail(m, "dkim", err.s);
	out->nsigs = n > 0 ? n : 0;
	buf_free(&err);
	session_spf(s, &m->decision, out);
}

/* ------------------------------------------------ end of message: decide */

static void
session_decide(struct session *s, const struct session_eom *out)
{
	struct msg *m = &s->msg;
	struct policy_input in = {
		.to = { m->to.count, m->to.value },
		.cc = { m->cc.count, m->cc.value },
		.subject = { m->subject.count, m->subject.value },
		.body_has_token = m->body_has_token,
		.sigs = out->sigs, .nsigs = (size_t)out->nsigs, .token = m->token,
		.spf_mailfrom = out->has_mailfrom ? &out->spf_mailfrom : NULL,
		.internal_client = out->internal_client,
		.req = &m->preq,
		.failure = m->failure[0] != '\0' ? m->failure : NULL,
	};

	policy_decide(&in, &m->decision);
}

/* ------------------------------------------------ end of message: record */

/* "mailfrom=pass(aligned) helo=none" for evidence and logs. */
static void
session_spf_summary(const struct session_eom *out, const struct policy_decision *d,
    char *buf, size_t size)
{
	/* Result names and the flags are short: this always fits 128 bytes. */
	(void)snprintf(buf, size, "mailfrom=%s%s helo=%s%s",
	    out->has_mailfrom ? spf_result_name(out->spf_mailfrom.result) : "none",
	    out->has_mailfrom && out->spf_mailfrom.result != SPF_R_SKIPPED && d->from_ok ?
	    (d->spf_aligned ? "(aligned)" : "(not aligned)") : "",
	    out->has_helo ? spf_result_name(out->spf_helo.result) : "none",
	    out->internal_client ? " internal" : "");
}

/* The signature the decision relied on or names, else the first one, for
 * evidence and the log. */
static const struct dkimv_sig *
session_used_sig(const struct session_eom *out, const struct policy_decision *d)
{
	return d->named >= 0 ? &out->sigs[d->named] : out->nsigs > 0 ? &out->sigs[0] : NULL;
}

static void
session_record(struct session *s, struct store *st, const struct session_eom *out)
{
	struct msg *m = &s->msg;
	struct policy_decision *d = &m->decision;
	const struct dkimv_sig *used = session_used_sig(out, d);
	struct store_guard g = { d->rules->max_attempts, d->rules->accounts_per_address,
	    d->rules->recertify_after };
	struct store_outcome res;
	char spf[128];
	struct buf err;
	struct store_evidence ev = {
		.request_id = m->req.id, .token_hash = m->hash,
		.from = d->from_ok ? d->from.addr : NULL, .reason = d->reason, .stage = "eom",
		.client_addr = s->client_addr, .helo = s->helo, .mail_from = m->mail_from,
		.message_id = m->message_id.value, .queue_id = m->qid[0] ? m->qid : NULL,
		.dkim_domain = used ? used->domain : NULL,
		.dkim_selector = used ? used->selector : NULL,
		.dkim_algorithm = used ? used->algorithm : NULL,
		.dkim_key_bits = used ? (int)used->key_bits : 0,
		.dnssec = used && d->rules->dnssec != PD_IGNORE ? used->dnssec : NULL,
		.detail = d->detail, .spf_result = spf, .token_prefix = m->hash_prefix,
	};

	session_spf_summary(out, d, spf, sizeof(spf));
	session_prospect_end(m);
	buf_init(&err);
	if (store_record(st, &ev, d->reason == R_VERIFIED ? &g : NULL, &res, &err) != STORE_OK) {
		/* No evidence, no decision: the sender's MTA retries. */
		log_msg(LOG_WARNING, m->qid, "database: %s", err.s);
		policy_db_failed(d, err.s);
		stats_tempfail(ST_DATABASE);
	} else if (!res.recorded) {
		/* The guarded write did not happen: the request changed since
		 * RCPT. Settle against what the database says, then record. */
		policy_settle(d, &(struct policy_request){ res.after.state, res.after.attempts,
		    m->req.email, m->req.created_at, res.holders }, 1);
		ev.reason = d->reason;
		ev.detail = d->detail;
		if (store_record_evidence(st, &ev, &err) != STORE_OK)
			log_warn("evidence not recorded: %s", err.s);
	}
	buf_free(&err);
}

/* ------------------------------------------------ end of message: answer */

/* How a signature was judged, for Authentication-Results. */
static const char *
session_sig_why(const struct policy_decision *d, const struct dkimv_sig *s, int i)
{
	const struct policy_sigverdict *v = &d->verdicts[i];

	if (s->result != DKIMV_PASS)
		return s->error;
	if (v->binds_token)
		return s->testing ? "aligned, token signed, key in testing mode (t=y)" :
		    "aligned, token signed";
	return v->why ? v->why : v->aligned ? "aligned" : "not judged";
}

static const char *
session_spf_why(const struct spf_outcome *o, const struct policy_decision *d, int internal,
    int helo)
{
	if (internal)
		return "internal client, not evaluated";
	if (o->result == SPF_R_SKIPPED)
		return o->why;
	if (helo)
		return "HELO identity, recorded only";
	return d->spf_aligned ? "aligned with From" : "not aligned with From";
}

/* Our Authentication-Results, and the forged ones to remove. */
static void
session_authres(struct session *s, struct session_eom *out)
{
	const struct policy_decision *d = &s->msg.decision;
	const char *why[DKIMV_MAXSIGS];
	struct authres_input in = {
		.authserv_id = s->snap->cfg->authserv_id, .sigs = out->sigs, .sig_why = why,
		.nsigs = (size_t)out->nsigs,
		.mailfrom = out->has_mailfrom ? &out->spf_mailfrom : NULL,
		.mailfrom_why = session_spf_why(&out->spf_mailfrom, d, out->internal_client, 0),
		.helo = out->has_helo ? &out->spf_helo : NULL, .helo_name = s->helo,
		.helo_why = session_spf_why(&out->spf_helo, d, out->internal_client, 1),
		.verdict = reason_name(d->reason),
	};

	for (int i = 0; i < out->nsigs; i++)
		why[i] = session_sig_why(d, &out->sigs[i], i);
	/* The value as header values go: after a space (milter.c). */
	if (buf_putc(&out->authres, ' ') == -1 || authres_build(&out->authres, &in) == -1) {
		/* Better no header than a cut one. */
		buf_reset(&out->authres);
		log_msg(LOG_WARNING, s->msg.qid, "Authentication-Results not added: out of memory");
	}
	out->delete_ar = s->msg.ar_ours;
	out->ndelete_ar = s->msg.nar_ours;
}

/* Counters and the log line of one end-of-message decision. */
static void
session_report(const struct session *s, const struct session_eom *out)
{
	const struct msg *m = &s->msg;
	const struct policy_decision *d = &m->decision;
	const struct dkimv_sig *used = session_used_sig(out, d);
	const struct verdict *v = &out->verdict;
	char spf[128];

	for (int i = 0; i < out->nsigs; i++)
		stats_dkim(out->sigs[i].result == DKIMV_SKIPPED ? "skipped" :
		    out->sigs[i].result == DKIMV_PASS ? "pass" : out->sigs[i].result ==
		    DKIMV_FAIL ? "fail" : out->sigs[i].result == DKIMV_TEMPERROR ?
		    "temperror" : "permerror");
	if (out->nsigs == 0)
		stats_dkim("none");
	if (out->has_mailfrom)
		stats_spf(spf_result_name(out->spf_mailfrom.result));
	stats_decision(d->reason, 0);
	if (d->reason == R_TEMPORARY && strcmp(d->xcode, "4.7.5") == 0)
		stats_tempfail(ST_DNS);
	else if (d->reason == R_TEMPORARY && strncmp(d->detail, "database:", 9) != 0)
		stats_tempfail(ST_INTERNAL);
	session_spf_summary(out, d, spf, sizeof(spf));
	log_msg(d->reason == R_VERIFIED || d->reason == R_ALREADY_VERIFIED ? LOG_INFO :
	    LOG_NOTICE, m->qid, "token=%s request=%lld account=%s from=<%s> client=%s"
	    " dkim=%s%s%s sigs=%d spf=%s reason=%s reply=%s xcode=%s detail=%s",
	    m->hash_prefix, m->req.id, m->req.account, d->from_ok ? d->from.addr : "",
	    s->client_addr, used ? used->domain : "none", used ? "/" : "",
	    used ? used->selector : "", out->nsigs, spf, reason_name(d->reason),
	    v->action == VA_REPLY ? v->rcode : v->action == VA_DISCARD ? "discard" : "250",
	    v->action == VA_REPLY ? v->xcode : "-", d->detail);
}

void
session_eom(struct session *s, struct store *st, struct session_eom *out)
{
	struct msg *m = &s->msg;

	memset(out, 0, sizeof(*out));
	buf_init(&out->authres);
	out->decision = &m->decision;
	if (!m->has_token) {
		out->verdict.action = VA_ACCEPT;
		return;
	}
	session_screen(s);		/* if the message had no end of headers */
	session_collect(s, out);
	session_decide(s, out);
	session_record(s, st, out);
	policy_verdict(&m->decision, s->snap->replies, m->lang, &out->verdict);
	if (out->verdict.action == VA_ACCEPT || out->verdict.action == VA_DISCARD)
		session_authres(s, out);
	session_report(s, out);
}

void
session_eom_free(struct session_eom *out)
{
	buf_free(&out->authres);
}
