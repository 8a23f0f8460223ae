/* milterctl.c — the admin CLI: schema migrations, requests, status, listing, revocation. */
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "buf.h"
#include "challenge.h"
#include "config.h"
#include "log.h"
#include "policy.h"
#include "render.h"
#include "session.h"

#ifndef SQLDIR
#define SQLDIR "/usr/local/share/milterd/sql"
#endif

/* Exit codes, documented in milterctl(8). */
enum {
	EX_DONE = 0,
	EX_NOTFOUND = 1,	/* unknown account, nothing to do */
	EX_USAGE = 2,
	EX_DB = 3,		/* database unreachable or refused */
	EX_CONFIG = 4,
	EX_SEND = 5,		/* the challenge could not be submitted */
	EX_TEMPORARY = 5,	/* check: the daemon would answer 4xx */
};

struct ctl {
	const char	*config_path;
	const char	*database;
	int		 json;
	PGconn		*conn;
	struct config	*cfg;		/* loaded on demand */
	int		 config_given;	/* -c on the command line */
};

/* Loads the configuration once; EX_DONE or EX_CONFIG (reported). */
static int
ctl_config(struct ctl *c)
{
	struct buf errors;

	if (c->cfg != NULL)
		return EX_DONE;
	buf_init(&errors);
	c->cfg = config_load(c->config_path, &errors);
	if (c->cfg == NULL)
		fprintf(stderr, "%smilterctl: fix the configuration (-c FILE)\n", errors.s);
	buf_free(&errors);
	return c->cfg ? EX_DONE : EX_CONFIG;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: milterctl [-c FILE] [--database CONNINFO] [--json] COMMAND ...\n"
	    "commands:\n"
	    "  db migrate [--sql-dir DIR]          apply pending schema migrations\n"
	    "  request --account A --email E [--ttl INTERVAL] [--lang fr|en] [--send|--print]\n"
	    "                                      create a request; print its token once, or\n"
	    "                                      send (sendmail -t -i) or print its challenge\n"
	    "  check FILE.eml --client-ip IP [--helo H] --mail-from M --rcpt R [--commit]\n"
	    "                                      decide on a message as the daemon would\n"
	    "  status ACCOUNT                      state of the account's latest request\n"
	    "  list [--state S]                    requests, newest first\n"
	    "  revoke ACCOUNT                      revoke the account's pending request\n"
	    "  stats                               the daemon's counters\n");
	exit(EX_USAGE);
}

static void
json_string(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; s != NULL && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c < 0x20)
			fprintf(fp, "\\u%04x", c);
		else
			fputc(c, fp);
	}
	fputc('"', fp);
}

static int
ctl_connect(struct ctl *c)
{
	const char *conninfo = c->database;

	if (conninfo == NULL)
		conninfo = getenv("MILTERD_DATABASE");
	if (conninfo == NULL) {
		if (ctl_config(c) != EX_DONE) {
			fprintf(stderr, "milterctl: or pass --database\n");
			return EX_CONFIG;
		}
		conninfo = c->cfg->database;
	}
	c->conn = PQconnectdb(conninfo);
	if (PQstatus(c->conn) != CONNECTION_OK) {
		fprintf(stderr, "milterctl: cannot connect to the database: %s",
		    PQerrorMessage(c->conn));
		return EX_DB;
	}
	return EX_DONE;
}

