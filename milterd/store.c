/* store.c — libpq connection pool: connections, prepared statements, time limits, the request lookup. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "log.h"
#include "stats.h"
#include "store.h"
#include "store_pool.h"

/* Statements prepared on every pooled connection. */
static const struct {
	const char *name;
	const char *sql;
	int	    nparams;
} store_statements[] = {
	/* The request, without the other accounts its address certifies:
	 * record()'s guard counts them under the address lock, and a write it
	 * refuses returns the count (session_record). Counted here too, they
	 * cost every reply with a token 0.05 ms of PostgreSQL CPU, 40% of the
	 * lookup (a pgbench script of this lookup, 8 clients, durable
	 * PostgreSQL 15: 0.106-0.124 ms with the count, 0.069-0.074 without),
	 * to spare the rare reply from an address in use a second statement. */
	{ "lookup",
	  "SELECT id, account, email, milterd.state_now(state, expires_at, valid_until),"
	  " attempts, extract(epoch FROM created_at)::float8,"
	  " extract(epoch FROM expires_at)::float8, lang"
	  " FROM milterd.requests WHERE token_hash = $1", 1 },
	/* The last column: whether standbys are named to confirm commits now
	 * (a reload may change it): store_wants_durable (store_record.c). */
	{ "record",
	  "SELECT recorded, verified, state, attempts, holders,"
	  " current_setting('synchronous_standby_names') <> '' FROM milterd.record($1, $2,"
	  " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
	  " $20, $21)", 21 },
	{ "evidence",
	  "SELECT milterd.record_evidence($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
	  " $13, $14, $15, $16, $17)", 17 },
	/* The rows of a group, in order, in one transaction (store_group_exec,
	 * store_record.c): each array holds one of record()'s arguments.
	 * record_group (009) writes them with set statements when their
	 * addresses, requests and accounts are distinct, else row by row through
	 * record(), each row seeing what the rows before it wrote (an address
	 * taken, a request verified). The last column as in "record". */
	{ "record_group",
	  "SELECT recorded, verified, state, attempts, holders,"
	  " current_setting('synchronous_standby_names') <> '' FROM milterd.record_group($1, $2,"
	  " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
	  " $20, $21)", 21 },
	/* A write of its own (a transactional WAL message: no table, no row
	 * lock), committed at the server's synchronous_commit ($1): store_durable (store_record.c). */
	{ "durable",
	  "SELECT set_config('synchronous_commit', $1, true),"
	  " pg_catalog.pg_logical_emit_message(true, 'milterd', 'verified')", 1 },
};

#define NSTATEMENTS (sizeof(store_statements) / sizeof(store_statements[0]))

void
store_set_dry_run(struct store *st, int on)
{
	st->dry_run = on;
}

void
store_set_commit_timeout(struct store *st, int seconds)
{
	st->commit_timeout = seconds;
}

void
store_set_wait_hook(struct store *st, void (*before_wait)(void))
{
	st->before_wait = before_wait;
}

void
store_watch_replication(struct store *st)
{
	st->watch = 1;
}

struct store *
store_open(const char *conninfo, const char *appname, int size, int timeout)
{
	struct store *st;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->conninfo = strdup(conninfo);
	st->slots = calloc((size_t)size, sizeof(*st->slots));
	if (st->conninfo == NULL || st->slots == NULL) {
		free(st->conninfo);
		free(st->slots);
		free(st);
		return NULL;
	}
	st->size = size;
	st->timeout = timeout;
	st->commit_timeout = timeout;
	/* config.c bounds instance_name to 63 characters: it fits. */
	(void)str_copy(st->appname, appname, sizeof(st->appname));
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->freed, NULL);
	pthread_mutex_init(&st->group_lock, NULL);
	/* A leader's wait is bounded on the monotonic clock (store_record.c). */
	pthread_condattr_init(&st->group_attr);
	pthread_condattr_setclock(&st->group_attr, CLOCK_MONOTONIC);
	st->group_tail = &st->group_head;
	return st;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	store_tokens_stop(st->tokens);
	for (int i = 0; i < st->size; i++)
		if (st->slots[i].conn != NULL)
			PQfinish(st->slots[i].conn);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->freed);
	pthread_mutex_destroy(&st->group_lock);
	pthread_condattr_destroy(&st->group_attr);
	free(st->slots);
	free(st->conninfo);
	free(st);
}

