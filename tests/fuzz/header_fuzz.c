/* header_fuzz.c — libFuzzer target for the token search in header values
 * (token_find_header, RFC 2047 encoded words): what it answers decides whether
 * the token counts as signed when it sits in a To, Cc or Subject.
 *
 * Two checks per input:
 *  1. The input itself as a header value (malformed words included): a token
 *     present verbatim is always found, and a value without "=?" is searched
 *     as it is, nothing more.
 *  2. A round trip: the input is cut into a plain prefix, a text and a plain
 *     suffix; the text is encoded as Q and B encoded words (split anywhere,
 *     any charset name, separated by folding white space or nothing) between
 *     the prefix and the suffix. Decoding must give back prefix, text and
 *     suffix, so token_find_header on the encoded value must answer as
 *     token_find does on that reference text (or on the raw value, which it
 *     also searches).
 * The first four bytes seed the choices of check 2; the seeds in
 * tests/fuzz/corpus/header/ start with them. The token is fixed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

#define HEADER_FUZZ_TOKEN	"abcdefghijklmnopqrstuvwxy4"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* xorshift32: the same input always makes the same choices. */
static uint32_t
header_fuzz_next(uint32_t *state)
{
	uint32_t x = *state ? *state : 0x9e3779b9u;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}

static void
header_fuzz_put(char *out, size_t *o, const char *s)
{
	size_t n = strlen(s);

	memcpy(out + *o, s, n);
	*o += n;
}

/* One encoded word for text[0..n) into out at *o. */
static void
header_fuzz_word(const unsigned char *text, size_t n, uint32_t *st, char *out, size_t *o)
{
	static const char *const charsets[] = { "UTF-8", "utf-8", "ISO-8859-1", "us-ascii", "x" };
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	static const char hex[] = "0123456789ABCDEF", lhex[] = "0123456789abcdef";
	uint32_t r = header_fuzz_next(st);
	int b = r & 1;

	header_fuzz_put(out, o, "=?");
	header_fuzz_put(out, o, charsets[(r >> 1) % 5]);
	out[(*o)++] = '?';
	out[(*o)++] = b ? ((r & 8) ? 'B' : 'b') : ((r & 8) ? 'Q' : 'q');
	out[(*o)++] = '?';
	if (b) {
		for (size_t i = 0; i < n; i += 3) {
			uint32_t v = (uint32_t)text[i] << 16;

			if (i + 1 < n)
				v |= (uint32_t)text[i + 1] << 8;
			if (i + 2 < n)
				v |= text[i + 2];
			out[(*o)++] = b64[(v >> 18) & 63];
			out[(*o)++] = b64[(v >> 12) & 63];
			out[(*o)++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
			out[(*o)++] = i + 2 < n ? b64[v & 63] : '=';
		}
	} else {
		for (size_t i = 0; i < n; i++) {
			unsigned char c = text[i];
			uint32_t q = header_fuzz_next(st);

			if (c == ' ' && (q & 1))
				out[(*o)++] = '_';
			else if (c > ' ' && c < 0x7f && c != '=' && c != '?' && c != '_' &&
			    (q & 6) != 0)
				out[(*o)++] = (char)c;
			else {
				const char *h = (q & 8) ? lhex : hex;

				out[(*o)++] = '=';
				out[(*o)++] = h[c >> 4];
				out[(*o)++] = h[c & 15];
			}
		}
	}
	header_fuzz_put(out, o, "?=");
}

/* Plain text of a header value: no NUL (the value is a C string) and no "=?"
 * (it would open an encoded word). */
static void
header_fuzz_plain(const unsigned char *s, size_t n, char *out, size_t *o, char *ref, size_t *r)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i] == '\0' || s[i] == '=' ? '-' : (char)s[i];

		out[(*o)++] = c;
		ref[(*r)++] = c;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const seps[] = { " ", "\r\n ", "\t", "", "  \r\n\t" };
	const char *tok = HEADER_FUZZ_TOKEN;
	const unsigned char *text;
	char *value = NULL, *ref = NULL;
	size_t n, o = 0, r = 0, plen, slen;
	uint32_t st = 0;
	int got, want;

	/* 1. The input as it comes. */
	if ((value = malloc(size + 1)) == NULL)
		return 0;
	memcpy(value, data, size);
	value[size] = '\0';
	n = strlen(value);
	got = token_find_header(value, tok);
	if (token_find(value, n, tok) && !got)
		abort();	/* verbatim and not found */
	if (strstr(value, "=?") == NULL && got != token_find(value, n, tok))
		abort();	/* nothing to decode, yet another answer */
	free(value);

	/* 2. The round trip. */
	if (size < 4)
		return 0;
	memcpy(&st, data, 4);
	text = data + 4;
	n = size - 4;
	plen = n ? header_fuzz_next(&st) % (n + 1) % 48 : 0;
	slen = n - plen ? header_fuzz_next(&st) % (n - plen + 1) % 48 : 0;
	if ((value = malloc(30 * n + 64)) == NULL || (ref = malloc(n + 3)) == NULL) {
		free(value);
		return 0;
	}
	header_fuzz_plain(text, plen, value, &o, ref, &r);
	if (plen > 0) {
		value[o++] = ' ';
		ref[r++] = ' ';
	}
	for (size_t at = plen, end = n - slen; at < end; ) {
		size_t len = 1 + header_fuzz_next(&st) % 40;

		if (len > end - at)
			len = end - at;
		header_fuzz_word(text + at, len, &st, value, &o);
		memcpy(ref + r, text + at, len);
		r += len;
		at += len;
		if (at < end)
			header_fuzz_put(value, &o, seps[header_fuzz_next(&st) % 5]);
	}
	if (slen > 0) {
		value[o++] = ' ';
		ref[r++] = ' ';
		header_fuzz_plain(text + n - slen, slen, value, &o, ref, &r);
	}
	value[o] = '\0';
	got = token_find_header(value, tok);
	want = token_find(ref, r, tok) || token_find(value, o, tok);
	if (got != want)
		abort();
	free(value);
	free(ref);
	return 0;
}
