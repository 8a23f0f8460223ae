/* policy.c — policy files (INI, via the config front-end) and the one decision on
 * a verification mail: RCPT, what can matter, From, domain rule, DKIM and SPF
 * judgement, token binding, the request's state, the answer. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "dname.h"
#include "policy.h"

/* Keys of a policy file; "global" ones belong to [default] only. */
enum {
	PK_ALLOW, PK_DENY, PK_REQUIRE, PK_ALIGNMENT, PK_MIN_RSA_BITS, PK_ALGORITHMS,
	PK_DNSSEC, PK_TOKEN_TTL, PK_MAX_ATTEMPTS, PK_ACCOUNTS_PER_ADDRESS,
	PK_RECERTIFY_AFTER, PK_RECERTIFY_NOTICE, PK_ON_SUCCESS, PK_ON_FAILURE,
};

static const struct {
	const char	*name;
	int		 global;
} policy_keys[] = {
	[PK_ALLOW] = { "allow", 1 }, [PK_DENY] = { "deny", 1 },
	[PK_REQUIRE] = { "require", 0 }, [PK_ALIGNMENT] = { "alignment", 0 },
	[PK_MIN_RSA_BITS] = { "min_rsa_bits", 0 }, [PK_ALGORITHMS] = { "algorithms", 0 },
	[PK_DNSSEC] = { "dnssec", 0 }, [PK_TOKEN_TTL] = { "token_ttl", 0 },
	[PK_MAX_ATTEMPTS] = { "max_attempts", 0 },
	[PK_ACCOUNTS_PER_ADDRESS] = { "accounts_per_address", 0 },
	[PK_RECERTIFY_AFTER] = { "recertify_after", 0 },
	[PK_RECERTIFY_NOTICE] = { "recertify_notice", 0 }, [PK_ON_SUCCESS] = { "on_success", 0 },
	[PK_ON_FAILURE] = { "on_failure", 0 },
};

#define NPKEYS (sizeof(policy_keys) / sizeof(policy_keys[0]))

static const char *
policy_key_name(size_t i)
{
	return i < NPKEYS ? policy_keys[i].name : NULL;
}

/* One section as read: its rules and which keys it set (line numbers). */
struct policy_section {
	char			*name;	/* NULL for [default] */
	struct policy_rules	 rules;
	int			 seen[NPKEYS];
};

struct policy_parse {
	const char		*path;
	struct policy		*pol;
	struct buf		*errors;
	struct policy_section	 def;
	struct policy_section	*secs;
	size_t			 nsecs;
	char			 bad_section[128];
};

static const struct policy_rules policy_default_rules = {
	.require = PR_DKIM,
	.alignment = ALIGN_RELAXED,
	.min_rsa_bits = 1024,
	.algorithms = PALG_RSA_SHA256 | PALG_ED25519_SHA256,
	.dnssec = PD_RECORD,
	.token_ttl = 7 * 86400,
	.max_attempts = 0,
	.accounts_per_address = 1,
	.recertify_after = 365L * 86400,
	.recertify_notice = 30L * 86400,
	.on_success = PS_ACCEPT,
	.on_failure = PF_REJECT,
};

/* Splits a list on commas and white space into words; calls fn on each.
 * Returns -1 at the first word fn refuses. */
static int
policy_words(const char *v, int (*fn)(void *, const char *), void *arg)
{
	char word[256];
	size_t n;

	for (;;) {
		v += strspn(v, ", \t");
		if (*v == '\0')
			return 0;
		n = strcspn(v, ", \t");
		if (n >= sizeof(word))
			return -1;
		memcpy(word, v, n);
		word[n] = '\0';
		if (fn(arg, word) == -1)
			return -1;
		v += n;
	}
}

/* A domain suffix: LDH labels, lowercased, a leading dot tolerated. */
static int
policy_valid_suffix(char *s)
{
	if (*s == '.')
		memmove(s, s + 1, strlen(s));
	str_lower(s);
	return dname_valid(s, 1, 0);
}

struct policy_list {
	char	***items;
	size_t	*n;
	const char *bad;
};

