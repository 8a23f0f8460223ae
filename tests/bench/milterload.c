/* milterload.c — a milter load client: plays the MTA's side of the milter
 * protocol (version 6) against one milter or a chain of milters, many
 * connections at once, and measures how fast the final answers come.
 *
 * No libmilter: the protocol is spoken here, on epoll event loops (one per
 * --threads), so that 1000 concurrent connections cost a few file descriptors
 * and buffers, not 1000 threads.
 *
 * Per connection: OPTNEG (version 6, every action, every protocol flag an MTA
 * may offer, the no-reply flags SMFIP_NR_* and SMFIP_SKIP included), then per
 * message: [CONNECT, HELO once per connection], MAIL, RCPT..., DATA,
 * HEADER..., EOH, BODY chunks (<= 65535 bytes), EOM — each step skipped when
 * the milter asked for SMFIP_NO<step>, its reply awaited unless the milter
 * asked for SMFIP_NR_<step>. Like Postfix, the next message on a connection
 * starts with MAIL after the EOM answer; a message that ended early (refused
 * at RCPT, accepted by the milter before EOM, --rcpt-only) is closed with
 * ABORT first. QUIT at the end. With several --socket options the milters are
 * chained as an MTA chains them: each step goes to each milter in order, and
 * the first refusal decides the message.
 *
 * Corpus: a directory, one message per file. The first lines
 *   X-Bench-Envelope: client=IP helo=NAME from=<a@b> rcpt=<c@d> [rcpt=...] [host=NAME]
 * give the envelope and are not sent; the rest is the RFC 5322 message. Files
 * are taken in name order, round robin; a connection's CONNECT and HELO come
 * from its first message, as an MTA connection has one client.
 *
 * Output: one "milterload key=value ..." line, then a table. Counted per
 * message: its deciding answer (accept, reject, tempfail, discard, other;
 * SMFIR_REPLYCODE by its 3-digit code), the latency of that answer (from the
 * EOM command, or the RCPT command with --rcpt-only) and of the whole message
 * (from MAIL, or CONNECT for a connection's first). Errors: protocol errors,
 * connection failures, timeouts. Exit 1 on any error or on answers that
 * contradict --expect.
 *
 * Build: cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pthread \
 *            -o milterload tests/bench/milterload.c
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Milter protocol constants (libmilter's mfdef.h, restated: no libmilter). */
#define SMFI_VERSION_6		6
#define MILTER_CHUNK_SIZE	65535
#define MILTER_MAX_PACKET	(2 * 1024 * 1024)

#define SMFIC_ABORT	'A'
#define SMFIC_BODY	'B'
#define SMFIC_CONNECT	'C'
#define SMFIC_MACRO	'D'
#define SMFIC_BODYEOB	'E'
#define SMFIC_HELO	'H'
#define SMFIC_HEADER	'L'
#define SMFIC_MAIL	'M'
#define SMFIC_EOH	'N'
#define SMFIC_OPTNEG	'O'
#define SMFIC_QUIT	'Q'
#define SMFIC_RCPT	'R'
#define SMFIC_DATA	'T'

#define SMFIR_ADDRCPT	'+'
#define SMFIR_DELRCPT	'-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN	'4'
#define SMFIR_ACCEPT	'a'
#define SMFIR_REPLBODY	'b'
#define SMFIR_CONTINUE	'c'
#define SMFIR_DISCARD	'd'
#define SMFIR_CHGFROM	'e'
#define SMFIR_CONN_FAIL	'f'
#define SMFIR_ADDHEADER	'h'
#define SMFIR_INSHEADER	'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER	'm'
#define SMFIR_PROGRESS	'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT	'r'
#define SMFIR_SKIP	's'
#define SMFIR_TEMPFAIL	't'
#define SMFIR_REPLYCODE	'y'

#define SMFIF_ALL_ACTS	0x000001FFu	/* add/chg headers, body, rcpts, quarantine, from, symlist */

#define SMFIP_NOCONNECT	0x00000001u
#define SMFIP_NOHELO	0x00000002u
#define SMFIP_NOMAIL	0x00000004u
#define SMFIP_NORCPT	0x00000008u
#define SMFIP_NOBODY	0x00000010u
#define SMFIP_NOHDRS	0x00000020u
#define SMFIP_NOEOH	0x00000040u
#define SMFIP_NR_HDR	0x00000080u
#define SMFIP_NOUNKNOWN	0x00000100u
#define SMFIP_NODATA	0x00000200u
#define SMFIP_SKIP	0x00000400u
#define SMFIP_RCPT_REJ	0x00000800u
#define SMFIP_NR_CONN	0x00001000u
#define SMFIP_NR_HELO	0x00002000u
#define SMFIP_NR_MAIL	0x00004000u
#define SMFIP_NR_RCPT	0x00008000u
#define SMFIP_NR_DATA	0x00010000u
#define SMFIP_NR_UNKN	0x00020000u
#define SMFIP_NR_EOH	0x00040000u
#define SMFIP_NR_BODY	0x00080000u
#define SMFIP_HDR_LEADSPC 0x00100000u
/* What an MTA offers: it can skip any step, do without any reply, send the
 * leading space of header values, and honour SMFIS_SKIP. */
#define SMFIP_MTA_OFFER	0x001FFFFFu

#define MAXCHAIN 4

/* ---------------------------------------------------------------- utils */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("milterload: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n ? n : 1)) == NULL)
		die("out of memory");
	return p;
}

static char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

struct buf {
	unsigned char *p;
	size_t len, cap, off;	/* off: consumed (read side) or written (write side) */
};

static void
buf_reserve(struct buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return;
	if (b->off > 0 && b->off == b->len) {
		b->len = b->off = 0;
		if (more <= b->cap)
			return;
	}
	while (b->cap < b->len + more)
		b->cap = b->cap ? b->cap * 2 : 4096;
	b->p = xrealloc(b->p, b->cap);
}

static void
buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
buf_compact(struct buf *b)
{
	if (b->off == 0)
		return;
	memmove(b->p, b->p + b->off, b->len - b->off);
	b->len -= b->off;
	b->off = 0;
}

/* --------------------------------------------------------------- corpus */

struct header {
	char *name, *value;	/* value: as after the colon, leading space included */
};

struct cmsg {
	char *file;
	char client[64], helo[256], host[256], from[512];
	char **rcpt;
	int nrcpt;
	int family;		/* '4' or '6' */
	struct header *hdrs;
	int nhdrs;
	unsigned char *body;	/* CRLF line ends */
	size_t bodylen;
};

static struct cmsg *corpus;
static int ncorpus;

