/* address.h — RFC 5321/5322 address parsing and normalisation. */
#ifndef MILTERD_ADDRESS_H
#define MILTERD_ADDRESS_H

#include <stddef.h>

#include "token.h"

#define ADDRESS_MAXLEN 320	/* 64 local + @ + 255 domain */
#define ADDRESS_FROM_MAX 4095	/* a From value, unfolded */

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


/* The one From mailbox, parsed strictly (DESIGN.md, "One From"). */
struct from_addr {
	char	addr[ADDRESS_MAXLEN + 1];	/* local@domain, lowercased */
	char	domain[256];			/* lowercased */
};

/* Parses the value of the single From header. Returns 0, or -1 with a short
 * reason for the log in why. */
int	address_parse_from(const char *value, struct from_addr *out,
	    const char **why);

/* Whether s, as the address of a request, is one that a From can match: a
 * bare local@domain that address_parse_from() gives back as it is (no display
 * name, no angle brackets, a dot-atom local part, a hostname), case aside. */
int	address_is_mailbox(const char *s);

/* A mail domain: dname_valid() with two labels or more. */
int	address_valid_domain(const char *);

#endif
