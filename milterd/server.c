/* server.c — the milter socket and its connections.
 *
 * Why not libmilter: it runs one thread per MTA connection and reads every
 * command with a poll() and two read()s; at a thousand connections that is a
 * thousand stacks (about 30 KB of each touched) and some 180 system calls per
 * message. Here a fixed pool of workers shares one epoll set; each connection
 * is armed one-shot, so exactly one worker serves it at a time, reads all the
 * MTA has sent in one read(), handles every complete command (milter.c) and
 * writes the replies in one write(). The work of a decision (DNS, database)
 * blocks only the worker doing it.
 *
 * Not every worker serves at once: `active` of them hold a place (two per
 * core by default), the others stand by. On a busy machine fewer messages in
 * flight go faster (fewer switches, PostgreSQL backends and caches shared by
 * fewer). A worker that has spent a second or more on one connection (a slow
 * DNS server or database) gives its place to a standby worker, so that
 * neither RCPT screening nor other messages wait behind it; it takes a place
 * again once one is free. A worker whose verification waits for its group's
 * commit (store.c: the flush, the standbys) lends its place at once
 * (server_lend_place): that wait uses no CPU of ours, and with two places per
 * core the cores were left a quarter idle while workers waited for commits on
 * a durable database (tests/bench/README.md). */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "milter.h"
#include "server.h"
#include "stats.h"

#define SERVER_READ	(64 * 1024)	/* room for a read: the MTA's body chunks are 64 KB */

struct server_conn {
	int			 fd;
	struct milter_conn	 m;
	unsigned char		*in;	/* bytes read, not yet a whole command */
	size_t			 inlen, incap;
	size_t			 outoff;	/* of m.out, already written */
	long			 idle_since;	/* server_ms() when parked, 0 while served;
					 * stored with release when parked and loaded
					 * with acquire when served: the hand-off from
					 * one worker to the next through epoll, in a
					 * form ThreadSanitizer can see */
	int			 expired;	/* shut down by server_sweep() */
	struct server_conn	*prev, *next;
};

static int		 server_fd = -1;
static int		 server_ep = -1;
static int		 server_wake = -1;	/* eventfd: readable once stopping */
static int		 server_tcp;
static char		 server_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static dev_t		 server_dev;
static ino_t		 server_ino;
static int		 server_stopping;
static pthread_mutex_t	 server_lock = PTHREAD_MUTEX_INITIALIZER;
static struct server_conn *server_conns;	/* every open connection */

/* Places: workers allowed to take work from the epoll set now. A worker's
 * `since` is 0 while it waits for work, the server_ms() at which it took the
 * connection it is serving, or -1 once server_unstick() gave its place away. */
struct server_worker {
	long	since;
};
static struct server_worker *server_workers;
static int		 server_nworkers;
static int		 server_places;		/* how many workers may serve */
static int		 server_placed;		/* workers holding a place */
static pthread_mutex_t	 server_gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 server_gate_cv = PTHREAD_COND_INITIALIZER;
static _Thread_local struct server_worker *server_self;	/* NULL outside workers */

#define SERVER_STUCK_MS	1000	/* on one connection that long: held up */

/* epoll tags for the two descriptors that are not connections. */
static char server_listen_tag, server_wake_tag;

/* Monotonic milliseconds, never 0 or negative (0 marks a connection a worker
 * is serving, or a worker waiting for work). */
static long
server_ms(void)
{
	return (long)clock_ms() + 1;
}

/* ------------------------------------------------------------ listening */

static int
server_open_unix(const char *path, struct buf *err)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (str_copy(sun.sun_path, path, sizeof(sun.sun_path)) == -1) {
		buf_printf(err, "socket path too long: %s", path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
		buf_printf(err, "socket: %s", strerror(errno));
		return -1;
	}
	/* A socket left by a process that died is replaced; one somebody
	 * still listens on is not (two milterd on one socket). */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			buf_printf(err, "%s exists and is not a socket", path);
			close(fd);
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 || errno == EAGAIN) {
			buf_printf(err, "%s: another process is listening on it", path);
			close(fd);
			return -1;
		}
		close(fd);
		if (unlink(path) == -1) {
			buf_printf(err, "cannot remove the stale socket %s: %s", path,
			    strerror(errno));
			return -1;
		}
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
			buf_printf(err, "socket: %s", strerror(errno));
			return -1;
		}
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    listen(fd, SOMAXCONN) == -1 || stat(path, &st) == -1) {
		buf_printf(err, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	str_copy(server_path, path, sizeof(server_path));
	server_dev = st.st_dev;
	server_ino = st.st_ino;
	return fd;
}

static int
server_open_inet(const char *rest, int family, struct buf *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[16];
	const char *at = strchr(rest, '@');
	size_t n = at ? (size_t)(at - rest) : strlen(rest);
	int fd = -1, one = 1, rc;

	if (n == 0 || n >= sizeof(port)) {
		buf_printf(err, "bad port in socket spec");
		return -1;
	}
	memcpy(port, rest, n);
	port[n] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(at ? at + 1 : NULL, port, &hints, &res)) != 0) {
		buf_printf(err, "%s: %s", at ? at + 1 : "(any address)", gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    ai->ai_protocol);
		if (fd == -1)
			continue;
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		buf_reset(err);
		buf_printf(err, "port %s: %s", port, strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1 && err->len == 0)
		buf_printf(err, "no address to listen on");
	server_tcp = 1;
	return fd;
}

