/* main.c — milterd: arguments, configuration, privileges, daemon start, signals,
 * the server loop. */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "milter.h"
#include "server.h"
#include "session.h"
#include "snapshot.h"
#include "stats.h"
#include "store.h"

#define STOP_GRACE 60	/* seconds SIGTERM waits for messages in flight */
#define STATS_INTERVAL 10	/* seconds between writes of the stats file */
#define TICKS_PER_S	4	/* signal thread wake-ups a second; each checks for held-up workers */

static const char *config_path = CONFIG_DEFAULT_PATH;

/* SIGHUP: a new snapshot of the configuration and the policy, validated in
 * full before it replaces the running one; a bad one is refused and logged,
 * and the running one stays. Open connections keep the snapshot they took. */
static void
reload(void)
{
	struct snapshot *snap, *old;
	struct buf errors;
	char *line, *next;

	/* systemd's state while the file is read (Type=notify): "reloading",
	 * then READY=1 again, whatever the outcome. */
	(void)sd_notify(0, "RELOADING=1");
	buf_init(&errors);
	if ((snap = snapshot_load(config_path, &errors)) != NULL) {
		old = milter_snapshot();
		if (config_reload_conflicts(old->cfg, snap->cfg, &errors) > 0) {
			snapshot_unref(snap);
			snap = NULL;
		}
		snapshot_unref(old);
	}
	if (snap == NULL) {
		stats_config_loaded(0);
		(void)sd_notify(0, "READY=1\nSTATUS=reload refused, the running configuration"
		    " stays (see the log)");
		log_err("reload refused, the running configuration stays:");
		for (line = errors.s; line && *line; line = next) {
			if ((next = strchr(line, '\n')) != NULL)
				*next++ = '\0';
			log_err("  %s", line);
		}
	} else {
		log_set_level(snap->cfg->log_level);
		milter_swap(snap);
		stats_config_loaded(1);
		(void)sd_notify(0, "READY=1\nSTATUS=serving");
		log_info("configuration and policy reloaded from %s", config_path);
	}
	buf_free(&errors);
}

/* The counters for milterctl stats; a failure is logged once, not every tick. */
static void
write_stats(void)
{
	static int failing;
	struct snapshot *snap = milter_snapshot();
	const char *path = snap->cfg->stats_file;

	if (path[0] != '\0') {
		if (stats_write(path) == -1) {
			if (!failing)
				log_warn("cannot write %s: %s", path, strerror(errno));
			failing = 1;
		} else
			failing = 0;
	}
	snapshot_unref(snap);
}

/* SIGTERM (or SIGINT): new transactions are turned away with a temporary
 * failure (the MTA retries, or tries another MX) while those under way
 * finish; then the server stops. */
static void
drain(void)
{
	milter_stopping();
	(void)sd_notifyf(0, "STOPPING=1\nSTATUS=stopping: %d message(s) in flight",
	    stats_in_flight());
	log_info("stopping: %d message(s) in flight", stats_in_flight());
	for (int i = 0; i < STOP_GRACE * 10 && stats_in_flight() > 0; i++) {
		usleep(100000);
		if (i % 3 == 2)	/* as unstick(): the messages to finish need workers */
			(void)server_unstick();
	}
	if (stats_in_flight() > 0)
		log_warn("stopping with %d message(s) still in flight after %d s",
		    stats_in_flight(), STOP_GRACE);
	server_stop();
}

#define BUSY_WARN	10	/* seconds with every worker busy before a warning */
#define BUSY_REWARN	60	/* seconds before the next one */

/* Every tick: a worker held up for a second on one connection makes way for a
 * standby one (logged at most once a minute). */
static void
unstick(void)
{
	static time_t held_said;
	int n;

	if ((n = server_unstick()) > 0 && time(NULL) - held_said >= BUSY_REWARN) {
		log_info("%d worker%s held up for 1 s or more by one MTA connection "
		    "(slow DNS or PostgreSQL?): standby workers serve the others meanwhile",
		    n, n == 1 ? "" : "s");
		held_said = time(NULL);
	}
}

