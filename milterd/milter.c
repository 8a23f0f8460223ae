/* milter.c — the milter protocol: unpack each command, dispatch it to the
 * session, pack the replies. A packet is a 4-byte length (network order, the
 * command byte included), a command byte and its data. */
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "milter.h"
#include "session.h"
#include "stats.h"

/* Commands (MTA to filter) and replies (filter to MTA). */
#define SMFIC_ABORT	'A'
#define SMFIC_BODY	'B'
#define SMFIC_CONNECT	'C'
#define SMFIC_MACRO	'D'
#define SMFIC_BODYEOB	'E'
#define SMFIC_HELO	'H'
#define SMFIC_QUIT_NC	'K'
#define SMFIC_HEADER	'L'
#define SMFIC_MAIL	'M'
#define SMFIC_EOH	'N'
#define SMFIC_OPTNEG	'O'
#define SMFIC_QUIT	'Q'
#define SMFIC_RCPT	'R'
#define SMFIC_DATA	'T'
#define SMFIC_UNKNOWN	'U'

#define SMFIR_ACCEPT	'a'
#define SMFIR_CONTINUE	'c'
#define SMFIR_DISCARD	'd'
#define SMFIR_INSHEADER	'i'
#define SMFIR_CHGHEADER	'm'
#define SMFIR_TEMPFAIL	't'
#define SMFIR_REPLYCODE	'y'
#define SMFIC_OPTNEG_R	'O'

/* What milterd asks for: add and change headers (Authentication-Results);
 * no unknown commands, header values as sent, and no waiting for a reply to
 * CONNECT, HELO, MAIL, each header or body chunk (fewer round trips): milterd
 * only ever says "continue" there, or refuses what it would refuse at RCPT.
 * No DATA command either: a message without a verification recipient, which
 * would be accepted there, is accepted at its end instead (its data passes
 * through unread), and a verification reply saves a round trip. */
#define MILTER_ACTIONS	(SMFIF_ADDHDRS | SMFIF_CHGHDRS)
#define MILTER_PFLAGS	(SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_HDR_LEADSPC | \
			 SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_HDR | \
			 SMFIP_NR_EOH | SMFIP_NR_BODY)

static struct store	*milter_store;
/* The snapshot new connections take: written by the signal thread on reload
 * (milter_swap), read by the workers, both under the lock. */
static struct snapshot	*milter_snap;
static pthread_mutex_t	 milter_snap_lock = PTHREAD_MUTEX_INITIALIZER;
static int		 milter_draining;

void
milter_setup(struct snapshot *snap, struct store *st)
{
	snapshot_ref(snap);
	milter_snap = snap;
	milter_store = st;
}

void
milter_shutdown(void)
{
	snapshot_unref(milter_snap);
	milter_snap = NULL;
}

void
milter_stopping(void)
{
	__atomic_store_n(&milter_draining, 1, __ATOMIC_RELEASE);
}

struct snapshot *
milter_snapshot(void)
{
	struct snapshot *snap;

	pthread_mutex_lock(&milter_snap_lock);
	snap = milter_snap;
	snapshot_ref(snap);
	pthread_mutex_unlock(&milter_snap_lock);
	return snap;
}

void
milter_swap(struct snapshot *snap)
{
	struct snapshot *old;

	pthread_mutex_lock(&milter_snap_lock);
	old = milter_snap;
	milter_snap = snap;
	pthread_mutex_unlock(&milter_snap_lock);
	snapshot_unref(old);
}

void
milter_conn_init(struct milter_conn *c)
{
	memset(c, 0, sizeof(*c));
	buf_init(&c->out);
}

void
milter_conn_free(struct milter_conn *c)
{
	session_free(c->s);
	c->s = NULL;
	buf_free(&c->out);
}

/* ------------------------------------------------------------- replies */

static void
milter_put32(unsigned char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t
milter_get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return ntohl(v);
}

/* Appends one reply packet; out of memory closes the connection (the MTA
 * then applies its milter default action, a temporary failure here). */
static void
milter_send(struct milter_conn *c, char cmd, const void *data, size_t len)
{
	unsigned char hdr[5];

	milter_put32(hdr, (uint32_t)len + 1);
	hdr[4] = (unsigned char)cmd;
	if (buf_append(&c->out, (const char *)hdr, 5) == -1 ||
	    (len > 0 && buf_append(&c->out, data, len) == -1)) {
		log_err("out of memory for a milter reply");
		c->closing = 1;
	}
}