static PGresult *
ctl_query(struct ctl *c, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(c->conn, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "milterctl: %s", PQerrorMessage(c->conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

static int
cmd_migrate_file(struct ctl *c, const char *dir, const char *name)
{
	char path[4096], version[16];
	const char *params[2] = { version, name };
	struct buf sql;
	PGresult *res;
	size_t n;

	snprintf(version, sizeof(version), "%d", atoi(name));
	if ((res = ctl_query(c, "SELECT 1 FROM milterd.schema_migrations WHERE version = $1",
	    1, params)) == NULL)
		return -1;
	n = (size_t)PQntuples(res);
	PQclear(res);
	if (n > 0)
		return 0;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
		fprintf(stderr, "milterctl: path too long: %s/%s\n", dir, name);
		return -1;
	}
	buf_init(&sql);
	if (buf_read_file(&sql, path) == -1) {
		fprintf(stderr, "milterctl: %s: %s\n", path, strerror(errno));
		buf_free(&sql);
		return -1;
	}
	res = PQexec(c->conn, sql.s);
	buf_free(&sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "milterctl: %s: %s", path, PQerrorMessage(c->conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	if ((res = ctl_query(c, "INSERT INTO milterd.schema_migrations (version, name)"
	    " VALUES ($1, $2)", 2, params)) == NULL)
		return -1;
	PQclear(res);
	printf("applied %s\n", name);
	return 1;
}

static int
name_is_migration(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 8 && d->d_name[0] >= '0' && d->d_name[0] <= '9' &&
	    d->d_name[1] >= '0' && d->d_name[1] <= '9' &&
	    d->d_name[2] >= '0' && d->d_name[2] <= '9' && d->d_name[3] == '_' &&
	    strcmp(d->d_name + n - 4, ".sql") == 0;
}

/* All pending migrations in one transaction, under an advisory lock so
 * that two MX hosts migrating at once take turns. */
static int
cmd_migrate(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sql-dir", required_argument, NULL, 'd' }, { NULL, 0, NULL, 0 },
	};
	const char *dir = getenv("MILTERD_SQLDIR");
	struct dirent **names = NULL;
	PGresult *res;
	int n, ch, applied = 0, rc = EX_DB;

	if (dir == NULL)
		dir = SQLDIR;
	if (argc < 2 || strcmp(argv[1], "migrate") != 0)
		usage();
	argc--, argv++;
	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'd')
			usage();
		dir = optarg;
	}
	if ((n = scandir(dir, &names, name_is_migration, alphasort)) == -1) {
		fprintf(stderr, "milterctl: %s: %s\n", dir, strerror(errno));
		return EX_CONFIG;
	}
	if ((rc = ctl_connect(c)) != EX_DONE)
		goto out;
	rc = EX_DB;
	if ((res = ctl_query(c, "BEGIN", 0, NULL)) == NULL)
		goto out;
	PQclear(res);
	if ((res = ctl_query(c, "SELECT pg_advisory_xact_lock(hashtext('milterd.migrate'))",
	    0, NULL)) == NULL)
		goto out;
	PQclear(res);
	res = PQexec(c->conn, "SET LOCAL client_min_messages = warning;"
	    "CREATE SCHEMA IF NOT EXISTS milterd;"
	    "CREATE TABLE IF NOT EXISTS milterd.schema_migrations ("
	    " version integer PRIMARY KEY, name text NOT NULL,"
	    " applied_at timestamptz NOT NULL DEFAULT now())");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "milterctl: %s", PQerrorMessage(c->conn));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	for (int i = 0; i < n; i++) {
		int r = cmd_migrate_file(c, dir, names[i]->d_name);

		if (r == -1)
			goto out;
		applied += r;
	}
	if ((res = ctl_query(c, "COMMIT", 0, NULL)) == NULL)
		goto out;
	PQclear(res);
	printf(applied ? "%d migration(s) applied\n" : "schema up to date\n", applied);
	rc = EX_DONE;
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* Sends or prints the challenge of a request just created. */
static int
ctl_challenge(struct ctl *c, const char *account, const char *email, const char *token,
    int lang, int send)
{
	const char *params[1] = { token };
	struct buf msg, err;
	PGresult *res;
	int rc = EX_DONE;

	if ((res = ctl_query(c, "SELECT to_char(expires_at AT TIME ZONE 'UTC',"
	    " 'YYYY-MM-DD HH24:MI \"UTC\"') FROM milterd.requests"
	    " WHERE token_hash = sha256(convert_to($1, 'UTF8'))", 1, params)) == NULL)
		return EX_DB;
	buf_init(&msg);
	buf_init(&err);
	if (challenge_render(c->cfg, account, email, token, lang,
	    PQntuples(res) ? PQgetvalue(res, 0, 0) : "?", &msg, &err) == -1) {
		fprintf(stderr, "milterctl: %s\n", err.s);
		rc = EX_CONFIG;
	} else if (!send)
		fputs(msg.s, stdout);
	else if (challenge_send(c->cfg, msg.s, &err) == -1) {
		fprintf(stderr, "milterctl: challenge not sent: %s\n", err.s);
		rc = EX_SEND;
	} else
		printf("challenge sent to %s\n", email);
	PQclear(res);
	buf_free(&msg);
	buf_free(&err);
	return rc;
}

static int
cmd_request(struct ctl *c, int argc, char **argv)
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
	const char *params[4] = { NULL, NULL, NULL, "fr" };
	char ttl[32], email[400], *at;
	int ch, rc, send = 0, print = 0, lang;
	PGresult *res;

	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'a': params[0] = optarg; break;
		case 'e': params[1] = optarg; break;
		case 't': params[2] = optarg; break;
		case 'l': params[3] = optarg; break;
		case 's': send = 1; break;
		case 'p': print = 1; break;
		default: usage();
		}
	}
	if (params[0] == NULL || params[1] == NULL || optind != argc || (send && print)) {
		fprintf(stderr, "milterctl: request needs --account and --email"
		    " (and at most one of --send, --print)\n");
		return EX_USAGE;
	}
	if ((lang = replies_lang(params[3])) == -1) {
		fprintf(stderr, "milterctl: --lang must be fr or en\n");
		return EX_USAGE;
	}
	/* With a configuration, the policy decides who may be challenged and
	 * for how long; sending and printing need it. */
	if ((send || print || c->config_given || (c->database == NULL &&
	    getenv("MILTERD_DATABASE") == NULL)) && (rc = ctl_config(c)) != EX_DONE)
		return rc;
	if (c->cfg != NULL) {
		str_copy(email, params[1], sizeof(email));
		str_lower(email);
		at = strrchr(str_trim(email), '@');
		if (at == NULL || !policy_domain_allowed(c->cfg->pol, at + 1)) {
			fprintf(stderr, "milterctl: %s: domain not allowed by policy %s\n",
			    params[1], c->cfg->policy);
			return EX_NOTFOUND;
		}
		if (params[2] == NULL) {
			snprintf(ttl, sizeof(ttl), "%d seconds",
			    policy_rules_for(c->cfg->pol, at + 1)->token_ttl);
			params[2] = ttl;
		}
	}
	if (params[2] == NULL)
		params[2] = "7 days";
	if ((rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT milterd.request_verification($1, $2, $3::interval, $4)",
	    4, params)) == NULL)
		return EX_DB;
	if (send || print)
		rc = ctl_challenge(c, params[0], str_trim(email), PQgetvalue(res, 0, 0), lang,
		    send);
	else if (c->json) {
		printf("{\"account\":");
		json_string(stdout, params[0]);
		printf(",\"token\":");
		json_string(stdout, PQgetvalue(res, 0, 0));
		printf("}\n");
	} else
		printf("%s\n", PQgetvalue(res, 0, 0));
	PQclear(res);
	return rc;
}

