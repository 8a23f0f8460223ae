/* dkim.c — libopendkim verification; its DNS goes through milterd's resolver
 * (dkim_dns_set_* hooks) so that tests and production share one path. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <pthread.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <dkim.h>

#include "dkim.h"
#include "log.h"

static DKIM_LIB		*dkimv_lib;
static struct dns	*dkimv_dns;

struct dkimv {
	DKIM	*dkim;
	dkimv_worth_fn worth;	/* asked by the prescreen, during dkimv_eoh() */
	void	*worth_arg;
	int	 skipped;	/* signatures the prescreen set aside */
	int	 allskipped;	/* all of them: nothing to verify, only to report */
	int	 nosig;		/* no signature at all: nothing to verify */
	int	 failed;	/* a bad signature header: report, don't crash */
	unsigned char last;	/* the body's last byte so far */
	struct buf hdr;		/* "name:value", reused for every header */
	/* Its key lookups that failed, the newest last: why, for the
	 * signature's error (libopendkim's text is only "key DNS query
	 * failed"), and whether DNSSEC found the answer bogus, which
	 * libopendkim records only for an answer it got. */
	struct dkimv_fail {
		char	 name[256];
		char	 why[80];
		int	 bogus;
	} fails[DKIMV_MAXSIGS];
	unsigned int nfails;
};

/* The message whose libopendkim call (dkim_eoh, dkim_eom) this thread is in:
 * the DNS hook, which libopendkim gives no message, records its failures
 * there. Keys are fetched at the end of the headers, and the verdict read at
 * the end of the message, maybe by another worker: kept per message. */
static __thread struct dkimv *dkimv_current;

/* A finished query, handed from query_start to waitreply. */
struct dkimv_query {
	int	status;		/* DKIM_DNS_* */
	size_t	bytes;
	int	dnssec;		/* DKIM_DNSSEC_* */
};

static int
dkimv_dns_init(void **srv)
{
	*srv = dkimv_dns;
	return 0;
}

static void
dkimv_dns_close(void *srv)
{
	(void)srv;
}

/* Appends n bytes at *at if they fit before end; 0 when they did not. */
static int
dkimv_put(unsigned char **at, const unsigned char *end, const void *p, size_t n)
{
	if ((size_t)(end - *at) < n)
		return 0;
	memcpy(*at, p, n);
	*at += n;
	return 1;
}

/* name in wire format at *at; the root name when it is not one the DNS can
 * hold (the answer then says NXDOMAIN, and the name is only for messages). */
static int
dkimv_put_name(unsigned char **at, const unsigned char *end, const char *name)
{
	unsigned char wire[256];
	size_t n = 0, len;
	const char *dot;

	for (const char *p = name; *p != '\0'; p = *dot ? dot + 1 : dot) {
		dot = p + strcspn(p, ".");
		len = (size_t)(dot - p);
		if (len == 0 || len > 63 || n + len + 2 > sizeof(wire)) {
			n = 0;
			break;
		}
		wire[n++] = (unsigned char)len;
		memcpy(wire + n, p, len);
		n += len;
	}
	wire[n++] = 0;
	return dkimv_put(at, end, wire, n);
}

/* libopendkim copies a key record into 1,024 characters (BUFRSZ, in
 * dkim_get_key_dns) and cuts the rest: a longer one no longer decodes, and
 * the signature fails for good ("unable to apply public key"), where dkimpy
 * verifies it. A 2048-bit key behind a note of 650 characters is enough. A
 * record over that length is handed over without its notes (n=, "not
 * interpreted by the verifier", RFC 6376 3.6.1) and white space (FWS, which
 * no other tag's value keeps). Writes the record (character strings of at
 * most 255 bytes) at out, which holds len bytes; returns its new length, or
 * 0 when it is left as it is. */
#define DKIMV_KEY_RECORD_MAX 1024
#define DKIMV_T_TXT 16			/* the DNS's TXT type */

