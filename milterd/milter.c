/* milter.c — libmilter callbacks only: unpack arguments, keep the per-connection
 * context, turn session verdicts into milter replies. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libmilter/mfapi.h>

#include "log.h"
#include "milter.h"
#include "session.h"
#include "stats.h"

static struct store	*milter_store;
static struct config	*milter_cfg;
static pthread_mutex_t	 milter_cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static int		 milter_draining;

void
milter_stopping(void)
{
	__atomic_store_n(&milter_draining, 1, __ATOMIC_RELEASE);
}

/* While draining, a new transaction is told to come back later. */
static sfsistat
milter_busy(SMFICTX *ctx)
{
	smfi_setreply(ctx, "421", "4.3.2", "milterd is restarting, try again later");
	return SMFIS_TEMPFAIL;
}

struct config *
milter_config(void)
{
	struct config *cfg;

	pthread_mutex_lock(&milter_cfg_lock);
	cfg = milter_cfg;
	config_ref(cfg);
	pthread_mutex_unlock(&milter_cfg_lock);
	return cfg;
}

void
milter_swap_config(struct config *cfg)
{
	struct config *old;

	pthread_mutex_lock(&milter_cfg_lock);
	old = milter_cfg;
	milter_cfg = cfg;
	pthread_mutex_unlock(&milter_cfg_lock);
	config_unref(old);
}

/* The session of a connection, created on first use: an MTA may skip steps. */
static struct session *
milter_session(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);
	struct config *cfg;

	if (s != NULL)
		return s;
	cfg = milter_config();
	s = session_new(cfg);
	config_unref(cfg);
	if (s != NULL)
		smfi_setpriv(ctx, s);
	return s;
}

static void
milter_qid(SMFICTX *ctx, struct session *s)
{
	const char *qid;

	if (s->msg.qid[0] == '\0' && (qid = smfi_getsymval(ctx, "i")) != NULL)
		str_copy(s->msg.qid, qid, sizeof(s->msg.qid));
}

static sfsistat
milter_reply(SMFICTX *ctx, const struct verdict *v)
{
	if (smfi_setreply(ctx, (char *)(uintptr_t)v->rcode, (char *)(uintptr_t)v->xcode,
	    (char *)(uintptr_t)v->text) != MI_SUCCESS)
		log_warn("smfi_setreply failed for %s %s", v->rcode, v->text);
	return v->rcode[0] == '4' ? SMFIS_TEMPFAIL : SMFIS_REJECT;
}

static sfsistat
milter_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	struct session *s = milter_session(ctx);

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	stats_connection();
	session_set_client(s, host, sa);
	return SMFIS_CONTINUE;
}

static sfsistat
milter_helo(SMFICTX *ctx, char *helo)
{
	struct session *s = milter_session(ctx);

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	str_copy(s->helo, helo ? helo : "", sizeof(s->helo));
	return SMFIS_CONTINUE;
}

static sfsistat
milter_envfrom(SMFICTX *ctx, char **argv)
{
	struct session *s = milter_session(ctx);

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	if (__atomic_load_n(&milter_draining, __ATOMIC_ACQUIRE))
		return milter_busy(ctx);
	session_msg_reset(s);
	session_msg_begin(s);
	milter_qid(ctx, s);
	str_copy(s->msg.mail_from, argv[0] ? argv[0] : "", sizeof(s->msg.mail_from));
	return SMFIS_CONTINUE;
}

static sfsistat
milter_envrcpt(SMFICTX *ctx, char **argv)
{
	struct session *s = milter_session(ctx);
	struct verdict v;

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	milter_qid(ctx, s);
	if (argv[0] == NULL || session_rcpt(s, milter_store, argv[0], &v) == 0)
		return SMFIS_CONTINUE;
	return milter_reply(ctx, &v);
}

static sfsistat
milter_data(SMFICTX *ctx)
{
	struct session *s = milter_session(ctx);

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	/* Mail for anyone else is none of our business. */
	if (s->msg.has_token)
		return SMFIS_CONTINUE;
	session_msg_end(s);
	return SMFIS_ACCEPT;
}

/* "Continue", or nothing at all where the MTA agreed not to wait for it. */
static sfsistat
milter_go_on(const struct session *s, unsigned long step)
{
	return s != NULL && (s->noreply & step) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat
milter_header(SMFICTX *ctx, char *name, char *value)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL)
		session_header(s, name, value ? value : "");
	return milter_go_on(s, SMFIP_NR_HDR);
}

