/* policy_check.c — runs decision scripts (tests/policy/NAME.in) through
 * policy_decide() and prints each decision, for diffing with the .ref files.
 *
 * Script lines (values may use $TOKEN):
 *   policy FILE                  policy file, relative to the script's directory
 *   request EMAIL [AGE]          the request: its address, created AGE seconds ago
 *                                (pending, no attempt, the address certifying nobody)
 *   state STATE                  the request's state as RCPT read it
 *   attempts N                   its failed attempts so far
 *   holders N                    other accounts its address certifies now
 *   after STATE [ATTEMPTS [HOLDERS]]  the guarded write of the next decision did not
 *                                happen: the database found the request so
 *   client internal|external
 *   from|to|cc|subject VALUE     a header (repeat for several instances)
 *   body TEXT                    body line
 *   dkim KEY=VALUE...            a signature: d s a bits result h l t (t: seconds
 *                                relative to now) dnssec
 *   spf RESULT DOMAIN            MAIL FROM identity result (none if absent)
 *   helo RESULT
 *   templates DIR                reply texts, relative to the script's directory
 *   lang fr|en|all               language of the replies (default all)
 *   decide NAME                  prints the decision, then forgets the message
 *   rcpt NAME                    prints the answer at RCPT to a reply for the request
 *
 * As in the daemon, a signature whose d= could not align is skipped (its key
 * never fetched) and SPF is evaluated only where it could matter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "align.h"
#include "policy.h"
#include "replies.h"

#define TOKEN "abcdefghijklmnopqrstuvwxy4"

struct hdr {
	int	count;
	char	value[1024];
};

struct state {
	struct policy		*pol;
	struct replies		*rep;
	int			 lang;
	char			 email[321];
	struct policy_request	 req;
	int			 internal;
	struct hdr		 from, to, cc, subject;
	int			 has_after;
	struct policy_request	 after;
	char			 body[4096];
	struct dkimv_sig	 sigs[DKIMV_MAXSIGS];
	size_t			 nsigs;
	struct spf_outcome	 spf, helo;
	int			 has_spf;
};

static void
subst(const char *in, char *out, size_t size)
{
	size_t o = 0;

	while (*in && o + 1 < size) {
		if (strncmp(in, "$TOKEN", 6) == 0 && o + sizeof(TOKEN) < size) {
			memcpy(out + o, TOKEN, sizeof(TOKEN) - 1);
			o += sizeof(TOKEN) - 1;
			in += 6;
		} else
			out[o++] = *in++;
	}
	out[o] = '\0';
}

static enum spf_result
spf_parse(const char *s)
{
	static const char *const names[] = { "none", "neutral", "pass", "fail", "softfail",
	    "temperror", "permerror", "skipped" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return (enum spf_result)i;
	fprintf(stderr, "policy_check: bad SPF result %s\n", s);
	exit(2);
}

static void
dkim_parse(struct state *st, char *args)
{
	struct dkimv_sig *s = &st->sigs[st->nsigs++];
	char *kv;

	memset(s, 0, sizeof(*s));
	s->timestamp = -1;
	s->dnssec = "unknown";
	str_copy(s->algorithm, "rsa-sha256", sizeof(s->algorithm));
	s->key_bits = 2048;
	str_copy(s->headers, "from:to:subject:date", sizeof(s->headers));
	s->pass = 1;
	for (kv = strtok(args, " "); kv != NULL; kv = strtok(NULL, " ")) {
		char *v = strchr(kv, '=');

		if (v == NULL)
			continue;
		*v++ = '\0';
		if (strcmp(kv, "d") == 0)
			str_copy(s->domain, v, sizeof(s->domain));
		else if (strcmp(kv, "s") == 0)
			str_copy(s->selector, v, sizeof(s->selector));
		else if (strcmp(kv, "a") == 0)
			str_copy(s->algorithm, v, sizeof(s->algorithm));
		else if (strcmp(kv, "bits") == 0)
			s->key_bits = (unsigned)atoi(v);
		else if (strcmp(kv, "h") == 0)
			str_copy(s->headers, v, sizeof(s->headers));
		else if (strcmp(kv, "l") == 0) {
			s->has_length = 1;
			s->length = strtoull(v, NULL, 10);
		} else if (strcmp(kv, "t") == 0)
			s->timestamp = (long long)time(NULL) + atoll(v);
		else if (strcmp(kv, "dnssec") == 0)
			s->dnssec = strcmp(v, "secure") == 0 ? "secure" : "insecure";
		else if (strcmp(kv, "result") == 0) {
			s->pass = strcmp(v, "pass") == 0;
			s->temporary = strcmp(v, "temperror") == 0;
			s->result = s->pass ? DKIMV_PASS : s->temporary ? DKIMV_TEMPERROR :
			    strcmp(v, "fail") == 0 ? DKIMV_FAIL : DKIMV_PERMERROR;
			if (!s->pass)
				str_copy(s->error, v, sizeof(s->error));
		}
	}
}

static void
print_verdict(const char *name, enum reason r, const struct verdict *v)
{
	printf("%s: reason=%s", name, reason_name(r));
	if (v->action == VA_REPLY)
		printf(" reply=\"%s %s %s\"", v->rcode, v->xcode, v->text);
	else
		printf(" reply=%s", v->action == VA_DISCARD ? "discard" : "250");
}

/* What session.c does once the headers are in and at end of message. */
static void
decide(struct state *st, const char *name)
{
	struct policy_header from = { st->from.count, st->from.count ? st->from.value : NULL };
	struct policy_input in;
	struct policy_decision d;
	struct verdict v;
	const char *skip;

	policy_screen(st->pol, &from, NULL, &st->req, &d);
	for (size_t i = 0; i < st->nsigs; i++)
		if (!policy_dkim_worth(&d, st->sigs[i].domain)) {
			st->sigs[i].skipped = 1;
			st->sigs[i].pass = st->sigs[i].temporary = 0;
			st->sigs[i].result = DKIMV_SKIPPED;
		}
	if (st->has_spf && (skip = policy_spf_skip(&d, st->spf.domain, st->internal)) != NULL) {
		st->spf.result = SPF_R_SKIPPED;
		str_copy(st->spf.why, skip, sizeof(st->spf.why));
	}
	memset(&in, 0, sizeof(in));
	in.to = (struct policy_header){ st->to.count, st->to.count ? st->to.value : NULL };
	in.cc = (struct policy_header){ st->cc.count, st->cc.count ? st->cc.value : NULL };
	in.subject = (struct policy_header){ st->subject.count,
	    st->subject.count ? st->subject.value : NULL };
	in.body_has_token = token_find(st->body, strlen(st->body), TOKEN);
	in.sigs = st->sigs;
	in.nsigs = st->nsigs;
	in.token = TOKEN;
	in.req = &st->req;
	in.spf_mailfrom = st->has_spf ? &st->spf : NULL;
	in.internal_client = st->internal;
	policy_decide(&in, &d);
	if (st->has_after) {
		st->after.email = st->email;
		st->after.created_at = st->req.created_at;
		policy_settle(&d, &st->after, 1);
	}
	policy_verdict(&d, st->rep, st->lang, &v);
	print_verdict(name, d.reason, &v);
	if (d.sig >= 0)
		printf(" sig=%s", st->sigs[d.sig].domain);
	else if (d.named >= 0)	/* the one the detail and the evidence name */
		printf(" named=%d:%s", d.named, st->sigs[d.named].domain);
	if (st->has_spf)
		printf(" spf=%s", spf_result_name(st->spf.result));
	printf(" detail=\"%s\"\n", d.detail);
	for (size_t i = 0; i < st->nsigs; i++)
		if (d.verdicts[i].why != NULL)
			printf("  sig %zu d=%s: %s\n", i, st->sigs[i].domain, d.verdicts[i].why);
	memset(&st->from, 0, sizeof(*st) - offsetof(struct state, from));
}