static int
dkimv_fws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static size_t
dkimv_key_record_fit(const unsigned char *rdata, size_t len, unsigned char *out)
{
	unsigned char *text, *kept;
	size_t tn = 0, kn = 0, on = 0;

	if (len <= DKIMV_KEY_RECORD_MAX + 1)	/* its text is shorter still */
		return 0;
	if ((text = malloc(2 * len)) == NULL)
		return 0;
	kept = text + len;
	for (size_t i = 0; i < len; i += 1 + (size_t)rdata[i]) {
		if (i + 1 + rdata[i] > len) {
			free(text);		/* malformed: libopendkim says so */
			return 0;
		}
		memcpy(text + tn, rdata + i + 1, rdata[i]);
		tn += rdata[i];
	}
	if (tn <= DKIMV_KEY_RECORD_MAX) {	/* it fits: as it is */
		free(text);
		return 0;
	}
	for (size_t i = 0, end = 0; i < tn; i = end + 1) {
		const unsigned char *semi = memchr(text + i, ';', tn - i);
		size_t name = i;

		end = semi != NULL ? (size_t)(semi - text) : tn;
		while (name < end && dkimv_fws(text[name]))
			name++;
		if (name + 1 < end && text[name] == 'n' &&
		    (text[name + 1] == '=' || dkimv_fws(text[name + 1])))
			continue;		/* a note */
		if (kn > 0)
			kept[kn++] = ';';
		for (size_t j = i; j < end; j++)
			if (!dkimv_fws(text[j]))
				kept[kn++] = text[j];
	}
	for (size_t i = 0; i < kn; i += 255) {
		size_t n = kn - i < 255 ? kn - i : 255;

		out[on++] = (unsigned char)n;
		memcpy(out + on, kept + i, n);
		on += n;
	}
	free(text);
	return on;
}

/* The answer libopendkim parses, made from what the resolver found: the
 * question, then the records of the queried type alone, each as owned by
 * the question's name. libopendkim skips only CNAME and RRSIG records in a
 * packet and fails on any other (a DNAME, which libunbound's answer packet
 * keeps with the CNAME it synthesizes: 451 for ever), and takes a failure
 * for a temporary one: a name the DNS cannot hold is answered NXDOMAIN, "key
 * not found". Returns the length, 0 when it does not fit. */
static size_t
dkimv_dns_packet(const struct dns_answer *a, const char *name, int type, unsigned char *buf,
    size_t buflen)
{
	unsigned char *at = buf, *end = buf + buflen;
	int nxdomain = a->status == DNS_BADNAME || a->rcode == 3;
	int n = a->status == DNS_OK && !nxdomain && a->havedata ? a->nrdata : 0;
	const unsigned char hdr[12] = { 0, 0, 0x81, (unsigned char)(0x80 | (nxdomain ? 3 : 0)),
	    0, 1, (unsigned char)(n >> 8), (unsigned char)n, 0, 0, 0, 0 };
	const unsigned char qtail[4] = { (unsigned char)(type >> 8), (unsigned char)type, 0, 1 };
	uint32_t ttl = a->ttl > 0 ? (uint32_t)a->ttl : 0;

	if (!dkimv_put(&at, end, hdr, sizeof(hdr)) ||
	    !dkimv_put_name(&at, end, a->status == DNS_BADNAME ? "" : name) ||
	    !dkimv_put(&at, end, qtail, sizeof(qtail)))
		return 0;
	for (int i = 0; i < n; i++) {
		size_t len = a->rdlen[i], fit;
		unsigned char rr[12] = { 0xc0, 12, qtail[0], qtail[1], 0, 1,
		    (unsigned char)(ttl >> 24), (unsigned char)(ttl >> 16),
		    (unsigned char)(ttl >> 8), (unsigned char)ttl, 0, 0 };

		if (len > 65535 || (size_t)(end - at) < sizeof(rr) + len)
			return 0;
		/* The record after its header, shortened there if it must be. */
		if (type == DKIMV_T_TXT &&
		    (fit = dkimv_key_record_fit(a->rdata[i], len, at + sizeof(rr))) != 0)
			len = fit;
		else
			memcpy(at + sizeof(rr), a->rdata[i], len);
		rr[10] = (unsigned char)(len >> 8);
		rr[11] = (unsigned char)len;
		memcpy(at, rr, sizeof(rr));
		at += sizeof(rr) + len;
	}
	return (size_t)(at - buf);
}

