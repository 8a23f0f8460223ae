/* dns_test.c — the resolver's answer cache against a scripted DNS server on
 * loopback (a UDP responder in this process whose answers the test changes):
 * answers are kept for their TTL and no longer, names are compared without
 * case or final dot, a TTL of 0 is never kept, and a cached answer is the
 * same as a fresh one (TXT strings, rdata, rcode). Failures are never kept
 * (dns_query keeps DNS_OK answers only), and records come in the order the
 * server gave them (libunbound rotates them unless told not to); libunbound keeps a SERVFAIL for a
 * while itself, so that cannot be seen from here. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#include "dns.h"

#define T_TXT	16

/* What the responder says, changed by the test as it goes. */
static pthread_mutex_t	 resp_lock = PTHREAD_MUTEX_INITIALIZER;
static char		 resp_value[64] = "v=one";
static int		 resp_fail;	/* SERVFAIL for fail.cache.example */
static int		 resp_fd;
static int		 resp_stop;	/* set, then any datagram ends the responder */

/* Appends a TXT answer for the question at q[12..qend) to r. */
static size_t
resp_txt(unsigned char *r, size_t off, unsigned ttl, const char *value)
{
	size_t vl = strlen(value);

	r[off++] = 0xc0; r[off++] = 12;		/* the question's name */
	r[off++] = 0; r[off++] = T_TXT;
	r[off++] = 0; r[off++] = 1;
	r[off++] = (unsigned char)(ttl >> 24); r[off++] = (unsigned char)(ttl >> 16);
	r[off++] = (unsigned char)(ttl >> 8); r[off++] = (unsigned char)ttl;
	r[off++] = 0; r[off++] = (unsigned char)(vl + 1);
	r[off++] = (unsigned char)vl;
	memcpy(r + off, value, vl);
	return off + vl;
}

