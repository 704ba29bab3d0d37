# Helpers for the end-to-end tests: each test script sources this file and
# drives $OUTPOSTCTL. A failed check prints what was expected and what came,
# and the script exits non-zero at the end.
set -u
: "${OUTPOSTCTL:?set OUTPOSTCTL to the outpostctl binary}"
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$E2E_DIR/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
checks=0

fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}

# check WHAT COMMAND...: one check that COMMAND succeeds; fails with WHAT
# (after the current $what, when set).
check() {
	checks=$((checks + 1))
	_check_what=$1
	shift
	"$@" || fail "${what:+$what: }$_check_what"
}

# run_ctl ARGS...: runs outpostctl; sets $rc, $out (stdout), $err (stderr).
run_ctl() {
	"$OUTPOSTCTL" "$@" >"$T/out" 2>"$T/err"
	rc=$?
	out=$(cat "$T/out")
	err=$(cat "$T/err")
}

# expect_rc N: the last run_ctl exited with N.
expect_rc() {
	checks=$((checks + 1))
	if [ "$rc" -ne "$1" ]; then
		fail "${what:-}: exit $rc, expected $1; stdout: $out; stderr: $err"
	fi
}

# expect_json FILTER EXPECTED: jq FILTER applied to stdout gives EXPECTED (compact JSON).
expect_json() {
	checks=$((checks + 1))
	got=$(printf '%s' "$out" | jq -c "$1" 2>&1)
	if [ "$got" != "$2" ]; then
		fail "${what:-}: $1 is $got, expected $2"
	fi
}

# expect_err_json FILTER EXPECTED: the same on stderr.
expect_err_json() {
	checks=$((checks + 1))
	# The error object is the last thing on stderr, after any log lines.
	got=$(printf '%s\n' "$err" | sed -n '/^{/,$p' | jq -c "$1" 2>&1)
	if [ "$got" != "$2" ]; then
		fail "${what:-}: stderr $1 is $got, expected $2 (stderr: $err)"
	fi
}

# expect_err_has TEXT: stderr contains TEXT (fixed string).
expect_err_has() {
	checks=$((checks + 1))
	case "$err" in
	*"$1"*) ;;
	*) fail "${what:-}: stderr lacks \"$1\"; stderr was: $err" ;;
	esac
}

# pipeline NAME JSON: writes $T/NAME.json.
pipeline() {
	printf '%s\n' "$2" >"$T/$1.json"
}

# start_daemon CONFIG LOG: starts $OUTPOSTD on CONFIG, its stderr appended to
# LOG, and waits (bounded) until it logs that it is ready. Sets $pid, and
# $port and $admin from the listeners it logs (the kernel picks free ports
# for port 0; empty when that listener is off). Returns 1 if it never got
# ready or died. The bound (START_TIMEOUT, 60 s) guards against a hang and
# is no speed limit: a start commits to the store, and a disk busy with
# another job's writes can hold one flush for seconds. On a timeout, what
# each of the daemon's threads waits in goes to LOG.
start_daemon() {
	: >>"$2" # there before the background child opens it, for the grep below
	"$OUTPOSTD" --config "$1" >/dev/null 2>>"$2" &
	pid=$!
	port=""
	admin=""
	_deadline=$(($(date +%s) + ${START_TIMEOUT:-60}))
	while :; do
		if grep -q ' ready (agent ' "$2"; then
			port=$(sed -n 's/.*HTTP triggers on [^ ]*:\([0-9]*\).*/\1/p' "$2" | tail -n 1)
			admin=$(sed -n 's/.*admin endpoint on [^ ]*:\([0-9]*\).*/\1/p' "$2" | tail -n 1)
			return 0
		fi
		kill -0 $pid 2>/dev/null || return 1
		[ "$(date +%s)" -ge "$_deadline" ] && break
		sleep 0.05 # poll interval, bounded by the deadline
	done
	for _t in "/proc/$pid/task/"*; do
		echo "not ready: thread $(cat "$_t/comm" 2>/dev/null) waits in" \
			"$(cat "$_t/wchan" 2>/dev/null) ($(cut -d' ' -f3 "$_t/stat" 2>/dev/null))"
	done >>"$2"
	return 1
}

# stop_daemon: sends SIGTERM to $pid (as start_daemon set it), waits for it
# and clears $pid; returns its exit status (0 when none runs).
stop_daemon() {
	[ -n "${pid:-}" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	_rc=$?
	pid=""
	return $_rc
}

finish() {
	echo "$checks checks, $failures failed"
	[ "$failures" -eq 0 ]
}

# wait_until SECONDS COMMAND...: runs COMMAND until it succeeds or SECONDS
# pass; returns its last status. A poll with a deadline, not a fixed sleep.
wait_until() {
	_deadline=$(($(date +%s) + $1))
	shift
	while :; do
		"$@" && return 0
		[ "$(date +%s)" -ge "$_deadline" ] && return 1
		sleep 0.05 # poll interval, bounded by the deadline
	done
}

# metric NAME: the value of the series NAME (with its labels, as printed) on
# the admin endpoint at port $admin; nothing when it does not answer.
metric() {
	curl -s -m 5 "http://127.0.0.1:$admin/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

# at_exit COMMAND: runs COMMAND when the script exits, before the commands
# registered earlier (last in, first out); lib.sh's removal of $T runs last.
at_exit() {
	eval "set -- \"\$1\" $(trap -p EXIT)" # COMMAND trap -- 'EARLIER' EXIT
	# shellcheck disable=SC2064 # expanded now, on purpose
	trap "$1; ${4:-}" EXIT
}

# agent_config [LINE...]: writes the agent config of the test's outpostctl
# runs, $T/outpost.conf: data in $T/data, accounts sealed with
# $T/accounts.key (made when the first account is set), then each LINE
# ("[files]", "dirs = $T/x").
agent_config() {
	{
		printf '[agent]\ndata_dir = %s/data\n[accounts]\nkey_file = %s/accounts.key\n' "$T" "$T"
		for _l in "$@"; do printf '%s\n' "$_l"; done
	} >"$T/outpost.conf"
}

# account NAME JSON: sets the account NAME to JSON in $T/outpost.conf's
# vault (outpostctl account set); a failure is a failed check.
account() {
	printf '%s' "$2" | "$OUTPOSTCTL" account set "$1" --config "$T/outpost.conf" >/dev/null ||
		fail "account set $1"
}

# step_pipeline NAME TYPE MEMBERS: writes $T/NAME.json, a pipeline NAME of
# one step of TYPE whose config is {MEMBERS} (JSON members).
step_pipeline() {
	pipeline "$1" "{\"name\":\"$1\",\"version\":\"1\",\"steps\":[{\"type\":\"$2\",\"config\":{$3}}]}"
}

# run NAME [INPUT]: runs $T/NAME.json with outpostctl run on INPUT (JSON
# text, default {}) and the agent config $T/outpost.conf, compact; sets
# $rc, $out, $err as run_ctl. stderr is also appended to $T/errors, for
# checks that no secret was printed.
run() {
	printf '%s' "${2:-{\}}" >"$T/in.json"
	run_ctl run "$T/$1.json" --input "$T/in.json" --compact --config "$T/outpost.conf"
	printf '%s\n' "$err" >>"$T/errors"
}
