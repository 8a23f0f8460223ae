# config.sh — milterd -n / -nn: "config OK", every error as FILE:LINE: key: what is
# wrong (golden file), the normalized dump (golden file).
. "$TOP/tests/lib/common.sh"
M="$BUILD/milterd"

# Golden files hold @TOP@ and @DIR@ where this run's paths go.
sed "s|@TOP@|$TOP|g" "$TOP/tests/config/good.conf" >"$WORK/good.conf"
cp "$TOP/tests/config/broken.conf" "$WORK/broken.conf"
ref() { sed -e "s|@TOP@|$TOP|g" -e "s|@DIR@|$WORK|g" "$TOP/tests/config/$1"; }

out=$("$M" -n -c "$WORK/good.conf" 2>&1); rc=$?
expect_eq "good config: -n says config OK" "config OK/0" "$out/$rc"

"$M" -nn -c "$WORK/good.conf" >"$WORK/dump" 2>&1
if diff -u <(ref good.ref) "$WORK/dump" >"$WORK/diff"; then
	ok "-nn prints the normalized config (good.ref)"
else
	not_ok "-nn prints the normalized config: $(tr '\n' ' ' <"$WORK/diff")"
fi

"$M" -n -c "$WORK/broken.conf" >"$WORK/errors" 2>&1; rc=$?
expect_eq "broken config: -n exits 1" 1 "$rc"
if diff -u <(ref broken.ref) "$WORK/errors" >"$WORK/diff"; then
	ok "broken config: every error named with file, line and key (broken.ref)"
else
	not_ok "broken config errors differ: $(tr '\n' ' ' <"$WORK/diff")"
fi

out=$("$M" -n -c "$WORK/missing.conf" 2>&1); rc=$?
expect_eq "missing file: named, exit 1" "$WORK/missing.conf: cannot open: No such file or directory/1" "$out/$rc"

printf 'socket = unix:/run/x.sock\npolicy = %s/policies/gouv-fr.conf\nsocket = inet:1@127.0.0.1\n' \
	"$TOP" >"$WORK/twice.conf"
echo "templates = $TOP/templates" >>"$WORK/twice.conf"
out=$("$M" -n -c "$WORK/twice.conf" 2>&1)
expect_eq "duplicate key names both lines" "$WORK/twice.conf:3: socket: set twice (first at line 1)" "$out"

printf 'policy = %s/policies/gouv-fr.conf\nauthserv_id = %0300d\ntemplates = %s/templates\n' \
	"$TOP" 0 "$TOP" >"$WORK/long.conf"
out=$("$M" -n -c "$WORK/long.conf" 2>&1)
expect_eq "over-long line refused, not truncated" "$WORK/long.conf:2: line longer than 198 characters" "$out"

# A conninfo option with a fixed set of values, misspelt: named at -n, not at each
# connection (every reply 451); a good one passes.
printf 'policy = %s/policies/gouv-fr.conf\ntemplates = %s/templates\ndatabase = dbname=m sslmode=requir\n' \
	"$TOP" "$TOP" >"$WORK/ssl.conf"
out=$("$M" -n -c "$WORK/ssl.conf" 2>&1); rc=$?
expect_eq "a misspelt sslmode: named, with the values libpq takes, exit 1" \
	"$WORK/ssl.conf:3: database: sslmode=requir: expected one of disable allow prefer require verify-ca verify-full/1" \
	"$out/$rc"
sed -i 's/sslmode=requir$/sslmode=verify-full target_session_attrs=read-write/' "$WORK/ssl.conf"
expect_eq "sslmode and target_session_attrs spelt right: config OK" "config OK" "$("$M" -n -c "$WORK/ssl.conf" 2>&1)"

out=$("$M" -x 2>&1); rc=$?
expect_eq "unknown option: usage, exit 2" 2 "$rc"

# The policy is checked with the configuration: every error with file, line and key.
cp "$TOP/tests/config/policy-broken.conf" "$WORK/policy-broken.conf"
sed "s|^policy = .*|policy = $WORK/policy-broken.conf|" "$WORK/good.conf" >"$WORK/pol.conf"
"$M" -n -c "$WORK/pol.conf" >"$WORK/errors" 2>&1; rc=$?
expect_eq "broken policy: -n exits 1" 1 "$rc"
if diff -u <(ref policy-broken.ref) "$WORK/errors" >"$WORK/diff"; then
	ok "broken policy: every error named with file, line and key (policy-broken.ref)"
