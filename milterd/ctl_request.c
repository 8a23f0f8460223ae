/* ctl_request.c — milterctl request and address: a new pending request for an
 * account's address and its challenge (sent, printed, or only its token), and
 * the pieces recertify shares (ctl_new_request, ctl_challenge, ctl_withdraw). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "buf.h"
#include "challenge.h"
#include "ctl.h"

void
ctl_withdraw(struct ctl *c, const char *token)
{
	const char *params[1] = { token };
	PGresult *res;

	/* Nobody knows its token, so it was never asked. Withdrawn, not revoked:
	 * a revoked request counts as asked (the Mastodon kit does not ask a
	 * user twice at one address), and the next run (cron, recertify) must
	 * ask again. A request written, then taken back: nothing else refers
	 * to it yet. */
	if ((res = ctl_query(c, "DELETE FROM milterd.requests WHERE token_hash ="
	    " sha256(convert_to($1, 'UTF8')) AND state = 'pending'", 1, params)) != NULL)
		PQclear(res);
}

int
ctl_challenge(struct ctl *c, const char *kind, const char *account, const char *email,
    const char *token, int lang, int send, int doc)
{
	const char *params[1] = { token };
	struct challenge ch = { kind, account, email, token, lang, NULL, NULL };
	struct buf msg, err;
	PGresult *res;
	int rc = EX_DONE, sent;

	if ((res = ctl_query(c, "SELECT to_char(r.expires_at AT TIME ZONE 'UTC',"
	    " 'YYYY-MM-DD HH24:MI \"UTC\"'), to_char(v.valid_until AT TIME ZONE 'UTC',"
	    " 'YYYY-MM-DD HH24:MI \"UTC\"')"
	    " FROM milterd.requests r LEFT JOIN milterd.requests v ON v.account = r.account"
	    " AND v.state = 'verified' WHERE r.token_hash = sha256(convert_to($1, 'UTF8'))",
	    1, params)) == NULL)
		return EX_DB;
	ch.expires = PQntuples(res) ? PQgetvalue(res, 0, 0) : "?";
	ch.ends = PQntuples(res) && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 1) : "?";
	buf_init(&msg);
	buf_init(&err);
	if (challenge_render(c->snap->cfg, &ch, &msg, &err) == -1) {
		fprintf(stderr, "milterctl: %s\n", err.s);
		rc = EX_CONFIG;
	} else if (!send) {
		fputs(msg.s, stdout);
		if (!ctl_stdout_ok())
			rc = EX_SEND;
	} else if ((sent = challenge_send(c->snap->cfg, msg.s, &err)) != 0) {
		fprintf(stderr, "milterctl: challenge not sent: %s\n", err.s);
		c->sendmail_stalled |= sent == CHALLENGE_STALLED;
		rc = EX_SEND;
	} else if (c->json && doc)
		ctl_json_print(json_pack("{s:s, s:s, s:s, s:b}", "account", account, "email", email,
		    "challenge", kind, "sent", 1));
	else
		fprintf(c->json ? stderr : stdout, "%s sent to %s\n", kind, email);
	PQclear(res);
	buf_free(&msg);
	buf_free(&err);
	if (rc != EX_DONE)
		ctl_withdraw(c, token);
	return rc;
}

/* The policy's say on a new request for email: allowed domain, TTL, how many
 * accounts one address may certify. EX_DONE, or EX_NOTFOUND (reported). */
static int
ctl_policy_for(struct ctl *c, const char *email, char *ttl, size_t ttlsize, char *apa,
    size_t apasize)
{
	const struct policy_rules *r;
	char addr[400], *at;

	if (str_copy(addr, email, sizeof(addr)) == -1 ||
	    (at = strrchr(str_trim(addr), '@')) == NULL) {
		fprintf(stderr, "milterctl: %s is not an email address\n", email);
		return EX_NOTFOUND;
	}
	str_lower(at);
	if (!policy_domain_allowed(c->snap->pol, at + 1)) {
		fprintf(stderr, "milterctl: %s: domain not allowed by policy %s\n", email,
		    c->snap->cfg->policy);
		return EX_NOTFOUND;
	}
	r = policy_rules_for(c->snap->pol, at + 1);
	if (ttl[0] == '\0')
		snprintf(ttl, ttlsize, "%d seconds", r->token_ttl);
	snprintf(apa, apasize, "%d", r->accounts_per_address);
	return EX_DONE;
}

