# A pipeline that a reload drops drains what it has queued first, also the
# events a worker had already taken ahead (held) for it, on its old
# definition; nothing is dead-lettered. One worker: a blocker pipeline
# holds it while five events of "slow" (concurrency 1) queue up, so the
# worker takes them as one batch when it is free.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/peer.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

pid=""
at_exit stop_daemon
http_peer_start bport || exit 1
http_peer_start sport || exit 1
mkdir -p "$T/pipelines"
cat >"$T/outpost.conf" <<CONF
[agent]
id = drain
data_dir = $T/data
pipelines_dir = $T/pipelines
workers = 1
shutdown_timeout = 2s
[store]
map_initial = 4MB
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
CONF
# gated PORT NAME [SETTINGS]: a pipeline whose one step waits at the peer's /gate.
gated() {
	printf '{"name":"%s","version":"1",%s"trigger":{"type":"http","config":{"method":"POST","path":"/%s","mode":"async"}},"steps":[{"type":"rest","config":{"method":"GET","url":"http://127.0.0.1:%s/gate","timeoutMs":60000}}]}\n' \
		"$2" "${3:-}" "$2" "$1" >"$T/pipelines/$2.json"
}
gated "$bport" block
gated "$sport" slow '"settings":{"concurrency":1},'
LOG=$T/outpostd.log
stats() { curl -s "http://127.0.0.1:$1/stats" | jq -r .gated; }
at_gate() { [ "$(stats "$1")" = "$2" ]; }

what="five events of slow queue behind a blocked worker"
checks=$((checks + 1))
start_daemon "$T/outpost.conf" "$LOG" || fail "$what: not ready: $(cat "$LOG")"
curl -s -o /dev/null -X POST "http://127.0.0.1:$port/block" -d '{}'
checks=$((checks + 1))
wait_until 10 at_gate "$bport" 1 || fail "$what: the blocker never reached its gate"
for i in 1 2 3 4 5; do
	checks=$((checks + 1))
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/slow" -d "{\"n\":$i}")
	[ "$code" = 202 ] || fail "$what: POST /slow $i answered $code"
done
curl -s -o /dev/null "http://127.0.0.1:$bport/open"
checks=$((checks + 1))
wait_until 10 at_gate "$sport" 1 || fail "$what: slow never reached its gate"

what="a reload drops slow: its five events drain on its old definition, none is dead-lettered"
rm "$T/pipelines/slow.json"
kill -HUP "$pid"
checks=$((checks + 1))
wait_until 10 grep -q "slow: no longer deployed" "$LOG" || fail "$what: $(cat "$LOG")"
checks=$((checks + 1))
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/slow" -d '{}')
[ "$code" = 404 ] || fail "$what: POST /slow answered $code after the reload"
curl -s -o /dev/null "http://127.0.0.1:$sport/open"
checks=$((checks + 1))
wait_until 20 grep -q "slow: drained; it leaves the agent" "$LOG" || fail "$what: it never drained"
checks=$((checks + 1))
[ "$(stats "$sport")" = 5 ] || fail "$what: $(stats "$sport") of the 5 events ran"
checks=$((checks + 1))
curl -s "http://127.0.0.1:$admin/api/dead" | jq -e 'type == "array" and length == 0' >/dev/null ||
	fail "$what: dead letters: $(curl -s "http://127.0.0.1:$admin/api/dead")"
stop_daemon
finish
