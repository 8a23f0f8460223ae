/* spf.c — libspf2 on top of dns.c: a DNS layer that answers libspf2's lookups
 * from milterd's resolver, and the RFC 7208 limits libspf2 lacks or gets
 * wrong (two void lookups; PTR names past the 10th ignored, not permerror). */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>
#include <spf2/spf_dns_rr.h>

#include "log.h"
#include "spf.h"

#define SPF_MAX_VOID 2		/* RFC 7208 4.6.4 */
#define SPF_MAX_PTR 10		/* RFC 7208 4.6.4: PTR names past the 10th are ignored */

static SPF_server_t	*spf_server;
static SPF_dns_server_t	*spf_layer;	/* ours: SPF_server_free leaves it */

/* Lookups that found nothing during the evaluation running on this thread
 * (libspf2 evaluates synchronously in the caller's thread). */
static __thread int	 spf_voids;
/* Lookups that failed temporarily: RFC 7208 5 ends the evaluation with
 * temperror, which libspf2 does not always report. */
static __thread int	 spf_tempfails;
/* The domain whose policy is being looked up, and how many "v=spf1" TXT
 * records it has: libspf2 calls a domain with an uncompilable or duplicate
 * record "none", where RFC 7208 4.5/4.6 says permerror. */
static __thread const char *spf_top_domain;
static __thread int	 spf_top_records;

const char *
spf_result_name(enum spf_result r)
{
	switch (r) {
	case SPF_R_NONE:	return "none";
	case SPF_R_NEUTRAL:	return "neutral";
	case SPF_R_PASS:	return "pass";
	case SPF_R_FAIL:	return "fail";
	case SPF_R_SOFTFAIL:	return "softfail";
	case SPF_R_TEMPERROR:	return "temperror";
	case SPF_R_PERMERROR:	return "permerror";
	case SPF_R_SKIPPED:	return "skipped";
	}
	return "none";
}

/* A wire-format name (uncompressed, as libunbound returns rdata) to text. */
static int
spf_wire_name(const unsigned char *p, size_t len, char *out, size_t size)
{
	size_t i = 0, o = 0;

	while (i < len && p[i] != 0) {
		size_t l = p[i++];

		if (l > 63 || i + l > len || o + l + 2 > size)
			return -1;
		if (o > 0)
			out[o++] = '.';
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	out[o] = '\0';
	return 0;
}

/* Appends one record's text to rr slot idx (TXT: its strings joined). */
static int
spf_rr_text(SPF_dns_rr_t *rr, int idx, const unsigned char *p, size_t len, ns_type type)
{
	char name[1025];
	size_t o = 0;

	if (type == ns_t_mx) {
		if (len < 3 || spf_wire_name(p + 2, len - 2, name, sizeof(name)) == -1)
			return -1;
	} else if (type == ns_t_ptr) {
		if (spf_wire_name(p, len, name, sizeof(name)) == -1)
			return -1;
	}
	if (type == ns_t_mx || type == ns_t_ptr) {
		if (SPF_dns_rr_buf_realloc(rr, idx, strlen(name) + 1) != SPF_E_SUCCESS)
			return -1;
		memcpy(rr->rr[idx]->mx, name, strlen(name) + 1);
		return 0;
	}
	if (SPF_dns_rr_buf_realloc(rr, idx, len + 1) != SPF_E_SUCCESS)
		return -1;
	for (size_t i = 0; i < len; ) {
		size_t l = p[i++];

		if (l > len - i)
			l = len - i;
		memcpy(rr->rr[idx]->txt + o, p + i, l);
		o += l;
		i += l;
	}
	rr->rr[idx]->txt[o] = '\0';
	return 0;
}

/* "v=spf1" alone or followed by a space (RFC 7208 4.5). */
static int
spf_is_record(const char *txt)
{
	return strncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == '\0' || txt[6] == ' ');
}