static void
envelope_parse(struct cmsg *m, const char *line, const char *file)
{
	char *copy = strdup(line), *save = NULL, *tok;

	if (copy == NULL)
		die("out of memory");
	for (tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(tok, '=');

		if (eq == NULL)
			die("%s: bad X-Bench-Envelope item '%s'", file, tok);
		*eq++ = '\0';
		if (strcmp(tok, "client") == 0)
			snprintf(m->client, sizeof(m->client), "%s", eq);
		else if (strcmp(tok, "helo") == 0)
			snprintf(m->helo, sizeof(m->helo), "%s", eq);
		else if (strcmp(tok, "host") == 0)
			snprintf(m->host, sizeof(m->host), "%s", eq);
		else if (strcmp(tok, "from") == 0)
			snprintf(m->from, sizeof(m->from), "%s", eq);
		else if (strcmp(tok, "rcpt") == 0) {
			m->rcpt = xrealloc(m->rcpt, (m->nrcpt + 1) * sizeof(*m->rcpt));
			m->rcpt[m->nrcpt++] = strdup(eq);
		} else
			die("%s: unknown X-Bench-Envelope key '%s'", file, tok);
	}
	free(copy);
}

static void
corpus_load_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct cmsg *m;
	char *text, *p, *end, *line, *nl, *w;
	long size = 0;
	size_t n, i;

	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		die("%s: cannot size", path);
	text = xmalloc((size_t)size + 1);
	if (fread(text, 1, (size_t)size, f) != (size_t)size)
		die("%s: short read", path);
	fclose(f);
	/* CRLF -> LF, so that both forms of file are read the same. */
	for (p = w = text, end = text + size; p < end; p++)
		if (!(*p == '\r' && p + 1 < end && p[1] == '\n'))
			*w++ = *p;
	*w = '\0';
	end = w;

	corpus = xrealloc(corpus, (ncorpus + 1) * sizeof(*corpus));
	m = &corpus[ncorpus++];
	memset(m, 0, sizeof(*m));
	m->file = strdup(path);
	p = text;
	while (strncasecmp(p, "X-Bench-Envelope:", 17) == 0) {
		nl = strchr(p, '\n');
		line = xstrndup(p + 17, nl ? (size_t)(nl - p - 17) : strlen(p + 17));
		envelope_parse(m, line, path);
		free(line);
		p = nl ? nl + 1 : end;
	}
	if (m->client[0] == '\0')
		strcpy(m->client, "127.0.0.1");
	if (m->helo[0] == '\0')
		strcpy(m->helo, "localhost");
	if (m->host[0] == '\0')
		snprintf(m->host, sizeof(m->host), "%s", m->helo);
	if (m->from[0] == '\0')
		strcpy(m->from, "<>");
	if (m->nrcpt == 0)
		die("%s: no rcpt= in X-Bench-Envelope", path);
	m->family = strchr(m->client, ':') ? '6' : '4';

	/* Header section: "Name: value", folded lines joined with "\n" as the
	 * MTAs (Postfix, Sendmail) send them. */
	while (p < end && *p != '\n') {
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = end;
		if ((*p == ' ' || *p == '\t') && m->nhdrs > 0) {
			struct header *h = &m->hdrs[m->nhdrs - 1];
			size_t ol = strlen(h->value), al = (size_t)(nl - p);

			h->value = xrealloc(h->value, ol + 1 + al + 1);
			h->value[ol] = '\n';
			memcpy(h->value + ol + 1, p, al);
			h->value[ol + 1 + al] = '\0';
		} else {
			char *colon = memchr(p, ':', (size_t)(nl - p));

			if (colon == NULL)
				die("%s: bad header line", path);
			m->hdrs = xrealloc(m->hdrs, (m->nhdrs + 1) * sizeof(*m->hdrs));
			m->hdrs[m->nhdrs].name = xstrndup(p, (size_t)(colon - p));
			m->hdrs[m->nhdrs].value = xstrndup(colon + 1, (size_t)(nl - colon - 1));
			m->nhdrs++;
		}
		p = nl < end ? nl + 1 : end;
	}
	if (p < end)
		p++;	/* the empty line */
	/* Body: LF -> CRLF, as on the wire. */
	n = (size_t)(end - p);
	m->body = xmalloc(2 * n + 1);
	for (i = 0; p < end; p++) {
		if (*p == '\n')
			m->body[i++] = '\r';
		m->body[i++] = (unsigned char)*p;
	}
	m->bodylen = i;
	free(text);
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
corpus_load(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL, path[4096];
	int n = 0;
	struct stat st;

	if (d == NULL)
		die("%s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = strdup(path);
	}
	closedir(d);
	if (n == 0)
		die("%s: no message files", dir);
	qsort(names, n, sizeof(*names), name_cmp);
	for (int i = 0; i < n; i++) {
		corpus_load_file(names[i]);
		free(names[i]);
	}
	free(names);
}

/* -------------------------------------------------------------- options */

enum expect { EXP_MIXED, EXP_ACCEPT, EXP_REJECT, EXP_TEMPFAIL };

static struct {
	char *sockets[MAXCHAIN];
	int nsockets;
	int connections;
	long messages;		/* 0: use duration */
	double duration;
	int per_conn;
	int rcpt_only;
	enum expect expect;
	int threads;
	double timeout;
	int verbose;
	int print_headers;	/* show the headers the milters add, for this many messages */
	int quickack;		/* TCP: acknowledge every segment at once (diagnostic) */
	const char *latfile;	/* write "seconds-since-start latency-ms verdict" per message */
	const char *label;
} opt = { .connections = 10, .per_conn = 10, .expect = EXP_MIXED, .threads = 1,
	  .timeout = 60 };

/* ---------------------------------------------------------------- stats */

enum verdict { V_NONE, V_ACCEPT, V_REJECT, V_TEMPFAIL, V_DISCARD, V_OTHER, V_NV };

struct stats {
	long v[V_NV];
	long proto_errors, conn_errors, timeouts, unexpected, connect_retries, connects;
	long mods;		/* modification requests at EOM */
	long codes[1000];	/* SMTP codes of SMFIR_REPLYCODE answers */
	uint32_t *lat;		/* microseconds, one per decided message: the deciding answer */
	uint32_t *mlat;		/* ... and the whole message, MAIL (CONNECT) to that answer */
	float *when;		/* --latencies: when it was decided, seconds since start */
	unsigned char *what;	/* --latencies: the verdict */
	size_t nlat, caplat;
};

static long messages_started;	/* atomic */
static double t_deadline, t_start;
static int stop_all;		/* atomic: start no more messages (SIGINT, milter unreachable) */
static int shown;		/* atomic: -v lines printed */
static int headers_shown;	/* atomic: --print-headers packets printed */

static long
take_message(void)
{
	long i;

	if (__atomic_load_n(&stop_all, __ATOMIC_RELAXED))
		return -1;
	if (opt.messages == 0 && now() >= t_deadline)
		return -1;
	i = __atomic_fetch_add(&messages_started, 1, __ATOMIC_RELAXED);
	if (opt.messages > 0 && i >= opt.messages)
		return -1;
	return i;
}

/* SIGINT, SIGTERM: start no more messages; those under way finish. */
static void
on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&stop_all, 1, __ATOMIC_RELAXED);
}

/* ----------------------------------------------------- the state machine */

enum phase { P_IDLE, P_RETRY, P_CONNECTING, P_NEGOTIATING, P_RUN, P_CLOSING };
enum step { S_CONNECT, S_HELO, S_MAIL, S_RCPT, S_DATA, S_HDR, S_EOH, S_BODY, S_EOM };

struct worker;
struct sess;

