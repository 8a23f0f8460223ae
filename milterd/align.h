/* align.h — organizational domains (libpsl) and identifier alignment. */
#ifndef MILTERD_ALIGN_H
#define MILTERD_ALIGN_H

enum align_mode {
	ALIGN_RELAXED,	/* same organizational domain */
	ALIGN_STRICT,	/* equal */
};

/* Loads the Public Suffix List once (the system's file if newer than the
 * built-in copy). Returns 0 or -1. */
int	align_init(void);
/* The organizational domain of a lowercase domain, or NULL when the domain
 * is itself a public suffix (gouv.fr) or unknown to the list. */
const char *align_org_domain(const char *domain);
/* Whether signer domain d is aligned with the From domain. */
int	align_check(const char *from_domain, const char *d, enum align_mode);
/* Whether domain equals suffix or ends with "." suffix (labels, ASCII case-
 * insensitive); a trailing dot on domain never matches. */
int	align_suffix_match(const char *domain, const char *suffix);

#endif
