/* store.c — libpq connection pool, prepared statements, verification queries. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "log.h"
#include "store.h"

/* Statements prepared on every pooled connection. */
static const struct {
	const char *name;
	const char *sql;
	int	    nparams;
} store_statements[] = {
	{ "lookup",
	  "SELECT id, account, email, milterd.state_now(state, expires_at, valid_until),"
	  " attempts, extract(epoch FROM created_at)::float8,"
	  " extract(epoch FROM expires_at)::float8, lang,"
	  " milterd.address_holders(email, account)"
	  " FROM milterd.requests WHERE token_hash = $1", 1 },
	/* The last column: whether standbys are named to confirm commits now
	 * (a reload may change it): store_wants_durable. */
	{ "record",
	  "SELECT recorded, verified, state, attempts, holders,"
	  " current_setting('synchronous_standby_names') <> '' FROM milterd.record($1, $2,"
	  " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
	  " $20, $21)", 21 },
	{ "evidence",
	  "SELECT milterd.record_evidence($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
	  " $13, $14, $15, $16, $17)", 17 },
	/* record() for each row of a group, in order, in one transaction
	 * (store_group_call): each array holds one of record()'s arguments.
	 * record() is a VOLATILE function, so each of its statements sees what
	 * the rows before it wrote (an address taken, a request verified). The
	 * last column as in "record". */
	{ "record_group",
	  "SELECT r.recorded, r.verified, r.state, r.attempts, r.holders,"
	  " current_setting('synchronous_standby_names') <> '' FROM unnest($1::text[],"
	  " $2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],"
	  " $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],"
	  " $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],"
	  " $21::text[]) WITH ORDINALITY AS b(id, hash, hfrom, reason, stage, max_attempts, apa,"
	  " valid_for, client_addr, helo, mail_from, message_id, queue_id, dkim_domain,"
	  " dkim_selector, dkim_algorithm, dkim_key_bits, dnssec, spf_result, detail,"
	  " token_prefix, n)"
	  " CROSS JOIN LATERAL milterd.record(b.id::bigint, b.hash, b.hfrom, b.reason, b.stage,"
	  " b.max_attempts::integer, b.apa::integer, b.valid_for::integer, b.client_addr, b.helo,"
	  " b.mail_from, b.message_id, b.queue_id, b.dkim_domain, b.dkim_selector,"
	  " b.dkim_algorithm, b.dkim_key_bits::integer, b.dnssec, b.spf_result, b.detail,"
	  " b.token_prefix) r ORDER BY b.n", 21 },
	/* A write of its own (a transactional WAL message: no table, no row
	 * lock), committed at the server's synchronous_commit ($1): store_durable. */
	{ "durable",
	  "SELECT set_config('synchronous_commit', $1, true),"
	  " pg_catalog.pg_logical_emit_message(true, 'milterd', 'verified')", 1 },
};

#define NSTATEMENTS (sizeof(store_statements) / sizeof(store_statements[0]))

struct store_slot {
	PGconn	*conn;
	int	 busy;
	/* synchronous_commit as the server sets it for milterd's role. When
	 * it asks standbys to confirm commits ("on", "remote_write",
	 * "remote_apply"), the connection runs at "off" and a verification
	 * waits for the disk and the standbys in a transaction of its own, at
	 * the role's level (store_durable), whose flush covers the verification
	 * too: NOTIFY's lock, taken by the verifying transaction, is then not
	 * held while the standbys answer. Until that transaction commits no
	 * 250 is sent, so a verification lost meanwhile (PostgreSQL crashing
	 * within wal_writer_delay) is one the MTA sends again. */
	char	 level[16];
	int	 durable;
};

/* A statement's time limit, on the monotonic clock. */
struct store_deadline {
	struct timespec	 at;
	int		 seconds;
	const char	*key;		/* the configuration key that set it */
};