struct mc {			/* one connection to one milter of the chain */
	int fd;
	int idx;
	uint32_t gen;		/* which socket of this slot: stale events are dropped */
	struct sess *s;
	uint32_t pflags, actions;
	struct buf out, in;
	int connected, negotiated, epollout;
	int in_msg;		/* the milter has seen MAIL of the current message */
	int eom_done;		/* ... and answered its EOM */
	int msg_done;		/* accepted the message: no more of its steps */
	int conn_done;		/* accepted the whole connection */
	int skip_body;		/* answered a body chunk with SMFIR_SKIP */
};

struct sess {
	struct worker *w;
	int slot;
	struct mc m[MAXCHAIN];
	int nm;
	enum phase phase;
	double retry_at;
	int retries;
	enum step step;
	int sub, cur;		/* rcpt/header/chunk index; milter index */
	int waiting;		/* for an answer of m[cur] */
	int step_begun;
	double t_step;		/* the current step went to the first milter */
	double t_msg;		/* the message began (MAIL, or CONNECT for the first) */
	double t_alive;		/* last packet sent or received: for --timeout */
	int nmsg;		/* messages begun on this connection */
	int quit;		/* no more messages on this connection */
	long msgno;
	const struct cmsg *msg;
	enum verdict verdict;
	int rcpt_ok;		/* recipients that passed every milter */
	enum verdict rcpt_refused, rcpt_verdict;
	char qid[32];
};

struct worker {
	int ep;
	struct sess *sess;
	int nsess;
	int active;		/* sessions not idle */
	struct stats st;
	pthread_t tid;
	int id;
};

/* sockets */
struct target {
	int family;
	struct sockaddr_storage addr;
	socklen_t alen;
};
static struct target targets[MAXCHAIN];

static void
parse_socket(const char *spec, struct target *t)
{
	if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0 || spec[0] == '/') {
		const char *path = spec[0] == '/' ? spec : strchr(spec, ':') + 1;
		struct sockaddr_un *su = (struct sockaddr_un *)&t->addr;

		if (strlen(path) >= sizeof(su->sun_path))
			die("socket path too long: %s", path);
		su->sun_family = AF_UNIX;
		strcpy(su->sun_path, path);
		t->family = AF_UNIX;
		t->alen = sizeof(*su);
	} else if (strncmp(spec, "inet:", 5) == 0 || strncmp(spec, "inet6:", 6) == 0) {
		int v6 = spec[4] == '6';
		const char *p = spec + (v6 ? 6 : 5), *at = strchr(p, '@');
		char host[256];
		long port = strtol(p, NULL, 10);

		if (port <= 0 || port > 65535)
			die("bad port in %s", spec);
		snprintf(host, sizeof(host), "%s", at ? at + 1 : (v6 ? "::1" : "127.0.0.1"));
		if (v6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->addr;

			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)port);
			if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
				die("bad address in %s (numeric only)", spec);
			t->alen = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&t->addr;

			if (strcmp(host, "localhost") == 0)
				strcpy(host, "127.0.0.1");
			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)port);
			if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
				die("bad address in %s (numeric only)", spec);
			t->alen = sizeof(*s4);
		}
		t->family = v6 ? AF_INET6 : AF_INET;
	} else
		die("socket must be unix:/path or inet:PORT@ADDR, not %s", spec);
}

static void sess_advance(struct sess *s);
static void sess_close(struct sess *s, int retry_same);

static void
note(struct sess *s, const char *what, const char *detail)
{
	if (opt.verbose && __atomic_fetch_add(&shown, 1, __ATOMIC_RELAXED) < 20)
		fprintf(stderr, "milterload: %s: %s%s%s\n", s->msg ? s->msg->file : "-", what,
		    detail ? ": " : "", detail ? detail : "");
}

static void
proto_error(struct sess *s, const char *why)
{
	s->w->st.proto_errors++;
	note(s, "protocol error", why);
	sess_close(s, 0);
}

static uint64_t
ev_key(const struct mc *m)
{
	return (uint64_t)m->s->slot << 32 | (uint64_t)m->idx << 24 | (m->gen & 0xFFFFFFu);
}

static void
ep_mod(struct mc *m, int want_out)
{
	struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0) };

	if (m->epollout == want_out)
		return;
	ev.data.u64 = ev_key(m);
	m->epollout = want_out;
	epoll_ctl(m->s->w->ep, EPOLL_CTL_MOD, m->fd, &ev);
}

/* Write what is buffered: 0 all out, 1 waiting for EPOLLOUT, -1 error. */
static int
mc_flush(struct mc *m)
{
	while (m->out.off < m->out.len) {
		ssize_t n = send(m->fd, m->out.p + m->out.off, m->out.len - m->out.off,
		    MSG_NOSIGNAL);

		if (n > 0) {
			m->out.off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ep_mod(m, 1);
			return 1;
		}
		return -1;
	}
	m->out.off = m->out.len = 0;
	ep_mod(m, 0);
	return 0;
}

static int
sess_flush(struct sess *s)
{
	int pending = 0;

	for (int i = 0; i < s->nm; i++) {
		int r;

		if (s->m[i].fd < 0)
			continue;
		if ((r = mc_flush(&s->m[i])) < 0)
			return -1;
		pending |= r;
	}
	return pending;
}

/* A packet: 4-byte length (command byte included), command, data. */
static void
pkt(struct mc *m, char cmd, const void *data, size_t n)
{
	uint32_t len = htonl((uint32_t)(1 + n));

	buf_add(&m->out, &len, 4);
	buf_add(&m->out, &cmd, 1);
	if (n)
		buf_add(&m->out, data, n);
}

static void
strz(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s) + 1);
}

/* SMFIC_MACRO for a stage: the stage's command, then name\0value\0 pairs. */
static void
macros(struct mc *m, char stage, const char *const *kv, int n)
{
	struct buf b = { 0 };

	buf_add(&b, &stage, 1);
	for (int i = 0; i < n; i++)
		strz(&b, kv[i]);
	pkt(m, SMFIC_MACRO, b.p, b.len);
	free(b.p);
}

/* Does milter m get step st, and does it answer it? */
static int
step_sent(const struct mc *m, enum step st)
{
	static const uint32_t no[] = { SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOMAIL,
		SMFIP_NORCPT, SMFIP_NODATA, SMFIP_NOHDRS, SMFIP_NOEOH, SMFIP_NOBODY, 0 };

	if (m->conn_done)
		return 0;
	if (st >= S_MAIL && m->msg_done)
		return 0;
	if (st == S_BODY && m->skip_body)
		return 0;
	return (m->pflags & no[st]) == 0;
}

static int
step_answered(const struct mc *m, enum step st)
{
	static const uint32_t nr[] = { SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_MAIL,
		SMFIP_NR_RCPT, SMFIP_NR_DATA, SMFIP_NR_HDR, SMFIP_NR_EOH, SMFIP_NR_BODY, 0 };

	return (m->pflags & nr[st]) == 0;
}

