/* store_tokens.c — the daemon's set of issued tokens: the hash prefix of every
 * request, kept current by NOTIFY, so that a token never issued is refused
 * without asking PostgreSQL. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/rand.h>

#include "clock.h"
#include "log.h"
#include "stats.h"
#include "store.h"
#include "store_pool.h"

/*
 * Why: a reply with a token nobody issued (junk, a forgery, a typo) cost a
 * lookup, and the lookup was most of the refusal. Measured with a build that
 * answered every token unknown without the statement: 41,000-51,000 junk
 * refusals/s at 8 and 32 connections against 13,000-18,000 with it, on
 * 2 cores shared with PostgreSQL (tests/bench/README.md, "A refusal
 * without its lookup"). A flood of forged tokens then also stays off the
 * database every MX host shares.
 *
 * The set holds the first TOKENS_PREFIX bytes of each token's SHA-256: what
 * logs and evidence rows show already (token.h), never a token. A token
 * whose prefix is in the set is looked up as before; so is every token while
 * the set is not known to be current. Only a token the set has never seen,
 * while it is current, is answered "no request" without a statement.
 *
 * Current means: the last ping this thread sent through the channel came
 * back less than TOKENS_TRUST_MS after it was sent. PostgreSQL delivers a
 * listener's notifications in commit order, so the echo of a ping comes
 * after every request committed before the ping: each of them is in the
 * set by then (migration 012 notifies every token written). A listener that
 * hears nothing (its connection lost, a failover, a pooler in transaction
 * mode that does not keep LISTEN) stops being current within TOKENS_TRUST_MS
 * and every token is looked up again until the set is reloaded and a ping
 * returns. Before a worker answers "no request" from the set it reads what
 * the server has already sent to this connection (store_tokens_absent), so
 * the set is as fresh as the socket, not as the thread's last wake-up.
 */

#define TOKENS_CHANNEL	"milterd_token_issued"
#define TOKENS_PREFIX	6	/* bytes: 12 hex characters, token.h's TOKEN_PREFIX_LEN */
#define TOKENS_PING_MS	500	/* a ping in flight at most; a NOTIFY each, 2/s */
#define TOKENS_TRUST_MS	2000	/* a ping's echo keeps the set current so long */
#define TOKENS_DEAD_MS	10000	/* no echo for so long: the connection is made anew */
#define TOKENS_RETRY_MS	2000	/* between failed connections */

struct store_tokens {
	struct store	*st;		/* conninfo, appname, timeout */
	pthread_t	 thread;
	int		 wake[2];	/* a byte on wake[1] stops the thread */
	int		 stopping;
	int		 reread;	/* store_tokens_reread(): read the table anew */
	/* The set: open addressing, keys never 0; written by the thread,
	 * read by every worker. */
	pthread_rwlock_t set_lock;
	uint64_t	*keys;
	size_t		 cap, count;
	/* The connection and the ping in flight: the thread's, and a worker's
	 * while it reads what the socket holds. */
	pthread_mutex_t	 conn_lock;
	PGconn		*conn;
	int		 fd;		/* conn's socket, -1: none (read without the lock) */
	char		 nonce[17];	/* tells this process's pings from others' */
	unsigned long	 seq;		/* of the last ping sent */
	unsigned long	 waiting;	/* the ping in flight, 0: none */
	long long	 sent_ms;	/* when it was sent */
	long long	 until_ms;	/* current until then (monotonic ms), 0: not current */
	int		 broken;	/* a token could not be added: connect anew */
	int		 said;		/* what the log last said: 1 current, 0 not */
};

/* A hash's key: its first TOKENS_PREFIX bytes; 0 marks an empty slot, so a
 * prefix of zeros shares key 1 (one more lookup, never a wrong answer). */
static uint64_t
tokens_key(const unsigned char *hash)
{
	uint64_t k = 0;

	for (int i = 0; i < TOKENS_PREFIX; i++)
		k = k << 8 | hash[i];
	return k != 0 ? k : 1;
}

/* The key's slot: itself, or the empty one where it would go. The prefix
 * of a SHA-256 is spread evenly already: its low bits index the table. */
static size_t
tokens_slot(const uint64_t *keys, size_t cap, uint64_t k)
{
	size_t i = (size_t)k & (cap - 1);

	while (keys[i] != 0 && keys[i] != k)
		i = (i + 1) & (cap - 1);
	return i;
}

static int
tokens_has(struct store_tokens *t, uint64_t k)
{
	int has;

	pthread_rwlock_rdlock(&t->set_lock);
	has = t->keys[tokens_slot(t->keys, t->cap, k)] == k;
	pthread_rwlock_unlock(&t->set_lock);
	return has;
}