struct store {
	char		*conninfo;
	int		 timeout;	/* seconds: connect, statements, pool wait */
	int		 commit_timeout; /* seconds: a write, standbys' confirmation included */
	int		 watch;		/* the daemon: check each new server's replication */
	char		 server[300];	/* host:port last checked */
	int		 size;
	struct store_slot *slots;
	pthread_mutex_t	 lock;
	pthread_cond_t	 freed;
	time_t		 retry_after;	/* after a failed connect, fail fast until then */
	char		 appname[64];	/* instance_name: evidence rows name the milterd */
	int		 dry_run;	/* writes rolled back (set before any use) */
	/* Group commit of verifications (store_group_record). */
	pthread_mutex_t	 group_lock;
	pthread_cond_t	 group_done;
	struct store_group_item *group_head, **group_tail;	/* queued, not taken */
	int		 group_leading;	/* a group is being written */
	void		(*before_wait)(void);	/* store_set_wait_hook */
};

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
	pthread_cond_init(&st->group_done, NULL);
	st->group_tail = &st->group_head;
	return st;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < st->size; i++)
		if (st->slots[i].conn != NULL)
			PQfinish(st->slots[i].conn);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->freed);
	pthread_mutex_destroy(&st->group_lock);
	pthread_cond_destroy(&st->group_done);
	free(st->slots);
	free(st->conninfo);
	free(st);
}

/* libpq's text of an error, on one line: its DETAIL and HINT lines, and the
 * final newline, would otherwise break a log line in two. */
static void
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

static void
store_deadline(struct store_deadline *dl, int seconds, const char *key)
{
	clock_gettime(CLOCK_MONOTONIC, &dl->at);
	dl->at.tv_sec += seconds;
	dl->seconds = seconds;
	dl->key = key;
}

/* Milliseconds left before the deadline; 0 once past it. */
static int
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
static PGresult *
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

/* Opens and prepares s's connection; -1 with err set on failure. */
static int
store_connect(struct store *st, struct store_slot *s, struct buf *err)
{
	/* Keys before dbname are defaults the conninfo string may override. */
	const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
	char tmo[16];
	const char *vals[] = { tmo, st->appname, st->conninfo, NULL };
	PGresult *res;

	snprintf(tmo, sizeof(tmo), "%d", st->timeout);
	/* expand_dbname: the conninfo string may itself set any of these. */
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
		store_error(err, "connect", s->conn ? PQerrorMessage(s->conn) : "out of memory");
		goto fail;
	}
	PQsetNoticeReceiver(s->conn, store_notice, NULL);
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
static int
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

static void
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
static PGresult *
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
static PGresult *
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
	out->holders = atoi(PQgetvalue(res, row, col + 8));
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

/* The evidence columns, in the order of record() and record_evidence() after
 * their own leading parameters. */
#define STORE_EV_COLS 13

static void
store_evidence_values(const struct store_evidence *ev, const char **v, char *bits, size_t size)
{
	snprintf(bits, size, "%d", ev->dkim_key_bits);
	v[0] = ev->client_addr;
	v[1] = ev->helo;
	v[2] = ev->mail_from;
	v[3] = ev->message_id;
	v[4] = ev->queue_id;
	v[5] = ev->dkim_domain;
	v[6] = ev->dkim_selector;
	v[7] = ev->dkim_algorithm;
	v[8] = ev->dkim_key_bits ? bits : NULL;
	v[9] = ev->dnssec;
	v[10] = ev->spf_result;
	v[11] = ev->detail;
	v[12] = ev->token_prefix;
}

/* What record() returned, in row `row` of a "record" or "record_group"
 * result; returns whether standbys are named (its last column). */
static int
store_outcome(PGresult *res, int row, const struct store_evidence *ev,
    struct store_outcome *out)
{
	out->recorded = strcmp(PQgetvalue(res, row, 0), "t") == 0;
	out->verified = strcmp(PQgetvalue(res, row, 1), "t") == 0;
	out->after.id = ev->request_id;
	/* No row: the request is gone (pruned, or its token hash changed). */
	out->after.state = PQgetisnull(res, row, 2) ? REQ_REVOKED :
	    request_state_parse(PQgetvalue(res, row, 2));
	if (out->after.state == REQ_NSTATES)
		out->after.state = REQ_REVOKED;
	out->after.attempts = atoi(PQgetvalue(res, row, 3));
	out->after.holders = atoi(PQgetvalue(res, row, 4));
	return strcmp(PQgetvalue(res, row, 5), "t") == 0;
}

