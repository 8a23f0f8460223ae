/* store.h — PostgreSQL access for the daemon: a pool of libpq connections with
 * prepared statements that reconnects by itself; the request a token selects,
 * and the guarded write of each decision. */
#ifndef MILTERD_STORE_H
#define MILTERD_STORE_H

#include "buf.h"
#include "reason.h"

#define STORE_HASH_LEN	32	/* a token's SHA-256 (token.h: TOKEN_HASH_LEN) */

enum store_rc {
	STORE_OK,
	STORE_NOTFOUND,
	STORE_TEMPFAIL,		/* database unreachable or failing: answer 4xx */
};

/* A request as the database has it. */
struct store_request {
	long long		id;
	char			account[256];
	char			email[321];
	enum request_state	state;		/* expiry and end of validity applied */
	int			attempts;
	double			created_at;	/* epoch seconds */
	double			expires_at;
	char			lang[4];	/* "fr", "en" */
};

struct store;
struct pg_conn;		/* libpq's PGconn */

/* 0 when conn's database has at least SCHEMA_VERSION, the highest migration
 * the binary was built with; else -1 with err set, saying to migrate when
 * the schema is older ("the database's schema is at version 6, <who> needs
 * 11: ..."). Statements fail otherwise with raw SQL errors that do not say
 * to migrate. A newer schema is not refused: the MX hosts that share one
 * database are upgraded one after another. */
int		 store_schema_check(struct pg_conn *, const char *who, struct buf *err);

/* Nothing is connected yet: connections are made on first use. appname is
 * sent as application_name and so recorded in every evidence row. */
struct store	*store_open(const char *conninfo, const char *appname, int size, int timeout);
void		 store_close(struct store *);
/* From now on every write runs in a transaction that is rolled back: the
 * same statements, guards and answers, nothing kept (milterctl check). */
void		 store_set_dry_run(struct store *, int on);
/* Seconds a write may take, the standbys' confirmation of a verification
 * included (db_commit_timeout; default: the timeout of store_open). Past
 * them the statement is cancelled and the call fails (the decision: 451). */
void		 store_set_commit_timeout(struct store *, int seconds);
/* Called before a verification waits for its group's commit, flush and
 * standbys (the daemon's: its worker lends its place, server.c). */
void		 store_set_wait_hook(struct store *, void (*before_wait)(void));
/* The daemon's: the first connection to each server (at start, and after a
 * failover to another) checks what its replication guarantees, and logs a
 * risk once (asynchronous standbys: a verification answered 250 can be lost
 * on failover). */
void		 store_watch_replication(struct store *);
/* The daemon's: keeps the hash prefix of every issued token in memory, in
 * a thread with a connection of its own that LISTENs to milterd_token_issued
 * (migration 012), so that store_lookup() answers STORE_NOTFOUND for a token
 * never issued without a statement. Tokens are looked up as before while
 * the set is not known to be current (store_tokens.c). Call it after any
 * fork; -1 when the thread cannot start (lookups as before). */
int		 store_tokens_start(struct store *);
/* Empties the set and reads the table anew (SIGHUP): for tokens written
 * with the triggers off, and to forget purged requests. */
void		 store_tokens_reread(struct store *);
/* Opens one pooled connection now; -1 with err set if the database cannot
 * be reached (later uses try again). */
int		 store_connect_now(struct store *, struct buf *err);

/* Looks a request up by token hash. STORE_NOTFOUND also for a row too long to
 * be a request milterd could verify; on STORE_TEMPFAIL, err says why. */
enum store_rc	 store_lookup(struct store *, const unsigned char *hash,
		    struct store_request *out, struct buf *err);

/* +1 when a message's RCPT found a pending request (a verification may
 * come), -1 once its decision is being recorded or the message ended
 * without one. The leader of a group of verifications waits, a moment at
 * most, for those still to come (store_record.c). */
void		 store_prospect(struct store *, int delta);

/* What a decision leaves as evidence (NULL fields are stored as NULL). */
struct store_evidence {
	long long		 request_id;	/* 0: none */
	const unsigned char	*token_hash;	/* STORE_HASH_LEN bytes, or NULL */
	const char		*from;		/* header From address */
	enum reason		 reason;	/* milterd's decision */
	const char		*stage;		/* "rcpt" or "eom" */
	const char		*client_addr, *helo, *mail_from, *message_id, *queue_id;
	const char		*dkim_domain, *dkim_selector, *dkim_algorithm;
	int			 dkim_key_bits;	/* 0: none */
	const char		*dnssec, *spf_result, *detail, *token_prefix;
};

/* The guards of a verification write (reason R_VERIFIED). */
struct store_guard {
	int	 max_attempts;		/* 0: no limit */
	int	 accounts_per_address;	/* 0: no limit */
	long	 valid_for;		/* seconds the verification lasts, 0: no end */
};

/* What the database did with a decision. */
struct store_outcome {
	int		 recorded;	/* the evidence row is written */
	int		 verified;	/* this call turned the request verified */
	/* When !recorded: the request as the guarded write found it, and the
	 * other accounts its address certifies, as the guard counted them. */
	struct store_request after;
	int		 holders;
};

/* Records a decision: for R_VERIFIED the guarded state change with its
 * evidence in one transaction, or, when a guard did not hold, nothing and
 * the request's state in out->after (settle the reason, then
 * store_record_evidence()); any other reason, its evidence row. When the
 * request is (or already was) verified, returns only once the synchronous
 * standbys hold the verification, within db_commit_timeout: a 250 survives
 * a failover. */
enum store_rc	 store_record(struct store *, const struct store_evidence *,
		    const struct store_guard *, struct store_outcome *out, struct buf *err);
/* The evidence of a decision whose write did not happen. */
enum store_rc	 store_record_evidence(struct store *, const struct store_evidence *,
		    struct buf *err);

#endif