/* Adds k, doubling the table past half full; -1 out of memory (the set is
 * then no longer trusted: see tokens_lost). */
static int
tokens_add(struct store_tokens *t, uint64_t k)
{
	uint64_t *keys;
	size_t cap, i;
	int rc = 0;

	pthread_rwlock_wrlock(&t->set_lock);
	i = tokens_slot(t->keys, t->cap, k);
	if (t->keys[i] == k)
		goto out;
	if ((t->count + 1) * 2 > t->cap) {
		cap = t->cap * 2;
		if ((keys = calloc(cap, sizeof(*keys))) == NULL) {
			rc = -1;
			goto out;
		}
		for (size_t j = 0; j < t->cap; j++)
			if (t->keys[j] != 0)
				keys[tokens_slot(keys, cap, t->keys[j])] = t->keys[j];
		free(t->keys);
		t->keys = keys;
		t->cap = cap;
		i = tokens_slot(t->keys, t->cap, k);
	}
	t->keys[i] = k;
	t->count++;
out:
	pthread_rwlock_unlock(&t->set_lock);
	return rc;
}

static size_t
tokens_count(struct store_tokens *t)
{
	size_t n;

	pthread_rwlock_rdlock(&t->set_lock);
	n = t->count;
	pthread_rwlock_unlock(&t->set_lock);
	return n;
}

/* The set is no longer known to be current (with conn_lock held). */
static void
tokens_lost(struct store_tokens *t)
{
	__atomic_store_n(&t->until_ms, 0, __ATOMIC_RELEASE);
}

/* A hash prefix as the trigger writes it: TOKENS_PREFIX bytes in hex. */
static int
tokens_parse(const char *hex, uint64_t *k)
{
	unsigned char b[TOKENS_PREFIX];

	if (strlen(hex) != TOKENS_PREFIX * 2)
		return -1;
	for (int i = 0; i < TOKENS_PREFIX; i++) {
		unsigned v = 0;

		for (int j = 0; j < 2; j++) {
			char c = hex[i * 2 + j];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else
				return -1;
		}
		b[i] = (unsigned char)v;
	}
	*k = tokens_key(b);
	return 0;
}

/* One notification (conn_lock held): a token issued, or a ping's echo. */
static void
tokens_notified(struct store_tokens *t, const char *payload)
{
	char nonce[17];
	unsigned long seq;
	uint64_t k;

	if (tokens_parse(payload, &k) == 0) {
		if (tokens_add(t, k) == -1) {
			/* The set lacks a token: not current until read anew. */
			log_err("token filter: out of memory");
			tokens_lost(t);
			t->broken = 1;
		}
		return;
	}
	/* Another milterd's ping, or one of ours answered late, says nothing
	 * of the ping in flight. */
	if (sscanf(payload, "ping %16s %lu", nonce, &seq) != 2 ||
	    strcmp(nonce, t->nonce) != 0 || seq != t->waiting || seq == 0)
		return;
	t->waiting = 0;
	__atomic_store_n(&t->until_ms, t->sent_ms + TOKENS_TRUST_MS, __ATOMIC_RELEASE);
}

/* Reads what the server sent (conn_lock held): the ping's result, then the
 * notifications in order. -1 when the connection failed. */