/* Whether the decision, about to say the request is verified (a 250), must
 * wait for store_durable first: when this call verified it (committed at
 * "off"), and when it found it verified (a copy, a retry, a concurrent reply)
 * while standbys are named to confirm commits: that verification may be on
 * the primary only, its own wait cancelled. Without standbys a copy does not
 * wait: a verification not flushed yet is one whose own 250 is not sent. */
static int
store_wants_durable(const struct store_evidence *ev, const struct store_outcome *out,
    int standbys_named)
{
	return out->verified || (standbys_named &&
	    ((ev->reason == R_ALREADY_VERIFIED && out->recorded) ||
	    ((ev->reason == R_VERIFIED || ev->reason == R_ALREADY_VERIFIED) && !out->recorded &&
	    out->after.state == REQ_VERIFIED)));
}

/* A verification the decision is about to answer 250 for must survive a
 * crash and a failover: a transaction committed after it at the server's own
 * synchronous_commit level ("durable") returns once its WAL is flushed and
 * held by the standbys, and so the verification's, which precedes it. The
 * verification may be another transaction's, committed on the primary but
 * not confirmed (its client cancelled the wait, or died): a copy's 250 waits
 * all the same (store_wants_durable). Run on the connection the decision
 * used, never retried on another, which could reach a promoted standby that
 * lacks the verification. */
static int
store_durable(struct store *st, struct store_slot *s, const struct store_deadline *dl,
    struct buf *err)
{
	const char *values[1] = { s->level };
	PGresult *res;
	int late, rc = -1;

	if (st->dry_run || !s->durable)
		return 0;
	res = store_send(s, "durable", 1, values, NULL, NULL, dl, &late);
	if (late)
		buf_printf(err, "durable: the standbys did not confirm the verification within"
		    " %d s (%s): cancelled", dl->seconds, dl->key);
	else if (PQresultStatus(res) != PGRES_TUPLES_OK)
		store_error(err, "durable", PQerrorMessage(s->conn));
	else
		rc = 0;
	PQclear(res);
	if (rc == -1 && s->conn != NULL && PQstatus(s->conn) != CONNECTION_OK) {
		PQfinish(s->conn);
		s->conn = NULL;
	}
	return rc;
}

/* record()'s arguments as text, the token hash (binary) aside. */
#define STORE_RECORD_ARGS 21

struct store_record_args {
	const char	*v[STORE_RECORD_ARGS];
	char		 id[24], attempts[16], apa[16], valid[24], bits[16];
};

static void
store_record_args(struct store_record_args *a, const struct store_evidence *ev,
    const struct store_guard *g)
{
	memset(a->v, 0, sizeof(a->v));
	snprintf(a->id, sizeof(a->id), "%lld", ev->request_id);
	snprintf(a->attempts, sizeof(a->attempts), "%d", g ? g->max_attempts : 0);
	snprintf(a->apa, sizeof(a->apa), "%d", g ? g->accounts_per_address : 0);
	snprintf(a->valid, sizeof(a->valid), "%ld", g ? g->valid_for : 0L);
	a->v[0] = ev->request_id ? a->id : NULL;
	a->v[1] = (const char *)ev->token_hash;
	a->v[2] = ev->from;
	a->v[3] = reason_name(ev->reason);
	a->v[4] = ev->stage;
	a->v[5] = a->attempts;
	a->v[6] = a->apa;
	a->v[7] = a->valid;
	store_evidence_values(ev, a->v + 8, a->bits, sizeof(a->bits));
}

/* One decision, one call of record(), one transaction, then store_durable
 * if the decision needs it, all within dl. */
