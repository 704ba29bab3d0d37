# The control plane's broker access control end to end: a real mosquitto
# applying packaging/mosquitto/outpost-broker.acl, with the client
# certificate's CN as username (broker.sh's start_acl_broker), driven with
# mosquitto_pub and mosquitto_sub over mutual TLS and MQTT 5. Checked: the
# control plane (CN outpost-control) writes and reads every agent's topics
# and nothing else; agent-a reads its own desired and cmd/, writes its own
# reported, status, out/ and cmd-result/; agent-a receives nothing of
# agent-b's, retained or live, even through a subscription to outpost/v1/#;
# every publish of agent-a outside its own writable topics is refused ("not
# authorized") and neither delivered nor retained, and so is a Last Will on
# another agent's status; and a certificate from another CA, or none, does
# not get past TLS.
#
# Nothing waits a fixed time for something not to happen: a retained message
# a client may not read would have come before the readable one behind it
# (the broker sends retained messages topic by topic, in the order of the
# SUBSCRIBE), and a refused live publish (or Will) would have arrived before
# the allowed one sent after it.

# shellcheck shell=bash
# This test runs no outpostctl; lib.sh insists on one being named.
OUTPOSTCTL=${OUTPOSTCTL:-/bin/false}
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=broker.sh
. "$(dirname "$0")/broker.sh"

# shellcheck disable=SC2119 # no extra broker configuration
start_acl_broker || exit 1
P=$T/pki
LOG=$T/broker/mosquitto.log
V=outpost/v1
watch_pid=""
# shellcheck disable=SC2016 # expanded at exit, not now
at_exit '[ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null'

# mq CERT pub|sub ARGS...: mosquitto_pub or mosquitto_sub as the holder of
# $P/CERT.pem (client-a: agent-a, client-b: agent-b, control:
# outpost-control, rogue: signed by another CA) on the broker's TLS port,
# MQTT 5. In the background, as `mq_exec="exec" mq ... &`, the client replaces
# the subshell, so that $! is the client's pid (to kill it).
mq() {
	_cert=$1
	_cmd=mosquitto_$2
	shift 2
	${mq_exec:-} "$_cmd" -h 127.0.0.1 -p "$broker_tls_port" -V mqttv5 --cafile "$P/ca.pem" \
		--cert "$P/$_cert.pem" --key "$P/$_cert.key" "$@"
}

# expect_pub accepted|refused CERT TOPIC MESSAGE [ARGS...]: one check that a
# QoS 1 publish of MESSAGE to TOPIC as CERT was accepted, or refused as not
# authorised. mosquitto_pub exits 0 either way: a refusal is the MQTT 5
# PUBACK reason code 0x87, which it prints as "Warning: Publish 1 failed:
# Not authorized." (QoS 0 would be dropped without a word).
expect_pub() {
	_want=$1
	_cert=$2
	_topic=$3
	_msg=$4
	shift 4
	checks=$((checks + 1))
	mq "$_cert" pub -q 1 -t "$_topic" -m "$_msg" "$@" 2>"$T/pub.err"
	_rc=$?
	_err=$(cat "$T/pub.err")
	case $_want:$_rc:$_err in
	accepted:0:) ;;
	refused:0:*"Publish 1 failed: Not authorized."*) ;;
	*) fail "$what: $_cert publishing to $_topic: expected $_want; exit $_rc, stderr: $_err" ;;
	esac
}

# expect_sub EXPECTED CERT N ARGS...: one check that mosquitto_sub as CERT
# with ARGS (-t TOPIC...: one SUBSCRIBE) gets N messages (QoS 1) within 5 s,
# and that as "topic payload" lines they are EXPECTED.
expect_sub() {
	_want=$1
	_cert=$2
	_n=$3
	shift 3
	checks=$((checks + 1))
	got=$(mq "$_cert" sub -q 1 -v -C "$_n" -W 5 "$@" 2>"$T/sub.err")
	_rc=$?
	if [ "$_rc" -ne 0 ] || [ "$got" != "$_want" ]; then
		fail "$what: $_cert got (exit $_rc, stderr: $(cat "$T/sub.err")):
$got
expected:
$_want"
	fi
}

# watch CERT ARGS...: mosquitto_sub as CERT with ARGS (QoS 1, at most 20 s)
# in the background, "topic payload" lines into $T/watch.out; sets
# $watch_pid.
watch() {
	_cert=$1
	shift
	: >"$T/watch.out"
	mq_exec="exec" mq "$_cert" sub -q 1 -v -W 20 "$@" >"$T/watch.out" 2>"$T/watch.err" &
	watch_pid=$!
}

# watch_has N LINE: $T/watch.out holds LINE (whole) at least N times.
watch_has() {
	[ "$(grep -cxF -- "$2" "$T/watch.out")" -ge "$1" ]
}

