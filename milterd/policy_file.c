/* policy_file.c — policy files: the INI front-end's keys and sections,
 * validated, with [domain] sections inheriting [default]; and their dump (-nn). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

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
	char	  bad[256];	/* the word refused (policy_words' own copy is gone by then) */
};

static int
policy_add_suffix(void *arg, const char *w)
{
	struct policy_list *l = arg;
	char *s, **grown;

	if ((s = strdup(w)) == NULL)
		return -1;
	if (!policy_valid_suffix(s)) {
		str_copy(l->bad, w, sizeof(l->bad));
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
	struct policy_list l = { NULL, NULL, "" };

	l.items = key[0] == 'a' ? &p->pol->allow : &p->pol->deny;
	l.n = key[0] == 'a' ? &p->pol->nallow : &p->pol->ndeny;
	if (policy_words(v, policy_add_suffix, &l) == -1) {
		snprintf(msg, msgsize, "'%s' is not a domain suffix like gouv.fr", l.bad[0] ? l.bad : v);
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

/* The section a key belongs to, or NULL for a bad one: *reported says whether
 * that complaint is new (one error per bad section, not one per key under it). */
static struct policy_section *
policy_section(struct policy_parse *p, int line, const char *section, int *reported)
{
	char name[256];
	struct policy_section *grown;
	const char *why = NULL;

	*reported = 0;
	if (section[0] == '\0' || strcmp(section, "default") == 0)
		return &p->def;
	if (strncmp(section, "domain ", 7) != 0)
		why = "unknown section (expected [default] or [domain SUFFIX])";
	else {
		if (str_copy(name, section + 7, sizeof(name)) == 0) {
			char *t = str_trim(name);

			memmove(name, t, strlen(t) + 1);
		}
		if (!policy_valid_suffix(name))
			why = "not a domain suffix";
	}
	if (why != NULL) {
		if (strcmp(p->bad_section, section) != 0) {
			config_file_error(p->errors, p->path, line, NULL, "[%s]: %s", section, why);
			str_copy(p->bad_section, section, sizeof(p->bad_section));
			*reported = 1;
		}
		return NULL;
	}
	for (size_t i = 0; i < p->nsecs; i++)
		if (strcmp(p->secs[i].name, name) == 0)
			return &p->secs[i];
	if ((grown = realloc(p->secs, (p->nsecs + 1) * sizeof(*grown))) == NULL) {
		config_file_error(p->errors, p->path, line, NULL, "out of memory");
		*reported = 1;
		return NULL;
	}
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
	int reported;

	if ((sec = policy_section(p, line, section, &reported)) == NULL)
		return reported ? -1 : 0;
	for (size_t i = 0; i < NPKEYS; i++) {
		if (strcmp(key, policy_keys[i].name) != 0)
			continue;
		if (policy_keys[i].global && sec != &p->def) {
			config_file_error(p->errors, p->path, line, key,
			    "only allowed in [default]");
			return -1;
		}
		/* allow and deny may take several lines, each adding to the list:
		 * a long list (thirty academies' domains) fits no single line. */
		if (sec->seen[i] && i != PK_ALLOW && i != PK_DENY) {
			config_file_error(p->errors, p->path, line, key,
			    "set twice (first at line %d)", sec->seen[i]);
			return -1;
		}
		sec->seen[i] = line;
		if ((complaint = policy_set_key(p, sec, key, value, msg, sizeof(msg))) != NULL) {
			config_file_error(p->errors, p->path, line, key, "%s", complaint);
			return -1;
		}
		if (i == PK_DNSSEC && sec->rules.dnssec == PD_REQUIRE &&
		    p->pol->dnssec_require_line == 0)
			p->pol->dnssec_require_line = line;
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

/* A notice as long as the period would challenge each certification again as
 * soon as it is renewed, every run: refused where the section sets either.
 * Returns the number of errors (0 or 1). */
static int
policy_check_notice(struct policy_parse *p, const struct policy_section *sec)
{
	const struct policy_rules *r = &sec->rules;
	int notice = sec->seen[PK_RECERTIFY_NOTICE];
	char a[32], n[32];

	if (r->recertify_after == 0 || r->recertify_notice < r->recertify_after ||
	    (notice == 0 && sec->seen[PK_RECERTIFY_AFTER] == 0))
		return 0;
	config_duration_format(r->recertify_after, a, sizeof(a));
	config_duration_format(r->recertify_notice, n, sizeof(n));
	config_file_error(p->errors, p->path, notice ? notice : sec->seen[PK_RECERTIFY_AFTER],
	    notice ? "recertify_notice" : "recertify_after", "the notice (%s) must be shorter"
	    " than recertify_after (%s): each certification would be challenged again as soon"
	    " as it is renewed", n, a);
	return 1;
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
	nerrors += policy_check_notice(&p, &p.def);
	if ((p.pol->domains = calloc(p.nsecs + 1, sizeof(*p.pol->domains))) == NULL)
		nerrors++;
	for (size_t i = 0; i < p.nsecs; i++) {
		policy_inherit(&p.secs[i], &p.def);
		nerrors += policy_check_notice(&p, &p.secs[i]);
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
