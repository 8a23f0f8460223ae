/* milterctl.c — the admin CLI: schema migrations, status, listing,
 * revocation, counters, and the commands' shared plumbing (requests and
 * address changes: ctl_request.c). */
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ctl.h"
#include "log.h"
#include "store.h"

#ifndef SQLDIR
#define SQLDIR "/usr/local/share/milterd/sql"
#endif

int
ctl_config(struct ctl *c)
{
	struct buf errors;

	if (c->snap != NULL)
		return EX_DONE;
	buf_init(&errors);
	c->snap = snapshot_load(c->config_path, &errors);
	if (c->snap == NULL)
		fprintf(stderr, "%smilterctl: fix the configuration (-c FILE)\n", errors.s);
	buf_free(&errors);
	return c->snap ? EX_DONE : EX_CONFIG;
}

/* The usage text: to stdout for --help (exit 0), to stderr for a usage error
 * (exit 2), as GNU's tools do: "milterctl --help | less" then works. */
static void
ctl_usage_print(FILE *fp)
{
	fprintf(fp,
	    "usage: milterctl [-c FILE] [--database CONNINFO] [--json] COMMAND ...\n"
	    "  or:  milterctl -V|--version\n"
	    "commands:\n"
	    "  db migrate [--sql-dir DIR]          apply pending schema migrations\n"
	    "  db prune [--batch N]                delete evidence and finished requests past\n"
	    "                                      their retention (milterd.conf)\n"
	    "  request --account A --email E [--ttl INTERVAL] [--lang fr|en] [--send|--print]\n"
	    "                                      create a request; print its token once, or\n"
	    "                                      send (sendmail -t -i) or print its challenge\n"
	    "  address --account A --email E [--lang fr|en] [--send|--print]\n"
	    "                                      the account's current address: a certification\n"
	    "                                      of another one ends; challenge the new one\n"
	    "  recertify                           lapse ended certifications, challenge those\n"
	    "                                      near their end (run daily)\n"
	    "  follow [--exec PROGRAM] [--jobs N] [--once] [--timeout S]\n"
	    "                                      run PROGRAM EVENT ACCOUNT EMAIL on each\n"
	    "                                      verification, lapse, address change (up to\n"
	    "                                      N at once, one per account; default 4)\n"
	    "  check FILE.eml|- --client-ip IP [--helo H] --mail-from M --rcpt R [--commit]\n"
	    "                                      decide on a message as the daemon would\n"
	    "  status ACCOUNT                      the account's certification\n"
	    "  list [--state S]                    requests, newest first\n"
	    "  revoke ACCOUNT                      revoke the account's pending request and end\n"
	    "                                      its certification\n"
	    "  stats                               the daemon's counters\n");
}

void
ctl_usage(void)
{
	ctl_usage_print(stderr);
	exit(EX_USAGE);
}

long
ctl_number(const char *s, long lo, long hi)
{
	char *end;
	long n;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	n = strtol(s, &end, 10);
	return errno == 0 && *end == '\0' && n >= lo && n <= hi ? n : -1;
}

void
ctl_json_fprint(FILE *fp, json_t *v)
{
	/* JSON_ENSURE_ASCII: any byte the database holds comes out valid. */
	if (v != NULL && json_dumpf(v, fp, JSON_COMPACT | JSON_ENSURE_ASCII) == 0)
		putc('\n', fp);
	json_decref(v);
}

void
ctl_json_print(json_t *v)
{
	ctl_json_fprint(stdout, v);
}

/* A text column as JSON: invalid UTF-8 would make jansson refuse the whole
 * document, so such a value is given with its bytes replaced. */
json_t *
ctl_json_text(const char *s)
{
	json_t *v = json_string(s);
	char *copy;

	if (v != NULL || (copy = strdup(s)) == NULL)
		return v;
	for (unsigned char *p = (unsigned char *)copy; *p; p++)
		if (*p >= 0x80)
			*p = '?';
	v = json_string(copy);
	free(copy);
	return v;
}