# watch_ready N LINE: one check that the watcher got LINE N times within 5 s
# (a retained message, so the subscription is live at the broker).
watch_ready() {
	checks=$((checks + 1))
	wait_until 5 watch_has "$1" "$2" && return 0
	fail "$what: the subscriber never got '$2' $1 times: $(cat "$T/watch.out" "$T/watch.err")"
	return 1
}

# watch_end: ends the watcher (no-op when it ended by itself) and reaps it.
watch_end() {
	kill "$watch_pid" 2>/dev/null
	wait "$watch_pid" 2>/dev/null
	watch_pid=""
}

# log_count TEXT: how many lines of the broker's log hold TEXT.
log_count() {
	grep -cF -- "$1" "$LOG"
}

# log_grew TEXT N: the broker's log holds TEXT on more than N lines.
log_grew() {
	[ "$(log_count "$1")" -gt "$2" ]
}

# expect_tls_refused WHAT_LOGGED COMMAND...: one check that COMMAND (a
# mosquitto_sub that would print the retained agent-a desired) exits with
# an error (not 0, not 27 = timed out after connecting) with nothing printed,
# and that the broker logged WHAT_LOGGED (its OpenSSL error) for it.
expect_tls_refused() {
	_logged=$1
	shift
	checks=$((checks + 1))
	_before=$(log_count "$_logged")
	got=$("$@" 2>"$T/sub.err")
	_rc=$?
	if [ "$_rc" -eq 0 ] || [ "$_rc" -eq 27 ] || [ -n "$got" ]; then
		fail "$what: connected: exit $_rc, got '$got', stderr: $(cat "$T/sub.err")"
	elif ! wait_until 5 log_grew "$_logged" "$_before"; then
		fail "$what: exit $_rc ($(cat "$T/sub.err")), but the broker did not log '$_logged': $(tail -n 5 "$LOG")"
	fi
}

what="the control plane writes any agent's desired (retained)"
expect_pub accepted control $V/agent-a/desired a-desired -r
expect_pub accepted control $V/agent-b/desired b-desired -r

what="the control plane has nothing outside outpost/v1/"
expect_pub refused control "other/$V/agent-a/desired" c-elsewhere -r

what="agent-a reads its own desired"
expect_sub "$V/agent-a/desired a-desired" client-a 1 -t $V/agent-a/desired

what="agents write their own reported and status (retained), the control plane reads them"
expect_pub accepted client-a $V/agent-a/reported a-reported -r
expect_pub accepted client-a $V/agent-a/status a-online -r
expect_pub accepted client-b $V/agent-b/reported b-reported -r
expect_sub "$V/agent-a/reported a-reported
$V/agent-a/status a-online
$V/agent-b/reported b-reported" control 3 \
	-t $V/agent-a/reported -t $V/agent-a/status -t $V/agent-b/reported

what="agent-a gets no retained message of agent-b (its own desired comes first)"
expect_sub "$V/agent-a/desired a-desired" client-a 1 \
	-t $V/agent-b/desired -t $V/agent-b/reported -t $V/agent-a/desired

