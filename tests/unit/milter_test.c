/* milter_test.c — the milter protocol (milter.c) driven packet by packet
 * against the real session code: negotiation, CONNECT families, HELO, macros,
 * MAIL, the steps the MTA does not wait for (and a refusal owed to RCPT),
 * framing across reads, and what closes the connection. RCPT and end of message need the database: the
 * integration tests cover them through miltertest and Postfix. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"

#include "config.h"
#include "milter.h"
#include "session.h"
#include "stats.h"

/* What milter.c asks for, as the protocol spells it. */
#define WANT_ACTIONS	(SMFIF_ADDHDRS | SMFIF_CHGHDRS)
#define WANT_PFLAGS	(SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_HDR_LEADSPC | \
			 SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_HDR | \
			 SMFIP_NR_EOH | SMFIP_NR_BODY)

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t
get32(const void *v)
{
	const unsigned char *p = v;

	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Appends one packet: length, command, data. */
static void
pkt(struct buf *b, char cmd, const void *data, size_t len)
{
	unsigned char hdr[5];

	put32(hdr, (uint32_t)len + 1);
	hdr[4] = (unsigned char)cmd;
	buf_append(b, (const char *)hdr, 5);
	if (len > 0)
		buf_append(b, data, len);
}

/* The same with string data: s holds its own NULs, n counts them. */
#define PKT(b, cmd, s)	pkt((b), (cmd), (s), sizeof(s) - 1)

static void
optneg(struct buf *b, uint32_t version, uint32_t actions, uint32_t pflags)
{
	unsigned char d[12];

	put32(d, version);
	put32(d + 4, actions);
	put32(d + 8, pflags);
	pkt(b, 'O', d, sizeof(d));
}

/* Feeds all of in at once; returns the bytes consumed. */
static size_t
feed(struct milter_conn *c, const struct buf *in)
{
	return milter_input(c, (const unsigned char *)in->s, in->len);
}

/* The reply commands in c->out, as a string ("Occ"); "?" if malformed. */
static const char *
replies(const struct milter_conn *c)
{
	static char cmds[256];
	const unsigned char *p = (const unsigned char *)c->out.s;
	size_t off = 0, n = 0;
	uint32_t len;

	while (off < c->out.len && n < sizeof(cmds) - 1) {
		if (c->out.len - off < 5 || (len = get32(p + off)) < 1 ||
		    len > c->out.len - off - 4)
			return "?";
		cmds[n++] = (char)p[off + 4];
		off += 4 + len;
	}
	cmds[n] = '\0';
	return cmds;
}

/* A fresh connection with the given flags negotiated, its replies cleared. */
static void
conn_open(struct milter_conn *c, uint32_t pflags)
{
	struct buf in;

	milter_conn_init(c);
	buf_init(&in);
	optneg(&in, 6, 0x1ff, pflags);
	feed(c, &in);
	buf_reset(&c->out);
	buf_free(&in);
}

/* CONNECT from host with family fam and address addr (NULL: none). */
static void
connect_pkt(struct buf *b, const char *host, char fam, const char *addr)
{
	struct buf d;

	buf_init(&d);
	buf_append(&d, host, strlen(host) + 1);
	buf_putc(&d, fam);
	if (addr != NULL) {
		buf_append(&d, "\0\x19", 2);	/* port 25 */
		buf_append(&d, addr, strlen(addr) + 1);
	}
	pkt(b, 'C', d.s, d.len);
	buf_free(&d);
}

static void
test_optneg(void)
{
	struct milter_conn c;
	struct buf in;
	const unsigned char *d;

	milter_conn_init(&c);
	buf_init(&in);
	optneg(&in, 6, 0x1ff, 0x1fffff);
	CHECK(feed(&c, &in) == in.len && !c.closing, "option negotiation consumed");
	CHECK_STR(replies(&c), "O", "option negotiation answered with O");
	d = (const unsigned char *)c.out.s + 5;
	CHECK(c.out.len == 17 && get32(c.out.s) == 13, "O reply carries 12 bytes");
	CHECK(get32(d) == 6, "version 6 against an MTA at 6");
	CHECK(get32(d + 4) == WANT_ACTIONS && c.actions == WANT_ACTIONS,
	    "actions masked to add/change headers (0x%x)", get32(d + 4));
	CHECK(get32(d + 8) == WANT_PFLAGS && c.pflags == WANT_PFLAGS,
	    "protocol flags masked to what milterd asks (0x%x)", get32(d + 8));
	milter_conn_free(&c);

	/* An older MTA offering less: its version, only what it offers. */
	milter_conn_init(&c);
	buf_reset(&in);
	optneg(&in, 2, SMFIF_ADDHDRS, SMFIP_NR_HDR | 0x1);
	feed(&c, &in);
	d = (const unsigned char *)c.out.s + 5;
	CHECK(c.out.len == 17 && get32(d) == 2 && get32(d + 4) == SMFIF_ADDHDRS &&
	    get32(d + 8) == SMFIP_NR_HDR, "version 2 MTA: its version, the intersection");
	milter_conn_free(&c);

	milter_conn_init(&c);
	buf_reset(&in);
	optneg(&in, 1, 0x1ff, 0x1fffff);
	feed(&c, &in);
	CHECK(c.closing && c.out.len == 0, "version 1 closes without a reply");
	milter_conn_free(&c);

	milter_conn_init(&c);
	buf_reset(&in);
	PKT(&in, 'O', "\0\0\0\6\0\0\0\0");
	feed(&c, &in);
	CHECK(c.closing && c.out.len == 0, "short option negotiation closes");
	milter_conn_free(&c);
	buf_free(&in);
}

static void
test_connect(void)
{
	static const struct {
		char		 fam;
		const char	*addr;
		const char	*want;
	} cases[] = {
		{ '4', "192.0.2.1", "192.0.2.1" },
		{ '6', "IPv6:2001:db8::1", "2001:db8::1" },
		{ '6', "2001:DB8::2", "2001:db8::2" },
		{ 'L', "/run/postfix/smtpd", "local" },
		{ 'U', NULL, "unknown" },
		{ '4', "not-an-address", "unknown" },
	};
	struct milter_conn c;
	struct buf in;

	buf_init(&in);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		conn_open(&c, WANT_PFLAGS);
		buf_reset(&in);
		connect_pkt(&in, "mx.example.net", cases[i].fam, cases[i].addr);
		CHECK(feed(&c, &in) == in.len && !c.closing && c.s != NULL,
		    "CONNECT '%c' %s consumed, session made", cases[i].fam,
		    cases[i].addr ? cases[i].addr : "-");
		CHECK_STR(replies(&c), "", "CONNECT '%c': no reply awaited, none given",
		    cases[i].fam);
		CHECK_STR(c.s ? c.s->client_addr : NULL, cases[i].want,
		    "CONNECT '%c' %s: client address", cases[i].fam,
		    cases[i].addr ? cases[i].addr : "-");
		CHECK_STR(c.s ? c.s->client_host : NULL, "mx.example.net", "CONNECT host name");
		milter_conn_free(&c);
	}

	conn_open(&c, WANT_PFLAGS);
	buf_reset(&in);
	PKT(&in, 'C', "no terminating NUL");
	feed(&c, &in);
	CHECK(c.closing && c.out.len == 0, "CONNECT without a host string closes");
	milter_conn_free(&c);
	buf_free(&in);
}