static int
dkimv_dns_start(void *srv, int type, unsigned char *query, unsigned char *buf,
    size_t buflen, void **qh)
{
	struct dkimv_query *q;
	struct dns_answer a;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return DKIM_DNS_ERROR;
	dns_query(srv, (const char *)query, type, &a);
	q->dnssec = a.security == DNS_SEC_SECURE ? DKIM_DNSSEC_SECURE :
	    a.security == DNS_SEC_INSECURE ? DKIM_DNSSEC_INSECURE :
	    a.security == DNS_SEC_BOGUS ? DKIM_DNSSEC_BOGUS : DKIM_DNSSEC_UNKNOWN;
	if (a.status != DNS_OK && a.status != DNS_BADNAME) {
		struct dkimv *v = dkimv_current;

		log_debug("dkim key lookup %s: %s", (const char *)query, a.why);
		if (v != NULL) {
			struct dkimv_fail *f = &v->fails[v->nfails++ % DKIMV_MAXSIGS];

			(void)str_copy(f->name, (const char *)query, sizeof(f->name));
			/* libunbound's words for a bogus answer run long: the log has them. */
			(void)str_copy(f->why, a.status == DNS_BOGUS ?
			    "DNSSEC validation failed (bogus)" : a.why, sizeof(f->why));
			f->bogus = a.status == DNS_BOGUS;
		}
		q->status = DKIM_DNS_ERROR;
	} else if ((q->bytes = dkimv_dns_packet(&a, (const char *)query, type, buf,
	    buflen)) == 0) {
		log_debug("dkim key lookup %s: answer too large", (const char *)query);
		q->status = DKIM_DNS_ERROR;
	} else
		q->status = DKIM_DNS_SUCCESS;
	dns_answer_free(&a);
	*qh = q;
	return DKIM_DNS_SUCCESS;
}

static int
dkimv_dns_cancel(void *srv, void *qh)
{
	(void)srv;
	free(qh);
	return DKIM_DNS_SUCCESS;
}

static int
dkimv_dns_wait(void *srv, void *qh, struct timeval *to, size_t *bytes, int *error,
    int *dnssec)
{
	struct dkimv_query *q = qh;

	(void)srv;
	(void)to;
	if (bytes != NULL)
		*bytes = q->bytes;
	if (error != NULL)
		*error = 0;
	if (dnssec != NULL)
		*dnssec = q->dnssec;
	return q->status;
}

/* libopendkim's prescreen, called once the headers are in and before any key
 * is fetched: a signature whose d= could not align with From can never count,
 * so its key (DNS data the sender chose) is not fetched or parsed. */
static DKIM_CBSTAT
dkimv_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	struct dkimv *v = dkim_get_user_context(dkim);
	char domain[256];
	unsigned char *d;

	if (v == NULL || v->worth == NULL)
		return DKIM_CBSTAT_CONTINUE;
	for (int i = 0; i < nsigs; i++) {
		d = dkim_sig_getdomain(sigs[i]);
		/* A d= too long for any domain cannot align either. */
		if (d == NULL || str_copy(domain, (const char *)d, sizeof(domain)) == -1) {
			dkim_sig_ignore(sigs[i]);
			v->skipped++;
			continue;
		}
		str_lower(domain);
		if (!v->worth(v->worth_arg, domain)) {
			dkim_sig_ignore(sigs[i]);
			v->skipped++;
		}
	}
	return DKIM_CBSTAT_CONTINUE;
}