static enum store_rc
store_record_one(struct store *st, const struct store_evidence *ev,
    const struct store_guard *g, struct store_outcome *out, const struct store_deadline *dl,
    struct buf *err)
{
	struct store_record_args a;
	int lengths[STORE_RECORD_ARGS] = { 0 }, formats[STORE_RECORD_ARGS] = { 0 }, slot;
	int named = 0;
	enum store_rc rc = STORE_TEMPFAIL;
	PGresult *res;

	memset(out, 0, sizeof(*out));
	store_record_args(&a, ev, g);
	lengths[1] = STORE_HASH_LEN;
	formats[1] = 1;		/* the hash goes as binary bytea */
	if ((slot = store_acquire(st, err)) == -1)
		return STORE_TEMPFAIL;
	if ((res = store_exec_on(st, &st->slots[slot], "record", STORE_RECORD_ARGS, a.v, lengths,
	    formats, dl, err)) != NULL) {
		if (PQntuples(res) != 1)
			buf_puts(err, "record: no result row");
		else {
			named = store_outcome(res, 0, ev, out);
			rc = STORE_OK;
		}
		PQclear(res);
	}
	if (rc == STORE_OK && store_wants_durable(ev, out, named) &&
	    store_durable(st, &st->slots[slot], dl, err) == -1)
		rc = STORE_TEMPFAIL;
	store_release(st, slot);
	return rc;
}

/* ------------------------------------------------------- group commit */

/*
 * Verifications of concurrent workers share one transaction, and the
 * durable transaction after it (store_durable): one round trip, one commit
 * and one flush for the group instead of two of each per verification. The
 * first worker to queue while no group is being written leads: it takes what
 * is queued (itself included, up to STORE_GROUP_MAX) and writes it; once
 * written, the next group may start (led by the first of those queued
 * meanwhile) while this one waits for its flush and its standbys, so that
 * groups wait side by side there, as single decisions would. Then each gets
 * its result. Refusals and copies do not come here: they wait for no flush
 * (store_wants_durable), so a group would only make them wait for others'.
 */

#define STORE_GROUP_MAX	32

struct store_group_item {
	const struct store_evidence	*ev;
	const struct store_guard	*g;
	struct store_outcome		*out;
	struct buf			*err;
	struct store_deadline		 dl;	/* from when it queued */
	int				 durable;	/* needs store_durable */
	int				 taken;	/* in a group being written */
	enum store_rc			 rc;
	int				 done;	/* rc, out and err are set */
	struct store_group_item		*next;
};

/* Takes up to STORE_GROUP_MAX queued items; called with group_lock held. */
static int
store_group_take(struct store *st, struct store_group_item **group)
{
	int n = 0;

	while (n < STORE_GROUP_MAX && st->group_head != NULL) {
		group[n] = st->group_head;
		group[n++]->taken = 1;
		st->group_head = st->group_head->next;
	}
	if (st->group_head == NULL)
		st->group_tail = &st->group_head;
	return n;
}

/* Rows in address order, then request order: two groups written at once (two
 * MX hosts, or two groups of one milterd) take the address locks and the
 * request rows in the same order, so that neither waits for the other in a
 * deadlock. */
static int
store_group_cmp(const void *a, const void *b)
{
	const struct store_evidence *x = (*(struct store_group_item *const *)a)->ev;
	const struct store_evidence *y = (*(struct store_group_item *const *)b)->ev;
	int c = strcmp(x->from ? x->from : "", y->from ? y->from : "");

	if (c != 0)
		return c;
	return x->request_id < y->request_id ? -1 : x->request_id > y->request_id;
}