/* HELO, macros, MAIL, DATA: what reaches the session, and the replies to an
 * MTA that offers no no-reply flags (one before Sendmail 8.14 or Postfix 2.6). */
static void
test_envelope(void)
{
	struct milter_conn c;
	struct buf in;

	buf_init(&in);
	conn_open(&c, 0);
	connect_pkt(&in, "mx.example.net", '4', "192.0.2.1");
	PKT(&in, 'H', "mx.example.net\0");
	PKT(&in, 'D', "Mi\0QID1\0");
	PKT(&in, 'M', "<a@b>\0");
	CHECK(feed(&c, &in) == in.len && !c.closing, "CONNECT, HELO, macros, MAIL consumed");
	CHECK_STR(replies(&c), "ccc", "a continue each, none for macros");
	CHECK_STR(c.s->helo, "mx.example.net", "HELO kept by the session");
	CHECK_STR(c.s->msg.qid, "QID1", "macro {i} is the message's queue id at MAIL");
	CHECK_STR(c.s->msg.mail_from, "<a@b>", "MAIL FROM kept by the session");
	CHECK(c.s->in_message && stats_in_flight() == 1, "MAIL begins a message");

	/* No token among the recipients: not our business, accepted at DATA. */
	buf_reset(&in);
	buf_reset(&c.out);
	pkt(&in, 'T', NULL, 0);
	feed(&c, &in);
	CHECK_STR(replies(&c), "a", "DATA without a token accepted");
	CHECK(!c.s->in_message && stats_in_flight() == 0, "DATA accepted ends the message");

	/* The next message: new macros ("{i}" spelling), its own queue id. */
	buf_reset(&in);
	buf_reset(&c.out);
	PKT(&in, 'D', "M{i}\0QID2\0{mail_addr}\0c@d\0");
	PKT(&in, 'M', "<c@d>\0SIZE=100\0");
	PKT(&in, 'U', "XYZZY\0");
	pkt(&in, 'A', NULL, 0);
	feed(&c, &in);
	CHECK_STR(replies(&c), "cc", "MAIL and an unknown SMTP command continue, abort is silent");
	CHECK(c.qid[0] == '\0' && c.s->msg.qid[0] == '\0' && c.s->msg.mail_from[0] == '\0' &&
	    stats_in_flight() == 0, "abort forgets the message and its queue id");
	milter_conn_free(&c);
	buf_free(&in);
}

