/* dns.h — the one resolver of milterd (libunbound): forwarding or system, a
 * shared cache, a hard timeout per query, DNSSEC status per answer. DKIM key
 * lookups and SPF both go through it. */
#ifndef MILTERD_DNS_H
#define MILTERD_DNS_H

#include <stddef.h>

#include "buf.h"

enum dns_status {
	DNS_OK,		/* an answer (possibly empty: check rcode/havedata) */
	DNS_TEMPFAIL,	/* timeout, SERVFAIL, network trouble */
	DNS_BOGUS,	/* DNSSEC validation failed */
	DNS_BADNAME,	/* not a name that can exist in the DNS: no such domain */
};

enum dns_security {
	DNS_SEC_UNKNOWN,	/* no trust anchor configured */
	DNS_SEC_INSECURE,	/* validated as unsigned */
	DNS_SEC_SECURE,
	DNS_SEC_BOGUS,
};

struct dns_answer {
	enum dns_status	  status;
	enum dns_security security;
	int		  rcode;	/* DNS rcode (0 NOERROR, 3 NXDOMAIN, ...) */
	int		  havedata;
	char		**txt;		/* TXT: strings of each record joined, NULL-terminated */
	int		  nrdata;	/* records of the queried type (after CNAMEs) */
	unsigned char	**rdata;	/* their uncompressed wire rdata, malloc'ed */
	size_t		 *rdlen;
	int		  ttl;
	char		  why[128];	/* for logs, when not DNS_OK */
};

struct dns;

/* resolver: "system" or "IP[@port]"; trust_anchor: file or "" (no DNSSEC).
 * NULL on failure, with err set. */
struct dns	*dns_open(const char *resolver, const char *trust_anchor, int timeout,
		    struct buf *err);
void		 dns_close(struct dns *);
/* Blocking query, at most the configured timeout. Class IN. Returns
 * out->status; free the answer with dns_answer_free(). */
enum dns_status	 dns_query(struct dns *, const char *name, int rrtype,
		    struct dns_answer *out);
void		 dns_answer_free(struct dns_answer *);
/* Every query of the calling thread from now on ends within ms milliseconds
 * (each still within the timeout); 0 lifts the deadline. */
void		 dns_set_deadline(int ms);

#endif
