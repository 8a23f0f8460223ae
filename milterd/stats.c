/* stats.c — counters, their Prometheus text, the stats file and the listener. */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "stats.h"

/* Results of the authentication methods, as written in Authentication-Results. */
static const char *const stats_dkim_names[] = {
	"pass", "fail", "temperror", "permerror", "skipped", "none",
};
static const char *const stats_spf_names[] = {
	"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror", "skipped",
};
#define NDKIM	(sizeof(stats_dkim_names) / sizeof(stats_dkim_names[0]))
#define NSPF	(sizeof(stats_spf_names) / sizeof(stats_spf_names[0]))

/* Every counter is written by the worker threads and read by the signal
 * thread and the HTTP listener: relaxed atomics (counts, no ordering). */
static unsigned long	stats_reasons[2][R_COUNT];	/* [at_rcpt][reason] */
static unsigned long	stats_dkims[NDKIM];
static unsigned long	stats_spfs[NSPF];
static unsigned long	stats_tempfails[ST_NTEMPFAIL];
static int		stats_messages;		/* in flight, all connections */
static unsigned long	stats_connections;
static long		stats_open;
static int		stats_workers;
static long		stats_busy;
static int		stats_reload_ok = 1;	/* the last SIGHUP's outcome; 1 at start */
static long		stats_loaded_at;	/* when the running configuration was loaded */
static int		stats_filter_current;	/* the token filter's thread writes these two */
static unsigned long	stats_filter_tokens;
static unsigned long	stats_spared;
static long		stats_prospects;
static unsigned long	stats_groups;		/* the group commit: transactions, */
static unsigned long	stats_group_rows;	/* their verifications, */
static unsigned long	stats_group_us[3];	/* the leaders' time by phase, */
static unsigned long	stats_group_wait_us;	/* the verifications' time in it */
static struct MHD_Daemon *stats_daemon;

#define BUMP(x) __atomic_add_fetch(&(x), 1, __ATOMIC_RELAXED)
#define READ(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

void
stats_decision(enum reason r, int at_rcpt)
{
	if (r > R_NONE && r < R_COUNT)
		BUMP(stats_reasons[at_rcpt ? 1 : 0][r]);
}

static void
stats_bump_named(unsigned long *counters, const char *const *names, size_t n, const char *result)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(result, names[i]) == 0) {
			BUMP(counters[i]);
			return;
		}
}

void
stats_dkim(const char *result)
{
	stats_bump_named(stats_dkims, stats_dkim_names, NDKIM, result);
}

void
stats_spf(const char *result)
{
	stats_bump_named(stats_spfs, stats_spf_names, NSPF, result);
}

void
stats_in_flight_add(int delta)
{
	__atomic_add_fetch(&stats_messages, delta, __ATOMIC_SEQ_CST);
}

int
stats_in_flight(void)
{
	return __atomic_load_n(&stats_messages, __ATOMIC_SEQ_CST);
}

void
stats_tempfail(enum stats_tempfail t)
{
	if ((unsigned)t < ST_NTEMPFAIL)
		BUMP(stats_tempfails[t]);
}

void
stats_connection(void)
{
	BUMP(stats_connections);
}

void
stats_connection_open(int delta)
{
	__atomic_add_fetch(&stats_open, delta, __ATOMIC_RELAXED);
}

void
stats_set_workers(int n)
{
	__atomic_store_n(&stats_workers, n, __ATOMIC_RELAXED);
}

void
stats_worker_busy(int delta)
{
	__atomic_add_fetch(&stats_busy, delta, __ATOMIC_RELAXED);
}

void
stats_config_loaded(int ok)
{
	__atomic_store_n(&stats_reload_ok, ok ? 1 : 0, __ATOMIC_RELAXED);
	if (ok)
		__atomic_store_n(&stats_loaded_at, (long)time(NULL), __ATOMIC_RELAXED);
}

void
stats_token_filter(int current, size_t tokens)
{
	__atomic_store_n(&stats_filter_current, current ? 1 : 0, __ATOMIC_RELAXED);
	__atomic_store_n(&stats_filter_tokens, (unsigned long)tokens, __ATOMIC_RELAXED);
}

void
stats_token_spared(void)
{
	BUMP(stats_spared);
}

void
stats_prospect(int delta)
{
	__atomic_add_fetch(&stats_prospects, delta, __ATOMIC_RELAXED);
}

void
stats_group_written(int rows)
{
	BUMP(stats_groups);
	__atomic_add_fetch(&stats_group_rows, (unsigned long)rows, __ATOMIC_RELAXED);
}

/* The times come from the monotonic clock, taken in order: never negative. */
void
stats_group_led(long long gather_us, long long write_us, long long durable_us)
{
	__atomic_add_fetch(&stats_group_us[0], (unsigned long)gather_us, __ATOMIC_RELAXED);
	__atomic_add_fetch(&stats_group_us[1], (unsigned long)write_us, __ATOMIC_RELAXED);
	__atomic_add_fetch(&stats_group_us[2], (unsigned long)durable_us, __ATOMIC_RELAXED);
}

