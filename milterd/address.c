/* address.c — envelope and header address parsing. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "buf.h"
#include "dname.h"

#define ADDRESS_MAX ADDRESS_MAXLEN

int
address_envelope(const char *in, char *out, size_t size)
{
	char tmp[ADDRESS_MAX + 3];
	char *s, *e, *colon;
	size_t n;

	if (str_copy(tmp, in, sizeof(tmp)) == -1)
		return -1;
	s = str_trim(tmp);
	n = strlen(s);
	if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		s[n - 1] = '\0';
		s++;
	}
	/* An RFC 5321 source route ("@a,@b:user@dom") is obsolete and ignored. */
	if (s[0] == '@' && (colon = strchr(s, ':')) != NULL)
		s = colon + 1;
	/* A simple quoted local part ("user"@dom) is unquoted. */
	if (s[0] == '"' && (e = strchr(s + 1, '"')) != NULL && e[1] == '@' &&
	    memchr(s + 1, '\\', (size_t)(e - s - 1)) == NULL) {
		memmove(e, e + 1, strlen(e + 1) + 1);
		s++;
	}
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f ||
		    strchr("<>\"\\(),;", *c) != NULL)
			return -1;
	if ((e = strrchr(s, '@')) == NULL || e == s || e[1] == '\0' ||
	    memchr(s, '@', (size_t)(e - s)) != NULL)
		return -1;
	if (str_copy(out, s, size) == -1)
		return -1;
	str_lower(out);
	return 0;
}

/* Whether a recipient that does not parse as one mailbox still names the
 * verify domain: "...@DOMAIN" before the closing bracket, in any case. */
static int
address_names_domain(const char *rcpt, const char *vdomain)
{
	size_t n = strlen(rcpt), d = strlen(vdomain);

	while (n > 0 && (rcpt[n - 1] == '>' || rcpt[n - 1] == ' ' || rcpt[n - 1] == '.'))
		n--;
	return n > d && rcpt[n - d - 1] == '@' && strncasecmp(rcpt + n - d, vdomain, d) == 0;
}

enum rcpt_kind
address_verify_rcpt(const char *rcpt, const char *vlocal, const char *vdomain,
    char *token)
{
	char addr[ADDRESS_MAX + 1], *at;
	const char *plus;
	size_t vlen = strlen(vlocal), dlen;

	/* The verify domain takes only verification replies: what milterd cannot
	 * parse there is refused, never let through as someone else's mail. */
	if (address_envelope(rcpt, addr, sizeof(addr)) == -1)
		return address_names_domain(rcpt, vdomain) ? RCPT_VERIFY_MALFORMED : RCPT_OTHER;
	at = strrchr(addr, '@');
	dlen = strlen(at + 1);
	/* "verify+TOKEN@certify.example.org." names the same domain. */
	if (dlen > 0 && at[dlen] == '.')
		at[dlen] = '\0';
	if (strcmp(at + 1, vdomain) != 0)
		return RCPT_OTHER;
	if (strncmp(addr, vlocal, vlen) != 0)
		return RCPT_OTHER;
	if (addr + vlen == at)
		return RCPT_VERIFY_MALFORMED;	/* verify@ without a token */
	plus = addr + vlen;
	if (*plus != '+')
		return RCPT_OTHER;		/* verifyer@..., someone else */
	if (token_parse(plus + 1, (size_t)(at - plus - 1), token) == -1)
		return RCPT_VERIFY_MALFORMED;
	return RCPT_VERIFY;
}