int
server_open(const char *spec, struct buf *err)
{
	if (spec[0] == '/')
		server_fd = server_open_unix(spec, err);
	else if (strncmp(spec, "unix:", 5) == 0)
		server_fd = server_open_unix(spec + 5, err);
	else if (strncmp(spec, "local:", 6) == 0)
		server_fd = server_open_unix(spec + 6, err);
	else if (strncmp(spec, "inet:", 5) == 0)
		server_fd = server_open_inet(spec + 5, AF_INET, err);
	else if (strncmp(spec, "inet6:", 6) == 0)
		server_fd = server_open_inet(spec + 6, AF_INET6, err);
	else
		buf_printf(err, "unknown socket spec %s", spec);
	return server_fd == -1 ? -1 : 0;
}

void
server_close(void)
{
	struct stat st;

	if (server_fd != -1)
		close(server_fd);
	server_fd = -1;
	/* Only our own: a newer milterd may already have its socket there. */
	if (server_path[0] != '\0' && lstat(server_path, &st) == 0 &&
	    st.st_dev == server_dev && st.st_ino == server_ino && unlink(server_path) == -1)
		log_warn("cannot remove %s: %s", server_path, strerror(errno));
	server_path[0] = '\0';
}

/* ---------------------------------------------------------- connections */

static int
server_arm(int fd, void *tag, uint32_t events, int op)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events | EPOLLONESHOT;
	ev.data.ptr = tag;
	return epoll_ctl(server_ep, op, fd, &ev);
}

static void
server_conn_close(struct server_conn *c)
{
	pthread_mutex_lock(&server_lock);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		server_conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&server_lock);
	stats_connection_open(-1);
	(void)epoll_ctl(server_ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	milter_conn_free(&c->m);
	free(c->in);
	free(c);
}

static void
server_accept(void)
{
	static time_t warned;
	struct server_conn *c;
	int fd, one = 1;

	for (;;) {
		fd = accept4(server_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* Out of descriptors or memory: say so (once a minute),
			 * give the connections in hand time to end. */
			if (time(NULL) - warned >= 60) {
				log_err("accept: %s", strerror(errno));
				warned = time(NULL);
			}
			usleep(50000);
			break;
		}
		/* A reply is often two packets (a header change, the
		 * verdict): no Nagle delay between them. Keep-alive: an MTA
		 * host that vanished without closing is noticed in the end. */
		if (server_tcp) {
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			log_err("out of memory for a connection");
			close(fd);
			continue;
		}
		c->fd = fd;
		milter_conn_init(&c->m);
		__atomic_store_n(&c->idle_since, server_ms(), __ATOMIC_RELEASE);
		pthread_mutex_lock(&server_lock);
		c->next = server_conns;
		if (server_conns != NULL)
			server_conns->prev = c;
		server_conns = c;
		pthread_mutex_unlock(&server_lock);
		stats_connection_open(1);
		if (server_arm(fd, c, EPOLLIN, EPOLL_CTL_ADD) == -1) {
			log_err("epoll_ctl: %s", strerror(errno));
			server_conn_close(c);
		}
	}
	if (!__atomic_load_n(&server_stopping, __ATOMIC_ACQUIRE))
		(void)server_arm(server_fd, &server_listen_tag, EPOLLIN, EPOLL_CTL_MOD);
}

/* Writes what the connection owes the MTA; -1 on a dead connection. */
static int
server_flush(struct server_conn *c)
{
	ssize_t w;

	while (c->outoff < c->m.out.len) {
		w = write(c->fd, c->m.out.s + c->outoff, c->m.out.len - c->outoff);
		if (w > 0)
			c->outoff += (size_t)w;
		else if (w == -1 && errno == EINTR)
			continue;
		else if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		else
			return -1;
	}
	buf_reset(&c->m.out);
	c->outoff = 0;
	return 0;
}