/* libpq's text of an error, on one line: its DETAIL and HINT lines, and the
 * final newline, would otherwise break a log line in two. */
void
store_error(struct buf *err, const char *what, const char *msg)
{
	size_t start;

	buf_printf(err, "%s: ", what);
	start = err->len;
	buf_puts(err, msg);
	if (buf_failed(err))
		return;
	{
		char *t = str_trim(err->s + start);

		memmove(err->s + start, t, strlen(t) + 1);
	}
	err->len = strlen(err->s);
	for (char *c = err->s + start; *c; c++)
		if (*c == '\n' || *c == '\r' || *c == '\t')
			*c = ' ';
}

/* PostgreSQL's notices and warnings go through milterd's log, with its
 * level, not to stderr as libpq would write them. */
static void
store_notice(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	struct buf line;

	(void)arg;
	buf_init(&line);
	store_error(&line, "database", PQresultErrorMessage(res));
	log_msg(sev != NULL && strcmp(sev, "WARNING") == 0 ? LOG_WARNING :
	    sev != NULL && strcmp(sev, "NOTICE") == 0 ? LOG_NOTICE : LOG_INFO, NULL, "%s",
	    line.s);
	buf_free(&line);
}

/* ------------------------------------------------- time limits, cancel */

void
store_deadline(struct store_deadline *dl, int seconds, const char *key)
{
	clock_gettime(CLOCK_MONOTONIC, &dl->at);
	dl->at.tv_sec += seconds;
	dl->seconds = seconds;
	dl->key = key;
}

/* Milliseconds left before the deadline; 0 once past it. */
int
store_left(const struct store_deadline *dl)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(dl->at.tv_sec - now.tv_sec) * 1000 +
	    (dl->at.tv_nsec - now.tv_nsec) / 1000000;
	return ms <= 0 ? 0 : ms > 3600000 ? 3600000 : (int)ms;
}

static void *
store_cancel_run(void *arg)
{
	PGcancel *c = arg;
	char why[256];

	if (!PQcancel(c, why, sizeof(why)))
		log_warn("database: cancel request failed: %s", why);
	PQfreeCancel(c);
	return NULL;
}

/* Asks the server to cancel conn's statement, from a thread of its own:
 * PQcancel opens a new connection, which would block on a server that
 * cannot be reached. Dropping the connection alone would not do: a backend
 * waiting for its standbys does not notice its client is gone, and keeps
 * its locks (NOTIFY's among them) until they answer. */
static void
store_cancel(PGconn *conn)
{
	PGcancel *c = PQgetCancel(conn);
	pthread_attr_t attr;
	pthread_t t;

	if (c == NULL)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, store_cancel_run, c) != 0)
		(void)store_cancel_run(c);
	pthread_attr_destroy(&attr);
}

/* Reads conn's results until libpq has none left, or the deadline; the last
 * one is left in *res. Returns 0 once the statement has ended (its commit
 * and its standbys' confirmation included: the server says so, with
 * ReadyForQuery, only then), 1 at the deadline. */
static int
store_drain(PGconn *conn, const struct store_deadline *dl, PGresult **res)
{
	struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };
	PGresult *r;
	int ms;

	for (;;) {
		while (!PQisBusy(conn)) {
			if ((r = PQgetResult(conn)) == NULL)
				return 0;
			PQclear(*res);
			*res = r;
		}
		if ((ms = store_left(dl)) == 0)
			return 1;
		if ((poll(&pfd, 1, ms) == -1 && errno != EINTR) || !PQconsumeInput(conn)) {
			/* The connection failed: libpq makes that an error result
			 * at once. */
			while ((r = PQgetResult(conn)) != NULL) {
				PQclear(*res);
				*res = r;
			}
			return 0;
		}
	}
}

/* Sends a prepared statement on s and waits for its end until the deadline.
 * Past it, the statement is cancelled, the connection dropped (a cancel
 * request sent late would otherwise hit the next statement on it) and NULL
 * returned with *late set. A commit waiting for its standbys, cancelled,
 * stays committed on the primary: the 451 then sent is safe, as the retry
 * finds the request verified, or verifies it again on a promoted standby. */