/* What session.c does at RCPT for a verification address whose token
 * selects the request. */
static void
rcpt(struct state *st, const char *name)
{
	struct policy_rcpt in = { .kind = RCPT_VERIFY, .req = &st->req, .lang = st->lang };
	struct verdict v;

	if (policy_rcpt(st->pol, st->rep, &in, &v) == 0)
		printf("%s: passes\n", name);
	else {
		print_verdict(name, v.reason, &v);
		printf("\n");
	}
}

static enum request_state
state_parse(const char *s)
{
	enum request_state r = request_state_parse(s);

	if (r == REQ_NSTATES) {
		fprintf(stderr, "policy_check: bad request state %s\n", s);
		exit(2);
	}
	return r;
}

int
main(int argc, char **argv)
{
	char line[2048], val[2048], dir[1024], path[3100];
	struct state st;
	struct buf err;
	FILE *fp;
	char *sp;

	if (argc != 2 || (fp = fopen(argv[1], "r")) == NULL) {
		fprintf(stderr, "usage: policy_check SCRIPT.in\n");
		return 2;
	}
	str_copy(dir, argv[1], sizeof(dir));
	if ((sp = strrchr(dir, '/')) != NULL)
		*sp = '\0';
	else
		str_copy(dir, ".", sizeof(dir));
	memset(&st, 0, sizeof(st));
	st.lang = -1;
	align_init();
	buf_init(&err);
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *cmd = str_trim(line), *arg;
		struct hdr *h = NULL;

		if (*cmd == '\0' || *cmd == '#')
			continue;
		arg = cmd + strcspn(cmd, " ");
		if (*arg)
			*arg++ = '\0';
		subst(arg, val, sizeof(val));
		if (strcmp(cmd, "policy") == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, val);
			policy_free(st.pol);
			if ((st.pol = policy_load(path, &err)) == NULL) {
				fprintf(stderr, "%s", err.s);
				return 1;
			}
		} else if (strcmp(cmd, "templates") == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, val);
			replies_free(st.rep);
			if ((st.rep = replies_load(path, &err)) == NULL) {
				fprintf(stderr, "%s", err.s);
				return 1;
			}
		} else if (strcmp(cmd, "lang") == 0) {
			st.lang = replies_lang(val);
		} else if (strcmp(cmd, "request") == 0) {
			char *age = strchr(val, ' ');

			if (age)
				*age++ = '\0';
			str_copy(st.email, val, sizeof(st.email));
			st.req = (struct policy_request){ REQ_PENDING, 0, st.email,
			    (double)time(NULL) - (age ? atof(age) : 60), 0 };
		} else if (strcmp(cmd, "state") == 0)
			st.req.state = state_parse(val);
		else if (strcmp(cmd, "attempts") == 0)
			st.req.attempts = atoi(val);
		else if (strcmp(cmd, "holders") == 0)
			st.req.holders = atoi(val);
		else if (strcmp(cmd, "after") == 0) {
			char *rest = strchr(val, ' ');

			if (rest)
				*rest++ = '\0';
			st.has_after = 1;
			st.after.state = state_parse(val);
			st.after.attempts = rest ? atoi(rest) : 0;
			st.after.holders = rest && strchr(rest, ' ') ? atoi(strchr(rest, ' ')) : 0;
		} else if (strcmp(cmd, "rcpt") == 0) {
			if (st.pol == NULL) {
				fprintf(stderr, "policy_check: rcpt before policy\n");
				return 2;
			}
			rcpt(&st, val);
		} else if (strcmp(cmd, "client") == 0)
			st.internal = strcmp(val, "internal") == 0;
		else if (strcmp(cmd, "from") == 0)
			h = &st.from;
		else if (strcmp(cmd, "to") == 0)
			h = &st.to;
		else if (strcmp(cmd, "cc") == 0)
			h = &st.cc;
		else if (strcmp(cmd, "subject") == 0)
			h = &st.subject;
		else if (strcmp(cmd, "body") == 0) {
			size_t used = strlen(st.body);

			snprintf(st.body + used, sizeof(st.body) - used, "%s\r\n", val);
		} else if (strcmp(cmd, "dkim") == 0 && st.nsigs < DKIMV_MAXSIGS)
			dkim_parse(&st, val);
		else if (strcmp(cmd, "spf") == 0) {
			char *dom = strchr(val, ' ');

			if (dom)
				*dom++ = '\0';
			st.has_spf = 1;
			st.spf.result = spf_parse(val);
			str_copy(st.spf.domain, dom ? dom : "", sizeof(st.spf.domain));
		} else if (strcmp(cmd, "helo") == 0)
			st.helo.result = spf_parse(val);
		else if (strcmp(cmd, "decide") == 0) {
			if (st.pol == NULL) {
				fprintf(stderr, "policy_check: decide before policy\n");
				return 2;
			}
			decide(&st, val);
		} else {
			fprintf(stderr, "policy_check: unknown command %s\n", cmd);
			return 2;
		}
		if (h != NULL) {
			h->count++;
			str_copy(h->value, val, sizeof(h->value));
		}
	}
	fclose(fp);
	policy_free(st.pol);
	replies_free(st.rep);
	buf_free(&err);
	return 0;
}