/* Once a second: MTA connections silent for milter_timeout are closed, and
 * workers all busy for BUSY_WARN seconds running are reported (as Postfix
 * reports a service at its process limit): commands then wait for a worker. */
static void
sweep(void)
{
	static int busy;
	static time_t warned;
	struct snapshot *snap = milter_snapshot();
	int timeout = snap->cfg->milter_timeout, workers = snap->cfg->workers, n;

	snapshot_unref(snap);
	if ((n = server_sweep(timeout)) > 0)
		log_info("closed %d MTA connection%s silent for %d s or more (milter_timeout)",
		    n, n == 1 ? "" : "s", timeout);
	busy = stats_workers_all_busy() ? busy + 1 : 0;
	if (busy >= BUSY_WARN && time(NULL) - warned >= BUSY_REWARN) {
		log_warn("all %d workers busy for %d s: MTA commands wait for a free worker "
		    "(slow DNS or PostgreSQL? see dns_timeout, db_timeout, workers)",
		    workers, busy);
		warned = time(NULL);
	}
}

/* A descriptor per MTA connection: the soft limit (1024 under systemd) goes up
 * to the hard one. Nothing in milterd waits with select() (epoll, poll), so
 * descriptors above 1023 are safe. */
#define NOFILE_WANT	4096	/* below this, say so at start */
#define NOFILE_CAP	1048576	/* no need for more, whatever the hard limit */

/* Returns the soft limit now in force (0 if unknown). */
static rlim_t
raise_nofile(void)
{
	struct rlimit rl;
	rlim_t want;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 0;
	want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > NOFILE_CAP ?
	    NOFILE_CAP : rl.rlim_max;
	if (want > rl.rlim_cur) {
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur;
}

/* Workers serving at once: active_workers, or two per CPU milterd may run on
 * (its affinity: taskset, cpusets), and at most workers. */
static int
active_workers(const struct config *cfg)
{
	cpu_set_t set;
	long cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) :
	    sysconf(_SC_NPROCESSORS_ONLN);
	int n = cfg->active_workers;

	if (n == 0)
		n = cpus > 0 && cpus < 512 ? 2 * (int)cpus : cfg->workers;
	return n < cfg->workers ? n : cfg->workers;
}

static void *
signal_thread(void *arg)
{
	struct store *st = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	for (int ticks = 1;; ticks++) {
		struct timespec tick = { 0, 1000000000 / TICKS_PER_S };

		if ((sig = sigtimedwait(&set, NULL, &tick)) == SIGHUP) {
			reload();
			store_tokens_reread(st);
			write_stats();
		} else if (sig == SIGTERM || sig == SIGINT) {
			drain();
			write_stats();
			return NULL;
		} else if (sig == -1 && errno == EAGAIN) {
			unstick();
			if (ticks % TICKS_PER_S == 0)
				sweep();
			if (ticks % (TICKS_PER_S * STATS_INTERVAL) == 0)
				write_stats();
		}
	}
}

/* At start, one database connection: its server's replication is checked
 * (store.c: a risk is logged) and an unreachable database is said at once. A
 * thread of its own: milterd serves meanwhile, and answers 451 to what needs
 * the database until it comes. */
static void *
connect_thread(void *arg)
{
	struct store *st = arg;
	struct buf err;

	buf_init(&err);
	if (store_connect_now(st, &err) == -1)
		log_warn("database not usable at start: %s; verification replies get 451"
		    " until it is", err.s);
	buf_free(&err);
	return NULL;
}

/* To stdout for --help (exit 0), to stderr for a usage error (exit 2). */
static void __attribute__((noreturn))
usage(FILE *fp, int code)
{
	fprintf(fp, "usage: milterd [-f] [-n[n]] [-c FILE]\n"
	    "       milterd -V|--version\n"
	    "  -c FILE  configuration (default %s)\n"
	    "  -f       stay in the foreground, log to stderr\n"
	    "  -n       check the configuration and exit; -nn prints it\n"
	    "  -V       print the version and exit (also --version)\n"
	    "  -h       print this and exit (also --help)\n",
	    CONFIG_DEFAULT_PATH);
	exit(code);
}

