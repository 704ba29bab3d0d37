# A real MQTT broker for the end-to-end tests and benchmarks: mosquitto on
# 127.0.0.1 with a plain and a mutual-TLS listener, on free ports, with a
# throwaway PKI. Source it after lib.sh. The broker is killed when the test
# script exits (chained in front of lib.sh's EXIT trap), and, where setpriv
# exists, also when the script's shell dies by SIGKILL.
#
# Set BROKER_LOG_ALL=1 to have the broker log everything (log_type all).
: "${T:?source lib.sh before broker.sh}"

broker_pid=""
broker_port=""
broker_tls_port=""
_broker_dir=$T/broker
_broker_subs=""
_broker_nsub=0

# broker_pki DIR: writes a throwaway PKI to DIR (created if missing):
#   ca.pem (+ ca.key)         test CA; trusted by the broker's TLS listener
#   server.pem, server.key    CN=127.0.0.1, SAN IP:127.0.0.1 and DNS:localhost
#   client-a.pem, .key        CN=agent-a, signed by the CA (clientAuth)
#   client-b.pem, .key        CN=agent-b, signed by the CA (clientAuth)
#   control.pem, .key         CN=outpost-control (the control plane's
#                             identity under the ACL), signed by the CA
#                             (clientAuth)
#   rogue-ca.pem (+ .key)     a second CA nobody trusts
#   rogue.pem, rogue.key      CN=rogue, a client certificate signed by rogue-ca
# EC P-256 keys, mode 0600; valid for ten years. Quiet on success; on failure
# prints openssl's error and returns 1.
broker_pki() (
	umask 077
	mkdir -p "$1" && cd "$1" || exit 1
	cat >pki.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
	# ssl CMD...: runs openssl, its output kept for the error report.
	ssl() {
		openssl "$@" >pki.log 2>&1 && return 0
		echo "broker_pki: openssl $1 failed:" >&2
		cat pki.log >&2
		return 1
	}
	# ca NAME CN: a self-signed CA, NAME.pem and NAME.key.
	ca() {
		ssl req -x509 -config pki.cnf -extensions ca_ext \
			-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$1.key" -out "$1.pem" -subj "/CN=$2" -days 3650
	}
	# leaf NAME CN EXT CA SERIAL: a key and certificate signed by CA.
	leaf() {
		ssl req -new -config pki.cnf \
			-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$1.key" -out "$1.csr" -subj "/CN=$2" &&
			ssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" \
				-set_serial "$5" -days 3650 -extfile pki.cnf -extensions "$3" \
				-out "$1.pem" &&
			rm -f "$1.csr"
	}
	ca ca "Outpost e2e test CA" &&
		leaf server 127.0.0.1 server_ext ca 1001 &&
		leaf client-a agent-a client_ext ca 1002 &&
		leaf client-b agent-b client_ext ca 1003 &&
		leaf control outpost-control client_ext ca 1004 &&
		ca rogue-ca "Outpost e2e rogue CA" &&
		leaf rogue rogue client_ext rogue-ca 2001 || exit 1
	chmod 600 ./*.key && chmod 644 ./*.pem && rm -f pki.cnf pki.log
)

# _broker_pick_port: sets $_broker_p to a random port in 20000-59999 that
# nothing listens on right now (mosquitto may still lose a race for it).
_broker_pick_port() {
	while :; do
		_broker_p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		[ "$_broker_p" != "$broker_port" ] || continue
		if command -v ss >/dev/null 2>&1; then
			[ -z "$(ss -ltnH "( sport = :$_broker_p )" 2>/dev/null)" ] && return 0
		elif ! (: <>"/dev/tcp/127.0.0.1/$_broker_p") 2>/dev/null; then
			return 0
		fi
	done
}

# _broker_conf EXTRA_CONF_FILE: writes $_broker_dir/mosquitto.conf for the
# current $broker_port and $broker_tls_port.
_broker_conf() {
	{
		echo "per_listener_settings false"
		echo "allow_anonymous true"
		echo "max_inflight_messages 1000"
		echo "max_queued_messages 100000"
		echo "persistence false"
		# As root, stay root (the PKI and $T are root's, mode 0600/0700);
		# otherwise this has no effect.
		echo "user $(id -un)"
		echo "log_dest file $_broker_dir/mosquitto.log"
		if [ "${BROKER_LOG_ALL:-0}" = 1 ]; then
			echo "log_type all"
		else
			printf 'log_type %s\n' error warning notice information
		fi
		echo "listener $broker_port 127.0.0.1"
		echo "listener $broker_tls_port 127.0.0.1"
		echo "cafile $T/pki/ca.pem"
		echo "certfile $T/pki/server.pem"
		echo "keyfile $T/pki/server.key"
		echo "require_certificate true"
		if [ -n "$1" ]; then
			echo "# from $1"
			cat "$1"
		fi
	} >"$_broker_dir/mosquitto.conf"
}

# _broker_launch: starts mosquitto on the written config and waits (bounded)
# until it logged that it runs and an MQTT round trip on the plain port works.
# Returns 0 when ready (sets $broker_pid), 2 if it could not bind a port,
# 1 otherwise (not left running).
_broker_launch() {
	_broker_log=$_broker_dir/mosquitto.log
	_broker_from=0
	[ -f "$_broker_log" ] && _broker_from=$(wc -l <"$_broker_log")
	if command -v setpriv >/dev/null 2>&1; then
		setpriv --pdeathsig KILL mosquitto -c "$_broker_dir/mosquitto.conf" \
			</dev/null >>"$_broker_dir/mosquitto.out" 2>&1 &
	else
		mosquitto -c "$_broker_dir/mosquitto.conf" \
			</dev/null >>"$_broker_dir/mosquitto.out" 2>&1 &
	fi
	broker_pid=$!
	_i=0
	while [ $_i -lt 500 ]; do
		if ! kill -0 "$broker_pid" 2>/dev/null; then
			wait "$broker_pid" 2>/dev/null
			broker_pid=""
			# Read after it died: the whole log is there by now.
			case $(tail -n "+$((_broker_from + 1))" "$_broker_log" 2>/dev/null) in
			*"Address already in use"*) return 2 ;;
			esac
			return 1
		fi
		_broker_new=$(tail -n "+$((_broker_from + 1))" "$_broker_log" 2>/dev/null)
		# "running" comes after every listener is bound, so the port
		# probed below is this broker's.
		case $_broker_new in
		*" running"*)
			# shellcheck disable=SC2016 # $SYS is a topic, not a variable
			mosquitto_sub -h 127.0.0.1 -p "$broker_port" -t '$SYS/broker/version' \
				-C 1 -W 2 >/dev/null 2>&1 && return 0
			;;
		esac
		_i=$((_i + 1))
		sleep 0.02 # poll interval, bounded by the loop (10 s)
	done
	_broker_reap -9
	return 1
}

# _broker_reap SIGNAL: sends SIGNAL to the broker, if any, and reaps it.
_broker_reap() {
	[ -n "$broker_pid" ] || return 0
	kill "$1" "$broker_pid" 2>/dev/null
	wait "$broker_pid" 2>/dev/null
	broker_pid=""
}

# _broker_fail WHAT: reports a broker that never got ready, with its log.
_broker_fail() {
	echo "$1: mosquitto never got ready; config, output and log:" >&2
	cat "$_broker_dir/mosquitto.conf" "$_broker_dir/mosquitto.out" \
		"$_broker_dir/mosquitto.log" >&2 2>/dev/null
	return 1
}

# start_broker [EXTRA_CONF_FILE]: starts mosquitto (config, log and output in
# $T/broker/) with a plain listener on 127.0.0.1:$broker_port and a TLS one
# on 127.0.0.1:$broker_tls_port that requires a client certificate from the
# CA in $T/pki (made by broker_pki if missing). Retries with other ports when
# a port was taken (10 tries). Returns once an MQTT round trip on the plain
# port worked, with $broker_pid set; returns 1 with the log printed if it
# never got ready. EXTRA_CONF_FILE's lines are appended after the TLS
# listener (so listener options in it apply to that listener). With an
# acl_file, grant anonymous clients read on $SYS/# (readiness probe) and
# readwrite on $outpost-e2e/# (broker_sub_count's probes).
start_broker() {
	[ -z "$broker_pid" ] || {
		echo "start_broker: a broker is already running ($broker_pid)" >&2
		return 1
	}
	mkdir -p "$_broker_dir" || return 1
	# rogue.pem is made last, pki.cnf removed once all went well.
	if [ ! -f "$T/pki/rogue.pem" ] || [ -f "$T/pki/pki.cnf" ]; then
		broker_pki "$T/pki" || return 1
	fi
	_broker_extra=${1:-}
	_broker_try=0
	while [ $_broker_try -lt 10 ]; do
		broker_port=""
		_broker_pick_port
		broker_port=$_broker_p
		_broker_pick_port
		broker_tls_port=$_broker_p
		_broker_conf "$_broker_extra" || return 1
		_broker_launch
		case $? in
		0) return 0 ;;
		2) _broker_try=$((_broker_try + 1)) ;;
		*) _broker_fail start_broker; return 1 ;;
		esac
	done
	_broker_fail "start_broker (10 tries, ports always taken)"
}

# start_acl_broker [EXTRA_CONF_FILE]: start_broker with the control plane's
# access control, as packaging/mosquitto/outpost-broker.conf sets it up: the
# TLS listener takes each client certificate's CN as the username
# (use_identity_as_username; client-a.pem is agent-a, client-b.pem agent-b,
# control.pem outpost-control) and the broker applies
# $T/broker/outpost-broker.acl, a copy of packaging/mosquitto/
# outpost-broker.acl ($BROKER_ACL_FILE instead, when set) headed by the
# anonymous grants of the plain port's probes (read $SYS/#, readwrite
# $outpost-e2e/#). Anonymous clients on the plain port get nothing of the
# ACL file, so broker_sub_count sees only $outpost-e2e/ topics there.
# EXTRA_CONF_FILE's lines are appended. Returns as start_broker does, with
# the same variables set; stop_broker and the others work on it as usual.
start_acl_broker() {
	[ -z "$broker_pid" ] || {
		echo "start_acl_broker: a broker is already running ($broker_pid)" >&2
		return 1
	}
	mkdir -p "$_broker_dir" || return 1
	_broker_acl_src=${BROKER_ACL_FILE:-$TOP/packaging/mosquitto/outpost-broker.acl}
	[ -r "$_broker_acl_src" ] || {
		echo "start_acl_broker: cannot read $_broker_acl_src" >&2
		return 1
	}
	# Lines before the file's first "user" line apply to anonymous clients
	# only; every TLS client has a username (its CN).
	{
		echo "# The harness's anonymous probes on the plain port."
		# shellcheck disable=SC2016 # topics, not variables
		printf '%s\n' 'topic read $SYS/#' 'topic readwrite $outpost-e2e/#'
		echo "# from $_broker_acl_src"
		cat "$_broker_acl_src"
	} >"$_broker_dir/outpost-broker.acl" || return 1
	{
		echo "use_identity_as_username true"
		echo "acl_file $_broker_dir/outpost-broker.acl"
		if [ -n "${1:-}" ]; then
			echo "# from $1"
			cat "$1"
		fi
	} >"$_broker_dir/acl.conf" || return 1
	start_broker "$_broker_dir/acl.conf"
}

# stop_broker: SIGTERM, then waits until the broker has exited (SIGKILL
# after 5 s). No-op when none runs.
stop_broker() {
	[ -n "$broker_pid" ] || return 0
	kill -TERM "$broker_pid" 2>/dev/null
	_i=0
	while [ $_i -lt 500 ] && kill -0 "$broker_pid" 2>/dev/null; do
		_i=$((_i + 1))
		sleep 0.01 # poll interval, bounded by the loop (5 s)
	done
	_broker_reap -9
}

# kill_broker: SIGKILL (an outage with no goodbye to clients), reaped.
kill_broker() {
	_broker_reap -9
}

# restart_broker: stops the broker if it still runs, then starts it again on
# the same ports and config and waits until it is ready, as start_broker
# does. Returns 1 with the log printed if it never got ready (e.g. a port
# was taken meanwhile). Retained messages and sessions do not survive.
restart_broker() {
	[ -n "$broker_port" ] || {
		echo "restart_broker: start_broker first" >&2
		return 1
	}
	stop_broker
	_broker_launch || _broker_fail restart_broker
}

# broker_sub_count TOPIC N TIMEOUT_S FILE: subscribes (QoS 1, plain port) to
# TOPIC (a filter; wildcards are fine) in the background and returns 0 once
# the subscription is active at the broker, with $sub_pid set: anything
# published to TOPIC after that is delivered. Then trigger the publishes and
# `wait "$sub_pid"` (never a bare `wait`, which would wait for the broker):
# it returns 0 once N messages arrived, 27 if TIMEOUT_S seconds (counted from
# the call) passed first. By then FILE holds the payloads that arrived, one
# per line, in arrival order (retained messages on TOPIC included, they
# come first). Returns 1 with mosquitto_sub's error if it could not
# subscribe. The subscription does not survive a broker restart. Left
# running, it is ended at exit (or, if the script is SIGKILLed, by -W).
#
# How: a retained message is put on a fresh topic under $outpost-e2e/ (which
# '#' does not match), and mosquitto_sub subscribes to TOPIC and that topic
# in one go; the broker sends retained messages after it has added the
# subscriptions, so once the probe shows in the output the subscription is
# live. The probe is counted (-C N+1) and dropped from FILE.
broker_sub_count() {
	_broker_nsub=$((_broker_nsub + 1))
	_sub_base=$_broker_dir/sub.$_broker_nsub
	_sub_probe="outpost-e2e-probe-$$-$_broker_nsub-$RANDOM$RANDOM"
	_sub_topic="\$outpost-e2e/probe/$$-$_broker_nsub"
	: >"$_sub_base.out"
	if ! mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -r -t "$_sub_topic" \
		-m "$_sub_probe" 2>"$_sub_base.err"; then
		echo "broker_sub_count: probe publish failed: $(cat "$_sub_base.err")" >&2
		return 1
	fi
	(
		mosquitto_sub -h 127.0.0.1 -p "$broker_port" -q 1 -C $(($2 + 1)) -W "$3" \
			-t "$1" -t "$_sub_topic" >"$_sub_base.out" 2>"$_sub_base.err" &
		_sp=$!
		trap 'kill "$_sp" 2>/dev/null; wait "$_sp"; exit 143' TERM
		wait "$_sp"
		_rc=$?
		grep -avxF -- "$_sub_probe" "$_sub_base.out" >"$4"
		# A second probe means mosquitto_sub reconnected (and resubscribed)
		# and counted it: FILE then holds one message less than counted.
		if [ "$(grep -acxF -- "$_sub_probe" "$_sub_base.out")" -gt 1 ]; then
			echo "broker_sub_count $1: mosquitto_sub reconnected" >&2
		fi
		exit $_rc
	) &
	sub_pid=$!
	_broker_subs="$_broker_subs $sub_pid"
	_i=0
	while [ $_i -lt 500 ]; do
		grep -qxF -- "$_sub_probe" "$_sub_base.out" && return 0
		if ! kill -0 "$sub_pid" 2>/dev/null; then
			echo "broker_sub_count: mosquitto_sub failed: $(cat "$_sub_base.err")" >&2
			return 1
		fi
		_i=$((_i + 1))
		sleep 0.01 # poll interval, bounded by the loop (5 s)
	done
	echo "broker_sub_count: subscription to $1 never became active" >&2
	kill -TERM "$sub_pid" 2>/dev/null
	wait "$sub_pid" 2>/dev/null
	return 1
}

# _broker_cleanup: ends leftover subscribers and the broker; runs at exit.
_broker_cleanup() {
	_jobs=" $(jobs -p | tr '\n' ' ') "
	for _p in $_broker_subs; do
		case $_jobs in
		*" $_p "*) kill -TERM "$_p" 2>/dev/null && wait "$_p" 2>/dev/null ;;
		esac
	done
	_broker_reap -9
}

# Stopped when the script exits, before lib.sh removes $T.
at_exit _broker_cleanup