/* One record of an answer into slot n of rr; -1 to skip it. */
static int
spf_rr_add(SPF_dns_rr_t *rr, int n, const char *domain, ns_type type, const unsigned char *p,
    size_t len)
{
	switch (type) {
	case ns_t_a:
		if (len != 4 || SPF_dns_rr_buf_realloc(rr, n, sizeof(struct in_addr)))
			return -1;
		memcpy(&rr->rr[n]->a, p, 4);
		return 0;
	case ns_t_aaaa:
		if (len != 16 || SPF_dns_rr_buf_realloc(rr, n, sizeof(struct in6_addr)))
			return -1;
		memcpy(&rr->rr[n]->aaaa, p, 16);
		return 0;
	case ns_t_txt:
		if (spf_rr_text(rr, n, p, len, type) == -1)
			return -1;
		if (spf_top_domain != NULL && strcasecmp(domain, spf_top_domain) == 0 &&
		    spf_is_record(rr->rr[n]->txt))
			spf_top_records++;
		return 0;
	case ns_t_spf:
	case ns_t_mx:
	case ns_t_ptr:
		return spf_rr_text(rr, n, p, len, type);
	default:
		return -1;
	}
}

static SPF_dns_rr_t *
spf_dns_lookup(SPF_dns_server_t *srv, const char *domain, ns_type type, int should_cache)
{
	struct dns_answer a;
	SPF_dns_rr_t *rr;
	int n = 0;

	(void)should_cache;
	if (dns_query(srv->hook, domain, (int)type, &a) == DNS_BADNAME) {
		spf_voids++;
		dns_answer_free(&a);
		return SPF_dns_rr_new_init(srv, domain, type, 0, HOST_NOT_FOUND);
	}
	if (a.status != DNS_OK) {
		log_debug("spf lookup %s type %d: %s", domain, (int)type, a.why);
		dns_answer_free(&a);
		spf_tempfails++;
		return SPF_dns_rr_new_init(srv, domain, type, 0, TRY_AGAIN);
	}
	if (a.rcode == 3 || !a.havedata || a.nrdata == 0) {
		spf_voids++;
		rr = SPF_dns_rr_new_init(srv, domain, type, 0,
		    a.rcode == 3 ? HOST_NOT_FOUND : NO_DATA);
		dns_answer_free(&a);
		return rr;
	}
	if ((rr = SPF_dns_rr_new_init(srv, domain, type, a.ttl, NETDB_SUCCESS)) == NULL) {
		dns_answer_free(&a);
		return NULL;
	}
	/* libspf2 answers permerror past the 10th PTR name; RFC 7208 4.6.4
	 * says those "MUST be ignored". */
	for (int i = 0; i < a.nrdata && !(type == ns_t_ptr && n == SPF_MAX_PTR); i++)
		if (spf_rr_add(rr, n, domain, type, a.rdata[i], a.rdlen[i]) == 0)
			n++;
	rr->num_rr = n;
	dns_answer_free(&a);
	return rr;
}

int
spf_init(struct dns *dns, struct buf *err)
{
	SPF_dns_server_t *layer;

	if ((layer = calloc(1, sizeof(*layer))) == NULL) {
		buf_puts(err, "spf: out of memory");
		return -1;
	}
	/* No destroy hook: libspf2 never frees a caller's layer itself, and a
	 * hook would only suggest it does; spf_shutdown() frees it. */
	layer->lookup = spf_dns_lookup;
	layer->name = "milterd";
	layer->hook = dns;
	if ((spf_server = SPF_server_new_dns(layer, getenv("MILTERD_SPF_DEBUG") != NULL)) == NULL) {
		buf_puts(err, "spf: cannot create the libspf2 server");
		free(layer);
		return -1;
	}
	spf_layer = layer;
	return 0;
}

void
spf_shutdown(void)
{
	if (spf_server != NULL)
		SPF_server_free(spf_server);
	spf_server = NULL;
	free(spf_layer);
	spf_layer = NULL;
}

static enum spf_result
spf_map(SPF_result_t r)
{
	switch (r) {
	case SPF_RESULT_NEUTRAL:	return SPF_R_NEUTRAL;
	case SPF_RESULT_PASS:		return SPF_R_PASS;
	case SPF_RESULT_FAIL:		return SPF_R_FAIL;
	case SPF_RESULT_SOFTFAIL:	return SPF_R_SOFTFAIL;
	case SPF_RESULT_TEMPERROR:	return SPF_R_TEMPERROR;
	case SPF_RESULT_PERMERROR:	return SPF_R_PERMERROR;
	default:			return SPF_R_NONE;
	}
}

