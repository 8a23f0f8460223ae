/* authres.c — Authentication-Results (RFC 8601) for DKIM, with milterd's verdict. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "authres.h"

static const char *
authres_result(enum dkimv_result r)
{
	switch (r) {
	case DKIMV_PASS:	return "pass";
	case DKIMV_FAIL:	return "fail";
	case DKIMV_TEMPERROR:	return "temperror";
	case DKIMV_PERMERROR:	return "permerror";
	}
	return "neutral";
}

/* A quoted-string value with nothing that could break out of it. */
static void
authres_quoted(struct buf *out, const char *s)
{
	buf_putc(out, '"');
	for (; *s; s++)
		if (*s != '"' && *s != '\\' && (unsigned char)*s >= 0x20 &&
		    (unsigned char)*s < 0x7f)
			buf_putc(out, *s);
	buf_putc(out, '"');
}

int
authres_build(struct buf *out, const char *authserv_id, const struct dkimv_sig *sigs,
    size_t nsigs, const struct policy_decision *d)
{
	buf_printf(out, "%s;", authserv_id);
	if (nsigs == 0)
		buf_puts(out, " dkim=none");
	for (size_t i = 0; i < nsigs && i < DKIMV_MAXSIGS; i++) {
		const struct dkimv_sig *s = &sigs[i];
		const struct policy_sigverdict *v = &d->verdicts[i];

		buf_printf(out, "%s\n\tdkim=%s reason=", i ? ";" : "", authres_result(s->result));
		if (s->result == DKIMV_PASS)
			authres_quoted(out, v->binds_token ? "aligned, token signed" :
			    v->why ? v->why : v->aligned ? "aligned" : "not judged");
		else
			authres_quoted(out, s->error);
		if (s->domain[0] != '\0')
			buf_printf(out, " header.d=%s", s->domain);
		if (s->selector[0] != '\0')
			buf_printf(out, " header.s=%s", s->selector);
		if (s->algorithm[0] != '\0')
			buf_printf(out, " header.a=%s", s->algorithm);
		if (s->b_prefix[0] != '\0')
			buf_printf(out, " header.b=%s", s->b_prefix);
	}
	return out->s == NULL ? -1 : 0;
}

void
authres_spf(struct buf *out, const struct spf_outcome *mailfrom, const struct spf_outcome *helo,
    const char *helo_name, const struct policy_decision *d, int internal)
{
	if (mailfrom != NULL) {
		buf_printf(out, ";\n\tspf=%s reason=", spf_result_name(mailfrom->result));
		authres_quoted(out, internal ? "internal client, not evaluated" :
		    d->spf_aligned ? "aligned with From" : "not aligned with From");
		buf_printf(out, " smtp.mailfrom=%s", mailfrom->domain);
	}
	if (helo_name != NULL && address_valid_domain(helo_name)) {
		buf_printf(out, ";\n\tspf=%s reason=", spf_result_name(helo->result));
		authres_quoted(out, internal ? "internal client, not evaluated" :
		    "HELO identity, recorded only");
		buf_printf(out, " smtp.helo=%s", helo_name);
	}
	/* The verdict as a comment: our own method name is not registered. */
	buf_printf(out, "\n\t(milterd: %s)", reason_name(d->reason));
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
