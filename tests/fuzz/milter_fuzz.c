/* milter_fuzz.c — libFuzzer target for the milter protocol (milter.c): framing,
 * unpacking of every command, replies (well formed, and one to each command the
 * MTA waits on under the negotiated flags, none to the others). The sessions
 * are stubs defined here, so that no database, DNS or libopendkim is involved;
 * they read every byte they are handed, so that ASan sees any pointer milter.c
 * gets wrong.
 *
 * Input: the first byte chooses where the rest is cut in two; the two pieces
 * are fed the way server.c feeds a socket (the unconsumed tail of the first
 * call is kept and the second piece appended to it). Seeds in
 * tests/fuzz/corpus/milter/ start with that byte. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "milter.h"
#include "session.h"
#include "stats.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---------------------------------------------------------------- stubs */

static struct snapshot	 fuzz_snap;	/* never looked into by milter.c */
static int		 fuzz_in_flight;	/* messages begun and not ended */
static volatile unsigned fuzz_sink;	/* keeps the reads below from being optimized out */

/* Reads all of s[0..strlen] through a copy, as a real consumer would. */
static void
fuzz_touch(const char *s)
{
	size_t n = strlen(s);
	char *copy = malloc(n + 1);

	if (copy == NULL)
		return;
	memcpy(copy, s, n + 1);
	for (size_t i = 0; i < n; i++)
		fuzz_sink += (unsigned char)copy[i];
	free(copy);
}

void
snapshot_ref(struct snapshot *snap)
{
	(void)snap;
}

void
snapshot_unref(struct snapshot *snap)
{
	(void)snap;
}

void
stats_connection(void)
{
}

/* Formats like the real one (the arguments are read), writes nothing. */
void
log_msg(int level, const char *qid, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	(void)level;
	if (qid != NULL)
		fuzz_touch(qid);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
}

struct session *
session_new(struct snapshot *snap)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->snap = snap;
	str_copy(s->client_addr, "unknown", sizeof(s->client_addr));
	return s;
}

void
session_msg_begin(struct session *s)
{
	if (!s->in_message) {
		s->in_message = 1;
		fuzz_in_flight++;
	}
}

void
session_msg_end(struct session *s)
{
	if (s->in_message) {
		s->in_message = 0;
		fuzz_in_flight--;
	}
}

void
session_msg_reset(struct session *s)
{
	memset(&s->msg, 0, sizeof(s->msg));
}

void
session_free(struct session *s)
{
	if (s == NULL)
		return;
	session_msg_end(s);
	session_msg_reset(s);
	free(s);
}

/* The address is read at the size its family promises. */
void
session_set_client(struct session *s, const char *host, const struct sockaddr *sa)
{
	struct sockaddr_in a4;
	struct sockaddr_in6 a6;

	fuzz_touch(host);
	str_copy(s->client_host, host, sizeof(s->client_host));
	if (sa == NULL) {
		str_copy(s->client_addr, "unknown", sizeof(s->client_addr));
	} else if (sa->sa_family == AF_INET) {
		memcpy(&a4, sa, sizeof(a4));
		inet_ntop(AF_INET, &a4.sin_addr, s->client_addr, sizeof(s->client_addr));
	} else if (sa->sa_family == AF_INET6) {
		memcpy(&a6, sa, sizeof(a6));
		inet_ntop(AF_INET6, &a6.sin6_addr, s->client_addr, sizeof(s->client_addr));
	} else
		str_copy(s->client_addr, "local", sizeof(s->client_addr));
}

int
session_set_helo(struct session *s, const char *helo)
{
	fuzz_touch(helo);
	return str_copy(s->helo, helo, sizeof(s->helo));
}

int
session_set_mail_from(struct session *s, const char *mail_from)
{
	fuzz_touch(mail_from);
	return str_copy(s->msg.mail_from, mail_from, sizeof(s->msg.mail_from));
}

/* "bad" anywhere: refused; a '+' (a token, say): the message concerns us. */
int
session_rcpt(struct session *s, struct store *st, const char *rcpt, struct verdict *v)
{
	(void)st;
	fuzz_touch(rcpt);
	if (strstr(rcpt, "bad") != NULL) {
		memset(v, 0, sizeof(*v));
		v->action = VA_REPLY;
		v->reason = R_UNKNOWN_TOKEN;
		v->rcode = "550";
		v->xcode = "5.1.1";
		/* The recipient in the text: the fuzzer may put line breaks there. */
		snprintf(v->text, sizeof(v->text), "unknown_token: %s", rcpt);
		return 1;
	}
	if (strchr(rcpt, '+') != NULL)
		s->msg.has_token = 1;
	return 0;
}

