/* token.h — verification tokens: 128 random bits as 26 lowercase base32
 * characters, known to the database only by their SHA-256. */
#ifndef MILTERD_TOKEN_H
#define MILTERD_TOKEN_H

#include <stddef.h>

#define TOKEN_LEN	26
#define TOKEN_HASH_LEN	32
#define TOKEN_PREFIX_LEN 12	/* hex characters of the hash shown in logs */

/* Checks that s[0..len) is a well-formed token (any case) and writes its
 * canonical lowercase form to out (TOKEN_LEN + 1 bytes). 0 or -1. */
int	token_parse(const char *s, size_t len, char *out);
/* SHA-256 of the canonical token text. */
void	token_hash(const char *token, unsigned char *hash);
/* First TOKEN_PREFIX_LEN hex characters of the hash: safe to log. */
void	token_hash_prefix(const unsigned char *hash, char *out);

/* Whether token (canonical) appears in text[0..len), in any case, with no
 * base32 letter or digit right before or after it. */
int	token_find(const char *text, size_t len, const char *token);
/* The same in a header value, also looking inside RFC 2047 encoded words
 * (a Subject with accents comes back from the agent's mail program encoded). */
int	token_find_header(const char *value, const char *token);

#endif