static void
store_put32(struct buf *b, uint32_t v)
{
	const char x[4] = { (char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v };

	(void)buf_append(b, x, sizeof(x));
}

/* Argument `col` of every row as a one-dimensional array in PostgreSQL's
 * binary format: text, or bytea for the token hash. */
static void
store_group_array(struct buf *b, struct store_record_args *a, int n, int col)
{
	store_put32(b, 1);			/* dimensions */
	store_put32(b, 0);			/* flags: the server finds NULLs itself */
	store_put32(b, col == 1 ? 17 : 25);	/* element type: bytea or text */
	store_put32(b, (uint32_t)n);
	store_put32(b, 1);			/* lower bound */
	for (int i = 0; i < n; i++) {
		const char *v = a[i].v[col];
		size_t len = v == NULL ? 0 : col == 1 ? STORE_HASH_LEN : strlen(v);

		store_put32(b, v == NULL ? UINT32_MAX : (uint32_t)len);	/* -1: NULL */
		if (v != NULL)
			(void)buf_append(b, v, len);
	}
}

/* record() for every row: "record" for one, "record_group" for more. The
 * result (NULL with err set on failure) and, on success, the slot it used
 * (*slot), still taken. */
static PGresult *
store_group_exec(struct store *st, struct store_group_item **group, int n,
    const struct store_deadline *dl, int *slot, struct buf *err)
{
	struct store_record_args a[STORE_GROUP_MAX];
	struct buf cols[STORE_RECORD_ARGS];
	const char *values[STORE_RECORD_ARGS];
	int lengths[STORE_RECORD_ARGS] = { 0 }, formats[STORE_RECORD_ARGS] = { 0 }, oom = 0;
	PGresult *res = NULL;

	for (int i = 0; i < n; i++)
		store_record_args(&a[i], group[i]->ev, group[i]->g);
	for (int c = 0; c < STORE_RECORD_ARGS; c++) {
		buf_init(&cols[c]);
		if (n == 1) {
			values[c] = a[0].v[c];
			continue;
		}
		store_group_array(&cols[c], a, n, c);
		oom |= buf_failed(&cols[c]);
		values[c] = cols[c].s;
		lengths[c] = (int)cols[c].len;
		formats[c] = 1;
	}
	if (n == 1) {
		lengths[1] = STORE_HASH_LEN;
		formats[1] = 1;		/* the hash goes as binary bytea */
	}
	if (oom)
		buf_puts(err, "record_group: out of memory");
	else if ((*slot = store_acquire(st, err)) != -1) {
		res = store_exec_on(st, &st->slots[*slot], n == 1 ? "record" : "record_group",
		    STORE_RECORD_ARGS, values, lengths, formats, dl, err);
		if (res != NULL && PQntuples(res) != n) {
			buf_printf(err, "record_group: %d result rows for %d", PQntuples(res), n);
			PQclear(res);
			res = NULL;
		}
		if (res == NULL)
			store_release(st, *slot);
	}
	for (int c = 0; c < STORE_RECORD_ARGS; c++)
		buf_free(&cols[c]);
	return res;
}

/* Writes a group, within dl (the earliest of its rows'), and sets each row's
 * result. Returns the slot it used, still taken, if a row needs
 * store_durable; else -1. If a group of several failed before its time limit
 * (an SQL error one row caused, a deadlock, a lost connection), each row is
 * written again on its own within its own limit, durable wait included, so
 * that only a bad row fails (a row the group did commit is then found
 * verified: record()'s guard verifies once); past the limit, all get 451. */
static int
store_group_write(struct store *st, struct store_group_item **group, int n,
    struct store_deadline *dl)
{
	struct buf err;
	PGresult *res;
	int slot = -1, durable = 0;

	qsort(group, (size_t)n, sizeof(*group), store_group_cmp);
	*dl = group[0]->dl;
	for (int i = 1; i < n; i++)
		if (store_left(&group[i]->dl) < store_left(dl))
			*dl = group[i]->dl;
	buf_init(&err);
	if ((res = store_group_exec(st, group, n, dl, &slot, &err)) != NULL) {
		for (int i = 0; i < n; i++) {
			int named = store_outcome(res, i, group[i]->ev, group[i]->out);

			group[i]->rc = STORE_OK;
			group[i]->durable = store_wants_durable(group[i]->ev, group[i]->out, named);
			durable |= group[i]->durable;
		}
		PQclear(res);
		buf_free(&err);
		if (!durable)
			store_release(st, slot);
		return durable ? slot : -1;
	}
	if (n > 1)
		log_msg(LOG_NOTICE, NULL, "database: a group of %d verifications failed%s: %s", n,
		    store_left(dl) > 0 ? ", each written again on its own" : "", err.s);
	for (int i = 0; i < n; i++)
		if (n > 1 && store_left(dl) > 0)
			group[i]->rc = store_record_one(st, group[i]->ev, group[i]->g,
			    group[i]->out, &group[i]->dl, group[i]->err);
		else
			buf_puts(group[i]->err, err.s);	/* rc stays STORE_TEMPFAIL */
	buf_free(&err);
	return -1;
}

/* The group's flush and its standbys' confirmation, on the connection that
 * wrote it; a failure fails the rows that needed it (451). */
static void
store_group_durable(struct store *st, struct store_group_item **group, int n, int slot,
    const struct store_deadline *dl)
{
	struct buf err;

	buf_init(&err);
	if (store_durable(st, &st->slots[slot], dl, &err) == -1)
		for (int i = 0; i < n; i++)
			if (group[i]->durable) {
				group[i]->rc = STORE_TEMPFAIL;
				buf_puts(group[i]->err, err.s);
			}
	buf_free(&err);
	store_release(st, slot);
}

/* A verification: queued, written with those of other workers. */
static enum store_rc
store_group_record(struct store *st, const struct store_evidence *ev,
    const struct store_guard *g, struct store_outcome *out, struct buf *err)
{
	struct store_group_item me = { .ev = ev, .g = g, .out = out, .err = err,
	    .rc = STORE_TEMPFAIL };
	struct store_group_item *group[STORE_GROUP_MAX];
	struct store_deadline dl;
	int n, slot;

	memset(out, 0, sizeof(*out));
	/* One bound for the write and its confirmation by the standbys. */
	store_deadline(&me.dl, st->commit_timeout, "db_commit_timeout");
	if (st->before_wait != NULL)
		st->before_wait();
	pthread_mutex_lock(&st->group_lock);
	*st->group_tail = &me;
	st->group_tail = &me.next;
	while (!me.done) {
		if (st->group_leading || me.taken) {
			pthread_cond_wait(&st->group_done, &st->group_lock);
			continue;
		}
		st->group_leading = 1;
		n = store_group_take(st, group);
		pthread_mutex_unlock(&st->group_lock);
		slot = store_group_write(st, group, n, &dl);
		pthread_mutex_lock(&st->group_lock);
		st->group_leading = 0;		/* the next group may be written */
		pthread_cond_broadcast(&st->group_done);
		if (slot != -1) {
			pthread_mutex_unlock(&st->group_lock);
			store_group_durable(st, group, n, slot, &dl);
			pthread_mutex_lock(&st->group_lock);
		}
		for (int i = 0; i < n; i++)
			group[i]->done = 1;
		pthread_cond_broadcast(&st->group_done);
	}
	pthread_mutex_unlock(&st->group_lock);
	return me.rc;
}

/* Records a decision: a verification in a group (above), any other alone. */
enum store_rc
store_record(struct store *st, const struct store_evidence *ev, const struct store_guard *g,
    struct store_outcome *out, struct buf *err)
{
	struct store_deadline dl;

	if (ev->reason == R_VERIFIED && !st->dry_run)
		return store_group_record(st, ev, g, out, err);
	store_deadline(&dl, st->commit_timeout, "db_commit_timeout");
	return store_record_one(st, ev, g, out, &dl, err);
}

enum store_rc
store_record_evidence(struct store *st, const struct store_evidence *ev, struct buf *err)
{
	char id[24], bits[16];
	const char *values[17] = {
		ev->request_id ? id : NULL, ev->from, reason_name(ev->reason), ev->stage,
	};
	struct store_deadline dl;
	PGresult *res;

	snprintf(id, sizeof(id), "%lld", ev->request_id);
	store_evidence_values(ev, values + 4, bits, sizeof(bits));
	store_deadline(&dl, st->commit_timeout, "db_commit_timeout");
	if ((res = store_exec(st, "evidence", 17, values, NULL, NULL, &dl, err)) == NULL)
		return STORE_TEMPFAIL;
	PQclear(res);
	return STORE_OK;
}