void
stats_group_waited(long long us)
{
	__atomic_add_fetch(&stats_group_wait_us, (unsigned long)us, __ATOMIC_RELAXED);
}

int
stats_workers_all_busy(void)
{
	int workers = READ(stats_workers);

	return workers > 0 && READ(stats_busy) >= workers;
}

static void	stats_format_state(struct buf *);
static void	stats_format_group(struct buf *);

void
stats_format(struct buf *out)
{
	static const char *const temp_names[] = { "database", "dns", "internal" };

	buf_puts(out, "# HELP milterd_decisions_total Decisions on verification mails, by reason code.\n"
	    "# TYPE milterd_decisions_total counter\n");
	for (int stage = 0; stage < 2; stage++)
		for (int r = R_NONE + 1; r < R_COUNT; r++)
			buf_printf(out, "milterd_decisions_total{reason=\"%s\",stage=\"%s\"} %lu\n",
			    reason_name((enum reason)r), stage ? "rcpt" : "eom",
			    READ(stats_reasons[stage][r]));
	buf_puts(out, "# HELP milterd_dkim_results_total DKIM signatures evaluated, by result.\n"
	    "# TYPE milterd_dkim_results_total counter\n");
	for (size_t i = 0; i < NDKIM; i++)
		buf_printf(out, "milterd_dkim_results_total{result=\"%s\"} %lu\n",
		    stats_dkim_names[i], READ(stats_dkims[i]));
	buf_puts(out, "# HELP milterd_spf_results_total SPF results of the MAIL FROM identity.\n"
	    "# TYPE milterd_spf_results_total counter\n");
	for (size_t i = 0; i < NSPF; i++)
		buf_printf(out, "milterd_spf_results_total{result=\"%s\"} %lu\n",
		    stats_spf_names[i], READ(stats_spfs[i]));
	buf_puts(out, "# HELP milterd_temporary_failures_total Answers 4xx, by cause.\n"
	    "# TYPE milterd_temporary_failures_total counter\n");
	for (int i = 0; i < ST_NTEMPFAIL; i++)
		buf_printf(out, "milterd_temporary_failures_total{cause=\"%s\"} %lu\n",
		    temp_names[i], READ(stats_tempfails[i]));
	buf_printf(out, "# HELP milterd_connections_total MTA connections.\n"
	    "# TYPE milterd_connections_total counter\nmilterd_connections_total %lu\n"
	    "# HELP milterd_connections_open MTA connections open now.\n"
	    "# TYPE milterd_connections_open gauge\nmilterd_connections_open %ld\n"
	    "# HELP milterd_messages_in_flight Messages between MAIL FROM and their answer.\n"
	    "# TYPE milterd_messages_in_flight gauge\nmilterd_messages_in_flight %d\n"
	    "# HELP milterd_workers Threads serving MTA connections.\n"
	    "# TYPE milterd_workers gauge\nmilterd_workers %d\n"
	    "# HELP milterd_workers_busy Workers handling a connection now (the rest wait for one).\n"
	    "# TYPE milterd_workers_busy gauge\nmilterd_workers_busy %ld\n",
	    READ(stats_connections), READ(stats_open), stats_in_flight(), READ(stats_workers),
	    READ(stats_busy));
	stats_format_state(out);
}

/* The gauges of the configuration, the token filter and the group commit. */
static void
stats_format_state(struct buf *out)
{
	/* Named as Prometheus names its own: an alert on a refused reload needs
	 * no log scraping (milterd goes on with the configuration it had). */
	buf_printf(out, "# HELP milterd_config_last_reload_successful Whether the last reload"
	    " (SIGHUP) was applied (1) or refused (0); 1 at start.\n"
	    "# TYPE milterd_config_last_reload_successful gauge\n"
	    "milterd_config_last_reload_successful %d\n"
	    "# HELP milterd_config_last_reload_success_timestamp_seconds When the running"
	    " configuration was loaded (at start or by the last applied reload), Unix time.\n"
	    "# TYPE milterd_config_last_reload_success_timestamp_seconds gauge\n"
	    "milterd_config_last_reload_success_timestamp_seconds %ld\n",
	    READ(stats_reload_ok), READ(stats_loaded_at));
	buf_printf(out, "# HELP milterd_token_filter_current Whether the set of issued tokens is"
	    " known to be current (1), so that a token never issued is refused without a lookup.\n"
	    "# TYPE milterd_token_filter_current gauge\nmilterd_token_filter_current %d\n"
	    "# HELP milterd_token_filter_tokens Issued tokens in the set.\n"
	    "# TYPE milterd_token_filter_tokens gauge\nmilterd_token_filter_tokens %lu\n"
	    "# HELP milterd_token_filter_refusals_total Tokens answered unknown from the set,"
	    " without a database lookup.\n"
	    "# TYPE milterd_token_filter_refusals_total counter\n"
	    "milterd_token_filter_refusals_total %lu\n",
	    READ(stats_filter_current), READ(stats_filter_tokens), READ(stats_spared));
	buf_printf(out, "# HELP milterd_replies_pending Messages whose recipient's token selects a"
	    " pending request, from RCPT to the recording of their decision.\n"
	    "# TYPE milterd_replies_pending gauge\nmilterd_replies_pending %ld\n",
	    READ(stats_prospects));
	stats_format_group(out);
}

