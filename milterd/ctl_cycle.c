/* ctl_cycle.c — the life of a certification over time: milterctl recertify
 * (lapse what ended, challenge what ends soon) and milterctl db prune
 * (retention). Both are safe to run again: from a systemd timer or cron. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* Columns of a certification that may need a new challenge. */
enum { RC_ID, RC_ACCOUNT, RC_EMAIL, RC_LANG, RC_VERIFIED, RC_UNTIL, RC_NOW };

struct recertify_counts {
	int	 lapsed, dated, challenged, failed, refused, ended;
};

/* A certification from before end dates existed gets one: its policy's
 * period from its verification, and never sooner than the notice from now,
 * so that every agent is asked before losing it. Returns the end (epoch). */
static double
recertify_date(struct ctl *c, PGresult *res, int row, const struct policy_rules *r)
{
	double verified = strtod(PQgetvalue(res, row, RC_VERIFIED), NULL);
	double now = strtod(PQgetvalue(res, row, RC_NOW), NULL);
	double until = verified + (double)r->recertify_after;
	char when[32];
	const char *params[2] = { PQgetvalue(res, row, RC_ID), when };
	PGresult *u;

	if (until < now + (double)r->recertify_notice)
		until = now + (double)r->recertify_notice;
	snprintf(when, sizeof(when), "%.0f", until);
	if ((u = ctl_query(c, "UPDATE milterd.requests SET valid_until = to_timestamp($2::float8)"
	    " WHERE id = $1::bigint AND valid_until IS NULL AND state = 'verified'", 2,
	    params)) == NULL)
		return -1;
	PQclear(u);
	return until;
}

/* A new request for the certification's account and address, its challenge
 * sent (one that could not be sent is withdrawn by ctl_challenge(), so the next
 * run tries again). The database asks only if the certification is still the
 * account's live one (request_renewal(), 011): the list was read before the
 * challenges before this one, and an address change or a revocation may have
 * come meanwhile; then *ended is set and nothing is sent. Returns an exit code. */
static int
recertify_one(struct ctl *c, PGresult *res, int row, const struct policy_rules *r,
    double until, int *ended)
{
	const char *account = PQgetvalue(res, row, RC_ACCOUNT);
	const char *email = PQgetvalue(res, row, RC_EMAIL);
	const char *lang = PQgetvalue(res, row, RC_LANG);
	double now = strtod(PQgetvalue(res, row, RC_NOW), NULL), ttl = r->token_ttl;
	char ttls[32], apa[16], tok[64];
	const char *params[3] = { PQgetvalue(res, row, RC_ID), ttls, apa };
	PGresult *q;

	/* The new request stays answerable until the certification ends. */
	if (until - now > ttl)
		ttl = until - now;
	snprintf(ttls, sizeof(ttls), "%.0f seconds", ttl);
	snprintf(apa, sizeof(apa), "%d", r->accounts_per_address);
	if ((q = ctl_query(c, "SELECT milterd.request_renewal($1::bigint, $2::interval,"
	    " $3::integer)", 3, params)) == NULL)
		/* One address, one account: refused, not a database failure. */
		return strcmp(c->sqlstate, "23505") == 0 ? EX_NOTFOUND : EX_DB;
	*ended = PQgetisnull(q, 0, 0);
	(void)str_copy(tok, PQgetvalue(q, 0, 0), sizeof(tok));
	PQclear(q);
	if (*ended)
		return EX_DONE;
	return ctl_challenge(c, "recertify", account, email, tok, replies_lang(lang), 1, 0);
}

/* Each live certification with nothing newer for its account: dated if it
 * has no end, challenged if its end is within the notice. */
static int
recertify_due(struct ctl *c, struct recertify_counts *n)
{
	const struct policy *pol = c->snap->pol;
	const struct policy_rules *r;
	PGresult *res;
	double until, now;
	int rc = EX_DONE, ended;

	if ((res = ctl_query(c, "SELECT r.id, r.account, r.email, r.lang,"
	    " extract(epoch FROM r.verified_at)::float8, extract(epoch FROM r.valid_until)::float8,"
	    " extract(epoch FROM now())::float8"
	    " FROM milterd.requests r WHERE r.state = 'verified'"
	    " AND (r.valid_until IS NULL OR r.valid_until > now())"
	    " AND NOT EXISTS (SELECT 1 FROM milterd.requests n WHERE n.account = r.account"
	    "  AND n.id > r.id AND n.state <> 'revoked') ORDER BY r.valid_until NULLS LAST, r.id",
	    0, NULL)) == NULL)
		return EX_DB;
	for (int i = 0; i < PQntuples(res); i++) {
		r = policy_rules_for_address(pol, PQgetvalue(res, i, RC_EMAIL));
		if (r->recertify_after == 0)
			continue;
		now = strtod(PQgetvalue(res, i, RC_NOW), NULL);
		if (PQgetisnull(res, i, RC_UNTIL)) {
			if ((until = recertify_date(c, res, i, r)) < 0) {
				rc = EX_DB;
				break;
			}
			n->dated++;
		} else
			until = strtod(PQgetvalue(res, i, RC_UNTIL), NULL);
		if (until - (double)r->recertify_notice > now)
			continue;
		if (!policy_domain_allowed(pol, strrchr(PQgetvalue(res, i, RC_EMAIL), '@') + 1)) {
			fprintf(stderr, "milterctl: %s: %s: domain no longer allowed by policy: not"
			    " challenged, the certification will lapse\n",
			    PQgetvalue(res, i, RC_ACCOUNT), PQgetvalue(res, i, RC_EMAIL));
			n->refused++;
			continue;
		}
		switch (recertify_one(c, res, i, r, until, &ended)) {
		case EX_DONE:
			if (!ended) {
				n->challenged++;
				break;
			}
			fprintf(stderr, "milterctl: %s: %s: the certification ended while this run"
			    " went on (address change or revocation): not challenged\n",
			    PQgetvalue(res, i, RC_ACCOUNT), PQgetvalue(res, i, RC_EMAIL));
			n->ended++;
			break;
		case EX_DB:
			rc = EX_DB;
			break;
		case EX_NOTFOUND:
			/* The address certifies other accounts too (from before one
			 * address, one account, or a lowered accounts_per_address):
			 * said, and the others are still challenged. */
			n->refused++;
			break;
		default:
			n->failed++;
			if (rc == EX_DONE)
				rc = EX_SEND;
		}
		if (rc == EX_DB)
			break;
		/* A sendmail that hung once hangs for the next challenge too:
		 * sendmail_timeout each, the lock held all along. The rest
		 * are still within their notice; the next run asks them. */
		if (c->sendmail_stalled) {
			fprintf(stderr, "milterctl: recertify: sendmail timed out: no more challenges"
			    " in this run; the next run sends them\n");
			break;
		}
	}
	PQclear(res);
	return rc;
}

