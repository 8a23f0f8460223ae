/* ctl_follow.c — milterctl follow: the backend's program run at once on every
 * verification, lapse and address change (LISTEN), after catching up on all it
 * has not acknowledged; in order for each account, at least once, acknowledged
 * only once the program exits 0. Up to --jobs programs run at once, one per
 * account, so that a slow or hanging one holds up its own account only. One
 * follower acts at a time per database (a session advisory lock); others wait
 * as standbys. */
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "ctl.h"
#include "log.h"
#include "store.h"

#define FOLLOW_RESCAN	60	/* seconds between full scans without a notification */
#define FOLLOW_RETRY_MAX 300	/* seconds: the longest wait before retrying a program */
#define FOLLOW_RECONNECT_MAX 30	/* seconds: the longest wait between reconnections */
#define FOLLOW_JOBS	4	/* --jobs: programs at once, by default */
#define FOLLOW_JOBS_MAX	64
/* A dead peer is found 20 + 3 x 10 = 50 s after the last traffic, by either
 * side: the server then ends the session of a follower whose host died, and
 * frees its lock for a standby (the OS default is 2 h 11 min); the follower
 * gives up a server that vanished. */
#define FOLLOW_KA_IDLE	"20"
#define FOLLOW_KA_INTERVAL "10"
#define FOLLOW_KA_COUNT	"3"
#define FOLLOW_USER_TIMEOUT "50000"	/* ms: data sent and never acknowledged */

static const char *const follow_channels[] = {
	"milterd_verified", "milterd_lapsed", "milterd_address_changed", "milterd_revoked",
};

/* An account whose program failed: its events wait until next (follow_now()),
 * in order. */
struct follow_backoff {
	char	*account;
	double	 next;
	int	 delay;
};

/* A program under way for one event. */
struct follow_job {
	char	*id, *event, *account;
	pid_t	 pid;
	int	 pidfd;		/* -1: its end is polled for */
	double	 start;
};

struct follow {
	struct ctl		*c;
	const char		*program;
	int			 once;
	int			 timeout;	/* seconds a program may run */
	int			 jobs;		/* programs at once, at most */
	struct follow_job	 job[FOLLOW_JOBS_MAX];	/* those under way */
	int			 njob;
	char			**held;		/* accounts passed over until the next read */
	int			 nheld;
	struct follow_backoff	*backoff;
	size_t			 nbackoff;
	int			 failures;	/* programs that failed (for --once) */
	char			 why[512];	/* what the last failure was, to log */
	double			 lapse_next;	/* when to call milterd.lapse() again */
	int			 lapse_said;	/* its refusal was logged */
};

static volatile sig_atomic_t follow_stop;

static void
follow_signal(int sig)
{
	(void)sig;
	follow_stop = 1;
}

static double
follow_now(void)
{
	return (double)clock_ms() / 1000;
}

/* Says in f->why what failed, on one line without a trailing newline (libpq's
 * messages end with one). */
static void __attribute__((format(printf, 2, 3)))
follow_why(struct follow *f, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(f->why, sizeof(f->why), fmt, ap);
	va_end(ap);
	for (n = strlen(f->why); n > 0 && (f->why[n - 1] == '\n' || f->why[n - 1] == ' '); n--)
		f->why[n - 1] = '\0';
}

/* A query; NULL with f->why set (what failed, unless what is NULL, then the
 * server's message alone). A failed query is not a lost connection:
 * the server may refuse one statement (a missing privilege, statement_timeout)
 * on a session that is fine, and the caller must tell the two apart (PQstatus)
 * to react to what happened, not reconnect and run the program again. */
static PGresult *
follow_query(struct follow *f, const char *what, const char *sql, int n,
    const char *const *params)
{
	PGconn *conn = f->c->conn;
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
		return res;
	if (PQstatus(conn) != CONNECTION_OK)
		follow_why(f, "database connection lost: %s", PQerrorMessage(conn));
	else if (msg != NULL)
		follow_why(f, "%s%s%s: %s", what ? what : "", what ? ": " : "",
		    sev != NULL ? sev : "ERROR", msg);
	else
		follow_why(f, "%s%s%s", what ? what : "", what ? ": " : "", PQerrorMessage(conn));
	PQclear(res);
	return NULL;
}