PGresult *
store_send(struct store_slot *s, const char *stmt, int nparams, const char *const *values,
    const int *lengths, const int *formats, const struct store_deadline *dl, int *late)
{
	PGresult *res = NULL;

	*late = 0;
	if (store_left(dl) == 0) {
		*late = 1;
		return NULL;
	}
	if (!PQsendQueryPrepared(s->conn, stmt, nparams, values, lengths, formats, 0))
		return NULL;
	if (store_drain(s->conn, dl, &res) == 0)
		return res;
	*late = 1;
	PQclear(res);
	store_cancel(s->conn);
	PQfinish(s->conn);
	s->conn = NULL;
	return NULL;
}

/* ------------------------------------------------------ connections */

/* What the replication of the server milterd reached guarantees: said once
 * per server (at start, and again after a failover to another). */
static const char store_replication_sql[] =
	"SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),"
	" count(r.pid), count(r.pid) FILTER (WHERE r.sync_state IN ('sync', 'quorum')),"
	" count(r.pid) FILTER (WHERE r.sync_state IN ('async', 'potential')),"
	" count(r.pid) FILTER (WHERE r.sync_state IS NULL),"
	" has_function_privilege('pg_catalog.pg_logical_emit_message(boolean, text, text)',"
	" 'EXECUTE')"
	" FROM (SELECT 1) one LEFT JOIN pg_stat_replication r ON true";

struct store_replication {
	const char	*server, *level, *names;
	int		 standbys, sync, async, hidden;
	int		 confirms;	/* synchronous_commit asks standbys to confirm */
	int		 may_emit;	/* store_durable's function may run */
};

static void
store_replication_say(const struct store *st, const struct store_replication *r)
{
	if (strcmp(r->level, "off") == 0)
		log_warn("database %s: synchronous_commit is off for milterd: a verification"
		    " answered 250 can be lost if PostgreSQL stops abruptly; set it to on",
		    r->server);
	else if (strcmp(r->level, "local") == 0 && r->standbys > 0)
		log_warn("database %s: synchronous_commit is local for milterd: standbys do not"
		    " confirm verifications before their 250, which can be lost on failover;"
		    " set it to on", r->server);
	else if (r->confirms && !r->may_emit)
		log_warn("database %s: milterd's role may not execute pg_logical_emit_message():"
		    " every verification gets 451 (GRANT EXECUTE ON FUNCTION"
		    " pg_logical_emit_message(boolean, text, text) to it)", r->server);
	if (r->standbys > 0 && r->names[0] == '\0')
		log_warn("database %s: %d standby%s replicate%s asynchronously"
		    " (synchronous_standby_names is empty): a verification answered 250 can be"
		    " lost on failover; set synchronous_standby_names on the primary"
		    " (README: High availability)", r->server, r->standbys,
		    r->standbys == 1 ? "" : "s", r->standbys == 1 ? "s" : "");
	else if (r->standbys > 0 && r->hidden == r->standbys)
		log_debug("database %s: %d standby%s; milterd's role cannot read their sync_state"
		    " (pg_monitor): replication not checked", r->server, r->standbys,
		    r->standbys == 1 ? "" : "s");
	else if (r->async > 0 && r->sync == 0)
		log_warn("database %s: %d standby%s replicate%s asynchronously (none named by"
		    " synchronous_standby_names): a verification answered 250 can be lost on"
		    " failover (README: High availability)", r->server, r->async,
		    r->async == 1 ? "" : "s", r->async == 1 ? "s" : "");
	else if (r->async > 0)
		log_warn("database %s: %d synchronous and %d asynchronous standby%s: fail over to"
		    " a synchronous one only; an asynchronous one can lack verifications"
		    " answered 250", r->server, r->sync, r->async, r->async == 1 ? "" : "s");
	else if (r->standbys == 0 && r->names[0] != '\0' && r->confirms)
		log_warn("database %s: synchronous_standby_names is set but no standby is"
		    " connected: each verification waits %d s (db_commit_timeout), then gets 451,"
		    " until one is", r->server, st->commit_timeout);
	else if (r->sync > 0 && r->confirms)
		log_info("database %s: %d synchronous standby%s confirm%s each verification"
		    " before its 250", r->server, r->sync, r->sync == 1 ? "" : "s",
		    r->sync == 1 ? "s" : "");
	else if (r->standbys == 0)
		log_debug("database %s: no standby replicates from it", r->server);
}

