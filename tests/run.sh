#!/bin/sh
# Runs every test of one build variant: the unit test programs, then the
# end-to-end scripts in tests/e2e/ against that variant's outpostctl.
# Prints each program's result and a closing "N passed, N failed" line.
set -u
B=${1:?usage: tests/run.sh BUILD_DIR}
top=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "$B" && pwd)
pass=0
fail=0
failed=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Under ASan: leaks inside third-party libraries that are not ours to fix.
LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
# Check's per-test timeout (4 s by default) guards against hangs; it is not a
# speed limit. ASan and a busy shared machine slow the heavier tests past 4 s.
CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-5}
export CK_TIMEOUT_MULTIPLIER
for t in "$B"/tests/unit/test_*; do
	[ -x "$t" ] || continue
	case "$t" in *.o | *.d) continue ;; esac
	n=$(basename "$t")
	# Check prints "100%: Checks: 7, Failures: 0, Errors: 0"
	if (cd "$top" && "$t") >"$log" 2>&1; then st=ok; else st=FAIL; fi
	line=$(grep -E '^[0-9]+%: Checks:' "$log" | tail -n 1)
	checks=$(echo "$line" | sed -n 's/.*Checks: \([0-9]*\).*/\1/p')
	bad=$(echo "$line" | sed -n 's/.*Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2/p')
	nf=0
	for x in $bad; do nf=$((nf + x)); done
	checks=${checks:-0}
	if [ "$st" = FAIL ] && [ "$nf" -eq 0 ]; then nf=1; fi
	pass=$((pass + checks - nf))
	fail=$((fail + nf))
	printf '%-40s %s (%s checks)\n' "$n" "$st" "$checks"
	if [ "$st" = FAIL ]; then
		failed="$failed $n"
		sed 's/^/    /' "$log"
	fi
done
for t in "$top"/tests/e2e/test_*.sh; do
	[ -f "$t" ] || continue
	n=$(basename "$t" .sh)
	if OUTPOSTCTL="$B/outpostctl" OUTPOSTD="$B/outpostd" bash "$t" >"$log" 2>&1; then
		st=ok
		pass=$((pass + 1))
	else
		st=FAIL
		fail=$((fail + 1))
		failed="$failed $n"
	fi
	printf '%-40s %s\n' "$n" "$st"
	[ "$st" = FAIL ] && sed 's/^/    /' "$log"
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