int
dkimv_init(struct dns *dns, int timeout, struct buf *err)
{
	/* Not DKIM_LIBFLAGS_FIXCRLF: it copies every body byte one at a time
	 * (a third of libopendkim's time); session.c gives header values with
	 * CRLF folding and dkimv_body() mends the rare bare LF in the body. */
	unsigned int flags = DKIM_LIBFLAGS_BADSIGHANDLES;
	unsigned int tmo = (unsigned int)timeout;
	unsigned int minbits = 1024;	/* RFC 8301; a policy may ask more */

	if ((dkimv_lib = dkim_init(NULL, NULL)) == NULL) {
		buf_puts(err, "dkim_init failed");
		return -1;
	}
	dkimv_dns = dns;
	if (dkim_options(dkimv_lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags,
	    sizeof(flags)) != DKIM_STAT_OK ||
	    dkim_options(dkimv_lib, DKIM_OP_SETOPT, DKIM_OPTS_TIMEOUT, &tmo,
	    sizeof(tmo)) != DKIM_STAT_OK ||
	    dkim_options(dkimv_lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits,
	    sizeof(minbits)) != DKIM_STAT_OK) {
		buf_puts(err, "dkim_options failed");
		dkimv_shutdown();
		return -1;
	}
	if (dkim_set_prescreen(dkimv_lib, dkimv_prescreen) != DKIM_STAT_OK) {
		buf_puts(err, "dkim_set_prescreen failed");
		dkimv_shutdown();
		return -1;
	}
	dkim_dns_set_query_service(dkimv_lib, dns);
	dkim_dns_set_init(dkimv_lib, dkimv_dns_init);
	dkim_dns_set_close(dkimv_lib, dkimv_dns_close);
	dkim_dns_set_query_start(dkimv_lib, dkimv_dns_start);
	dkim_dns_set_query_cancel(dkimv_lib, dkimv_dns_cancel);
	dkim_dns_set_query_waitreply(dkimv_lib, dkimv_dns_wait);
	return 0;
}

/*
 * Decoded public keys. OpenSSL 3.0 decodes a key through its generic decoder
 * framework: about 150 us for an RSA-2048 key here, seven times the RSA
 * verification itself, taking locks all along. libopendkim decodes the key of
 * every signature with d2i_PUBKEY_bio() and has no way to be handed a decoded
 * one, so this definition takes the place of libcrypto's for libopendkim (the
 * executable's symbol comes first, as for any shared library's call): the last
 * DKIMV_KEYS keys decoded are remembered by their exact DER bytes and a new
 * reference handed out. The key record still comes from DNS for every
 * signature (TTL, revocation, a changed key); only decoding the same bytes
 * again is skipped. An EVP_PKEY is safe to use from several threads at once
 * for verification (OpenSSL locks its own lazily built parts).
 */
#define DKIMV_KEYS	64
#define DKIMV_KEY_MAX	(16 * 1024)	/* DER bytes: far more than an RSA-8192 key */

static struct dkimv_key {
	unsigned char	*der;
	size_t		 len;
	EVP_PKEY	*pkey;
	unsigned long	 used;		/* for least-recently-used eviction */
} dkimv_keys[DKIMV_KEYS];
static unsigned long	 dkimv_key_clock;
static pthread_mutex_t	 dkimv_key_lock = PTHREAD_MUTEX_INITIALIZER;

static EVP_PKEY *
dkimv_key_find(const unsigned char *der, size_t len)
{
	EVP_PKEY *pkey = NULL;

	pthread_mutex_lock(&dkimv_key_lock);
	for (int i = 0; i < DKIMV_KEYS; i++) {
		struct dkimv_key *k = &dkimv_keys[i];

		if (k->pkey != NULL && k->len == len && memcmp(k->der, der, len) == 0) {
			if (EVP_PKEY_up_ref(k->pkey) == 1)
				pkey = k->pkey;
			k->used = ++dkimv_key_clock;
			break;
		}
	}
	pthread_mutex_unlock(&dkimv_key_lock);
	return pkey;
}