/* RFC 5322 atext. */
static int
address_atext(int c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

int
address_valid_domain(const char *d)
{
	return dname_valid(d, 2, 0);
}

/* Unfolds a header value: CRLF or LF followed by white space is folding;
 * any other CR, LF or NUL, and any byte outside ASCII, is refused. */
static int
address_unfold(const char *in, char *out, size_t size, const char **why)
{
	size_t o = 0;

	for (const char *c = in; *c; c++) {
		if (*c == '\r' && c[1] == '\n')
			c++;
		if (*c == '\n') {
			if (c[1] != ' ' && c[1] != '\t') {
				*why = "bare line break in From";
				return -1;
			}
			continue;
		}
		if (*c == '\r') {
			*why = "bare carriage return in From";
			return -1;
		}
		if ((unsigned char)*c >= 0x80) {
			*why = "non-ASCII byte in From";
			return -1;
		}
		if (o + 1 >= size) {
			*why = "From too long";
			return -1;
		}
		out[o++] = *c;
	}
	out[o] = '\0';
	return 0;
}

static const char *
address_skip_wsp(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* addr-spec = dot-atom-text "@" hostname; returns the end, or NULL. */
static const char *
address_addr_spec(const char *p, struct from_addr *out, const char **why)
{
	const char *start = p, *at;
	size_t n;

	for (;;) {
		if (!address_atext((unsigned char)*p)) {
			*why = *p == '"' ? "quoted local part in From" :
			    "bad local part in From";
			return NULL;
		}
		while (address_atext((unsigned char)*p))
			p++;
		if (*p != '.')
			break;
		p++;
	}
	if (*p != '@') {
		*why = *p == ':' ? "group syntax in From" : "no @ in From address";
		return NULL;
	}
	at = p++;
	if ((size_t)(at - start) > 64) {
		*why = "local part longer than 64 characters";
		return NULL;
	}
	while (isalnum((unsigned char)*p) || *p == '-' || *p == '.')
		p++;
	n = (size_t)(p - start);
	if (n > ADDRESS_MAXLEN || (size_t)(p - at - 1) >= sizeof(out->domain)) {
		*why = "From address too long";
		return NULL;
	}
	memcpy(out->addr, start, n);
	out->addr[n] = '\0';
	memcpy(out->domain, at + 1, (size_t)(p - at - 1));
	out->domain[p - at - 1] = '\0';
	if (!address_valid_domain(out->domain)) {
		*why = "From domain is not a valid hostname";
		return NULL;
	}
	/* An encoded word where the address goes is a trick, not a name. */
	if (strstr(out->addr, "=?") != NULL) {
		*why = "encoded word in From address";
		return NULL;
	}
	str_lower(out->addr);
	str_lower(out->domain);
	return p;
}

/* display-name = words (atoms, dots, quoted strings, encoded words) and
 * white space, up to '<'. Returns the position of '<', or NULL. */
static const char *
address_display_name(const char *p, const char **why)
{
	for (;;) {
		p = address_skip_wsp(p);
		if (*p == '<')
			return p;
		if (*p == '"') {
			for (p++; *p != '"'; p++) {
				if (*p == '\0') {
					*why = "unterminated quoted string in From";
					return NULL;
				}
				if (*p == '\\' && p[1] != '\0')
					p++;
			}
			p++;
		} else if (address_atext((unsigned char)*p) || *p == '.') {
			while (address_atext((unsigned char)*p) || *p == '.')
				p++;
		} else {
			*why = *p == '\0' ? "no address in From" :
			    *p == '(' ? "comment in From" :
			    *p == ',' ? "more than one address in From" :
			    *p == ':' || *p == ';' ? "group syntax in From" :
			    *p == '@' ? "unquoted @ in the From display name" :
			    "unexpected character in From";
			return NULL;
		}
	}
}

int
address_parse_from(const char *value, struct from_addr *out, const char **why)
{
	/* A display name may be long (1,024 bytes refused a legal quoted name of
	 * 1,100 characters); past this, "From too long": malformed (milterd(8)). */
	char buf[ADDRESS_FROM_MAX + 1];
	const char *p, *lt = NULL;
	int quoted = 0;

	*why = NULL;
	memset(out, 0, sizeof(*out));
	if (address_unfold(value, buf, sizeof(buf), why) == -1)
		return -1;
	p = address_skip_wsp(buf);
	for (const char *c = p; *c; c++) {
		if (*c == '\\' && quoted && c[1] != '\0')
			c++;
		else if (*c == '"')
			quoted = !quoted;
		else if (*c == '<' && !quoted && lt == NULL)
			lt = c;
	}
	if (lt != NULL) {
		if ((p = address_display_name(p, why)) == NULL)
			return -1;
		p = address_skip_wsp(p + 1);
		if (*p == '@') {
			*why = "source route in From";
			return -1;
		}
		if ((p = address_addr_spec(p, out, why)) == NULL)
			return -1;
		p = address_skip_wsp(p);
		if (*p != '>') {
			*why = *p == ',' ? "more than one address in From" :
			    "bad address in From";
			return -1;
		}
		p++;
	} else if ((p = address_addr_spec(p, out, why)) == NULL)
		return -1;
	p = address_skip_wsp(p);
	if (*p != '\0') {
		*why = *p == ',' ? "more than one address in From" :
		    *p == '(' ? "comment in From" :
		    *p == ':' || *p == ';' ? "group syntax in From" :
		    "trailing text after the From address";
		return -1;
	}
	return 0;
}

int
address_is_mailbox(const char *s)
{
	struct from_addr fa;
	const char *why;

	return address_parse_from(s, &fa, &why) == 0 && strcasecmp(fa.addr, s) == 0;
}
