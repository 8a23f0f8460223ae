/* token_test.c — token syntax and hashing, checked against fixed vectors. */
#include "check.h"

#include "token.h"

static const struct {
	const char *in;
	const char *want;	/* NULL: malformed */
} cases[] = {
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaa" },
	{ "AbCdEfGhIjKlMnOpQrStUvWxY4", "abcdefghijklmnopqrstuvwxy4" },
	{ "77777777777777777777777774", "77777777777777777777777774" },
	{ "7777777777777777777777777a", "7777777777777777777777777a" },
	{ "7777777777777777777777777b", NULL },	/* low padding bit set */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaa", NULL },	/* 25 chars */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL },	/* 27 chars */
	{ "aaaaaaaaaaaaaaaaaaaaaaaa0a", NULL },	/* '0' is not base32 */
	{ "aaaaaaaaaaaaaaaaaaaaaaaa8a", NULL },
	{ "aaaaaaaaaaaaaaaaaaaaaaaa=a", NULL },
	{ "", NULL },
};

#define T "abcdefghijklmnopqrstuvwxy4"

static const struct {
	const char *text;
	int found;
} finds[] = {
	{ "verify+" T "@certify.test", 1 },
	{ "<verify+ABCDEFGHIJKLMNOPQRSTUVWXY4@certify.test>", 1 },
	{ "Re: Verification [" T "]", 1 },
	{ T, 1 },
	{ "x" T, 0 },			/* glued to a letter */
	{ T "9", 0 },			/* glued to a digit */
	{ "abcdefghijklmnopqrstuvwxy", 0 },
	{ "abcdefghijklmnopqrstuvwxya", 0 },
	{ "", 0 },
	/* Candidates start at the first character in either case. */
	{ "aaaa" T, 0 },		/* glued: the 'a's before it are candidates too */
	{ "aaaa " T, 1 },
	{ "A" T, 0 },
	{ "Abcdefghijklmnopqrstuvwxy4 ", 1 },
	{ "abcdefghijklmnopqrstuvwxy4 ", 1 },
	{ "ABCDEFGHIJKLMNOPQRSTUVWXY3 ABCDEFGHIJKLMNOPQRSTUVWXY4", 1 },
	{ "abcdefghijklmnopqrstuvwxy3 Abcdefghijklmnopqrstuvwxy4.", 1 },
	{ "Abcdefghijklmnopqrstuvwxy3 abcdefghijklmnopqrstuvwxy", 0 },
};

/* value: na 'a' in Q encoded words of at most 60, then " TOKEN" split across
 * two words (never verbatim in the value), then glue. */
static void
token_test_long_value(char *value, size_t size, int na, const char *t, const char *glue)
{
	size_t o = 0;

	for (; na > 0; na -= 60)
		o += (size_t)snprintf(value + o, size - o, "=?utf-8?q?%.*s?= ", na < 60 ? na : 60,
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	snprintf(value + o, size - o, "=?utf-8?q?_%.13s?= =?utf-8?q?%s%s?=", t, t + 13, glue);
}

int
main(void)
{
	char out[TOKEN_LEN + 1], prefix[TOKEN_PREFIX_LEN + 1];
	unsigned char hash[TOKEN_HASH_LEN];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = token_parse(cases[i].in, strlen(cases[i].in), out);

		CHECK_STR(rc == 0 ? out : NULL, cases[i].want, "token_parse '%s'", cases[i].in);
	}
	/* sha256("aaaaaaaaaaaaaaaaaaaaaaaaaa"), computed independently with
	 * sha256sum: the database stores exactly this. */
	token_hash("aaaaaaaaaaaaaaaaaaaaaaaaaa", hash);
	token_hash_prefix(hash, prefix);
	CHECK_STR(prefix, "9976d549a251", "hash prefix of a fixed token");
	for (size_t i = 0; i < sizeof(finds) / sizeof(finds[0]); i++)
		CHECK(token_find(finds[i].text, strlen(finds[i].text), T) == finds[i].found,
		    "token_find in '%s' = %d", finds[i].text, finds[i].found);
	CHECK(token_find_header("=?UTF-8?Q?V=C3=A9rification_[" T "]?=", T),
	    "token inside a Q encoded word");
	CHECK(token_find_header("=?UTF-8?Q?Re:_V=C3=A9rification_=5Babcdefghij?=\r\n"
	    " =?UTF-8?Q?klmnopqrstuvwxy4=5D?=", T), "token split across two encoded words");
	/* "Re: [abcdefghijklmnopqrstuvwxy4]" in base64 */
	CHECK(token_find_header("=?utf-8?B?UmU6IFthYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5NF0=?=", T),
	    "token inside a B encoded word");
	CHECK(!token_find_header("=?utf-8?B?UmU6IFthYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5?=", T),
	    "truncated token in a B encoded word is not found");
	CHECK(!token_find_header("=?utf-8?Q?abcdefghijklm?= nopqrstuvwxy4", T),
	    "white space after an encoded word before plain text is kept");
	/* Found by tests/fuzz/header_fuzz.c: the decoded text was searched as a
	 * C string, so a decoded NUL hid what follows it. */
	CHECK(token_find_header("=?utf-8?Q?Re:_=00_[abcdefghijklm?= =?utf-8?Q?nopqrstuvwxy4]?=", T),
	    "a decoded NUL before the token does not hide it");
	CHECK(token_find_header("=?utf-8?B?AA==?= =?utf-8?Q?abcdefghijklm?= =?utf-8?Q?nopqrstuvwxy4?=", T),
	    "a NUL decoded from base64 right before the token does not hide it");
	/* '=' other than the final padding: malformed, decoded to nothing (a
	 * run of them once took the decoded length below zero: header_fuzz). */
	CHECK(!token_find_header("=?ut?b?" "================================?= x", T),
	    "base64 of '=' alone is malformed, not a negative length");
	CHECK(token_find_header("=?ut?b?====?=" T, T), "a malformed base64 word before the token");
	CHECK(token_find_header("=?utf-8?B?W2FiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHk0XQ==?=", T),
	    "base64 with two padding characters");
	/* The decoded text was cut at 2047 bytes: a token past that was not
	 * found, and one cut right after its last character was found though
	 * glued to the next. */
	{
		char value[4096];

		token_test_long_value(value, sizeof(value), 2100, T, "");
		CHECK(token_find_header(value, T), "token after 2,100 decoded bytes found");
		token_test_long_value(value, sizeof(value), 2020, T, "x");
		CHECK(!token_find_header(value, T),
		    "token glued to a letter at decoded byte 2,047 is not found");
		token_test_long_value(value, sizeof(value), 2020, T, "");
		CHECK(token_find_header(value, T), "token ending at decoded byte 2,047 found");
	}
	return CHECK_DONE();
}
