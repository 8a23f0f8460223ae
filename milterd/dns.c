/* dns.c — libunbound behind a blocking, time-bounded query call. One context
 * (and so one cache) for the whole daemon at a time, replaced by a fresh one
 * when the resolver has stopped answering (see DNS_FRESH_AFTER_MS); a service
 * thread per context runs ub_process() and hands answers to the waiting
 * message threads. In front of it, a small answer cache: asking libunbound,
 * even for an answer in its cache, costs a round trip through its pipes and
 * threads (two dozen system calls and two thread switches); the same few keys
 * and SPF records are asked for all day. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ctype.h>

#include <unbound.h>

#include "clock.h"
#include "dns.h"
#include "log.h"

#define DNS_CACHE_BUCKETS	1024
#define DNS_CACHE_MAX		4096	/* answers kept */
#define DNS_CACHE_MAX_TTL	3600	/* seconds, whatever the record says */

/* A good answer (NOERROR or NXDOMAIN), kept for its TTL. Failures, timeouts
 * and bogus answers are never kept. */
struct dns_cached {
	struct dns_cached *next;
	char		  *name;	/* lowercase, no final dot */
	int		   rrtype;
	time_t		   expires;	/* CLOCK_MONOTONIC seconds */
	struct dns_answer  answer;
};

/* After this long with every query on the current context failing (timeouts,
 * SERVFAIL), it is replaced by a fresh one; at most one fresh context per
 * period. Why: a context remembers a forwarder that stopped answering, and
 * nothing of it is undone when the forwarder is back, since it is not asked:
 * each lost packet doubles the retransmit timeout, and a query for a name
 * already asked waits for the packet in flight (lost, up to that timeout:
 * 12 s, 24 s, 48 s ... as the outage goes on); the SERVFAIL is then kept 5 s
 * for the name; past a timeout of 120 s the forwarder is "down" until its
 * host cache entry expires (infra-host-ttl, 900 s). A fresh context knows
 * none of it and asks at once. Measured (tests/integration/dnsrecovery.sh,
 * libunbound 1.17.1, seconds until a reply verified once DNS was back, after
 * an outage of 30 / 45 / 90 s): one context 8.6 / 25.3 / 33.7;
 * infra-keep-probing 11.1 / 25.5 / 33.2 (it only acts past 120 s);
 * infra-host-ttl 5 1.8 / 3.0 / 5.4 (up to 5.3 when DNS came back just after
 * a SERVFAIL was kept: libunbound 1.17 cannot shorten that); fresh contexts
 * 0.0 / 0.0 / 1.1-1.3. After 240 s: one context 666 s, fresh contexts 0.0. */
#define DNS_FRESH_AFTER_MS	2000
#define DNS_FRESH_FAILS		3	/* ... and at least this many failures */

/* Held while libunbound sets up a context (creation, and its first query,
 * which finalizes it) or deletes one: both write process-wide state of
 * libunbound (listen_setup_locks() initializes global mutexes that
 * ub_ctx_delete() destroys), harmless with one context for ever, a race with
 * several. */
static pthread_mutex_t dns_ub_lock = PTHREAD_MUTEX_INITIALIZER;

/* One libunbound context and the thread that runs ub_process() for it. The
 * current one serves new queries; a replaced one is retired: it serves the
 * queries still in flight on it, then its thread deletes it and ends. */
struct dns_res {
	struct dns	*d;
	struct ub_ctx	*ctx;
	pthread_t	 thread;
	int		 users;		/* queries in flight + callbacks to come; d->lock */
	int		 retired;	/* d->lock */
	int		 finished;	/* its thread deleted ctx; d->lock */
	int		 ready;		/* asked once: finalized (atomic) */
	struct dns_res	*next;		/* in d->retired */
};

