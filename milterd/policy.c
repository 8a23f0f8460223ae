/* policy.c — the one decision on a verification mail: RCPT, what can matter,
 * From, domain rule, DKIM and SPF judgement, token binding, the request's
 * state, the answer (policy files are read by policy_file.c). */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

const struct policy_rules *
policy_rules_for(const struct policy *pol, const char *domain)
{
	const struct policy_domain *best = NULL;

	for (size_t i = 0; i < pol->ndomains; i++)
		if (align_suffix_match(domain, pol->domains[i].suffix) &&
		    (best == NULL || strlen(pol->domains[i].suffix) > strlen(best->suffix)))
			best = &pol->domains[i];
	return best ? &best->rules : &pol->defaults;
}

int
policy_domain_allowed(const struct policy *pol, const char *domain)
{
	for (size_t i = 0; i < pol->ndeny; i++)
		if (align_suffix_match(domain, pol->deny[i]))
			return 0;
	if (pol->nallow == 0)
		return 1;
	for (size_t i = 0; i < pol->nallow; i++)
		if (align_suffix_match(domain, pol->allow[i]))
			return 1;
	return 0;
}


const struct policy_rules *
policy_rules_for_address(const struct policy *pol, const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? policy_rules_for(pol, at + 1) : &pol->defaults;
}

/* ------------------------------------------------------------- the answer */

/* A refusal's reply: "reason: text" in the request's language, or all of them. */
static void
policy_reply(struct verdict *v, enum reason r, const char *rcode, const char *xcode,
    const struct replies *rep, int lang)
{
	memset(v, 0, sizeof(*v));
	v->action = VA_REPLY;
	v->reason = r;
	v->rcode = rcode;
	v->xcode = xcode;
	/* The texts are bounded when loaded (REPLY_TEXT_MAX): this fits, and
	 * if it ever did not, the reason code alone is still an answer. */
	if (replies_format(rep, r, lang, v->text, sizeof(v->text)) == -1)
		str_copy(v->text, reason_name(r), sizeof(v->text));
}

/* What a request's state means for a reply that carries its token: R_NONE
 * while it can still be verified, else the reason every reply gets. */
static enum reason
policy_request_reason(const struct policy_rules *rules, const struct policy_request *req,
    const char **detail)
{
	switch (req->state) {
	case REQ_PENDING:
		if (rules->max_attempts > 0 && req->attempts >= rules->max_attempts) {
			*detail = "too many failed attempts";
			return R_EXPIRED;
		}
		return R_NONE;
	case REQ_VERIFIED:
		*detail = "the request was already verified";
		return R_ALREADY_VERIFIED;
	case REQ_EXPIRED:
		*detail = "the request expired";
		return R_EXPIRED;
	case REQ_LAPSED:
		*detail = "the certification lapsed";
		return R_EXPIRED;
	case REQ_ADDRESS_CHANGED:
		*detail = "the account's address changed";
		return R_UNKNOWN_TOKEN;
	case REQ_RENEWED:
		*detail = "superseded by a re-certification";
		return R_UNKNOWN_TOKEN;
	case REQ_REVOKED:
	case REQ_NSTATES:
		break;
	}
	*detail = "the request was revoked or superseded";
	return R_UNKNOWN_TOKEN;
}

int
policy_rcpt(const struct policy *pol, const struct replies *rep, const struct policy_rcpt *in,
    struct verdict *v)
{
	const char *detail;
	enum reason r;

