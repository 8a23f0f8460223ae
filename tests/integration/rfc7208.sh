# rfc7208.sh — the RFC 7208 (SPF) test suite shipped by python3-spf, run through
# milterd's SPF layer (build/tests/spf_check: libspf2 on milterd's resolver),
# each scenario's zone data served by a real unbound. Known libspf2 deviations are
# listed with reasons in tests/spf/expected-failures.txt (and the README); any
# other failure, or a listed case that starts passing, shows here.
. "$TOP/tests/lib/common.sh"
/usr/bin/python3 "$TOP/tests/spf/rfc7208.py" --checker "$BUILD/tests/spf_check" \
	--expected-failures "$TOP/tests/spf/expected-failures.txt" --workdir "$WORK/rfc7208" \
	>"$WORK/out" 2>&1
rc=$?
grep -E '^(ok|not ok|skip) - ' "$WORK/out"
summary=$(grep '^rfc7208:' "$WORK/out")
if [ "$rc" -eq 0 ] && [ -n "$summary" ]; then
	ok "RFC 7208 suite through milterd's SPF layer: $summary"
else
	not_ok "RFC 7208 suite: exit $rc, $summary $(grep -m3 -E 'Error|Traceback' "$WORK/out")"
fi