struct dns {
	char		*resolver;	/* dns_open's arguments, for fresh contexts */
	char		*trust_anchor;
	int		 timeout;	/* seconds */
	int		 validating;
	pthread_mutex_t	 lock;		/* what follows, and users/retired above */
	struct dns_res	*cur;
	struct dns_res	*retired;	/* freed once their threads ended */
	int		 nfail;		/* failures in a row on cur */
	long long	 fail_since;	/* ms, the first of them */
	long long	 fresh_at;	/* ms, the last fresh context */
	int		 nfresh;	/* fresh contexts since the last answer */
	int		 renewing;	/* a thread is making a fresh context */
	pthread_mutex_t	 cache_lock;
	struct dns_cached *cache[DNS_CACHE_BUCKETS];
	int		 ncached;
	unsigned	 evict;		/* next bucket to evict from */
};

static void	dns_cache_free(struct dns *);
static void	dns_ctx_delete(struct ub_ctx *);

/* A deadline for every query of the calling thread (CLOCK_REALTIME; tv_sec 0:
 * none): a lookup that is only recorded (SPF of HELO) must not hold the
 * decision for the whole dns_timeout of each of its queries. */
static __thread struct timespec dns_deadline;

void
dns_set_deadline(int ms)
{
	if (ms <= 0) {
		dns_deadline.tv_sec = 0;
		return;
	}
	clock_gettime(CLOCK_REALTIME, &dns_deadline);
	dns_deadline.tv_sec += ms / 1000;
	dns_deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dns_deadline.tv_nsec >= 1000000000L) {
		dns_deadline.tv_sec++;
		dns_deadline.tv_nsec -= 1000000000L;
	}
}

static int
dns_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* The end of a query starting now: dns_timeout, or the thread's deadline if
 * sooner. 0, or -1 when that deadline has passed already. */
static int
dns_query_end(const struct dns *d, struct timespec *end)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	*end = now;
	end->tv_sec += d->timeout;
	if (dns_deadline.tv_sec == 0)
		return 0;
	if (!dns_ts_before(&now, &dns_deadline))
		return -1;
	if (dns_ts_before(&dns_deadline, end))
		*end = dns_deadline;
	return 0;
}

/* One query in flight. Two references: the waiter's and the callback's;
 * the last one out frees it, so a query that timed out can still complete
 * safely. */
struct dns_wait {
	pthread_mutex_t	 lock;
	pthread_cond_t	 cond;
	int		 refs;
	int		 done;
	int		 err;		/* libunbound error code */
	struct ub_result *result;
	struct dns_res	*res;		/* the context it was asked on */
};

static void
dns_wait_unref(struct dns_wait *w)
{
	int last;

	pthread_mutex_lock(&w->lock);
	last = --w->refs == 0;
	pthread_mutex_unlock(&w->lock);
	if (!last)
		return;
	if (w->result != NULL)
		ub_resolve_free(w->result);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}

static void
dns_res_release(struct dns_res *r, int n)
{
	pthread_mutex_lock(&r->d->lock);
	r->users -= n;
	pthread_mutex_unlock(&r->d->lock);
}

/* Runs in r's service thread, from ub_process(). */
static void
dns_callback(void *arg, int err, struct ub_result *result)
{
	struct dns_wait *w = arg;
	struct dns_res *r = w->res;

	pthread_mutex_lock(&w->lock);
	w->err = err;
	w->result = result;
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	dns_wait_unref(w);
	dns_res_release(r, 1);
}

static void *
dns_service(void *arg)
{
	struct dns_res *r = arg;
	struct pollfd pfd = { .fd = ub_fd(r->ctx), .events = POLLIN };
	int done;

	for (;;) {
		pthread_mutex_lock(&r->d->lock);
		done = r->retired && r->users == 0;
		pthread_mutex_unlock(&r->d->lock);
		if (done)
			break;
		if (poll(&pfd, 1, 200) > 0)
			ub_process(r->ctx);
	}
	/* No query and no callback left: nobody else uses the context. */
	dns_ctx_delete(r->ctx);
	pthread_mutex_lock(&r->d->lock);
	r->finished = 1;
	pthread_mutex_unlock(&r->d->lock);
	return NULL;
}

