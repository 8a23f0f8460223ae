/* address.h — RFC 5321/5322 address parsing and normalisation. */
#ifndef MILTERD_ADDRESS_H
#define MILTERD_ADDRESS_H

#include <stddef.h>

#include "token.h"

enum rcpt_kind {
	RCPT_OTHER,		/* not ours: pass untouched */
	RCPT_VERIFY,		/* verify+TOKEN@domain with a well-formed token */
	RCPT_VERIFY_MALFORMED,	/* our address, but no usable token */
};

/* Classifies an envelope recipient as libmilter gives it ("<a@b>", possibly
 * with a source route). vlocal and vdomain are lowercase. On RCPT_VERIFY the
 * canonical token is written to token (TOKEN_LEN + 1 bytes). */
enum rcpt_kind	address_verify_rcpt(const char *rcpt, const char *vlocal,
		    const char *vdomain, char *token);

/* Splits an envelope address into a lowercase, trimmed "local@domain" in out.
 * Returns 0, or -1 if it does not look like one mailbox. */
int		address_envelope(const char *in, char *out, size_t size);

#endif
