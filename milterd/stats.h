/* stats.h — counters: decisions per reason code, DKIM and SPF results,
 * temporary failures, messages in flight; written to a file for
 * `milterctl stats` and served in Prometheus text format on an optional
 * loopback listener (libmicrohttpd). */
#ifndef MILTERD_STATS_H
#define MILTERD_STATS_H

#include "buf.h"
#include "dkim.h"
#include "policy.h"
#include "spf.h"

enum stats_tempfail { ST_DATABASE, ST_DNS, ST_INTERNAL, ST_NTEMPFAIL };

void	stats_decision(enum reason, int at_rcpt);
void	stats_dkim(enum dkimv_result);
void	stats_dkim_none(void);
void	stats_spf(enum spf_result);
void	stats_tempfail(enum stats_tempfail);
void	stats_connection(void);
/* +1 when the server accepts an MTA connection, -1 when it closes one. */
void	stats_connection_open(int delta);
/* The server's worker threads, and +1/-1 as one starts/ends handling a
 * connection; 1 when every worker is busy. */
void	stats_set_workers(int n);
void	stats_worker_busy(int delta);
int	stats_workers_all_busy(void);

/* The Prometheus text exposition of every counter. */
void	stats_format(struct buf *out, int in_flight);
/* Writes it atomically to path (write then rename); 0 or -1. */
int	stats_write(const char *path, int in_flight);
/* Starts the HTTP listener on a loopback "IP:PORT"; 0 or -1 (err set). */
int	stats_listen(const char *spec, struct buf *err);
void	stats_stop(void);

#endif
