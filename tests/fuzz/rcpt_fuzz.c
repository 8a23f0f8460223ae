/* rcpt_fuzz.c — libFuzzer target for token extraction: recipient screening,
 * token syntax and the search for a token in signed text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char tok[TOKEN_LEN + 1], canon[TOKEN_LEN + 1];
	char *s;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (address_verify_rcpt(s, "verify", "certify.test", tok) == RCPT_VERIFY) {
		/* A token we accept is canonical and found where it came from. */
		if (strlen(tok) != TOKEN_LEN || token_parse(tok, TOKEN_LEN, canon) != 0 ||
		    strcmp(tok, canon) != 0 || !token_find(s, strlen(s), tok))
			abort();
	}
	if (size >= TOKEN_LEN && token_parse(s, TOKEN_LEN, canon) == 0)
		(void)token_find((const char *)data, size, canon);
	free(s);
	return 0;
}