static struct follow_backoff *
follow_backoff_find(struct follow *f, const char *account)
{
	for (size_t i = 0; i < f->nbackoff; i++)
		if (strcmp(f->backoff[i].account, account) == 0)
			return &f->backoff[i];
	return NULL;
}

/* The program failed for account: wait twice as long as last time. */
static void
follow_backoff_add(struct follow *f, const char *account)
{
	struct follow_backoff *b = follow_backoff_find(f, account), *grown;

	if (b == NULL) {
		if ((grown = realloc(f->backoff, (f->nbackoff + 1) * sizeof(*grown))) == NULL)
			return;		/* retried on the next scan instead */
		f->backoff = grown;
		b = &f->backoff[f->nbackoff];
		if ((b->account = strdup(account)) == NULL)
			return;
		b->delay = 0;
		f->nbackoff++;
	}
	b->delay = b->delay == 0 ? 1 : b->delay * 2 > FOLLOW_RETRY_MAX ? FOLLOW_RETRY_MAX :
	    b->delay * 2;
	b->next = follow_now() + b->delay;
}

static void
follow_backoff_clear(struct follow *f, const char *account)
{
	struct follow_backoff *b = follow_backoff_find(f, account);

	if (b == NULL)
		return;
	free(b->account);
	*b = f->backoff[--f->nbackoff];
}

/* Forgets the backoff of accounts that have no event left (acknowledged by
 * someone else meanwhile): a retry time in the past would otherwise end every
 * wait at once, a pass after another without pause. */
static void
follow_backoff_prune(struct follow *f, PGresult *res)
{
	for (size_t i = 0; i < f->nbackoff; ) {
		int seen = 0;

		for (int r = 0; r < PQntuples(res) && !seen; r++)
			seen = strcmp(PQgetvalue(res, r, 2), f->backoff[i].account) == 0;
		if (seen)
			i++;
		else
			follow_backoff_clear(f, f->backoff[i].account);
	}
}

/* Lapses what is past its end (milterd.lapse()) at start and at each rescan,
 * so that a lapse is announced within a minute, not at the daily recertify,
 * while address_holders() frees the address at once. Safe beside recertify
 * and other hosts: its UPDATE takes each row's lock and rechecks state =
 * 'verified', so a row lapses once. Refused (a role without the right): said
 * once, until it works again. -1 only when the connection is lost. */
static int
follow_lapse(struct follow *f)
{
	PGresult *res;
	int n;

	if (follow_now() < f->lapse_next)
		return 0;
	f->lapse_next = follow_now() + FOLLOW_RESCAN;
	if ((res = follow_query(f, "milterd.lapse()", "SELECT milterd.lapse()", 0, NULL)) == NULL) {
		if (PQstatus(f->c->conn) != CONNECTION_OK)
			return -1;
		if (!f->lapse_said++)
			log_warn("follow: %s; lapses wait for milterctl recertify", f->why);
		return 0;
	}
	f->lapse_said = 0;
	if ((n = atoi(PQgetvalue(res, 0, 0))) > 0)
		log_info("follow: %d certification%s past its end lapsed", n, n > 1 ? "s" : "");
	PQclear(res);
	return 0;
}

/* Whether the session, and with it the follower lock, is still ours. Reads
 * what came (notifications are queued for follow_pass() and follow_wait()): a
 * session the server ended says so, then closes. */
static int
follow_alive(PGconn *conn)
{
	return PQconsumeInput(conn) != 0 && PQstatus(conn) == CONNECTION_OK;
}

static void
follow_job_free(struct follow_job *j)
{
	if (j->pidfd != -1)
		close(j->pidfd);
	free(j->id);
	free(j->event);
	free(j->account);
}

/* Starts PROGRAM EVENT ACCOUNT EMAIL for row r of res as job j, no shell. -1
 * when it could not (said), j then holding nothing. */
