# Sync HTTP triggers whose pipelines wait on a peer run off the HTTP threads
# ([http] sync_threads): with one HTTP thread, requests held by a slow API
# (tests/peers/http_peer.py's /gate) hold up neither a pipeline that only
# computes nor an async accept; past sync_threads requests are answered 503
# BUSY at once; a request whose trigger timeout passes while its peer hangs
# gets 504; a stop cancels what still runs, and each answers 503 naming the
# step it stopped in.
# First the same requests with sync_threads = 0, to show what the pool is
# for: there the one HTTP thread waits with the peer. Waits poll a
# condition with a deadline.
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/peer.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

http_peer_start P0 || exit 1
http_peer_start P1 || exit 1

# conf DIR SYNC_THREADS PEER_PORT: an agent with one HTTP thread, and its
# pipelines: /held (a rest call the peer holds), /fast (a set step), /accept
# (async), /hang (a rest call never answered, trigger timeout 1 s), /wait
# (the same with the default 30 s).
conf() {
	mkdir -p "$1/p"
	cat >"$1/outpost.conf" <<CONF
[agent]
id = e2e
data_dir = $1/data
pipelines_dir = $1/p
shutdown_timeout = 2s
[store]
map_initial = 1MB
[http]
listen = 127.0.0.1:0
threads = 1
sync_threads = $2
[admin]
listen = 127.0.0.1:0
CONF
	cat >"$1/p/held.json" <<JSON
{"name":"held","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/held"}},
 "steps":[{"type":"rest","config":{"url":"http://127.0.0.1:$3/gate","timeoutMs":30000}}]}
JSON
	cat >"$1/p/hang.json" <<JSON
{"name":"hang","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/hang","timeoutMs":1000}},
 "steps":[{"type":"rest","config":{"url":"http://127.0.0.1:$3/hang","timeoutMs":60000}}]}
JSON
	cat >"$1/p/wait.json" <<JSON
{"name":"wait","version":"1","trigger":{"type":"http","config":{"method":"GET","path":"/wait"}},
 "steps":[{"type":"rest","config":{"url":"http://127.0.0.1:$3/hang","timeoutMs":60000}}]}
JSON
	cat >"$1/p/fast.json" <<'JSON'
{"name":"fast","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/fast"}},
 "steps":[{"type":"set","config":{"template":{"fast":"{{ message.body.n }}"}}}]}
JSON
	cat >"$1/p/accept.json" <<'JSON'
{"name":"accept","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/accept","mode":"async"}},
 "steps":[{"type":"set","config":{"template":{}}}]}
JSON
}

# stat PEER_PORT KEY: a counter of the peer's /stats.
stat() {
	curl -s -m 5 "http://127.0.0.1:$1/stats" | jq -r ".$2"
}
gated_is() { [ "$(stat "$1" gated)" = "$2" ]; }

# held N: N requests to /held in the background, answers in $T/held-I.out.
held() {
	_i=1
	while [ $_i -le "$1" ]; do
		curl -s -m 60 -o "$T/held-$_i.out" -w '%{http_code}' "http://127.0.0.1:$port/held" \
			>"$T/held-$_i.code" &
		_i=$((_i + 1))
	done
}

fast() {
	curl -s -m "$1" -X POST "http://127.0.0.1:$port/fast" -H 'content-type: application/json' \
		--data-binary '{"n":7}'
}

what="sync_threads 0: a sync pipeline held by its peer holds the only HTTP thread"
conf "$T/a" 0 "$P0"
start_daemon "$T/a/outpost.conf" "$T/a/d.log" || fail "outpostd did not start: $(cat "$T/a/d.log")"
at_exit stop_daemon
held 1
wait_until 10 gated_is "$P0" 1
check "the request did not reach the peer: $(stat "$P0" gated)" gated_is "$P0" 1
out=$(fast 2)
check "a request answered while the only HTTP thread waited: $out" test -z "$out"
curl -s -m 5 -o /dev/null "http://127.0.0.1:$P0/open"
wait_until 10 test -s "$T/held-1.code"
check "the held request: $(cat "$T/held-1.code")" test "$(cat "$T/held-1.code")" = 200
stop_daemon
check "the agent did not stop cleanly: $(tail -3 "$T/a/d.log")" test $? -eq 0
rm -f "$T"/held-*