json_t *
ctl_json_row(const PGresult *res, int row)
{
	json_t *o = json_object();

	for (int f = 0; o != NULL && f < PQnfields(res); f++)
		json_object_set_new(o, PQfname(res, f), PQgetisnull(res, row, f) ? json_null() :
		    ctl_json_text(PQgetvalue(res, row, f)));
	return o;
}

/* The schema must be at least the one this milterctl was built for: an older
 * one fails with raw SQL errors ("column valid_until does not exist"). */
static int
ctl_schema_check(struct ctl *c)
{
	struct buf err;
	int rc = EX_DONE;

	buf_init(&err);
	if (store_schema_check(c->conn, "this milterctl", &err) == -1) {
		fprintf(stderr, "milterctl: %s\n", err.s);
		rc = EX_DB;
	}
	buf_free(&err);
	return rc;
}

/* A command waits at most CTL_LOCK_TIMEOUT for a lock another session holds
 * (the account's, a request row), unless the role or database sets its own
 * lock_timeout: a transaction left open elsewhere then fails the command
 * (exit 3, with the server's message) instead of hanging the script that ran
 * it. Not for db migrate: a migration that gave up would leave milterd's
 * queries queued behind its lock request for nothing. */
#define CTL_LOCK_TIMEOUT "10s"

static int
ctl_lock_bound(struct ctl *c)
{
	PGresult *res;

	if ((res = ctl_query(c, "SELECT CASE WHEN current_setting('lock_timeout') = '0'"
	    " THEN set_config('lock_timeout', '" CTL_LOCK_TIMEOUT "', false) END", 0,
	    NULL)) == NULL)
		return EX_DB;
	PQclear(res);
	return EX_DONE;
}

const char *
ctl_conninfo(struct ctl *c)
{
	if (c->database != NULL)
		return c->database;
	/* -c names an instance on the command line: it wins over the
	 * environment, or with MILTERD_DATABASE exported for one instance,
	 * -c other.conf revoke bob would revoke bob in the first one's
	 * database, and a -c FILE that does not exist would go unnoticed. */
	if (!c->config_given && getenv("MILTERD_DATABASE") != NULL)
		return getenv("MILTERD_DATABASE");
	if (ctl_config(c) != EX_DONE) {
		fprintf(stderr, "milterctl: or pass --database\n");
		return NULL;
	}
	return c->snap->cfg->database;
}

/* Twice milterd's db_timeout default: no SMTP client waits on milterctl, but
 * a cron run or the recertify timer does, and libpq's own default is to wait
 * for ever: a database host gone silent hung each run, behind the last. */
const char *
ctl_connect_timeout(void)
{
	return getenv("PGCONNECT_TIMEOUT") != NULL ? "" : "10";
}

int
ctl_connect(struct ctl *c)
{
	/* Keys before dbname are defaults the conninfo (expand_dbname) may override. */
	const char *keys[] = { "connect_timeout", "dbname", NULL };
	const char *vals[] = { ctl_connect_timeout(), NULL, NULL };

	if (c->conn != NULL)
		return EX_DONE;
	if ((vals[1] = ctl_conninfo(c)) == NULL)
		return EX_CONFIG;
	c->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(c->conn) != CONNECTION_OK) {
		fprintf(stderr, "milterctl: cannot connect to the database: %s",
		    PQerrorMessage(c->conn));
		return EX_DB;
	}
	if (c->any_schema)
		return EX_DONE;
	return ctl_lock_bound(c) == EX_DONE ? ctl_schema_check(c) : EX_DB;
}

