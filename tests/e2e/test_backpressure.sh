# Backpressure of an async HTTP trigger: past [store] queue_max_events the
# trigger answers 503 QUEUE_FULL with Retry-After, the refused request is not
# queued, the ones accepted before all run, and the trigger accepts again once
# the queue has room. One worker and a pipeline whose rest call the peer
# (tests/peers/http_peer.py's /gate) holds keep the queue from draining until
# the test opens the gate. Waits poll a condition with a deadline.
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/peer.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

http_peer_start P || exit 1

mkdir -p "$T/p"
cat >"$T/outpost.conf" <<CONF
[agent]
id = e2e
data_dir = $T/data
pipelines_dir = $T/p
workers = 1
shutdown_timeout = 2s
[store]
map_initial = 1MB
queue_max_events = 2
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
CONF
gated_pipeline "$T/p/slow.json" "$P"

gated() { [ "$(curl -s -m 5 "http://127.0.0.1:$P/stats" | jq -r .gated)" = "$1" ]; }
# post N: POSTs event N; its status line and headers in $T/N.head, body in $T/N.out.
post() {
	curl -s -m 10 -D "$T/$1.head" -o "$T/$1.out" -w '%{http_code}' -X POST \
		-H 'content-type: application/json' --data-binary "{\"n\":$1}" \
		"http://127.0.0.1:$port/slow"
}

start_daemon "$T/outpost.conf" "$T/d.log" || {
	fail "outpostd did not start: $(cat "$T/d.log")"
	finish
	exit 1
}
at_exit stop_daemon

what="the first event runs and waits at the peer; two more fill the queue"
check "event 1 not accepted" test "$(post 1)" = 202
wait_until 10 gated 1
check "event 1 did not reach the peer" gated 1
check "event 2 not accepted" test "$(post 2)" = 202
check "event 3 not accepted" test "$(post 3)" = 202
check "the queue holds $(metric 'outpost_queue_depth{pipeline="slow"}'), not 2" \
	test "$(metric 'outpost_queue_depth{pipeline="slow"}')" = 2

what="past queue_max_events: 503 QUEUE_FULL with Retry-After, nothing queued"
code=$(post 4)
check "event 4 answered $code $(cat "$T/4.out")" test "$code" = 503
check "its error: $(cat "$T/4.out")" test "$(jq -r .error.code "$T/4.out")" = QUEUE_FULL
check "no Retry-After: $(cat "$T/4.head")" grep -qi '^retry-after: 1' "$T/4.head"
check "the queue holds $(metric 'outpost_queue_depth{pipeline="slow"}'), not 2" \
	test "$(metric 'outpost_queue_depth{pipeline="slow"}')" = 2
check "the 503 is not counted" test "$(metric 'outpost_http_requests_total{code="503"}')" = 1

what="once the peer answers, the three accepted events run and the trigger accepts again"
curl -s -m 5 -o /dev/null "http://127.0.0.1:$P/open"
ran() { [ "$(metric 'outpost_executions_total{pipeline="slow",status="success"}')" = "$1" ]; }
wait_until 20 ran 3
check "$(metric 'outpost_executions_total{pipeline="slow",status="success"}') executions, not 3" ran 3
check "the peer saw $(curl -s "http://127.0.0.1:$P/stats" | jq -r .gated) requests, not 3" gated 3
check "event 5 not accepted after the drain" test "$(post 5)" = 202
wait_until 20 ran 4
check "event 5 did not run" ran 4

stop_daemon
check "the agent did not stop cleanly: $(tail -3 "$T/d.log")" test $? -eq 0
finish
