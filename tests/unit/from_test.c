/* from_test.c — the strict From parser, case by case (DESIGN.md, "One From"). */
#include "check.h"

#include "address.h"

static const struct {
	const char *name;
	const char *value;
	const char *want;	/* address, or NULL: refused */
} cases[] = {
	{ "bare address", "alice@agri.gouv.fr", "alice@agri.gouv.fr" },
	{ "leading space, mixed case lowercased", " Alice@Agri.Gouv.FR", "alice@agri.gouv.fr" },
	{ "display name and angle address", "Alice Martin <alice@agri.gouv.fr>", "alice@agri.gouv.fr" },
	{ "quoted display name with a comma", "\"Martin, Alice\" <alice@agri.gouv.fr>",
	    "alice@agri.gouv.fr" },
	{ "encoded word in the display name", "=?UTF-8?Q?Fran=C3=A7ois?= <francois@agri.gouv.fr>",
	    "francois@agri.gouv.fr" },
	{ "dot in the display name", "A. Martin <alice.martin@agri.gouv.fr>",
	    "alice.martin@agri.gouv.fr" },
	{ "angle address alone", "<alice@agri.gouv.fr>", "alice@agri.gouv.fr" },
	{ "folded header", "Alice\r\n <alice@agri.gouv.fr>", "alice@agri.gouv.fr" },
	{ "spaces inside the angle brackets", "Alice < alice@agri.gouv.fr >", "alice@agri.gouv.fr" },
	{ "an address in the display name is not the address",
	    "\"alice@agri.gouv.fr\" <evil@example.com>", "evil@example.com" },
	{ "apostrophe and plus in the local part", "o'brien+tag@agri.gouv.fr",
	    "o'brien+tag@agri.gouv.fr" },
	/* refused */
	{ "empty", "", NULL },
	{ "display name only", "Alice", NULL },
	{ "list of two addresses", "alice@agri.gouv.fr, bob@agri.gouv.fr", NULL },
	{ "list after an angle address", "Alice <alice@agri.gouv.fr>, bob@agri.gouv.fr", NULL },
	{ "group", "agents: alice@agri.gouv.fr;", NULL },
	{ "empty group", "agents:;", NULL },
	{ "source route", "<@relay.example:alice@agri.gouv.fr>", NULL },
	{ "comment after the address", "alice@agri.gouv.fr (Alice)", NULL },
	{ "comment in the display name", "Alice (x) <alice@agri.gouv.fr>", NULL },
	{ "comment in the local part", "alice(x)@agri.gouv.fr", NULL },
	{ "encoded word as the local part", "=?utf-8?q?alice?=@agri.gouv.fr", NULL },
	{ "quoted local part", "\"alice\"@agri.gouv.fr", NULL },
	{ "trailing dot in the domain", "alice@agri.gouv.fr.", NULL },
	{ "address literal", "alice@[192.0.2.1]", NULL },
	{ "one-label domain", "alice@localhost", NULL },
	{ "domain label starting with a hyphen", "alice@-agri.gouv.fr", NULL },
	{ "empty domain label", "alice@agri..gouv.fr", NULL },
	{ "two dots in the local part", "alice..x@agri.gouv.fr", NULL },
	{ "local part starting with a dot", ".alice@agri.gouv.fr", NULL },
	{ "header injection with CRLF", "alice@agri.gouv.fr\r\nBcc: x@y.z", NULL },
	{ "bare CR", "alice@agri.gouv.fr\rx", NULL },
	{ "non-ASCII local part", "al\xc3\xaf" "ce@agri.gouv.fr", NULL },
	{ "non-ASCII display name", "Al\xc3\xaf" "ce <alice@agri.gouv.fr>", NULL },
	{ "unclosed angle bracket", "Alice <alice@agri.gouv.fr", NULL },
	{ "text after the angle address", "Alice <alice@agri.gouv.fr> x", NULL },
	{ "nested angle brackets", "Alice <<alice@agri.gouv.fr>>", NULL },
	{ "two at signs", "a@b@agri.gouv.fr", NULL },
	{ "unterminated quoted display name", "\"unterminated <alice@agri.gouv.fr>", NULL },
};

static const struct {
	const char *domain;
	int valid;
} domains[] = {
	{ "agri.gouv.fr", 1 }, { "a-b.gouv.fr", 1 }, { "x.y", 1 },
	{ "gouv.fr.", 0 }, { "fr", 0 }, { "-a.fr", 0 }, { "a-.fr", 0 }, { "a_b.fr", 0 },
	{ "", 0 }, { "a..fr", 0 },
};

/* The input as it would be written in a C string: control and non-ASCII bytes
 * escaped (\r, \n, \t, \xNN), so that a failing case shows what it was fed. */
static const char *
from_escape(const char *in, char *out, size_t size)
{
	size_t o = 0;

	for (const unsigned char *c = (const unsigned char *)in; *c && o + 5 < size; c++) {
		if (*c == '\r' || *c == '\n' || *c == '\t' || *c == '"' || *c == '\\') {
			out[o++] = '\\';
			out[o++] = *c == '\r' ? 'r' : *c == '\n' ? 'n' : *c == '\t' ? 't' : (char)*c;
		} else if (*c < 0x20 || *c >= 0x7f)
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", *c);
		else
			out[o++] = (char)*c;
	}
	out[o] = '\0';
	return out;
}

int
main(void)
{
	struct from_addr f;
	const char *why;
	char esc[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = address_parse_from(cases[i].value, &f, &why);
		const char *got = rc == 0 ? f.addr : NULL, *want = cases[i].want;

		if ((got == NULL && want == NULL) ||
		    (got != NULL && want != NULL && strcmp(got, want) == 0)) {
			printf("ok - From: %s\n", cases[i].name);
		} else {
			check_failures++;
			printf("not ok - From: %s: input \"%s\": got %s%s%s, want %s%s%s\n",
			    cases[i].name, from_escape(cases[i].value, esc, sizeof(esc)),
			    got ? "'" : "refused (", got ? got : why ? why : "no reason", got ? "'" : ")",
			    want ? "'" : "", want ? want : "refused", want ? "'" : "");
		}
		if (rc == -1)
			CHECK(why != NULL, "From: %s: refusal says why", cases[i].name);
	}
	CHECK(address_parse_from("Alice <Alice@Mail.Agri.Gouv.FR>", &f, &why) == 0 &&
	    strcmp(f.domain, "mail.agri.gouv.fr") == 0, "From domain lowercased");
	/* A long display name (legal, folded) is fine up to ADDRESS_FROM_MAX. */
	{
		static char v[ADDRESS_FROM_MAX + 64];
		const char *tail = "\" <alice@agri.gouv.fr>";
		size_t n = 1100;

		v[0] = '"';
		memset(v + 1, 'a', n);
		strcpy(v + 1 + n, tail);
		CHECK(address_parse_from(v, &f, &why) == 0 && strcmp(f.addr, "alice@agri.gouv.fr") == 0,
		    "From with a 1,100-character quoted display name: read");
		n = ADDRESS_FROM_MAX;
		memset(v + 1, 'a', n);
		strcpy(v + 1 + n, tail);
		CHECK(address_parse_from(v, &f, &why) == -1 && why != NULL &&
		    strcmp(why, "From too long") == 0, "From past %d characters: refused, said so",
		    ADDRESS_FROM_MAX);
	}
	for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++)
		CHECK(address_valid_domain(domains[i].domain) == domains[i].valid,
		    "domain '%s' valid=%d", domains[i].domain, domains[i].valid);
	return CHECK_DONE();
}