/* Makes room for the next read: at least SERVER_READ bytes, or the whole of
 * a command announced longer. */
static int
server_room(struct server_conn *c)
{
	size_t need = milter_need(c->in, c->inlen), want;
	unsigned char *p;

	want = c->inlen + SERVER_READ;
	if (need > c->inlen && need <= MILTER_MAX_PACKET + 4 && need > want)
		want = need;
	if (c->incap >= want)
		return 0;
	if ((p = realloc(c->in, want)) == NULL)
		return -1;
	c->in = p;
	c->incap = want;
	return 0;
}

/* The connection is readable (or writable again): read what the MTA sent,
 * handle every complete command, write the replies. */
static void
server_serve(struct server_conn *c)
{
	ssize_t r;
	size_t used;
	uint32_t events;
	int fd;

	/* What the last worker on this connection wrote is ours to read now. */
	(void)__atomic_load_n(&c->idle_since, __ATOMIC_ACQUIRE);
	__atomic_store_n(&c->idle_since, 0, __ATOMIC_RELAXED);
	if (server_flush(c) == -1 || (c->m.closing && c->m.out.len == 0)) {
		server_conn_close(c);	/* broken, or told to close and all said */
		return;
	}
	for (;;) {
		if (server_room(c) == -1) {
			log_err("out of memory reading from the MTA");
			server_conn_close(c);
			return;
		}
		r = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r <= 0) {	/* the MTA closed, or the connection broke */
			server_conn_close(c);
			return;
		}
		c->inlen += (size_t)r;
		used = milter_input(&c->m, c->in, c->inlen);
		if (used > 0) {
			memmove(c->in, c->in + used, c->inlen - used);
			c->inlen -= used;
		}
		if (server_flush(c) == -1 || (c->m.closing && c->outoff == c->m.out.len)) {
			server_conn_close(c);
			return;
		}
		if (c->m.closing || (size_t)r < SERVER_READ)
			break;	/* most likely all there was; epoll says if not */
	}
	/* An idle connection keeps no read buffer. */
	if (c->inlen == 0) {
		free(c->in);
		c->in = NULL;
		c->incap = 0;
	}
	/* Parked before it is armed: once armed, another worker may have it,
	 * so nothing of it is read after the release but what was saved. */
	fd = c->fd;
	events = c->outoff < c->m.out.len ? EPOLLOUT : EPOLLIN;
	__atomic_store_n(&c->idle_since, server_ms(), __ATOMIC_RELEASE);
	if (server_arm(fd, c, events, EPOLL_CTL_MOD) == -1) {
		/* Not armed: no other worker can have it. */
		log_err("epoll_ctl: %s", strerror(errno));
		server_conn_close(c);
	}
}

/* Waits for a place; 0, or -1 when stopping. */
static int
server_take_place(void)
{
	int stopping;

	pthread_mutex_lock(&server_gate);
	while (!(stopping = __atomic_load_n(&server_stopping, __ATOMIC_ACQUIRE)) &&
	    server_placed >= server_places)
		pthread_cond_wait(&server_gate_cv, &server_gate);
	if (!stopping)
		server_placed++;
	pthread_mutex_unlock(&server_gate);
	return stopping ? -1 : 0;
}

static void *
server_worker(void *arg)
{
	struct server_worker *w = arg;
	struct epoll_event ev;
	long since;
	int n;

	server_self = w;
	if (server_take_place() == -1)
		return NULL;
	while (!__atomic_load_n(&server_stopping, __ATOMIC_ACQUIRE)) {
		n = epoll_wait(server_ep, &ev, 1, -1);
		if (n == -1 && errno != EINTR) {
			log_err("epoll_wait: %s", strerror(errno));
			break;
		}
		if (n != 1)
			continue;
		if (ev.data.ptr == &server_wake_tag)
			break;
		stats_worker_busy(1);
		__atomic_store_n(&w->since, server_ms(), __ATOMIC_RELEASE);
		if (ev.data.ptr == &server_listen_tag)
			server_accept();
		else
			server_serve(ev.data.ptr);
		since = __atomic_exchange_n(&w->since, 0, __ATOMIC_ACQ_REL);
		stats_worker_busy(-1);
		/* Held up meanwhile: its place went to another; wait for one. */
		if (since == -1 && server_take_place() == -1)
			return NULL;
	}
	pthread_mutex_lock(&server_gate);
	server_placed--;
	pthread_mutex_unlock(&server_gate);
	return NULL;
}

/* As server_unstick() gives a place, at once: the CPU this worker leaves while
 * it waits is another's to use. The worker then finishes its connection's
 * commands without a place, as a held-up one does, and waits for one before
 * it serves another (server_worker): waiting for a place before answering
 * would hold the answer until a placed worker stops, which an idle one in
 * epoll_wait() never does. */