/* A libunbound context as dns_open's arguments say; NULL with err set. */
static struct ub_ctx *
dns_ctx_new(const struct dns *d, struct buf *err)
{
	struct ub_ctx *ctx;
	int rc;

	pthread_mutex_lock(&dns_ub_lock);
	if ((ctx = ub_ctx_create()) == NULL) {
		pthread_mutex_unlock(&dns_ub_lock);
		buf_puts(err, "dns: cannot create a libunbound context");
		return NULL;
	}
	/* Threads, not a forked process: the answers come back to us. Records
	 * in the order the server gave them, not shuffled by libunbound's cache:
	 * where order matters (SPF's limit of 10 PTR names) the same mail gets
	 * the same answer from milterd and from milterctl check. */
	if ((rc = ub_ctx_async(ctx, 1)) != 0 ||
	    (rc = ub_ctx_set_option(ctx, "rrset-roundrobin:", "no")) != 0)
		goto out;
	if (strcmp(d->resolver, "system") == 0) {
		if ((rc = ub_ctx_resolvconf(ctx, NULL)) != 0 ||
		    (rc = ub_ctx_hosts(ctx, NULL)) != 0)
			goto out;
	} else {
		/* A forwarder on loopback (a local validating resolver) is
		 * the common production set-up: allow it. */
		if ((rc = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no")) != 0 ||
		    (rc = ub_ctx_set_fwd(ctx, d->resolver)) != 0)
			goto out;
	}
	if (d->trust_anchor[0] != '\0')
		rc = ub_ctx_add_ta_file(ctx, d->trust_anchor);
out:
	if (rc != 0) {
		buf_printf(err, "dns: %s", ub_strerror(rc));
		ub_ctx_delete(ctx);
		ctx = NULL;
	}
	pthread_mutex_unlock(&dns_ub_lock);
	return ctx;
}

static void
dns_ctx_delete(struct ub_ctx *ctx)
{
	pthread_mutex_lock(&dns_ub_lock);
	ub_ctx_delete(ctx);
	pthread_mutex_unlock(&dns_ub_lock);
}

/* A context and its service thread. */
static struct dns_res *
dns_res_open(struct dns *d, struct buf *err)
{
	struct dns_res *r;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		buf_puts(err, "dns: out of memory");
		return NULL;
	}
	r->d = d;
	if ((r->ctx = dns_ctx_new(d, err)) == NULL) {
		free(r);
		return NULL;
	}
	if (pthread_create(&r->thread, NULL, dns_service, r) != 0) {
		buf_puts(err, "dns: cannot start the resolver thread");
		dns_ctx_delete(r->ctx);
		free(r);
		return NULL;
	}
	return r;
}

struct dns *
dns_open(const char *resolver, const char *trust_anchor, int timeout, struct buf *err)
{
	struct dns *d;

	if (trust_anchor == NULL)
		trust_anchor = "";
	if ((d = calloc(1, sizeof(*d))) == NULL || (d->resolver = strdup(resolver)) == NULL ||
	    (d->trust_anchor = strdup(trust_anchor)) == NULL) {
		buf_puts(err, "dns: out of memory");
		if (d != NULL)
			free(d->resolver);
		free(d);
		return NULL;
	}
	d->timeout = timeout;
	d->validating = trust_anchor[0] != '\0';
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->cache_lock, NULL);
	if ((d->cur = dns_res_open(d, err)) == NULL) {
		pthread_mutex_destroy(&d->lock);
		pthread_mutex_destroy(&d->cache_lock);
		free(d->resolver);
		free(d->trust_anchor);
		free(d);
		return NULL;
	}
	d->fresh_at = clock_ms();
	return d;
}

/* After the message threads are done: each context ends once the callbacks
 * still due on it have run. */
void
dns_close(struct dns *d)
{
	struct dns_res *r;

	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->cur->retired = 1;
	d->cur->next = d->retired;
	d->retired = d->cur;
	d->cur = NULL;
	pthread_mutex_unlock(&d->lock);
	while ((r = d->retired) != NULL) {
		d->retired = r->next;
		pthread_join(r->thread, NULL);
		free(r);
	}
	dns_cache_free(d);
	pthread_mutex_destroy(&d->cache_lock);
	pthread_mutex_destroy(&d->lock);
	free(d->resolver);
	free(d->trust_anchor);
	free(d);
}

/* The current context, for one query: a user for the waiter, one for the
 * callback. */