static void
queue_step(struct sess *s, struct mc *m)
{
	const struct cmsg *g = s->msg;
	struct buf b = { 0 };

	switch (s->step) {
	case S_CONNECT: {
		const char *kv[] = { "j", "mx.certify.test", "{daemon_name}", "milterload",
			"{client_addr}", g->client, "_", g->host };
		uint16_t port = htons((uint16_t)(1024 + s->msgno % 60000));
		char fam = (char)g->family;

		macros(m, SMFIC_CONNECT, kv, 8);
		strz(&b, g->host);
		buf_add(&b, &fam, 1);
		buf_add(&b, &port, 2);
		strz(&b, g->client);
		pkt(m, SMFIC_CONNECT, b.p, b.len);
		break;
	}
	case S_HELO:
		pkt(m, SMFIC_HELO, g->helo, strlen(g->helo) + 1);
		break;
	case S_MAIL: {
		const char *kv[] = { "i", s->qid, "{mail_addr}", g->from };

		macros(m, SMFIC_MAIL, kv, 4);
		pkt(m, SMFIC_MAIL, g->from, strlen(g->from) + 1);
		m->in_msg = 1;
		break;
	}
	case S_RCPT: {
		const char *kv[] = { "{rcpt_addr}", g->rcpt[s->sub] };

		macros(m, SMFIC_RCPT, kv, 2);
		pkt(m, SMFIC_RCPT, g->rcpt[s->sub], strlen(g->rcpt[s->sub]) + 1);
		break;
	}
	case S_DATA:
		pkt(m, SMFIC_DATA, NULL, 0);
		break;
	case S_HDR: {
		const struct header *h = &g->hdrs[s->sub];
		const char *v = h->value;

		/* Without SMFIP_HDR_LEADSPC the MTA drops the white space
		 * after the colon (Postfix drops all of it). */
		if (!(m->pflags & SMFIP_HDR_LEADSPC))
			v += strspn(v, " \t");
		strz(&b, h->name);
		strz(&b, v);
		pkt(m, SMFIC_HEADER, b.p, b.len);
		break;
	}
	case S_EOH:
		pkt(m, SMFIC_EOH, NULL, 0);
		break;
	case S_BODY: {
		size_t off = (size_t)s->sub * MILTER_CHUNK_SIZE, n = g->bodylen - off;

		pkt(m, SMFIC_BODY, g->body + off, n > MILTER_CHUNK_SIZE ? MILTER_CHUNK_SIZE : n);
		break;
	}
	case S_EOM: {
		const char *kv[] = { "i", s->qid };

		macros(m, SMFIC_BODYEOB, kv, 2);
		pkt(m, SMFIC_BODYEOB, NULL, 0);
		break;
	}
	}
	free(b.p);
}

/* The message is decided: v, its latency counted from the start of the step
 * that decided it (EOM, or RCPT with --rcpt-only). */
static void
record(struct sess *s, enum verdict v)
{
	struct stats *st = &s->w->st;

	if (s->verdict != V_NONE)
		return;
	s->verdict = v;
	st->v[v]++;
	if (st->nlat == st->caplat) {
		st->caplat = st->caplat ? st->caplat * 2 : 65536;
		st->lat = xrealloc(st->lat, st->caplat * sizeof(*st->lat));
		st->mlat = xrealloc(st->mlat, st->caplat * sizeof(*st->mlat));
		if (opt.latfile) {
			st->when = xrealloc(st->when, st->caplat * sizeof(*st->when));
			st->what = xrealloc(st->what, st->caplat * sizeof(*st->what));
		}
	}
	if (opt.latfile) {
		st->when[st->nlat] = (float)(now() - t_start);
		st->what[st->nlat] = (unsigned char)v;
	}
	st->mlat[st->nlat] = (uint32_t)((now() - s->t_msg) * 1e6 + 0.5);
	st->lat[st->nlat++] = (uint32_t)((now() - s->t_step) * 1e6 + 0.5);
	if ((opt.expect == EXP_ACCEPT && v != V_ACCEPT) ||
	    (opt.expect == EXP_REJECT && v != V_REJECT) ||
	    (opt.expect == EXP_TEMPFAIL && v != V_TEMPFAIL))
		st->unexpected++;
}

static void
msg_begin(struct sess *s, enum step first)
{
	s->msg = &corpus[s->msgno % ncorpus];
	s->nmsg++;
	s->step = first;
	s->sub = s->cur = 0;
	s->step_begun = 0;
	s->verdict = s->rcpt_refused = s->rcpt_verdict = V_NONE;
	s->rcpt_ok = 0;
	s->t_msg = now();
	snprintf(s->qid, sizeof(s->qid), "B%dX%lX", s->w->id, s->msgno);
}

/* The message is over: ABORT to the milters left mid-message (as Postfix
 * does at RSET or after a refusal), then the next message on this
 * connection, or QUIT. */
static void
msg_finish(struct sess *s)
{
	int r;

	for (int i = 0; i < s->nm; i++) {
		struct mc *m = &s->m[i];

		if (m->in_msg && !m->eom_done && !m->conn_done)
			pkt(m, SMFIC_ABORT, NULL, 0);
		m->in_msg = m->eom_done = m->msg_done = m->skip_body = 0;
	}
	s->msg = NULL;
	if (!s->quit && s->nmsg < opt.per_conn && (s->msgno = take_message()) >= 0) {
		msg_begin(s, S_MAIL);
		return;
	}
	for (int i = 0; i < s->nm; i++)
		pkt(&s->m[i], SMFIC_QUIT, NULL, 0);
	s->phase = P_CLOSING;
	if ((r = sess_flush(s)) <= 0)
		sess_close(s, 0);	/* else the last EPOLLOUT closes */
}

/* Every milter of the chain had the current step: the next one. */
static void
next_step(struct sess *s)
{
	const struct cmsg *g = s->msg;

	s->cur = 0;
	s->step_begun = 0;
	switch (s->step) {
	case S_CONNECT:
		s->step = S_HELO;
		return;
	case S_HELO:
		s->step = S_MAIL;
		return;
	case S_MAIL:
		s->step = S_RCPT;
		s->sub = 0;
		return;
	case S_RCPT:
		if (s->rcpt_refused == V_NONE)
			s->rcpt_ok++;
		else if (s->rcpt_verdict == V_NONE)
			s->rcpt_verdict = s->rcpt_refused;
		s->rcpt_refused = V_NONE;
		if (++s->sub < g->nrcpt) {
			s->step_begun = 0;
			return;
		}
		if (opt.rcpt_only || s->rcpt_ok == 0) {
			/* --rcpt-only, or no recipient left: the MTA ends
			 * the transaction here. */
			record(s, s->rcpt_ok ? V_ACCEPT : s->rcpt_verdict);
			msg_finish(s);
			return;
		}
		s->step = S_DATA;
		return;
	case S_DATA:
		s->step = g->nhdrs ? S_HDR : S_EOH;
		s->sub = 0;
		return;
	case S_HDR:
		if (++s->sub < g->nhdrs)
			return;
		s->step = S_EOH;
		return;
	case S_EOH:
		s->step = g->bodylen ? S_BODY : S_EOM;
		s->sub = 0;
		return;
	case S_BODY:
		if ((size_t)++s->sub * MILTER_CHUNK_SIZE < g->bodylen)
			return;
		s->step = S_EOM;
		return;
	case S_EOM:
		/* Every milter answered the EOM without refusing. */
		record(s, V_ACCEPT);
		msg_finish(s);
		return;
	}
}

