# outpostd under systemd's watchdog, played by this script: NOTIFY_SOCKET is a
# datagram socket a small listener writes each message of to a file, and
# WATCHDOG_USEC is one second. Checked: READY=1, then WATCHDOG=1 pings every
# half interval, also through SIGHUP reloads (a signal does not push the
# next ping back); then the store's writer stalls (the debug build's fault
# injection: a write to the pipeline "stuck" hangs, as on a disk that
# stopped answering) and the pings stop, /healthz answers 503 saying why,
# and the agent logs it. Stopped (SIGTERM) while the writer is stuck, it
# exits cleanly: the request waiting for the stuck commit is answered 503
# SHUTTING_DOWN with Retry-After, not left to libmicrohttpd, which aborts
# the process when it stops with a suspended connection. Then it restarts
# clean without the fault.
. "$(dirname "$0")/lib.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

mkdir -p "$T/pipelines"
cat >"$T/outpost.conf" <<CONF
[agent]
id = wd
data_dir = $T/data
pipelines_dir = $T/pipelines
shutdown_timeout = 2s
[store]
map_initial = 1MB
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
CONF
for p in stuck fine; do
	printf '{"name":"%s","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/%s","mode":"async"}},"steps":[{"type":"set","config":{"template":{}}}]}' \
		"$p" "$p" >"$T/pipelines/$p.json"
done

: >"$T/notify.log"
# The listener: one line per datagram, with its arrival in monotonic ms
# ("1234 READY=1", "1734 WATCHDOG=1", ...).
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as out:
    out.write("0 LISTENING\n")
    while True:
        data = s.recv(4096).decode()
        ms = int(time.monotonic() * 1000)
        for line in data.split("\n"):
            if line:
                out.write("%d %s\n" % (ms, line))
' "$T/notify" "$T/notify.log" &
listener=$!
stop_listener() { kill "$listener" 2>/dev/null; }
at_exit stop_listener
wait_until 5 grep -q LISTENING "$T/notify.log" || fail "the notify listener did not start"

pid=""
at_exit stop_daemon
# exited: $pid has exited (a zombie until waited for, or gone).
exited() {
	case "$(ps -o stat= -p "$pid" 2>/dev/null)" in
	Z* | "") return 0 ;;
	esac
	return 1
}
pings() { grep -c ' WATCHDOG=1$' "$T/notify.log"; }
readies() { grep -c ' READY=1$' "$T/notify.log"; }
pings_at_least() { [ "$(pings)" -ge "$1" ]; }
health() { curl -s -o "$T/health.json" -w '%{http_code}' "http://127.0.0.1:$admin/healthz"; }

what="READY=1, then a watchdog ping every half interval"
export NOTIFY_SOCKET="$T/notify" WATCHDOG_USEC=1000000 OUTPOST_FAULTS=store-stall=stuck
checks=$((checks + 1))
start_daemon "$T/outpost.conf" "$T/d.log" || fail "$what: not ready: $(cat "$T/d.log")"
unset NOTIFY_SOCKET WATCHDOG_USEC
checks=$((checks + 1))
wait_until 5 grep -q ' READY=1$' "$T/notify.log" || fail "$what: no READY=1: $(cat "$T/notify.log")"
checks=$((checks + 1))
wait_until 5 pings_at_least 3 || fail "$what: $(pings) pings in 5 s, expected one every 0.5 s"
checks=$((checks + 1))
[ "$(health)" = 200 ] || fail "$what: /healthz: $(cat "$T/health.json")"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/fine" -d '{}')
checks=$((checks + 1))
[ "$code" = 202 ] || fail "$what: POST /fine answered $code"

what="reloads in a row do not hold the pings back"
# Reloads one after the other for three intervals: every gap between two
# pings in that time stays under the interval (the old loop waited a whole
# half interval again after each signal, and pinged not at all).
now_ms() { python3 -c 'import time; print(int(time.monotonic() * 1000))'; }
t0=$(now_ms)
end=$((t0 + 3000))
r=$(readies)
while [ "$(now_ms)" -lt $end ]; do
	kill -HUP "$pid"
	r=$((r + 1))
	wait_until 2 sh -c "[ \$(grep -c ' READY=1\$' '$T/notify.log') -ge $r ]" ||
		fail "$what: a reload did not end"