static int
tokens_pump(struct store_tokens *t)
{
	PGnotify *n;
	PGresult *res;
	int rc = 0;

	if (!PQconsumeInput(t->conn) || t->broken)
		return -1;
	while (!PQisBusy(t->conn) && (res = PQgetResult(t->conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = -1;
		PQclear(res);
	}
	while ((n = PQnotifies(t->conn)) != NULL) {
		tokens_notified(t, n->extra);
		PQfreemem(n);
	}
	return rc;
}

int
store_tokens_absent(struct store_tokens *t, const unsigned char *hash)
{
	uint64_t k = tokens_key(hash);
	struct pollfd pfd;
	int readable;

	if (clock_ms() >= __atomic_load_n(&t->until_ms, __ATOMIC_ACQUIRE) || tokens_has(t, k))
		return 0;
	/* What the server has sent already, the thread may not have read yet;
	 * or has read (the socket is empty) and is adding to the set now: the
	 * lock waits for that. Without it, a reply right after its
	 * request was refused once (token-filter.sh under valgrind, where the
	 * thread is slow). */
	pfd.fd = __atomic_load_n(&t->fd, __ATOMIC_ACQUIRE);
	pfd.events = POLLIN;
	if (pfd.fd >= 0) {
		readable = poll(&pfd, 1, 0) == 1;
		pthread_mutex_lock(&t->conn_lock);
		if (readable && t->conn != NULL && tokens_pump(t) == -1)
			tokens_lost(t);
		pthread_mutex_unlock(&t->conn_lock);
		if (tokens_has(t, k))
			return 0;
	}
	return clock_ms() < __atomic_load_n(&t->until_ms, __ATOMIC_ACQUIRE);
}

/* ---------------------------------------------------------- the thread */

/* Reads the bytes that woke the thread (store_tokens_stop, _reread). */
static void
tokens_woken(struct store_tokens *t)
{
	char b[16];

	while (read(t->wake[0], b, sizeof(b)) == -1 && errno == EINTR)
		;
}

/* Waits ms, or less if woken. */
static void
tokens_sleep(struct store_tokens *t, int ms)
{
	struct pollfd pfd = { .fd = t->wake[0], .events = POLLIN };

	if (poll(&pfd, 1, ms) == 1)
		tokens_woken(t);
}

/* Empties the set (not current: the caller has dropped the connection). */
static void
tokens_clear(struct store_tokens *t)
{
	pthread_rwlock_wrlock(&t->set_lock);
	memset(t->keys, 0, t->cap * sizeof(*t->keys));
	t->count = 0;
	pthread_rwlock_unlock(&t->set_lock);
}

/* A new connection that listens, with every issued token in the set; NULL
 * with err set. LISTEN comes before the read: a token committed between
 * them is in both, none is in neither. */
static PGconn *
tokens_connect(struct store_tokens *t, struct buf *err)
{
	char sql[96];
	PGconn *conn;
	PGresult *res;
	uint64_t k;
	int n;

	if ((conn = store_dial(t->st, err)) == NULL)
		return NULL;
	/* A ping is no data: its commit need not wait for the disk. */
	snprintf(sql, sizeof(sql), "SET statement_timeout = %d; SET synchronous_commit = off;"
	    " LISTEN " TOKENS_CHANNEL, t->st->timeout * 1000);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		store_error(err, "listen", PQerrorMessage(conn));
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	snprintf(sql, sizeof(sql), "SELECT substr(token_hash, 1, %d) FROM milterd.requests",
	    TOKENS_PREFIX);
	res = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		store_error(err, "issued tokens", PQerrorMessage(conn));
		PQclear(res);
		goto fail;
	}
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		if (PQgetlength(res, i, 0) != TOKENS_PREFIX)
			continue;
		k = tokens_key((const unsigned char *)PQgetvalue(res, i, 0));
		if (tokens_add(t, k) == -1) {
			buf_puts(err, "issued tokens: out of memory");
			PQclear(res);
			goto fail;
		}
	}
	PQclear(res);
	return conn;
fail:
	PQfinish(conn);
	return NULL;
}

static void
tokens_drop(struct store_tokens *t)
{
	pthread_mutex_lock(&t->conn_lock);
	tokens_lost(t);
	__atomic_store_n(&t->fd, -1, __ATOMIC_RELEASE);
	if (t->conn != NULL)
		PQfinish(t->conn);
	t->conn = NULL;
	t->waiting = 0;
	t->broken = 0;
	pthread_mutex_unlock(&t->conn_lock);
}

/* Says when the set becomes current, and when it stops being while its
 * connection lasts (tokens_run says why a connection ends), once each. */
static void
tokens_say(struct store_tokens *t)
{
	int current = clock_ms() < __atomic_load_n(&t->until_ms, __ATOMIC_ACQUIRE);
	size_t n = tokens_count(t);

	stats_token_filter(current, n);
	if (current == t->said)
		return;
	t->said = current;
	if (current)
		log_info("token filter: current, %zu issued token(s) known; a token never issued"
		    " is refused without a lookup", n);
	else if (t->conn != NULL)
		log_warn("token filter: no echo from the database within %d ms; every token is"
		    " looked up until one comes", TOKENS_TRUST_MS);
}