static void
sess_advance(struct sess *s)
{
	while (s->phase == P_RUN && !s->waiting) {
		struct mc *m;

		if (s->cur >= s->nm) {
			next_step(s);
			if (s->phase == P_RUN && s->cur == 0 && s->step > S_RCPT) {
				/* Every milter accepted the message before its
				 * end: nothing more goes to them. */
				int live = 0;

				for (int i = 0; i < s->nm; i++)
					live |= !s->m[i].msg_done && !s->m[i].conn_done;
				if (!live) {
					record(s, V_ACCEPT);
					msg_finish(s);
				}
			}
			continue;
		}
		m = &s->m[s->cur];
		if (!step_sent(m, s->step)) {
			s->cur++;
			continue;
		}
		if (!s->step_begun) {
			s->step_begun = 1;
			s->t_step = now();
		}
		queue_step(s, m);
		if (step_answered(m, s->step)) {
			s->waiting = 1;
			s->t_alive = now();
			if (sess_flush(s) < 0) {
				s->w->st.proto_errors++;
				note(s, "write failed", strerror(errno));
				sess_close(s, 0);
			}
			return;
		}
		s->cur++;
	}
}

static enum verdict
verdict_of(char cmd, const unsigned char *data, size_t n, struct stats *st)
{
	switch (cmd) {
	case SMFIR_ACCEPT:
	case SMFIR_CONTINUE:
		return V_ACCEPT;
	case SMFIR_REJECT:
		return V_REJECT;
	case SMFIR_TEMPFAIL:
		return V_TEMPFAIL;
	case SMFIR_DISCARD:
		return V_DISCARD;
	case SMFIR_REPLYCODE:
		/* "550 5.1.1 text": the 3-digit code decides. */
		if (n >= 3 && data[0] >= '2' && data[0] <= '5' && data[1] >= '0' &&
		    data[1] <= '9' && data[2] >= '0' && data[2] <= '9') {
			int code = (data[0] - '0') * 100 + (data[1] - '0') * 10 + (data[2] - '0');

			st->codes[code]++;
			return data[0] == '5' ? V_REJECT : data[0] == '4' ? V_TEMPFAIL :
			    data[0] == '2' ? V_ACCEPT : V_OTHER;
		}
		return V_OTHER;
	default:
		return V_OTHER;
	}
}

static void
show_reply(struct sess *s, char cmd, const unsigned char *data, size_t n)
{
	char text[256];
	size_t l = n < sizeof(text) - 1 ? n : sizeof(text) - 1;
	static const char *const steps[] = { "connect", "helo", "mail", "rcpt", "data",
		"header", "eoh", "body", "eom" };

	if (!opt.verbose || __atomic_fetch_add(&shown, 1, __ATOMIC_RELAXED) >= 20)
		return;
	memcpy(text, data, l);
	text[l] = '\0';
	for (size_t i = 0; i < l; i++)
		if ((unsigned char)text[i] < ' ')
			text[i] = ' ';
	fprintf(stderr, "milterload: %s: milter %d at %s: '%c' %s\n", s->msg ? s->msg->file : "-",
	    s->cur, steps[s->step], cmd, text);
}

static void
negotiated(struct sess *s, struct mc *m, char cmd, const unsigned char *data, size_t n)
{
	uint32_t w[3];

	if (m->negotiated || cmd != SMFIC_OPTNEG || n < 12) {
		proto_error(s, "bad option negotiation reply");
		return;
	}
	memcpy(w, data, 12);
	if (ntohl(w[0]) < 2 || ntohl(w[0]) > SMFI_VERSION_6) {
		proto_error(s, "milter protocol version not 2..6");
		return;
	}
	m->actions = ntohl(w[1]);
	m->pflags = ntohl(w[2]);
	if ((m->actions & ~SMFIF_ALL_ACTS) || (m->pflags & ~SMFIP_MTA_OFFER)) {
		proto_error(s, "milter asked for actions or protocol flags not offered");
		return;
	}
	m->negotiated = 1;
	for (int i = 0; i < s->nm; i++)
		if (!s->m[i].negotiated)
			return;
	s->phase = P_RUN;
	s->nmsg = 0;
	s->quit = 0;
	msg_begin(s, S_CONNECT);
	sess_advance(s);
}

/* --print-headers: "h" name\0value\0, "i"/"m" index(4) name\0value\0. */
static void
print_header(struct sess *s, char cmd, const unsigned char *data, size_t n)
{
	const char *name, *value;
	char *flat;
	size_t skip = cmd == SMFIR_ADDHEADER ? 0 : 4, ln, o = 0;

	if (opt.print_headers <= 0 ||
	    __atomic_fetch_add(&headers_shown, 1, __ATOMIC_RELAXED) >= opt.print_headers)
		return;
	if (n <= skip || data[n - 1] != '\0')
		return;
	name = (const char *)data + skip;
	ln = strnlen(name, n - skip);
	if (skip + ln + 1 >= n)
		return;
	value = name + ln + 1;
	/* One line per header: folding white space becomes one space. */
	flat = xmalloc(strlen(value) + 1);
	for (const char *p = value; *p; p++)
		if (*p == '\r' || *p == '\n')
			continue;
		else if (*p == '\t')
			flat[o++] = ' ';
		else
			flat[o++] = *p;
	flat[o] = '\0';
	fprintf(stderr, "milterload: %s: milter %d %s header: %s:%s%s\n",
	    s->msg ? s->msg->file : "-", s->cur,
	    cmd == SMFIR_ADDHEADER ? "adds" : cmd == SMFIR_INSHEADER ? "inserts" : "changes",
	    name, flat[0] == ' ' ? "" : " ", flat);
	free(flat);
}