static struct dns_res *
dns_res_hold(struct dns *d)
{
	struct dns_res *r;

	pthread_mutex_lock(&d->lock);
	r = d->cur;
	r->users += 2;
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* Replace the current context by a fresh one; the old one retires. Contexts
 * retired earlier whose threads have ended are freed. */
static void
dns_renew(struct dns *d)
{
	struct dns_res *r, *old, **pp, *done = NULL;
	struct buf err;
	int nfresh = 0;

	buf_init(&err);
	r = dns_res_open(d, &err);
	pthread_mutex_lock(&d->lock);
	d->renewing = 0;
	d->nfail = 0;
	d->fresh_at = clock_ms();
	if (r != NULL) {
		old = d->cur;
		old->retired = 1;
		old->next = d->retired;
		d->retired = old;
		d->cur = r;
		nfresh = ++d->nfresh;
	}
	for (pp = &d->retired; *pp != NULL; )
		if ((*pp)->finished) {
			struct dns_res *x = *pp;

			*pp = x->next;
			x->next = done;
			done = x;
		} else
			pp = &(*pp)->next;
	pthread_mutex_unlock(&d->lock);
	if (r == NULL)
		log_err("%s (no fresh resolver context: the current one stays)", err.s);
	else if (nfresh == 1)
		log_warn("dns: every query to %s failed for %d ms: asking it with a fresh "
		    "resolver context (then another at most every %d ms until it answers)",
		    d->resolver, DNS_FRESH_AFTER_MS, DNS_FRESH_AFTER_MS);
	else
		log_debug("dns: still no answer from %s: fresh resolver context %d", d->resolver,
		    nfresh);
	buf_free(&err);
	while ((r = done) != NULL) {
		done = r->next;
		pthread_join(r->thread, NULL);
		free(r);
	}
}

void
dns_answer_free(struct dns_answer *a)
{
	if (a->txt != NULL)
		for (char **t = a->txt; *t; t++)
			free(*t);
	free(a->txt);
	for (int i = 0; i < a->nrdata; i++)
		free(a->rdata[i]);
	free(a->rdata);
	free(a->rdlen);
	a->txt = NULL;
	a->rdata = NULL;
	a->rdlen = NULL;
	a->nrdata = 0;
}

/* TXT rdata is a sequence of <length><bytes> strings; a record's strings are
 * joined (RFC 7208 3.3, RFC 6376 3.6.2.2). */
static char **
dns_txt(const struct ub_result *r)
{
	size_t n = 0;
	char **out;

	while (r->data[n] != NULL)
		n++;
	if ((out = calloc(n + 1, sizeof(*out))) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = (const unsigned char *)r->data[i];
		size_t len = (size_t)r->len[i], o = 0;
		char *s = malloc(len + 1);

		if (s == NULL)
			goto fail;
		for (size_t j = 0; j < len; ) {
			size_t l = p[j++];

			if (l > len - j)
				l = len - j;
			memcpy(s + o, p + j, l);
			o += l;
			j += l;
		}
		s[o] = '\0';
		out[i] = s;
	}
	return out;
fail:
	for (size_t i = 0; i < n; i++)
		free(out[i]);
	free(out);
	return NULL;
}

static void
dns_copy_rdata(const struct ub_result *r, struct dns_answer *out)
{
	int n = 0;

	while (r->data[n] != NULL)
		n++;
	out->rdata = calloc((size_t)n, sizeof(*out->rdata));
	out->rdlen = calloc((size_t)n, sizeof(*out->rdlen));
	if (out->rdata == NULL || out->rdlen == NULL)
		return;
	for (int i = 0; i < n; i++) {
		if ((out->rdata[i] = malloc((size_t)r->len[i] + 1)) == NULL)
			break;
		memcpy(out->rdata[i], r->data[i], (size_t)r->len[i]);
		out->rdlen[i] = (size_t)r->len[i];
		out->nrdata = i + 1;
	}
}

/* Labels of 1 to 63 octets, at most 253 in all (RFC 1035 2.3.4): anything
 * else cannot be in the DNS, and asking would only fail. */
static int
dns_name_ok(const char *name)
{
	size_t len = strlen(name), lab = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '.') {
			if (lab == 0)
				return 0;
			lab = 0;
		} else if (++lab > 63)
			return 0;
	}
	return 1;
}