static int
follow_spawn(struct follow *f, struct follow_job *j, PGresult *res, int r)
{
	char *const argv[] = { (char *)(uintptr_t)f->program, PQgetvalue(res, r, 1),
	    PQgetvalue(res, r, 2), PQgetvalue(res, r, 3), NULL };
	int devnull;

	/* Copies: the events may be read again while it runs. */
	*j = (struct follow_job){ .id = strdup(PQgetvalue(res, r, 0)), .event = strdup(argv[1]),
	    .account = strdup(argv[2]), .pid = -1, .pidfd = -1, .start = follow_now() };
	if (j->id == NULL || j->event == NULL || j->account == NULL) {
		log_warn("follow: %s %s: %s", argv[1], argv[2], strerror(ENOMEM));
		follow_job_free(j);
		return -1;
	}
	if ((j->pid = fork()) == -1) {
		log_warn("follow: fork: %s", strerror(errno));
		follow_job_free(j);
		return -1;
	}
	if (j->pid == 0) {
		if ((devnull = open("/dev/null", O_RDONLY)) != -1)
			dup2(devnull, 0);
		/* Its own process group, so that a timeout kills what it started
		 * too (sudo, a shell's children); and SIGPIPE back to its default:
		 * milterctl ignores it, and an ignored signal stays so across exec. */
		setpgid(0, 0);
		signal(SIGPIPE, SIG_DFL);
		execv(f->program, argv);
		fprintf(stderr, "milterctl: follow: %s: %s\n", f->program, strerror(errno));
		_exit(127);
	}
	setpgid(j->pid, j->pid);	/* as the child does: whichever runs first */
	/* A pidfd is readable when it ends; without one (kernel before 5.3, a
	 * container's seccomp profile) follow_await() polls. */
	j->pidfd = (int)syscall(SYS_pidfd_open, j->pid, 0);
	return 0;
}

/* Passes over account's events until the events are read again: its program
 * failed, or it waits for a retry. Its later events wait behind, in order. */
static void
follow_hold(struct follow *f, const char *account)
{
	char **grown, *copy = strdup(account);

	if (copy == NULL || (grown = realloc(f->held, (f->nheld + 1) * sizeof(*grown))) == NULL) {
		free(copy);
		return;		/* its backoff alone holds it back */
	}
	f->held = grown;
	f->held[f->nheld++] = copy;
}

static void
follow_unhold(struct follow *f)
{
	while (f->nheld > 0)
		free(f->held[--f->nheld]);
}

/* Whether account is held back: since the events were last read, its program
 * failed, or an earlier event of it waited for a retry (held from then on, so
 * that a retry falling due later cannot run its later event first). */
static int
follow_held(struct follow *f, const char *account)
{
	struct follow_backoff *b = follow_backoff_find(f, account);

	for (int i = 0; i < f->nheld; i++)
		if (strcmp(f->held[i], account) == 0)
			return 1;
	if (b == NULL || b->next <= follow_now())
		return 0;
	follow_hold(f, account);
	return 1;
}

/* Whether a program runs for account: its next event waits for it. */
static int
follow_busy(struct follow *f, const char *account)
{
	for (int i = 0; i < f->njob; i++)
		if (strcmp(f->job[i].account, account) == 0)
			return 1;
	return 0;
}

/* The program failed for account (or could not start, or its event was not
 * acknowledged): its backoff; other accounts go on. */
static void
follow_failed(struct follow *f, const char *account)
{
	follow_backoff_add(f, account);
	follow_hold(f, account);
	f->failures++;
}

/* Starts the events whose turn it is, in order, while fewer than --jobs
 * programs run: an account's next event once the one before it is
 * acknowledged, none of an account held back. state: per row of res, set
 * once it is started or passed over. */
static void
follow_start(struct follow *f, PGresult *res, char *state)
{
	for (int i = 0; i < PQntuples(res) && f->njob < f->jobs && !follow_stop; i++) {
		const char *account = PQgetvalue(res, i, 2);

		if (state[i] || follow_busy(f, account))
			continue;
		state[i] = 1;
		if (follow_held(f, account))
			continue;
		if (follow_spawn(f, &f->job[f->njob], res, i) == -1)
			follow_failed(f, account);
		else
			f->njob++;
	}
}

/* Job j's program ended (status -1: killed past --timeout): acknowledged if
 * it exited 0, else its account's failure. -1 when the connection was lost
 * acknowledging (f->why). */
