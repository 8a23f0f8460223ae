# valgrind.sh — milterd under valgrind's memcheck, in the tests that drive the code
# attacker mail reaches (DKIM and its DNS keys, RCPT screening, the database down,
# the set of issued tokens and its thread) and in reloading and stopping: a memory error or a definite leak in any milterd
# they start fails, as does a failed check of theirs. `make valgrind` runs it
# over a longer list (VALGRIND_TESTS) and keeps the logs (VALGRIND_LOGS).
# Why these five in every run: they cost about 75 s under valgrind on 2 cores
# (token-filter 25 s of it), where the ten of `make valgrind` cost some 4 minutes.
. "$TOP/tests/lib/common.sh"

command -v valgrind >/dev/null || { not_ok "valgrind is not installed (make deps installs it)"; exit 0; }
# A sanitizer build (make SANITIZER=...) checks memory itself, and valgrind cannot run it.
if grep -q -- '-fsanitize' "$BUILD/flags" 2>/dev/null; then
	echo "skip - valgrind: milterd is built with -fsanitize, which does this build's memory checks"
	exit 0
fi
logs="${VALGRIND_LOGS:-$WORK/logs}"
mkdir -p "$logs"
for t in ${VALGRIND_TESTS:-dkim rcpt service-reload service-stop token-filter}; do
	script="$TOP/tests/integration/$t.sh"
	[ -f "$script" ] || { not_ok "valgrind $t: no test tests/integration/$t.sh"; continue; }
	dir="$WORK/$t"
	rm -rf "$dir" && mkdir -p "$dir" && chmod 755 "$dir"
	rm -f "$logs/$t".*.log
	# The test's own result lines stay in its directory: this script counts them.
	WORK="$dir" MILTERD_WRAPPER="valgrind -q --leak-check=full --show-leak-kinds=definite \
		--errors-for-leak-kinds=definite --log-file=$logs/$t.%p.log" \
		bash "$script" >"$dir/.out" 2>"$dir/.err"
	rc=$?
	passed=$(grep -c '^ok - ' "$dir/.out")
	failed=$(grep '^not ok - ' "$dir/.out")
	runs=$(ls "$logs/$t".*.log 2>/dev/null | wc -l)
	bad=$(find "$logs" -name "$t.*.log" -size +0 | head -n 1)
	if [ -n "$failed" ]; then
		not_ok "valgrind $t: checks failed under valgrind: $(echo "$failed" | head -n 3 | tr '\n' ' ')"
	elif [ "$rc" -ne 0 ]; then
		not_ok "valgrind $t: the test exited $rc: $(tail -n 3 "$dir/.err" | tr '\n' ' ')"
	elif [ "$runs" -eq 0 ]; then
		not_ok "valgrind $t: milterd never ran under valgrind"
	elif [ -n "$bad" ]; then
		not_ok "valgrind $t: memcheck reported in $(basename "$bad"): $(grep -m 8 '==' "$bad" | tr '\n' ' ')"
	else
		ok "valgrind $t: $passed checks passed with milterd under memcheck ($runs processes), no memory error, no definite leak"
	fi
done
