/* snapshot.c — configuration, policy and reply texts as one reference-counted snapshot. */
#include <stdlib.h>

#include "snapshot.h"

struct snapshot *
snapshot_load(const char *path, struct buf *errors)
{
	struct snapshot *snap;

	if ((snap = calloc(1, sizeof(*snap))) == NULL) {
		buf_printf(errors, "%s: out of memory\n", path);
		return NULL;
	}
	snap->refs = 1;
	/* The policy and the texts are part of the snapshot: checked by -n,
	 * swapped on reload, never half of them. */
	if ((snap->cfg = config_load(path, errors)) == NULL) {
		snapshot_unref(snap);
		return NULL;
	}
	/* Both, whatever the other's errors: -n says all there is to mend. */
	snap->pol = policy_load(snap->cfg->policy, errors);
	snap->replies = replies_load(snap->cfg->templates, errors);
	if (snap->pol == NULL || snap->replies == NULL) {
		snapshot_unref(snap);
		return NULL;
	}
	/* Without a trust anchor no key is DNSSEC-secure: every reply refused. */
	if (snap->pol->dnssec_require_line != 0 && snap->cfg->dns_trust_anchor[0] == '\0') {
		config_file_error(errors, snap->pol->path, snap->pol->dnssec_require_line, "dnssec",
		    "require needs dns_trust_anchor in %s (without it no key is DNSSEC-secure"
		    " and every reply would be refused)", path);
		snapshot_unref(snap);
		return NULL;
	}
	return snap;
}

void
snapshot_ref(struct snapshot *snap)
{
	__atomic_add_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL);
}

void
snapshot_unref(struct snapshot *snap)
{
	if (snap == NULL || __atomic_sub_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	replies_free(snap->replies);
	policy_free(snap->pol);
	config_unref(snap->cfg);
	free(snap);
}