static const char *const row_fields[] = {
	"account", "email", "state", "created_at", "expires_at", "verified_at",
};
#define NFIELDS (sizeof(row_fields) / sizeof(row_fields[0]))

static void
print_row(const struct ctl *c, PGresult *res, int row, int first)
{
	if (c->json) {
		printf("%s{", first ? "" : ",");
		for (size_t f = 0; f < NFIELDS; f++) {
			printf("%s\"%s\":", f ? "," : "", row_fields[f]);
			if (PQgetisnull(res, row, (int)f))
				printf("null");
			else
				json_string(stdout, PQgetvalue(res, row, (int)f));
		}
		printf("}");
		return;
	}
	for (size_t f = 0; f < NFIELDS; f++)
		printf("%-12s %s\n", row_fields[f], PQgetisnull(res, row, (int)f) ? "-" :
		    PQgetvalue(res, row, (int)f));
}

static int
cmd_status(struct ctl *c, int argc, char **argv)
{
	const char *params[1];
	PGresult *res;
	int rc;

	if (argc != 2)
		usage();
	params[0] = argv[1];
	if ((rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT account, email, state, created_at, expires_at,"
	    " verified_at FROM milterd.verification_status($1)", 1, params)) == NULL)
		return EX_DB;
	if (PQntuples(res) == 0) {
		fprintf(stderr, "milterctl: no request for account %s\n", argv[1]);
		PQclear(res);
		return EX_NOTFOUND;
	}
	print_row(c, res, 0, 1);
	if (c->json)
		printf("\n");
	PQclear(res);
	return EX_DONE;
}