/* An MTA that took SMFIP_NODATA sends no DATA: a message without a
 * verification recipient passes through to its end, unread, and is accepted
 * there, unchanged. */
static void
test_nodata(void)
{
	struct milter_conn c;
	struct buf in;

	buf_init(&in);
	conn_open(&c, WANT_PFLAGS);
	CHECK(c.pflags & SMFIP_NODATA, "no DATA command asked for");
	connect_pkt(&in, "mx.example.net", '4', "192.0.2.1");
	PKT(&in, 'H', "mx.example.net\0");
	PKT(&in, 'D', "M{i}\0QID3\0");
	PKT(&in, 'M', "<a@b>\0");
	PKT(&in, 'R', "<someone@certify.test>\0");
	feed(&c, &in);
	CHECK_STR(replies(&c), "c", "only RCPT answered: continue");
	CHECK(c.s->in_message && stats_in_flight() == 1, "the message is under way");
	buf_reset(&in);
	buf_reset(&c.out);
	PKT(&in, 'L', "From\0 Alice <alice@agri.gouv.fr>\0");
	PKT(&in, 'L', "Subject\0 Re: verify+abcdefghijklmnopqrstuvwxy4@certify.test\0");
	pkt(&in, 'N', NULL, 0);
	PKT(&in, 'B', "verify+abcdefghijklmnopqrstuvwxy4@certify.test\r\n");
	feed(&c, &in);
	CHECK_STR(replies(&c), "", "headers, EOH and body: no reply");
	CHECK(c.s->msg.from.value == NULL && c.s->msg.subject.value == NULL &&
	    c.s->msg.dkim == NULL && !c.s->msg.body_has_token,
	    "a token in its content is not looked at: the envelope decides");
	buf_reset(&in);
	pkt(&in, 'E', NULL, 0);
	feed(&c, &in);
	CHECK_STR(replies(&c), "a", "accepted at its end, no header changed");
	CHECK(!c.s->in_message && stats_in_flight() == 0, "end of message ends it");
	milter_conn_free(&c);
	buf_free(&in);
}

/* CONNECT, HELO, MAIL, headers, EOH and body: a reply only where the MTA
 * waits for one. */