static int
policy_add_suffix(void *arg, const char *w)
{
	struct policy_list *l = arg;
	char *s, **grown;

	if ((s = strdup(w)) == NULL)
		return -1;
	if (!policy_valid_suffix(s)) {
		l->bad = w;
		free(s);
		return -1;
	}
	if ((grown = realloc(*l->items, (*l->n + 1) * sizeof(*grown))) == NULL) {
		free(s);
		return -1;
	}
	grown[(*l->n)++] = s;
	*l->items = grown;
	return 0;
}

static unsigned int policy_alg_bit(const char *);

static int
policy_add_alg(void *arg, const char *w)
{
	unsigned int *algs = arg, bit = policy_alg_bit(w);

	if (bit == 0)
		return -1;
	*algs |= bit;
	return 0;
}

/* The index of v among names (NULL-terminated), or -1. */
static int
policy_choice(const char *v, const char *const *names)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(v, names[i]) == 0)
			return i;
	return -1;
}

/* A whole number from lo to hi; -1 if v is not one. */
static long
policy_number(const char *v, long lo, long hi)
{
	char *end;
	long n;

	if (!isdigit((unsigned char)*v))
		return -1;
	n = strtol(v, &end, 10);
	return *end == '\0' && n >= lo && n <= hi ? n : -1;
}

/* allow or deny: a list of domain suffixes. */
static const char *
policy_set_suffixes(struct policy_parse *p, const char *key, const char *v, char *msg,
    size_t msgsize)
{
	struct policy_list l = { NULL, NULL, NULL };

	l.items = key[0] == 'a' ? &p->pol->allow : &p->pol->deny;
	l.n = key[0] == 'a' ? &p->pol->nallow : &p->pol->ndeny;
	if (policy_words(v, policy_add_suffix, &l) == -1) {
		snprintf(msg, msgsize, "'%s' is not a domain suffix like gouv.fr", l.bad ? l.bad : v);
		return msg;
	}
	return NULL;
}

/* Durations: token_ttl, recertify_after, recertify_notice. */
static const char *
policy_set_duration(struct policy_rules *r, const char *key, const char *v)
{
	long n = config_duration(v);

	if (strcmp(key, "token_ttl") == 0) {
		if (n < 60 || n > 365L * 86400)
			return "expected a duration from 60s to 365d, like 7d or 12h";
		r->token_ttl = (int)n;
	} else if (strcmp(key, "recertify_after") == 0) {
		if (strcmp(v, "off") == 0)
			n = 0;
		else if (n < 86400)
			return "expected off or a duration from 1d to 3650d, like 365d";
		r->recertify_after = n;
	} else {
		if (n < 3600 || n > 365L * 86400)
			return "expected a duration from 1h to 365d, like 30d";
		r->recertify_notice = n;
	}
	return NULL;
}

