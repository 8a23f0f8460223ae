/* dname.c — the syntax of domain names (LDH labels), for addresses, signer
 * domains, HELO names and configuration values alike. */
#include <ctype.h>
#include <string.h>

#include "dname.h"

int
dname_valid(const char *d, size_t min_labels, int underscore)
{
	size_t len = strlen(d), lab = 0, labels = 0;

	if (len == 0 || len > 253)
		return 0;
	for (const char *c = d; ; c++) {
		if (*c == '.' || *c == '\0') {
			if (lab == 0 || c[-1] == '-')
				return 0;
			labels++;
			lab = 0;
			if (*c == '\0')
				break;
			continue;
		}
		if (!isalnum((unsigned char)*c) && *c != '-' && !(underscore && *c == '_'))
			return 0;
		if (lab == 0 && *c == '-')
			return 0;
		if (++lab > 63)
			return 0;
	}
	return labels >= min_labels;
}