PGresult *
ctl_query(struct ctl *c, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(c->conn, sql, n, NULL, params, NULL, NULL, 0);
	const char *state;

	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		(void)str_copy(c->sqlstate, state ? state : "", sizeof(c->sqlstate));
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
	if (argc >= 2 && strcmp(argv[1], "prune") == 0)
		return cmd_prune(c, argc - 1, argv + 1);
	if (argc < 2 || strcmp(argv[1], "migrate") != 0)
		ctl_usage();
	argc--, argv++;
	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'd')
			ctl_usage();
		dir = optarg;
	}
	if (optind != argc)
		ctl_usage();
	if ((n = scandir(dir, &names, name_is_migration, alphasort)) == -1) {
		fprintf(stderr, "milterctl: %s: %s\n", dir, strerror(errno));
		return EX_CONFIG;
	}
	/* A wrong directory would otherwise say "schema up to date" over an
	 * empty database, and every other command "run milterctl db migrate". */
	if (n == 0) {
		fprintf(stderr, "milterctl: %s: no migration (NNN_name.sql) in this directory"
		    " (--sql-dir, MILTERD_SQLDIR)\n", dir);
		free(names);
		return EX_CONFIG;
	}
	c->any_schema = 1;
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

int
ctl_stdout_ok(void)
{
	int e = fflush(stdout) == EOF ? errno : 0;

	if (!ferror(stdout))
		return 1;
	fprintf(stderr, "milterctl: standard output: %s\n", e ? strerror(e) : "write error");
	return 0;
}

/* The columns status and list print, in order. */
#define CTL_ROW_COLUMNS "account, email, state, created_at, expires_at, verified_at, valid_until"

static void
print_row(const struct ctl *c, PGresult *res, int row)
{
	if (c->json) {
		ctl_json_print(ctl_json_row(res, row));
		return;
	}
	for (int f = 0; f < PQnfields(res); f++) {
		const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, f);

		printf("%-12s ", PQfname(res, f));
		if (PQgetisnull(res, row, f))
			putchar('-');
		/* A control byte in a value (an account name from the backend)
		 * must not forge a line or drive the terminal: shown as \xNN. */
		for (; *p; p++)
			if (*p < ' ' || *p == 0x7f)
				printf("\\x%02x", *p);
			else
				putchar(*p);
		putchar('\n');
	}
}

/* status and revoke take one account: said, rather than the whole usage
 * with nothing naming what was wrong (revoke alice bob revokes neither). */
static int
ctl_one_account(const char *cmd)
{
	fprintf(stderr, "milterctl: %s takes one ACCOUNT (milterctl --help)\n", cmd);
	return EX_USAGE;
}

static int
cmd_status(struct ctl *c, int argc, char **argv)
{
	const char *params[1];
	PGresult *res;
	int rc;

	if (argc != 2)
		return ctl_one_account(argv[0]);
	params[0] = argv[1];
	if ((rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT " CTL_ROW_COLUMNS
	    " FROM milterd.verification_status($1)", 1, params)) == NULL)
		return EX_DB;
	if (PQntuples(res) == 0) {
		fprintf(stderr, "milterctl: no request for account %s\n", argv[1]);
		PQclear(res);
		return EX_NOTFOUND;
	}
	print_row(c, res, 0);
	PQclear(res);
	return EX_DONE;
}

