/* store.c — libpq connection pool, prepared statements, verification queries. */
#include <errno.h>
#include <pthread.h>
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
	{ "record",
	  "SELECT recorded, verified, state, attempts, holders FROM milterd.record($1, $2,"
	  " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
	  " $20, $21)", 21 },
	{ "evidence",
	  "SELECT milterd.record_evidence($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
	  " $13, $14, $15, $16, $17)", 17 },
};

#define NSTATEMENTS (sizeof(store_statements) / sizeof(store_statements[0]))

struct store_slot {
	PGconn	*conn;
	int	 busy;
};

struct store {
	char		*conninfo;
	int		 timeout;	/* seconds: connect, statements, pool wait */
	int		 size;
	struct store_slot *slots;
	pthread_mutex_t	 lock;
	pthread_cond_t	 freed;
	time_t		 retry_after;	/* after a failed connect, fail fast until then */
	char		 appname[64];	/* instance_name: evidence rows name the milterd */
	int		 dry_run;	/* writes rolled back (set before any use) */
};

void
store_set_dry_run(struct store *st, int on)
{
	st->dry_run = on;
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
	/* config.c bounds instance_name to 63 characters: it fits. */
	(void)str_copy(st->appname, appname, sizeof(st->appname));
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->freed, NULL);
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

/* Opens and prepares one connection; NULL with err set on failure. */
static PGconn *
store_connect(struct store *st, struct buf *err)
{
	/* Keys before dbname are defaults the conninfo string may override. */
	const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
	char tmo[16], sql[64];
	const char *vals[] = { tmo, st->appname, st->conninfo, NULL };
	PGconn *conn;
	PGresult *res;

	snprintf(tmo, sizeof(tmo), "%d", st->timeout);
	/* expand_dbname: the conninfo string may itself set any of these. */
	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		store_error(err, "connect", conn ? PQerrorMessage(conn) : "out of memory");
		goto fail;
	}
	PQsetNoticeReceiver(conn, store_notice, NULL);
	snprintf(sql, sizeof(sql), "SET statement_timeout = %d", st->timeout * 1000);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		store_error(err, "set timeout", PQerrorMessage(conn));
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	for (size_t i = 0; i < NSTATEMENTS; i++) {
		res = PQprepare(conn, store_statements[i].name, store_statements[i].sql,
		    store_statements[i].nparams, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			store_error(err, store_statements[i].name, PQerrorMessage(conn));
			PQclear(res);
			goto fail;
		}
		PQclear(res);
	}
	return conn;
fail:
	if (conn != NULL)
		PQfinish(conn);
	return NULL;
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

/* One prepared statement; a write inside a rolled-back transaction in dry-run
 * mode (BEGIN and ROLLBACK cannot fail on a working connection; if they do,
 * the statement's own result reports it). */
static PGresult *
store_run(const struct store *st, PGconn *conn, const char *stmt, int nparams,
    const char *const *values, const int *lengths, const int *formats)
{
	int wrap = st->dry_run && strcmp(stmt, "lookup") != 0;
	PGresult *res;

	if (wrap)
		PQclear(PQexec(conn, "BEGIN"));
	res = PQexecPrepared(conn, stmt, nparams, values, lengths, formats, 0);
	if (wrap)
		PQclear(PQexec(conn, "ROLLBACK"));
	return res;
}

/* Runs a prepared statement on a pooled connection. A connection found
 * broken is replaced and the statement retried once, so that the first
 * message after a database restart does not fail. Returns the result (the
 * caller PQclear()s it) or NULL with err set. */