/* Sets one key in a section; returns NULL or the complaint. */
static const char *
policy_set_key(struct policy_parse *p, struct policy_section *sec, const char *key,
    const char *v, char *msg, size_t msgsize)
{
	static const char *const require[] = { "dkim", "dkim-or-spf", "dkim-and-spf", NULL };
	static const char *const alignment[] = { "relaxed", "strict", NULL };
	static const char *const dnssec[] = { "ignore", "record", "require", NULL };
	static const char *const success[] = { "accept", "discard", NULL };
	static const char *const failure[] = { "reject", "accept", NULL };
	struct policy_rules *r = &sec->rules;
	unsigned int algs = 0;
	long n;
	int c;

	if (strcmp(key, "allow") == 0 || strcmp(key, "deny") == 0)
		return policy_set_suffixes(p, key, v, msg, msgsize);
	if (strcmp(key, "token_ttl") == 0 || strncmp(key, "recertify_", 10) == 0)
		return policy_set_duration(r, key, v);
	if (strcmp(key, "require") == 0) {
		if ((c = policy_choice(v, require)) == -1)
			return "expected dkim, dkim-or-spf or dkim-and-spf";
		r->require = (enum policy_require)c;
	} else if (strcmp(key, "alignment") == 0) {
		if ((c = policy_choice(v, alignment)) == -1)
			return "expected relaxed or strict";
		r->alignment = (enum align_mode)c;
	} else if (strcmp(key, "dnssec") == 0) {
		if ((c = policy_choice(v, dnssec)) == -1)
			return "expected ignore, record or require";
		r->dnssec = (enum policy_dnssec)c;
	} else if (strcmp(key, "on_success") == 0) {
		if ((c = policy_choice(v, success)) == -1)
			return "expected accept or discard";
		r->on_success = (enum policy_success)c;
	} else if (strcmp(key, "on_failure") == 0) {
		if ((c = policy_choice(v, failure)) == -1)
			return "expected reject or accept";
		r->on_failure = (enum policy_failure)c;
	} else if (strcmp(key, "min_rsa_bits") == 0) {
		if ((n = policy_number(v, 1024, 16384)) == -1)
			return "expected a number of bits from 1024 (RFC 8301) to 16384";
		r->min_rsa_bits = (unsigned int)n;
	} else if (strcmp(key, "algorithms") == 0) {
		if (policy_words(v, policy_add_alg, &algs) == -1 || algs == 0)
			return "expected a list of rsa-sha256, ed25519-sha256, rsa-sha1";
		r->algorithms = algs;
	} else if (strcmp(key, "max_attempts") == 0) {
		if ((n = policy_number(v, 0, 1000)) == -1)
			return "expected a number from 0 (no limit) to 1000";
		r->max_attempts = (int)n;
	} else if (strcmp(key, "accounts_per_address") == 0) {
		if ((n = policy_number(v, 0, 1000)) == -1)
			return "expected a number from 0 (no limit) to 1000";
		r->accounts_per_address = (int)n;
	}
	return NULL;
}

static struct policy_section *
policy_section(struct policy_parse *p, int line, const char *section)
{
	char name[256];
	struct policy_section *grown;

	if (section[0] == '\0' || strcmp(section, "default") == 0)
		return &p->def;
	if (strncmp(section, "domain ", 7) != 0) {
		if (strcmp(p->bad_section, section) != 0) {
			config_file_error(p->errors, p->path, line, NULL,
			    "[%s]: unknown section (expected [default] or [domain SUFFIX])",
			    section);
			str_copy(p->bad_section, section, sizeof(p->bad_section));
			return NULL;
		}
		return NULL;
	}
	if (str_copy(name, section + 7, sizeof(name)) == 0) {
		char *t = str_trim(name);

		memmove(name, t, strlen(t) + 1);
	}
	if (!policy_valid_suffix(name)) {
		if (strcmp(p->bad_section, section) != 0) {
			config_file_error(p->errors, p->path, line, NULL,
			    "[%s]: not a domain suffix", section);
			str_copy(p->bad_section, section, sizeof(p->bad_section));
		}
		return NULL;
	}
	for (size_t i = 0; i < p->nsecs; i++)
		if (strcmp(p->secs[i].name, name) == 0)
			return &p->secs[i];
	if ((grown = realloc(p->secs, (p->nsecs + 1) * sizeof(*grown))) == NULL)
		return NULL;
	p->secs = grown;
	memset(&p->secs[p->nsecs], 0, sizeof(p->secs[0]));
	p->secs[p->nsecs].name = strdup(name);
	return &p->secs[p->nsecs++];
}

static int
policy_handler(void *user, int line, const char *section, const char *key, const char *value)
{
	struct policy_parse *p = user;
	struct policy_section *sec;
	const char *complaint, *hint;
	char msg[300];

	if ((sec = policy_section(p, line, section)) == NULL)
		return strcmp(p->bad_section, section) == 0 ? 0 : -1;
	for (size_t i = 0; i < NPKEYS; i++) {
		if (strcmp(key, policy_keys[i].name) != 0)
			continue;
		if (policy_keys[i].global && sec != &p->def) {
			config_file_error(p->errors, p->path, line, key,
			    "only allowed in [default]");
			return -1;
		}
		if (sec->seen[i]) {
			config_file_error(p->errors, p->path, line, key,
			    "set twice (first at line %d)", sec->seen[i]);
			return -1;
		}
		sec->seen[i] = line;
		if ((complaint = policy_set_key(p, sec, key, value, msg, sizeof(msg))) != NULL) {
			config_file_error(p->errors, p->path, line, key, "%s", complaint);
			return -1;
		}
		return 0;
	}
	if ((hint = config_suggest(key, policy_key_name)) != NULL)
		config_file_error(p->errors, p->path, line, key,
		    "unknown key (did you mean '%s'?)", hint);
	else
		config_file_error(p->errors, p->path, line, key, "unknown key");
	return -1;
}