static int
cmd_list(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' }, { NULL, 0, NULL, 0 },
	};
	static const char *const states[] = { "pending", "verified", "expired", "revoked",
	    "lapsed", "address_changed", "renewed" };
	const char *params[1] = { NULL };
	PGresult *res;
	json_t *all;
	int ch, rc, known = 0;

	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 's')
			ctl_usage();
		params[0] = optarg;
	}
	if (optind != argc)
		ctl_usage();
	for (size_t i = 0; params[0] != NULL && i < sizeof(states) / sizeof(states[0]); i++)
		known |= strcmp(params[0], states[i]) == 0;
	if (params[0] != NULL && !known) {
		fprintf(stderr, "milterctl: --state must be pending, verified, expired, revoked,"
		    " lapsed, address_changed or renewed\n");
		return EX_USAGE;
	}
	if ((rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT " CTL_ROW_COLUMNS " FROM milterd.verifications"
	    " WHERE $1::text IS NULL OR state = $1 ORDER BY created_at DESC, id DESC", 1,
	    params)) == NULL)
		return EX_DB;
	if (c->json) {
		all = json_array();
		for (int i = 0; i < PQntuples(res); i++)
			json_array_append_new(all, ctl_json_row(res, i));
		ctl_json_print(all);
	} else
		for (int i = 0; i < PQntuples(res); i++) {
			if (i > 0)
				printf("\n");
			print_row(c, res, i);
		}
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
		return ctl_one_account(argv[0]);
	params[0] = argv[1];
	if ((rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT milterd.revoke($1)", 1, params)) == NULL)
		return EX_DB;
	n = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (n == 0) {
		fprintf(stderr, "milterctl: nothing to revoke for account %s (no pending request,"
		    " no certification)\n", argv[1]);
		return EX_NOTFOUND;
	}
	if (c->json)
		ctl_json_print(json_pack("{s:o, s:i}", "account", ctl_json_text(argv[1]),
		    "revoked", n));
	else
		printf("revoked %s\n", argv[1]);
	return EX_DONE;
}

/* The daemon's counters, from its stats file (written every 10 s). */
static int
cmd_stats(struct ctl *c, int argc, char **argv)
{
	char line[512], name[256], v[64];
	json_t *all = NULL;
	int rc;
	FILE *fp;

	(void)argv;
	if (argc != 1)
		ctl_usage();
	if ((rc = ctl_config(c)) != EX_DONE)
		return rc;
	if (c->snap->cfg->stats_file[0] == '\0') {
		fprintf(stderr, "milterctl: stats_file is not set in %s\n", c->config_path);
		return EX_CONFIG;
	}
	if ((fp = fopen(c->snap->cfg->stats_file, "r")) == NULL) {
		fprintf(stderr, "milterctl: %s: %s (is milterd running?)\n",
		    c->snap->cfg->stats_file, strerror(errno));
		return EX_NOTFOUND;
	}
	if (c->json)
		all = json_object();
	/* Counts are integers; seconds (the group commit's) have a fraction,
	 * shown as written. */
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (line[0] == '#' || sscanf(line, "%255s %63s", name, v) != 2)
			continue;
		if (!c->json)
			printf("%-72s %s\n", name, v);
		else if (strchr(v, '.') != NULL)
			json_object_set_new(all, name, json_real(strtod(v, NULL)));
		else
			json_object_set_new(all, name,
			    json_integer((json_int_t)strtoll(v, NULL, 10)));
	}
	if (c->json)
		ctl_json_print(all);
	fclose(fp);
	return EX_DONE;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "database", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct {
		const char *name;
		int (*fn)(struct ctl *, int, char **);
	} cmds[] = {
		{ "db", cmd_migrate }, { "request", cmd_request }, { "address", cmd_address },
		{ "status", cmd_status }, { "list", cmd_list }, { "revoke", cmd_revoke },
		{ "check", cmd_check }, { "stats", cmd_stats }, { "recertify", cmd_recertify },
		{ "follow", cmd_follow },
	};
	struct ctl c = { .config_path = CONFIG_DEFAULT_PATH };
	int ch, rc = -1;

	signal(SIGPIPE, SIG_IGN);	/* a sendmail that exits early */
	log_open("milterctl", 1, LOG_MAIL);
	log_set_level(LOG_WARNING);
	while ((ch = getopt_long(argc, argv, "+c:V", opts, NULL)) != -1) {
		switch (ch) {
		case 'V': printf("milterctl %s\n", MILTERD_VERSION); return EX_DONE;
		case 'c': c.config_path = optarg; c.config_given = 1; break;
		case 'd': c.database = optarg; break;
		case 'j': c.json = 1; break;
		case 'h': ctl_usage_print(stdout); return ctl_stdout_ok() ? EX_DONE : EX_SEND;
		default: ctl_usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		ctl_usage();
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[0], cmds[i].name) == 0)
			rc = cmds[i].fn(&c, argc, argv);
	if (rc == -1) {
		fprintf(stderr, "milterctl: unknown command '%s'\n", argv[0]);
		ctl_usage();
	}
	/* Whatever the command, a result that did not reach its reader is not
	 * a success. */
	if (rc == EX_DONE && !ctl_stdout_ok())
		rc = EX_SEND;
	if (c.conn != NULL)
		PQfinish(c.conn);
	snapshot_unref(c.snap);
	return rc;
}
