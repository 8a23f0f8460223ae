/* from_fuzz.c — libFuzzer target for the strict From parser: no crash, and
 * whatever it accepts is one lowercase mailbox that parses again to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct from_addr f, again;
	const char *why;
	char *s;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (address_parse_from(s, &f, &why) == 0) {
		const char *at = strchr(f.addr, '@');

		if (at == NULL || strchr(at + 1, '@') != NULL || strcmp(at + 1, f.domain) != 0 ||
		    !address_valid_domain(f.domain))
			abort();
		for (const char *c = f.addr; *c; c++)
			if ((*c >= 'A' && *c <= 'Z') || (unsigned char)*c <= ' ' ||
			    (unsigned char)*c >= 0x7f)
				abort();
		if (address_parse_from(f.addr, &again, &why) != 0 ||
		    strcmp(again.addr, f.addr) != 0)
			abort();
	} else if (why == NULL)
		abort();
	free(s);
	return 0;
}
