# policy.sh — decision golden files, in the shape of Postfix's smtpd_check tests:
# each tests/policy/NAME.in script of situations is decided by policy_check and
# compared with the exact decisions, reason codes and SMTP replies in NAME.ref.
. "$TOP/tests/lib/common.sh"
for in in "$TOP"/tests/policy/*.in; do
	name=$(basename "$in" .in)
	if ! "$BUILD/tests/policy_check" "$in" >"$WORK/$name.out" 2>&1; then
		not_ok "policy $name: $(tail -n 3 "$WORK/$name.out" | tr '\n' ' ')"
	elif diff -u "${in%.in}.ref" "$WORK/$name.out" >"$WORK/$name.diff"; then
		ok "policy $name: $(grep -c '^[a-z0-9-]*: reason=' "$WORK/$name.out") decisions match $name.ref"
	else
		not_ok "policy $name differs from $name.ref: $(head -c 1500 "$WORK/$name.diff" | tr '\n' ' ')"
	fi
done