static void
dkimv_key_add(const unsigned char *der, size_t len, EVP_PKEY *pkey)
{
	struct dkimv_key *k = NULL;
	unsigned char *copy;
	EVP_PKEY *old = NULL;

	if ((copy = malloc(len)) == NULL || EVP_PKEY_up_ref(pkey) != 1) {
		free(copy);
		return;
	}
	memcpy(copy, der, len);
	pthread_mutex_lock(&dkimv_key_lock);
	for (int i = 0; i < DKIMV_KEYS; i++) {
		struct dkimv_key *e = &dkimv_keys[i];

		if (e->pkey != NULL && e->len == len && memcmp(e->der, der, len) == 0) {
			k = NULL;	/* another thread added it meanwhile */
			old = pkey;	/* drop the reference taken for the cache */
			free(copy);
			break;
		}
		if (k == NULL || e->pkey == NULL || (k->pkey != NULL && e->used < k->used))
			k = e;
	}
	if (k != NULL) {
		old = k->pkey;
		free(k->der);
		k->der = copy;
		k->len = len;
		k->pkey = pkey;
		k->used = ++dkimv_key_clock;
	}
	pthread_mutex_unlock(&dkimv_key_lock);
	EVP_PKEY_free(old);
}

static void
dkimv_keys_free(void)
{
	pthread_mutex_lock(&dkimv_key_lock);
	for (int i = 0; i < DKIMV_KEYS; i++) {
		EVP_PKEY_free(dkimv_keys[i].pkey);
		free(dkimv_keys[i].der);
		memset(&dkimv_keys[i], 0, sizeof(dkimv_keys[i]));
	}
	pthread_mutex_unlock(&dkimv_key_lock);
}

EVP_PKEY *
d2i_PUBKEY_bio(BIO *bp, EVP_PKEY **a)
{
	unsigned char buf[DKIMV_KEY_MAX];
	const unsigned char *p = buf;
	EVP_PKEY *pkey;
	size_t len = 0;
	int n;

	while (len < sizeof(buf) && (n = BIO_read(bp, buf + len, (int)(sizeof(buf) - len))) > 0)
		len += (size_t)n;
	if (len == 0 || len == sizeof(buf))
		return NULL;
	if (a != NULL)		/* reuse of *a asked for: plain decoding */
		return d2i_PUBKEY(a, &p, (long)len);
	if ((pkey = dkimv_key_find(buf, len)) != NULL)
		return pkey;
	if ((pkey = d2i_PUBKEY(NULL, &p, (long)len)) != NULL)
		dkimv_key_add(buf, len, pkey);
	return pkey;
}

void
dkimv_shutdown(void)
{
	if (dkimv_lib != NULL)
		dkim_close(dkimv_lib);
	dkimv_lib = NULL;
	dkimv_keys_free();
}

/* libopendkim's text for a status; it has none for some. */
static const char *
dkimv_resultstr(DKIM_STAT st)
{
	const char *s = dkim_getresultstr(st);

	return s != NULL ? s : "unknown status";
}

static int
dkimv_status(DKIM_STAT st, const char *what, struct buf *err)
{
	if (st == DKIM_STAT_NORESOURCE || st == DKIM_STAT_INTERNAL) {
		buf_printf(err, "dkim %s: %s", what, dkimv_resultstr(st));
		return -1;
	}
	return 0;
}

struct dkimv *
dkimv_new(const char *id, struct buf *err)
{
	struct dkimv *v;
	DKIM_STAT st;

	if ((v = calloc(1, sizeof(*v))) == NULL) {
		buf_puts(err, "out of memory");
		return NULL;
	}
	buf_init(&v->hdr);
	v->dkim = dkim_verify(dkimv_lib, (const unsigned char *)(id ? id : "NOQUEUE"),
	    NULL, &st);
	if (v->dkim == NULL) {
		buf_printf(err, "dkim_verify: %s", dkimv_resultstr(st));
		free(v);
		return NULL;
	}
	(void)dkim_set_user_context(v->dkim, v);
	return v;
}