int
ctl_new_request(struct ctl *c, const char *account, const char *email, const char *ttl,
    const char *lang, const char *apa, char *tok, size_t toksize)
{
	const char *params[5] = { account, email, ttl, lang, apa };
	PGresult *res;

	if ((res = ctl_query(c, "SELECT milterd.request_verification($1, $2, $3::interval, $4,"
	    " $5::integer)", 5, params)) == NULL) {
		/* One address, one account: refused, not a database failure. */
		if (strcmp(c->sqlstate, "23505") == 0)
			return EX_NOTFOUND;
		/* A value the database refuses (class 22, data exception: a --ttl
		 * that is not an interval, or not positive), its message said. */
		return strncmp(c->sqlstate, "22", 2) == 0 ? EX_USAGE : EX_DB;
	}
	(void)str_copy(tok, PQgetvalue(res, 0, 0), toksize);
	PQclear(res);
	return EX_DONE;
}

/* The options request and address share. */
struct ctl_reqopts {
	const char	*account, *email, *ttl, *lang;
	int		 send, print;
	char		 addr[400];	/* email, trimmed and lowercased */
};

/* Whether the option ch of request or address already has its value. */
static int
ctl_reqopt_twice(const struct ctl_reqopts *o, int ch)
{
	return (ch == 'a' && o->account != NULL) || (ch == 'e' && o->email != NULL) ||
	    (ch == 't' && o->ttl != NULL) || (ch == 'l' && o->lang != NULL);
}

