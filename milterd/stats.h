/* stats.h — counters: decisions per reason code, DKIM and SPF results,
 * temporary failures, messages in flight; written to a file for
 * `milterctl stats` and served in Prometheus text format on an optional
 * loopback listener (libmicrohttpd). */
#ifndef MILTERD_STATS_H
#define MILTERD_STATS_H

#include "buf.h"
#include "reason.h"

enum stats_tempfail { ST_DATABASE, ST_DNS, ST_INTERNAL, ST_NTEMPFAIL };

void	stats_decision(enum reason, int at_rcpt);
/* A DKIM signature's or the MAIL FROM's SPF result, by its name in
 * Authentication-Results ("pass", "fail", ..., "skipped", "none"). */
void	stats_dkim(const char *result);
void	stats_spf(const char *result);
/* Messages between MAIL FROM and their answer: +1/-1 by the session; the
 * count lets SIGTERM wait for them. */
void	stats_in_flight_add(int delta);
int	stats_in_flight(void);
void	stats_tempfail(enum stats_tempfail);
void	stats_connection(void);
/* +1 when the server accepts an MTA connection, -1 when it closes one. */
void	stats_connection_open(int delta);
/* The server's worker threads, and +1/-1 as one starts/ends handling a
 * connection; 1 when every worker is busy. */
void	stats_set_workers(int n);
void	stats_worker_busy(int delta);
int	stats_workers_all_busy(void);
/* The configuration loaded: at start (1), and at each SIGHUP, applied (1) or
 * refused (0, the running one stays). */
void	stats_config_loaded(int ok);
/* The set of issued tokens (store_tokens.c): whether it is current and how
 * many it holds, and +1 for each token refused from it without a lookup. */
void	stats_token_filter(int current, size_t tokens);
void	stats_token_spared(void);
/* Messages whose RCPT found a pending request and whose decision is not
 * recorded yet: +1/-1 (store_prospect). */
void	stats_prospect(int delta);
/* The group commit (store_record.c): a transaction written with its rows;
 * a leader's time gathering, writing and waiting for durability; a
 * verification's time from queueing to its result. Microseconds. */
void	stats_group_written(int rows);
void	stats_group_led(long long gather_us, long long write_us, long long durable_us);
void	stats_group_waited(long long us);

/* The Prometheus text exposition of every counter. */
void	stats_format(struct buf *out);
/* Writes it atomically to path (write then rename); 0 or -1. */
int	stats_write(const char *path);
/* Starts the HTTP listener on a loopback "IP:PORT"; 0 or -1 (err set). */
int	stats_listen(const char *spec, struct buf *err);
void	stats_stop(void);

#endif
