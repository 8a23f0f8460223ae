/* reason.c — names of the reason codes and request states. */
#include <string.h>

#include "reason.h"

static const char *const reason_names[R_COUNT] = {
	[R_NONE] = "none",
	[R_VERIFIED] = "verified",
	[R_ALREADY_VERIFIED] = "already_verified",
	[R_UNKNOWN_TOKEN] = "unknown_token",
	[R_EXPIRED] = "expired",
	[R_FROM_MISMATCH] = "from_mismatch",
	[R_DOMAIN_NOT_ALLOWED] = "domain_not_allowed",
	[R_NOT_AUTHENTICATED] = "not_authenticated",
	[R_TOKEN_NOT_SIGNED] = "token_not_signed",
	[R_ADDRESS_IN_USE] = "address_in_use",
	[R_MALFORMED] = "malformed",
	[R_TEMPORARY] = "temporary",
};

static const char *const state_names[REQ_NSTATES] = {
	[REQ_PENDING] = "pending",
	[REQ_VERIFIED] = "verified",
	[REQ_EXPIRED] = "expired",
	[REQ_REVOKED] = "revoked",
	[REQ_LAPSED] = "lapsed",
	[REQ_ADDRESS_CHANGED] = "address_changed",
	[REQ_RENEWED] = "renewed",
};

const char *
reason_name(enum reason r)
{
	return (unsigned)r < R_COUNT ? reason_names[r] : "none";
}

enum reason
reason_parse(const char *s)
{
	for (int i = R_NONE + 1; i < R_COUNT; i++)
		if (strcmp(s, reason_names[i]) == 0)
			return (enum reason)i;
	return R_NONE;
}

const char *
request_state_name(enum request_state s)
{
	return (unsigned)s < REQ_NSTATES ? state_names[s] : "?";
}

enum request_state
request_state_parse(const char *s)
{
	for (int i = 0; i < REQ_NSTATES; i++)
		if (strcmp(s, state_names[i]) == 0)
			return (enum request_state)i;
	return REQ_NSTATES;
}
