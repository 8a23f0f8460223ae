/* token.c — token syntax and hashing. */
#include <string.h>

#include <openssl/sha.h>

#include "token.h"

/* RFC 4648 base32 alphabet, lowercase. */
static int
token_b32value(char c)
{
	if (c >= 'A' && c <= 'Z')
		c = (char)(c - 'A' + 'a');
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

int
token_parse(const char *s, size_t len, char *out)
{
	int v = 0;

	if (len != TOKEN_LEN)
		return -1;
	for (size_t i = 0; i < TOKEN_LEN; i++) {
		if ((v = token_b32value(s[i])) == -1)
			return -1;
		out[i] = (char)(v < 26 ? 'a' + v : '2' + v - 26);
	}
	/* 26 characters carry 130 bits; the last two must be zero padding, so
	 * that each token has exactly one spelling. */
	if ((v & 3) != 0)
		return -1;
	out[TOKEN_LEN] = '\0';
	return 0;
}

void
token_hash(const char *token, unsigned char *hash)
{
	SHA256((const unsigned char *)token, TOKEN_LEN, hash);
}

void
token_hash_prefix(const unsigned char *hash, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < TOKEN_PREFIX_LEN / 2; i++) {
		out[2 * i] = hex[hash[i] >> 4];
		out[2 * i + 1] = hex[hash[i] & 15];
	}
	out[TOKEN_PREFIX_LEN] = '\0';
}

static int
token_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int
token_find(const char *text, size_t len, const char *token)
{
	if (len < TOKEN_LEN)
		return 0;
	for (size_t i = 0; i + TOKEN_LEN <= len; i++) {
		size_t j;

		for (j = 0; j < TOKEN_LEN; j++) {
			char c = text[i + j];

			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			if (c != token[j])
				break;
		}
		if (j == TOKEN_LEN && (i == 0 || !token_alnum(text[i - 1])) &&
		    (i + TOKEN_LEN == len || !token_alnum(text[i + TOKEN_LEN])))
			return 1;
	}
	return 0;
}