	/* One verification reply per message, with no other recipient: the
	 * MTA applies the end of message's answer (a refusal, a temporary
	 * failure, on_success = discard) to the whole message, so postmaster@
	 * beside a token would share its fate. 452 4.5.3: the sending MTA sends
	 * the recipient again, in a message of its own (RFC 5321 4.5.3.1.10). */
	if (in->mixed || (in->kind == RCPT_VERIFY && in->second_token)) {
		policy_reply(v, R_MALFORMED, "452", "4.5.3", rep, -1);
		v->detail = in->second_token ? "second token in one message" :
		    "a token and other recipients in one message";
		return 1;
	}
	switch (in->kind) {
	case RCPT_OTHER:
		return 0;
	case RCPT_VERIFY_MALFORMED:
		policy_reply(v, R_MALFORMED, "550", "5.1.1", rep, -1);
		return 1;
	case RCPT_VERIFY:
		break;
	}
	if (in->envelope_bad) {
		policy_reply(v, R_MALFORMED, "550", "5.1.7", rep, -1);
		v->detail = "MAIL FROM longer than an address";
		return 1;
	}
	if (in->lookup_failed) {
		policy_reply(v, R_TEMPORARY, "451", "4.3.0", rep, -1);
		return 1;
	}
	if (in->req == NULL) {
		policy_reply(v, R_UNKNOWN_TOKEN, "550", "5.1.1", rep, -1);
		return 1;
	}
	r = policy_request_reason(policy_rules_for_address(pol, in->req->email), in->req, &detail);
	/* A verified request continues: a retried copy of a successful reply
	 * must get its 250, not a bounce. */
	if (r == R_NONE || r == R_ALREADY_VERIFIED)
		return 0;
	policy_reply(v, r, "550", "5.1.1", rep, in->lang);
	v->detail = detail;
	return 1;
}

/* Sets the decision's reason, enhanced code and detail. */
static void
policy_set(struct policy_decision *d, enum reason r, const char *xcode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
policy_set(struct policy_decision *d, enum reason r, const char *xcode, const char *fmt, ...)
{
	va_list ap;

	d->reason = r;
	d->xcode = xcode;
	va_start(ap, fmt);
	/* A detail is for logs and evidence; a long one is cut, never the decision. */
	(void)vsnprintf(d->detail, sizeof(d->detail), fmt, ap);
	va_end(ap);
}

void
policy_verdict(const struct policy_decision *d, const struct replies *rep, int lang,
    struct verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->reason = d->reason;
	switch (d->reason) {
	case R_VERIFIED:
	case R_ALREADY_VERIFIED:
		v->action = d->rules->on_success == PS_DISCARD ? VA_DISCARD : VA_ACCEPT;
		break;
	case R_TEMPORARY:
		policy_reply(v, d->reason, "451", d->xcode ? d->xcode : "4.3.0", rep, lang);
		break;
	default:
		if (d->rules->on_failure == PF_ACCEPT)
			v->action = VA_ACCEPT;
		else
			policy_reply(v, d->reason, "550", d->xcode ? d->xcode : "5.7.1", rep, lang);
		break;
	}
}

/* ------------------------------------------------- what can matter (EOH) */

void
policy_screen(const struct policy *pol, const struct policy_header *from, const char *from_bad,
    const struct policy_request *req, struct policy_decision *d)
{
	const char *why = NULL;

	memset(d, 0, sizeof(*d));
	d->sig = -1;
	d->named = -1;
	d->rules = &pol->defaults;
	if (from_bad != NULL) {
		policy_set(d, R_MALFORMED, "5.6.0", "%s", from_bad);
		return;
	}
	if (from->count != 1) {
		policy_set(d, R_MALFORMED, "5.6.0", "%d From headers", from->count);
		return;
	}
	if (address_parse_from(from->value, &d->from, &why) == -1) {
		policy_set(d, R_MALFORMED, "5.6.0", "%s", why);
		return;
	}
	d->from_ok = 1;
	d->rules = policy_rules_for(pol, d->from.domain);
	if (!policy_domain_allowed(pol, d->from.domain))
		policy_set(d, R_DOMAIN_NOT_ALLOWED, "5.7.1", "%s not allowed by policy",
		    d->from.domain);
	else if (req != NULL && strcmp(d->from.addr, req->email) != 0)
		policy_set(d, R_FROM_MISMATCH, "5.7.1", "From is not the requested address");
}

int
policy_dkim_worth(const struct policy_decision *d, const char *domain)
{
	return d->reason == R_NONE && address_valid_domain(domain) &&
	    align_check(d->from.domain, domain, d->rules->alignment);
}

const char *
policy_spf_skip(const struct policy_decision *d, const char *domain, int internal_client)
{
	if (internal_client)
		return "internal client, not evaluated";
	if (d->reason != R_NONE)
		return "skipped: the From header decides";
	if (d->rules->require == PR_DKIM)
		return "skipped: the policy does not use SPF";
	if (!address_valid_domain(domain) ||
	    !align_check(d->from.domain, domain, d->rules->alignment))
		return "skipped: cannot align with From";
	return NULL;
}

/* ------------------------------------------------ the decision (EOM) */

/* Whether h= lists a header name (h= is lowercased, ':'-separated). */
static int
policy_signed_header(const char *hlist, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = hlist; *p; ) {
		size_t len = strcspn(p, ":");

		if (len == n && strncmp(p, name, n) == 0)
			return 1;
		p += len;
		if (*p == ':')
			p++;
	}
	return 0;
}