else
	not_ok "broken policy errors differ: $(tr '\n' ' ' <"$WORK/diff")"
fi

# A broken policy and broken reply texts: -n names the errors of both at once
# (it stopped at the policy's, the texts' seen only once those were mended).
cp -r "$TOP/templates" "$WORK/tpl"
echo "bogus_reason = x" >>"$WORK/tpl/replies.en"
sed "s|^templates = .*|templates = $WORK/tpl|" "$WORK/pol.conf" >"$WORK/both.conf"
"$M" -n -c "$WORK/both.conf" >"$WORK/both.err" 2>&1; rc=$?
expect_eq "broken policy and reply texts: -n names both, exit 1" \
	"1|$(ref policy-broken.ref | wc -l)|$WORK/tpl/replies.en:$(wc -l <"$WORK/tpl/replies.en"): bogus_reason: not a reason code" \
	"$rc|$(grep -c "^$WORK/policy-broken.conf:" "$WORK/both.err")|$(grep "^$WORK/tpl/" "$WORK/both.err")"

# A misspelt section alone still fails the check: its keys would otherwise
# silently not apply (a stricter rule for one ministry that does not exist).
printf '[default]\nallow = gouv.fr\n\n[Domain interieur.gouv.fr]\nrequire = dkim-and-spf\n' \
	>"$WORK/policy-section.conf"
sed "s|^policy = .*|policy = $WORK/policy-section.conf|" "$WORK/good.conf" >"$WORK/sec.conf"
out=$("$M" -n -c "$WORK/sec.conf" 2>&1); rc=$?
expect_eq "a misspelt policy section alone: named, exit 1" \
	"$WORK/policy-section.conf:5: [Domain interieur.gouv.fr]: unknown section (expected [default] or [domain SUFFIX])/1" \
	"$out/$rc"

# The word refused is quoted whole, as written (not a copy gone out of scope).
long=$(printf 'a%.0s' $(seq 1 64)).fr
printf '[default]\nallow = gouv.fr %s\n' "$long" >"$WORK/policy-suffix.conf"
sed "s|^policy = .*|policy = $WORK/policy-suffix.conf|" "$WORK/good.conf" >"$WORK/suffix.conf"
out=$("$M" -n -c "$WORK/suffix.conf" 2>&1)
expect_eq "a bad allow suffix quoted whole" \
	"$WORK/policy-suffix.conf:2: allow: '$long' is not a domain suffix like gouv.fr" "$out"
