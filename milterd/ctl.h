/* ctl.h — what the milterctl commands share: the options, the database
 * connection, the configuration snapshot, JSON output, exit codes. */
#ifndef MILTERD_CTL_H
#define MILTERD_CTL_H

#include <stdio.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "snapshot.h"

/* Exit codes, documented in milterctl(8). */
enum {
	EX_DONE = 0,
	EX_NOTFOUND = 1,	/* unknown account, refused, nothing to do */
	EX_USAGE = 2,
	EX_DB = 3,		/* database unreachable or refused */
	EX_CONFIG = 4,
	EX_SEND = 5,		/* a challenge not submitted, or output not written */
	EX_TEMPORARY = 5,	/* check: the daemon would answer 4xx */
};

struct ctl {
	const char	*config_path;
	const char	*database;	/* --database */
	int		 json;
	int		 config_given;	/* -c on the command line */
	int		 any_schema;	/* db migrate: no schema version check */
	PGconn		*conn;
	struct snapshot	*snap;		/* loaded on demand */
	char		 sqlstate[6];	/* of the last failed query */
	int		 sendmail_stalled;	/* a challenge's sendmail timed out */
};

void		 ctl_usage(void) __attribute__((noreturn));
/* A whole number from lo to hi written in decimal digits alone; -1 if not. */
long		 ctl_number(const char *, long lo, long hi);
/* Loads the configuration snapshot once; EX_DONE or EX_CONFIG (reported). */
int		 ctl_config(struct ctl *);
/* The conninfo: --database, else the configuration's when -c is given, else
 * MILTERD_DATABASE, else the (default) configuration's;
 * NULL (reported) when the configuration is needed and broken. */
const char	*ctl_conninfo(struct ctl *);
/* connect_timeout for milterctl's connections, a key to pass before dbname
 * (which the conninfo may then override): "" when PGCONNECT_TIMEOUT is set,
 * so that libpq takes it, else 10 seconds. */
const char	*ctl_connect_timeout(void);
int		 ctl_connect(struct ctl *);
/* A parameterised query; NULL with the error printed and c->sqlstate set. */
PGresult	*ctl_query(struct ctl *, const char *sql, int n, const char *const *params);
/* Prints a JSON value on one line (to stdout; ctl_json_fprint: to fp) and
 * releases it. */
void		 ctl_json_print(json_t *);
void		 ctl_json_fprint(FILE *, json_t *);
/* A text as a JSON string; bytes that are not UTF-8 become '?' rather than
 * the whole document failing. */
json_t		*ctl_json_text(const char *);
/* A result row as a JSON object: column names as keys, NULL as null. */
json_t		*ctl_json_row(const PGresult *, int row);

/* Flushes standard output: 1 if all that was printed reached it, else 0
 * (reported). */
int		 ctl_stdout_ok(void);
/* Deletes the pending request of a token nobody got (its challenge not sent,
 * or its token or challenge not printed), so that the next run asks again. */
void		 ctl_withdraw(struct ctl *, const char *token);

/* Renders the challenge of a request just created from its token, and sends
 * it (sendmail) or prints it. kind: "challenge" or "recertify". A request
 * whose challenge could not be sent or printed is withdrawn (EX_SEND):
 * nobody knows its token, and the next run asks again; a sendmail killed for
 * its time also sets c->sendmail_stalled. The line saying it was sent is the
 * command's JSON document when doc is set (request --send); otherwise, with
 * --json, it is text on stderr, so that stdout holds one document. */
int		 ctl_challenge(struct ctl *, const char *kind, const char *account,
		    const char *email, const char *token, int lang, int send, int doc);

/* Creates a request (milterd.request_verification()): EX_DONE with its token
 * in tok; EX_NOTFOUND (reported) when its address already certifies as many
 * accounts as the policy allows; EX_DB. */
int		 ctl_new_request(struct ctl *, const char *account, const char *email,
		    const char *ttl, const char *lang, const char *accounts_per_address,
		    char *tok, size_t toksize);

int		 cmd_request(struct ctl *, int, char **);
int		 cmd_address(struct ctl *, int, char **);
int		 cmd_check(struct ctl *, int, char **);
int		 cmd_follow(struct ctl *, int, char **);
int		 cmd_recertify(struct ctl *, int, char **);
int		 cmd_prune(struct ctl *, int, char **);

#endif