int
cmd_recertify(struct ctl *c, int argc, char **argv)
{
	struct recertify_counts n = { 0, 0, 0, 0, 0, 0 };
	PGresult *res;
	int rc;

	(void)argv;
	if (argc != 1)
		ctl_usage();
	if ((rc = ctl_config(c)) != EX_DONE || (rc = ctl_connect(c)) != EX_DONE)
		return rc;
	/* One run at a time per database, whichever host it runs on: two would
	 * each challenge the same agent, the second token replacing the first. */
	if ((res = ctl_query(c, "SELECT pg_try_advisory_lock(hashtext('milterd.recertify'))", 0,
	    NULL)) == NULL)
		return EX_DB;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		fprintf(stderr, "milterctl: recertify is already running on this database\n");
		return EX_DONE;
	}
	PQclear(res);
	/* Lapse first: what ended must not be challenged as if still live. */
	if ((res = ctl_query(c, "SELECT milterd.lapse()", 0, NULL)) == NULL)
		return EX_DB;
	n.lapsed = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	rc = recertify_due(c, &n);
	if (c->json)
		ctl_json_print(json_pack("{s:i, s:i, s:i, s:i, s:i, s:i}", "lapsed", n.lapsed,
		    "dated", n.dated, "challenged", n.challenged, "failed", n.failed,
		    "refused", n.refused, "ended", n.ended));
	else
		printf("recertify: %d lapsed, %d given an end date, %d challenged, %d not sent,"
		    " %d refused by the policy, %d ended meanwhile\n", n.lapsed, n.dated,
		    n.challenged, n.failed, n.refused, n.ended);
	return rc;
}

/* Deletes in batches of its own transactions until a batch comes back short. */
static long
prune_loop(struct ctl *c, const char *fn, long keep, const char *batch)
{
	char keeps[32];
	const char *params[2] = { keeps, batch };
	char sql[128];
	PGresult *res;
	long total = 0, n;

	snprintf(keeps, sizeof(keeps), "%ld seconds", keep);
	snprintf(sql, sizeof(sql), "SELECT milterd.%s($1::interval, $2::integer)", fn);
	do {
		if ((res = ctl_query(c, sql, 2, params)) == NULL)
			return -1;
		n = atol(PQgetvalue(res, 0, 0));
		PQclear(res);
		total += n;
	} while (n >= atol(batch));
	return total;
}

int
cmd_prune(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "batch", required_argument, NULL, 'b' }, { NULL, 0, NULL, 0 },
	};
	const char *batch = "1000";
	char ev[32], rq[32];
	long nev, nrq;
	int ch, rc;

	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'b')
			ctl_usage();
		if (ctl_number(optarg, 1, 100000) == -1) {
			fprintf(stderr, "milterctl: --batch '%s': not a whole number from 1 to"
			    " 100000\n", optarg);
			return EX_USAGE;
		}
		batch = optarg;
	}
	if (optind != argc)
		ctl_usage();
	if ((rc = ctl_config(c)) != EX_DONE || (rc = ctl_connect(c)) != EX_DONE)
		return rc;
	/* Evidence first: deleting a request sets its evidence rows' request
	 * to NULL, work saved when they are gone already. */
	if ((nev = prune_loop(c, "prune_evidence", c->snap->cfg->evidence_retention, batch)) < 0 ||
	    (nrq = prune_loop(c, "prune_requests", c->snap->cfg->request_retention, batch)) < 0)
		return EX_DB;
	config_duration_format(c->snap->cfg->evidence_retention, ev, sizeof(ev));
	config_duration_format(c->snap->cfg->request_retention, rq, sizeof(rq));
	if (c->json)
		ctl_json_print(json_pack("{s:I, s:I}", "evidence", (json_int_t)nev, "requests",
		    (json_int_t)nrq));
	else
		printf("pruned %ld evidence rows older than %s, %ld requests finished more than"
		    " %s ago\n", nev, ev, nrq, rq);
	return EX_DONE;
}