static void
test_noreply(void)
{
	static const struct {
		uint32_t	 pflags;
		const char	*want;
	} cases[] = {
		{ WANT_PFLAGS, "" },
		{ 0, "cccccccc" },
		{ SMFIP_NR_HDR, "cccccc" },
		{ SMFIP_NR_EOH | SMFIP_NR_BODY, "ccccc" },
		{ SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL, "ccccc" },
		{ SMFIP_NR_MAIL, "ccccccc" },
	};
	struct milter_conn c;
	struct buf in;

	buf_init(&in);
	connect_pkt(&in, "mx.example.net", '4', "192.0.2.1");
	PKT(&in, 'H', "mx.example.net\0");
	PKT(&in, 'M', "<a@b>\0");
	PKT(&in, 'L', "From\0 Alice <a@b>\0");
	PKT(&in, 'L', "Subject\0 test\0");
	pkt(&in, 'N', NULL, 0);
	PKT(&in, 'B', "Hello\r\n");
	PKT(&in, 'B', "world\r\n");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		conn_open(&c, cases[i].pflags);
		CHECK(c.pflags == (cases[i].pflags & WANT_PFLAGS), "flags 0x%x negotiated",
		    (unsigned)cases[i].pflags);
		CHECK(feed(&c, &in) == in.len && !c.closing,
		    "CONNECT, HELO, MAIL, headers, EOH, body consumed");
		CHECK_STR(replies(&c), cases[i].want, "replies with protocol flags 0x%x",
		    (unsigned)cases[i].pflags);
		milter_conn_free(&c);
	}
	buf_free(&in);
}

/* One byte per read gives what the whole stream at once gives. */
static void
test_split(void)
{
	struct milter_conn whole, bytes;
	struct buf in;
	unsigned char pending[256];
	size_t npending = 0, used, total = 0;
	int ok = 1;

	buf_init(&in);
	optneg(&in, 6, 0x1ff, 0);
	connect_pkt(&in, "mx.example.net", '6', "IPv6:2001:db8::1");
	PKT(&in, 'H', "helo.example\0");
	PKT(&in, 'D', "Mi\0QID9\0");
	PKT(&in, 'M', "<a@b>\0");
	PKT(&in, 'L', "Subject\0 x\0");
	pkt(&in, 'N', NULL, 0);
	PKT(&in, 'B', "body\r\n");
	pkt(&in, 'A', NULL, 0);
	PKT(&in, 'M', "<e@f>\0");
	pkt(&in, 'Q', NULL, 0);

	milter_conn_init(&whole);
	CHECK(feed(&whole, &in) == in.len && whole.closing, "whole stream consumed, QUIT last");

	/* As server.c does: append what was read, drop what was consumed. */
	milter_conn_init(&bytes);
	for (size_t i = 0; i < in.len && !bytes.closing; i++) {
		if (npending == sizeof(pending)) {
			ok = 0;
			break;
		}
		pending[npending++] = (unsigned char)in.s[i];
		used = milter_input(&bytes, pending, npending);
		if (used > npending || (used > 0 && used != npending)) {
			ok = 0;		/* a packet ends where its last byte arrives */
			break;
		}
		if (used == 0 && !bytes.closing && milter_need(pending, npending) <= npending &&
		    npending >= 5)
			ok = 0;		/* incomplete, yet said to need no more */
		memmove(pending, pending + used, npending - used);
		npending -= used;
		total += used;
	}
	CHECK(ok && total == in.len && npending == 0 && bytes.closing,
	    "byte by byte: every packet consumed when complete");
	CHECK(bytes.out.len == whole.out.len &&
	    memcmp(bytes.out.s, whole.out.s, whole.out.len) == 0,
	    "byte by byte: the same replies (%s)", replies(&whole));
	CHECK_STR(replies(&whole), "Occccccc", "a continue for each step but the abort");
	CHECK(whole.s != NULL && bytes.s != NULL &&
	    strcmp(whole.s->client_addr, bytes.s->client_addr) == 0 &&
	    strcmp(whole.s->helo, bytes.s->helo) == 0 &&
	    strcmp(whole.s->msg.mail_from, "<e@f>") == 0 &&
	    strcmp(bytes.s->msg.mail_from, "<e@f>") == 0,
	    "byte by byte: the same session state");
	milter_conn_free(&whole);
	milter_conn_free(&bytes);
	CHECK(stats_in_flight() == 0, "freeing a connection ends its message");

	/* Two packets and part of a third: the two are taken. */
	buf_reset(&in);
	optneg(&in, 6, 0x1ff, 0);
	PKT(&in, 'H', "helo\0");
	used = in.len;
	PKT(&in, 'H', "partial\0");
	milter_conn_init(&whole);
	CHECK(milter_input(&whole, (const unsigned char *)in.s, in.len - 3) == used &&
	    !whole.closing, "a partial packet is left for the next read");
	CHECK(milter_need((const unsigned char *)in.s + used, in.len - 3 - used) ==
	    in.len - used, "milter_need: the partial packet's full size");
	CHECK(milter_need((const unsigned char *)in.s, 2) == 3, "milter_need: length unknown");
	milter_conn_free(&whole);
	buf_free(&in);
}

