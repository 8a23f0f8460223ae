/* ctl_check.c — milterctl check: a stored message decided by the daemon's own
 * code (session.c, policy.c, store.c), every step printed; nothing written
 * unless --commit (the store rolls its writes back). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "session.h"

/* Reads an .eml ("-": standard input, read only after RCPT, so that a slow
 * sender can be played) into headers (name, raw value after the colon,
 * folding kept as CRLF) and a CRLF body, feeding them to the session. -1 if
 * unreadable. */
static int
check_read(struct buf *text, const char *path)
{
	char chunk[8192];
	size_t n;

	if (strcmp(path, "-") != 0) {
		if (buf_read_file(text, path) == 0)
			return 0;
		fprintf(stderr, "milterctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
		if (buf_append(text, chunk, n) == -1)
			break;
	if (ferror(stdin) || buf_failed(text)) {
		fprintf(stderr, "milterctl: cannot read the message from standard input\n");
		return -1;
	}
	return 0;
}

static int
check_feed(struct session *s, const char *path)
{
	struct buf text, name, value, body;
	const char *p, *nl, *colon, *end;
	size_t len;
	int inbody = 0, rc = -1;

	buf_init(&text);
	buf_init(&name);
	buf_init(&value);
	buf_init(&body);
	if (check_read(&text, path) == -1)
		goto out;
	end = text.s + text.len;
	/* By length, not to the first NUL: a NUL in a header is the session's
	 * to judge, as it is when a milter client sends one. */
	for (p = text.s; p < end; p = nl ? nl + 1 : p + len) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (inbody) {
			buf_append(&body, p, len);
			if (nl)
				buf_puts(&body, "\r\n");
			continue;
		}
		if (len > 0 && (p[0] == ' ' || p[0] == '\t') && name.len > 0) {
			buf_puts(&value, "\r\n");
			buf_append(&value, p, len);
			continue;
		}
		if (name.len > 0)
			session_header(s, name.s, value.s, value.len);
		buf_reset(&name);
		buf_reset(&value);
		if (len == 0) {
			inbody = 1;
			session_eoh(s);
			continue;
		}
		if ((colon = memchr(p, ':', len)) == NULL) {
			fprintf(stderr, "milterctl: %s: not a header line: %.*s\n", path,
			    (int)len, p);
			goto out;
		}
		buf_append(&name, p, (size_t)(colon - p));
		buf_append(&value, colon + 1, len - (size_t)(colon - p) - 1);
	}
	if (!inbody) {
		if (name.len > 0)
			session_header(s, name.s, value.s, value.len);
		session_eoh(s);
	}
	if (buf_failed(&name) || buf_failed(&value) || buf_failed(&body)) {
		fprintf(stderr, "milterctl: %s: out of memory\n", path);
		goto out;
	}
	if (body.len > 0)
		session_body(s, (const unsigned char *)body.s, body.len);
	rc = 0;
out:
	buf_free(&text);
	buf_free(&name);
	buf_free(&value);
	buf_free(&body);
	return rc;
}

static const char *
check_dkim_result(enum dkimv_result r)
{
	switch (r) {
	case DKIMV_PASS:	return "pass";
	case DKIMV_FAIL:	return "fail";
	case DKIMV_TEMPERROR:	return "temperror";
	case DKIMV_PERMERROR:	return "permerror";
	case DKIMV_SKIPPED:	return "skipped";
	}
	return "?";
}

static const char *
check_reply(const struct verdict *v)
{
	return v->action == VA_REPLY ? v->rcode : v->action == VA_DISCARD ? "discard" : "250";
}

/* The answer at RCPT, when the recipient was refused there. */
static void
check_print_rcpt(const struct ctl *c, const struct verdict *v)
{
	if (c->json)
		ctl_json_print(json_pack("{s:s, s:s, s:s, s:s, s:s}", "stage", "rcpt",
		    "reason", reason_name(v->reason), "reply", v->rcode, "xcode", v->xcode,
		    "text", v->text));
	else
		printf("rcpt        %s: %s %s %s\n", reason_name(v->reason), v->rcode, v->xcode,
		    v->text);
}

static json_t *
check_json_sigs(const struct session_eom *e)
{
	const struct policy_decision *d = e->decision;
	json_t *sigs = json_array(), *o;

	for (int i = 0; sigs != NULL && i < e->nsigs; i++) {
		if ((o = json_object()) == NULL)
			break;
		json_object_set_new(o, "d", ctl_json_text(e->sigs[i].domain));
		json_object_set_new(o, "s", ctl_json_text(e->sigs[i].selector));
		json_object_set_new(o, "a", ctl_json_text(e->sigs[i].algorithm));
		json_object_set_new(o, "bits", json_integer(e->sigs[i].key_bits));
		json_object_set_new(o, "result", json_string(check_dkim_result(e->sigs[i].result)));
		json_object_set_new(o, "aligned", json_boolean(d->verdicts[i].aligned));
		json_object_set_new(o, "token_signed", json_boolean(d->verdicts[i].binds_token));
		json_object_set_new(o, "why", ctl_json_text(d->verdicts[i].why ?
		    d->verdicts[i].why : ""));
		json_array_append_new(sigs, o);
	}
	return sigs;
}

static void
check_print_json(const struct session *s, const struct session_eom *e)
{
	const struct policy_decision *d = e->decision;
	const struct msg *m = &s->msg;
	const struct verdict *v = &e->verdict;
	json_t *o = json_object();

	/* Every value that may hold any byte goes through ctl_json_text(): the
	 * output is valid JSON whatever the message. */
	json_object_set_new(o, "stage", json_string("eom"));
	json_object_set_new(o, "client", ctl_json_text(s->client_addr));
	json_object_set_new(o, "helo", ctl_json_text(s->helo));
	json_object_set_new(o, "mail_from", ctl_json_text(m->mail_from));
	json_object_set_new(o, "request", json_integer(m->req.id));
	json_object_set_new(o, "account", ctl_json_text(m->req.account));
	json_object_set_new(o, "from", ctl_json_text(d->from_ok ? d->from.addr : ""));
	json_object_set_new(o, "signatures", check_json_sigs(e));
	json_object_set_new(o, "spf_mailfrom", json_string(e->has_mailfrom ?
	    spf_result_name(e->spf_mailfrom.result) : "none"));
	json_object_set_new(o, "spf_aligned", json_boolean(d->spf_aligned));
	json_object_set_new(o, "spf_helo", json_string(e->has_helo ?
	    spf_result_name(e->spf_helo.result) : "none"));
	json_object_set_new(o, "reason", json_string(reason_name(d->reason)));
	json_object_set_new(o, "detail", ctl_json_text(d->detail));
	json_object_set_new(o, "reply", json_string(check_reply(v)));
	json_object_set_new(o, "xcode", json_string(v->action == VA_REPLY ? v->xcode : ""));
	json_object_set_new(o, "text", ctl_json_text(v->action == VA_REPLY ? v->text : ""));
	ctl_json_print(o);
}

/* Every step of the decision, for people. */
static void
check_print(const struct session *s, const struct session_eom *e)
{
	const struct policy_decision *d = e->decision;
	const struct msg *m = &s->msg;
	const struct verdict *v = &e->verdict;

	printf("client      %s, helo %s\n", s->client_addr, s->helo);
	printf("mail from   %s\n", m->mail_from);
	printf("request     %lld, account %s, state %s (token %s)\n", m->req.id,
	    m->req.account, request_state_name(m->req.state), m->hash_prefix);
	if (d->from_ok)
		printf("from        %s (domain %s, %s by policy)\n", d->from.addr,
		    d->from.domain, policy_domain_allowed(s->snap->pol, d->from.domain) ?
		    "allowed" : "not allowed");
	else
		printf("from        unusable\n");
	if (e->nsigs == 0)
		printf("dkim        no signature\n");
	for (int i = 0; i < e->nsigs; i++)
		printf("dkim[%d]     %s d=%s s=%s %s %u bits: %s\n", i,
		    check_dkim_result(e->sigs[i].result), e->sigs[i].domain,
		    e->sigs[i].selector, e->sigs[i].algorithm, e->sigs[i].key_bits,
		    d->verdicts[i].binds_token ? "aligned, token signed" :
		    d->verdicts[i].why ? d->verdicts[i].why : "");
	printf("spf         mailfrom %s%s, helo %s%s\n", e->has_mailfrom ?
	    spf_result_name(e->spf_mailfrom.result) : "none (null sender)",
	    e->has_mailfrom && e->spf_mailfrom.result != SPF_R_SKIPPED ?
	    (d->spf_aligned ? " (aligned)" : " (not aligned)") : "",
	    e->has_helo ? spf_result_name(e->spf_helo.result) : "none",
	    e->internal_client ? " (internal client)" : "");
	printf("decision    %s: %s\n", reason_name(d->reason), d->detail);
	if (v->action == VA_REPLY)
		printf("reply       %s %s %s\n", v->rcode, v->xcode, v->text);
	else
		printf("reply       %s\n", check_reply(v));
}

struct check_opts {
	const char	*ip, *helo, *mailfrom, *rcpt, *file;
	int		 commit;
};

static int
check_opts(int argc, char **argv, struct check_opts *o)
{
	static const struct option opts[] = {
		{ "client-ip", required_argument, NULL, 'i' },
		{ "helo", required_argument, NULL, 'h' },
		{ "mail-from", required_argument, NULL, 'm' },
		{ "rcpt", required_argument, NULL, 'r' },
		{ "commit", no_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'i': o->ip = optarg; break;
		case 'h': o->helo = optarg; break;
		case 'm': o->mailfrom = optarg; break;
		case 'r': o->rcpt = optarg; break;
		case 'c': o->commit = 1; break;
		default: ctl_usage();
		}
	}
	if (optind != argc - 1 || o->ip == NULL || o->mailfrom == NULL || o->rcpt == NULL) {
		fprintf(stderr, "milterctl: check needs FILE.eml (or -), --client-ip, --mail-from"
		    " and --rcpt\n");
		return EX_USAGE;
	}
	o->file = argv[optind];
	return EX_DONE;
}

/* The transaction as the MTA would play it: envelope, RCPT, message, end. */
static int
check_run(struct ctl *c, const struct check_opts *o, struct session *s, struct store *st)
{
	struct session_eom e;
	struct verdict v;
	int rc = EX_USAGE;

	memset(&e, 0, sizeof(e));
	buf_init(&e.authres);
	s->leadspc = 1;		/* values are given exactly as in the file */
	if (session_set_client_text(s, "", o->ip) == -1) {
		fprintf(stderr, "milterctl: --client-ip %s is not an IP address\n", o->ip);
		goto out;
	}
	(void)session_set_helo(s, o->helo);
	session_msg_reset(s);
	(void)str_copy(s->msg.qid, "milterctl", sizeof(s->msg.qid));
	(void)session_set_mail_from(s, o->mailfrom);
	if (session_rcpt(s, st, o->rcpt, &v) != 0) {
		check_print_rcpt(c, &v);
		rc = v.rcode[0] == '4' ? EX_TEMPORARY : EX_NOTFOUND;
		goto out;
	}
	if (!s->msg.has_token) {
		fprintf(stderr, "milterctl: %s is not a verification address of %s\n", o->rcpt,
		    s->snap->cfg->verify_address);
		goto out;
	}
	if (check_feed(s, o->file) == -1)
		goto out;
	session_eom(s, st, &e);
	if (c->json)
		check_print_json(s, &e);
	else
		check_print(s, &e);
	rc = e.verdict.action == VA_REPLY ? (e.verdict.rcode[0] == '4' ? EX_TEMPORARY :
	    EX_NOTFOUND) : EX_DONE;
out:
	session_eom_free(&e);
	return rc;
}

int
cmd_check(struct ctl *c, int argc, char **argv)
{
	struct check_opts o = { NULL, "", NULL, NULL, NULL, 0 };
	const struct config *cfg;
	struct session *s = NULL;
	struct store *st = NULL;
	struct dns *dns = NULL;
	const char *conninfo;
	struct buf err;
	int rc;

	if ((rc = check_opts(argc, argv, &o)) != EX_DONE || (rc = ctl_config(c)) != EX_DONE)
		return rc;
	if ((conninfo = ctl_conninfo(c)) == NULL)
		return EX_CONFIG;
	cfg = c->snap->cfg;
	buf_init(&err);
	rc = EX_CONFIG;
	if (session_init_libs(cfg, &dns, &err) == -1) {
		fprintf(stderr, "milterctl: %s\n", err.s);
		goto out;
	}
	rc = EX_DB;
	if ((st = store_open(conninfo, "milterctl check", 1, cfg->db_timeout)) == NULL ||
	    (s = session_new(c->snap)) == NULL)
		goto out;
	/* The daemon's writes, run and then rolled back: the same guards, the
	 * same answer, nothing kept. */
	store_set_dry_run(st, !o.commit);
	rc = check_run(c, &o, s, st);
out:
	session_free(s);
	store_close(st);
	if (dns != NULL)
		session_shutdown_libs(dns);
	buf_free(&err);
	return rc;
}