/* One packet from milter m. */
static void
on_packet(struct sess *s, struct mc *m, char cmd, const unsigned char *data, size_t n)
{
	struct stats *st = &s->w->st;
	enum verdict v;

	s->t_alive = now();
	if (s->phase == P_NEGOTIATING) {
		negotiated(s, m, cmd, data, n);
		return;
	}
	if (cmd == SMFIR_PROGRESS)
		return;		/* still working; the timeout restarts */
	if (!s->waiting || &s->m[s->cur] != m) {
		char why[64];

		snprintf(why, sizeof(why), "answer '%c' nobody waited for", cmd);
		proto_error(s, why);
		return;
	}
	if (s->step == S_EOM) {
		switch (cmd) {
		case SMFIR_ADDHEADER:
		case SMFIR_INSHEADER:
		case SMFIR_CHGHEADER:
		case SMFIR_ADDRCPT:
		case SMFIR_ADDRCPT_PAR:
		case SMFIR_DELRCPT:
		case SMFIR_REPLBODY:
		case SMFIR_CHGFROM:
		case SMFIR_QUARANTINE:
			st->mods++;
			if (cmd == SMFIR_ADDHEADER || cmd == SMFIR_INSHEADER || cmd == SMFIR_CHGHEADER)
				print_header(s, cmd, data, n);
			return;	/* modification requests; the final answer follows */
		default:
			m->eom_done = 1;
			break;
		}
	}
	s->waiting = 0;
	switch (cmd) {
	case SMFIR_CONTINUE:
		break;
	case SMFIR_SKIP:
		if (s->step != S_BODY || !(m->pflags & SMFIP_SKIP)) {
			proto_error(s, "SMFIR_SKIP out of place");
			return;
		}
		m->skip_body = 1;
		break;
	case SMFIR_ACCEPT:
		if (s->step <= S_HELO)
			m->conn_done = 1;
		else
			m->msg_done = 1;
		break;
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_DISCARD:
	case SMFIR_REPLYCODE:
		if ((v = verdict_of(cmd, data, n, st)) == V_ACCEPT)
			break;	/* a 2xx reply code: goes on */
		show_reply(s, cmd, data, n);
		if (s->step == S_RCPT && cmd != SMFIR_DISCARD) {
			/* This recipient is refused; the milters after
			 * this one don't see it. */
			s->rcpt_refused = v;
			s->cur = s->nm;
			sess_advance(s);
			return;
		}
		if (s->step <= S_HELO)
			s->quit = 1;	/* the connection is refused */
		record(s, v);
		msg_finish(s);
		sess_advance(s);
		return;
	case SMFIR_CONN_FAIL:
	case SMFIR_SHUTDOWN:
		show_reply(s, cmd, data, n);
		record(s, V_OTHER);
		sess_close(s, 0);
		return;
	default: {
		char why[64];

		snprintf(why, sizeof(why), "unknown answer '%c' (0x%02x)", cmd,
		    (unsigned char)cmd);
		proto_error(s, why);
		return;
	}
	}
	s->cur++;
	sess_advance(s);
}

static void
on_readable(struct mc *m)
{
	struct sess *s = m->s;
	uint32_t gen = m->gen;

	for (;;) {
		ssize_t n;

		buf_reserve(&m->in, 65536);
		n = recv(m->fd, m->in.p + m->in.len, m->in.cap - m->in.len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			s->w->st.proto_errors++;
			note(s, "the milter closed the connection", n < 0 ? strerror(errno) : NULL);
			sess_close(s, 0);
			return;
		}
		m->in.len += (size_t)n;
		if (opt.quickack && targets[m->idx].family != AF_UNIX) {
			/* Linux leaves quick-ACK mode by itself: set it again
			 * after every read. */
			int one = 1;

			setsockopt(m->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		}
		while (m->in.len - m->in.off >= 5) {
			uint32_t len;
			unsigned char *p = m->in.p + m->in.off;

			memcpy(&len, p, 4);
			len = ntohl(len);
			if (len == 0 || len > MILTER_MAX_PACKET) {
				proto_error(s, "bad packet length");
				return;
			}
			if (m->in.len - m->in.off < 4 + (size_t)len)
				break;
			m->in.off += 4 + (size_t)len;
			on_packet(s, m, (char)p[4], p + 5, len - 1);
			if (m->fd < 0 || m->gen != gen)
				return;	/* closed meanwhile */
		}
		buf_compact(&m->in);
	}
}

static void
sess_negotiate(struct sess *s)
{
	s->phase = P_NEGOTIATING;
	for (int i = 0; i < s->nm; i++) {
		uint32_t w[3] = { htonl(SMFI_VERSION_6), htonl(SMFIF_ALL_ACTS),
				  htonl(SMFIP_MTA_OFFER) };

		pkt(&s->m[i], SMFIC_OPTNEG, w, sizeof(w));
	}
	s->t_alive = now();
	if (sess_flush(s) < 0) {
		s->w->st.proto_errors++;
		note(s, "write failed", strerror(errno));
		sess_close(s, 0);
	}
}

static void
on_writable(struct mc *m)
{
	struct sess *s = m->s;

	if (!m->connected) {
		int err = 0;
		socklen_t l = sizeof(err);

		getsockopt(m->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err != 0) {
			s->w->st.conn_errors++;
			note(s, "connect", strerror(err));
			sess_close(s, 1);
			return;
		}
		m->connected = 1;
		ep_mod(m, 0);
		for (int i = 0; i < s->nm; i++)
			if (!s->m[i].connected)
				return;
		sess_negotiate(s);
		return;
	}
	if (mc_flush(m) < 0) {
		s->w->st.proto_errors++;
		note(s, "write failed", strerror(errno));
		sess_close(s, 0);
		return;
	}
	if (s->phase == P_CLOSING && sess_flush(s) == 0)
		sess_close(s, 0);
}

/* Close the milter connections of s. retry_same: connect again later for the
 * same message (connection failure); else the message, if undecided, is lost
 * and the slot starts the next connection, from the event loop. */
static void
sess_close(struct sess *s, int retry_same)
{
	struct worker *w = s->w;

	for (int i = 0; i < s->nm; i++) {
		struct mc *m = &s->m[i];

		if (m->fd >= 0) {
			epoll_ctl(w->ep, EPOLL_CTL_DEL, m->fd, NULL);
			close(m->fd);
		}
		m->fd = -1;
		m->gen++;
		free(m->in.p);
		free(m->out.p);
		memset(&m->in, 0, sizeof(m->in));
		memset(&m->out, 0, sizeof(m->out));
	}
	s->waiting = 0;
	s->phase = P_RETRY;
	s->retry_at = now();
	if (retry_same && s->msg != NULL) {
		if (++s->retries <= 50 && !__atomic_load_n(&stop_all, __ATOMIC_RELAXED)) {
			s->retry_at += 0.1;
			return;
		}
		w->st.v[V_OTHER]++;	/* given up: the milter is unreachable, end the run */
		__atomic_store_n(&stop_all, 1, __ATOMIC_RELAXED);
	} else if (s->msg != NULL && s->verdict == V_NONE)
		w->st.v[V_OTHER]++;	/* lost with its connection */
	s->msg = NULL;
}

/* Connect for the next message (or the same one again, after a failure). */
static void
sess_start(struct sess *s)
{
	struct worker *w = s->w;

	if (s->msg == NULL) {
		if ((s->msgno = take_message()) < 0) {
			s->phase = P_IDLE;
			w->active--;
			return;
		}
		s->msg = &corpus[s->msgno % ncorpus];
		s->retries = 0;
	}
	s->verdict = V_NONE;
	s->waiting = 0;
	s->phase = P_CONNECTING;
	s->t_alive = now();
	for (int i = 0; i < s->nm; i++) {
		struct mc *m = &s->m[i];
		uint32_t gen = m->gen;

		memset(m, 0, sizeof(*m));
		m->fd = -1;
		m->idx = i;
		m->gen = gen;
		m->s = s;
	}
	for (int i = 0; i < s->nm; i++) {
		struct mc *m = &s->m[i];
		struct target *t = &targets[i];
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
		int one = 1;

		m->fd = socket(t->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (m->fd < 0) {
			w->st.conn_errors++;
			note(s, "socket", strerror(errno));
			sess_close(s, 1);
			return;
		}
		/* The milter protocol is a dialogue of small packets: a macro
		 * packet and a command of a few dozen bytes, then wait for the
		 * answer. With Nagle's algorithm a small segment is held back
		 * while an earlier one is unacknowledged, and the peer delays
		 * its ACK (up to 40 ms on Linux) hoping to piggyback it on
		 * data: every exchange where one side writes twice before
		 * reading would stall for the delayed-ACK timer. TCP_NODELAY
		 * sends each packet at once. It does not help when the milter
		 * side writes twice: libmilter sends each modification request
		 * (SMFIR_INSHEADER...) and then the final answer as separate
		 * writes without TCP_NODELAY, so the final answer waits for
		 * our delayed ACK (~40 ms) — what an MTA sees as well.
		 * --quickack acknowledges at once, to measure without it. */
		if (t->family != AF_UNIX)
			setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		w->st.connects++;
		if (connect(m->fd, (struct sockaddr *)&t->addr, t->alen) == 0) {
			m->connected = 1;
			ev.events = EPOLLIN;
		} else if (errno == EINPROGRESS) {
			m->epollout = 1;
		} else if (errno == EAGAIN) {
			/* A unix socket with a full listen queue: try again soon. */
			w->st.connect_retries++;
			sess_close(s, 1);
			s->retries--;
			s->retry_at = now() + 0.005;
			return;
		} else {
			w->st.conn_errors++;
			note(s, "connect", strerror(errno));
			sess_close(s, 1);
			return;
		}
		ev.data.u64 = ev_key(m);
		epoll_ctl(w->ep, EPOLL_CTL_ADD, m->fd, &ev);
	}
	for (int i = 0; i < s->nm; i++)
		if (!s->m[i].connected)
			return;
	sess_negotiate(s);
}

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	double next_scan = now() + 1;

	for (int i = 0; i < w->nsess; i++) {
		struct sess *s = &w->sess[i];

		s->w = w;
		s->slot = i;
		s->nm = opt.nsockets;
		s->phase = P_RETRY;	/* start at once */
		for (int j = 0; j < MAXCHAIN; j++)
			s->m[j].fd = -1;
	}
	w->active = w->nsess;
	while (w->active > 0) {
		double t = now(), first = -1;
		int n, timeout = 200;

		for (int i = 0; i < w->nsess; i++) {
			struct sess *s = &w->sess[i];

			if (s->phase != P_RETRY)
				continue;
			if (s->retry_at <= t)
				sess_start(s);
			if (s->phase == P_RETRY && (first < 0 || s->retry_at < first))
				first = s->retry_at;
		}
		if (w->active == 0)
			break;
		if (first >= 0)
			timeout = first > t ? (int)((first - t) * 1000) + 1 : 0;
		n = epoll_wait(w->ep, evs, 256, timeout);
		for (int i = 0; i < n; i++) {
			uint64_t k = evs[i].data.u64;
			struct sess *s = &w->sess[k >> 32];
			struct mc *m = &s->m[(k >> 24) & 0xFF];

			/* Events of a socket closed earlier in this batch. */
			if (m->fd < 0 || (m->gen & 0xFFFFFFu) != (k & 0xFFFFFFu))
				continue;
			if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
				if (!m->connected || m->epollout)
					on_writable(m);
				if (m->fd < 0 || (m->gen & 0xFFFFFFu) != (k & 0xFFFFFFu))
					continue;
			}
			if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && m->connected)
				on_readable(m);
		}
		t = now();
		if (t >= next_scan) {
			next_scan = t + 1;
			for (int i = 0; i < w->nsess; i++) {
				struct sess *s = &w->sess[i];

				if ((s->waiting || s->phase == P_NEGOTIATING ||
				    s->phase == P_CONNECTING || s->phase == P_CLOSING) &&
				    t - s->t_alive > opt.timeout) {
					w->st.timeouts++;
					note(s, "timeout", NULL);
					sess_close(s, 0);
				}
			}
		}
	}
	return NULL;
}