/* The filesystem path of a unix socket spec, or NULL for inet sockets. */
static const char *
socket_path(const char *spec)
{
	if (spec[0] == '/')
		return spec;
	if (strncmp(spec, "unix:", 5) == 0)
		return spec + 5;
	if (strncmp(spec, "local:", 6) == 0)
		return spec + 6;
	return NULL;
}

/* Sets the unix socket's mode and owner, then drops to cfg->user. Any
 * failure is fatal: running as root by accident is worse than not running. */
static int
drop_privileges(const struct config *cfg)
{
	const char *path = socket_path(cfg->socket);
	struct passwd *pw = NULL;
	struct group *gr;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	char owner[256], *colon;

	if (path != NULL && chmod(path, (mode_t)cfg->socket_mode) == -1) {
		log_err("chmod %s: %s", path, strerror(errno));
		return -1;
	}
	if (path != NULL && cfg->socket_owner[0] != '\0') {
		str_copy(owner, cfg->socket_owner, sizeof(owner));
		if ((colon = strchr(owner, ':')) != NULL) {
			*colon++ = '\0';
			if ((gr = getgrnam(colon)) == NULL) {
				log_err("socket_owner: unknown group %s", colon);
				return -1;
			}
			gid = gr->gr_gid;
		}
		if (owner[0] != '\0') {
			if ((pw = getpwnam(owner)) == NULL) {
				log_err("socket_owner: unknown user %s", owner);
				return -1;
			}
			uid = pw->pw_uid;
		}
		if (chown(path, uid, gid) == -1) {
			log_err("chown %s: %s", path, strerror(errno));
			return -1;
		}
	}
	if (cfg->user[0] == '\0')
		return 0;
	if ((pw = getpwnam(cfg->user)) == NULL) {
		log_err("user: unknown user %s", cfg->user);
		return -1;
	}
	/* Started as that user already (a unit's User=, a shell): nothing to
	 * drop, and initgroups() would fail with EPERM. */
	if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid &&
	    getgid() == pw->pw_gid && getegid() == pw->pw_gid) {
		log_info("running as user %s", cfg->user);
		return 0;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1) {
		log_err("cannot drop privileges to %s: %s", cfg->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		log_err("privileges were not dropped: setuid(0) still works");
		return -1;
	}
	log_info("running as user %s", cfg->user);
	return 0;
}