int
dkimv_header(struct dkimv *v, const char *name, const char *value, struct buf *err)
{
	struct buf *h = &v->hdr;
	DKIM_STAT st;
	int rc;

	if (v->nosig || v->failed)
		return 0;
	buf_reset(h);
	if (buf_puts(h, name) == -1 || buf_putc(h, ':') == -1 || buf_puts(h, value) == -1) {
		buf_puts(err, "out of memory");
		return -1;
	}
	st = dkim_header(v->dkim, (unsigned char *)h->s, h->len);
	rc = dkimv_status(st, "header", err);
	/* A DKIM-Signature libopendkim cannot parse stays a handle of its own
	 * (DKIM_LIBFLAGS_BADSIGHANDLES), judged failed with its error; a header it
	 * cannot take at all is left out of what signatures cover. Neither may
	 * hide the other signatures: one broken signature above the agent's made
	 * every reply from that relay not_authenticated. As libopendkim's own
	 * dkim_chunk() does with that flag. */
	if (st != DKIM_STAT_OK && st != DKIM_STAT_SYNTAX && rc == 0)
		v->failed = 1;
	return rc;
}

int
dkimv_eoh(struct dkimv *v, dkimv_worth_fn worth, void *arg, struct buf *err)
{
	DKIM_STAT st;

	if (v->failed)
		return 0;
	v->worth = worth;
	v->worth_arg = arg;
	dkimv_current = v;
	st = dkim_eoh(v->dkim);
	dkimv_current = NULL;
	v->worth = NULL;	/* arg lives only as long as this call */
	if (st == DKIM_STAT_NOSIG) {
		/* libopendkim says "no signature" when the prescreen set them
		 * all aside: they are still reported, as skipped. */
		if (v->skipped > 0)
			v->allskipped = 1;
		else
			v->nosig = 1;
		return 0;
	}
	if (dkimv_status(st, "eoh", err) == -1)
		return -1;
	if (st != DKIM_STAT_OK)
		v->failed = 1;	/* a broken signature header: no verification */
	return 0;
}

int
dkimv_body(struct dkimv *v, const unsigned char *p, size_t n, struct buf *err)
{
	const unsigned char *lf = p;
	unsigned char *fixed, *o;
	DKIM_STAT st;

	if (v->nosig || v->allskipped || v->failed || n == 0)
		return 0;
	/* Lines end in CRLF on the wire; a bare LF (some MTAs, files) is read
	 * as CRLF, as DKIM verifiers do. The common case: none, no copy. */
	while ((lf = memchr(lf, '\n', n - (size_t)(lf - p))) != NULL &&
	    (lf == p ? v->last : lf[-1]) == '\r')
		lf++;
	if (lf == NULL) {
		st = dkim_body(v->dkim, (unsigned char *)(uintptr_t)p, n);
	} else {
		if ((fixed = malloc(2 * n)) == NULL) {
			buf_puts(err, "out of memory");
			return -1;
		}
		o = fixed;
		for (size_t i = 0; i < n; i++) {
			if (p[i] == '\n' && (i == 0 ? v->last : p[i - 1]) != '\r')
				*o++ = '\r';
			*o++ = p[i];
		}
		st = dkim_body(v->dkim, fixed, (size_t)(o - fixed));
		free(fixed);
	}
	v->last = p[n - 1];
	return dkimv_status(st, "body", err);
}

/* A tag's value, lowercased, white space removed; returns -1 when it did not
 * fit (out then holds what did). */
static int
dkimv_tag(DKIM_SIGINFO *sig, const char *tag, char *out, size_t size)
{
	unsigned char *v = dkim_sig_gettagvalue(sig, false, (unsigned char *)(uintptr_t)tag);
	size_t o = 0;

	out[0] = '\0';
	if (v == NULL)
		return 0;
	/* Tag values may be folded: keep everything but white space. */
	for (; *v; v++) {
		if (isspace(*v))
			continue;
		if (o + 1 >= size) {
			out[o] = '\0';
			return -1;
		}
		out[o++] = (char)tolower(*v);
	}
	out[o] = '\0';
	return 0;
}