/* A modification at end of message: [index,] name, value (empty: delete). */
static void
milter_send_header(struct milter_conn *c, char cmd, uint32_t index, const char *name,
    const char *value)
{
	size_t nl = strlen(name) + 1, vl = strlen(value) + 1;
	unsigned char *p = malloc(4 + nl + vl);

	if (p == NULL) {
		log_err("out of memory for a milter reply");
		c->closing = 1;
		return;
	}
	milter_put32(p, index);
	memcpy(p + 4, name, nl);
	memcpy(p + 4 + nl, value, vl);
	milter_send(c, cmd, p, 4 + nl + vl);
	free(p);
}

/* An SMTP reply for the MTA to give: "550 5.7.1 text". */
static void
milter_send_verdict(struct milter_conn *c, const struct verdict *v)
{
	struct buf b;

	buf_init(&b);
	if (buf_printf(&b, "%s %s %s", v->rcode, v->xcode, v->text) == -1) {
		milter_send(c, SMFIR_TEMPFAIL, NULL, 0);
	} else {
		/* One line: a line break would end the SMTP reply early. */
		for (char *p = b.s; *p; p++)
			if (*p == '\r' || *p == '\n')
				*p = ' ';
		milter_send(c, SMFIR_REPLYCODE, b.s, b.len + 1);
	}
	buf_free(&b);
}

static const struct verdict milter_busy = { .action = VA_REPLY, .rcode = "421",
	.xcode = "4.3.2", .text = "milterd is restarting, try again later" };

static void
milter_send_refusal(struct milter_conn *c, char reply)
{
	if (reply == SMFIR_REPLYCODE) {
		log_msg(LOG_INFO, c->qid[0] ? c->qid : NULL, "stopping: a new transaction is"
		    " told %s %s %s", milter_busy.rcode, milter_busy.xcode, milter_busy.text);
		milter_send_verdict(c, &milter_busy);
	} else
		milter_send(c, reply, NULL, 0);
}

/* "Continue", or nothing at all where the MTA agreed not to wait for it. */
static void
milter_go_on(struct milter_conn *c, uint32_t step)
{
	if (!(c->pflags & step))
		milter_send(c, SMFIR_CONTINUE, NULL, 0);
}

/* A refusal (SMFIR_TEMPFAIL, or SMFIR_REPLYCODE for the 421 of a stopping
 * milterd) at a step: given now if the MTA waits for a reply to it, else owed
 * to the steps it waits on. */
static void
milter_refuse(struct milter_conn *c, uint32_t noreply, char reply)
{
	if (c->pflags & noreply) {
		if (c->owed == 0)
			c->owed = reply;
	} else
		milter_send_refusal(c, reply);
}

/* At a step the MTA waits on: 1 if a refusal was owed and is now given. */
static int
milter_pay(struct milter_conn *c)
{
	if (c->owed == 0)
		return 0;
	milter_send_refusal(c, c->owed);
	return 1;
}

/* ------------------------------------------------------------ unpacking */

/* The n-th NUL-terminated string of d[0..len), or NULL. */
static const char *
milter_string(const unsigned char *d, size_t len, int n)
{
	size_t off = 0;
	const unsigned char *z;

	for (;;) {
		if (off >= len || (z = memchr(d + off, '\0', len - off)) == NULL)
			return NULL;
		if (n-- == 0)
			return (const char *)d + off;
		off = (size_t)(z - d) + 1;
	}
}

/* What the negotiation means for the session: header values as sent, and
 * the steps the MTA does not wait for. */
static void
milter_session_flags(struct milter_conn *c)
{
	if (c->s != NULL) {
		c->s->leadspc = (c->pflags & SMFIP_HDR_LEADSPC) != 0;
		c->s->noreply = c->pflags & (SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY);
	}
}

/* The session of the connection, created on first use: an MTA may skip
 * steps. NULL when memory ran out. */
static struct session *
milter_session(struct milter_conn *c)
{
	struct snapshot *snap;

	if (c->s != NULL)
		return c->s;
	snap = milter_snapshot();
	c->s = session_new(snap);
	snapshot_unref(snap);
	milter_session_flags(c);
	return c->s;
}