net=$(printf '1%.0s' $(seq 1 70))
for v in "10.0.0.0/8 $net" "10.0.0.0/8 10.0.0.0/33" "10.0.0.0/8;192.168.0.0/16"; do
	grep -v '^internal_networks' "$WORK/good.conf" >"$WORK/nets.conf"
	echo "internal_networks = $v" >>"$WORK/nets.conf"
	n=$(wc -l <"$WORK/nets.conf")
	bad=${v#10.0.0.0/8 }
	out=$("$M" -n -c "$WORK/nets.conf" 2>&1)
	expect_eq "internal_networks: '${bad:0:24}' quoted whole" \
		"$WORK/nets.conf:$n: internal_networks: '$bad' is not an address or CIDR block like 10.0.0.0/8" "$out"
done

out=$("$M" -n -c "$WORK" 2>&1 | head -n 1)
expect_eq "a directory for the config: said so, no line 0" "$WORK: cannot read: Is a directory" "$out"

# The challenge's From: a display name in UTF-8, an address that is one.
for kv in "service_name = Minist$(printf '\350')re|service_name: not UTF-8 text (the file's encoding must be UTF-8)" \
	"service_name = Certify <x@example.org>|service_name: a display name: no control character, '<', '>' or '\"'" \
	"challenge_from = not an address|challenge_from: expected empty or local@domain, e.g. certify@example.org" \
	"challenge_from = Certify <verify@example.org>|challenge_from: expected empty or local@domain, e.g. certify@example.org"; do
	grep -v "^${kv%% =*} " "$WORK/good.conf" >"$WORK/from.conf"
	echo "${kv%%|*}" >>"$WORK/from.conf"
	n=$(wc -l <"$WORK/from.conf")
	out=$("$M" -n -c "$WORK/from.conf" 2>&1); rc=$?
	# (a Latin-1 byte in a result line would make the results file binary to grep)
	expect_eq "$(printf '%s' "${kv%%|*}" | LC_ALL=C tr -c '[:print:]' '?'): refused, named" \
		"$WORK/from.conf:$n: ${kv#*|}/1" "$out/$rc"
done
grep -v '^service_name ' "$WORK/good.conf" >"$WORK/from.conf"
echo "service_name = Ministère de l'Intérieur" >>"$WORK/from.conf"
out=$("$M" -n -c "$WORK/from.conf" 2>&1)
expect_eq "service_name in UTF-8 with an apostrophe: accepted" "config OK" "$out"

# Files are read again at each reload, from / for a daemon: relative paths are refused,
# and so is a directory where a file is expected.
mkdir -p "$WORK/rel/policies"
cp "$TOP/policies/gouv-fr.conf" "$WORK/rel/policies/"
grep -v '^policy ' "$WORK/good.conf" >"$WORK/rel/rel.conf"
echo "policy = policies/gouv-fr.conf" >>"$WORK/rel/rel.conf"
out=$(cd "$WORK/rel" && "$M" -n -c rel.conf 2>&1); rc=$?
expect_eq "a relative policy path: refused, named" \
	"$WORK/rel/rel.conf:$(wc -l <"$WORK/rel/rel.conf"): policy: must be an absolute path (it is read again at each reload, from /)/1" "$out/$rc"
grep -v '^dns_trust_anchor ' "$WORK/good.conf" >"$WORK/ta.conf"
echo "dns_trust_anchor = $WORK/rel" >>"$WORK/ta.conf"
out=$("$M" -n -c "$WORK/ta.conf" 2>&1); rc=$?
expect_eq "a directory as dns_trust_anchor: refused, named" \
	"$WORK/ta.conf:$(wc -l <"$WORK/ta.conf"): dns_trust_anchor: '$WORK/rel' is not a file/1" "$out/$rc"
cp "$WORK/good.conf" "$WORK/rel/good.conf"
out=$(cd "$WORK/rel" && "$M" -n -c good.conf 2>&1)
expect_eq "a relative -c path: read (made absolute for reloads)" "config OK" "$out"

# Users and groups are checked with the rest, not first at start.
for kv in "user = nosuchuser|user: unknown user 'nosuchuser'" \
	"socket_owner = nosuchuser|socket_owner: unknown user 'nosuchuser'" \
	"socket_owner = root:nosuchgroup|socket_owner: unknown group 'nosuchgroup'"; do
	grep -v "^${kv%% =*} " "$WORK/good.conf" >"$WORK/user.conf"
	echo "${kv%%|*}" >>"$WORK/user.conf"
	out=$("$M" -n -c "$WORK/user.conf" 2>&1); rc=$?
	expect_eq "${kv%%|*}: refused at -n, named" "$WORK/user.conf:$(wc -l <"$WORK/user.conf"): ${kv#*|}/1" "$out/$rc"
done
grep -v "^socket_owner " "$WORK/good.conf" >"$WORK/user.conf"
echo "socket_owner = root:root" >>"$WORK/user.conf"
expect_eq "socket_owner = root:root: accepted" "config OK" "$("$M" -n -c "$WORK/user.conf" 2>&1)"

# dnssec = require with no trust anchor would refuse every reply: an error, where it is set.
printf '[default]\nallow = gouv.fr\n\n[domain interieur.gouv.fr]\ndnssec = require\n' >"$WORK/policy-dnssec.conf"
grep -v '^dns_trust_anchor \|^policy ' "$WORK/good.conf" >"$WORK/dnssec.conf"
echo "policy = $WORK/policy-dnssec.conf" >>"$WORK/dnssec.conf"
out=$("$M" -n -c "$WORK/dnssec.conf" 2>&1); rc=$?
expect_eq "dnssec = require without dns_trust_anchor: refused, named" \
	"$WORK/policy-dnssec.conf:5: dnssec: require needs dns_trust_anchor in $WORK/dnssec.conf (without it no key is DNSSEC-secure and every reply would be refused)/1" "$out/$rc"

# A long allow list over several lines: each adds to it (-nn shows the whole list).
{ echo '[default]'; echo 'allow = gouv.fr'
  for a in paris versailles creteil lyon grenoble; do echo "allow = ac-$a.fr"; done
  echo 'deny = example.gouv.fr'; echo 'deny = test.gouv.fr'; } >"$WORK/policy-lists.conf"
sed "s|^policy = .*|policy = $WORK/policy-lists.conf|" "$WORK/good.conf" >"$WORK/lists.conf"
expect_eq "allow and deny on several lines: the lists grow" \
	"allow = gouv.fr ac-paris.fr ac-versailles.fr ac-creteil.fr ac-lyon.fr ac-grenoble.fr|deny = example.gouv.fr test.gouv.fr" \
	"$("$M" -nn -c "$WORK/lists.conf" 2>&1 | grep -E '^(allow|deny) = ' | paste -sd '|')"

# Reply texts: a reason twice, an empty text, each file's own gaps.
mkdir -p "$WORK/tpl"
cp "$TOP"/templates/* "$WORK/tpl/"
grep -v '^templates ' "$WORK/good.conf" >"$WORK/tpl.conf"
echo "templates = $WORK/tpl" >>"$WORK/tpl.conf"
first=$(grep -n '^expired' "$WORK/tpl/replies.en" | cut -d: -f1)
echo "expired = again" >>"$WORK/tpl/replies.en"
sed -i 's/^malformed *=.*/malformed =/' "$WORK/tpl/replies.en"
sed -i '/^unknown_token/d' "$WORK/tpl/replies.fr"
echo 'not_a_reason = x' >>"$WORK/tpl/replies.fr"
out=$("$M" -n -c "$WORK/tpl.conf" 2>&1); rc=$?
expect_eq "replies: not a reason (fr), a reason twice and an empty text (en), each named" "1|yes|yes|yes" \
	"$rc|$(grep -q "replies.fr:$(wc -l <"$WORK/tpl/replies.fr"): not_a_reason: not a reason code" <<<"$out" && echo yes)|$(grep -q "replies.en:$(wc -l <"$WORK/tpl/replies.en"): expired: set twice (first at line $first)" <<<"$out" && echo yes)|$(grep -q "replies.en:[0-9]*: malformed: must not be empty" <<<"$out" && echo yes)"

# follow_exec: one executable file, checked with the rest.
for v in "/bin/echo hello" "$WORK"; do
	grep -v '^follow_exec ' "$WORK/good.conf" >"$WORK/exec.conf"
	echo "follow_exec = $v" >>"$WORK/exec.conf"
	out=$("$M" -n -c "$WORK/exec.conf" 2>&1); rc=$?
	expect_eq "follow_exec = ${v##*/}: refused at -n, named" \
		"$WORK/exec.conf:$(wc -l <"$WORK/exec.conf"): follow_exec: '$v' is not an executable file (one program, run without a shell, with no arguments of its own)/1" "$out/$rc"
done

# A notice as long as the period: every renewed certification challenged again at once.
printf '[default]\nallow = gouv.fr\nrecertify_after = 14d\n' >"$WORK/policy-notice.conf"
sed "s|^policy = .*|policy = $WORK/policy-notice.conf|" "$WORK/good.conf" >"$WORK/notice.conf"
out=$("$M" -n -c "$WORK/notice.conf" 2>&1); rc=$?
expect_eq "recertify_after shorter than the default notice: refused, named" \
	"$WORK/policy-notice.conf:3: recertify_after: the notice (30d) must be shorter than recertify_after (2w): each certification would be challenged again as soon as it is renewed/1" "$out/$rc"
printf 'recertify_notice = 7d\n' >>"$WORK/policy-notice.conf"
expect_eq "... with a shorter notice: accepted" "config OK" "$("$M" -n -c "$WORK/notice.conf" 2>&1)"