/* Whether the signature covers the envelope token: in a To/Cc/Subject header
 * it signs and that is present exactly once, or in the whole body. */
static int
policy_binds_token(const struct policy_input *in, const struct dkimv_sig *s)
{
	static const char *const names[] = { "to", "cc", "subject" };
	const struct policy_header *hdrs[] = { &in->to, &in->cc, &in->subject };

	for (size_t i = 0; i < 3; i++)
		if (hdrs[i]->count == 1 && hdrs[i]->value != NULL &&
		    policy_signed_header(s->headers, names[i]) &&
		    token_find_header(hdrs[i]->value, in->token))
			return 1;
	/* l= lets anyone append unsigned text: the body counts only whole. */
	return !s->has_length && in->body_has_token;
}

unsigned int
policy_alg_bit(const char *alg)
{
	if (strcmp(alg, "rsa-sha256") == 0)
		return PALG_RSA_SHA256;
	if (strcmp(alg, "ed25519-sha256") == 0)
		return PALG_ED25519_SHA256;
	if (strcmp(alg, "rsa-sha1") == 0)
		return PALG_RSA_SHA1;
	return 0;
}

/* Counts over the signatures, for the reason of a refusal. */
struct policy_sigcount {
	int	 considered;	/* not skipped: could align */
	int	 passed;
	int	 acceptable;
	int	 temporary;	/* an aligned key lookup failed temporarily */
};

/* Why a passing signature is not acceptable under the rules, or NULL. */
static const char *
policy_sig_unacceptable(const struct policy_rules *r, const struct dkimv_sig *s, int aligned)
{
	if (!address_valid_domain(s->domain))
		return "d= is not a valid hostname";
	if (!aligned)
		return "signer not aligned with From";
	if ((policy_alg_bit(s->algorithm) & r->algorithms) == 0)
		return "algorithm not accepted by policy";
	if (strncmp(s->algorithm, "rsa-", 4) == 0 && s->key_bits < r->min_rsa_bits)
		return "RSA key too small for policy";
	if (r->dnssec == PD_REQUIRE && strcmp(s->dnssec, "secure") != 0)
		return "key not DNSSEC-secure";
	return NULL;
}

/* Judges each signature on its own; returns the index of the first that is
 * acceptable and binds the token, or -1. */
static int
policy_judge_sigs(const struct policy_input *in, struct policy_decision *d,
    struct policy_sigcount *c)
{
	for (size_t i = 0; i < in->nsigs && i < DKIMV_MAXSIGS; i++) {
		const struct dkimv_sig *s = &in->sigs[i];
		struct policy_sigverdict *v = &d->verdicts[i];

		if (s->skipped) {
			v->why = "skipped: cannot align with From";
			continue;
		}
		c->considered++;
		v->aligned = address_valid_domain(s->domain) &&
		    align_check(d->from.domain, s->domain, d->rules->alignment);
		if (!s->pass) {
			v->why = s->error[0] ? s->error : "did not verify";
			if (s->temporary && v->aligned)
				c->temporary = 1;
			continue;
		}
		c->passed++;
		if ((v->why = policy_sig_unacceptable(d->rules, s, v->aligned)) != NULL)
			continue;
		v->acceptable = 1;
		c->acceptable++;
		if (s->timestamp >= 0 && in->req != NULL &&
		    (double)s->timestamp + POLICY_CLOCK_SKEW < in->req->created_at) {
			v->why = "signed before the request existed";
			continue;
		}
		if (!policy_binds_token(in, s)) {
			v->why = "token not in signed content";
			continue;
		}
		v->binds_token = 1;
		return (int)i;
	}
	return -1;
}