static PGresult *
store_exec(struct store *st, const char *stmt, int nparams, const char *const *values,
    const int *lengths, const int *formats, struct buf *err)
{
	PGresult *res = NULL;
	struct store_slot *s;
	time_t now;
	int slot;

	if ((slot = store_acquire(st, err)) == -1)
		return NULL;
	s = &st->slots[slot];
	for (int attempt = 0; attempt < 2; attempt++) {
		if (s->conn == NULL) {
			now = time(NULL);
			if (now < __atomic_load_n(&st->retry_after, __ATOMIC_RELAXED)) {
				buf_puts(err, "database unreachable (retrying shortly)");
				break;
			}
			if ((s->conn = store_connect(st, err)) == NULL) {
				__atomic_store_n(&st->retry_after, now + 1, __ATOMIC_RELAXED);
				break;
			}
		}
		res = store_run(st, s->conn, stmt, nparams, values, lengths, formats);
		if (PQresultStatus(res) == PGRES_TUPLES_OK ||
		    PQresultStatus(res) == PGRES_COMMAND_OK)
			break;
		buf_reset(err);
		store_error(err, stmt, PQerrorMessage(s->conn));
		PQclear(res);
		res = NULL;
		if (PQstatus(s->conn) == CONNECTION_OK)
			break;		/* a real SQL error: retrying won't help */
		PQfinish(s->conn);
		s->conn = NULL;
	}
	store_release(st, slot);
	return res;
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
	PGresult *res;
	enum store_rc rc = STORE_NOTFOUND;

	memset(out, 0, sizeof(*out));
	if ((res = store_exec(st, "lookup", 1, values, lengths, formats, err)) == NULL)
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

enum store_rc
store_record(struct store *st, const struct store_evidence *ev, const struct store_guard *g,
    struct store_outcome *out, struct buf *err)
{
	char id[24], attempts[16], apa[16], valid[24], bits[16];
	const char *values[21] = {
		ev->request_id ? id : NULL, (const char *)ev->token_hash, ev->from,
		reason_name(ev->reason), ev->stage, attempts, apa, valid,
	};
	int lengths[21] = { 0 }, formats[21] = { 0 };
	PGresult *res;

	memset(out, 0, sizeof(*out));
	snprintf(id, sizeof(id), "%lld", ev->request_id);
	snprintf(attempts, sizeof(attempts), "%d", g ? g->max_attempts : 0);
	snprintf(apa, sizeof(apa), "%d", g ? g->accounts_per_address : 0);
	snprintf(valid, sizeof(valid), "%ld", g ? g->valid_for : 0L);
	store_evidence_values(ev, values + 8, bits, sizeof(bits));
	lengths[1] = STORE_HASH_LEN;
	formats[1] = 1;		/* the hash goes as binary bytea */
	if ((res = store_exec(st, "record", 21, values, lengths, formats, err)) == NULL)
		return STORE_TEMPFAIL;
	if (PQntuples(res) != 1) {
		buf_puts(err, "record: no result row");
		PQclear(res);
		return STORE_TEMPFAIL;
	}
	out->recorded = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	out->verified = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	out->after.id = ev->request_id;
	/* No row: the request is gone (pruned, or its token hash changed). */
	out->after.state = PQgetisnull(res, 0, 2) ? REQ_REVOKED :
	    request_state_parse(PQgetvalue(res, 0, 2));
	if (out->after.state == REQ_NSTATES)
		out->after.state = REQ_REVOKED;
	out->after.attempts = atoi(PQgetvalue(res, 0, 3));
	out->after.holders = atoi(PQgetvalue(res, 0, 4));
	PQclear(res);
	return STORE_OK;
}

enum store_rc
store_record_evidence(struct store *st, const struct store_evidence *ev, struct buf *err)
{
	char id[24], bits[16];
	const char *values[17] = {
		ev->request_id ? id : NULL, ev->from, reason_name(ev->reason), ev->stage,
	};
	PGresult *res;

	snprintf(id, sizeof(id), "%lld", ev->request_id);
	store_evidence_values(ev, values + 4, bits, sizeof(bits));
	if ((res = store_exec(st, "evidence", 17, values, NULL, NULL, err)) == NULL)
		return STORE_TEMPFAIL;
	PQclear(res);
	return STORE_OK;
}
