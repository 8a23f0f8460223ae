# milterd — build, test, demo and install.
#
#   make            build milterd and milterctl
#   make check      install missing packages, build, run every test
#   make demo       install missing packages, build, run a real verification end to end
#   make deps       install the Debian packages the build, tests and demo need
#   make fuzz       build the libFuzzer targets (clang)
#   make install    PREFIX=/usr/local DESTDIR=
#   make deb        $(BUILD)/deb/milterd_VERSION_ARCH.deb (debian/), checked by lintian

PREFIX    ?= /usr/local
SBINDIR   ?= $(PREFIX)/sbin
DATADIR   ?= $(PREFIX)/share/milterd
MANDIR    ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc/milterd
DESTDIR   ?=

CC        ?= cc
PKGS      := opendkim libpq libpsl inih libcrypto libmicrohttpd jansson libsystemd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
             -Wpointer-arith -Wcast-qual -Wsign-compare -Wformat=2
CFLAGS    ?= -O2 -g
# The version -V prints: debian/changelog's newest entry, without its Debian revision
# (the package's own, not the program's). Read with sed: no dpkg needed to build.
VERSION := $(shell head -n 1 debian/changelog | cut -d ' ' -f 2 | tr -d '()' | sed 's/-[^-]*$$//')
# The schema the binaries are built for: the highest migration in milterd/sql.
SCHEMA_VERSION := $(shell ls milterd/sql | sed -n 's/^0*\([0-9][0-9]*\)_.*\.sql$$/\1/p' | sort -n | tail -n 1)
CPPFLAGS  += -D_GNU_SOURCE -DSQLDIR='"$(DATADIR)/sql"' -DDATADIR='"$(DATADIR)"' \
             -DSYSCONFDIR='"$(SYSCONFDIR)"' -DSCHEMA_VERSION=$(SCHEMA_VERSION) \
             -DMILTERD_VERSION='"$(VERSION)"' 
ALL_CFLAGS = -std=c11 $(WARN) $(CFLAGS) $(PKG_CFLAGS) -pthread
LDLIBS    += $(PKG_LIBS) -lunbound -lspf2 -lpthread

ifdef SANITIZER
ALL_CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS    += -fsanitize=$(SANITIZER)
endif

BUILD     ?= build
SRC_COMMON := buf.c log.c clock.c reason.c dname.c config.c config_ini.c stats.c address.c token.c store.c store_record.c store_tokens.c dns.c dkim.c spf.c \
	      align.c authres.c render.c replies.c challenge.c policy_file.c policy.c snapshot.c session.c