/* SPF counts only for the MAIL FROM identity of an outside client, aligned
 * with From; the HELO identity is recorded, never a pass. */
static void
policy_spf(const struct policy_input *in, struct policy_decision *d)
{
	const struct spf_outcome *o = in->spf_mailfrom;

	if (o == NULL)
		return;
	d->spf_aligned = align_check(d->from.domain, o->domain, d->rules->alignment);
	d->spf_ok = o->result == SPF_R_PASS && d->spf_aligned && !in->internal_client;
}

static int
policy_authenticated(const struct policy_decision *d)
{
	switch (d->rules->require) {
	case PR_DKIM:		return d->dkim_ok;
	case PR_DKIM_OR_SPF:	return d->dkim_ok || d->spf_ok;
	case PR_DKIM_AND_SPF:	return d->dkim_ok && d->spf_ok;
	}
	return 0;
}

/* A temporary failure matters only if it could have changed the outcome. */
static int
policy_temporary(const struct policy_input *in, const struct policy_decision *d,
    int dkim_temporary)
{
	int spf_temp = d->rules->require != PR_DKIM && in->spf_mailfrom != NULL &&
	    in->spf_mailfrom->result == SPF_R_TEMPERROR && d->spf_aligned &&
	    !in->internal_client;

	if (d->rules->require == PR_DKIM_AND_SPF)
		return dkim_temporary || (d->dkim_ok && spf_temp);
	return dkim_temporary || spf_temp;
}

/* The signature that mattered most when none was relied on: the first whose
 * key lookup failed temporarily (when that decides), else the first aligned
 * with From, else the first considered; -1 when none. The detail names it,
 * and the evidence records it. */
static int
policy_sig_pick(const struct policy_input *in, const struct policy_decision *d, int temporary)
{
	int pick = -1;

	for (size_t i = 0; i < in->nsigs && i < DKIMV_MAXSIGS; i++) {
		const struct policy_sigverdict *v = &d->verdicts[i];

		if (in->sigs[i].skipped || v->why == NULL)
			continue;
		if (temporary && v->aligned && in->sigs[i].temporary)
			return (int)i;
		if (pick == -1 || (v->aligned && !d->verdicts[pick].aligned))
			pick = (int)i;
	}
	return pick;
}

/* Why the named signature did not count, for the detail; "" when none. */
static const char *
policy_sig_why(const struct policy_input *in, const struct policy_decision *d, char *out,
    size_t size)
{
	out[0] = '\0';
	if (d->named >= 0)
		snprintf(out, size, " (d=%.60s s=%.40s: %.60s)", in->sigs[d->named].domain,
		    in->sigs[d->named].selector, d->verdicts[d->named].why);
	return out;
}

/* Why SPF erred, for the detail (" (spf=permerror: 2 SPF records)"); "" when
 * it did not err. libspf2's result alone does not say what to mend. */
static const char *
policy_spf_why(const struct policy_input *in, char *out, size_t size)
{
	const struct spf_outcome *o = in->spf_mailfrom;

	out[0] = '\0';
	if (o != NULL && o->why[0] != '\0' &&
	    (o->result == SPF_R_PERMERROR || o->result == SPF_R_TEMPERROR))
		snprintf(out, size, " (spf=%s: %.100s)", spf_result_name(o->result), o->why);
	return out;
}