/* A deep copy of an answer; -1 when memory ran out (dst then freed). */
static int
dns_answer_copy(struct dns_answer *dst, const struct dns_answer *src)
{
	int n = 0;

	*dst = *src;
	dst->txt = NULL;
	dst->rdata = NULL;
	dst->rdlen = NULL;
	dst->nrdata = 0;
	if (src->txt != NULL) {
		while (src->txt[n] != NULL)
			n++;
		if ((dst->txt = calloc((size_t)n + 1, sizeof(*dst->txt))) == NULL)
			goto fail;
		for (int i = 0; i < n; i++)
			if ((dst->txt[i] = strdup(src->txt[i])) == NULL)
				goto fail;
	}
	if (src->nrdata > 0) {
		dst->rdata = calloc((size_t)src->nrdata, sizeof(*dst->rdata));
		dst->rdlen = calloc((size_t)src->nrdata, sizeof(*dst->rdlen));
		if (dst->rdata == NULL || dst->rdlen == NULL)
			goto fail;
		for (int i = 0; i < src->nrdata; i++) {
			if ((dst->rdata[i] = malloc(src->rdlen[i] + 1)) == NULL)
				goto fail;
			memcpy(dst->rdata[i], src->rdata[i], src->rdlen[i]);
			dst->rdlen[i] = src->rdlen[i];
			dst->nrdata = i + 1;
		}
	}
	return 0;
fail:
	dns_answer_free(dst);
	return -1;
}

static time_t
dns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* The cache key: the name in lowercase without its final dot. */
static int
dns_cache_key(const char *name, char *key, size_t size)
{
	size_t n = strlen(name);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n >= size)
		return -1;
	for (size_t i = 0; i < n; i++)
		key[i] = (char)tolower((unsigned char)name[i]);
	key[n] = '\0';
	return 0;
}

static unsigned
dns_cache_bucket(const char *key, int rrtype)
{
	unsigned h = 2166136261u ^ (unsigned)rrtype;

	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % DNS_CACHE_BUCKETS;
}

static void
dns_cached_free(struct dns_cached *c)
{
	dns_answer_free(&c->answer);
	free(c->name);
	free(c);
}

/* 1 and a copy in out on a live entry, 0 otherwise. */
static int
dns_cache_get(struct dns *d, const char *key, int rrtype, struct dns_answer *out)
{
	unsigned b = dns_cache_bucket(key, rrtype);
	time_t now = dns_now();
	struct dns_cached *c;
	int hit = 0;

	pthread_mutex_lock(&d->cache_lock);
	for (c = d->cache[b]; c != NULL; c = c->next)
		if (c->rrtype == rrtype && strcmp(c->name, key) == 0)
			break;
	if (c != NULL && c->expires > now && dns_answer_copy(out, &c->answer) == 0) {
		out->ttl = (int)(c->expires - now);
		hit = 1;
	}
	pthread_mutex_unlock(&d->cache_lock);
	return hit;
}

