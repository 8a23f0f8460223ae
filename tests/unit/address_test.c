/* address_test.c — table-driven tests of envelope parsing and recipient screening. */
#include "check.h"

#include "address.h"

static const struct {
	const char	*rcpt;
	enum rcpt_kind	 want;
	const char	*token;
} rcpt_cases[] = {
	{ "<verify+abcdefghijklmnopqrstuvwxy4@certify.test>", RCPT_VERIFY, "abcdefghijklmnopqrstuvwxy4" },
	{ "<VERIFY+ABCDEFGHIJKLMNOPQRSTUVWXY4@Certify.TEST>", RCPT_VERIFY, "abcdefghijklmnopqrstuvwxy4" },
	{ "verify+abcdefghijklmnopqrstuvwxy4@certify.test", RCPT_VERIFY, "abcdefghijklmnopqrstuvwxy4" },
	{ "<@relay.example:verify+abcdefghijklmnopqrstuvwxy4@certify.test>", RCPT_VERIFY, "abcdefghijklmnopqrstuvwxy4" },
	{ "<\"verify+abcdefghijklmnopqrstuvwxy4\"@certify.test>", RCPT_VERIFY, "abcdefghijklmnopqrstuvwxy4" },
	{ "<verify@certify.test>", RCPT_VERIFY_MALFORMED, NULL },
	{ "<verify+@certify.test>", RCPT_VERIFY_MALFORMED, NULL },
	{ "<verify+short@certify.test>", RCPT_VERIFY_MALFORMED, NULL },
	{ "<verify+abcdefghijklmnopqrstuvwxy1@certify.test>", RCPT_VERIFY_MALFORMED, NULL },	/* '1' not base32 */
	{ "<verify+abcdefghijklmnopqrstuvwxyz@certify.test>", RCPT_VERIFY_MALFORMED, NULL },	/* padding bits set */
	{ "<verify+abcdefghijklmnopqrstuvwxy4a@certify.test>", RCPT_VERIFY_MALFORMED, NULL },	/* 27 chars */
	{ "<verify+abcdefghijklmnopqrstuvwxy4@other.test>", RCPT_OTHER, NULL },
	{ "<verify+abcdefghijklmnopqrstuvwxy4@sub.certify.test>", RCPT_OTHER, NULL },
	{ "<verifyx+abcdefghijklmnopqrstuvwxy4@certify.test>", RCPT_OTHER, NULL },
	{ "<postmaster@certify.test>", RCPT_OTHER, NULL },
	{ "<>", RCPT_OTHER, NULL },
	{ "", RCPT_OTHER, NULL },
	/* The verify domain takes only verification replies: what does not parse
	 * there is malformed, not someone else's mail. */
	{ "<verify+abc def@certify.test>", RCPT_VERIFY_MALFORMED, NULL },
	{ "<verify+abcdefghijklmnopqrstuvwxy4 @certify.test>", RCPT_VERIFY_MALFORMED, NULL },
	{ "<\"x\\\"y\"@CERTIFY.test>", RCPT_VERIFY_MALFORMED, NULL },
	{ "<a@b@certify.test>", RCPT_VERIFY_MALFORMED, NULL },
	{ "<verify+abcdefghijklmnopqrstuvwxy4@certify.test.>", RCPT_VERIFY, "abcdefghijklmnopqrstuvwxy4" },
	{ "<verify+short@certify.test.>", RCPT_VERIFY_MALFORMED, NULL },
	{ "<postmaster@certify.test.>", RCPT_OTHER, NULL },
	{ "<a b@other.test>", RCPT_OTHER, NULL },
	{ "<a@b@certify.testx>", RCPT_OTHER, NULL },
};

static const struct {
	const char *in;
	const char *want;	/* NULL: rejected */
} envelope_cases[] = {
	{ "<Alice@Agri.Gouv.FR>", "alice@agri.gouv.fr" },
	{ "  <alice@agri.gouv.fr>  ", "alice@agri.gouv.fr" },
	{ "alice@agri.gouv.fr", "alice@agri.gouv.fr" },
	{ "<>", NULL },
	{ "<alice>", NULL },
	{ "<@agri.gouv.fr>", NULL },
	{ "<alice@>", NULL },
	{ "<a@b@c>", NULL },
	{ "<al ice@agri.gouv.fr>", NULL },
	{ "<alice@agri.gouv.fr\x01>", NULL },
};

/* A request's address: what a From can equal (milterctl request, address). */
static const struct {
	const char *in;
	int want;
} mailbox_cases[] = {
	{ "alice@agri.gouv.fr", 1 },
	{ "Alice.Martin@Agri.Gouv.FR", 1 },
	{ "a+b@x.agri.gouv.fr", 1 },
	{ "<alice@agri.gouv.fr>", 0 },
	{ "Alice <alice@agri.gouv.fr>", 0 },
	{ "\"a b\"@agri.gouv.fr", 0 },
	{ "alice@localhost", 0 },
	{ "alice@agri.gouv.fr.", 0 },
	{ "a@b@agri.gouv.fr", 0 },
	{ "alice@agri.gouv.fr (Alice)", 0 },
	{ "", 0 },
};

int
main(void)
{
	char tok[TOKEN_LEN + 1], out[400];

	for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
		enum rcpt_kind k;

		memset(tok, 0, sizeof(tok));
		k = address_verify_rcpt(rcpt_cases[i].rcpt, "verify", "certify.test", tok);
		CHECK(k == rcpt_cases[i].want, "rcpt kind of '%s'", rcpt_cases[i].rcpt);
		if (rcpt_cases[i].token != NULL)
			CHECK_STR(tok, rcpt_cases[i].token, "token of '%s'", rcpt_cases[i].rcpt);
	}
	for (size_t i = 0; i < sizeof(envelope_cases) / sizeof(envelope_cases[0]); i++) {
		int rc = address_envelope(envelope_cases[i].in, out, sizeof(out));

		if (envelope_cases[i].want == NULL)
			CHECK(rc == -1, "envelope '%s' rejected", envelope_cases[i].in);
		else
			CHECK_STR(rc == 0 ? out : NULL, envelope_cases[i].want,
			    "envelope '%s'", envelope_cases[i].in);
	}
	for (size_t i = 0; i < sizeof(mailbox_cases) / sizeof(mailbox_cases[0]); i++)
		CHECK(address_is_mailbox(mailbox_cases[i].in) == mailbox_cases[i].want,
		    "mailbox '%s': %s", mailbox_cases[i].in, mailbox_cases[i].want ? "yes" : "no");
	return CHECK_DONE();
}