/* What a signature says of itself: signer, selector, algorithm, key size,
 * time, the headers it signs, l=, the start of b=. */
static void
dkimv_describe(struct dkimv *v, DKIM_SIGINFO *sig, struct dkimv_sig *out)
{
	char buf[64];
	unsigned char *s;
	uint64_t when;
	ssize_t msglen = 0, canonlen = 0, signlen = 0;

	/* A d= or s= too long to copy whole is reported empty, never cut: a
	 * cut name could look like another signer. */
	if ((s = dkim_sig_getdomain(sig)) != NULL &&
	    str_copy(out->domain, (const char *)s, sizeof(out->domain)) == -1)
		out->domain[0] = '\0';
	str_lower(out->domain);
	if ((s = dkim_sig_getselector(sig)) != NULL &&
	    str_copy(out->selector, (const char *)s, sizeof(out->selector)) == -1)
		out->selector[0] = '\0';
	/* The a= the signature says. libopendkim's parsed algorithm is set only
	 * once every tag before it parsed: for one with an earlier error (x= in
	 * the past, v=2, i= outside d=) it reads 0, which is rsa-sha1. */
	if (dkimv_tag(sig, "a", out->algorithm, sizeof(out->algorithm)) == -1)
		(void)str_copy(out->algorithm, "unknown", sizeof(out->algorithm));
	if (dkim_sig_getkeysize(sig, &out->key_bits) != DKIM_STAT_OK)
		out->key_bits = 0;
	if (dkim_sig_getsigntime(sig, &when) == DKIM_STAT_OK)
		out->timestamp = (long long)when;
	/* An h= longer than we keep loses its last names whole, never a part of
	 * one ("subject" read from a cut "subjectx"): fewer headers count as
	 * signed, never more. */
	if (dkimv_tag(sig, "h", out->headers, sizeof(out->headers)) == -1) {
		char *colon = strrchr(out->headers, ':');

		if (colon != NULL)
			*colon = '\0';
		else
			out->headers[0] = '\0';
	}
	/* An l= too long to read is still an l=: the body then never counts. */
	if (dkimv_tag(sig, "l", buf, sizeof(buf)) == -1 || buf[0] != '\0') {
		out->has_length = 1;
		out->length = strtoull(buf, NULL, 10);
	}
	if (dkim_sig_getcanonlen(v->dkim, sig, &msglen, &canonlen, &signlen) == DKIM_STAT_OK)
		out->body_length = (unsigned long long)(canonlen > 0 ? canonlen : 0);
	/* Keep b='s case: A-R header.b is matched case-sensitively. */
	if ((s = dkim_sig_gettagvalue(sig, false, (unsigned char *)"b")) != NULL) {
		size_t o = 0;

		for (; *s && o < 8; s++)
			if (!isspace(*s))
				out->b_prefix[o++] = (char)*s;
		out->b_prefix[o] = '\0';
	}
}

/* Why the message's lookup of out's key failed, from v->fails: 0 if it is
 * not there. */
static int
dkimv_lookup_failure(const struct dkimv *v, struct dkimv_sig *out)
{
	char name[sizeof(out->selector) + sizeof(out->domain) + 16];

	snprintf(name, sizeof(name), "%s._domainkey.%s", out->selector, out->domain);
	for (unsigned int n = 0; n < DKIMV_MAXSIGS && n < v->nfails; n++) {
		const struct dkimv_fail *f = &v->fails[(v->nfails - 1 - n) % DKIMV_MAXSIGS];

		if (strcasecmp(f->name, name) != 0)
			continue;
		snprintf(out->error, sizeof(out->error), "key lookup failed: %s", f->why);
		if (f->bogus)
			out->dnssec = "bogus";
		return 1;
	}
	return 0;
}

