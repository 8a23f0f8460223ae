/* address.c — envelope and header address parsing. */
#include <string.h>

#include "address.h"
#include "buf.h"

#define ADDRESS_MAX 320	/* 64 local + @ + 255 domain */

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

enum rcpt_kind
address_verify_rcpt(const char *rcpt, const char *vlocal, const char *vdomain,
    char *token)
{
	char addr[ADDRESS_MAX + 1];
	const char *at, *plus;
	size_t vlen = strlen(vlocal);

	if (address_envelope(rcpt, addr, sizeof(addr)) == -1)
		return RCPT_OTHER;
	at = strrchr(addr, '@');
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