/* The group commit's counters (store_record.c), kept in microseconds and
 * shown in seconds: an administrator reads the verifications per transaction,
 * and where a verification's time goes, from their rates. */
static void
stats_format_group(struct buf *out)
{
	static const char *const phases[] = { "gather", "write", "durable" };
	unsigned long wait = READ(stats_group_wait_us);

	buf_printf(out, "# HELP milterd_group_commits_total Transactions that wrote verifications"
	    " (the group commit), groups of one included.\n"
	    "# TYPE milterd_group_commits_total counter\nmilterd_group_commits_total %lu\n"
	    "# HELP milterd_group_rows_total Verifications those transactions wrote (a row the"
	    " database's guard then refused, address_in_use say, included).\n"
	    "# TYPE milterd_group_rows_total counter\nmilterd_group_rows_total %lu\n"
	    "# HELP milterd_group_seconds_total Time the groups' leaders spent, by phase: waiting"
	    " for the verifications still to come (gather), writing the group (write), waiting for"
	    " its WAL flush and its standbys (durable).\n"
	    "# TYPE milterd_group_seconds_total counter\n",
	    READ(stats_groups), READ(stats_group_rows));
	for (int i = 0; i < 3; i++) {
		unsigned long us = READ(stats_group_us[i]);

		buf_printf(out, "milterd_group_seconds_total{phase=\"%s\"} %lu.%06lu\n",
		    phases[i], us / 1000000, us % 1000000);
	}
	buf_printf(out, "# HELP milterd_group_wait_seconds_total Time verifications spent in the"
	    " group commit, from queueing to their result, summed over them.\n"
	    "# TYPE milterd_group_wait_seconds_total counter\n"
	    "milterd_group_wait_seconds_total %lu.%06lu\n", wait / 1000000,
	    wait % 1000000);
}

int
stats_write(const char *path)
{
	char tmp[4096];
	struct buf out;
	FILE *fp;
	int rc = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -1;
	buf_init(&out);
	stats_format(&out);
	if ((fp = fopen(tmp, "w")) == NULL) {
		buf_free(&out);
		return -1;
	}
	if (fwrite(out.s, 1, out.len, fp) != out.len)
		rc = -1;
	if (fclose(fp) == EOF || rc == -1 || rename(tmp, path) == -1) {
		unlink(tmp);
		rc = -1;
	}
	buf_free(&out);
	return rc;
}

static enum MHD_Result
stats_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *data, size_t *size, void **state)
{
	struct MHD_Response *resp;
	struct buf out;
	enum MHD_Result rc;
	int found = strcmp(url, "/metrics") == 0;

	(void)cls; (void)version; (void)data; (void)size; (void)state;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return MHD_NO;
	buf_init(&out);
	if (found)
		stats_format(&out);
	else
		buf_puts(&out, "not found: try /metrics\n");
	resp = MHD_create_response_from_buffer(out.len, out.s, MHD_RESPMEM_MUST_COPY);
	buf_free(&out);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
	rc = MHD_queue_response(conn, found ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND, resp);
	MHD_destroy_response(resp);
	return rc;
}

int
stats_listen(const char *spec, struct buf *err)
{
	struct sockaddr_in sa;
	char ip[64];
	const char *colon = strrchr(spec, ':');
	long port;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (colon == NULL || (size_t)(colon - spec) >= sizeof(ip)) {
		buf_printf(err, "stats_listen: expected IP:PORT, got %s", spec);
		return -1;
	}
	memcpy(ip, spec, (size_t)(colon - spec));
	ip[colon - spec] = '\0';
	port = strtol(colon + 1, NULL, 10);
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1 || port < 1 || port > 65535) {
		buf_printf(err, "stats_listen: expected IP:PORT, got %s", spec);
		return -1;
	}
	sa.sin_port = htons((uint16_t)port);
	/* poll(), not select(): milterd's descriptors go past 1023. */
	stats_daemon = MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD, (uint16_t)port, NULL,
	    NULL, stats_handler, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	    MHD_OPTION_CONNECTION_LIMIT, 16U, MHD_OPTION_CONNECTION_TIMEOUT, 10U,
	    MHD_OPTION_END);
	if (stats_daemon == NULL) {
		buf_printf(err, "stats_listen: cannot listen on %s", spec);
		return -1;
	}
	return 0;
}

void
stats_stop(void)
{
	if (stats_daemon != NULL)
		MHD_stop_daemon(stats_daemon);
	stats_daemon = NULL;
}
