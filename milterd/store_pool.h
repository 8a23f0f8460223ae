/* store_pool.h — the pool's internals, shared by store.c (connections,
 * statements) and store_record.c (the decisions' writes); not for callers
 * of store.h. */
#ifndef MILTERD_STORE_POOL_H
#define MILTERD_STORE_POOL_H

#include <pthread.h>
#include <time.h>

#include <libpq-fe.h>

#include "buf.h"

struct store_slot {
	PGconn	*conn;
	int	 busy;
	/* synchronous_commit as the server sets it for milterd's role. When
	 * it asks standbys to confirm commits ("on", "remote_write",
	 * "remote_apply"), the connection runs at "off" and a verification
	 * waits for the disk and the standbys in a transaction of its own, at
	 * the role's level (store_durable), whose flush covers the verification
	 * too: NOTIFY's lock, taken by the verifying transaction, is then not
	 * held while the standbys answer. Until that transaction commits no
	 * 250 is sent, so a verification lost meanwhile (PostgreSQL crashing
	 * within wal_writer_delay) is one the MTA sends again. */
	char	 level[16];
	int	 durable;
};

/* A statement's time limit, on the monotonic clock. */
struct store_deadline {
	struct timespec	 at;
	int		 seconds;
	const char	*key;		/* the configuration key that set it */
};

struct store {
	char		*conninfo;
	int		 timeout;	/* seconds: connect, statements, pool wait */
	int		 commit_timeout; /* seconds: a write, standbys' confirmation included */
	int		 watch;		/* the daemon: check each new server's replication */
	char		 server[300];	/* host:port last checked */
	int		 size;
	struct store_slot *slots;
	pthread_mutex_t	 lock;
	pthread_cond_t	 freed;
	time_t		 retry_after;	/* after a failed connect, fail fast until then */
	char		 appname[64];	/* instance_name: evidence rows name the milterd */
	int		 dry_run;	/* writes rolled back (set before any use) */
	/* Group commit of verifications (store_group_record). */
	pthread_mutex_t	 group_lock;
	struct store_group_item *group_head, **group_tail;	/* queued, not taken */
	pthread_condattr_t group_attr;	/* each waiting verification's condition: monotonic */
	int		 group_leading;	/* a group is being written */
	void		(*before_wait)(void);	/* store_set_wait_hook */
	struct store_tokens *tokens;	/* store_tokens_start, or NULL */
	/* store_prospect: messages whose RCPT found a pending request and
	 * whose decision is not recorded yet (workers, relaxed atomics). */
	int		 prospects;
	struct store_group_item *group_waiter;	/* a leader waiting for them (group_lock) */
};

/* A new connection to st's database (connect_timeout: its timeout;
 * application_name: instance_name), its notices in milterd's log and its
 * schema checked; NULL with err set. */
PGconn		*store_dial(struct store *, struct buf *err);
/* 1 when no request has hash's prefix and the set of issued tokens is
 * current: the token was never issued (store_tokens.c); 0: look it up. */
int		 store_tokens_absent(struct store_tokens *, const unsigned char *hash);
/* Stops the set's thread and frees it; NULL is fine. */
void		 store_tokens_stop(struct store_tokens *);

/* A deadline `seconds` from now, set by configuration key `key`. */
void		 store_deadline(struct store_deadline *, int seconds, const char *key);
/* Milliseconds left before the deadline; 0 once past it. */
int		 store_left(const struct store_deadline *);
/* libpq's text of an error as "what: msg", on one line. */
void		 store_error(struct buf *err, const char *what, const char *msg);
/* Sends a prepared statement and waits for its result within dl (cancelled
 * past it; *late then set). */
PGresult	*store_send(struct store_slot *, const char *stmt, int nparams,
		    const char *const *values, const int *lengths, const int *formats,
		    const struct store_deadline *dl, int *late);
/* A pooled connection, waited for up to the pool's timeout: its index, or -1
 * with err set; store_release() gives it back. */
int		 store_acquire(struct store *, struct buf *err);
void		 store_release(struct store *, int slot);
/* A prepared statement on a taken slot, connecting first if needed and run
 * once more on a new connection if the old one broke: its result, or NULL
 * with err set. */
PGresult	*store_exec_on(struct store *, struct store_slot *, const char *stmt,
		    int nparams, const char *const *values, const int *lengths,
		    const int *formats, const struct store_deadline *dl, struct buf *err);
/* store_exec_on() on a pooled connection. */
PGresult	*store_exec(struct store *, const char *stmt, int nparams,
		    const char *const *values, const int *lengths, const int *formats,
		    const struct store_deadline *dl, struct buf *err);

#endif