/* The result libspf2 gave, corrected where it departs from RFC 7208. */
static void
spf_correct(struct spf_outcome *out, SPF_errcode_t err)
{
	if (err != SPF_E_SUCCESS)
		snprintf(out->why, sizeof(out->why), "%s", SPF_strerror(err));
	/* libspf2 reports a record it cannot compile, or one of several, as
	 * "none"; RFC 7208 4.5 and 4.6 make that a permerror. */
	if (out->result == SPF_R_NONE && ((err != SPF_E_SUCCESS && err != SPF_E_NOT_SPF &&
	    err != SPF_E_DNS_ERROR && err != SPF_E_NO_MEMORY) || spf_top_records > 0)) {
		out->result = SPF_R_PERMERROR;
		if (out->why[0] == '\0' || err == SPF_E_NOT_SPF)
			snprintf(out->why, sizeof(out->why), spf_top_records > 1 ?
			    "%d SPF records" : "SPF record does not compile", spf_top_records);
	}
	/* A lookup that failed while fetching the policy ends in temperror; one
	 * after a fail (the exp= text) must not change the result (RFC 7208 6.2). */
	if (spf_tempfails > 0 && out->result != SPF_R_FAIL) {
		out->result = SPF_R_TEMPERROR;
		str_copy(out->why, "DNS lookup failed temporarily", sizeof(out->why));
	} else if (spf_voids > SPF_MAX_VOID) {
		out->result = SPF_R_PERMERROR;
		snprintf(out->why, sizeof(out->why), "more than %d void lookups", SPF_MAX_VOID);
	}
}

/* The request libspf2 evaluates: client, HELO, MAIL FROM. NULL with out->why set. */
static SPF_request_t *
spf_request(const char *ip, const char *helo, const char *from, struct spf_outcome *out)
{
	SPF_request_t *req;
	int bad;

	if (spf_server == NULL || (req = SPF_request_new(spf_server)) == NULL) {
		out->result = SPF_R_TEMPERROR;
		str_copy(out->why, "spf not initialised", sizeof(out->why));
		return NULL;
	}
	bad = strchr(ip, ':') ? SPF_request_set_ipv6_str(req, ip) : SPF_request_set_ipv4_str(req, ip);
	if (bad) {
		str_copy(out->why, "client address not usable", sizeof(out->why));
		SPF_request_free(req);
		return NULL;
	}
	if (helo != NULL && helo[0] != '\0')
		SPF_request_set_helo_dom(req, helo);
	if (out->domain[0] == '\0' || SPF_request_set_env_from(req, from) != 0) {
		str_copy(out->why, "no usable domain", sizeof(out->why));
		SPF_request_free(req);
		return NULL;
	}
	return req;
}

void
spf_check(const char *ip, const char *helo, const char *identity, struct spf_outcome *out)
{
	SPF_request_t *req;
	SPF_response_t *resp = NULL;
	char from[600];
	SPF_errcode_t err;
	int n;

	memset(out, 0, sizeof(*out));
	out->result = SPF_R_NONE;
	/* A bare domain is the HELO identity: RFC 7208 2.3 "postmaster@". */
	if (identity == NULL || identity[0] == '\0')
		identity = helo ? helo : "";
	n = strchr(identity, '@') == NULL ? snprintf(from, sizeof(from), "postmaster@%s", identity) :
	    snprintf(from, sizeof(from), "%s", identity);
	/* An identity too long to be an address or a domain has no policy. */
	if (n < 0 || (size_t)n >= sizeof(from) ||
	    str_copy(out->domain, strrchr(from, '@') + 1, sizeof(out->domain)) == -1) {
		out->domain[0] = '\0';
		str_copy(out->why, "no usable domain", sizeof(out->why));
		return;
	}
	if ((req = spf_request(ip, helo, from, out)) == NULL)
		return;
	spf_voids = 0;
	spf_tempfails = 0;
	spf_top_domain = out->domain;
	spf_top_records = 0;
	err = SPF_request_query_mailfrom(req, &resp);
	spf_top_domain = NULL;
	if (resp == NULL) {
		out->result = SPF_R_TEMPERROR;
		str_copy(out->why, "no answer from libspf2", sizeof(out->why));
	} else {
		out->result = spf_map(SPF_response_result(resp));
		if (err == SPF_E_SUCCESS)
			err = SPF_response_errcode(resp);
		spf_correct(out, err);
		SPF_response_free(resp);
	}
	SPF_request_free(req);
}