static int
cmd_list(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' }, { NULL, 0, NULL, 0 },
	};
	const char *params[1] = { NULL };
	PGresult *res;
	int ch, rc;

	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 's')
			usage();
		params[0] = optarg;
	}
	if (params[0] != NULL && strcmp(params[0], "pending") != 0 &&
	    strcmp(params[0], "verified") != 0 && strcmp(params[0], "expired") != 0 &&
	    strcmp(params[0], "revoked") != 0) {
		fprintf(stderr, "milterctl: --state must be pending, verified, expired or revoked\n");
		return EX_USAGE;
	}
	if ((rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT account, email, state, created_at, expires_at,"
	    " verified_at FROM milterd.verifications WHERE $1::text IS NULL OR state = $1"
	    " ORDER BY created_at DESC, id DESC", 1, params)) == NULL)
		return EX_DB;
	if (c->json)
		printf("[");
	for (int i = 0; i < PQntuples(res); i++) {
		if (!c->json && i > 0)
			printf("\n");
		print_row(c, res, i, i == 0);
	}
	if (c->json)
		printf("]\n");
	PQclear(res);
	return EX_DONE;
}

static int
cmd_revoke(struct ctl *c, int argc, char **argv)
{
	const char *params[1];
	PGresult *res;
	int rc, n;

	if (argc != 2)
		usage();
	params[0] = argv[1];
	if ((rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT milterd.revoke($1)", 1, params)) == NULL)
		return EX_DB;
	n = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (n == 0) {
		fprintf(stderr, "milterctl: no pending request for account %s\n", argv[1]);
		return EX_NOTFOUND;
	}
	printf("revoked %s\n", argv[1]);
	return EX_DONE;
}

/* The daemon's counters, from its stats file (written every 10 s). */
static int
cmd_stats(struct ctl *c, int argc, char **argv)
{
	char line[512], name[256];
	unsigned long long v;
	int rc, first = 1;
	FILE *fp;

	(void)argv;
	if (argc != 1)
		usage();
	if ((rc = ctl_config(c)) != EX_DONE)
		return rc;
	if (c->cfg->stats_file[0] == '\0') {
		fprintf(stderr, "milterctl: stats_file is not set in %s\n", c->config_path);
		return EX_CONFIG;
	}
	if ((fp = fopen(c->cfg->stats_file, "r")) == NULL) {
		fprintf(stderr, "milterctl: %s: %s (is milterd running?)\n", c->cfg->stats_file,
		    strerror(errno));
		return EX_NOTFOUND;
	}
	if (c->json)
		printf("{");
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (line[0] == '#' || sscanf(line, "%255s %llu", name, &v) != 2)
			continue;
		if (c->json) {
			printf("%s", first ? "" : ",");
			json_string(stdout, name);
			printf(":%llu", v);
		} else
			printf("%-72s %llu\n", name, v);
		first = 0;
	}
	if (c->json)
		printf("}\n");
	fclose(fp);
	return EX_DONE;
}

/* Reads an .eml into headers (name, raw value after the colon, folding kept
 * as CRLF) and a CRLF body, feeding them to the session. -1 if unreadable. */
static int
check_feed(struct session *s, const char *path)
{
	struct buf text, name, value, body;
	const char *p, *nl, *colon;
	size_t len;
	int inbody = 0;

	buf_init(&text);
	if (buf_read_file(&text, path) == -1) {
		fprintf(stderr, "milterctl: %s: %s\n", path, strerror(errno));
		buf_free(&text);
		return -1;
	}
	buf_init(&name);
	buf_init(&value);
	buf_init(&body);
	for (p = text.s; *p; p = nl ? nl + 1 : p + len) {
		nl = strchr(p, '\n');
		len = nl ? (size_t)(nl - p) : strlen(p);
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
			session_header(s, name.s, value.s);
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
			buf_free(&text);
			return -1;
		}
		buf_append(&name, p, (size_t)(colon - p));
		buf_append(&value, colon + 1, len - (size_t)(colon - p) - 1);
	}
	if (!inbody) {
		if (name.len > 0)
			session_header(s, name.s, value.s);
		session_eoh(s);
	}
	if (body.len > 0)
		session_body(s, (const unsigned char *)body.s, body.len);
	buf_free(&text);
	buf_free(&name);
	buf_free(&value);
	buf_free(&body);
	return 0;
}