/* --------------------------------------------------------------- output */

static int
lat_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double
pct(const uint32_t *lat, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return lat[i] / 1000.0;
}

static void
usage(void)
{
	fputs("usage: milterload --socket unix:/path|inet:PORT@127.0.0.1 [--socket ...]\n"
	      "         --corpus DIR [--connections N] [--messages N | --duration SECONDS]\n"
	      "         [--messages-per-connection K] [--rcpt-only]\n"
	      "         [--expect accept|reject|tempfail|mixed] [--threads T]\n"
	      "         [--timeout SECONDS] [--label NAME] [-v] [--print-headers N] [--quickack]\n"
	      "         [--latencies FILE]\n"
	      "Several --socket options chain milters as an MTA does.\n"
	      "Exit 0; 1 on protocol/connection errors, timeouts or answers against\n"
	      "--expect; 2 on usage errors.\n", stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "connections", required_argument, NULL, 'c' },
		{ "messages", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "corpus", required_argument, NULL, 'C' },
		{ "rcpt-only", no_argument, NULL, 'r' },
		{ "messages-per-connection", required_argument, NULL, 'k' },
		{ "expect", required_argument, NULL, 'e' },
		{ "threads", required_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "label", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "print-headers", required_argument, NULL, 'H' },
		{ "quickack", no_argument, NULL, 'Q' },
		{ "latencies", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	struct worker *ws;
	struct stats tot = { 0 };
	struct rlimit rl;
	double t0, secs, cpu = 0;
	int c, per, rest;
	char socks[1024] = "", codes[4096] = "";
	static const char *const expect_names[] = { "mixed", "accept", "reject", "tempfail" };

	while ((c = getopt_long(argc, argv, "s:c:n:d:C:rk:e:t:T:l:vH:QL:h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (opt.nsockets == MAXCHAIN)
				die("at most %d milters in a chain", MAXCHAIN);
			opt.sockets[opt.nsockets++] = optarg;
			break;
		case 'c':
			opt.connections = atoi(optarg);
			break;
		case 'n':
			opt.messages = atol(optarg);
			break;
		case 'd':
			opt.duration = atof(optarg);
			break;
		case 'C':
			dir = optarg;
			break;
		case 'r':
			opt.rcpt_only = 1;
			break;
		case 'k':
			opt.per_conn = atoi(optarg);
			break;
		case 'e':
			if (strcmp(optarg, "accept") == 0)
				opt.expect = EXP_ACCEPT;
			else if (strcmp(optarg, "reject") == 0)
				opt.expect = EXP_REJECT;
			else if (strcmp(optarg, "tempfail") == 0)
				opt.expect = EXP_TEMPFAIL;
			else if (strcmp(optarg, "mixed") == 0)
				opt.expect = EXP_MIXED;
			else
				usage();
			break;
		case 't':
			opt.threads = atoi(optarg);
			break;
		case 'T':
			opt.timeout = atof(optarg);
			break;
		case 'l':
			opt.label = optarg;
			break;
		case 'v':
			opt.verbose = 1;
			break;
		case 'H':
			opt.print_headers = atoi(optarg);
			break;
		case 'Q':
			opt.quickack = 1;
			break;
		case 'L':
			opt.latfile = optarg;
			break;
		default:
			usage();
		}
	}
	if (opt.nsockets == 0 || dir == NULL || opt.connections < 1 || opt.per_conn < 1 ||
	    opt.threads < 1 || (opt.messages <= 0 && opt.duration <= 0) || optind != argc)
		usage();
	if (opt.threads > opt.connections)
		opt.threads = opt.connections;
	for (int i = 0; i < opt.nsockets; i++) {
		parse_socket(opt.sockets[i], &targets[i]);
		snprintf(socks + strlen(socks), sizeof(socks) - strlen(socks), "%s%s", i ? "," : "",
		    opt.sockets[i]);
	}
	corpus_load(dir);

	/* 1000 connections to a chain of milters: raise the descriptor limit. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)opt.connections * (rlim_t)opt.nsockets + 16)
		die("descriptor limit %ld too low for %d connections", (long)rl.rlim_cur,
		    opt.connections * opt.nsockets);

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	ws = calloc((size_t)opt.threads, sizeof(*ws));
	if (ws == NULL)
		die("out of memory");
	per = opt.connections / opt.threads;
	rest = opt.connections % opt.threads;
	t0 = t_start = now();
	t_deadline = t0 + opt.duration;
	for (int i = 0; i < opt.threads; i++) {
		struct worker *w = &ws[i];

		w->id = i;
		w->nsess = per + (i < rest);
		w->sess = calloc((size_t)w->nsess, sizeof(*w->sess));
		if (w->sess == NULL || (w->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
			die("cannot set up worker: %s", strerror(errno));
		if (pthread_create(&w->tid, NULL, worker_run, w) != 0)
			die("pthread_create failed");
	}
	for (int i = 0; i < opt.threads; i++) {
		struct stats *st = &ws[i].st;

		pthread_join(ws[i].tid, NULL);
		for (int v = 0; v < V_NV; v++)
			tot.v[v] += st->v[v];
		tot.proto_errors += st->proto_errors;
		tot.conn_errors += st->conn_errors;
		tot.timeouts += st->timeouts;
		tot.unexpected += st->unexpected;
		tot.connect_retries += st->connect_retries;
		tot.connects += st->connects;
		tot.mods += st->mods;
		for (int k = 0; k < 1000; k++)
			tot.codes[k] += st->codes[k];
		if (opt.latfile) {
			static const char *const vn[] = { "none", "accept", "reject", "tempfail",
				"discard", "other" };
			FILE *lf = fopen(opt.latfile, i == 0 ? "w" : "a");

			if (lf == NULL)
				die("%s: %s", opt.latfile, strerror(errno));
			for (size_t k = 0; k < st->nlat; k++)
				fprintf(lf, "%.4f %.3f %s\n", st->when[k], st->lat[k] / 1000.0,
				    vn[st->what[k]]);
			fclose(lf);
		}
		tot.lat = xrealloc(tot.lat, (tot.nlat + st->nlat) * sizeof(*tot.lat));
		tot.mlat = xrealloc(tot.mlat, (tot.nlat + st->nlat) * sizeof(*tot.mlat));
		if (st->nlat) {
			memcpy(tot.lat + tot.nlat, st->lat, st->nlat * sizeof(*st->lat));
			memcpy(tot.mlat + tot.nlat, st->mlat, st->nlat * sizeof(*st->mlat));
		}
		tot.nlat += st->nlat;
	}
	secs = now() - t0;
	{
		struct rusage ru;

		if (getrusage(RUSAGE_SELF, &ru) == 0)
			cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
			    ru.ru_stime.tv_usec / 1e6;
	}
	qsort(tot.lat, tot.nlat, sizeof(*tot.lat), lat_cmp);
	qsort(tot.mlat, tot.nlat, sizeof(*tot.mlat), lat_cmp);
	for (int k = 0; k < 1000; k++)
		if (tot.codes[k])
			snprintf(codes + strlen(codes), sizeof(codes) - strlen(codes), "%s%d:%ld",
			    codes[0] ? "," : "", k, tot.codes[k]);
	{
		long done = (long)tot.nlat, errors = tot.proto_errors + tot.conn_errors + tot.timeouts;
		double rate = secs > 0 ? done / secs : 0;
		double p50 = pct(tot.lat, tot.nlat, 0.50), p99 = pct(tot.lat, tot.nlat, 0.99);
		double mx = tot.nlat ? tot.lat[tot.nlat - 1] / 1000.0 : 0;
		double m50 = pct(tot.mlat, tot.nlat, 0.50), m99 = pct(tot.mlat, tot.nlat, 0.99);

		printf("milterload label=%s socket=%s mode=%s connections=%d per_connection=%d"
		    " messages=%ld seconds=%.3f msgs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f"
		    " msg_p50_ms=%.3f msg_p99_ms=%.3f"
		    " accept=%ld reject=%ld tempfail=%ld discard=%ld other=%ld"
		    " proto_errors=%ld conn_errors=%ld timeouts=%ld errors=%ld expect=%s unexpected=%ld"
		    " connects=%ld connect_retries=%ld eom_mods=%ld codes=%s client_cpu_s=%.2f\n",
		    opt.label ? opt.label : "-", socks, opt.rcpt_only ? "rcpt" : "eom",
		    opt.connections, opt.per_conn, done, secs, rate, p50, p99, mx, m50, m99,
		    tot.v[V_ACCEPT], tot.v[V_REJECT], tot.v[V_TEMPFAIL], tot.v[V_DISCARD],
		    tot.v[V_OTHER], tot.proto_errors, tot.conn_errors, tot.timeouts, errors,
		    expect_names[opt.expect], tot.unexpected, tot.connects, tot.connect_retries,
		    tot.mods, codes[0] ? codes : "-", cpu);
		printf("\n  %-22s %s\n", "milter(s)", socks);
		printf("  %-22s %s, %d connections, %d messages per connection\n", "mode",
		    opt.rcpt_only ? "up to RCPT" :
		    "whole message", opt.connections,
		    opt.per_conn);
		printf("  %-22s %ld in %.2f s: %.1f msgs/s\n", "messages", done, secs, rate);
		printf("  %-22s p50 %.2f ms   p99 %.2f ms   max %.2f ms\n",
		    opt.rcpt_only ? "RCPT answer" : "end-of-message answer", p50, p99, mx);
		printf("  %-22s p50 %.2f ms   p99 %.2f ms\n", "whole message", m50, m99);
		printf("  %-22s accept %ld  reject %ld  tempfail %ld  discard %ld  other %ld\n",
		    "answers", tot.v[V_ACCEPT], tot.v[V_REJECT], tot.v[V_TEMPFAIL],
		    tot.v[V_DISCARD], tot.v[V_OTHER]);
		printf("  %-22s %s\n", "SMTP codes", codes[0] ? codes : "-");
		printf("  %-22s %.2f s CPU (%.0f%% of one core)\n", "client", cpu,
		    secs > 0 ? 100 * cpu / secs : 0);
		printf("  %-22s protocol %ld  connection %ld  timeouts %ld\n", "errors",
		    tot.proto_errors, tot.conn_errors, tot.timeouts);
		if (opt.expect != EXP_MIXED)
			printf("  %-22s %ld answer(s) not %s\n", "expectation", tot.unexpected,
			    expect_names[opt.expect]);
		return errors > 0 || tot.unexpected > 0 ? 1 : 0;
	}
}
