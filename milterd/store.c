/* store.c — libpq connection pool, prepared statements, verification queries. */
#include <errno.h>
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
	{ "record",
	  "SELECT recorded, verified, state, attempts, holders FROM milterd.record($1, $2,"
	  " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
	  " $20, $21)", 21 },
	{ "evidence",
	  "SELECT milterd.record_evidence($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
	  " $13, $14, $15, $16, $17)", 17 },
	/* record() for each row of a group, in order, in one transaction
	 * (store_group_write): each array holds one of record()'s arguments.
	 * record() is a VOLATILE function, so each of its statements sees what
	 * the rows before it wrote (an address taken, a request verified). */
	{ "record_group",
	  "SELECT r.recorded, r.verified, r.state, r.attempts, r.holders FROM unnest($1::text[],"
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
	/* Group commit of verifications (store_group_record). */
	pthread_mutex_t	 group_lock;
	pthread_cond_t	 group_done;
	struct store_group_item *group_head, **group_tail;	/* queued, not taken */
	int		 group_leading;	/* a group is being written */
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

/* Row `row` of record()'s result. */
static enum store_rc
store_record_row(PGresult *res, int row, const struct store_evidence *ev,
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
	return STORE_OK;
}

/* One decision, one call of record(), one transaction. */
static enum store_rc
store_record_one(struct store *st, const struct store_evidence *ev,
    const struct store_guard *g, struct store_outcome *out, struct buf *err)
{
	struct store_record_args a;
	int lengths[STORE_RECORD_ARGS] = { 0 }, formats[STORE_RECORD_ARGS] = { 0 };
	enum store_rc rc;
	PGresult *res;

	memset(out, 0, sizeof(*out));
	store_record_args(&a, ev, g);
	lengths[1] = STORE_HASH_LEN;
	formats[1] = 1;		/* the hash goes as binary bytea */
	if ((res = store_exec(st, "record", STORE_RECORD_ARGS, a.v, lengths, formats,
	    err)) == NULL)
		return STORE_TEMPFAIL;
	if (PQntuples(res) != 1) {
		buf_puts(err, "record: no result row");
		PQclear(res);
		return STORE_TEMPFAIL;
	}
	rc = store_record_row(res, 0, ev, out);
	PQclear(res);
	return rc;
}

/* ------------------------------------------------------- group commit */

/*
 * Verifications of concurrent workers share one transaction, so one commit.
 * A verifying transaction sends a NOTIFY (the requests_changed trigger), and
 * PostgreSQL holds a database-wide lock from the start of such a commit to
 * its end, WAL flush included: committed one by one, verifications wait for
 * each other's flush; a group pays one flush, one round trip and one
 * transaction for all. The first worker to queue while no group is being
 * written leads: it takes what is queued (itself included, up to
 * STORE_GROUP_MAX), writes it and hands each its result; those that queue
 * meanwhile form the next group, led by the first of them to wake. A group
 * of one is written as any other decision ("record"). Refusals and copies
 * do not come here: record() commits them without waiting for the flush.
 */

#define STORE_GROUP_MAX	32

struct store_group_item {
	const struct store_evidence	*ev;
	const struct store_guard	*g;
	struct store_outcome		*out;
	struct buf			*err;
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
		group[n++] = st->group_head;
		st->group_head = st->group_head->next;
	}
	if (st->group_head == NULL)
		st->group_tail = &st->group_head;
	return n;
}

/* Rows in address order, then request order: two groups written at once (two
 * MX hosts) take the address locks and the request rows in the same order,
 * so that neither waits for the other in a deadlock. */
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

static double
store_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Writes group (n > 1) with one "record_group" call; -1 with err set if the
 * statement failed, with *slow set when it ran into its time limit. */
static int
store_group_call(struct store *st, struct store_group_item **group, int n, struct buf *err,
    int *slow)
{
	struct store_record_args a[STORE_GROUP_MAX];
	struct buf cols[STORE_RECORD_ARGS];
	const char *values[STORE_RECORD_ARGS];
	int lengths[STORE_RECORD_ARGS], formats[STORE_RECORD_ARGS], rc = -1, oom = 0;
	double t0 = store_seconds();
	PGresult *res = NULL;

	for (int i = 0; i < n; i++)
		store_record_args(&a[i], group[i]->ev, group[i]->g);
	for (int c = 0; c < STORE_RECORD_ARGS; c++) {
		buf_init(&cols[c]);
		store_group_array(&cols[c], a, n, c);
		oom |= buf_failed(&cols[c]);
		values[c] = cols[c].s;
		lengths[c] = (int)cols[c].len;
		formats[c] = 1;
	}
	if (oom)
		buf_puts(err, "record_group: out of memory");
	else if ((res = store_exec(st, "record_group", STORE_RECORD_ARGS, values, lengths,
	    formats, err)) == NULL)
		*slow = store_seconds() - t0 >= st->timeout;
	else if (PQntuples(res) != n)
		buf_printf(err, "record_group: %d result rows for %d", PQntuples(res), n);
	else {
		for (int i = 0; i < n; i++)
			group[i]->rc = store_record_row(res, i, group[i]->ev, group[i]->out);
		rc = 0;
	}
	PQclear(res);
	for (int c = 0; c < STORE_RECORD_ARGS; c++)
		buf_free(&cols[c]);
	return rc;
}

/* Writes a group and sets each item's result. If the group failed within its
 * time limit (an SQL error one row caused, a deadlock, a lost connection),
 * each row is written again on its own, so that only a bad row fails (a row
 * the group did commit is found verified: record()'s guard verifies once);
 * one that ran out of time is not, as each row would wait as long again. */
static void
store_group_write(struct store *st, struct store_group_item **group, int n)
{
	struct buf err;
	int slow = 0;

	if (n > 1) {
		qsort(group, (size_t)n, sizeof(*group), store_group_cmp);
		buf_init(&err);
		if (store_group_call(st, group, n, &err, &slow) == 0) {
			buf_free(&err);
			return;
		}
		log_msg(LOG_NOTICE, NULL, "database: a group of %d verifications failed%s: %s",
		    n, slow ? "" : ", each written again on its own", err.s);
		for (int i = 0; slow && i < n; i++) {
			group[i]->rc = STORE_TEMPFAIL;
			buf_puts(group[i]->err, err.s);
		}
		buf_free(&err);
		if (slow)
			return;
	}
	for (int i = 0; i < n; i++)
		group[i]->rc = store_record_one(st, group[i]->ev, group[i]->g, group[i]->out,
		    group[i]->err);
}

/* A verification: queued, written with those of other workers. */
static enum store_rc
store_group_record(struct store *st, const struct store_evidence *ev,
    const struct store_guard *g, struct store_outcome *out, struct buf *err)
{
	struct store_group_item me = { ev, g, out, err, STORE_TEMPFAIL, 0, NULL };
	struct store_group_item *group[STORE_GROUP_MAX];
	int n;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&st->group_lock);
	*st->group_tail = &me;
	st->group_tail = &me.next;
	while (!me.done) {
		if (st->group_leading) {
			pthread_cond_wait(&st->group_done, &st->group_lock);
			continue;
		}
		st->group_leading = 1;
		n = store_group_take(st, group);
		pthread_mutex_unlock(&st->group_lock);
		store_group_write(st, group, n);
		pthread_mutex_lock(&st->group_lock);
		for (int i = 0; i < n; i++)
			group[i]->done = 1;
		st->group_leading = 0;
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
	if (ev->reason == R_VERIFIED && !st->dry_run)
		return store_group_record(st, ev, g, out, err);
	return store_record_one(st, ev, g, out, err);
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
