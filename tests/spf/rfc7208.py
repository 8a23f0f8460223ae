#!/usr/bin/python3
# rfc7208.py - run the RFC 7208 SPF conformance suite (Debian python3-spf) against an SPF checker COMMAND, serving each scenario's zonedata from a private unbound on 127.0.0.1.
#
# Usage:
#   rfc7208.py --checker CMD [--suite PATH] [--workdir DIR] [--only SUBSTRING]
#              [--expected-failures FILE] [--jobs N] [--timeout SEC] [-v]
#
# CMD (split like a shell word list) is run once per test as
#   CMD --resolver 127.0.0.1@PORT --ip IP --helo HELO --mailfrom MAILFROM
# (MAILFROM may be '' = null sender: the checker then evaluates the HELO identity) and must print one line
# "RESULT [explanation]" with RESULT one of pass fail softfail neutral none permerror temperror.
# Only the result is graded; explanations are counted informationally.
#
# Suite: /usr/share/doc/python3-spf/rfc7208-tests.yml.gz (apt-get install python3-spf python3-yaml unbound).
# --only keeps tests whose "SCENARIO / TEST" contains SUBSTRING (case-insensitive).
# --expected-failures FILE: lines "TESTNAME<TAB>reason" (TESTNAME = test id, or "SCENARIO / TEST"), '#' comments.
#   A listed test that fails prints "skip - ...: known failure: reason"; one that passes prints "ok ... (note)".
# --workdir DIR keeps per-scenario unbound.conf / zone files / unbound.log there (default: a temp dir,
#   removed at the end).
# Output: "ok - rfc7208 SCENARIO / TEST", "not ok - rfc7208 SCENARIO / TEST: expected X, got Y (spec S)",
#   "skip - rfc7208 SCENARIO / TEST: why", "# ..." notes, and finally
#   "rfc7208: P passed of N (R%), F failed, S skipped". Exit 0 iff no unexpected failure.
#
# How zonedata becomes DNS (one unbound per scenario, module-config "iterator", no network ever):
#   * All names live in an unbound auth-zone "." (for-downstream, fallback-enabled: no) loaded from a zone file,
#     so names not in zonedata get NXDOMAIN, existing names lacking the type get NODATA, empty non-terminals
#     exist, and in-zone CNAME chains are followed by unbound (unlike local-data CNAMEs, which it does not chase).
#     unbound's built-in local zones (RFC1918/TEST-NET/2001:db8 reverse zones, localhost, test., invalid. ...)
#     are switched off (unblock-lan-zones + nodefault) so that they cannot shadow zonedata.
#   * A name listed with no records at all is given a private-type placeholder (TYPE65534, empty rdata) so it
#     exists (NODATA for every real type).
#   * As in pyspf's own driver (testspf.py), SPF (type 99) records are also served as TXT when the name has no
#     TXT entry, and "TXT: NONE" suppresses that.
#   * "TIMEOUT" in a name's list: types listed before the marker are answered, every other type gets SERVFAIL
#     immediately (the name is an empty auth-zone with fallback-enabled: no; the answered types are local-data in
#     a typetransparent local-zone, consulted before auth-zones). zonedata names below a TIMEOUT name get their
#     own auth-zone; other names below it also get SERVFAIL (pyspf's driver would say NXDOMAIN).
#   * Names that cannot exist in DNS (label > 63 octets, name > 253) cannot be queried either; they are dropped
#     with a "# note". Anything else that cannot be expressed makes the scenario's tests "skip".
#   * Strings are encoded as ISO-8859-1 when possible (so the suite's "\xEF\xBB\xBF" is those three octets), else
#     UTF-8; every octet outside [A-Za-z0-9 !$%&()*+,-./:<=>?@[]^_`{|}~] is written as a \DDD zone-file escape.
#     TXT strings longer than 255 octets are split into several character-strings.

import argparse
import atexit
import concurrent.futures
import gzip
import ipaddress
import os
import random
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

try:
    import yaml
except ImportError:
    sys.exit("rfc7208.py: python3-yaml is required (apt-get install python3-yaml; run with /usr/bin/python3)")

