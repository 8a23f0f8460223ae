/* spf_check.c — milterd's SPF layer on the command line, for the RFC 7208 suite:
 * spf_check --resolver IP@PORT --ip IP --helo HELO --mailfrom ADDR */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "dns.h"
#include "spf.h"

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "resolver", required_argument, NULL, 'r' },
		{ "ip", required_argument, NULL, 'i' },
		{ "helo", required_argument, NULL, 'h' },
		{ "mailfrom", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	const char *resolver = "system", *ip = NULL, *helo = "", *mailfrom = "";
	struct spf_outcome out;
	struct dns *dns;
	struct buf err;
	int ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': resolver = optarg; break;
		case 'i': ip = optarg; break;
		case 'h': helo = optarg; break;
		case 'm': mailfrom = optarg; break;
		default: return 2;
		}
	}
	if (ip == NULL) {
		fprintf(stderr, "usage: spf_check --resolver IP@PORT --ip IP --helo H --mailfrom M\n");
		return 2;
	}
	buf_init(&err);
	if ((dns = dns_open(resolver, "", 3, &err)) == NULL || spf_init(dns, &err) == -1) {
		fprintf(stderr, "spf_check: %s\n", err.s);
		return 1;
	}
	spf_check(ip, helo, mailfrom, &out);
	printf("%s%s%s\n", spf_result_name(out.result), out.why[0] ? " " : "", out.why);
	spf_shutdown();
	dns_close(dns);
	buf_free(&err);
	return 0;
}
