/* render_test.c — the template renderer: placeholders, escaping, encoding. */
#include "check.h"

#include "render.h"
#include "replies.h"

int
main(void)
{
	const struct render_var vars[] = {
		{ "name", "Alice" }, { "token", "abcdefghijklmnopqrstuvwxy4" },
		{ "evil", "x\r\nBcc: victim@example.com" }, { "multi", "line1\nline2" },
	};
	struct buf out, err;
	int rc;

	buf_init(&out);
	buf_init(&err);
	rc = render_text("To: {{name}}\nSubject: [{{token}}]\n\nHello {{name}}\n", vars, 4,
	    &out, &err);
	CHECK_STR(rc == 0 ? out.s : err.s,
	    "To: Alice\r\nSubject: [abcdefghijklmnopqrstuvwxy4]\r\n\r\nHello Alice\r\n",
	    "placeholders filled, CRLF lines");

	buf_reset(&out);
	buf_reset(&err);
	rc = render_text("To: {{nobody}}\n\nx\n", vars, 4, &out, &err);
	CHECK(rc == -1 && strstr(err.s, "unknown placeholder {{nobody}}") != NULL,
	    "unknown placeholder is an error, not an empty string (%s)", err.s);

	buf_reset(&out);
	buf_reset(&err);
	rc = render_text("Subject: {{evil}}\n\nx\n", vars, 4, &out, &err);
	CHECK(rc == -1 && strstr(err.s, "would break the header line") != NULL,
	    "a value with CR/LF refused in a header (%s)", err.s);

	buf_reset(&out);
	buf_reset(&err);
	rc = render_text("Subject: ok\n\n{{multi}}\n", vars, 4, &out, &err);
	CHECK_STR(rc == 0 ? out.s : err.s, "Subject: ok\r\n\r\nline1\r\nline2\r\n",
	    "multi-line value in the body keeps its lines");

	buf_reset(&out);
	buf_reset(&err);
	rc = render_text("Subject: V\xc3\xa9rification [{{token}}]\n\nx\n", vars, 4, &out, &err);
	CHECK_STR(rc == 0 ? out.s : err.s,
	    "Subject: =?UTF-8?Q?V=C3=A9rification_=5Babcdefghijklmnopqrstuvwxy4=5D?=\r\n\r\nx\r\n",
	    "non-ASCII header RFC 2047 encoded");

	/* An address header: the display name encoded, the address left a mailbox. */
	buf_reset(&out);
	buf_reset(&err);
	rc = render_text("From: Minist\xc3\xa8re <verify@certify.example.org>\n\nx\n", vars, 4,
	    &out, &err);
	CHECK_STR(rc == 0 ? out.s : err.s,
	    "From: =?UTF-8?Q?Minist=C3=A8re?= <verify@certify.example.org>\r\n\r\nx\r\n",
	    "non-ASCII display name encoded, the address not");

	buf_reset(&out);
	buf_reset(&err);
	rc = render_text("From: \"Minist\xc3\xa8re de l'Agriculture et de la Souverainet\xc3\xa9"
	    " alimentaire\" <verify@certify.example.org>\n\nx\n", vars, 4, &out, &err);
	CHECK_STR(rc == 0 ? out.s : err.s,
	    "From: =?UTF-8?Q?Minist=C3=A8re_de_l=27Agriculture_et_de_la_Souverainet=C3=A9?=\r\n"
	    " =?UTF-8?Q?_alimentaire?= <verify@certify.example.org>\r\n\r\nx\r\n",
	    "a long quoted display name: unquoted, folded, the address whole");

	buf_reset(&out);
	buf_reset(&err);
	rc = render_text("To: {{name}\n\nx\n", vars, 4, &out, &err);
	CHECK(rc == -1, "unterminated placeholder is an error");

	buf_reset(&out);
	buf_reset(&err);
	rc = render_text("To: x\n", vars, 4, &out, &err);
	CHECK(rc == -1, "a template without a body separator is an error");

	CHECK(replies_lang("fr") == 0 && replies_lang("en") == 1 && replies_lang("de") == -1,
	    "language codes");
	buf_free(&out);
	buf_free(&err);
	return CHECK_DONE();
}