static int
write_pidfile(const char *path)
{
	FILE *fp;

	if (path[0] == '\0')
		return 0;
	if ((fp = fopen(path, "w")) == NULL) {
		log_err("pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(fp, "%ld\n", (long)getpid());
	if (fclose(fp) == EOF) {
		log_err("pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "version", no_argument, NULL, 'V' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = CONFIG_DEFAULT_PATH;
	char *abspath = NULL;	/* path made absolute; lives as long as the process */
	struct snapshot *snap;
	struct config *cfg;
	pthread_t reloader, connector;
	struct store *st;
	struct dns *dns;
	struct buf errors;
	rlim_t nofile;
	sigset_t sigs;
	int ch, check = 0, foreground = 0, rc, active, connecting;

	while ((ch = getopt_long(argc, argv, "c:fnVh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'f': foreground = 1; break;
		case 'n': check++; break;
		case 'V': printf("milterd %s\n", MILTERD_VERSION); return 0;
		case 'h': usage(stdout, 0);
		default: usage(stderr, 2);
		}
	}
	if (optind != argc)
		usage(stderr, 2);
	/* Read again at each SIGHUP, after daemon() moved to /. */
	if (path[0] != '/' && (abspath = realpath(path, NULL)) != NULL)
		path = abspath;

	buf_init(&errors);
	if ((snap = snapshot_load(path, &errors)) == NULL) {
		log_stderr_text(LOG_ERR, errors.s);
		buf_free(&errors);
		free(abspath);
		return 1;
	}
	buf_free(&errors);
	cfg = snap->cfg;
	if (check) {
		if (check > 1) {
			config_dump(cfg, stdout);
			printf("\n");
			policy_dump(snap->pol, stdout);
		}
		else
			printf("config OK\n");
		snapshot_unref(snap);
		free(abspath);
		return 0;
	}

	/* SIGHUP, SIGTERM and SIGINT are for the signal thread only: every
	 * other thread (workers, the resolver's) has them blocked. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* A malloc arena per worker would cost memory and buy little. */
	mallopt(M_ARENA_MAX, 4);
	nofile = raise_nofile();

	log_open("milterd", foreground, cfg->syslog_facility);
	log_set_level(cfg->log_level);
	if ((st = store_open(cfg->database, cfg->instance_name, cfg->db_pool_size,
	    cfg->db_timeout)) == NULL) {
		log_err("out of memory");
		return 1;
	}
	store_set_commit_timeout(st, cfg->db_commit_timeout);
	store_set_wait_hook(st, server_lend_place);
	store_watch_replication(st);
	buf_init(&errors);
	if (session_init_libs(cfg, &dns, &errors) == -1) {
		log_err("%s", errors.s);
		return 1;
	}
	buf_free(&errors);
	buf_init(&errors);
	if (server_open(cfg->socket, &errors) == -1) {
		log_err("cannot listen on %s: %s", cfg->socket, errors.s);
		return 1;
	}
	buf_free(&errors);
	milter_setup(snap, st);
	stats_config_loaded(1);
	if (drop_privileges(cfg) == -1)
		return 1;
	if (!foreground && daemon(0, 0) == -1) {
		log_err("daemon: %s", strerror(errno));
		return 1;
	}
	if (write_pidfile(cfg->pidfile) == -1)
		return 1;
	config_path = path;
	if (cfg->stats_listen[0] != '\0') {
		buf_init(&errors);
		if (stats_listen(cfg->stats_listen, &errors) == -1) {
			log_err("%s", errors.s);
			return 1;
		}
		buf_free(&errors);
		log_info("statistics on http://%s/metrics", cfg->stats_listen);
	}
	/* After daemon(): a thread does not survive the fork. Before the
	 * signal thread, which rereads the set on SIGHUP. */
	if (store_tokens_start(st) == -1)
		log_warn("token filter: cannot start its thread; every token is looked up");
	if (pthread_create(&reloader, NULL, signal_thread, st) != 0) {
		log_err("cannot start the signal thread");
		return 1;
	}
	active = active_workers(cfg);
	log_info("milterd started on %s, verify address %s; %d workers, %d serving at once",
	    cfg->socket, cfg->verify_address, cfg->workers, active);
	/* Type=notify: ready once the socket listens, its privileges dropped
	 * and the pid file written, so that an MTA ordered after milterd
	 * (Before=postfix.service) finds the socket. Without systemd
	 * (NOTIFY_SOCKET unset) this does nothing. */
	(void)sd_notifyf(0, "READY=1\nSTATUS=serving on %s", cfg->socket);
	connecting = pthread_create(&connector, NULL, connect_thread, st) == 0;
	if (nofile > 0 && nofile < NOFILE_WANT)
		log_warn("only %lu descriptors (RLIMIT_NOFILE): about as many MTA connections at most",
		    (unsigned long)nofile);
	rc = server_run(cfg->workers, active);
	if (connecting)	/* bounded by connect_timeout */
		pthread_join(connector, NULL);
	server_close();
	if (rc == 0)	/* it stopped the server: let it finish its last words */
		pthread_join(reloader, NULL);
	stats_stop();
	log_info("milterd stopped");
	if (cfg->pidfile[0] != '\0')
		unlink(cfg->pidfile);
	milter_shutdown();
	session_shutdown_libs(dns);
	store_close(st);
	snapshot_unref(snap);
	return rc == 0 ? 0 : 1;
}