static void
dns_cache_put(struct dns *d, const char *key, int rrtype, const struct dns_answer *a)
{
	unsigned b = dns_cache_bucket(key, rrtype);
	struct dns_cached *c, **pp;
	time_t now = dns_now();
	int ttl = a->ttl < DNS_CACHE_MAX_TTL ? a->ttl : DNS_CACHE_MAX_TTL;

	if (ttl <= 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return;
	if ((c->name = strdup(key)) == NULL || dns_answer_copy(&c->answer, a) == -1) {
		free(c->name);
		free(c);
		return;
	}
	c->rrtype = rrtype;
	c->expires = now + ttl;
	pthread_mutex_lock(&d->cache_lock);
	/* The older copy of the same answer goes. */
	for (pp = &d->cache[b]; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->rrtype == rrtype && strcmp((*pp)->name, key) == 0) {
			struct dns_cached *old = *pp;

			*pp = old->next;
			dns_cached_free(old);
			d->ncached--;
			break;
		}
	/* Full: a bucket at a time (round robin), expired answers first,
	 * else the whole bucket. */
	while (d->ncached >= DNS_CACHE_MAX) {
		unsigned e = d->evict++ % DNS_CACHE_BUCKETS;
		int dropped = 0;

		for (int pass = 0; pass < 2 && !dropped; pass++)
			for (pp = &d->cache[e]; *pp != NULL; ) {
				struct dns_cached *old = *pp;

				if (pass == 0 && old->expires > now) {
					pp = &old->next;
					continue;
				}
				*pp = old->next;
				dns_cached_free(old);
				d->ncached--;
				dropped = 1;
			}
	}
	c->next = d->cache[b];
	d->cache[b] = c;
	d->ncached++;
	pthread_mutex_unlock(&d->cache_lock);
}

static void
dns_cache_free(struct dns *d)
{
	for (int b = 0; b < DNS_CACHE_BUCKETS; b++)
		while (d->cache[b] != NULL) {
			struct dns_cached *c = d->cache[b];

			d->cache[b] = c->next;
			dns_cached_free(c);
		}
	d->ncached = 0;
}

/* The end of a query asked on r: answered by the resolver (1: an answer,
 * even NXDOMAIN, REFUSED or bogus), failed (0: timeout, SERVFAIL, libunbound
 * error) or neither (-1: not a name, or cut short by the thread's deadline).
 * Failures in a row on the current context for DNS_FRESH_AFTER_MS make this
 * thread replace it. */
static void
dns_res_done(struct dns *d, struct dns_res *r, int answered)
{
	long long now = clock_ms();
	int renew = 0, back = 0;

	pthread_mutex_lock(&d->lock);
	if (r == d->cur && answered == 1) {
		back = d->nfresh;
		d->nfresh = 0;
		d->nfail = 0;
	} else if (r == d->cur && answered == 0) {
		if (d->nfail++ == 0)
			d->fail_since = now;
		if (!d->renewing && d->nfail >= DNS_FRESH_FAILS &&
		    now - d->fail_since >= DNS_FRESH_AFTER_MS &&
		    now - d->fresh_at >= DNS_FRESH_AFTER_MS)
			renew = d->renewing = 1;
	}
	r->users--;
	pthread_mutex_unlock(&d->lock);
	if (back > 0)
		log_info("dns: %s answers again, after %d fresh resolver context%s", d->resolver,
		    back, back > 1 ? "s" : "");
	if (renew)
		dns_renew(d);
}

static enum dns_status dns_resolve(struct dns *, const char *, int, struct dns_answer *);

enum dns_status
dns_query(struct dns *d, const char *name, int rrtype, struct dns_answer *out)
{
	char key[256];
	int cacheable;

	memset(out, 0, sizeof(*out));
	cacheable = dns_name_ok(name) && dns_cache_key(name, key, sizeof(key)) == 0;
	if (cacheable && dns_cache_get(d, key, rrtype, out))
		return out->status;
	dns_resolve(d, name, rrtype, out);
	if (cacheable && out->status == DNS_OK)
		dns_cache_put(d, key, rrtype, out);
	return out->status;
}

/* ub_resolve_async() on r; the first query finalizes the context: see
 * dns_ub_lock. */
static int
dns_submit(struct dns_res *r, const char *name, int rrtype, struct dns_wait *w, int *id)
{
	int rc;

	if (__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE))
		return ub_resolve_async(r->ctx, name, rrtype, 1, w, dns_callback, id);
	pthread_mutex_lock(&dns_ub_lock);
	rc = ub_resolve_async(r->ctx, name, rrtype, 1, w, dns_callback, id);
	if (rc == 0 || rc == UB_SYNTAX)
		__atomic_store_n(&r->ready, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&dns_ub_lock);
	return rc;
}

/* Asks the current context and waits until end (dns_query_end): libunbound's
 * result, or NULL with out->status and out->why set. */