/* How the verification went: result, why not, DNSSEC status of the key. */
static void
dkimv_verdict(const struct dkimv *v, DKIM_SIGINFO *sig, struct dkimv_sig *out)
{
	int err;

	switch (dkim_sig_getdnssec(sig)) {
	case DKIM_DNSSEC_SECURE:	out->dnssec = "secure"; break;
	case DKIM_DNSSEC_INSECURE:	out->dnssec = "insecure"; break;
	case DKIM_DNSSEC_BOGUS:		out->dnssec = "bogus"; break;
	default:			out->dnssec = "unknown"; break;
	}
	out->testing = (dkim_sig_getflags(sig) & DKIM_SIGFLAG_TESTKEY) != 0;
	out->pass = (dkim_sig_getflags(sig) & DKIM_SIGFLAG_PASSED) != 0 &&
	    dkim_sig_getbh(sig) == DKIM_SIGBH_MATCH;
	err = dkim_sig_geterror(sig);
	out->temporary = err == DKIM_SIGERROR_KEYFAIL;
	out->result = out->pass ? DKIMV_PASS : out->temporary ? DKIMV_TEMPERROR :
	    err == DKIM_SIGERROR_BADSIG || err == DKIM_SIGERROR_OK ? DKIMV_FAIL :
	    DKIMV_PERMERROR;
	if (out->pass)
		return;
	/* The texts are short: they fit out->error. A body hash mismatch comes
	 * first: libopendkim calls it "signature verification failed" too, and a
	 * gateway that adds a footer is the usual cause, worth naming. */
	if (out->temporary && dkimv_lookup_failure(v, out))
		return;
	if (dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH)
		(void)str_copy(out->error, "body hash mismatch", sizeof(out->error));
	else if (err != DKIM_SIGERROR_OK && dkim_sig_geterrorstr(err) != NULL)
		(void)str_copy(out->error, dkim_sig_geterrorstr(err), sizeof(out->error));
	else if (err != DKIM_SIGERROR_OK)	/* libopendkim has no text for some */
		snprintf(out->error, sizeof(out->error), "signature error %d", err);
	else
		(void)str_copy(out->error, "signature did not verify", sizeof(out->error));
}

static void
dkimv_report(struct dkimv *v, DKIM_SIGINFO *sig, struct dkimv_sig *out)
{
	memset(out, 0, sizeof(*out));
	out->timestamp = -1;
	dkimv_describe(v, sig, out);
	if (dkim_sig_getflags(sig) & DKIM_SIGFLAG_IGNORE) {
		out->skipped = 1;
		out->result = DKIMV_SKIPPED;
		out->dnssec = "unknown";
		(void)str_copy(out->error, "skipped: cannot align with From", sizeof(out->error));
		return;
	}
	dkimv_verdict(v, sig, out);
}

int
dkimv_eom(struct dkimv *v, struct dkimv_sig *sigs, size_t max, struct buf *err)
{
	DKIM_SIGINFO **list = NULL;
	DKIM_STAT st;
	int n = 0;

	if (v->nosig || v->failed)
		return 0;
	if (!v->allskipped) {
		dkimv_current = v;
		st = dkim_eom(v->dkim, NULL);
		dkimv_current = NULL;
		if (dkimv_status(st, "eom", err) == -1)
			return -1;
	}
	if (dkim_getsiglist(v->dkim, &list, &n) != DKIM_STAT_OK || list == NULL)
		return 0;
	if ((size_t)n > max)
		n = (int)max;
	for (int i = 0; i < n; i++) {
		/* Make sure each signature was looked at, not only the first;
		 * one the prescreen set aside stays so (no key fetched). */
		if ((dkim_sig_getflags(list[i]) & (DKIM_SIGFLAG_PROCESSED | DKIM_SIGFLAG_IGNORE)) == 0)
			(void)dkim_sig_process(v->dkim, list[i]);
		dkimv_report(v, list[i], &sigs[i]);
	}
	return n;
}

void
dkimv_free(struct dkimv *v)
{
	if (v == NULL)
		return;
	if (v->dkim != NULL)
		dkim_free(v->dkim);
	buf_free(&v->hdr);
	free(v);
}
