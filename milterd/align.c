/* align.c — DMARC-style alignment on the Public Suffix List; the domain rule. */
#include <string.h>
#include <strings.h>

#include <libpsl.h>

#include "align.h"

static const psl_ctx_t *align_psl;

int
align_init(void)
{
	if (align_psl == NULL && (align_psl = psl_latest(NULL)) == NULL)
		align_psl = psl_builtin();
	return align_psl != NULL ? 0 : -1;
}

const char *
align_org_domain(const char *domain)
{
	if (align_init() == -1)
		return NULL;
	return psl_registrable_domain(align_psl, domain);
}

int
align_check(const char *from_domain, const char *d, enum align_mode mode)
{
	const char *a, *b;

	if (strcasecmp(from_domain, d) == 0)
		return 1;
	if (mode == ALIGN_STRICT)
		return 0;
	/* gouv.fr is a public suffix: two ministries never share an
	 * organizational domain, and a public suffix aligns with nothing. */
	a = align_org_domain(from_domain);
	b = align_org_domain(d);
	return a != NULL && b != NULL && strcasecmp(a, b) == 0;
}

int
align_suffix_match(const char *domain, const char *suffix)
{
	size_t dl = strlen(domain), sl = strlen(suffix);

	if (sl == 0 || dl < sl || (dl > 0 && domain[dl - 1] == '.'))
		return 0;
	if (strcasecmp(domain + dl - sl, suffix) != 0)
		return 0;
	return dl == sl || domain[dl - sl - 1] == '.';
}