void
session_header(struct session *s, const char *name, const char *value, size_t len)
{
	(void)len;
	fuzz_touch(name);
	fuzz_touch(value);
	if (strcasecmp(name, "Authentication-Results") == 0)
		s->msg.ar_count++;
}

void
session_eoh(struct session *s)
{
	fuzz_sink += (unsigned)s->msg.ar_count;
}

void
session_body(struct session *s, const unsigned char *p, size_t n)
{
	(void)s;
	for (size_t i = 0; i < n; i++)
		fuzz_sink += p[i];
}

/* Accept, with an Authentication-Results to add and, when the message had
 * one, its last instance to delete. "reject" or "discard" in MAIL FROM
 * chooses the other verdicts, for the other reply paths. */
void
session_eom(struct session *s, struct store *st, struct session_eom *out)
{
	(void)st;
	memset(out, 0, sizeof(*out));
	buf_init(&out->authres);
	buf_puts(&out->authres, " mx.test; dkim=pass");
	out->verdict.action = VA_ACCEPT;
	if (strstr(s->msg.mail_from, "reject") != NULL) {
		out->verdict.action = VA_REPLY;
		out->verdict.rcode = "550";
		out->verdict.xcode = "5.7.1";
		str_copy(out->verdict.text, "not_authenticated: test", sizeof(out->verdict.text));
	} else if (strstr(s->msg.mail_from, "discard") != NULL)
		out->verdict.action = VA_DISCARD;
	if (s->msg.ar_count > 0) {
		static int last;	/* the stub's own: one message at a time */

		last = s->msg.ar_count;
		out->delete_ar = &last;
		out->ndelete_ar = 1;
	}
}

void
session_eom_free(struct session_eom *out)
{
	buf_free(&out->authres);
}

/* ---------------------------------------------------------- invariants */

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The replies are whole packets of known commands, each well formed. */
static void
check_output(const struct buf *out)
{
	const unsigned char *p = (const unsigned char *)out->s;
	size_t off = 0, dlen;
	const unsigned char *d;
	uint32_t len;

	while (off < out->len) {
		if (out->len - off < 5)
			abort();
		len = get32(p + off);
		if (len < 1 || len > out->len - off - 4)
			abort();
		d = p + off + 5;
		dlen = len - 1;
		switch (p[off + 4]) {
		case 'O':	/* version, actions, protocol flags: only what milterd asks */
			if (dlen != 12 || get32(d) > MILTER_VERSION ||
			    (get32(d + 4) & ~(SMFIF_ADDHDRS | SMFIF_CHGHDRS)) != 0 ||
			    (get32(d + 8) & ~(SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_HDR_LEADSPC |
			    SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_HDR |
			    SMFIP_NR_EOH | SMFIP_NR_BODY)) != 0)
				abort();
			break;
		case 'i':	/* index, name NUL, value NUL */
		case 'm':
			if (dlen < 6 || d[dlen - 1] != '\0' ||
			    memchr(d + 4, '\0', dlen - 4) == d + dlen - 1)
				abort();
			break;
		case 'y':	/* "550 5.1.1 text" NUL, the NUL its end */
			if (dlen < 5 || memchr(d, '\0', dlen) != d + dlen - 1 ||
			    d[0] < '0' || d[0] > '9' || d[1] < '0' || d[1] > '9' ||
			    d[2] < '0' || d[2] > '9' || d[3] != ' ' ||
			    memchr(d, '\r', dlen) != NULL || memchr(d, '\n', dlen) != NULL)
				abort();	/* one line: a break would end the reply early */
			break;
		case 'a': case 'c': case 'd': case 't':
			break;
		default:
			abort();
		}
		off += 4 + (size_t)len;
	}
}

/* The consumed bytes are whole packets; returns whether one was a QUIT. */
static int
check_consumed(const unsigned char *p, size_t used)
{
	size_t off = 0;
	uint32_t len;
	int quit = 0;

	while (off < used) {
		if (used - off < 5 || (len = get32(p + off)) == 0 || len > used - off - 4)
			abort();
		if (p[off + 4] == 'Q')
			quit = 1;
		off += 4 + (size_t)len;
	}
	return quit;
}