/* What ends the connection, and what does not. */
static void
test_close(void)
{
	struct milter_conn c;
	struct buf in;
	unsigned char big[5];
	size_t used;

	buf_init(&in);
	milter_conn_init(&c);
	buf_append(&in, "\0\0\0\0Q", 5);
	CHECK(feed(&c, &in) == 0 && c.closing && c.out.len == 0,
	    "zero-length packet closes");
	milter_conn_free(&c);

	milter_conn_init(&c);
	put32(big, MILTER_MAX_PACKET + 1);
	big[4] = 'B';
	CHECK(milter_input(&c, big, 5) == 0 && c.closing, "packet over MILTER_MAX_PACKET closes");
	milter_conn_free(&c);

	milter_conn_init(&c);
	put32(big, MILTER_MAX_PACKET);
	CHECK(milter_input(&c, big, 5) == 0 && !c.closing &&
	    milter_need(big, 5) == 4 + (size_t)MILTER_MAX_PACKET,
	    "packet of MILTER_MAX_PACKET waits for its bytes");
	milter_conn_free(&c);

	milter_conn_init(&c);
	buf_reset(&in);
	pkt(&in, 'Z', NULL, 0);
	PKT(&in, 'H', "after\0");
	CHECK(feed(&c, &in) == 5 && c.closing && c.out.len == 0,
	    "unknown command closes, nothing after it handled");
	milter_conn_free(&c);

	conn_open(&c, 0);
	buf_reset(&in);
	connect_pkt(&in, "mx.example.net", '4', "192.0.2.1");
	used = in.len;
	pkt(&in, 'Q', NULL, 0);
	PKT(&in, 'H', "after\0");
	CHECK(feed(&c, &in) == used + 5 && c.closing, "QUIT closes, nothing after it handled");
	CHECK_STR(replies(&c), "c", "QUIT has no reply");
	milter_conn_free(&c);

	/* QUIT_NC: a new SMTP session on the same milter connection. */
	conn_open(&c, 0);
	buf_reset(&in);
	connect_pkt(&in, "mx.example.net", '4', "192.0.2.1");
	PKT(&in, 'M', "<a@b>\0");
	pkt(&in, 'K', NULL, 0);
	CHECK(feed(&c, &in) == in.len && !c.closing && c.s == NULL &&
	    stats_in_flight() == 0, "QUIT_NC ends the session, not the connection");
	buf_reset(&in);
	buf_reset(&c.out);
	connect_pkt(&in, "other.example.net", '4', "198.51.100.7");
	feed(&c, &in);
	CHECK(c.s != NULL && strcmp(c.s->client_addr, "198.51.100.7") == 0 &&
	    c.pflags == 0, "after QUIT_NC a new session, negotiation kept");
	milter_conn_free(&c);
	buf_free(&in);
}

/* A reload: open connections keep their configuration, new ones take the new. */
static void
test_swap(struct snapshot *old, struct snapshot *fresh)
{
	struct milter_conn a, b;
	struct buf in;

	buf_init(&in);
	connect_pkt(&in, "mx.example.net", '4', "192.0.2.1");
	milter_conn_init(&a);
	feed(&a, &in);
	snapshot_ref(fresh);
	milter_swap(fresh);
	milter_conn_init(&b);
	feed(&b, &in);
	CHECK(a.s != NULL && a.s->snap == old, "an open connection keeps its configuration");
	CHECK(b.s != NULL && b.s->snap == fresh, "a new connection takes the new one");
	milter_conn_free(&a);
	milter_conn_free(&b);
	buf_free(&in);
}