static const char *
check_dkim_result(enum dkimv_result r)
{
	switch (r) {
	case DKIMV_PASS:	return "pass";
	case DKIMV_FAIL:	return "fail";
	case DKIMV_TEMPERROR:	return "temperror";
	case DKIMV_PERMERROR:	return "permerror";
	}
	return "?";
}

/* Every step of the decision, for people or (--json) for scripts. */
static void
check_print(const struct ctl *c, const struct session *s, const struct session_eom *e,
    const struct verdict *v)
{
	const struct policy_decision *d = &e->decision;
	const struct msg *m = &s->msg;
	const char *reply = v->action == VA_REPLY ? v->rcode :
	    v->action == VA_DISCARD ? "discard" : "250";

	if (c->json) {
		printf("{\"client\":");
		json_string(stdout, s->client_addr);
		printf(",\"helo\":");
		json_string(stdout, s->helo);
		printf(",\"mail_from\":");
		json_string(stdout, m->mail_from);
		printf(",\"request\":%lld,\"account\":", m->req.id);
		json_string(stdout, m->req.account);
		printf(",\"from\":");
		json_string(stdout, d->from_ok ? d->from.addr : "");
		printf(",\"signatures\":[");
		for (int i = 0; i < e->nsigs; i++) {
			printf("%s{\"d\":", i ? "," : "");
			json_string(stdout, e->sigs[i].domain);
			printf(",\"s\":");
			json_string(stdout, e->sigs[i].selector);
			printf(",\"a\":");
			json_string(stdout, e->sigs[i].algorithm);
			printf(",\"bits\":%u,\"result\":\"%s\",\"aligned\":%s,"
			    "\"token_signed\":%s,\"why\":", e->sigs[i].key_bits,
			    check_dkim_result(e->sigs[i].result),
			    d->verdicts[i].aligned ? "true" : "false",
			    d->verdicts[i].binds_token ? "true" : "false");
			json_string(stdout, d->verdicts[i].why ? d->verdicts[i].why : "");
			printf("}");
		}
		printf("],\"spf_mailfrom\":\"%s\",\"spf_aligned\":%s,\"spf_helo\":\"%s\","
		    "\"reason\":\"%s\",\"detail\":", e->has_mailfrom ?
		    spf_result_name(e->spf_mailfrom.result) : "none",
		    d->spf_aligned ? "true" : "false", spf_result_name(e->spf_helo.result),
		    reason_name(v->reason));
		json_string(stdout, d->detail);
		printf(",\"reply\":\"%s\",\"xcode\":", reply);
		json_string(stdout, v->xcode ? v->xcode : "");
		printf(",\"text\":");
		json_string(stdout, v->action == VA_REPLY ? v->text : "");
		printf("}\n");
		return;
	}
	printf("client      %s, helo %s\n", s->client_addr, s->helo);
	printf("mail from   %s\n", m->mail_from);
	printf("request     %lld, account %s, state %s (token %s)\n", m->req.id,
	    m->req.account, store_state_name(m->req.state), m->hash_prefix);
	if (d->from_ok)
		printf("from        %s (domain %s, %s by policy)\n", d->from.addr,
		    d->from.domain, policy_domain_allowed(s->cfg->pol, d->from.domain) ?
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
	    e->has_mailfrom ? (d->spf_aligned ? " (aligned)" : " (not aligned)") : "",
	    spf_result_name(e->spf_helo.result), e->internal_client ? " (internal client)" : "");
	printf("decision    %s: %s\n", reason_name(v->reason), d->detail);
	if (v->action == VA_REPLY)
		printf("reply       %s %s %s\n", v->rcode, v->xcode, v->text);
	else
		printf("reply       %s\n", reply);
}

/* Decides on a message with the daemon's own code path (session.c), without
 * writing anything unless --commit. */
