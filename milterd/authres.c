/* authres.c — Authentication-Results (RFC 8601) for DKIM and SPF, with milterd's verdict. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "authres.h"

static const char *
authres_result(enum dkimv_result r)
{
	switch (r) {
	case DKIMV_PASS:	return "pass";
	case DKIMV_FAIL:	return "fail";
	case DKIMV_TEMPERROR:	return "temperror";
	case DKIMV_PERMERROR:	return "permerror";
	case DKIMV_SKIPPED:	return "policy";	/* RFC 8601 2.7.1: not acceptable here */
	}
	return "neutral";
}

/* A quoted-string value with nothing that could break out of it. */
static void
authres_quoted(struct buf *out, const char *s)
{
	buf_putc(out, '"');
	for (; s != NULL && *s; s++)
		if (*s != '"' && *s != '\\' && (unsigned char)*s >= 0x20 &&
		    (unsigned char)*s < 0x7f)
			buf_putc(out, *s);
	buf_putc(out, '"');
}

/* " name=value": the value as it is when it is a domain name, an address,
 * an algorithm or a piece of base64 (all RFC 8601 2.2 allows bare), else
 * quoted. Values come from the sender (a signature's tags, the HELO name),
 * and a bare "x(milterd: verified)" would put a comment in our header. */
static void
authres_value(struct buf *out, const char *name, const char *value)
{
	size_t n = strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789-._+/=@");

	buf_printf(out, " %s=", name);
	if (n > 0 && value[n] == '\0')
		buf_puts(out, value);
	else
		authres_quoted(out, value);
}

static void
authres_dkim(struct buf *out, const struct authres_input *in)
{
	if (in->nsigs == 0)
		buf_puts(out, " dkim=none");
	for (size_t i = 0; i < in->nsigs && i < DKIMV_MAXSIGS; i++) {
		const struct dkimv_sig *s = &in->sigs[i];

		buf_printf(out, "%s\n\tdkim=%s reason=", i ? ";" : "", authres_result(s->result));
		authres_quoted(out, s->result == DKIMV_PASS ? in->sig_why[i] : s->error);
		if (s->domain[0] != '\0')
			authres_value(out, "header.d", s->domain);
		if (s->selector[0] != '\0')
			authres_value(out, "header.s", s->selector);
		if (s->algorithm[0] != '\0')
			authres_value(out, "header.a", s->algorithm);
		if (s->b_prefix[0] != '\0')
			authres_value(out, "header.b", s->b_prefix);
	}
}

/* SPF's "skipped" is not an RFC 8601 result: the header says none, and why. */
static const char *
authres_spf_result(enum spf_result r)
{
	return r == SPF_R_SKIPPED ? "none" : spf_result_name(r);
}

int
authres_build(struct buf *out, const struct authres_input *in)
{
	buf_printf(out, "%s;", in->authserv_id);
	authres_dkim(out, in);
	if (in->mailfrom != NULL) {
		buf_printf(out, ";\n\tspf=%s reason=", authres_spf_result(in->mailfrom->result));
		authres_quoted(out, in->mailfrom_why);
		authres_value(out, "smtp.mailfrom", in->mailfrom->domain);
	}
	if (in->helo != NULL && in->helo_name != NULL) {
		buf_printf(out, ";\n\tspf=%s reason=", authres_spf_result(in->helo->result));
		authres_quoted(out, in->helo_why);
		authres_value(out, "smtp.helo", in->helo_name);
	}
	/* The verdict as a comment: our own method name is not registered. */
	buf_printf(out, "\n\t(milterd: %s)", in->verdict);
	return buf_failed(out) ? -1 : 0;
}

int
authres_is_ours(const char *value, const char *authserv_id)
{
	size_t n;

	while (isspace((unsigned char)*value))
		value++;
	n = strcspn(value, "; \t\r\n(");
	return n == strlen(authserv_id) && strncasecmp(value, authserv_id, n) == 0;
}