void
server_lend_place(void)
{
	long since;

	if (server_self == NULL)
		return;
	pthread_mutex_lock(&server_gate);
	since = __atomic_load_n(&server_self->since, __ATOMIC_ACQUIRE);
	/* Not while server_unstick() has it away already (-1). */
	if (since > 0 && __atomic_compare_exchange_n(&server_self->since, &since, -1, 0,
	    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		server_placed--;
		pthread_cond_signal(&server_gate_cv);
	}
	pthread_mutex_unlock(&server_gate);
}

int
server_unstick(void)
{
	long now = server_ms(), since;
	int n = 0;

	pthread_mutex_lock(&server_gate);
	for (int i = 0; i < server_nworkers; i++) {
		since = __atomic_load_n(&server_workers[i].since, __ATOMIC_ACQUIRE);
		/* The exchange fails if the worker finished meanwhile. */
		if (since <= 0 || now - since < SERVER_STUCK_MS ||
		    !__atomic_compare_exchange_n(&server_workers[i].since, &since, -1, 0,
		    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			continue;
		server_placed--;
		pthread_cond_signal(&server_gate_cv);
		n++;
	}
	pthread_mutex_unlock(&server_gate);
	return n;
}

int
server_run(int workers, int active)
{
	pthread_t *tids;
	struct epoll_event ev;
	int started = 0;

	if ((server_ep = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    (server_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1) {
		log_err("epoll: %s", strerror(errno));
		return -1;
	}
	/* The wake-up stays readable: every worker sees it (not one-shot). */
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &server_wake_tag;
	if (epoll_ctl(server_ep, EPOLL_CTL_ADD, server_wake, &ev) == -1 ||
	    server_arm(server_fd, &server_listen_tag, EPOLLIN, EPOLL_CTL_ADD) == -1) {
		log_err("epoll_ctl: %s", strerror(errno));
		return -1;
	}
	if ((tids = calloc((size_t)workers, sizeof(*tids))) == NULL ||
	    (server_workers = calloc((size_t)workers, sizeof(*server_workers))) == NULL) {
		free(tids);
		log_err("out of memory");
		return -1;
	}
	pthread_mutex_lock(&server_gate);
	server_nworkers = workers;
	pthread_mutex_unlock(&server_gate);
	server_places = active < 1 || active > workers ? workers : active;
	stats_set_workers(workers);
	for (; started < workers; started++)
		if (pthread_create(&tids[started], NULL, server_worker,
		    &server_workers[started]) != 0) {
			log_err("cannot start worker %d", started + 1);
			server_stop();
			break;
		}
	for (int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	pthread_mutex_lock(&server_gate);	/* server_unstick() may be looking */
	server_nworkers = 0;
	free(server_workers);
	server_workers = NULL;
	pthread_mutex_unlock(&server_gate);
	/* Workers are gone: what is left open is closed here. */
	while (server_conns != NULL)
		server_conn_close(server_conns);
	pthread_mutex_lock(&server_lock);	/* server_stop() may still write to it */
	close(server_wake);
	close(server_ep);
	server_wake = server_ep = -1;
	pthread_mutex_unlock(&server_lock);
	return started == workers ? 0 : -1;
}

int
server_sweep(int timeout)
{
	struct server_conn *c;
	long now = server_ms(), since;
	int n = 0;

	pthread_mutex_lock(&server_lock);
	for (c = server_conns; c != NULL; c = c->next) {
		since = __atomic_load_n(&c->idle_since, __ATOMIC_RELAXED);
		if (since == 0 || c->expired || now - since < (long)timeout * 1000)
			continue;
		/* The descriptor stays ours until a worker closes it (under
		 * server_lock, so not during this walk); shutting it down
		 * wakes that worker with an end of file. */
		c->expired = 1;
		(void)shutdown(c->fd, SHUT_RDWR);
		n++;
	}
	pthread_mutex_unlock(&server_lock);
	return n;
}

void
server_stop(void)
{
	uint64_t one = 1;

	__atomic_store_n(&server_stopping, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&server_gate);	/* standby workers stop too */
	pthread_cond_broadcast(&server_gate_cv);
	pthread_mutex_unlock(&server_gate);
	/* Under the lock: server_run() closes the eventfd under it once done. */
	pthread_mutex_lock(&server_lock);
	if (server_wake != -1 && write(server_wake, &one, sizeof(one)) == -1)
		log_err("cannot wake the workers: %s", strerror(errno));
	pthread_mutex_unlock(&server_lock);
}
