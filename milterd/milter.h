/* milter.h — libmilter callbacks: unpack the protocol, dispatch to the session. */
#ifndef MILTERD_MILTER_H
#define MILTERD_MILTER_H

#include "config.h"
#include "store.h"

/* Registers the filter on cfg->socket and opens it (removing a stale unix
 * socket). Returns 0 or -1 (logged). */
int	milter_setup(struct config *cfg, struct store *st);
/* Runs until SIGTERM/SIGINT; returns 0 or -1. */
int	milter_run(void);
/* The configuration new connections take (reference taken for the caller). */
struct config	*milter_config(void);
/* From now on, new transactions get a temporary failure (SIGTERM). */
void		 milter_stopping(void);
/* Makes cfg the configuration of new connections; connections already open
 * keep theirs until they close. Takes over the caller's reference. */
void		 milter_swap_config(struct config *cfg);

#endif