/* The first connection to a server (the daemon's: st->watch) checks its
 * replication. pg_stat_replication shows sync_state to superusers and
 * pg_monitor's members only; synchronous_standby_names empty with standbys
 * connected means asynchronous all the same. */
static void
store_check_server(struct store *st, struct store_slot *s)
{
	struct store_replication r = { .level = s->level, .confirms = s->durable };
	struct store_deadline dl;
	char server[sizeof(st->server)];
	PGresult *res;
	int same, late;

	(void)snprintf(server, sizeof(server), "%s:%s", PQhost(s->conn), PQport(s->conn));
	pthread_mutex_lock(&st->lock);
	if (!(same = strcmp(st->server, server) == 0))
		(void)str_copy(st->server, server, sizeof(st->server));
	pthread_mutex_unlock(&st->lock);
	if (same || !PQsendQuery(s->conn, store_replication_sql))
		return;
	store_deadline(&dl, st->timeout, "db_timeout");
	res = NULL;
	late = store_drain(s->conn, &dl, &res);
	if (late || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_debug("database %s: replication not checked: %s", server,
		    late ? "no answer" : PQerrorMessage(s->conn));
		if (late) {
			PQfinish(s->conn);	/* the caller sees it gone */
			s->conn = NULL;
		}
		PQclear(res);
		return;
	}
	r.server = server;
	r.names = PQgetvalue(res, 0, 1);
	r.standbys = atoi(PQgetvalue(res, 0, 2));
	r.sync = atoi(PQgetvalue(res, 0, 3));
	r.async = atoi(PQgetvalue(res, 0, 4));
	r.hidden = atoi(PQgetvalue(res, 0, 5));
	r.may_emit = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		log_warn("database %s is a standby (in recovery): verifications get 451 until"
		    " milterd reaches the primary (give every host, with"
		    " target_session_attrs=read-write)", server);
	else
		store_replication_say(st, &r);
	PQclear(res);
}

/* The session's settings: statement_timeout, and synchronous_commit turned
 * off where standbys confirm commits (store_slot). */