SRC_DAEMON := main.c milter.c server.c
SRC_CTL    := milterctl.c ctl_request.c ctl_check.c ctl_follow.c ctl_cycle.c
OBJ_COMMON := $(SRC_COMMON:%.c=$(BUILD)/%.o)
OBJ_DAEMON := $(SRC_DAEMON:%.c=$(BUILD)/%.o)
OBJ_CTL    := $(SRC_CTL:%.c=$(BUILD)/%.o)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/*_test.c))

# Debian packages needed to build, test and demo (checked one by one, installed if missing).
# make deb needs build-essential (implied by every Build-Depends), debhelper, dpkg-dev and
# lintian (no fakeroot: Rules-Requires-Root: no); deb.sh needs adduser (the package's
# dependency, dpkg -i does not fetch it) and systemd's systemd-analyze (not as PID 1).
DEB_PACKAGES := gcc make pkg-config libopendkim-dev libspf2-dev libpq-dev \
	libssl-dev libunbound-dev libpsl-dev publicsuffix libinih-dev libmicrohttpd-dev libjansson-dev libsystemd-dev postgresql postgresql-contrib \
	postfix swaks miltertest python3 python3-dkim python3-dnspython python3-spf python3-yaml unbound bind9-dnsutils ldnsutils openssl iproute2 util-linux groff-base man-db clang libclang-rt-14-dev \
	build-essential debhelper dpkg-dev lintian adduser systemd \
	m4 libwrap0 liblockfile1 valgrind

.PHONY: all check demo deps fuzz install deb clean unit bench tsan valgrind FORCE
all: $(BUILD)/milterd $(BUILD)/milterctl

# Objects are rebuilt when the flags change (PREFIX is compiled in).
$(BUILD)/flags: FORCE | $(BUILD)
	@echo '$(CC) $(CPPFLAGS) $(ALL_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CPPFLAGS) $(ALL_CFLAGS)' >$@

$(BUILD)/%.o: milterd/%.c milterd/*.h $(BUILD)/flags | $(BUILD)
	@echo "  CC      $<"
	@$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Imilterd -c -o $@ $<

$(BUILD):
	mkdir -p $(BUILD)/tests

$(BUILD)/milterd: $(OBJ_DAEMON) $(OBJ_COMMON)
	$(CC) $(LDFLAGS) -pthread -o $@ $^ $(LDLIBS)

$(BUILD)/milterctl: $(OBJ_CTL) $(OBJ_COMMON)
	$(CC) $(LDFLAGS) -pthread -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(OBJ_COMMON) | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Imilterd -o $@ $< $(OBJ_COMMON) $(LDFLAGS) $(LDLIBS)

# The milter protocol test drives milter.c, which only the daemon links.
$(BUILD)/tests/milter_test: tests/unit/milter_test.c $(BUILD)/milter.o $(OBJ_COMMON) | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Imilterd -o $@ $< $(BUILD)/milter.o $(OBJ_COMMON) \
		$(LDFLAGS) $(LDLIBS)

unit: $(UNIT_TESTS) $(BUILD)/tests/spf_check $(BUILD)/tests/policy_check

$(BUILD)/tests/policy_check: tests/policy/policy_check.c $(OBJ_COMMON) | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Imilterd -o $@ $< $(OBJ_COMMON) $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/spf_check: tests/spf/spf_check.c $(OBJ_COMMON) | $(BUILD)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Imilterd -o $@ $< $(OBJ_COMMON) $(LDFLAGS) $(LDLIBS)

# libFuzzer targets: plain sources rebuilt with clang and the sanitizers.
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/*_fuzz.c))
FUZZ_SRC     := milterd/address.c milterd/dname.c milterd/token.c milterd/buf.c
fuzz: $(FUZZ_TARGETS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_SRC) milterd/*.h
	@mkdir -p $(BUILD)/fuzz
	@echo "  FUZZ    $@"
	@clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Imilterd -o $@ $< $(FUZZ_SRC) -lcrypto

# The milter protocol: milter.c against the stub sessions defined in the
# target itself, so none of FUZZ_SRC but buf.c (and milter.c nowhere else).
$(BUILD)/fuzz/milter_fuzz: tests/fuzz/milter_fuzz.c milterd/milter.c milterd/buf.c milterd/*.h
	@mkdir -p $(BUILD)/fuzz
	@echo "  FUZZ    $@"
	@clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Imilterd -pthread -o $@ tests/fuzz/milter_fuzz.c milterd/milter.c milterd/buf.c

# ThreadSanitizer on the tests that run many workers, connections and database
# sessions at once (epoll hand-offs, reloads, stopping, races for one request
# and one address): any report fails them (halt_on_error), tests/tsan.supp
# says what is suppressed and why.
TSAN_TESTS ?= service-workers service-stop service-reload dkim lifecycle rcpt follow dnsrecovery group token-filter
tsan:
	$(MAKE) SANITIZER=thread BUILD=$(CURDIR)/build-tsan all unit
	@for t in $(TSAN_TESTS); do \
		TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$(CURDIR)/tests/tsan.supp" \
		BUILD=$(CURDIR)/build-tsan tests/run $$t | tail -n 1 | sed "s/^/tsan $$t: /"; \
	done

# Valgrind's memcheck on the daemon in the tests that drive most of its code:
# DKIM, RCPT screening, the lifecycle, group commits, failover, reloads, stopping
# and Postfix. tests/integration/valgrind.sh runs them (`make check` runs it over
# four of them): any memory error or definite leak fails; the logs stay in
# $(BUILD)/valgrind. Tests whose timing is part of what they check
# (service-limits, service-workers) are left out: under valgrind milterd runs
# some twenty times slower.
VALGRIND_TESTS ?= dkim rcpt lifecycle group challenge failover service-reload service-stop postfix token-filter
VALGRIND_LOGS = $(abspath $(BUILD))/valgrind
valgrind: deps
	$(MAKE) all unit
	@rm -rf $(VALGRIND_LOGS); mkdir -p $(VALGRIND_LOGS)
	VALGRIND_TESTS="$(VALGRIND_TESTS)" VALGRIND_LOGS=$(VALGRIND_LOGS) \
		BUILD=$(abspath $(BUILD)) tests/run valgrind

include tests/bench/bench.mk

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: run as root to install:$$missing" >&2; exit 1; fi; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all packages present"; fi

check: deps
	$(MAKE) all unit fuzz
	tests/run

demo: deps
	$(MAKE) all
	tests/demo.sh

SYSTEMDDIR ?= /lib/systemd/system
TMPFILESDIR ?= /usr/lib/tmpfiles.d
# Every unit in milterd/ (milterd.service, and any other .service or .timer added there).
SYSTEMD_UNITS := $(wildcard milterd/*.service milterd/*.timer)

# Existing files under SYSCONFDIR are never overwritten: they are the admin's.
# The whole Mastodon kit (every file of milterd/sql/mastodon/) goes to DATADIR.
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(DATADIR)/sql $(DESTDIR)$(DATADIR)/policies \
		$(DESTDIR)$(SYSCONFDIR)/policies
	install -m 0755 $(BUILD)/milterd $(BUILD)/milterctl $(DESTDIR)$(SBINDIR)/
	install -m 0644 milterd/sql/*.sql $(DESTDIR)$(DATADIR)/sql/
	for f in milterd/sql/mastodon/*; do \
		[ -f "$$f" ] || continue; \
		if [ -x "$$f" ]; then m=0755; else m=0644; fi; \
		install -m $$m "$$f" $(DESTDIR)$(DATADIR)/ || exit 1; \
	done
	install -d $(DESTDIR)$(SYSTEMDDIR)
	for u in $(SYSTEMD_UNITS); do \
		sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
			-e 's|@DATADIR@|$(DATADIR)|g' "$$u" >$(DESTDIR)$(SYSTEMDDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$${u##*/} || exit 1; \
	done
	install -d $(DESTDIR)$(TMPFILESDIR)
	install -m 0644 milterd/milterd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/milterd.conf
	install -d $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	for m in milterd/*.[58]; do \
		d=$(DESTDIR)$(MANDIR)/man$${m##*.}; \
		sed -e 's|/usr/local/share/milterd|$(DATADIR)|g' "$$m" >$$d/$${m##*/} && \
		chmod 0644 $$d/$${m##*/} || exit 1; \
	done
	install -m 0644 policies/*.conf $(DESTDIR)$(DATADIR)/policies/
	install -d $(DESTDIR)$(DATADIR)/templates
	install -m 0644 templates/* $(DESTDIR)$(DATADIR)/templates/
	install -m 0644 milterd/milterd.conf $(DESTDIR)$(DATADIR)/milterd.conf.example
	[ -e $(DESTDIR)$(SYSCONFDIR)/milterd.conf ] || \
		install -m 0644 milterd/milterd.conf $(DESTDIR)$(SYSCONFDIR)/milterd.conf
	for p in policies/*.conf; do \
		[ -e $(DESTDIR)$(SYSCONFDIR)/$$p ] || install -m 0644 $$p $(DESTDIR)$(SYSCONFDIR)/$$p; \
	done

# The package is built by dpkg-buildpackage in a copy of the tree (the files git
# tracks or would track: what a commit of the tree would hold), so neither the
# tree nor its parent gets build products; lintian must find no error or warning.
DEB_DIR     = $(BUILD)/deb
DEB_VERSION = $(shell dpkg-parsechangelog -l debian/changelog -SVersion)
DEB_ARCH    = $(shell dpkg --print-architecture)
deb:
	@command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null && command -v lintian >/dev/null || \
		{ echo "deb: dpkg-buildpackage, debhelper or lintian missing: make deps" >&2; exit 1; }
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git ls-files -z --cached --others --exclude-standard >$(DEB_DIR)/files && \
		tar --null --ignore-failed-read -T $(DEB_DIR)/files -cf - | tar -C $(DEB_DIR)/src -xf -; \
	else \
		tar --exclude=./.git --exclude=./build --exclude='./build-*' --exclude=./debian/build \
			--exclude=./debian/tmp --exclude=./debian/milterd -cf - . | tar -C $(DEB_DIR)/src -xf -; \
	fi
	cd $(DEB_DIR)/src && dpkg-buildpackage -b -us -uc -Jauto
	lintian --fail-on error,warning $(DEB_DIR)/milterd_$(DEB_VERSION)_$(DEB_ARCH).changes
	@echo "deb: $(DEB_DIR)/milterd_$(DEB_VERSION)_$(DEB_ARCH).deb"

clean:
	rm -rf $(BUILD)