/* Every command consumed, in order, for check_replies(). */
static struct buf fuzz_taken;

/* The replies answer the commands one for one: one final reply to each
 * command the MTA waits on under the protocol flags in force (those of the
 * latest option negotiation), none to the others (a reply the MTA does not
 * read would be taken as the answer to its next command), modifications only
 * before the final reply to end of message. A command that closes the
 * connection (a protocol error) gets no reply, and is the last one taken. */
static void
check_replies(const struct buf *taken, const struct buf *out, int closing)
{
	static const struct {
		char	 cmd;
		uint32_t noreply;	/* no reply under this flag; 0: always one */
	} steps[] = {
		{ 'C', SMFIP_NR_CONN }, { 'H', SMFIP_NR_HELO }, { 'M', SMFIP_NR_MAIL },
		{ 'R', 0 }, { 'T', 0 }, { 'U', 0 }, { 'E', 0 }, { 'O', 0 },
		{ 'L', SMFIP_NR_HDR }, { 'N', SMFIP_NR_EOH }, { 'B', SMFIP_NR_BODY },
	};
	const unsigned char *in = (const unsigned char *)taken->s;
	const unsigned char *o = (const unsigned char *)out->s;
	size_t ioff = 0, ooff = 0;
	uint32_t pflags = 0;
	int want;
	char cmd;

	while (ioff < taken->len) {
		cmd = (char)in[ioff + 4];
		ioff += 4 + (size_t)get32(in + ioff);
		want = 0;
		for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
			if (steps[i].cmd == cmd)
				want = !(pflags & steps[i].noreply);
		while (cmd == 'E' && ooff < out->len && (o[ooff + 4] == 'i' || o[ooff + 4] == 'm'))
			ooff += 4 + (size_t)get32(o + ooff);
		if (want && ooff == out->len) {
			if (closing && ioff == taken->len)
				break;	/* the protocol error that closed */
			abort();
		}
		if (!want)
			continue;
		if (cmd == 'O') {
			if (o[ooff + 4] != 'O')
				abort();
			pflags = get32(o + ooff + 5 + 8);
		} else if (strchr("acdty", (char)o[ooff + 4]) == NULL)
			abort();
		ooff += 4 + (size_t)get32(o + ooff);
	}
	if (ooff != out->len)
		abort();	/* a reply nothing asked for */
}

/* Feeds p[0..n) (a buffer of exactly n bytes, for ASan) and checks what was
 * consumed. Returns the count. */
static size_t
feed(struct milter_conn *c, const unsigned char *p, size_t n)
{
	size_t used = milter_input(c, p, n);

	if (used > n)
		abort();
	buf_append(&fuzz_taken, (const char *)p, used);
	if (check_consumed(p, used) && !c->closing)
		abort();
	/* Not closing: what is left is an incomplete packet, and milter_need
	 * says it needs more than there is. */
	if (!c->closing && n - used >= 5 && milter_need(p + used, n - used) <= n - used)
		abort();
	return used;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	milter_setup(&fuzz_snap, NULL);
	buf_init(&fuzz_taken);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct milter_conn c;
	unsigned char *first, *second;
	size_t split, used, rest, outlen;

	if (size < 1)
		return 0;
	/* The cut: anywhere from 0 to the whole stream, whatever its length. */
	split = (size - 1) * data[0] / 255;
	data++;
	size--;

	milter_conn_init(&c);
	buf_reset(&fuzz_taken);
	/* Separate allocations of the exact size: a read past either end is
	 * caught, as it would be past the end of what the server read. */
	if ((first = malloc(split ? split : 1)) == NULL)
		goto out;
	memcpy(first, data, split);
	used = feed(&c, first, split);

	rest = split - used + (size - split);
	if ((second = malloc(rest ? rest : 1)) == NULL) {
		free(first);
		goto out;
	}
	memcpy(second, first + used, split - used);
	memcpy(second + (split - used), data + split, size - split);
	free(first);
	if (c.closing) {
		/* Closing: nothing more is taken, nothing more said. */
		outlen = c.out.len;
		if (milter_input(&c, second, rest) != 0 || c.out.len != outlen)
			abort();
	} else
		(void)feed(&c, second, rest);
	free(second);

	check_output(&c.out);
	check_replies(&fuzz_taken, &c.out, c.closing);
out:
	milter_conn_free(&c);
	/* Every message begun was ended with its session. */
	if (fuzz_in_flight != 0)
		abort();
	return 0;
}
