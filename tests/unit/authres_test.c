/* authres_test.c — the Authentication-Results header milterd adds: a value the
 * sender chose (a signature's tags, the HELO name) stays one value, quoted when
 * it is not a bare domain, algorithm or base64, never a comment of its own. */
#include "check.h"

#include "authres.h"

static const char *
build(const struct dkimv_sig *sig, const char *helo, struct buf *b)
{
	static const struct spf_outcome spf = { .result = SPF_R_PASS, .domain = "agri.gouv.fr" };
	const char *why[1] = { "aligned, token signed" };
	struct authres_input in = {
		.authserv_id = "mx.certify.test", .sigs = sig, .sig_why = why, .nsigs = 1,
		.mailfrom = &spf, .mailfrom_why = "pass", .helo = helo ? &spf : NULL,
		.helo_name = helo, .helo_why = "pass", .verdict = "not_authenticated",
	};

	buf_free(b);
	buf_init(b);
	return authres_build(b, &in) == 0 ? b->s : "(failed)";
}

int
main(void)
{
	struct dkimv_sig ok = { .result = DKIMV_PASS, .domain = "agri.gouv.fr",
	    .selector = "rsa2048", .algorithm = "rsa-sha256", .b_prefix = "aB+/9x=Q" };
	struct dkimv_sig bad = { .result = DKIMV_PERMERROR, .domain = "agri.gouv.fr",
	    .selector = "x(milterd: verified)", .algorithm = "rsa-sha256\"(milterd:x)",
	    .b_prefix = ")(z", .error = "signature syntax error" };
	struct buf b;

	buf_init(&b);
	CHECK_STR(build(&ok, "mx.agri.gouv.fr", &b),
	    "mx.certify.test;\n\tdkim=pass reason=\"aligned, token signed\" header.d=agri.gouv.fr"
	    " header.s=rsa2048 header.a=rsa-sha256 header.b=aB+/9x=Q;\n"
	    "\tspf=pass reason=\"pass\" smtp.mailfrom=agri.gouv.fr;\n"
	    "\tspf=pass reason=\"pass\" smtp.helo=mx.agri.gouv.fr\n"
	    "\t(milterd: not_authenticated)",
	    "domain names, algorithm and base64 stay bare");
	CHECK_STR(build(&bad, "mx (milterd: verified)", &b),
	    "mx.certify.test;\n\tdkim=permerror reason=\"signature syntax error\" header.d=agri.gouv.fr"
	    " header.s=\"x(milterd: verified)\" header.a=\"rsa-sha256(milterd:x)\" header.b=\")(z\";\n"
	    "\tspf=pass reason=\"pass\" smtp.mailfrom=agri.gouv.fr;\n"
	    "\tspf=pass reason=\"pass\" smtp.helo=\"mx (milterd: verified)\"\n"
	    "\t(milterd: not_authenticated)",
	    "a sender's tag with parentheses or a quote is quoted: no comment of its own");
	buf_free(&b);
	return check_failures != 0;
}