static int
follow_end(struct follow *f, struct follow_job *j, int status)
{
	const char *params[2] = { j->id, j->event };
	PGresult *ack;

	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (status != -1)
			log_warn("follow: %s %s %s: %s %d", f->program, j->event, j->account,
			    WIFEXITED(status) ? "exit" : "signal",
			    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		follow_failed(f, j->account);
		return 0;
	}
	log_info("follow: %s %s: done in %.3f s", j->event, j->account, follow_now() - j->start);
	/* Lost here, the acknowledgement makes the program run again on the
	 * next pass: at least once, as promised. */
	if ((ack = follow_query(f, NULL, "SELECT milterd.ack_event($1::bigint, $2)", 2,
	    params)) == NULL) {
		if (PQstatus(f->c->conn) != CONNECTION_OK)
			return -1;
		/* Refused on a sound connection (no UPDATE right on
		 * milterd.requests, statement_timeout behind a lock): reconnecting
		 * would run the program again at once, forever, the other
		 * accounts waiting. It is this account's failure: its backoff,
		 * the others go on. */
		log_warn("follow: %s %s: done, but not acknowledged: %s", j->event, j->account,
		    f->why);
		follow_failed(f, j->account);
		return 0;
	}
	follow_backoff_clear(f, j->account);
	PQclear(ack);
	return 0;
}

/* The session, and with it the lock, is lost: this follower is no longer the
 * active one, and a standby may be running these accounts' events already, so
 * every program under way is stopped (its process group, as past --timeout),
 * lest two runs act out of order; none is acknowledged, each runs again, by
 * whichever follower is active. */
static void
follow_kill_all(struct follow *f)
{
	int status;

	for (int i = 0; i < f->njob; i++) {
		struct follow_job *j = &f->job[i];

		if (waitpid(j->pid, &status, WNOHANG) != j->pid) {
			log_warn("follow: %s %s %s: stopped: the database connection was lost,"
			    " another follower may be running its events", f->program, j->event,
			    j->account);
			kill(-j->pid, SIGKILL);
			waitpid(j->pid, &status, 0);
		}
		follow_job_free(j);
	}
	f->njob = 0;
}

/* Waits until a program ends or outlives --timeout, the database says
 * something (a notification, the session's end), or a second passes; then
 * deals with each program that ended. Signals interrupt poll(); SIGTERM
 * still waits for the programs. -1 when the session was lost (f->why), every
 * program then stopped. */
static int
follow_await(struct follow *f)
{
	struct pollfd pfd[FOLLOW_JOBS_MAX + 1];
	nfds_t n = 0;
	int ms = 1000, status, i;
	double left;

	pfd[n++] = (struct pollfd){ .fd = PQsocket(f->c->conn), .events = POLLIN };
	for (i = 0; i < f->njob; i++) {
		if ((left = f->job[i].start + f->timeout - follow_now()) < ms / 1000.0)
			ms = left > 0 ? (int)(left * 1000) + 1 : 0;
		if (f->job[i].pidfd == -1)
			ms = ms < 50 ? ms : 50;
		else
			pfd[n++] = (struct pollfd){ .fd = f->job[i].pidfd, .events = POLLIN };
	}
	(void)poll(pfd, n, ms);
	/* Checked before acknowledging what ended, too. */
	if (!follow_alive(f->c->conn)) {
		if (f->njob == 1)
			follow_why(f, "database connection lost while %s %s ran: %s",
			    f->job[0].event, f->job[0].account, PQerrorMessage(f->c->conn));
		else
			follow_why(f, "database connection lost while %d programs ran: %s", f->njob,
			    PQerrorMessage(f->c->conn));
		follow_kill_all(f);
		return -1;
	}
	for (i = 0; i < f->njob; ) {
		struct follow_job *j = &f->job[i];
		int lost;

		if (waitpid(j->pid, &status, WNOHANG) != j->pid) {
			if (follow_now() - j->start < f->timeout) {
				i++;
				continue;
			}
			log_warn("follow: %s %s %s: still running after %d s, stopped", f->program,
			    j->event, j->account, f->timeout);
			kill(-j->pid, SIGKILL);
			waitpid(j->pid, &status, 0);
			status = -1;
		}
		lost = follow_end(f, j, status) == -1;
		follow_job_free(j);
		*j = f->job[--f->njob];		/* i is now the last one, or past */
		if (lost) {
			follow_kill_all(f);
			return -1;
		}
	}
	return 0;
}

