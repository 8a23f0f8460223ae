/* store_record.c — the decisions' writes: record() for one, or for the verifications of concurrent workers in one transaction (group commit), and their durable wait. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "clock.h"
#include "log.h"
#include "stats.h"
#include "store.h"
#include "store_pool.h"

/* The texts of an evidence row: its From and the 13 values below. */
#define STORE_TEXTS 14

/* Evidence texts come from the mail and its envelope, in any bytes, and
 * PostgreSQL refuses a text that is not UTF-8, with the whole decision: a
 * Latin-1 byte in a HELO name or a Message-ID kept a genuine reply at 451,
 * retried until its sender gave up. Such a value is stored with those bytes
 * as '?'. Returns v, or its mended copy, kept in *own for store_texts_free(). */
static const char *
store_text(const char *v, char **own)
{
	*own = NULL;
	if (v == NULL || str_utf8_valid(v) || (*own = strdup(v)) == NULL)
		return v;
	str_utf8_mend(*own);
	return *own;
}

static void
store_texts_free(char **own)
{
	for (int i = 0; i < STORE_TEXTS; i++)
		free(own[i]);
}

static void
store_evidence_values(const struct store_evidence *ev, const char **v, char *bits, size_t size,
    char **own)
{
	snprintf(bits, size, "%d", ev->dkim_key_bits);
	v[0] = store_text(ev->client_addr, &own[0]);
	v[1] = store_text(ev->helo, &own[1]);
	v[2] = store_text(ev->mail_from, &own[2]);
	v[3] = store_text(ev->message_id, &own[3]);
	v[4] = store_text(ev->queue_id, &own[4]);
	v[5] = store_text(ev->dkim_domain, &own[5]);
	v[6] = store_text(ev->dkim_selector, &own[6]);
	v[7] = store_text(ev->dkim_algorithm, &own[7]);
	v[8] = ev->dkim_key_bits ? bits : NULL;
	v[9] = store_text(ev->dnssec, &own[9]);
	v[10] = store_text(ev->spf_result, &own[10]);
	v[11] = store_text(ev->detail, &own[11]);
	v[12] = store_text(ev->token_prefix, &own[12]);
	own[8] = NULL;
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
	out->holders = atoi(PQgetvalue(res, row, 4));
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
	char		*own[STORE_TEXTS];	/* mended copies (store_text) */
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
	a->v[2] = store_text(ev->from, &a->own[STORE_TEXTS - 1]);
	a->v[3] = reason_name(ev->reason);
	a->v[4] = ev->stage;
	a->v[5] = a->attempts;
	a->v[6] = a->apa;
	a->v[7] = a->valid;
	store_evidence_values(ev, a->v + 8, a->bits, sizeof(a->bits), a->own);
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
/*
 * How long a leader waits for the verifications still to come: messages
 * whose RCPT found a pending request and whose decision is not recorded yet
 * (store_prospect). A group costs PostgreSQL about 1.4 ms of CPU whatever
 * its size, and each verification in it some 0.16 ms more (pgbench scripts
 * of record_group, tests/bench/README.md), so the group's size, not the
 * commit, is what a verification costs the database. Without a wait a group
 * held what queued while the one before was written: 2.3 verifications at
 * 8 connections, 4.8 at 32. Waiting up to 3 ms, in paired one-round benches
 * against the code without the wait (tests/bench/README.md, "A leader that
 * waits"): 4.0-4.1 and 11.1 per group, PostgreSQL's CPU per first
 * verification 0.48-0.54 ms at 8 connections and 0.33-0.34 at 32 against
 * 0.71-0.72 and 0.55-0.56, whole-message p99 at 32 connections 27 ms
 * against 35-36. Waiting up to 1 ms gave 3.1-3.3 and 7.6-8.2; up to 5 ms no
 * larger groups than 3 ms. A lone verification (no other pending reply in
 * flight) does not wait at all.
 *
 * The bound runs from when the oldest queued verification queued, not from
 * when its leader may start: what queued while the group before was written
 * has waited that long already. A leader that waited a whole bound after
 * each write kept nearly every one of 32 connections in the group commit
 * (gathering, written, flushed) and left the cores 17% idle (measured rate
 * over what their CPU per message allowed: 0.82-0.85). In four paired
 * one-round benches (tests/bench/README.md, "The wait counted from the
 * oldest"): 0.87-0.93 of what the cores allowed, 8.1-11.3 per group
 * against 10.8-12.2, the ratio to OpenDKIM at 32 connections 1.55-2.15
 * against 1.62-1.88, whole-message p99 17.5-24.5 ms against 23.5-27.4.
 */
#define STORE_GROUP_WAIT_US	3000

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
	pthread_cond_t			 wake;	/* done, or first queued and may lead */
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
		const char *stmt = n == 1 ? "record" : "record_group";

		res = store_exec_on(st, &st->slots[*slot], stmt, STORE_RECORD_ARGS, values,
		    lengths, formats, dl, err);
		if (res != NULL && PQntuples(res) != n) {
			buf_printf(err, "%s: %d result rows for %d", stmt, PQntuples(res), n);
			PQclear(res);
			res = NULL;
		}
		if (res == NULL)
			store_release(st, *slot);
	}
	for (int c = 0; c < STORE_RECORD_ARGS; c++)
		buf_free(&cols[c]);
	for (int i = 0; i < n; i++)
		store_texts_free(a[i].own);
	return res;
}