static int
ctl_reqopts(int argc, char **argv, struct ctl_reqopts *o, int with_ttl)
{
	static const struct option opts[] = {
		{ "account", required_argument, NULL, 'a' },
		{ "email", required_argument, NULL, 'e' },
		{ "ttl", required_argument, NULL, 't' },
		{ "lang", required_argument, NULL, 'l' },
		{ "send", no_argument, NULL, 's' },
		{ "print", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, idx;

	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		/* A value given twice is a mistake, not a correction: the last one
		 * winning, address --account alice ... --account bob would end
		 * bob's certification. */
		if (ctl_reqopt_twice(o, ch)) {
			fprintf(stderr, "milterctl: %s: --%s given twice\n", argv[0],
			    opts[idx].name);
			return EX_USAGE;
		}
		switch (ch) {
		case 'a': o->account = optarg; break;
		case 'e': o->email = optarg; break;
		case 't': if (!with_ttl) ctl_usage(); o->ttl = optarg; break;
		case 'l': o->lang = optarg; break;
		case 's': o->send = 1; break;
		case 'p': o->print = 1; break;
		default: ctl_usage();
		}
	}
	if (o->account == NULL || o->email == NULL || optind != argc || (o->send && o->print)) {
		fprintf(stderr, "milterctl: %s needs --account and --email (and at most one of"
		    " --send, --print)\n", argv[0]);
		return EX_USAGE;
	}
	if (o->account[strspn(o->account, " \t")] == '\0') {
		fprintf(stderr, "milterctl: --account must not be empty\n");
		return EX_USAGE;
	}
	if (str_copy(o->addr, o->email, sizeof(o->addr)) == -1) {
		fprintf(stderr, "milterctl: %s is not an email address\n", o->email);
		return EX_USAGE;
	}
	memmove(o->addr, str_trim(o->addr), strlen(str_trim(o->addr)) + 1);
	str_lower(o->addr);
	/* The database takes anything with one @ ("<a@b>", "Name <a@b>"); no
	 * From could ever equal such a request's address, and reporting it
	 * with address would end the account's certification all the same. */
	if (!address_is_mailbox(o->addr)) {
		fprintf(stderr, "milterctl: '%s' is not an email address (a bare local@domain, as"
		    " the agent's From gives it)\n", o->email);
		return EX_USAGE;
	}
	if (o->lang != NULL && replies_lang(o->lang) == -1) {
		fprintf(stderr, "milterctl: --lang must be fr or en\n");
		return EX_USAGE;
	}
	return EX_DONE;
}

int
cmd_request(struct ctl *c, int argc, char **argv)
{
	struct ctl_reqopts o = { .account = NULL };
	char ttl[32] = "", apa[16] = "1", tok[64];
	int rc;
	json_t *j;

	if ((rc = ctl_reqopts(argc, argv, &o, 1)) != EX_DONE)
		return rc;
	if (o.ttl != NULL && str_copy(ttl, o.ttl, sizeof(ttl)) == -1) {
		fprintf(stderr, "milterctl: --ttl %s: not an interval\n", o.ttl);
		return EX_USAGE;
	}
	/* With a configuration, the policy decides who may be challenged, for
	 * how long, and how many accounts one address may certify; sending and
	 * printing need it. */
	if (o.send || o.print || c->config_given || (c->database == NULL &&
	    getenv("MILTERD_DATABASE") == NULL)) {
		if ((rc = ctl_config(c)) != EX_DONE ||
		    (rc = ctl_policy_for(c, o.email, ttl, sizeof(ttl), apa, sizeof(apa))) != EX_DONE)
			return rc;
	}
	if (ttl[0] == '\0')
		(void)str_copy(ttl, "7 days", sizeof(ttl));
	if ((rc = ctl_connect(c)) != EX_DONE ||
	    (rc = ctl_new_request(c, o.account, o.email, ttl, o.lang ? o.lang : "fr", apa, tok,
	    sizeof(tok))) != EX_DONE)
		return rc;
	if (o.send || o.print)
		return ctl_challenge(c, "challenge", o.account, o.addr, tok,
		    replies_lang(o.lang ? o.lang : "fr"), o.send, 1);
	if (c->json) {
		j = json_pack("{s:s, s:s}", "account", o.account, "token", tok);
		ctl_json_print(j);
	} else
		printf("%s\n", tok);
	/* The token is shown once: lost on the way (a full disk, a closed
	 * pipe), its request could never be answered. */
	if (!ctl_stdout_ok()) {
		ctl_withdraw(c, tok);
		return EX_SEND;
	}
	return EX_DONE;
}

/* The backend reports an account's current address: a certification of
 * another address ends; with --send or --print, the new address gets a
 * challenge unless a request for it is already pending. */
int
cmd_address(struct ctl *c, int argc, char **argv)
{
	struct ctl_reqopts o = { .account = NULL };
	const char *params[2];
	char ttl[32] = "", apa[16] = "1", tok[64], lang[4] = "fr";
	PGresult *res;
	int rc, pending;
	json_t *j;

	if ((rc = ctl_reqopts(argc, argv, &o, 0)) != EX_DONE)
		return rc;
	params[0] = o.account;
	params[1] = o.email;
	if (((o.send || o.print) && (rc = ctl_config(c)) != EX_DONE) ||
	    (rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT milterd.report_address($1, $2),"
	    " EXISTS (SELECT 1 FROM milterd.verifications WHERE account = $1"
	    "  AND email = lower(btrim($2)) AND state IN ('pending', 'verified')),"
	    " coalesce((SELECT lang FROM milterd.requests WHERE account = $1"
	    "  ORDER BY created_at DESC, id DESC LIMIT 1), 'fr')", 2, params)) == NULL)
		return strcmp(c->sqlstate, "22023") == 0 ? EX_USAGE : EX_DB;
	pending = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	(void)str_copy(lang, o.lang ? o.lang : PQgetvalue(res, 0, 2), sizeof(lang));
	if (c->json) {
		j = json_pack("{s:s, s:s, s:s}", "account", o.account, "email", o.addr,
		    "certification", PQgetvalue(res, 0, 0));
		/* On stderr with --print, as the text: stdout is the mail. */
		ctl_json_fprint(o.print ? stderr : stdout, j);
	} else
		/* On stderr with --print: stdout is the mail. */
		fprintf(o.print ? stderr : stdout, "%s: certification %s\n", o.account,
		    PQgetvalue(res, 0, 0));
	PQclear(res);
	if (!(o.send || o.print) || pending)
		return EX_DONE;
	if ((rc = ctl_policy_for(c, o.email, ttl, sizeof(ttl), apa, sizeof(apa))) != EX_DONE ||
	    (rc = ctl_new_request(c, o.account, o.email, ttl, lang, apa, tok,
	    sizeof(tok))) != EX_DONE)
		return rc;
	return ctl_challenge(c, "challenge", o.account, o.addr, tok, replies_lang(lang), o.send,
	    0);
}
