/* dkimkeys_test.c — the decoded-key cache behind d2i_PUBKEY_bio() (dkim.c),
 * the call libopendkim makes for every signature's key: the same DER bytes give
 * the same key object (a new reference each time), other bytes another key,
 * garbage nothing; more keys than the cache holds are still decoded right
 * (least recently used ones dropped); every reference freed leaves no leak
 * (valgrind). */
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <stdlib.h>

#include "check.h"

#include "../../milterd/dkim.h"	/* not libopendkim's dkim.h, first on the path */

#define NKEYS 80	/* more than the cache keeps */

/* What libopendkim does: a memory BIO over the key record's bytes. */
static EVP_PKEY *
decode(const unsigned char *der, int len)
{
	BIO *b = BIO_new_mem_buf(der, len);
	EVP_PKEY *k = d2i_PUBKEY_bio(b, NULL);

	BIO_free(b);
	return k;
}

int
main(void)
{
	unsigned char *der[NKEYS] = { 0 };
	int len[NKEYS];
	EVP_PKEY *orig[NKEYS], *a, *b;
	int right = 1;

	for (int i = 0; i < NKEYS; i++) {
		orig[i] = EVP_EC_gen("P-256");
		len[i] = orig[i] ? i2d_PUBKEY(orig[i], &der[i]) : -1;
		if (len[i] <= 0) {
			printf("not ok - cannot make test keys\n");
			return 1;
		}
	}
	a = decode(der[0], len[0]);
	b = decode(der[0], len[0]);
	CHECK(a != NULL && EVP_PKEY_eq(a, orig[0]) == 1, "a key is decoded");
	CHECK(a == b, "the same bytes again: the same decoded key");
	EVP_PKEY_free(b);
	/* a's reference is still good after b's is gone */
	CHECK(EVP_PKEY_eq(a, orig[0]) == 1, "one reference freed, the other still usable");
	EVP_PKEY_free(a);

	b = decode(der[1], len[1]);
	CHECK(b != NULL && EVP_PKEY_eq(b, orig[1]) == 1 && EVP_PKEY_eq(b, orig[0]) != 1,
	    "other bytes: the other key");
	EVP_PKEY_free(b);

	/* Twice round more keys than the cache holds: always the right key. */
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < NKEYS; i++) {
			EVP_PKEY *k = decode(der[i], len[i]);

			if (k == NULL || EVP_PKEY_eq(k, orig[i]) != 1)
				right = 0;
			EVP_PKEY_free(k);
		}
	CHECK(right, "%d keys, twice round: each decodes to itself", NKEYS);

	/* The most recent one is still kept. */
	a = decode(der[NKEYS - 1], len[NKEYS - 1]);
	b = decode(der[NKEYS - 1], len[NKEYS - 1]);
	CHECK(a != NULL && a == b, "the key used last is still kept");
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);

	{
		static const unsigned char junk[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };

		a = decode(junk, sizeof(junk));
		CHECK(a == NULL, "bytes that are no key: no key");
		a = decode(junk, 0);
		CHECK(a == NULL, "no bytes: no key");
	}

	for (int i = 0; i < NKEYS; i++) {
		EVP_PKEY_free(orig[i]);
		OPENSSL_free(der[i]);
	}
	dkimv_shutdown();	/* frees the cache */
	return CHECK_DONE();
}