done
t1=$(now_ms)
checks=$((checks + 1))
gap=$(awk -v a="$t0" -v b="$t1" '$2 == "WATCHDOG=1" && $1 >= a && $1 <= b {
	if (last) { g = $1 - last; if (g > max) max = g } last = $1; n++ }
	END { print (n >= 4 ? max + 0 : "only " n + 0 " pings") }' "$T/notify.log")
case "$gap" in
[0-9]*) [ "$gap" -lt 1000 ] || fail "$what: $gap ms between two pings during $((r - 1)) reloads" ;;
*) fail "$what: $gap in $((t1 - t0)) ms of reloads" ;;
esac

what="a stuck store writer: no more pings, /healthz 503, logged"
curl -s -m 30 -D "$T/stuck.head" -o "$T/stuck.json" -w '%{http_code}' -X POST \
	"http://127.0.0.1:$port/stuck" -d '{}' >"$T/stuck.code" &
poster=$!
checks=$((checks + 1))
wait_until 10 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$admin/healthz)\" = 503 ]" ||
	fail "$what: /healthz still answers $(health)"
checks=$((checks + 1))
health >/dev/null
jq -e '.status == "stalled" and (.reason | startswith("the store'"'"'s writer has been stuck for"))' \
	"$T/health.json" >/dev/null || fail "$what: /healthz said $(cat "$T/health.json")"
checks=$((checks + 1))
wait_until 5 grep -q "not alive: the store's writer has been stuck" "$T/d.log" ||
	fail "$what: nothing logged: $(tail -n 5 "$T/d.log")"
# The pings have stopped: none in two whole intervals (a bounded wait for
# something that must not happen).
n=$(pings)
checks=$((checks + 1))
wait_until 2 pings_at_least $((n + 1)) && fail "$what: pings go on while the writer is stuck"

what="SIGTERM while the writer is stuck: a clean exit, the stuck request answered 503"
kill -TERM "$pid"
# Bounded: the trigger server waits 5 s (its stop_ms) for the answer first.
checks=$((checks + 1))
wait_until 30 exited || fail "$what: outpostd still running 30 s after SIGTERM"
exited || kill -KILL "$pid"
wait "$pid"
rc=$?
pid=""
checks=$((checks + 1))
[ "$rc" = 0 ] || fail "$what: outpostd exited $rc: $(tail -n 5 "$T/d.log")"
checks=$((checks + 1))
grep -q 'Fatal error in GNU libmicrohttpd' "$T/d.log" &&
	fail "$what: libmicrohttpd aborted: $(grep -m 1 'Fatal error' "$T/d.log")"
wait "$poster"
checks=$((checks + 1))
[ "$(cat "$T/stuck.code")" = 503 ] ||
	fail "$what: POST /stuck answered $(cat "$T/stuck.code"): $(cat "$T/stuck.json")"
checks=$((checks + 1))
jq -e '.error.code == "SHUTTING_DOWN"' "$T/stuck.json" >/dev/null ||
	fail "$what: the 503 said $(cat "$T/stuck.json")"
checks=$((checks + 1))
grep -qi '^retry-after: [0-9]' "$T/stuck.head" ||
	fail "$what: no Retry-After: $(cat "$T/stuck.head")"
checks=$((checks + 1))
grep -q 'deferred answer(s) still missing after .* answered 503' "$T/d.log" ||
	fail "$what: not logged: $(tail -n 5 "$T/d.log")"

what="restarted without the fault, it is clean and accepts POST /stuck"
unset OUTPOST_FAULTS
checks=$((checks + 1))
start_daemon "$T/outpost.conf" "$T/d2.log" || fail "$what: not ready: $(cat "$T/d2.log")"
checks=$((checks + 1))
[ "$(health)" = 200 ] || fail "$what: /healthz: $(cat "$T/health.json")"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/stuck" -d '{}')
checks=$((checks + 1))
[ "$code" = 202 ] || fail "$what: POST /stuck answered $code"
checks=$((checks + 1))
stop_daemon || fail "$what: outpostd exited $? on SIGTERM"
finish