# mosquitto 2.0 grants every subscription (acl_file does not judge topic
# filters) and checks read access on each message it would deliver.
what="agent-a subscribed to $V/# gets only its own readable topics"
# Retained: of all under $V/, only its desired, then the same again for the
# second filter.
expect_sub "$V/agent-a/desired a-desired
$V/agent-a/desired a-desired" client-a 2 -t "$V/#" -t $V/agent-a/desired
# Live: agent-b's command and outbox are published before agent-a's command.
watch client-a -C 3 -t "$V/#" -t $V/agent-a/desired
if watch_ready 2 "$V/agent-a/desired a-desired"; then
	expect_pub accepted control $V/agent-b/cmd/1 b-cmd
	expect_pub accepted client-b $V/agent-b/out/logs b-logs
	expect_pub accepted client-b $V/agent-b/cmd-result/1 b-result
	expect_pub accepted control $V/agent-a/cmd/1 a-cmd
	checks=$((checks + 1))
	wait "$watch_pid" || fail "$what: live: mosquitto_sub ended with $?: $(cat "$T/watch.err")"
	watch_pid=""
	checks=$((checks + 1))
	got=$(cat "$T/watch.out")
	[ "$got" = "$V/agent-a/desired a-desired
$V/agent-a/desired a-desired
$V/agent-a/cmd/1 a-cmd" ] || fail "$what: live: got
$got"
fi
watch_end

what="agent-a cannot write agent-b's topics, nor its own desired and cmd/"
# The control plane watches everything; it is live once the retained agent-a
# status came for the second filter (after every retained message of $V/#).
watch control -t "$V/#" -t $V/agent-a/status
if watch_ready 2 "$V/agent-a/status a-online"; then
	expect_pub refused client-a $V/agent-b/desired forged-desired -r
	expect_pub refused client-a $V/agent-b/reported forged-reported -r
	expect_pub refused client-a $V/agent-b/status forged-status -r
	expect_pub refused client-a $V/agent-b/out/logs forged-logs
	expect_pub refused client-a $V/agent-b/cmd-result/1 forged-result
	expect_pub refused client-a $V/agent-b/cmd/1 forged-cmd
	expect_pub refused client-a $V/agent-a/desired forged-own-desired -r
	expect_pub refused client-a $V/agent-a/cmd/1 forged-own-cmd
	expect_pub refused client-a $V/agent-a forged-own-root
	expect_pub refused client-a outpost/v1 forged-root
	expect_pub refused client-a "other/$V/agent-a/reported" forged-prefix
	# ... then what agents may write, the last one the probe.
	expect_pub accepted client-a $V/agent-a/out/metrics a-metrics
	expect_pub accepted client-a $V/agent-a/cmd-result/1 a-result
	expect_pub accepted client-b $V/agent-b/out/logs b-probe
	checks=$((checks + 1))
	wait_until 10 watch_has 1 "$V/agent-b/out/logs b-probe" ||
		fail "$what: the probe never came: $(cat "$T/watch.err")"
	checks=$((checks + 1))
	got=$(awk -v m="$V/agent-a/status a-online" 'n == 2 { print } $0 == m { n++ }' "$T/watch.out")
	[ "$got" = "$V/agent-a/out/metrics a-metrics
$V/agent-a/cmd-result/1 a-result
$V/agent-b/out/logs b-probe" ] || fail "$what: after the retained messages the control plane got
$got"
fi
watch_end
# Nor were the refused retained publishes kept (they would come first).
expect_sub "$V/agent-b/desired b-desired
$V/agent-b/reported b-reported
$V/agent-a/desired a-desired" control 3 -t $V/agent-b/status \
	-t $V/agent-b/desired -t $V/agent-b/reported -t $V/agent-a/desired

what="a Last Will is published only where its agent may write"
# will_client ID TOPIC PAYLOAD: as agent-a with client id ID and a retained
# Will (QoS 1) of PAYLOAD on TOPIC, connects and subscribes to its desired;
# returns once the retained desired came, so the broker holds the Will, with
# $will_pid set. One check: 1 if it never came.
will_client() {
	checks=$((checks + 1))
	mq_exec="exec" mq client-a sub -i "$1" -q 1 -v -C 2 -W 20 -t $V/agent-a/desired \
		--will-topic "$2" --will-payload "$3" --will-qos 1 --will-retain \
		>"$T/will.out" 2>"$T/will.err" &
	will_pid=$!
	wait_until 5 grep -qxF "$V/agent-a/desired a-desired" "$T/will.out" && return 0
	fail "$what: $1 never connected: $(cat "$T/will.err")"
	kill "$will_pid" 2>/dev/null
	wait "$will_pid" 2>/dev/null
	return 1
}
# vanish ID: SIGKILLs $will_pid (no DISCONNECT, so the broker sends the
# Will) and waits until the broker logged that client ID is gone.
vanish() {
	kill -KILL "$will_pid" 2>/dev/null
	wait "$will_pid" 2>/dev/null
	checks=$((checks + 1))
	wait_until 5 log_grew "Client $1 " 0 || fail "$what: the broker never noticed $1 left"
}
# The control plane watches both status topics: agent-b has none retained,
# agent-a's "a-online" comes once the subscription is live. The Will on
# agent-b's status is let go first: had it been sent, it would come before
# agent-a's own.
watch control -t $V/agent-b/status -t $V/agent-a/status
if watch_ready 1 "$V/agent-a/status a-online" &&
	will_client will-forged $V/agent-b/status forged-will; then
	vanish will-forged
	if will_client will-own $V/agent-a/status a-offline; then
		vanish will-own
		checks=$((checks + 1))
		wait_until 10 watch_has 1 "$V/agent-a/status a-offline" ||
			fail "$what: agent-a's own Will never came: $(cat "$T/watch.out" "$T/watch.err")"
		checks=$((checks + 1))
		got=$(cat "$T/watch.out")
		[ "$got" = "$V/agent-a/status a-online
$V/agent-a/status a-offline" ] || fail "$what: the control plane got
$got"
	fi
fi
watch_end
# Nor was the forged Will retained (it would come first).
expect_sub "$V/agent-a/status a-offline" control 1 -t $V/agent-b/status -t $V/agent-a/status

what="a client certificate signed by another CA is refused in the TLS handshake"
expect_tls_refused "certificate verify failed" \
	mq rogue sub -q 1 -v -C 1 -W 5 -t $V/agent-a/desired

what="a client without a certificate is refused in the TLS handshake"
expect_tls_refused "peer did not return a certificate" \
	mosquitto_sub -h 127.0.0.1 -p "$broker_tls_port" -V mqttv5 --cafile "$P/ca.pem" \
	-q 1 -v -C 1 -W 5 -t $V/agent-a/desired

finish