/* Stopping (SIGTERM): a new transaction is told to come back later. Last,
 * since it cannot be undone. */
static void
test_draining(void)
{
	struct milter_conn c;
	struct buf in;
	const char *d;

	buf_init(&in);
	conn_open(&c, 0);
	connect_pkt(&in, "mx.example.net", '4', "192.0.2.1");
	PKT(&in, 'M', "<a@b>\0");
	milter_stopping();
	feed(&c, &in);
	CHECK_STR(replies(&c), "cy", "MAIL while stopping gets a reply code");
	d = c.out.s + 5 + 5;
	CHECK(c.out.len > 10 && strncmp(d, "421 4.3.2 ", 10) == 0 &&
	    d + strlen(d) + 1 == c.out.s + c.out.len, "421 4.3.2, NUL-terminated (%s)", d);
	CHECK(c.s->msg.mail_from[0] == '\0' && stats_in_flight() == 0,
	    "no message begun while stopping");
	milter_conn_free(&c);

	/* An MTA that does not wait for a reply to MAIL hears it at RCPT, at
	 * every RCPT of the session (the database is not asked). */
	buf_reset(&in);
	conn_open(&c, SMFIP_NR_CONN | SMFIP_NR_MAIL);
	connect_pkt(&in, "mx.example.net", '4', "192.0.2.1");
	PKT(&in, 'M', "<a@b>\0");
	feed(&c, &in);
	CHECK_STR(replies(&c), "", "MAIL while stopping, no reply awaited: none given");
	buf_reset(&in);
	PKT(&in, 'R', "<verify+abcdefghijklmnopqrstuvwxy4@certify.test>\0");
	PKT(&in, 'R', "<someone@certify.test>\0");
	feed(&c, &in);
	CHECK_STR(replies(&c), "yy", "each RCPT after it gets the reply code");
	d = c.out.s + 5;
	CHECK(c.out.len > 10 && strncmp(d, "421 4.3.2 ", 10) == 0, "421 4.3.2 at RCPT (%s)", d);
	CHECK(c.s->msg.mail_from[0] == '\0' && stats_in_flight() == 0,
	    "no message begun while stopping, no reply to MAIL awaited");
	milter_conn_free(&c);
	buf_free(&in);
}

/* A configuration for the sessions, from the checkout's policy and
 * templates (TOP from tests/run, else the current directory). */
static struct snapshot *
load_config(const char *authserv_id)
{
	const char *top = getenv("TOP") ? getenv("TOP") : ".";
	const char *dir = getenv("WORK") ? getenv("WORK") : "/tmp";
	char path[4096];
	struct snapshot *cfg;
	struct buf err;
	FILE *fp;
	int fd;

	snprintf(path, sizeof(path), "%s/milter_test.XXXXXX", dir);
	if ((fd = mkstemp(path)) == -1 || (fp = fdopen(fd, "w")) == NULL) {
		perror(path);
		return NULL;
	}
	fprintf(fp, "policy = %s/policies/gouv-fr.conf\ntemplates = %s/templates\n"
	    "verify_address = verify@certify.test\nauthserv_id = %s\n", top, top, authserv_id);
	fclose(fp);
	buf_init(&err);
	cfg = snapshot_load(path, &err);
	if (cfg == NULL)
		fprintf(stderr, "%s", err.s);
	buf_free(&err);
	unlink(path);
	return cfg;
}

int
main(void)
{
	struct snapshot *cfg, *cfg2;

	cfg = load_config("mx.certify.test");
	cfg2 = load_config("mx2.certify.test");
	CHECK(cfg != NULL && cfg2 != NULL, "test configuration loads");
	if (cfg == NULL || cfg2 == NULL)
		return 1;
	milter_setup(cfg, NULL);
	test_optneg();
	test_connect();
	test_envelope();
	test_nodata();
	test_noreply();
	test_split();
	test_close();
	test_swap(cfg, cfg2);
	test_draining();
	milter_shutdown();
	snapshot_unref(cfg);
	snapshot_unref(cfg2);
	return CHECK_DONE();
}
