# Peers for the connector tests, on 127.0.0.1 at free ports:
# tests/peers/http_peer.py (an API, an OAuth2 token endpoint and a
# misbehaving HTTP server in one, plain or TLS) and tests/peers/tcp_peer.py
# (a listener that never answers, or answers garbage). Source it after lib.sh; every peer started is
# killed when the script exits, and, where setpriv exists, also when the
# script's shell dies by SIGKILL.
: "${T:?source lib.sh before peer.sh}"

_peer_pids=""
_peer_n=0

# http_peer_start VAR [ARGS...]: starts a peer with ARGS (see the peer's
# --help: --cert/--key for TLS, --client-ca to demand client certificates,
# --oauth ID:SECRET, --basic USER:PASS, --token-ttl S) and sets $VAR to its
# port once it listens. Its log is $T/peer-N.log. Returns 1, with the log,
# if it does not listen within 10 s.
http_peer_start() {
	_var=$1
	shift
	_peer_n=$((_peer_n + 1))
	_pf=$T/peer-$_peer_n.port
	_pl=$T/peer-$_peer_n.log
	set -- /usr/bin/python3 "$TOP/tests/peers/http_peer.py" --port-file "$_pf" "$@"
	if command -v setpriv >/dev/null 2>&1; then
		set -- setpriv --pdeathsig KILL "$@"
	fi
	"$@" >"$_pl" 2>&1 &
	_peer_pids="$_peer_pids $!"
	if ! wait_until 10 test -s "$_pf"; then
		echo "http_peer_start: the peer did not listen; its log:" >&2
		cat "$_pl" >&2
		return 1
	fi
	eval "$_var=\$(cat \"\$_pf\")"
}

# gated_pipeline FILE PORT: writes the pipeline "slow" to FILE: an async HTTP
# trigger on POST /slow, one run at a time, whose rest step waits at the
# http peer on PORT's /gate until the test calls /open. It keeps a queue
# from draining for as long as a test needs.
gated_pipeline() {
	cat >"$1" <<JSON
{"name":"slow","version":"1","settings":{"concurrency":1},
 "trigger":{"type":"http","config":{"method":"POST","path":"/slow","mode":"async"}},
 "steps":[{"type":"rest","config":{"url":"http://127.0.0.1:$2/gate","timeoutMs":60000}}]}
JSON
}

# tcp_peer_start VAR MODE: starts tests/peers/tcp_peer.py in MODE (silent:
# accepts and never answers; garbage: sends bytes no protocol expects and
# closes) and sets $VAR to its port.
tcp_peer_start() {
	_var=$1
	_peer_n=$((_peer_n + 1))
	_pf=$T/peer-$_peer_n.port
	set -- /usr/bin/python3 "$TOP/tests/peers/tcp_peer.py" --port-file "$_pf" --mode "$2"
	if command -v setpriv >/dev/null 2>&1; then
		set -- setpriv --pdeathsig KILL "$@"
	fi
	"$@" >"$T/peer-$_peer_n.log" 2>&1 &
	_peer_pids="$_peer_pids $!"
	if ! wait_until 10 test -s "$_pf"; then
		echo "tcp_peer_start: the peer did not listen" >&2
		return 1
	fi
	eval "$_var=\$(cat \"\$_pf\")"
}

_peer_stop() {
	for _p in $_peer_pids; do
		kill "$_p" 2>/dev/null
		wait "$_p" 2>/dev/null
	done
	_peer_pids=""
}
at_exit _peer_stop