/* One decision, one call of record() (a group of one), one transaction, then
 * store_durable if the decision needs it, all within dl. */
static enum store_rc
store_record_one(struct store *st, const struct store_evidence *ev,
    const struct store_guard *g, struct store_outcome *out, const struct store_deadline *dl,
    struct buf *err)
{
	struct store_group_item me = { .ev = ev, .g = g }, *one = &me;
	enum store_rc rc = STORE_OK;
	PGresult *res;
	int slot;

	memset(out, 0, sizeof(*out));
	if ((res = store_group_exec(st, &one, 1, dl, &slot, err)) == NULL)
		return STORE_TEMPFAIL;
	if (store_wants_durable(ev, out, store_outcome(res, 0, ev, out)) &&
	    store_durable(st, &st->slots[slot], dl, err) == -1)
		rc = STORE_TEMPFAIL;
	PQclear(res);
	store_release(st, slot);
	return rc;
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
		stats_group_written(n);
		if (!durable)
			store_release(st, slot);
		return durable ? slot : -1;
	}
	if (n > 1)
		log_msg(LOG_NOTICE, NULL, "database: a group of %d verifications failed%s: %s", n,
		    store_left(dl) > 0 ? ", each written again on its own" : "", err.s);
	for (int i = 0; i < n; i++)
		if (n > 1 && store_left(dl) > 0) {
			group[i]->rc = store_record_one(st, group[i]->ev, group[i]->g,
			    group[i]->out, &group[i]->dl, group[i]->err);
			if (group[i]->rc == STORE_OK)
				stats_group_written(1);	/* a group of one */
		} else
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

void
store_prospect(struct store *st, int delta)
{
	stats_prospect(delta);
	if (__atomic_add_fetch(&st->prospects, delta, __ATOMIC_RELAXED) > 0 || delta > 0)
		return;
	/* None left to come: a leader waiting for them writes now. */
	pthread_mutex_lock(&st->group_lock);
	if (st->group_waiter != NULL)
		pthread_cond_signal(&st->group_waiter->wake);
	pthread_mutex_unlock(&st->group_lock);
}

/* The leader, group_lock held: waits while verifications are still to come
 * (store_prospect), until STORE_GROUP_WAIT_US after the oldest queued, woken
 * by each that queues. */