/* The unacknowledged events, the accounts oldest first, each account's events
 * in the order they happened to its requests: request by request (each
 * request after the one it replaced), a verification before its end. Not by
 * time alone: an event's time is its transaction's start, and an end written
 * by a transaction that began before the reply verified (the backend's own,
 * saving a new address) bears the earlier time; a lapse and the renewal that
 * raced it likewise. In time order the program would undo the last word
 * (enable after disable). *state: per row, set for those of programs under
 * way (follow_start()). NULL when the query failed (f->why). */
static PGresult *
follow_read(struct follow *f, char **state)
{
	PGresult *res;

	if ((res = follow_query(f, "reading milterd.events", "SELECT request_id, event, account,"
	    " coalesce(email, '') FROM milterd.events ORDER BY min(at) OVER (PARTITION BY"
	    " account), account, request_id, event <> 'verified'", 0, NULL)) == NULL)
		return NULL;
	if ((*state = calloc((size_t)PQntuples(res) + 1, 1)) == NULL) {
		follow_why(f, "reading milterd.events: %s", strerror(ENOMEM));
		PQclear(res);
		return NULL;
	}
	/* Read again while they run, they are started already. */
	for (int r = 0; r < PQntuples(res); r++)
		for (int i = 0; i < f->njob; i++)
			if (strcmp(PQgetvalue(res, r, 0), f->job[i].id) == 0 &&
			    strcmp(PQgetvalue(res, r, 1), f->job[i].event) == 0)
				(*state)[r] = 1;
	follow_unhold(f);
	return res;
}

/* One pass over every unacknowledged event (follow_read()), up to --jobs
 * programs at once, one per account. -1 when the database connection failed
 * (every program then stopped, none acknowledged). */
static int
follow_pass(struct follow *f)
{
	PGresult *res, *again;
	PGnotify *n;
	char *state, *state_again;
	int rc = 0;

	if (follow_lapse(f) == -1)
		return -1;
	if ((res = follow_read(f, &state)) == NULL)
		return -1;
	for (;;) {
		follow_start(f, res, state);
		if (f->njob == 0)
			break;
		if (follow_await(f) == -1) {
			rc = -1;	/* not acknowledged: they run again, by whoever is active */
			break;
		}
		/* An event that came meanwhile (a sign-up during a burst of
		 * lapses) starts beside the programs under way, not after the
		 * slowest of them: read again when a program runs and another
		 * may start. Not with --jobs 1, which is one program at a time,
		 * each event that came during the pass in the next pass; nor
		 * with --once, one pass over what was there. */
		if (f->once || follow_stop || f->njob == 0 || f->njob >= f->jobs ||
		    (n = PQnotifies(f->c->conn)) == NULL)
			continue;
		do
			PQfreemem(n);
		while ((n = PQnotifies(f->c->conn)) != NULL);
		if ((again = follow_read(f, &state_again)) != NULL) {
			PQclear(res);
			free(state);
			res = again;
			state = state_again;
		} else if (PQstatus(f->c->conn) != CONNECTION_OK) {
			follow_kill_all(f);
			rc = -1;
			break;
		} else
			log_warn("follow: %s; the new events wait for the next pass", f->why);
	}
	if (rc == 0 && !follow_stop)
		follow_backoff_prune(f, res);
	free(state);
	PQclear(res);
	return rc;
}

/* Connects, becomes the active follower (waiting while another one is), and
 * listens. 0, or -1 (the caller waits and tries again). */