what="sync_threads 4: of six requests held by the peer, four reach it at once, two get 503"
conf "$T/b" 4 "$P1"
start_daemon "$T/b/outpost.conf" "$T/b/d.log" || fail "outpostd did not start: $(cat "$T/b/d.log")"
held 6
wait_until 10 gated_is "$P1" 4
check "four requests did not reach the peer: $(stat "$P1" gated)" gated_is "$P1" 4
# answered FILE: the background request whose code is in FILE has its answer.
answered() { [ -s "$1" ]; }
busy=0
for i in 1 2 3 4 5 6; do
	if wait_until 1 answered "$T/held-$i.code" && [ "$(cat "$T/held-$i.code")" = 503 ] &&
		[ "$(jq -r .error.code "$T/held-$i.out")" = BUSY ]; then
		busy=$((busy + 1))
	fi
done
check "requests past sync_threads answered 503 BUSY: $busy, not 2" test $busy -eq 2
check "outpost_http_sync_running: $(metric outpost_http_sync_running), not 4" \
	test "$(metric outpost_http_sync_running)" = 4

what="meanwhile a pipeline that computes and an async accept answer at once"
out=$(fast 10)
check "the set pipeline: $out" test "$(printf '%s' "$out" | jq -c .)" = '{"fast":7}'
code=$(curl -s -m 10 -o "$T/accept.out" -w '%{http_code}' -X POST \
	"http://127.0.0.1:$port/accept" -H 'content-type: application/json' --data-binary '{}')
check "the async accept: $code $(cat "$T/accept.out")" test "$code" = 202

what="when the peer answers, the four held requests are answered with its answer"
curl -s -m 5 -o /dev/null "http://127.0.0.1:$P1/open"
all_answered() {
	for _i in 1 2 3 4 5 6; do [ -s "$T/held-$_i.code" ] || return 1; done
}
wait_until 20 all_answered
ok=0
for i in 1 2 3 4 5 6; do
	[ "$(cat "$T/held-$i.code" 2>/dev/null)" = 200 ] &&
		[ "$(jq -r .status "$T/held-$i.out" 2>/dev/null)" = 200 ] && ok=$((ok + 1))
done
check "held requests answered 200 with the peer's answer: $ok, not 4" test $ok -eq 4
check "the peer saw $(stat "$P1" gated) held requests, not 4" gated_is "$P1" 4

what="a run past its trigger's timeout answers 504 while its peer still hangs"
code=$(curl -s -m 20 -o "$T/hang.out" -w '%{http_code}' "http://127.0.0.1:$port/hang")
check "the hanging run: $code $(cat "$T/hang.out")" test "$code" = 504
check "its error: $(cat "$T/hang.out")" \
	test "$(jq -r .error.code "$T/hang.out" 2>/dev/null)" = HTTP_TIMEOUT

what="a stop cancels a run still waiting for its peer, which answers 503 itself"
hanging_past() { [ "$(stat "$P1" hanging)" -gt "$1" ]; }
hangs=$(stat "$P1" hanging)
curl -s -m 60 -o "$T/stop.out" -w '%{http_code}' "http://127.0.0.1:$port/wait" >"$T/stop.code" &
wait_until 10 hanging_past "$hangs"
check "the request did not reach the peer" hanging_past "$hangs"
kill -TERM "$pid"
wait_until 15 sh -c "! kill -0 $pid 2>/dev/null"
check "the agent still runs 15 s after SIGTERM: $(tail -3 "$T/b/d.log")" \
	sh -c "! kill -0 $pid 2>/dev/null"
stop_daemon
check "the agent did not stop cleanly: $(tail -3 "$T/b/d.log")" test $? -eq 0
wait_until 10 test -s "$T/stop.code"
check "the run waiting at the stop: $(cat "$T/stop.code") $(cat "$T/stop.out")" \
	test "$(cat "$T/stop.code")" = 503
check "its answer names the step it stopped in: $(cat "$T/stop.out")" \
	test "$(jq -r .error.step "$T/stop.out" 2>/dev/null)" = "steps[0]"
finish
