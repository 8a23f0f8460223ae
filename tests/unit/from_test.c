/* from_test.c — the strict From parser, case by case (DESIGN.md, "One From"). */
#include "check.h"

#include "address.h"

static const struct {
	const char *value;
	const char *want;	/* address, or NULL: refused */
} cases[] = {
	{ "alice@agri.gouv.fr", "alice@agri.gouv.fr" },
	{ " Alice@Agri.Gouv.FR", "alice@agri.gouv.fr" },
	{ "Alice Martin <alice@agri.gouv.fr>", "alice@agri.gouv.fr" },
	{ "\"Martin, Alice\" <alice@agri.gouv.fr>", "alice@agri.gouv.fr" },
	{ "=?UTF-8?Q?Fran=C3=A7ois?= <francois@agri.gouv.fr>", "francois@agri.gouv.fr" },
	{ "A. Martin <alice.martin@agri.gouv.fr>", "alice.martin@agri.gouv.fr" },
	{ "<alice@agri.gouv.fr>", "alice@agri.gouv.fr" },
	{ "Alice\r\n <alice@agri.gouv.fr>", "alice@agri.gouv.fr" },	/* folded */
	{ "Alice < alice@agri.gouv.fr >", "alice@agri.gouv.fr" },
	{ "\"alice@agri.gouv.fr\" <evil@example.com>", "evil@example.com" },
	{ "o'brien+tag@agri.gouv.fr", "o'brien+tag@agri.gouv.fr" },
	/* refused */
	{ "", NULL },
	{ "Alice", NULL },
	{ "alice@agri.gouv.fr, bob@agri.gouv.fr", NULL },		/* list */
	{ "Alice <alice@agri.gouv.fr>, bob@agri.gouv.fr", NULL },
	{ "agents: alice@agri.gouv.fr;", NULL },			/* group */
	{ "agents:;", NULL },
	{ "<@relay.example:alice@agri.gouv.fr>", NULL },		/* route */
	{ "alice@agri.gouv.fr (Alice)", NULL },			/* comment */
	{ "Alice (x) <alice@agri.gouv.fr>", NULL },
	{ "alice(x)@agri.gouv.fr", NULL },
	{ "=?utf-8?q?alice?=@agri.gouv.fr", NULL },			/* encoded word */
	{ "\"alice\"@agri.gouv.fr", NULL },				/* quoted local part */
	{ "alice@agri.gouv.fr.", NULL },				/* trailing dot */
	{ "alice@[192.0.2.1]", NULL },					/* literal */
	{ "alice@localhost", NULL },					/* one label */
	{ "alice@-agri.gouv.fr", NULL },
	{ "alice@agri..gouv.fr", NULL },
	{ "alice..x@agri.gouv.fr", NULL },
	{ ".alice@agri.gouv.fr", NULL },
	{ "alice@agri.gouv.fr\r\nBcc: x@y.z", NULL },			/* header injection */
	{ "alice@agri.gouv.fr\rx", NULL },
	{ "al\xc3\xaf" "ce@agri.gouv.fr", NULL },				/* non-ASCII */
	{ "Al\xc3\xaf" "ce <alice@agri.gouv.fr>", NULL },
	{ "Alice <alice@agri.gouv.fr", NULL },
	{ "Alice <alice@agri.gouv.fr> x", NULL },
	{ "Alice <<alice@agri.gouv.fr>>", NULL },
	{ "a@b@agri.gouv.fr", NULL },
	{ "\"unterminated <alice@agri.gouv.fr>", NULL },
};

static const struct {
	const char *domain;
	int valid;
} domains[] = {
	{ "agri.gouv.fr", 1 }, { "a-b.gouv.fr", 1 }, { "x.y", 1 },
	{ "gouv.fr.", 0 }, { "fr", 0 }, { "-a.fr", 0 }, { "a-.fr", 0 }, { "a_b.fr", 0 },
	{ "", 0 }, { "a..fr", 0 },
};

int
main(void)
{
	struct from_addr f;
	const char *why;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = address_parse_from(cases[i].value, &f, &why);

		CHECK_STR(rc == 0 ? f.addr : NULL, cases[i].want, "From case %zu%s%s", i,
		    rc ? ": refused, " : "", rc ? why : "");
		if (rc == -1)
			CHECK(why != NULL, "From case %zu says why", i);
	}
	CHECK(address_parse_from("Alice <Alice@Mail.Agri.Gouv.FR>", &f, &why) == 0 &&
	    strcmp(f.domain, "mail.agri.gouv.fr") == 0, "From domain lowercased");
	for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++)
		CHECK(address_valid_domain(domains[i].domain) == domains[i].valid,
		    "domain '%s' valid=%d", domains[i].domain, domains[i].valid);
	return CHECK_DONE();
}
