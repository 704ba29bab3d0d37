# An S/4HANA-like OData server for the end-to-end tests and benchmarks: the
# SAP test peer of tests/peers/sap (SAP's CAP runtime on Node.js >= 20, with
# API_BUSINESS_PARTNER and API_SALES_ORDER_SRV over OData V2 and V4, Basic
# auth, CSRF tokens bound to a session cookie; see its README.md) on
# 127.0.0.1, on a port the kernel picks (it listens on port 0 and logs the
# port it got, so there is no race for a port). Source it after lib.sh, then
# sap_start; sap_stop as needed. The server is stopped when the test script
# exits (chained in front of lib.sh's EXIT trap), and, where setpriv exists,
# killed when the script's shell dies by SIGKILL. Its data lives in memory:
# each start begins with the same seed data.
#
# sap_start installs the peer's node_modules first when they are missing or
# package-lock.json changed (tests/peers/sap/install.sh: npm ci, no native
# build, ~5 s). Without node >= 20 or npm it fails and says what is missing.
#
# What it sets (after sap_start; exported):
#   sap_port, sap_url       the port, and http://127.0.0.1:PORT
#   sap_user, sap_password  alice / alice-secret (Basic auth, every request)
#   sap_v2                  $sap_url/sap/opu/odata/sap  (+ /API_..._SRV/...)
#   sap_v4                  $sap_url/odata/v4           (+ /API_..._SRV/...)
#   sap_pid                 the node process (empty when stopped)
#   sap_log                 its output, $T/sap/sap.log
# Knobs, read at sap_start from the environment or the shell:
#   SAP_PEER_MAX_PAGE_SIZE  pages cut at N rows, with __next / @odata.nextLink
#   SAP_PEER_CSRF_TTL_S     lifetime of a CSRF token and its session (1800)
#   SAP_PEER_ORDERS         N sales orders generated at start (default: 200)
#   SAP_PEER_SID, SAP_PEER_CLIENT   session cookie SAP_SESSIONID_<SID>_<CLIENT>
#   SAP_START_TIMEOUT       seconds to wait for /healthz (60)
# shellcheck disable=SC2034 # the sap_* variables are for the sourcing script
: "${T:?source lib.sh before sap.sh}"

sap_pid=""
sap_port=""
sap_url=""
sap_v2=""
sap_v4=""
sap_user=alice
sap_password=alice-secret
_sap_src=$TOP/tests/peers/sap
_sap_dir=$T/sap
sap_log=$_sap_dir/sap.log
_sap_from=0

# _sap_new_log: the log lines of the current start.
_sap_new_log() {
	tail -n "+$((_sap_from + 1))" "$sap_log" 2>/dev/null
}

# _sap_gone: the server process has exited (a zombie counts as gone).
_sap_gone() {
	_st=$(sed 's/.*) \(.\).*/\1/' "/proc/$sap_pid/stat" 2>/dev/null) || return 0
	[ -z "$_st" ] || [ "$_st" = Z ]
}

# _sap_up_or_dead: the server answers /healthz (sets $sap_port), or it is
# gone; anything else means not yet.
_sap_up_or_dead() {
	_sap_gone && return 0
	# Logged by server.js once it listens, with the port the kernel chose.
	sap_port=$(_sap_new_log | sed -n 's/^\[sap-peer\] listening on http:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' | tail -n 1)
	[ -n "$sap_port" ] || return 1
	[ "$(curl -s --max-time 2 "http://127.0.0.1:$sap_port/healthz")" = ok ]
}

# _sap_kill: SIGTERM (CAP shuts down cleanly), SIGKILL after 10 s; reaped.
_sap_kill() {
	[ -n "$sap_pid" ] || return 0
	kill -TERM "$sap_pid" 2>/dev/null
	if ! wait_until 10 _sap_gone; then
		echo "sap_stop: the SAP peer did not stop in time, killing it" >&2
		kill -KILL "$sap_pid" 2>/dev/null
	fi
	wait "$sap_pid" 2>/dev/null
	sap_pid=""
}

# sap_start: installs the peer's node_modules if needed, starts the peer
# with the knobs above and returns once /healthz answers, with the sap_*
# variables set. Returns 1 with the log printed if it never got ready (or
# with the reason if node/npm are missing). Call it from the test script's
# own shell (not in a subshell), so the server is its child.
sap_start() {
	[ -z "$sap_pid" ] || {
		echo "sap_start: the SAP peer is already running ($sap_pid)" >&2
		return 1
	}
	bash "$_sap_src/install.sh" || {
		echo "sap_start: the SAP peer cannot be installed (see above)" >&2
		return 1
	}
	mkdir -p "$_sap_dir" || return 1
	touch "$sap_log"
	_sap_from=$(wc -l <"$sap_log")
	sap_port=""
	(
		cd "$_sap_src" || exit 1
		# Only the knobs the harness knows; the rest is pinned: loopback
		# (the port is read from the log line for 127.0.0.1), sql.js,
		# one process (no cluster), generated seed data under $T.
		for _v in SAP_PEER_MAX_PAGE_SIZE SAP_PEER_CSRF_TTL_S SAP_PEER_ORDERS \
			SAP_PEER_SID SAP_PEER_CLIENT; do
			[ -n "${!_v:-}" ] && export "${_v?}"
		done
		unset SAP_PEER_SQLITE_DRIVER WORKERS CDS_WORKERS PORT
		export HOST=127.0.0.1 NODE_ENV=development TMPDIR=$_sap_dir
		set -- node node_modules/@sap/cds/bin/serve.js all --port 0
		if command -v setpriv >/dev/null 2>&1; then
			set -- setpriv --pdeathsig KILL "$@"
		fi
		exec "$@"
	) </dev/null >>"$sap_log" 2>&1 &
	sap_pid=$!
	if ! wait_until "${SAP_START_TIMEOUT:-60}" _sap_up_or_dead || _sap_gone; then
		echo "sap_start: the SAP peer never got ready; its log:" >&2
		_sap_new_log >&2
		_sap_kill
		sap_port=""
		return 1
	fi
	sap_url=http://127.0.0.1:$sap_port
	sap_v2=$sap_url/sap/opu/odata/sap
	sap_v4=$sap_url/odata/v4
	export sap_port sap_url sap_user sap_password sap_v2 sap_v4
}

# sap_stop: stops the peer and waits until it has exited (SIGKILL after
# 10 s); everything it held in memory is gone. No-op when none runs.
sap_stop() {
	_sap_kill
}

# Stopped when the script exits, before lib.sh removes $T.
at_exit sap_stop