static void
store_group_gather(struct store *st, struct store_group_item *me)
{
	struct timespec until;

	if (__atomic_load_n(&st->prospects, __ATOMIC_RELAXED) <= 0)
		return;
	until = st->group_head->dl.at;	/* from when the oldest queued */
	until.tv_sec -= st->group_head->dl.seconds;
	until.tv_nsec += STORE_GROUP_WAIT_US * 1000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	st->group_waiter = me;
	while (__atomic_load_n(&st->prospects, __ATOMIC_RELAXED) > 0)
		if (pthread_cond_timedwait(&me->wake, &st->group_lock, &until) != 0)
			break;
	st->group_waiter = NULL;
}

/* A verification: queued, written with those of other workers. Each waits
 * on a condition of its own, signalled when its group is done, or, first in
 * the queue, when the group before is written and it may lead the next. */
static enum store_rc
store_group_record(struct store *st, const struct store_evidence *ev,
    const struct store_guard *g, struct store_outcome *out, struct buf *err)
{
	struct store_group_item me = { .ev = ev, .g = g, .out = out, .err = err,
	    .rc = STORE_TEMPFAIL };
	struct store_group_item *group[STORE_GROUP_MAX], *next;
	struct store_deadline dl;
	long long queued = clock_us(), t[4];
	int n, slot;

	memset(out, 0, sizeof(*out));
	/* One bound for the write and its confirmation by the standbys. */
	store_deadline(&me.dl, st->commit_timeout, "db_commit_timeout");
	if (st->before_wait != NULL)
		st->before_wait();
	pthread_cond_init(&me.wake, &st->group_attr);
	pthread_mutex_lock(&st->group_lock);
	*st->group_tail = &me;
	st->group_tail = &me.next;
	if (st->group_waiter != NULL)
		pthread_cond_signal(&st->group_waiter->wake);
	while (!me.done) {
		if (st->group_leading || me.taken) {
			pthread_cond_wait(&me.wake, &st->group_lock);
			continue;
		}
		st->group_leading = 1;
		t[0] = clock_us();
		store_group_gather(st, &me);
		n = store_group_take(st, group);
		pthread_mutex_unlock(&st->group_lock);
		t[1] = clock_us();
		slot = store_group_write(st, group, n, &dl);
		t[3] = t[2] = clock_us();
		pthread_mutex_lock(&st->group_lock);
		st->group_leading = 0;		/* the next group may be written */
		/* By the first queued; not by this leader when it is still queued
		 * (more than STORE_GROUP_MAX were before it): its flush comes first. */
		if ((next = st->group_head) == &me)
			next = me.next;
		if (next != NULL)
			pthread_cond_signal(&next->wake);
		if (slot != -1) {
			pthread_mutex_unlock(&st->group_lock);
			store_group_durable(st, group, n, slot, &dl);
			t[3] = clock_us();
			pthread_mutex_lock(&st->group_lock);
		}
		stats_group_led(t[1] - t[0], t[2] - t[1], t[3] - t[2]);
		for (int i = 0; i < n; i++) {
			group[i]->done = 1;
			pthread_cond_signal(&group[i]->wake);
		}
	}
	pthread_mutex_unlock(&st->group_lock);
	pthread_cond_destroy(&me.wake);
	stats_group_waited(clock_us() - queued);
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
	char id[24], bits[16], *own[STORE_TEXTS];
	const char *values[17] = {
		ev->request_id ? id : NULL, NULL, reason_name(ev->reason), ev->stage,
	};
	struct store_deadline dl;
	PGresult *res;

	snprintf(id, sizeof(id), "%lld", ev->request_id);
	values[1] = store_text(ev->from, &own[STORE_TEXTS - 1]);
	store_evidence_values(ev, values + 4, bits, sizeof(bits), own);
	store_deadline(&dl, st->commit_timeout, "db_commit_timeout");
	res = store_exec(st, "evidence", 17, values, NULL, NULL, &dl, err);
	store_texts_free(own);
	if (res == NULL)
		return STORE_TEMPFAIL;
	PQclear(res);
	return STORE_OK;
}
