/* milter.h — the milter protocol (version 6, as Postfix and Sendmail speak it):
 * framing, option negotiation, unpacking each command and dispatching it to the
 * session, packing the replies. No sockets here: server.c feeds the bytes an MTA
 * sent and writes back what this leaves in the connection's output, which is
 * also how the fuzzer and the unit tests drive it. */
#ifndef MILTERD_MILTER_H
#define MILTERD_MILTER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "snapshot.h"
#include "store.h"

/* Protocol constants (Sendmail's libmilter/mfdef.h, the protocol's definition). */
#define MILTER_VERSION		6
#define MILTER_MAX_PACKET	(1u << 20)	/* larger than any MTA sends unasked */

#define SMFIF_ADDHDRS		0x00000001u
#define SMFIF_CHGHDRS		0x00000010u

#define SMFIP_NR_HDR		0x00000080u
#define SMFIP_NOUNKNOWN		0x00000100u
#define SMFIP_NODATA		0x00000200u
#define SMFIP_NR_CONN		0x00001000u
#define SMFIP_NR_HELO		0x00002000u
#define SMFIP_NR_MAIL		0x00004000u
#define SMFIP_NR_EOH		0x00040000u
#define SMFIP_NR_BODY		0x00080000u
#define SMFIP_HDR_LEADSPC	0x00100000u

/* One MTA connection. */
struct milter_conn {
	struct session	*s;		/* from CONNECT (or first use) to QUIT */
	uint32_t	 actions;	/* negotiated SMFIF_* */
	uint32_t	 pflags;	/* negotiated SMFIP_* */
	char		 qid[64];	/* {i} of the latest macros */
	int		 closing;	/* QUIT or a protocol error: close once written */
	char		 owed;		/* a refusal at a step the MTA did not wait on
					 * (SMFIR_TEMPFAIL, or SMFIR_REPLYCODE: the
					 * 421 of a stopping milterd), given at each
					 * step it waits on, until the SMTP session ends */
	struct buf	 out;		/* replies not yet written */
};

/* Once per process: the snapshot new connections take (a reference is
 * taken) and the database. */
void		 milter_setup(struct snapshot *, struct store *st);
void		 milter_shutdown(void);

void		 milter_conn_init(struct milter_conn *);
/* Ends the connection's session (the MTA is gone) and frees what it holds. */
void		 milter_conn_free(struct milter_conn *);
/* Handles every complete command in p[0..n) in order, appending replies to
 * c->out; returns how many bytes it consumed (a partial command is left).
 * Stops early when c->closing gets set. */
size_t		 milter_input(struct milter_conn *c, const unsigned char *p, size_t n);
/* The bytes the first (incomplete) command in p[0..n) needs in all: at least
 * n + 1 until its length is known. */
size_t		 milter_need(const unsigned char *p, size_t n);

/* The snapshot new connections take (reference taken for the caller). */
struct snapshot	*milter_snapshot(void);
/* From now on, new transactions get a temporary failure (SIGTERM). */
void		 milter_stopping(void);
/* Makes snap the snapshot of new connections; connections already open
 * keep theirs until they close. Takes over the caller's reference. */
void		 milter_swap(struct snapshot *snap);

#endif
