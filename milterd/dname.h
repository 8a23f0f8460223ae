/* dname.h — the syntax of domain names. */
#ifndef MILTERD_DNAME_H
#define MILTERD_DNAME_H

#include <stddef.h>

/* A name of at least min_labels LDH labels of 1-63 characters (no hyphen at
 * either end; '_' too if underscore), at most 253 characters, no trailing dot. */
int	dname_valid(const char *, size_t min_labels, int underscore);

#endif
