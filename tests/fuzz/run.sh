# run.sh — runs each libFuzzer target for a bounded time (FUZZ_SECONDS, default
# 30) on a copy of its seed corpus, under ASan/UBSan; ok when nothing was found.
. "$TOP/tests/lib/common.sh"
secs="${FUZZ_SECONDS:-30}"
for bin in "$BUILD"/fuzz/*_fuzz; do
	[ -x "$bin" ] || { not_ok "fuzz targets built (make fuzz)"; exit 0; }
	name=$(basename "$bin" _fuzz)
	mkdir -p "$WORK/$name"
	cp "$TOP/tests/fuzz/corpus/$name/"* "$WORK/$name/" 2>/dev/null
	if "$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 \
		-artifact_prefix="$WORK/" "$WORK/$name" >"$WORK/$name.log" 2>&1; then
		ok "fuzz $name: $(grep -o 'Done [0-9]* runs' "$WORK/$name.log") in ${secs}s, no crash"
	else
		not_ok "fuzz $name: $(grep -m1 -E 'ERROR|SUMMARY|abort' "$WORK/$name.log")"
		cp "$WORK"/crash-* "$TOP/build/" 2>/dev/null
	fi
done
