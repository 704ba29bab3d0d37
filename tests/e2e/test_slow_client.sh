# Slow-client protection of the HTTP triggers: a client whose request header
# never ends, or whose body stops half way, is disconnected after [http]
# header_timeout or body_timeout, although the idle timeout (client_timeout)
# is an hour away; the agent logs and counts it, and serves on. Waits poll a
# condition with a deadline; nothing sleeps for a fixed time.
. "$(dirname "$0")/lib.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

mkdir -p "$T/p"
cat >"$T/outpost.conf" <<CONF
[agent]
id = e2e
data_dir = $T/data
pipelines_dir = $T/p
[store]
map_initial = 1MB
[http]
listen = 127.0.0.1:0
client_timeout = 1h
header_timeout = 1s
body_timeout = 2s
[admin]
listen = 127.0.0.1:0
CONF
cat >"$T/p/echo.json" <<'JSON'
{"name":"echo","version":"1",
 "trigger":{"type":"http","config":{"method":"POST","path":"/echo","mode":"sync"}},
 "steps":[{"type":"set","config":{"template":{"got":"{{ message.body }}"}}}]}
JSON

start_daemon "$T/outpost.conf" "$T/d.log" || {
	fail "outpostd did not start: $(cat "$T/d.log")"
	finish
	exit 1
}
at_exit stop_daemon


# closed_after TEXT: opens a connection, sends TEXT (printf format) and
# waits up to 20 s for the agent to close it; fails unless it did, with
# nothing sent back.
closed_after() {
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	# shellcheck disable=SC2059 # TEXT is the format
	printf "$1" >&3
	timeout 20 cat <&3 >"$T/got"
	_rc=$?
	exec 3<&-
	checks=$((checks + 1))
	[ $_rc -eq 0 ] || fail "$what: the connection was still open after 20 s"
	checks=$((checks + 1))
	[ ! -s "$T/got" ] || fail "$what: the agent answered: $(cat "$T/got")"
}

what="a request header that never ends"
closed_after 'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: applica'
check "the closed connection was not counted" test "$(metric outpost_http_slow_clients_closed_total)" = 1
check "the agent did not log the closed connection" \
	grep -q 'closed 1 connection that sent no whole request in time' "$T/d.log"

what="a body that stops half way"
closed_after 'POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":'
check "the second closed connection was not counted" \
	test "$(metric outpost_http_slow_clients_closed_total)" = 2

what="a whole request is answered as before"
out=$(curl -s -m 10 -H 'content-type: application/json' --data-binary '{"n":1}' \
	"http://127.0.0.1:$port/echo")
check "the echo answered $out" test "$out" = '{"got":{"n":1}}'

finish