static void
milter_qid(struct milter_conn *c, struct session *s)
{
	/* Both are the same size: a queue id fits. */
	if (s->msg.qid[0] == '\0' && c->qid[0] != '\0')
		(void)str_copy(s->msg.qid, c->qid, sizeof(s->msg.qid));
}

static void
milter_optneg(struct milter_conn *c, const unsigned char *d, size_t len)
{
	uint32_t version, w[3];

	if (len < 12 || (version = milter_get32(d)) < 2) {
		log_err("milter: bad option negotiation from the MTA");
		c->closing = 1;
		return;
	}
	c->actions = milter_get32(d + 4) & MILTER_ACTIONS;
	c->pflags = milter_get32(d + 8) & MILTER_PFLAGS;
	milter_session_flags(c);
	if (version > MILTER_VERSION)
		version = MILTER_VERSION;
	log_msg(LOG_DEBUG, NULL, "milter: protocol version %lu, actions 0x%lx, steps 0x%lx"
	    " (offered 0x%lx, 0x%lx)", (unsigned long)version, (unsigned long)c->actions,
	    (unsigned long)c->pflags, (unsigned long)milter_get32(d + 4),
	    (unsigned long)milter_get32(d + 8));
	milter_put32((unsigned char *)&w[0], version);
	milter_put32((unsigned char *)&w[1], c->actions);
	milter_put32((unsigned char *)&w[2], c->pflags);
	milter_send(c, SMFIC_OPTNEG_R, w, sizeof(w));
}

/* Macros for a step: the step's command, then name/value pairs. Only the
 * queue id is used ({i}, for the logs). */
static void
milter_macros(struct milter_conn *c, const unsigned char *d, size_t len)
{
	const char *name, *value;

	if (len < 1)
		return;
	if (d[0] == SMFIC_MAIL)
		c->qid[0] = '\0';
	for (int i = 0; (name = milter_string(d + 1, len - 1, i)) != NULL; i += 2) {
		if ((value = milter_string(d + 1, len - 1, i + 1)) == NULL)
			break;
		/* A queue id too long to keep is dropped, never cut. */
		if ((strcmp(name, "i") == 0 || strcmp(name, "{i}") == 0) &&
		    str_copy(c->qid, value, sizeof(c->qid)) == -1)
			c->qid[0] = '\0';
	}
}

/* CONNECT: host name, family ('4', '6', 'L' local, 'U' unknown), port,
 * address. */
static void
milter_connect(struct milter_conn *c, const unsigned char *d, size_t len)
{
	const char *host = milter_string(d, len, 0), *addr;
	struct sockaddr_in6 a6;
	struct sockaddr_in a4;
	struct sockaddr_un un;
	const struct sockaddr *sa = NULL;
	struct session *s;
	size_t off;

	if (host == NULL) {
		log_err("milter: malformed CONNECT from the MTA");
		c->closing = 1;
		return;
	}
	if ((s = milter_session(c)) == NULL) {
		milter_refuse(c, SMFIP_NR_CONN, SMFIR_TEMPFAIL);
		return;
	}
	off = strlen(host) + 1;
	addr = off + 3 < len ? milter_string(d + off + 3, len - off - 3, 0) : NULL;
	memset(&a4, 0, sizeof(a4));
	memset(&a6, 0, sizeof(a6));
	memset(&un, 0, sizeof(un));
	if (off < len && addr != NULL) {
		switch (d[off]) {
		case '4':
			if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
				a4.sin_family = AF_INET;
				sa = (const struct sockaddr *)&a4;
			}
			break;
		case '6':
			if (strncasecmp(addr, "IPv6:", 5) == 0)
				addr += 5;
			if (inet_pton(AF_INET6, addr, &a6.sin6_addr) == 1) {
				a6.sin6_family = AF_INET6;
				sa = (const struct sockaddr *)&a6;
			}
			break;
		case 'L':
			un.sun_family = AF_UNIX;
			sa = (const struct sockaddr *)&un;
			break;
		}
	}
	stats_connection();
	session_set_client(s, host, sa);
	milter_go_on(c, SMFIP_NR_CONN);
}