static int
store_session(struct store *st, struct store_slot *s, struct buf *err)
{
	char sql[96];
	PGresult *res;

	snprintf(sql, sizeof(sql), "SET statement_timeout = %d; SHOW synchronous_commit",
	    st->timeout * 1000);
	res = PQexec(s->conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    str_copy(s->level, PQgetvalue(res, 0, 0), sizeof(s->level)) == -1) {
		store_error(err, "session settings", PQerrorMessage(s->conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	s->durable = strcmp(s->level, "on") == 0 || strcmp(s->level, "remote_write") == 0 ||
	    strcmp(s->level, "remote_apply") == 0;
	if (!s->durable)
		return 0;
	res = PQexec(s->conn, "SET synchronous_commit = off");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		store_error(err, "session settings", PQerrorMessage(s->conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

/* The highest migration applied (0: never migrated), or -1 with err set. */
static int
store_schema_version(PGconn *conn, struct buf *err)
{
	PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0)"
	    " FROM milterd.schema_migrations");
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	int version = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		version = atoi(PQgetvalue(res, 0, 0));
	else if (state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
		version = 0;	/* no table, no schema: never migrated */
	else
		store_error(err, "schema version", PQerrorMessage(conn));
	PQclear(res);
	return version;
}

int
store_schema_check(PGconn *conn, const char *who, struct buf *err)
{
	int version;

	if ((version = store_schema_version(conn, err)) == -1)
		return -1;
	if (version >= SCHEMA_VERSION)
		return 0;
	buf_printf(err, "the database's schema is at version %d, %s needs %d: run milterctl"
	    " db migrate", version, who, SCHEMA_VERSION);
	return -1;
}

PGconn *
store_dial(struct store *st, struct buf *err)
{
	/* Keys before dbname are defaults the conninfo string may override. */
	const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
	char tmo[16];
	const char *vals[] = { tmo, st->appname, st->conninfo, NULL };
	PGconn *conn;

	snprintf(tmo, sizeof(tmo), "%d", st->timeout);
	/* expand_dbname: the conninfo string may itself set any of these. */
	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		store_error(err, "connect", conn ? PQerrorMessage(conn) : "out of memory");
		goto fail;
	}
	PQsetNoticeReceiver(conn, store_notice, NULL);
	if (store_schema_check(conn, "milterd", err) == -1)
		goto fail;
	return conn;
fail:
	if (conn != NULL)
		PQfinish(conn);
	return NULL;
}

/* Opens and prepares s's connection; -1 with err set on failure. */
static int
store_connect(struct store *st, struct store_slot *s, struct buf *err)
{
	PGresult *res;

	if ((s->conn = store_dial(st, err)) == NULL)
		return -1;
	if (store_session(st, s, err) == -1)
		goto fail;
	for (size_t i = 0; i < NSTATEMENTS; i++) {
		res = PQprepare(s->conn, store_statements[i].name, store_statements[i].sql,
		    store_statements[i].nparams, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			store_error(err, store_statements[i].name, PQerrorMessage(s->conn));
			PQclear(res);
			goto fail;
		}
		PQclear(res);
	}
	if (st->watch)
		store_check_server(st, s);
	if (s->conn == NULL)
		buf_puts(err, "connect: the server stopped answering");
	return s->conn != NULL ? 0 : -1;
fail:
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->conn = NULL;
	return -1;
}

/* Takes a free slot, waiting at most st->timeout; -1 if none came free. */
int
store_acquire(struct store *st, struct buf *err)
{
	struct timespec deadline;
	int slot = -1;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += st->timeout;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		for (int i = 0; i < st->size; i++)
			if (!st->slots[i].busy && (slot == -1 || st->slots[i].conn != NULL))
				slot = i;	/* prefer an open connection */
		if (slot != -1)
			break;
		if (pthread_cond_timedwait(&st->freed, &st->lock, &deadline) == ETIMEDOUT) {
			buf_printf(err, "no database connection free after %d s", st->timeout);
			break;
		}
	}
	if (slot != -1)
		st->slots[slot].busy = 1;
	pthread_mutex_unlock(&st->lock);
	return slot;
}

void
store_release(struct store *st, int slot)
{
	pthread_mutex_lock(&st->lock);
	st->slots[slot].busy = 0;
	pthread_cond_signal(&st->freed);
	pthread_mutex_unlock(&st->lock);
}

/* s connected, or err set: after a failed connect, fail fast for a second
 * (every worker would otherwise wait for its own connect_timeout). */
static int
store_ready(struct store *st, struct store_slot *s, struct buf *err)
{
	time_t now;

	if (s->conn != NULL)
		return 0;
	now = time(NULL);
	if (now < __atomic_load_n(&st->retry_after, __ATOMIC_RELAXED)) {
		buf_puts(err, "database unreachable (retrying shortly)");
		return -1;
	}
	if (store_connect(st, s, err) == -1) {
		__atomic_store_n(&st->retry_after, now + 1, __ATOMIC_RELAXED);
		return -1;
	}
	return 0;
}

/* One prepared statement; in dry-run mode a write runs inside a rolled-back
 * transaction (BEGIN and ROLLBACK cannot fail on a working connection; if
 * they do, the statement's own result reports it), synchronously: nothing
 * commits, nothing waits for a standby. */
static PGresult *
store_run(const struct store *st, struct store_slot *s, const char *stmt, int nparams,
    const char *const *values, const int *lengths, const int *formats,
    const struct store_deadline *dl, int *late)
{
	PGresult *res;

	*late = 0;
	if (!st->dry_run)
		return store_send(s, stmt, nparams, values, lengths, formats, dl, late);
	if (strcmp(stmt, "lookup") == 0)
		return PQexecPrepared(s->conn, stmt, nparams, values, lengths, formats, 0);
	PQclear(PQexec(s->conn, "BEGIN"));
	res = PQexecPrepared(s->conn, stmt, nparams, values, lengths, formats, 0);
	PQclear(PQexec(s->conn, "ROLLBACK"));
	return res;
}

/* Runs a prepared statement on slot s until the deadline. A connection found
 * broken is replaced and the statement run once more, so that the first
 * message after a database restart does not fail (each statement is safe to
 * repeat: record()'s guard verifies once); a statement past its deadline is
 * not. Returns the result (the caller PQclear()s it) or NULL with err set. */
PGresult *
store_exec_on(struct store *st, struct store_slot *s, const char *stmt, int nparams,
    const char *const *values, const int *lengths, const int *formats,
    const struct store_deadline *dl, struct buf *err)
{
	PGresult *res = NULL;
	int late;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (store_ready(st, s, err) == -1)
			break;
		res = store_run(st, s, stmt, nparams, values, lengths, formats, dl, &late);
		if (PQresultStatus(res) == PGRES_TUPLES_OK ||
		    PQresultStatus(res) == PGRES_COMMAND_OK)
			break;
		buf_reset(err);
		PQclear(res);
		res = NULL;
		if (late) {
			buf_printf(err, "%s: no answer within %d s (%s): cancelled", stmt,
			    dl->seconds, dl->key);
			break;
		}
		store_error(err, stmt, PQerrorMessage(s->conn));
		if (PQstatus(s->conn) == CONNECTION_OK)
			break;		/* a real SQL error: retrying won't help */
		PQfinish(s->conn);
		s->conn = NULL;
	}
	return res;
}

/* store_exec_on() on a pooled connection. */
PGresult *
store_exec(struct store *st, const char *stmt, int nparams, const char *const *values,
    const int *lengths, const int *formats, const struct store_deadline *dl, struct buf *err)
{
	PGresult *res;
	int slot;

	if ((slot = store_acquire(st, err)) == -1)
		return NULL;
	res = store_exec_on(st, &st->slots[slot], stmt, nparams, values, lengths, formats, dl,
	    err);
	store_release(st, slot);
	return res;
}

int
store_connect_now(struct store *st, struct buf *err)
{
	int slot, rc;

	if ((slot = store_acquire(st, err)) == -1)
		return -1;
	rc = st->slots[slot].conn != NULL ? 0 : store_connect(st, &st->slots[slot], err);
	store_release(st, slot);
	return rc;
}

/* A request row: -1 if a value does not fit (a row milterd cannot verify). */
static int
store_request_row(PGresult *res, int row, int col, struct store_request *out)
{
	const char *state = PQgetvalue(res, row, col + 3);

	out->id = strtoll(PQgetvalue(res, row, col), NULL, 10);
	if (str_copy(out->account, PQgetvalue(res, row, col + 1), sizeof(out->account)) == -1 ||
	    str_copy(out->email, PQgetvalue(res, row, col + 2), sizeof(out->email)) == -1 ||
	    str_copy(out->lang, PQgetvalue(res, row, col + 7), sizeof(out->lang)) == -1 ||
	    (out->state = request_state_parse(state)) == REQ_NSTATES)
		return -1;
	out->attempts = atoi(PQgetvalue(res, row, col + 4));
	out->created_at = strtod(PQgetvalue(res, row, col + 5), NULL);
	out->expires_at = strtod(PQgetvalue(res, row, col + 6), NULL);
	return 0;
}

enum store_rc
store_lookup(struct store *st, const unsigned char *hash, struct store_request *out,
    struct buf *err)
{
	const char *values[1] = { (const char *)hash };
	const int lengths[1] = { STORE_HASH_LEN }, formats[1] = { 1 };
	struct store_deadline dl;
	PGresult *res;
	enum store_rc rc = STORE_NOTFOUND;

	memset(out, 0, sizeof(*out));
	if (st->tokens != NULL && store_tokens_absent(st->tokens, hash)) {
		stats_token_spared();
		return STORE_NOTFOUND;
	}
	store_deadline(&dl, st->timeout, "db_timeout");
	dl.at.tv_sec += 1;	/* past statement_timeout: the server's own error comes first */
	if ((res = store_exec(st, "lookup", 1, values, lengths, formats, &dl, err)) == NULL)
		return STORE_TEMPFAIL;
	if (PQntuples(res) == 1) {
		if (store_request_row(res, 0, 0, out) == 0)
			rc = STORE_OK;
		else
			log_warn("request %s: a value too long or an unknown state, treated as"
			    " no request", PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	return rc;
}
