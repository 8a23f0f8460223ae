/* server.h — the milter socket: listening, connections, and a fixed pool of
 * worker threads that serve every connection from one epoll set. */
#ifndef MILTERD_SERVER_H
#define MILTERD_SERVER_H

#include "buf.h"

/* Opens and listens on a socket spec ({unix|local}:/path, /path,
 * inet:PORT[@HOST], inet6:PORT[@HOST]). A stale unix socket (nobody
 * listening) is replaced; a live one is an error. 0, or -1 with err set. */
int	server_open(const char *spec, struct buf *err);
/* Serves with `workers` threads until server_stop(), `active` of which serve
 * at once (all if 0 or more than `workers`); 0, or -1 (logged). */
int	server_run(int workers, int active);
/* Stops accepting-and-serving: running commands finish, then every
 * connection is closed and server_run() returns. Safe from any thread. */
void	server_stop(void);
/* Closes every connection on which the MTA has sent nothing, and that has
 * waited for nothing but the MTA, for `timeout` seconds or more (libmilter's
 * timeout, which an MTA that went silent would otherwise hold forever).
 * Returns how many. Safe from any thread. */
int	server_sweep(int timeout);
/* Workers held up for a second or more on one connection (DNS, database)
 * give their place to standby workers. Returns how many did. Called a few
 * times a second (main.c); safe from any thread. */
int	server_unstick(void);
/* The calling worker is about to wait for something that uses no CPU of this
 * process (a verification's commit, flush and standbys): its place goes to a
 * standby worker now, as server_unstick() would give it after a second. No
 * effect outside a worker. */
void	server_lend_place(void);
/* Closes the socket and removes a unix socket if it is still the one this
 * process created. */
void	server_close(void);

#endif