static int
cmd_check(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "client-ip", required_argument, NULL, 'i' },
		{ "helo", required_argument, NULL, 'h' },
		{ "mail-from", required_argument, NULL, 'm' },
		{ "rcpt", required_argument, NULL, 'r' },
		{ "commit", no_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ip = NULL, *helo = "", *mailfrom = NULL, *rcpt = NULL;
	struct session *s = NULL;
	struct session_eom e;
	struct verdict v;
	struct store *st = NULL;
	struct dns *dns = NULL;
	struct buf err;
	int ch, rc, commit = 0;

	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'i': ip = optarg; break;
		case 'h': helo = optarg; break;
		case 'm': mailfrom = optarg; break;
		case 'r': rcpt = optarg; break;
		case 'c': commit = 1; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || ip == NULL || mailfrom == NULL || rcpt == NULL) {
		fprintf(stderr, "milterctl: check needs FILE.eml, --client-ip, --mail-from"
		    " and --rcpt\n");
		return EX_USAGE;
	}
	if ((rc = ctl_config(c)) != EX_DONE)
		return rc;
	buf_init(&err);
	memset(&e, 0, sizeof(e));
	buf_init(&e.authres);
	rc = EX_CONFIG;
	if (session_init_libs(c->cfg, &dns, &err) == -1) {
		fprintf(stderr, "milterctl: %s\n", err.s);
		goto out;
	}
	rc = EX_DB;
	if ((st = store_open(c->database ? c->database : getenv("MILTERD_DATABASE") ?
	    getenv("MILTERD_DATABASE") : c->cfg->database, 1, c->cfg->db_timeout)) == NULL ||
	    (s = session_new(c->cfg)) == NULL)
		goto out;
	s->dry_run = !commit;
	s->leadspc = 1;		/* values are given exactly as in the file */
	rc = EX_USAGE;
	if (session_set_client_text(s, "", ip) == -1) {
		fprintf(stderr, "milterctl: --client-ip %s is not an IP address\n", ip);
		goto out;
	}
	str_copy(s->helo, helo, sizeof(s->helo));
	session_msg_reset(s);
	str_copy(s->msg.qid, "milterctl", sizeof(s->msg.qid));
	str_copy(s->msg.mail_from, mailfrom, sizeof(s->msg.mail_from));
	if (session_rcpt(s, st, rcpt, &v) != 0) {
		printf(c->json ? "{\"stage\":\"rcpt\",\"reason\":\"%s\",\"reply\":\"%s\","
		    "\"xcode\":\"%s\",\"text\":" : "rcpt        %s: %s %s ", reason_name(v.reason),
		    v.rcode, v.xcode);
		if (c->json) {
			json_string(stdout, v.text);
			printf("}\n");
		} else
			printf("%s\n", v.text);
		rc = v.rcode[0] == '4' ? EX_TEMPORARY : EX_NOTFOUND;
		goto out;
	}
	if (!s->msg.has_token) {
		fprintf(stderr, "milterctl: %s is not a verification address of %s\n", rcpt,
		    c->cfg->verify_address);
		goto out;
	}
	if (check_feed(s, argv[optind]) == -1)
		goto out;
	session_eom(s, st, &e);
	v = e.verdict;
	if (v.action != VA_REPLY)
		v.reason = reason_parse(e.final_reason);
	check_print(c, s, &e, &v);
	rc = v.action == VA_REPLY ? (v.rcode[0] == '4' ? EX_TEMPORARY : EX_NOTFOUND) : EX_DONE;
out:
	session_eom_free(&e);
	session_free(s);
	store_close(st);
	if (dns != NULL)
		session_shutdown_libs(dns);
	buf_free(&err);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "database", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct {
		const char *name;
		int (*fn)(struct ctl *, int, char **);
	} cmds[] = {
		{ "db", cmd_migrate }, { "request", cmd_request }, { "status", cmd_status },
		{ "list", cmd_list }, { "revoke", cmd_revoke }, { "check", cmd_check },
		{ "stats", cmd_stats },
	};
	struct ctl c = { .config_path = CONFIG_DEFAULT_PATH };
	int ch, rc = -1;

	signal(SIGPIPE, SIG_IGN);	/* a sendmail that exits early */
	log_open("milterctl", 1, LOG_MAIL);
	log_set_level(LOG_WARNING);
	while ((ch = getopt_long(argc, argv, "+c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': c.config_path = optarg; c.config_given = 1; break;
		case 'd': c.database = optarg; break;
		case 'j': c.json = 1; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[0], cmds[i].name) == 0)
			rc = cmds[i].fn(&c, argc, argv);
	if (rc == -1) {
		fprintf(stderr, "milterctl: unknown command '%s'\n", argv[0]);
		usage();
	}
	if (c.conn != NULL)
		PQfinish(c.conn);
	config_unref(c.cfg);
	return rc;
}
