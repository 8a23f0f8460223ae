/* align_test.c — the domain rule on label boundaries and alignment on the PSL. */
#include "check.h"

#include "align.h"

static const struct {
	const char *domain, *suffix;
	int match;
} suffixes[] = {
	{ "gouv.fr", "gouv.fr", 1 },
	{ "agri.gouv.fr", "gouv.fr", 1 },
	{ "a.b.agri.gouv.fr", "gouv.fr", 1 },
	{ "AGRI.GOUV.FR", "gouv.fr", 1 },
	{ "fakegouv.fr", "gouv.fr", 0 },
	{ "gouv.fr.example", "gouv.fr", 0 },
	{ "agri.gouv.fr.", "gouv.fr", 0 },
	{ "gouv.fr.", "gouv.fr", 0 },
	{ "ouv.fr", "gouv.fr", 0 },
	{ "fr", "gouv.fr", 0 },
	{ "xgouv.fr", "gouv.fr", 0 },
};

static const struct {
	const char *from, *d;
	enum align_mode mode;
	int aligned;
} aligns[] = {
	{ "agri.gouv.fr", "agri.gouv.fr", ALIGN_RELAXED, 1 },
	{ "agri.gouv.fr", "mail.agri.gouv.fr", ALIGN_RELAXED, 1 },
	{ "sub.agri.gouv.fr", "agri.gouv.fr", ALIGN_RELAXED, 1 },
	{ "agri.gouv.fr", "interieur.gouv.fr", ALIGN_RELAXED, 0 },	/* two ministries */
	{ "agri.gouv.fr", "gouv.fr", ALIGN_RELAXED, 0 },		/* a public suffix */
	{ "agri.gouv.fr", "fr", ALIGN_RELAXED, 0 },
	{ "agri.gouv.fr", "example.com", ALIGN_RELAXED, 0 },
	{ "agri.gouv.fr", "agri.gouv.fr.example.com", ALIGN_RELAXED, 0 },
	{ "agri.gouv.fr", "mail.agri.gouv.fr", ALIGN_STRICT, 0 },
	{ "agri.gouv.fr", "AGRI.gouv.fr", ALIGN_STRICT, 1 },
};

int
main(void)
{
	CHECK(align_init() == 0, "Public Suffix List loads");
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		CHECK(align_suffix_match(suffixes[i].domain, suffixes[i].suffix) == suffixes[i].match,
		    "'%s' under '%s' = %d", suffixes[i].domain, suffixes[i].suffix, suffixes[i].match);
	for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++)
		CHECK(align_check(aligns[i].from, aligns[i].d, aligns[i].mode) == aligns[i].aligned,
		    "From %s, d=%s, %s: aligned=%d", aligns[i].from, aligns[i].d,
		    aligns[i].mode == ALIGN_STRICT ? "strict" : "relaxed", aligns[i].aligned);
	CHECK(align_org_domain("gouv.fr") == NULL, "gouv.fr is a public suffix");
	CHECK_STR(align_org_domain("a.b.agri.gouv.fr"), "agri.gouv.fr", "org domain of a.b.agri.gouv.fr");
	return CHECK_DONE();
}