/* Keys a [domain] section did not set come from [default]. */
static void
policy_inherit(struct policy_section *sec, const struct policy_section *def)
{
	struct policy_rules *r = &sec->rules;
	const struct policy_rules *d = &def->rules;

#define INHERIT(key, field) if (!sec->seen[key]) r->field = d->field
	INHERIT(PK_REQUIRE, require);
	INHERIT(PK_ALIGNMENT, alignment);
	INHERIT(PK_MIN_RSA_BITS, min_rsa_bits);
	INHERIT(PK_ALGORITHMS, algorithms);
	INHERIT(PK_DNSSEC, dnssec);
	INHERIT(PK_TOKEN_TTL, token_ttl);
	INHERIT(PK_MAX_ATTEMPTS, max_attempts);
	INHERIT(PK_ACCOUNTS_PER_ADDRESS, accounts_per_address);
	INHERIT(PK_RECERTIFY_AFTER, recertify_after);
	INHERIT(PK_RECERTIFY_NOTICE, recertify_notice);
	INHERIT(PK_ON_SUCCESS, on_success);
	INHERIT(PK_ON_FAILURE, on_failure);
#undef INHERIT
}

struct policy *
policy_load(const char *path, struct buf *errors)
{
	struct policy_parse p;
	int nerrors;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.errors = errors;
	if ((p.pol = calloc(1, sizeof(*p.pol))) == NULL ||
	    (p.pol->path = strdup(path)) == NULL) {
		free(p.pol);
		buf_printf(errors, "%s: out of memory\n", path);
		return NULL;
	}
	p.def.rules = policy_default_rules;
	nerrors = config_parse_ini(path, 1, policy_handler, &p, errors);
	p.pol->defaults = p.def.rules;
	if ((p.pol->domains = calloc(p.nsecs + 1, sizeof(*p.pol->domains))) == NULL)
		nerrors++;
	for (size_t i = 0; i < p.nsecs; i++) {
		policy_inherit(&p.secs[i], &p.def);
		if (p.pol->domains != NULL) {
			p.pol->domains[i].suffix = p.secs[i].name;
			p.pol->domains[i].rules = p.secs[i].rules;
			p.pol->ndomains++;
		} else
			free(p.secs[i].name);
	}
	free(p.secs);
	if (nerrors > 0) {
		policy_free(p.pol);
		return NULL;
	}
	return p.pol;
}

void
policy_free(struct policy *pol)
{
	if (pol == NULL)
		return;
	for (size_t i = 0; i < pol->nallow; i++)
		free(pol->allow[i]);
	for (size_t i = 0; i < pol->ndeny; i++)
		free(pol->deny[i]);
	for (size_t i = 0; i < pol->ndomains; i++)
		free(pol->domains[i].suffix);
	free(pol->allow);
	free(pol->deny);
	free(pol->domains);
	free(pol->path);
	free(pol);
}

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