static sfsistat
milter_eoh(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL)
		session_eoh(s);
	return milter_go_on(s, SMFIP_NR_EOH);
}

static sfsistat
milter_body(SMFICTX *ctx, unsigned char *p, size_t n)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL)
		session_body(s, p, n);
	return milter_go_on(s, SMFIP_NR_BODY);
}

static sfsistat
milter_eom(SMFICTX *ctx)
{
	struct session *s = milter_session(ctx);
	struct session_eom out;
	sfsistat rc;

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	milter_qid(ctx, s);
	session_eom(s, milter_store, &out);
	/* Headers claiming our authserv-id came from outside: remove them,
	 * last first so that indices stay valid. */
	for (int i = out.ndelete_ar - 1; i >= 0; i--)
		if (smfi_chgheader(ctx, "Authentication-Results", out.delete_ar[i], NULL) !=
		    MI_SUCCESS)
			log_msg(LOG_WARNING, s->msg.qid, "cannot remove a forged"
			    " Authentication-Results header");
	if (out.authres.len > 0 &&
	    smfi_insheader(ctx, 0, "Authentication-Results", out.authres.s) != MI_SUCCESS)
		log_msg(LOG_WARNING, s->msg.qid, "cannot add Authentication-Results");
	switch (out.verdict.action) {
	case VA_REPLY:
		rc = milter_reply(ctx, &out.verdict);
		break;
	case VA_DISCARD:
		rc = SMFIS_DISCARD;
		break;
	default:
		rc = SMFIS_ACCEPT;
	}
	session_eom_free(&out);
	session_msg_reset(s);
	session_msg_end(s);
	return rc;
}

static sfsistat
milter_abort(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL) {
		session_msg_reset(s);
		session_msg_end(s);
	}
	return SMFIS_CONTINUE;
}

static sfsistat
milter_close(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);

	smfi_setpriv(ctx, NULL);
	session_free(s);
	return SMFIS_CONTINUE;
}

static sfsistat
milter_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
    unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
    unsigned long *pf3)
{
	(void)f2; (void)f3;
	*pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS);
	/* Steps we have no use for are skipped: fewer round trips. */
	/* Headers and body are always continued: the MTA need not wait for
	 * each of them (fewer round trips, fewer context switches). */
	*pf1 = f1 & (SMFIP_NOUNKNOWN | SMFIP_HDR_LEADSPC | SMFIP_NR_HDR | SMFIP_NR_EOH |
	    SMFIP_NR_BODY);
	{
		struct session *s = milter_session(ctx);

		/* With HDR_LEADSPC header values come exactly as sent, which
		 * "simple" DKIM canonicalization needs. */
		if (s != NULL) {
			s->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
			s->noreply = *pf1 & (SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY);
		} else
			*pf1 &= ~(unsigned long)(SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY);
	}
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static struct smfiDesc milter_desc = {
	.xxfi_name = "milterd",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS,
	.xxfi_connect = milter_connect,
	.xxfi_helo = milter_helo,
	.xxfi_envfrom = milter_envfrom,
	.xxfi_envrcpt = milter_envrcpt,
	.xxfi_header = milter_header,
	.xxfi_eoh = milter_eoh,
	.xxfi_body = milter_body,
	.xxfi_eom = milter_eom,
	.xxfi_abort = milter_abort,
	.xxfi_close = milter_close,
	.xxfi_data = milter_data,
	.xxfi_negotiate = milter_negotiate,
};

int
milter_setup(struct config *cfg, struct store *st)
{
	config_ref(cfg);
	milter_cfg = cfg;
	milter_store = st;
	if (smfi_setconn(cfg->socket) == MI_FAILURE) {
		log_err("smfi_setconn %s failed", cfg->socket);
		return -1;
	}
	if (smfi_register(milter_desc) == MI_FAILURE) {
		log_err("smfi_register failed");
		return -1;
	}
	if (smfi_opensocket(1) == MI_FAILURE) {
		log_err("cannot open milter socket %s", cfg->socket);
		return -1;
	}
	return 0;
}

int
milter_run(void)
{
	return smfi_main() == MI_SUCCESS ? 0 : -1;
}