static struct ub_result *
dns_ask(struct dns *d, const char *name, int rrtype, const struct timespec *end,
    struct dns_answer *out)
{
	struct dns_wait *w;
	struct dns_res *res;
	struct ub_result *r;
	int id, rc, done, cut, timedout = 0;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		str_copy(out->why, "out of memory", sizeof(out->why));
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->refs = 2;
	w->res = res = dns_res_hold(d);
	if ((rc = dns_submit(res, name, rrtype, w, &id)) != 0) {
		snprintf(out->why, sizeof(out->why), "%s", ub_strerror(rc));
		if (rc == UB_SYNTAX) {
			out->status = DNS_BADNAME;
			out->rcode = 3;
		}
		w->refs = 1;
		dns_wait_unref(w);
		dns_res_release(res, 1);
		dns_res_done(d, res, rc == UB_SYNTAX ? -1 : 0);
		return NULL;
	}
	pthread_mutex_lock(&w->lock);
	while (!w->done && !timedout)
		timedout = pthread_cond_timedwait(&w->cond, &w->lock, end) == ETIMEDOUT;
	done = w->done;
	r = w->result;
	w->result = NULL;
	rc = w->err;
	pthread_mutex_unlock(&w->lock);
	/* Not done: if the cancel wins, the callback will never run, so its
	 * references go too; otherwise it runs and drops them itself. */
	if (!done && ub_cancel(res->ctx, id) == 0) {
		dns_wait_unref(w);
		dns_res_release(res, 1);
	}
	dns_wait_unref(w);
	/* Cut short by the thread's deadline, not by dns_timeout: that says
	 * nothing about the resolver. */
	cut = dns_deadline.tv_sec != 0 && !dns_ts_before(end, &dns_deadline);
	if (!done && cut)
		str_copy(out->why, "time allowed for this lookup is over", sizeof(out->why));
	else if (!done)
		snprintf(out->why, sizeof(out->why), "timeout after %d s", d->timeout);
	else if (rc != 0 || r == NULL)
		snprintf(out->why, sizeof(out->why), "%s", ub_strerror(rc));
	if (r != NULL && rc != 0) {
		ub_resolve_free(r);
		r = NULL;
	}
	dns_res_done(d, res, r != NULL ? r->bogus || r->rcode != 2 : !done && cut ? -1 : 0);
	return r;
}

/* The query itself, through libunbound. */
static enum dns_status
dns_resolve(struct dns *d, const char *name, int rrtype, struct dns_answer *out)
{
	struct timespec end;
	struct ub_result *r;

	memset(out, 0, sizeof(*out));
	if (!dns_name_ok(name)) {
		out->status = DNS_BADNAME;
		out->rcode = 3;
		str_copy(out->why, "not a valid domain name", sizeof(out->why));
		return out->status;
	}
	out->status = DNS_TEMPFAIL;
	if (dns_query_end(d, &end) == -1) {
		str_copy(out->why, "time allowed for this lookup is over", sizeof(out->why));
		return out->status;
	}
	if ((r = dns_ask(d, name, rrtype, &end, out)) == NULL)
		return out->status;
	out->rcode = r->rcode;
	out->havedata = r->havedata;
	if (d->validating)
		out->security = r->secure ? DNS_SEC_SECURE : r->bogus ? DNS_SEC_BOGUS :
		    DNS_SEC_INSECURE;
	if (r->bogus) {
		out->status = DNS_BOGUS;
		snprintf(out->why, sizeof(out->why), "dnssec bogus: %s",
		    r->why_bogus ? r->why_bogus : "?");
	} else if (r->rcode != 0 && r->rcode != 3) {
		/* The names RFC 1035 and 6895 give the codes a server sends. */
		static const char *const rcodes[] = { "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
		    "NOTIMP", "REFUSED" };

		if (r->rcode > 0 && r->rcode < (int)(sizeof(rcodes) / sizeof(rcodes[0])))
			snprintf(out->why, sizeof(out->why), "%s from the resolver", rcodes[r->rcode]);
		else
			snprintf(out->why, sizeof(out->why), "rcode %d from the resolver", r->rcode);
	} else {
		out->status = DNS_OK;
		if (rrtype == 16 && r->havedata)
			out->txt = dns_txt(r);
		out->ttl = r->ttl;
		if (r->havedata)
			dns_copy_rdata(r, out);
	}
	ub_resolve_free(r);
	return out->status;
}