DEFAULT_SUITE = "/usr/share/doc/python3-spf/rfc7208-tests.yml.gz"
UNBOUND = "/usr/sbin/unbound"
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
TTL = 300
PLACEHOLDER_TYPE = "TYPE65534"
# Built-in unbound local zones that unblock-lan-zones does not remove.
NODEFAULT_ZONES = [
    "localhost.", "127.in-addr.arpa.", "1." + "0." * 31 + "ip6.arpa.", "home.arpa.", "onion.", "test.",
    "invalid.", "resolver.arpa.", "service.arpa.",
]
SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !$%&()*+,-./:<=>?@[]^_`{|}~")
LABEL_SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Unexpressible(Exception):
    """The scenario's zonedata cannot be served faithfully by unbound."""


def to_bytes(s):
    if isinstance(s, bytes):
        return s
    s = str(s)
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


def esc_bytes(b, safe):
    return "".join(chr(c) if c in safe else "\\%03d" % c for c in b)


def name_labels(name):
    """Split a zonedata name into octet labels; None if it cannot exist in DNS."""
    b = to_bytes(name)
    if b in (b"", b"."):
        return []
    if b.endswith(b"."):
        b = b[:-1]
    labels = b.split(b".")
    if any(len(l) == 0 or len(l) > 63 for l in labels):
        return None
    if sum(len(l) + 1 for l in labels) + 1 > 255:
        return None
    return labels


def zone_name(labels):
    """Zone-file text (absolute) for a name."""
    if not labels:
        return "."
    return ".".join(esc_bytes(l, LABEL_SAFE) for l in labels) + "."


def target_name(v, what):
    if v is None:
        v = ""
    labels = name_labels(str(v))
    if labels is None:
        raise Unexpressible("%s target %r is not a valid DNS name" % (what, v))
    return zone_name(labels)


def txt_rdata(v):
    strings = v if isinstance(v, list) else [v]
    if not strings:
        return "\\# 0"          # RFC 3597: a TXT RR with no character-string at all
    parts = []
    for s in strings:
        b = to_bytes(s)
        chunks = [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
        parts.extend('"%s"' % esc_bytes(c, SAFE) for c in chunks)
    return " ".join(parts)


def rdata(t, v):
    if t == "A":
        try:
            return str(ipaddress.IPv4Address(str(v)))
        except ValueError:
            raise Unexpressible("bad A value %r" % (v,))
    if t == "AAAA":
        try:
            return str(ipaddress.IPv6Address(str(v)))
        except ValueError:
            raise Unexpressible("bad AAAA value %r" % (v,))
    if t == "MX":
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise Unexpressible("bad MX value %r" % (v,))
        try:
            pref = int(v[0])
        except (TypeError, ValueError):
            raise Unexpressible("bad MX preference %r" % (v,))
        return "%d %s" % (pref, target_name(v[1], "MX"))
    if t in ("PTR", "CNAME"):
        return target_name(v, t)
    if t in ("TXT", "SPF"):
        return txt_rdata(v)
    raise Unexpressible("record type %s not supported" % t)


def name_model(rrs):
    """pyspf testspf.py semantics -> (answered {type: [rdata]}, timeout_rest, per_type_timeouts)."""
    entries = []
    has_txt = False
    generated = []
    if rrs is None:
        rrs = []
    if not isinstance(rrs, list):
        raise Unexpressible("zonedata entry is not a list: %r" % (rrs,))
    for item in rrs:
        if isinstance(item, str):
            if item == "TIMEOUT":
                entries.append("TIMEOUT")
                continue
            raise Unexpressible("unknown zonedata marker %r" % item)
        if not isinstance(item, dict):
            raise Unexpressible("unknown zonedata item %r" % (item,))
        for t, v in item.items():
            t = str(t).upper()
            if t in ("TXT", "SPF") and isinstance(v, str):
                v = [v]
            if t == "TXT":
                has_txt = True
            elif t == "SPF":
                generated.append(("TXT", v))
            if v == ["NONE"] or v == "NONE":
                continue
            entries.append((t, v))
    if not has_txt:
        entries.extend(generated)   # after any TIMEOUT marker, exactly like testspf.py
    answered, per_type, timeout_rest = {}, set(), False
    for e in entries:
        if e == "TIMEOUT":
            timeout_rest = True
            break
        t, v = e
        if v == "TIMEOUT" or v == ["TIMEOUT"]:
            per_type.add(t)
            continue
        answered.setdefault(t, [])
        r = rdata(t, v)
        if r not in answered[t]:
            answered[t].append(r)
    return answered, timeout_rest, per_type


def build_zone(zonedata, wd, port):
    """Write unbound.conf and zone files for one scenario. Returns (conf_path, notes, soa_checks)."""
    notes = []
    names = {}                      # key (lower-case octet labels) -> [labels, rrs]
    for name, rrs in (zonedata or {}).items():
        labels = name_labels(str(name))
        if labels is None:
            notes.append("zonedata name %r cannot exist in DNS (label > 63 or name > 253 octets): dropped"
                         % (name,))
            continue
        key = tuple(l.lower() for l in labels)
        if key in names:
            names[key][1] = list(names[key][1] or []) + list(rrs or [])
        else:
            names[key] = [labels, rrs]
    models = {}
    for key, (labels, rrs) in names.items():
        answered, timeout_rest, per_type = name_model(rrs)
        if per_type and not timeout_rest:
            raise Unexpressible("%s: a per-type TIMEOUT next to NODATA types cannot be served"
                                % zone_name(labels))
        if timeout_rest and "CNAME" in answered:
            raise Unexpressible("%s: CNAME together with TIMEOUT" % zone_name(labels))
        if "CNAME" in answered and (len(answered) > 1 or len(answered["CNAME"]) > 1):
            raise Unexpressible("%s: CNAME together with other data" % zone_name(labels))
        models[key] = (labels, answered, timeout_rest)

    timeouts = {k for k, m in models.items() if m[2]}
    if () in timeouts:
        raise Unexpressible("TIMEOUT on the root name")
    cuts = {(): None}               # auth-zone apex key -> None (empty SERVFAIL zone) or list of names
    for k in timeouts:
        cuts[k] = None

    def closest_cut(k):
        # keys are label tuples, most specific label first: k[n:] are the proper ancestors
        for n in range(1, len(k) + 1):
            anc = k[n:]
            if anc in cuts:
                return anc
        return ()

    members = {(): []}
    # process shallow names first so sub-cuts exist before deeper names look for them
    for k in sorted((k for k in models if k not in timeouts), key=lambda k: (len(k), k[::-1])):
        if k == ():
            members[()].append(k)
            continue
        c = closest_cut(k)
        if c in timeouts:
            cuts[k] = []
            members[k] = [k]
            notes.append("(v) %s is below a TIMEOUT name: served from its own auth-zone"
                         % zone_name(models[k][0]))
        else:
            members[c].append(k)

    # zone files
    soa_checks = []
    auth = []
    for c in sorted(cuts, key=lambda k: (len(k), k[::-1])):
        if c in timeouts:
            auth.append((zone_name(models[c][0]), None))
            continue
        apex = zone_name(models[c][0]) if c in models else "."
        lines = ["%s %d IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 %d" % (apex, TTL, TTL)]
        for k in members.get(c, []):
            labels, answered, _ = models[k]
            owner = zone_name(labels)
            if not answered and k != c:
                lines.append("%s %d IN %s \\# 0" % (owner, TTL, PLACEHOLDER_TYPE))
            for t, rds in answered.items():
                for r in rds:
                    lines.append("%s %d IN %s %s" % (owner, TTL, t, r))
        fn = os.path.join(wd, "zone%d.txt" % len(auth))
        with open(fn, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")
        auth.append((apex, fn))
        soa_checks.append(apex)

    conf = [
        "server:",
        "  interface: 127.0.0.1",
        "  port: %d" % port,
        "  do-ip4: yes",
        "  do-ip6: no",
        "  do-udp: yes",
        "  do-tcp: yes",
        "  so-reuseport: no",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        '  directory: "%s"' % wd,
        '  pidfile: ""',
        "  use-syslog: no",
        '  logfile: "%s"' % os.path.join(wd, "unbound.log"),
        "  verbosity: 1",
        "  num-threads: 1",
        '  module-config: "iterator"',
        "  access-control: 127.0.0.0/8 allow",
        "  unblock-lan-zones: yes",
        "  insecure-lan-zones: yes",
        "  outgoing-range: 16",
        "  num-queries-per-thread: 64",
        # Records in the order the suite lists them (milterd's resolver keeps that
        # order too): ptr-limit's preferred result "reflects evaluating the 10
        # allowed PTR records in the order returned by the test data", and
        # mx-limit's and ptr-limit's outcomes under libspf2 depend on the order.
        "  rrset-roundrobin: no",
    ]
    for z in NODEFAULT_ZONES:
        conf.append('  local-zone: "%s" nodefault' % z)
    for k in sorted(timeouts, key=lambda k: (len(k), k[::-1])):
        labels, answered, _ = models[k]
        if not answered:
            continue
        owner = zone_name(labels)
        conf.append('  local-zone: "%s" typetransparent' % owner)
        for t, rds in answered.items():
            for r in rds:
                conf.append("  local-data: '%s %d IN %s %s'" % (owner, TTL, t, r))
    conf += ["remote-control:", "  control-enable: no"]
    for apex, fn in auth:
        conf += ["auth-zone:", '  name: "%s"' % apex]
        if fn:
            conf += ['  zonefile: "%s"' % fn, "  for-downstream: yes", "  for-upstream: no"]
        conf += ["  fallback-enabled: no"]
    path = os.path.join(wd, "unbound.conf")
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(conf) + "\n")
    return path, notes, soa_checks


# ---------------------------------------------------------------- unbound process


def port_is_free(port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port():
    for _ in range(200):
        p = random.randint(20000, 40000)
        if port_is_free(p):
            return p
    raise RuntimeError("no free port in 20000-40000")


def dns_query(port, qname, qtype=6, timeout=0.3):
    """Minimal UDP query; returns (rcode, ancount) or None."""
    qid = random.randint(0, 65535)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    # qname is zone_name() text: literal dots separate labels, other octets may be \DDD escapes
    labels = [] if qname in (".", "") else qname.rstrip(".").split(".")
    for l in labels:
        b = re.sub(rb"\\([0-9]{3})", lambda m: bytes([int(m.group(1))]), l.encode("ascii"))
        q += bytes([len(b)]) + b
    q += b"\0" + struct.pack("!HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))     # connected: "port unreachable" fails fast (ECONNREFUSED)
        s.send(q)
        data = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(data) < 12:
        return None
    rid, flags, _, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    if rid != qid:
        return None
    return flags & 0xF, an


RUNNING = []
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so atexit below still stops unbound


@atexit.register
def stop_all():
    for u in list(RUNNING):
        u.stop()


class Unbound:
    def __init__(self, conf, wd, port):
        RUNNING.append(self)
        self.port = port
        self.err = open(os.path.join(wd, "unbound.stderr"), "w")
        self.log = os.path.join(wd, "unbound.log")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err)

    def wait_ready(self, soa_checks, limit=5.0):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "unbound exited (status %d): %s" % (self.proc.returncode, self.errors() or "no message")
            r = dns_query(self.port, ".", 6, timeout=0.2)
            if r is not None:
                break
            time.sleep(0.01)
        else:
            return "unbound did not answer within %.0f s" % limit
        for apex in soa_checks:
            r = dns_query(self.port, apex, 6, timeout=1.0)
            if r is None or r[0] != 0 or r[1] < 1:
                return "zone %s not served (%s): %s" % (apex, r, self.errors() or "no message in log")
        e = self.errors()
        if e:
            return "unbound reported: " + e
        return None

    def errors(self):
        out = []
        for fn in (self.err.name, self.log):
            try:
                with open(fn, errors="replace") as f:
                    out += [l.strip() for l in f if "error" in l.lower() or "fatal" in l.lower()]
            except OSError:
                pass
        return "; ".join(out[:3])

    def stop(self):
        if self in RUNNING:
            RUNNING.remove(self)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


# ---------------------------------------------------------------- running tests


def run_checker(cmd, port, test, timeout):
    argv = cmd + ["--resolver", "127.0.0.1@%d" % port, "--ip", str(test.get("host", "")),
                  "--helo", str(test.get("helo", "")), "--mailfrom", str(test.get("mailfrom", "") or "")]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "(checker timed out after %ss)" % timeout
    except OSError as e:
        return None, "(cannot run checker: %s)" % e
    out = p.stdout.decode("utf-8", "replace")
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines:
        err = p.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, "(no output, exit %d%s)" % (p.returncode, ": " + err[-1][:200] if err else "")
    word, _, expl = lines[0].strip().partition(" ")
    return word.lower(), expl


def load_expected_failures(path):
    known = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, _, reason = line.partition("\t")
            known[name.strip()] = reason.strip() or "no reason given"
    return known


def main():
    ap = argparse.ArgumentParser(description="RFC 7208 SPF conformance suite against a checker command")
    ap.add_argument("--checker", required=True, help="checker command (shell-style words)")
    ap.add_argument("--suite", default=DEFAULT_SUITE)
    ap.add_argument("--workdir", help="keep configs, zones and logs here")
    ap.add_argument("--only", help="run only tests whose 'SCENARIO / TEST' contains this substring")
    ap.add_argument("--expected-failures", help="file of 'TESTNAME<TAB>reason' lines")
    ap.add_argument("--jobs", type=int, default=max(2, min(8, (os.cpu_count() or 2) * 2)),
                    help="checker runs in parallel per scenario")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per checker run")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print explanation mismatches")
    a = ap.parse_args()

    t0 = time.monotonic()
    cmd = shlex.split(a.checker)
    if not cmd:
        sys.exit("rfc7208.py: empty --checker")
    if not os.access(UNBOUND, os.X_OK):
        sys.exit("rfc7208.py: %s missing (apt-get install unbound)" % UNBOUND)
    try:
        opener = gzip.open if a.suite.endswith(".gz") else open
        with opener(a.suite, "rb") as f:
            scenarios = [d for d in yaml.safe_load_all(f) if d]
    except (OSError, yaml.YAMLError) as e:
        sys.exit("rfc7208.py: cannot load suite %s: %s (apt-get install python3-spf)" % (a.suite, e))
    known = load_expected_failures(a.expected_failures) if a.expected_failures else {}
    used_known = set()

    if a.workdir:
        os.makedirs(a.workdir, exist_ok=True)
        top, cleanup = os.path.abspath(a.workdir), False
    else:
        top, cleanup = tempfile.mkdtemp(prefix="rfc7208-"), True

    npass = nfail = nskip = 0
    nexp = nexp_ok = 0
    failed = []
    for si, sc in enumerate(scenarios):
        sname = str(sc.get("description", "scenario %d" % (si + 1))).strip()
        tests = [(tname, t) for tname, t in (sc.get("tests") or {}).items()
                 if not a.only or a.only.lower() in ("%s / %s" % (sname, tname)).lower()]
        if not tests:
            continue
        wd = os.path.join(top, "%02d" % (si + 1))
        if os.path.isdir(wd):
            shutil.rmtree(wd)
        os.makedirs(wd)

        def skip_all(why):
            nonlocal nskip
            for tname, _ in tests:
                print("skip - rfc7208 %s / %s: %s" % (sname, tname, why))
                nskip += 1

        ub = None
        why = None
        ts = time.monotonic()
        for attempt in range(5):
            port = free_port()
            try:
                conf, notes, soa_checks = build_zone(sc.get("zonedata"), wd, port)
            except Unexpressible as e:
                why = "zonedata not expressible in unbound: %s" % e
                break
            ub = Unbound(conf, wd, port)
            why = ub.wait_ready(soa_checks)
            if why is None:
                break
            ub.stop()
            ub = None
            if "bind" not in why.lower() and "address already in use" not in why.lower():
                break
        if ub is None:
            skip_all(why)
            continue
        for n in notes:
            if n.startswith("(v) "):
                if not a.verbose:
                    continue
                n = n[4:]
            print("# %s: %s" % (sname, n))
        tr = time.monotonic()
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
                futs = [ex.submit(run_checker, cmd, ub.port, t, a.timeout) for _, t in tests]
                outcomes = [f.result() for f in futs]
        finally:
            ub.stop()
        if a.verbose:
            print("# %s: unbound up in %.2f s, %d checker runs in %.2f s"
                  % (sname, tr - ts, len(tests), time.monotonic() - tr))

        for (tname, t), (got, expl) in zip(tests, outcomes):
            full = "%s / %s" % (sname, tname)
            exp = t.get("result")
            exp_list = [str(x).lower() for x in (exp if isinstance(exp, list) else [exp])]
            ok = got in exp_list
            kreason = known.get(tname, known.get(full))
            if kreason is not None:
                used_known.add(tname if tname in known else full)
            if ok and "explanation" in t:
                nexp += 1
                if expl == str(t["explanation"]):
                    nexp_ok += 1
                elif a.verbose:
                    print("# explanation %s: expected %r, got %r" % (full, t["explanation"], expl))
            shown_exp = "|".join(exp_list)
            shown_got = got if got is not None else expl
            if ok:
                npass += 1
                if kreason is not None:
                    print("ok - rfc7208 %s (listed as known failure, now passes: %s)" % (full, kreason))
                else:
                    print("ok - rfc7208 %s" % full)
            elif kreason is not None:
                nskip += 1
                print("skip - rfc7208 %s: known failure: %s (expected %s, got %s)"
                      % (full, kreason, shown_exp, shown_got))
            else:
                nfail += 1
                failed.append(full)
                print("not ok - rfc7208 %s: expected %s, got %s (spec %s)"
                      % (full, shown_exp, shown_got, t.get("spec", "?")))
        sys.stdout.flush()

    if not a.only:
        for k in sorted(set(known) - used_known):
            print("# warning: expected-failures entry %r matches no test" % k)
    total = npass + nfail + nskip
    if nexp:
        print("# explanations (informational): %d of %d matched for tests whose result passed" % (nexp_ok, nexp))
    print("# %.1f s; work directory %s" % (time.monotonic() - t0, "removed" if cleanup else top))
    print("rfc7208: %d passed of %d (%.1f%%), %d failed, %d skipped"
          % (npass, total, 100.0 * npass / total if total else 0.0, nfail, nskip))
    if cleanup:
        shutil.rmtree(top, ignore_errors=True)
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