static void
milter_helo(struct milter_conn *c, const unsigned char *d, size_t len)
{
	const char *helo = milter_string(d, len, 0);
	struct session *s = milter_session(c);

	if (s == NULL) {
		milter_refuse(c, SMFIP_NR_HELO, SMFIR_TEMPFAIL);
		return;
	}
	if (session_set_helo(s, helo ? helo : "") == -1)
		log_msg(LOG_INFO, NULL, "HELO name longer than a hostname: recorded as none");
	milter_go_on(c, SMFIP_NR_HELO);
}

static void
milter_mail(struct milter_conn *c, const unsigned char *d, size_t len)
{
	const char *from = milter_string(d, len, 0);
	struct session *s = milter_session(c);

	if (s == NULL) {
		milter_refuse(c, SMFIP_NR_MAIL, SMFIR_TEMPFAIL);
		return;
	}
	/* While draining, a new transaction is told to come back later (at its
	 * first RCPT when the MTA does not wait for a reply to MAIL). */
	if (__atomic_load_n(&milter_draining, __ATOMIC_ACQUIRE)) {
		milter_refuse(c, SMFIP_NR_MAIL, SMFIR_REPLYCODE);
		return;
	}
	session_msg_reset(s);
	session_msg_begin(s);
	milter_qid(c, s);
	if (session_set_mail_from(s, from ? from : "") == -1)
		log_msg(LOG_INFO, s->msg.qid, "MAIL FROM longer than an address: a verification"
		    " recipient will be refused");
	milter_go_on(c, SMFIP_NR_MAIL);
}

static void
milter_rcpt(struct milter_conn *c, const unsigned char *d, size_t len)
{
	const char *rcpt = milter_string(d, len, 0);
	struct session *s = milter_session(c);
	struct verdict v;

	if (milter_pay(c))
		return;
	if (s == NULL) {
		milter_send(c, SMFIR_TEMPFAIL, NULL, 0);
		return;
	}
	milter_qid(c, s);
	if (rcpt == NULL || session_rcpt(s, milter_store, rcpt, &v) == 0)
		milter_send(c, SMFIR_CONTINUE, NULL, 0);
	else
		milter_send_verdict(c, &v);
}

static void
milter_data(struct milter_conn *c)
{
	struct session *s = milter_session(c);

	if (milter_pay(c))
		return;
	if (s == NULL) {
		milter_send(c, SMFIR_TEMPFAIL, NULL, 0);
		return;
	}
	/* Mail for anyone else is none of our business. (An MTA that took
	 * SMFIP_NODATA sends no DATA: such mail is accepted at its end.) */
	if (s->msg.has_token) {
		milter_send(c, SMFIR_CONTINUE, NULL, 0);
		return;
	}
	session_msg_end(s);
	milter_send(c, SMFIR_ACCEPT, NULL, 0);
}

static void
milter_header(struct milter_conn *c, const unsigned char *d, size_t len)
{
	const char *name = milter_string(d, len, 0), *value = milter_string(d, len, 1);
	size_t vlen = 0;

	/* The value is the rest of the packet but its final NUL: bytes after an
	 * earlier NUL mean a NUL inside the value, which a client can send. */
	if (value != NULL)
		vlen = len - (size_t)((const unsigned char *)value - d) - 1;
	if (c->s != NULL && name != NULL)
		session_header(c->s, name, value ? value : "", vlen);
	milter_go_on(c, SMFIP_NR_HDR);
}

static void
milter_eoh(struct milter_conn *c)
{
	if (c->s != NULL)
		session_eoh(c->s);
	milter_go_on(c, SMFIP_NR_EOH);
}

static void
milter_body(struct milter_conn *c, const unsigned char *d, size_t len)
{
	if (c->s != NULL && len > 0)
		session_body(c->s, d, len);
	milter_go_on(c, SMFIP_NR_BODY);
}

/* End of message (its data, if any, is the last body chunk): the decision,
 * header changes first, then the verdict. */
