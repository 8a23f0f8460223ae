/* milterctl.c — the admin CLI: schema migrations, requests, status, listing, revocation. */
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "buf.h"
#include "config.h"

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
};

struct ctl {
	const char	*config_path;
	const char	*database;
	int		 json;
	PGconn		*conn;
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: milterctl [-c FILE] [--database CONNINFO] [--json] COMMAND ...\n"
	    "commands:\n"
	    "  db migrate [--sql-dir DIR]          apply pending schema migrations\n"
	    "  request --account A --email E [--ttl INTERVAL]\n"
	    "                                      create a request, print its token once\n"
	    "  status ACCOUNT                      state of the account's latest request\n"
	    "  list [--state S]                    requests, newest first\n"
	    "  revoke ACCOUNT                      revoke the account's pending request\n");
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
	struct config *cfg = NULL;
	struct buf errors;
	const char *conninfo = c->database;

	if (conninfo == NULL)
		conninfo = getenv("MILTERD_DATABASE");
	if (conninfo == NULL) {
		buf_init(&errors);
		if ((cfg = config_load(c->config_path, &errors)) == NULL) {
			fprintf(stderr, "%smilterctl: fix the configuration or pass --database\n",
			    errors.s);
			buf_free(&errors);
			return EX_CONFIG;
		}
		buf_free(&errors);
		conninfo = cfg->database;
	}
	c->conn = PQconnectdb(conninfo);
	config_unref(cfg);
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
	FILE *fp;
	size_t n;
	char chunk[8192];

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
	if ((fp = fopen(path, "r")) == NULL) {
		fprintf(stderr, "milterctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	buf_init(&sql);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		buf_append(&sql, chunk, n);
	fclose(fp);
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
	optind = 1;
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

static int
cmd_request(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "account", required_argument, NULL, 'a' },
		{ "email", required_argument, NULL, 'e' },
		{ "ttl", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *params[3] = { NULL, NULL, "7 days" };
	PGresult *res;
	int ch, rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'a': params[0] = optarg; break;
		case 'e': params[1] = optarg; break;
		case 't': params[2] = optarg; break;
		default: usage();
		}
	}
	if (params[0] == NULL || params[1] == NULL || optind != argc) {
		fprintf(stderr, "milterctl: request needs --account and --email\n");
		return EX_USAGE;
	}
	if ((rc = ctl_connect(c)) != EX_DONE)
		return rc;
	if ((res = ctl_query(c, "SELECT milterd.request_verification($1, $2, $3::interval)",
	    3, params)) == NULL)
		return EX_DB;
	if (c->json) {
		printf("{\"account\":");
		json_string(stdout, params[0]);
		printf(",\"token\":");
		json_string(stdout, PQgetvalue(res, 0, 0));
		printf("}\n");
	} else
		printf("%s\n", PQgetvalue(res, 0, 0));
	PQclear(res);
	return EX_DONE;
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

	optind = 1;
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
		{ "list", cmd_list }, { "revoke", cmd_revoke },
	};
	struct ctl c = { .config_path = CONFIG_DEFAULT_PATH };
	int ch, rc = -1;

	while ((ch = getopt_long(argc, argv, "+c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': c.config_path = optarg; break;
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
	return rc;
}