static int
follow_connect(struct follow *f)
{
	struct ctl *c = f->c;
	const char *conninfo;
	struct buf err;
	PGresult *res;
	char sql[64];
	int said = 0, have;

	if (c->conn != NULL)
		PQfinish(c->conn);
	c->conn = NULL;
	if ((conninfo = ctl_conninfo(c)) == NULL)
		return -2;
	/* Not ctl_connect(): its failures are printed, not said in the log line
	 * that tells when the follower tries again. Keys before dbname are
	 * defaults that the conninfo (expand_dbname) may override. */
	const char *keys[] = { "connect_timeout", "keepalives", "keepalives_idle",
	    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "application_name",
	    "dbname", NULL };
	const char *vals[] = { ctl_connect_timeout(), "1", FOLLOW_KA_IDLE, FOLLOW_KA_INTERVAL,
	    FOLLOW_KA_COUNT, FOLLOW_USER_TIMEOUT, "milterctl follow", conninfo, NULL };

	c->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(c->conn) != CONNECTION_OK) {
		follow_why(f, "cannot connect to the database: %s", PQerrorMessage(c->conn));
		return -1;
	}
	buf_init(&err);
	if (store_schema_check(c->conn, "this milterctl", &err) == -1) {
		follow_why(f, "%s", err.s != NULL ? err.s : "schema check failed");
		buf_free(&err);
		return -1;
	}
	buf_free(&err);
	f->lapse_next = 0;	/* lapse at once: nobody may have since we left */
	/* The server's side of the keepalives (user-settable; ignored on a unix
	 * socket), and a bound on each query, unless the role has its own: a
	 * statement stuck behind a lock fails instead of holding the follower. */
	if ((res = follow_query(f, "setting keepalives", "SELECT set_config("
	    "'tcp_keepalives_idle', '" FOLLOW_KA_IDLE "', false), set_config("
	    "'tcp_keepalives_interval', '" FOLLOW_KA_INTERVAL "', false), set_config("
	    "'tcp_keepalives_count', '" FOLLOW_KA_COUNT "', false), set_config("
	    "'tcp_user_timeout', '" FOLLOW_USER_TIMEOUT "', false), CASE WHEN"
	    " current_setting('statement_timeout') = '0' THEN set_config('statement_timeout',"
	    " '60s', false) END", 0, NULL)) == NULL)
		return -1;
	PQclear(res);
	for (;;) {
		if ((res = follow_query(f, "taking the follower lock", "SELECT"
		    " pg_try_advisory_lock(hashtext('milterd.follow'))", 0, NULL)) == NULL)
			return -1;
		have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
		if (have)
			break;
		if (f->once)
			return 1;
		if (!said++)
			log_info("follow: another follower is active on this database; standing by");
		sleep(1);
		if (follow_stop)
			return -1;
	}
	for (size_t i = 0; i < sizeof(follow_channels) / sizeof(follow_channels[0]); i++) {
		snprintf(sql, sizeof(sql), "LISTEN %s", follow_channels[i]);
		if ((res = follow_query(f, sql, sql, 0, NULL)) == NULL)
			return -1;
		PQclear(res);
	}
	/* Said once by a follower that runs for good; --once (cron) stays quiet
	 * unless something happens, or cron would mail it every run. */
	log_msg(f->once ? LOG_DEBUG : LOG_INFO, NULL, "follow: active, running %s on each event",
	    f->program);
	return 0;
}

/* Until a notification, a retry falls due, or FOLLOW_RESCAN. -1 when the
 * connection broke. */
static int
follow_wait(struct follow *f)
{
	PGconn *conn = f->c->conn;
	double due = follow_now() + FOLLOW_RESCAN, left;
	struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };
	PGnotify *n;
	int got = 0;

	for (size_t i = 0; i < f->nbackoff; i++)
		if (f->backoff[i].next < due)
			due = f->backoff[i].next;
	for (;;) {
		/* Notifications first: those that came while the last pass's
		 * queries ran are already read and queued by libpq, and poll()
		 * would not wake for them. */
		if (PQconsumeInput(conn) == 0) {
			follow_why(f, "database connection lost: %s", PQerrorMessage(conn));
			return -1;
		}
		while ((n = PQnotifies(conn)) != NULL) {
			got = 1;
			PQfreemem(n);
		}
		if (got || follow_stop || (left = due - follow_now()) <= 0)
			break;
		if (poll(&pfd, 1, left > 1 ? 1000 : (int)(left * 1000) + 1) == -1 &&
		    errno != EINTR) {
			follow_why(f, "poll: %s", strerror(errno));
			return -1;
		}
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		follow_why(f, "database connection lost: %s", PQerrorMessage(conn));
		return -1;
	}
	return 0;
}

