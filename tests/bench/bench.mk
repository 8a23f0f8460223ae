# bench.mk — the benchmark's part of the Makefile; the main Makefile includes it
# (`include tests/bench/bench.mk`, after BUILD, CC and WARN are set).
#
#   make bench          build milterd, milterctl and the load client, run tests/bench/run.sh
#   make bench-deps     install the milters compared against (Debian: opendkim, pyspf-milter)
#                       and python3-cryptography (the corpus is signed through OpenSSL)
#   make bench-follow   milterctl follow's latency from milterd's 250 to the backend's program
#                       (tests/bench/follow-latency.sh; needs only what make check needs)
#
# bench-deps is separate on purpose: on a machine with systemd, installing these packages
# also enables and starts their system services. Without them run.sh skips their rows.

BENCH_DEB_PACKAGES := opendkim pyspf-milter python3-cryptography

$(BUILD)/bench/milterload: tests/bench/milterload.c
	@mkdir -p $(BUILD)/bench
	@echo "  CC      $<"
	@$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -pthread -o $@ $< $(LDFLAGS)

bench: all $(BUILD)/bench/milterload
	BUILD=$(abspath $(BUILD)) tests/bench/run.sh

bench-follow: all
	BUILD=$(abspath $(BUILD)) tests/bench/follow-latency.sh

bench-deps:
	@missing=""; for p in $(BENCH_DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "bench-deps: all packages present"; fi

.PHONY: bench bench-deps bench-follow
