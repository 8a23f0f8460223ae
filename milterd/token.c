/* token.c — token syntax and hashing. */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
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

/* SHA256() looks the algorithm up in OpenSSL's provider store on every call
 * (about 4 us, under a lock shared by all threads): fetched once here. */
static EVP_MD *token_sha256;
static pthread_once_t token_once = PTHREAD_ONCE_INIT;

static void
token_fetch(void)
{
	token_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void
token_hash(const char *token, unsigned char *hash)
{
	(void)pthread_once(&token_once, token_fetch);
	if (token_sha256 == NULL ||
	    !EVP_Digest(token, TOKEN_LEN, hash, NULL, token_sha256, NULL))
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
	const char *p = text, *end, *lo, *up;
	char c0 = token[0], u0 = c0 >= 'a' && c0 <= 'z' ? (char)(c0 - 'a' + 'A') : c0;

	if (len < TOKEN_LEN)
		return 0;
	end = text + len - TOKEN_LEN + 1;	/* where a match may start */
	/* Candidates are where the first character is, in either case
	 * (memchr is much faster than looking at every position). */
	while (p < end) {
		size_t i, j;

		lo = memchr(p, c0, (size_t)(end - p));
		up = u0 != c0 ? memchr(p, u0, (size_t)((lo ? lo : end) - p)) : NULL;
		if ((p = up != NULL ? up : lo) == NULL)
			return 0;
		i = (size_t)(p - text);
		for (j = 1; j < TOKEN_LEN; j++) {
			char c = text[i + j];

			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			if (c != token[j])
				break;
		}
		if (j == TOKEN_LEN && (i == 0 || !token_alnum(text[i - 1])) &&
		    (i + TOKEN_LEN == len || !token_alnum(text[i + TOKEN_LEN])))
			return 1;
		p++;
	}
	return 0;
}

/* If in[i..len) starts an encoded word "=?charset?E?text?=" (E is B or Q),
 * its encoding, its text and where it ends (after "?="). */
static int
token_encoded_word(const char *in, size_t len, size_t i, char *enc, const char **text,
    size_t *tlen, size_t *next)
{
	const char *q1, *end;

	if (in[i] != '=' || i + 1 >= len || in[i + 1] != '?' ||
	    (q1 = memchr(in + i + 2, '?', len - i - 2)) == NULL ||
	    (size_t)(q1 - in) + 3 >= len || q1[2] != '?' ||
	    (end = strstr(q1 + 3, "?=")) == NULL || (size_t)(end - in) >= len ||
	    q1[1] == '\0' || strchr("BbQq", q1[1]) == NULL)
		return 0;
	*enc = q1[1];
	*text = q1 + 3;
	*tlen = (size_t)(end - *text);
	*next = (size_t)(end - in) + 2;
	return 1;
}

/* Base64 (B) text of an encoded word into out; returns the bytes written
 * (never more than n: decoding shrinks). A malformed one writes nothing:
 * '=' anywhere but in the last two places (EVP_DecodeBlock takes "====...",
 * and counting each '=' off its length once went below zero: header_fuzz). */
static size_t
token_decode_b(const char *p, size_t n, char *out)
{
	unsigned char dec[1024];
	size_t data = n;
	int got, pad = 0;

	if (n == 0 || n > 1360 || n % 4 != 0)
		return 0;
	while (pad < 2 && data > 0 && p[data - 1] == '=') {
		data--;
		pad++;
	}
	if (memchr(p, '=', data) != NULL ||
	    (got = EVP_DecodeBlock(dec, (const unsigned char *)p, (int)n)) < pad + 1)
		return 0;
	got -= pad;		/* EVP counts padding as bytes */
	memcpy(out, dec, (size_t)got);
	return (size_t)got;
}

/* Quoted-printable-like (Q) text of an encoded word into out; returns the
 * bytes written (never more than n). */
static size_t
token_decode_q(const char *p, size_t n, char *out)
{
	size_t o = 0;

	for (const char *c = p, *end = p + n; c < end; c++) {
		if (*c == '_')
			out[o++] = ' ';
		else if (*c == '=' && c + 2 < end && isxdigit((unsigned char)c[1]) &&
		    isxdigit((unsigned char)c[2])) {
			char hex[3] = { c[1], c[2], 0 };

			out[o++] = (char)strtol(hex, NULL, 16);
			c += 2;
		} else
			out[o++] = *c;
	}
	return o;
}

/* Decodes RFC 2047 encoded words (B and Q, any charset: only ASCII matters
 * for a token) into out, which has room for len + 1 bytes: decoding never
 * makes text longer. Other text is copied; white space between two encoded
 * words is dropped, as RFC 2047 6.2 says. Returns the decoded length: a
 * decoded NUL is text like any other, not its end. */
static size_t
token_decode_words(const char *in, size_t len, char *out)
{
	size_t o = 0, i = 0, pending_ws = 0, ws_start = 0, tlen, next;
	int last_was_word = 0;
	const char *text;
	char enc;

	while (i < len) {
		if (token_encoded_word(in, len, i, &enc, &text, &tlen, &next)) {
			if (!last_was_word)
				for (size_t k = 0; k < pending_ws; k++)
					out[o++] = in[ws_start + k];
			pending_ws = 0;
			o += enc == 'B' || enc == 'b' ? token_decode_b(text, tlen, out + o) :
			    token_decode_q(text, tlen, out + o);
			i = next;
			last_was_word = 1;
			continue;
		}
		if (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n') {
			if (pending_ws == 0)
				ws_start = i;
			pending_ws++;
			i++;
			continue;
		}
		for (size_t k = 0; k < pending_ws; k++)
			out[o++] = in[ws_start + k];
		pending_ws = 0;
		last_was_word = 0;
		out[o++] = in[i++];
	}
	out[o] = '\0';
	return o;
}

int
token_find_header(const char *value, const char *token)
{
	size_t len = strlen(value);
	char *decoded;
	int found;

	if (token_find(value, len, token))
		return 1;
	/* Sized to the value, so nothing is ever cut. Out of memory, the token
	 * is not found: the reply is refused (token_not_signed), never passed. */
	if ((decoded = malloc(len + 1)) == NULL)
		return 0;
	found = token_find(decoded, token_decode_words(value, len, decoded), token);
	free(decoded);
	return found;
}