/* Not authenticated: RFC 7372's codes say which way. */
static void
policy_not_authenticated(const struct policy_input *in, struct policy_decision *d,
    const struct policy_sigcount *c)
{
	char why[256], spfwhy[140], spf[180] = "";

	if (d->rules->require == PR_DKIM_OR_SPF && !d->spf_ok)
		snprintf(spf, sizeof(spf), ", no aligned SPF pass%s",
		    policy_spf_why(in, spfwhy, sizeof(spfwhy)));
	if (d->rules->require == PR_DKIM_AND_SPF && d->dkim_ok)
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.23", "SPF did not pass%s",
		    policy_spf_why(in, spfwhy, sizeof(spfwhy)));
	else if (in->nsigs == 0)
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.20", "no DKIM signature%s", spf);
	else if (c->considered == 0)
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.22",
		    "no DKIM signature aligned with the From domain%s", spf);
	else if (c->passed == 0)
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.20", "no DKIM signature verified%s%s",
		    policy_sig_why(in, d, why, sizeof(why)), spf);
	else
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.22",
		    "no verified DKIM signature acceptable for the From domain%s%s",
		    policy_sig_why(in, d, why, sizeof(why)), spf);
}

void
policy_decide(const struct policy_input *in, struct policy_decision *d)
{
	struct policy_sigcount c = { 0, 0, 0, 0 };

	if (in->failure != NULL) {
		policy_set(d, R_TEMPORARY, "4.3.0", "%s", in->failure);
		return;
	}
	if (d->reason != R_NONE)	/* screened out: nothing else matters */
		return;
	d->sig = policy_judge_sigs(in, d, &c);
	d->dkim_ok = d->sig >= 0;
	d->named = d->dkim_ok ? d->sig : policy_sig_pick(in, d, c.temporary);
	policy_spf(in, d);
	if (policy_authenticated(d)) {
		if (d->dkim_ok)
			/* RFC 6376 3.6.1 asks verifiers to treat a key in testing
			 * mode as no signature; many domains never leave it, and
			 * the signature is the domain's all the same: it counts,
			 * and the evidence says so, for the administrator. */
			policy_set(d, R_VERIFIED, NULL, "dkim d=%s s=%s%s%s",
			    in->sigs[d->sig].domain, in->sigs[d->sig].selector,
			    in->sigs[d->sig].testing ? " (key in testing mode, t=y)" : "",
			    d->spf_ok ? ", spf pass" : "");
		else
			policy_set(d, R_VERIFIED, NULL, "spf pass for %s",
			    in->spf_mailfrom->domain);
		if (in->req != NULL)
			policy_settle(d, in->req, 0);
	} else if (policy_temporary(in, d, c.temporary)) {
		char why[256];

		if (c.temporary)
			policy_set(d, R_TEMPORARY, "4.7.5", "DKIM key lookup failed temporarily%s",
			    policy_sig_why(in, d, why, sizeof(why)));
		else
			policy_set(d, R_TEMPORARY, "4.7.5", "SPF lookup failed temporarily");
	} else if (c.acceptable > 0 && !d->dkim_ok)
		policy_set(d, R_TOKEN_NOT_SIGNED, "5.7.1",
		    "aligned signature does not cover the token");
	else
		policy_not_authenticated(in, d, &c);
}

void
policy_settle(struct policy_decision *d, const struct policy_request *req, int write_lost)
{
	const char *detail = NULL;
	enum reason r;

	/* Only an authenticated reply depends on the request's state; a
	 * refusal says what was wrong with the mail, whatever the state. */
	if (d->reason != R_VERIFIED && d->reason != R_ALREADY_VERIFIED)
		return;
	if ((r = policy_request_reason(d->rules, req, &detail)) == R_ALREADY_VERIFIED)
		d->reason = r;
	else if (r != R_NONE)
		policy_set(d, r, "5.7.1", "%s", detail);
	else if (d->rules->accounts_per_address > 0 &&
	    req->holders >= d->rules->accounts_per_address)
		policy_set(d, R_ADDRESS_IN_USE, "5.7.1", "%s already certifies %d other account%s",
		    req->email, req->holders, req->holders == 1 ? "" : "s");
	else if (write_lost)
		/* The database did not turn it verified, yet nothing it says
		 * explains why: let the sender retry rather than guess. */
		policy_set(d, R_TEMPORARY, "4.3.0", "the request changed while deciding");
	else
		d->reason = R_VERIFIED;
}

void
policy_db_failed(struct policy_decision *d, const char *why)
{
	policy_set(d, R_TEMPORARY, "4.3.0", "database: %s", why);
}