static int
follow_opts(struct follow *f, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "exec", required_argument, NULL, 'e' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "once", no_argument, NULL, 'o' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct stat st;
	int ch, err = 0;

	optind = 0;	/* glibc: a full restart, forgetting the "+" of the main parse */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'e': f->program = optarg; break;
		case 'j':
			if ((f->jobs = (int)ctl_number(optarg, 1, FOLLOW_JOBS_MAX)) == -1) {
				fprintf(stderr, "milterctl: follow --jobs %s: not a whole number"
				    " from 1 to %d\n", optarg, FOLLOW_JOBS_MAX);
				return EX_USAGE;
			}
			break;
		case 'o': f->once = 1; break;
		case 't': f->timeout = (int)ctl_number(optarg, 1, 86400); break;
		default: ctl_usage();
		}
	}
	if (optind != argc || f->timeout < 1)
		ctl_usage();
	if (f->program == NULL) {
		if (ctl_config(f->c) != EX_DONE)
			return EX_CONFIG;
		if (f->c->snap->cfg->follow_exec[0] != '\0')
			f->program = f->c->snap->cfg->follow_exec;
	}
	if (f->program == NULL) {
		fprintf(stderr, "milterctl: follow needs --exec PROGRAM (or follow_exec in the"
		    " configuration)\n");
		return EX_USAGE;
	}
	/* access() alone takes a directory (X_OK: searchable), which execv()
	 * would then refuse on every event. */
	if (access(f->program, X_OK) == -1)
		err = errno;
	else if (stat(f->program, &st) == 0 && !S_ISREG(st.st_mode))
		err = S_ISDIR(st.st_mode) ? EISDIR : EACCES;
	if (err != 0) {
		fprintf(stderr, "milterctl: follow --exec %s: not an executable file: %s\n",
		    f->program, strerror(err));
		return EX_USAGE;
	}
	return EX_DONE;
}

int
cmd_follow(struct ctl *c, int argc, char **argv)
{
	struct follow f = { .c = c, .timeout = 300, .jobs = FOLLOW_JOBS };
	struct sigaction sa;
	int delay = 0, rc;

	if ((rc = follow_opts(&f, argc, argv)) != EX_DONE)
		return rc;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = follow_signal;	/* no SA_RESTART: poll() returns at once */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);	/* a closed terminal, or a stray reload */
	log_set_level(LOG_INFO);
	while (!follow_stop) {
		if (delay > 0) {
			sleep((unsigned)delay);
			if (follow_stop)
				break;
		}
		if ((rc = follow_connect(&f)) == 1) {
			log_debug("follow: another follower is active: nothing done");
			return EX_DONE;
		}
		if (rc == -2)
			return EX_CONFIG;	/* said by ctl_conninfo() */
		if (rc == -1 && follow_stop)
			break;		/* asked to stop while standing by */
		if (rc == -1 || follow_pass(&f) == -1) {
			if (f.once) {
				log_warn("follow: %s", f.why);
				return EX_DB;
			}
			delay = delay == 0 ? 1 : delay * 2 > FOLLOW_RECONNECT_MAX ?
			    FOLLOW_RECONNECT_MAX : delay * 2;
			log_warn("follow: %s; again in %d s", f.why, delay);
			continue;
		}
		delay = 0;
		if (f.once)
			return f.failures > 0 ? EX_NOTFOUND : EX_DONE;
		/* Caught up: now each notification, retry or rescan brings a pass. */
		while (!follow_stop && follow_wait(&f) == 0)
			if (follow_pass(&f) == -1)
				break;
		if (!follow_stop) {
			delay = 1;
			log_warn("follow: %s; again in %d s", f.why, delay);
		}
	}
	for (size_t i = 0; i < f.nbackoff; i++)
		free(f.backoff[i].account);
	free(f.backoff);
	follow_unhold(&f);
	free(f.held);
	return EX_DONE;
}