static void
policy_dump_rules(const struct policy_rules *r, FILE *fp)
{
	static const char *const req[] = { "dkim", "dkim-or-spf", "dkim-and-spf" };
	static const char *const dnssec[] = { "ignore", "record", "require" };
	char d[32];

	fprintf(fp, "require = %s\n", req[r->require]);
	fprintf(fp, "alignment = %s\n", r->alignment == ALIGN_STRICT ? "strict" : "relaxed");
	fprintf(fp, "min_rsa_bits = %u\n", r->min_rsa_bits);
	fprintf(fp, "algorithms =%s%s%s\n",
	    r->algorithms & PALG_RSA_SHA256 ? " rsa-sha256" : "",
	    r->algorithms & PALG_ED25519_SHA256 ? " ed25519-sha256" : "",
	    r->algorithms & PALG_RSA_SHA1 ? " rsa-sha1" : "");
	fprintf(fp, "dnssec = %s\n", dnssec[r->dnssec]);
	fprintf(fp, "token_ttl = %ds\n", r->token_ttl);
	fprintf(fp, "max_attempts = %d\n", r->max_attempts);
	fprintf(fp, "accounts_per_address = %d\n", r->accounts_per_address);
	if (r->recertify_after == 0)
		fprintf(fp, "recertify_after = off\n");
	else {
		config_duration_format(r->recertify_after, d, sizeof(d));
		fprintf(fp, "recertify_after = %s\n", d);
	}
	config_duration_format(r->recertify_notice, d, sizeof(d));
	fprintf(fp, "recertify_notice = %s\n", d);
	fprintf(fp, "on_success = %s\n", r->on_success == PS_DISCARD ? "discard" : "accept");
	fprintf(fp, "on_failure = %s\n", r->on_failure == PF_ACCEPT ? "accept" : "reject");
}

void
policy_dump(const struct policy *pol, FILE *fp)
{
	fprintf(fp, "# effective policy of %s\n[default]\nallow =", pol->path);
	for (size_t i = 0; i < pol->nallow; i++)
		fprintf(fp, " %s", pol->allow[i]);
	fprintf(fp, "\ndeny =");
	for (size_t i = 0; i < pol->ndeny; i++)
		fprintf(fp, " %s", pol->deny[i]);
	fprintf(fp, "\n");
	policy_dump_rules(&pol->defaults, fp);
	for (size_t i = 0; i < pol->ndomains; i++) {
		fprintf(fp, "\n[domain %s]\n", pol->domains[i].suffix);
		policy_dump_rules(&pol->domains[i].rules, fp);
	}
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
	if (in->second_token) {
		/* One token per message: the MTA sends the other one again. */
		policy_reply(v, R_MALFORMED, "452", "4.5.3", rep, -1);
		v->detail = "second token in one message";
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
policy_screen(const struct policy *pol, const struct policy_header *from, int from_bad_name,
    const struct policy_request *req, struct policy_decision *d)
{
	const char *why = NULL;

	memset(d, 0, sizeof(*d));
	d->sig = -1;
	d->rules = &pol->defaults;
	if (from->count != 1 || from_bad_name) {
		policy_set(d, R_MALFORMED, "5.6.0", from_bad_name ?
		    "white space before the colon of From" : "%d From headers", from->count);
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

static unsigned int
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

/* Not authenticated: RFC 7372's codes say which way. */
static void
policy_not_authenticated(const struct policy_input *in, struct policy_decision *d,
    const struct policy_sigcount *c)
{
	const char *spf = d->rules->require == PR_DKIM_OR_SPF && !d->spf_ok ?
	    ", no aligned SPF pass" : "";

	if (d->rules->require == PR_DKIM_AND_SPF && d->dkim_ok)
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.23", "SPF did not pass");
	else if (in->nsigs == 0)
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.20", "no DKIM signature%s", spf);
	else if (c->considered == 0)
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.22",
		    "no DKIM signature aligned with the From domain%s", spf);
	else if (c->passed == 0)
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.20", "no DKIM signature verified%s", spf);
	else
		policy_set(d, R_NOT_AUTHENTICATED, "5.7.22",
		    "no verified DKIM signature acceptable for the From domain%s", spf);
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
	policy_spf(in, d);
	if (policy_authenticated(d)) {
		if (d->dkim_ok)
			policy_set(d, R_VERIFIED, NULL, "dkim d=%s s=%s%s",
			    in->sigs[d->sig].domain, in->sigs[d->sig].selector,
			    d->spf_ok ? ", spf pass" : "");
		else
			policy_set(d, R_VERIFIED, NULL, "spf pass for %s",
			    in->spf_mailfrom->domain);
		if (in->req != NULL)
			policy_settle(d, in->req, 0);
	} else if (policy_temporary(in, d, c.temporary))
		policy_set(d, R_TEMPORARY, "4.7.5", c.temporary ?
		    "DKIM key lookup failed temporarily" : "SPF lookup failed temporarily");
	else if (c.acceptable > 0 && !d->dkim_ok)
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