static void *
responder(void *arg)
{
	unsigned char q[512], r[1024];
	struct sockaddr_in from;
	socklen_t fl;
	ssize_t n;

	(void)arg;
	for (;;) {
		char name[256] = "";
		size_t o = 12, nl = 0, roff;
		unsigned ttl = 0;
		int many = 0;

		fl = sizeof(from);
		n = recvfrom(resp_fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		if (__atomic_load_n(&resp_stop, __ATOMIC_ACQUIRE))
			break;
		if (n < 17)
			continue;
		while (o < (size_t)n && q[o] != 0 && nl + q[o] + 1 < sizeof(name)) {
			if (nl > 0)
				name[nl++] = '.';
			memcpy(name + nl, q + o + 1, q[o]);
			nl += q[o];
			o += (size_t)q[o] + 1;
		}
		name[nl] = '\0';
		o += 5;			/* the root label, type, class */
		if (o > (size_t)n)
			continue;
		memcpy(r, q, o);
		r[2] = 0x81; r[3] = 0x80;	/* response, RD, RA, NOERROR */
		r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
		roff = o;
		pthread_mutex_lock(&resp_lock);
		for (char *p = name; *p; p++)
			*p = (char)(*p | 0x20);
		if (strcmp(name, "fail.cache.example") == 0 && resp_fail)
			r[3] = 0x82;			/* SERVFAIL */
		else if (strcmp(name, "a.cache.example") == 0)
			ttl = 2;
		else if (strcmp(name, "zero.cache.example") == 0)
			ttl = 0;
		else if (strcmp(name, "fail.cache.example") == 0)
			ttl = 60;
		else if (nl > 19 && strcmp(name + nl - 19, ".many.cache.example") == 0)
			ttl = 60, many = 1;
		else
			r[3] = 0x83;			/* NXDOMAIN */
		if ((r[3] & 0x0f) == 0 && many) {
			/* Five records, always in this order. */
			static const char *five[] = { "r1", "r2", "r3", "r4", "r5" };

			r[7] = 5;
			for (int i = 0; i < 5; i++)
				roff = resp_txt(r, roff, ttl, five[i]);
		} else if ((r[3] & 0x0f) == 0) {
			r[7] = 1;
			roff = resp_txt(r, roff, ttl, resp_value);
		}
		pthread_mutex_unlock(&resp_lock);
		sendto(resp_fd, r, roff, 0, (struct sockaddr *)&from, fl);
	}
	return NULL;
}

static void
set_value(const char *v)
{
	pthread_mutex_lock(&resp_lock);
	str_copy(resp_value, v, sizeof(resp_value));
	pthread_mutex_unlock(&resp_lock);
}

/* The first TXT string of an answer, or the status as text. */
static const char *
txt(struct dns *d, const char *name, char *out, size_t size)
{
	struct dns_answer a;

	if (dns_query(d, name, T_TXT, &a) != DNS_OK)
		snprintf(out, size, "status %d", (int)a.status);
	else if (a.rcode != 0)
		snprintf(out, size, "rcode %d", a.rcode);
	else if (a.txt == NULL || a.txt[0] == NULL)
		snprintf(out, size, "no data");
	else if (a.nrdata != 1 || a.rdlen[0] != strlen(a.txt[0]) + 1 ||
	    memcmp(a.rdata[0] + 1, a.txt[0], a.rdlen[0] - 1) != 0)
		snprintf(out, size, "rdata and txt disagree");
	else
		snprintf(out, size, "%s", a.txt[0]);
	dns_answer_free(&a);
	return out;
}

int
main(void)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	char spec[64], b[128];
	struct dns *d;
	struct buf err;
	pthread_t t;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((resp_fd = socket(AF_INET, SOCK_DGRAM, 0)) == -1 ||
	    bind(resp_fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(resp_fd, (struct sockaddr *)&sin, &sl) == -1) {
		printf("not ok - dns: cannot bind a loopback UDP socket\n");
		return 1;
	}
	pthread_create(&t, NULL, responder, NULL);
	snprintf(spec, sizeof(spec), "127.0.0.1@%u", (unsigned)ntohs(sin.sin_port));
	buf_init(&err);
	d = dns_open(spec, "", 3, &err);
	CHECK(d != NULL, "dns_open on a loopback forwarder (%s)", err.s);
	if (d == NULL)
		return 1;

	CHECK_STR(txt(d, "a.cache.example", b, sizeof(b)), "v=one", "first answer");
	set_value("v=two");
	CHECK_STR(txt(d, "a.cache.example", b, sizeof(b)), "v=one", "within its TTL the answer is kept");
	CHECK_STR(txt(d, "A.Cache.Example.", b, sizeof(b)), "v=one",
	    "the same name in capitals with a final dot is the same answer");
	sleep(3);
	CHECK_STR(txt(d, "a.cache.example", b, sizeof(b)), "v=two", "after its TTL (2 s) it is asked again");

	set_value("v=zero1");
	CHECK_STR(txt(d, "zero.cache.example", b, sizeof(b)), "v=zero1", "TTL 0: first answer");
	set_value("v=zero2");
	CHECK_STR(txt(d, "zero.cache.example", b, sizeof(b)), "v=zero2", "TTL 0: never kept");

	pthread_mutex_lock(&resp_lock);
	resp_fail = 1;
	pthread_mutex_unlock(&resp_lock);
	CHECK_STR(txt(d, "fail.cache.example", b, sizeof(b)), "status 1", "SERVFAIL is a temporary failure");
	CHECK_STR(txt(d, "nx.cache.example", b, sizeof(b)), "rcode 3", "NXDOMAIN");
	CHECK_STR(txt(d, "nx.cache.example", b, sizeof(b)), "rcode 3", "NXDOMAIN again");
	CHECK_STR(txt(d, "bad..name", b, sizeof(b)), "status 3", "an impossible name is refused");

	/* The records come in the server's order, never rotated (libunbound's
	 * cache would): SPF's PTR and MX limits depend on it. */
	int inorder = 0, asked = 20;

	for (int i = 1; i <= asked; i++) {
		struct dns_answer a;
		char name[64];
		int same = 1;

		snprintf(name, sizeof(name), "m%d.many.cache.example", i);
		if (dns_query(d, name, T_TXT, &a) != DNS_OK || a.nrdata != 5 || a.txt == NULL)
			same = 0;
		for (int k = 0; same && k < 5; k++) {
			char want[4];

			snprintf(want, sizeof(want), "r%d", k + 1);
			same = a.txt[k] != NULL && strcmp(a.txt[k], want) == 0;
		}
		dns_answer_free(&a);
		inorder += same;
	}
	CHECK(inorder == asked, "five records in the server's order, %d answers of %d", inorder, asked);

	dns_close(d);
	__atomic_store_n(&resp_stop, 1, __ATOMIC_RELEASE);
	sendto(resp_fd, "x", 1, 0, (struct sockaddr *)&sin, sizeof(sin));
	pthread_join(t, NULL);
	close(resp_fd);
	buf_free(&err);
	return CHECK_DONE();
}