static void *
tokens_run(void *arg)
{
	struct store_tokens *t = arg;
	struct pollfd pfd[2];
	struct buf err;
	long long now, next = 0;
	char sql[96];
	int failed = 0, ms;
	PGconn *conn;

	while (!__atomic_load_n(&t->stopping, __ATOMIC_ACQUIRE)) {
		if (__atomic_exchange_n(&t->reread, 0, __ATOMIC_ACQ_REL)) {
			/* Tokens written with the triggers off (pg_restore
			 * --disable-triggers, session_replication_role = replica)
			 * were never announced; prefixes of purged requests stay
			 * until then. */
			log_info("token filter: reading the issued tokens anew");
			tokens_drop(t);
			tokens_clear(t);
		}
		if (t->conn == NULL) {
			buf_init(&err);
			if ((conn = tokens_connect(t, &err)) == NULL) {
				if (!failed++)
					log_warn("token filter: %s; every token is looked up until"
					    " it connects", err.s);
				buf_free(&err);
				tokens_say(t);
				tokens_sleep(t, TOKENS_RETRY_MS);
				continue;
			}
			buf_free(&err);
			failed = 0;
			pthread_mutex_lock(&t->conn_lock);
			t->conn = conn;
			__atomic_store_n(&t->fd, PQsocket(conn), __ATOMIC_RELEASE);
			pthread_mutex_unlock(&t->conn_lock);
			next = 0;
		}
		now = clock_ms();
		pthread_mutex_lock(&t->conn_lock);
		if (t->waiting != 0 && now - t->sent_ms >= TOKENS_DEAD_MS) {
			pthread_mutex_unlock(&t->conn_lock);
			log_warn("token filter: no echo from the database in %d s; connecting"
			    " again", TOKENS_DEAD_MS / 1000);
			tokens_drop(t);
			tokens_say(t);
			continue;
		}
		if (t->waiting == 0 && now >= next) {
			/* Nonce and sequence: [0-9a-f] and digits, nothing to quote. */
			snprintf(sql, sizeof(sql), "NOTIFY " TOKENS_CHANNEL ", 'ping %s %lu'",
			    t->nonce, t->seq + 1);
			if (!PQsendQuery(t->conn, sql)) {
				pthread_mutex_unlock(&t->conn_lock);
				tokens_drop(t);
				continue;
			}
			t->waiting = ++t->seq;
			t->sent_ms = now;
			next = now + TOKENS_PING_MS;
		}
		pthread_mutex_unlock(&t->conn_lock);
		tokens_say(t);

		pfd[0] = (struct pollfd){ .fd = t->wake[0], .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = PQsocket(t->conn), .events = POLLIN };
		ms = (int)(next > now ? next - now : TOKENS_PING_MS);
		if (poll(pfd, 2, ms) <= 0)
			continue;
		if (pfd[0].revents & POLLIN)
			tokens_woken(t);
		if (pfd[1].revents & (POLLIN | POLLERR | POLLHUP)) {
			pthread_mutex_lock(&t->conn_lock);
			if (tokens_pump(t) == -1) {
				pthread_mutex_unlock(&t->conn_lock);
				buf_init(&err);
				store_error(&err, "connection lost", t->broken ?
				    "out of memory" : PQerrorMessage(t->conn));
				log_warn("token filter: %s; every token is looked up, connecting"
				    " again", err.s);
				buf_free(&err);
				tokens_drop(t);
				continue;
			}
			pthread_mutex_unlock(&t->conn_lock);
		}
	}
	tokens_drop(t);
	return NULL;
}

int
store_tokens_start(struct store *st)
{
	struct store_tokens *t;
	unsigned char r[8];

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return -1;
	t->st = st;
	t->fd = -1;
	t->cap = 1024;
	if ((t->keys = calloc(t->cap, sizeof(*t->keys))) == NULL || pipe(t->wake) == -1 ||
	    RAND_bytes(r, sizeof(r)) != 1) {
		free(t->keys);
		free(t);
		return -1;
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(t->nonce + i * 2, 3, "%02x", r[i]);
	pthread_rwlock_init(&t->set_lock, NULL);
	pthread_mutex_init(&t->conn_lock, NULL);
	if (pthread_create(&t->thread, NULL, tokens_run, t) != 0) {
		close(t->wake[0]);
		close(t->wake[1]);
		free(t->keys);
		free(t);
		return -1;
	}
	st->tokens = t;
	return 0;
}

static void
tokens_wake(struct store_tokens *t)
{
	while (write(t->wake[1], "", 1) == -1 && errno == EINTR)
		;
}

void
store_tokens_reread(struct store *st)
{
	if (st->tokens == NULL)
		return;
	__atomic_store_n(&st->tokens->reread, 1, __ATOMIC_RELEASE);
	tokens_wake(st->tokens);
}

void
store_tokens_stop(struct store_tokens *t)
{
	if (t == NULL)
		return;
	__atomic_store_n(&t->stopping, 1, __ATOMIC_RELEASE);
	tokens_wake(t);
	pthread_join(t->thread, NULL);
	close(t->wake[0]);
	close(t->wake[1]);
	pthread_rwlock_destroy(&t->set_lock);
	pthread_mutex_destroy(&t->conn_lock);
	free(t->keys);
	free(t);
}