static void
milter_eom(struct milter_conn *c, const unsigned char *d, size_t len)
{
	struct session *s = milter_session(c);
	struct session_eom out;

	if (milter_pay(c))
		return;
	if (s == NULL) {
		milter_send(c, SMFIR_TEMPFAIL, NULL, 0);
		return;
	}
	if (len > 0)
		session_body(s, d, len);
	milter_qid(c, s);
	session_eom(s, milter_store, &out);
	/* Headers claiming our authserv-id came from outside: remove them,
	 * last first so that indices stay valid. */
	for (int i = out.ndelete_ar - 1; i >= 0; i--) {
		if (c->actions & SMFIF_CHGHDRS)
			milter_send_header(c, SMFIR_CHGHEADER, (uint32_t)out.delete_ar[i],
			    "Authentication-Results", "");
		else
			log_msg(LOG_WARNING, s->msg.qid, "cannot remove a forged"
			    " Authentication-Results header: the MTA does not allow it");
	}
	if (out.authres.len > 0) {
		/* The value starts with a space: with SMFIP_HDR_LEADSPC the MTA
		 * adds none after the colon, otherwise it adds its own. */
		if (c->actions & SMFIF_ADDHDRS)
			milter_send_header(c, SMFIR_INSHEADER, 0, "Authentication-Results",
			    c->pflags & SMFIP_HDR_LEADSPC ? out.authres.s : out.authres.s + 1);
		else
			log_msg(LOG_WARNING, s->msg.qid, "cannot add Authentication-Results:"
			    " the MTA does not allow it");
	}
	switch (out.verdict.action) {
	case VA_REPLY:
		milter_send_verdict(c, &out.verdict);
		break;
	case VA_DISCARD:
		milter_send(c, SMFIR_DISCARD, NULL, 0);
		break;
	default:
		milter_send(c, SMFIR_ACCEPT, NULL, 0);
	}
	session_eom_free(&out);
	session_msg_reset(s);
	session_msg_end(s);
	c->qid[0] = '\0';
}

static void
milter_abort(struct milter_conn *c)
{
	if (c->s != NULL) {
		session_msg_reset(c->s);
		session_msg_end(c->s);
	}
	c->qid[0] = '\0';
}

/* One command. */
static void
milter_command(struct milter_conn *c, char cmd, const unsigned char *d, size_t len)
{
	switch (cmd) {
	case SMFIC_OPTNEG:	milter_optneg(c, d, len); break;
	case SMFIC_MACRO:	milter_macros(c, d, len); break;
	case SMFIC_CONNECT:	milter_connect(c, d, len); break;
	case SMFIC_HELO:	milter_helo(c, d, len); break;
	case SMFIC_MAIL:	milter_mail(c, d, len); break;
	case SMFIC_RCPT:	milter_rcpt(c, d, len); break;
	case SMFIC_DATA:	milter_data(c); break;
	case SMFIC_HEADER:	milter_header(c, d, len); break;
	case SMFIC_EOH:		milter_eoh(c); break;
	case SMFIC_BODY:	milter_body(c, d, len); break;
	case SMFIC_BODYEOB:	milter_eom(c, d, len); break;
	case SMFIC_ABORT:	milter_abort(c); break;
	case SMFIC_UNKNOWN:	milter_send(c, SMFIR_CONTINUE, NULL, 0); break;
	case SMFIC_QUIT_NC:	/* a new SMTP session on the same milter connection */
		session_free(c->s);
		c->s = NULL;
		c->qid[0] = '\0';
		c->owed = 0;
		break;
	case SMFIC_QUIT:
		c->closing = 1;
		break;
	default:
		log_err("milter: unknown command 0x%02x from the MTA, closing",
		    (unsigned)(unsigned char)cmd);
		c->closing = 1;
	}
}

size_t
milter_need(const unsigned char *p, size_t n)
{
	return n < 4 ? n + 1 : 4 + (size_t)milter_get32(p);
}

size_t
milter_input(struct milter_conn *c, const unsigned char *p, size_t n)
{
	size_t used = 0;
	uint32_t len;

	while (!c->closing && n - used >= 5) {
		len = milter_get32(p + used);
		if (len == 0 || len > MILTER_MAX_PACKET) {
			log_err("milter: bad packet length %lu from the MTA, closing",
			    (unsigned long)len);
			c->closing = 1;
			break;
		}
		if (n - used - 4 < len)
			break;
		milter_command(c, (char)p[used + 4], p + used + 5, len - 1);
		used += 4 + (size_t)len;
	}
	return used;
}
