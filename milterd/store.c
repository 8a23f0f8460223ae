/* store.c — libpq connection pool, prepared statements, verification queries. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "log.h"
#include "render.h"
#include "store.h"

/* Statements prepared on every pooled connection. */
static const struct {
	const char *name;
	const char *sql;
	int	    nparams;
} store_statements[] = {
	{ "lookup",
	  "SELECT id, account, email,"
	  " CASE WHEN state = 'pending' AND expires_at <= now() THEN 'expired'"
	  "  ELSE state END,"
	  " extract(epoch FROM created_at)::float8, extract(epoch FROM expires_at)::float8,"
	  " lang FROM milterd.requests WHERE token_hash = $1", 1 },
	{ "decide",
	  "SELECT milterd.decide($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
	  " $14, $15, $16, $17, $18, $19)", 19 },
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
	char		 appname[64];	/* "milterd@HOST": evidence rows name the MX */
};

struct store *
store_open(const char *conninfo, int size, int timeout)
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
	{
		char host[48];

		if (gethostname(host, sizeof(host)) == -1)
			str_copy(host, "unknown", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		snprintf(st->appname, sizeof(st->appname), "milterd@%s", host);
	}
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

const char *
store_state_name(enum request_state s)
{
	switch (s) {
	case REQ_PENDING:	return "pending";
	case REQ_VERIFIED:	return "verified";
	case REQ_EXPIRED:	return "expired";
	case REQ_REVOKED:	return "revoked";
	}
	return "?";
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
		buf_printf(err, "connect: %s", conn ? str_trim(PQerrorMessage(conn)) : "out of memory");
		goto fail;
	}
	snprintf(sql, sizeof(sql), "SET statement_timeout = %d", st->timeout * 1000);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		buf_printf(err, "set timeout: %s", str_trim(PQerrorMessage(conn)));
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	for (size_t i = 0; i < NSTATEMENTS; i++) {
		res = PQprepare(conn, store_statements[i].name, store_statements[i].sql,
		    store_statements[i].nparams, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			buf_printf(err, "prepare %s: %s", store_statements[i].name,
			    str_trim(PQerrorMessage(conn)));
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
		res = PQexecPrepared(s->conn, stmt, nparams, values, lengths, formats, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK ||
		    PQresultStatus(res) == PGRES_COMMAND_OK)
			break;
		buf_reset(err);
		buf_printf(err, "%s: %s", stmt, str_trim(PQerrorMessage(s->conn)));
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

static enum request_state
store_parse_state(const char *s)
{
	if (strcmp(s, "verified") == 0)
		return REQ_VERIFIED;
	if (strcmp(s, "expired") == 0)
		return REQ_EXPIRED;
	if (strcmp(s, "revoked") == 0)
		return REQ_REVOKED;
	return REQ_PENDING;
}

enum store_rc
store_lookup(struct store *st, const unsigned char *hash, struct store_request *out,
    struct buf *err)
{
	const char *values[1] = { (const char *)hash };
	const int lengths[1] = { TOKEN_HASH_LEN }, formats[1] = { 1 };
	PGresult *res;
	enum store_rc rc = STORE_NOTFOUND;

	if ((res = store_exec(st, "lookup", 1, values, lengths, formats, err)) == NULL)
		return STORE_TEMPFAIL;
	if (PQntuples(res) == 1) {
		out->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		str_copy(out->account, PQgetvalue(res, 0, 1), sizeof(out->account));
		str_copy(out->email, PQgetvalue(res, 0, 2), sizeof(out->email));
		out->state = store_parse_state(PQgetvalue(res, 0, 3));
		out->created_at = strtod(PQgetvalue(res, 0, 4), NULL);
		out->expires_at = strtod(PQgetvalue(res, 0, 5), NULL);
		out->lang = replies_lang(PQgetvalue(res, 0, 6));
		rc = STORE_OK;
	}
	PQclear(res);
	return rc;
}

enum store_rc
store_decide(struct store *st, const struct store_evidence *ev, char *final,
    size_t finalsize, struct buf *err)
{
	char id[24], attempts[16], bits[16];
	const char *values[19] = {
		ev->request_id ? id : NULL, (const char *)ev->token_hash, ev->from,
		ev->reason, ev->stage, attempts, ev->client_addr, ev->helo, ev->mail_from,
		ev->message_id, ev->queue_id, ev->dkim_domain, ev->dkim_selector,
		ev->dkim_algorithm, ev->dkim_key_bits ? bits : NULL, ev->dnssec,
		ev->spf_result, ev->detail, ev->token_prefix,
	};
	int lengths[19] = { 0 }, formats[19] = { 0 };
	PGresult *res;

	snprintf(id, sizeof(id), "%lld", ev->request_id);
	snprintf(attempts, sizeof(attempts), "%d", ev->max_attempts);
	snprintf(bits, sizeof(bits), "%d", ev->dkim_key_bits);
	lengths[1] = TOKEN_HASH_LEN;
	formats[1] = 1;		/* the hash goes as binary bytea */
	if ((res = store_exec(st, "decide", 19, values, lengths, formats, err)) == NULL)
		return STORE_TEMPFAIL;
	str_copy(final, PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "temporary", finalsize);
	PQclear(res);
	return STORE_OK;
}
