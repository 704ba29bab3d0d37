#!/bin/bash
# The control plane: rollout latency, the outbox's drain after an outage,
# and a fleet of agents receiving one deployment, against one real
# mosquitto (tests/e2e/broker.sh: 127.0.0.1, free ports, mutual TLS).
#
#   rollout:  `outpostctl deploy --wait` of a new version to one agent, ten
#             times; the time from the publish to the agent's reported
#             saying it applied it (deploy prints it). Target <= 1 s.
#   drain:    an agent's outbox holding BENCH_DRAIN records (300,000 log
#             records of ~200 bytes, written by outbox_fill as if its link
#             had been down) drained to a subscriber: records/s from the
#             agent's start to the last message, beside mosquitto_pub
#             sending the very messages the agent sent, in the same run
#             (the broker's own rate; target >= 50,000 records/s).
#   fleet:    BENCH_FLEET agents (100) of one group on this machine, each
#             with its own store, receive one `deploy --group`: the time
#             until all reported it applied, and their total RSS.
# Prints "bench: NAME VALUE UNIT" lines. Installs nothing: without
# mosquitto it prints a skip line and exits 0.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
OUTPOSTCTL=${OUTPOSTCTL:-$top/build/release/outpostctl}
OUTPOSTD=${OUTPOSTD:-$top/build/release/outpostd}
OUTBOX_FILL=${OUTBOX_FILL:-$top/build/release/tests/bench/outbox_fill}
export OUTPOSTCTL OUTPOSTD
DRAIN=${BENCH_DRAIN:-300000}
FLEET=${BENCH_FLEET:-100}

for tool in mosquitto mosquitto_sub mosquitto_pub jq; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
		echo "bench: skip bench_control: $tool not found (packaging/install-deps.sh bench)"
		exit 0
	fi
done
for b in "$OUTPOSTCTL" "$OUTPOSTD" "$OUTBOX_FILL"; do
	if [ ! -x "$b" ]; then
		echo "bench_control: $b not found (make VARIANT=release)" >&2
		exit 1
	fi
done
# shellcheck source=../e2e/lib.sh
. "$top/tests/e2e/lib.sh"
# shellcheck source=../e2e/broker.sh
. "$top/tests/e2e/broker.sh"
start_broker || exit 1
P=$T/pki
"$OUTPOSTCTL" keygen "$T/ops.key" --kid ops >/dev/null || exit 1
export OUTPOST_BROKER="mqtts://127.0.0.1:$broker_tls_port" OUTPOST_CA="$P/ca.pem" \
	OUTPOST_CERT="$P/client-b.pem" OUTPOST_KEY="$P/client-b.key"

pids=""
stop_agents() {
	# shellcheck disable=SC2086 # a list of pids
	[ -z "$pids" ] || kill -TERM $pids 2>/dev/null
	for _p in $pids; do wait "$_p" 2>/dev/null; done
	pids=""
}
at_exit stop_agents

# agent ID DIR GROUP: starts an agent of GROUP with its store in DIR, no
# HTTP or admin listener (many run at once), its log DIR/log.
agent() {
	mkdir -p "$2"
	cat >"$2/outpost.conf" <<CONF
[agent]
id = $1
data_dir = $2/data
pipelines_dir = $2/pipelines
workers = 1
shutdown_timeout = 1s
log_level = warn
[store]
map_initial = 4MB
[http]
listen =
[admin]
listen =
[accounts]
key_file = $2/accounts.key
[control]
url = mqtts://127.0.0.1:$broker_tls_port
ca_file = $P/ca.pem
cert_file = $P/client-a.pem
key_file = $P/client-a.key
trusted_keys = $T/ops.key.pub
group = $3
reconnect_min = 100ms
reconnect_max = 2s
CONF
	mkdir -p "$2/pipelines"
	"$OUTPOSTD" --config "$2/outpost.conf" >/dev/null 2>>"$2/log" &
	pids="$pids $!"
}
# online N: N agents say online.
online() {
	[ "$("$OUTPOSTCTL" status --json --timeout 10 2>/dev/null |
		jq '[.[] | select(.status.state == "online")] | length')" -ge "$1" ]
}
# pipeline FILE VERSION: a pipeline without a trigger (agents share ports).
pipeline_v() {
	printf '{"name":"bench","version":"%s","steps":[{"type":"set","config":{"template":{"v":"%s"}}}]}\n' \
		"$2" "$2" >"$1"
}
now() { date +%s%N; }

# ---- rollout latency ----
agent r1 "$T/r1" solo
wait_until 30 online 1 || {
	echo "bench_control: the agent did not come online: $(cat "$T/r1/log")" >&2
	exit 1
}
lat=""
for v in 1 2 3 4 5 6 7 8 9 10; do
	pipeline_v "$T/p.json" "$v"
	out=$("$OUTPOSTCTL" deploy "$T/p.json" --agent r1 --sign-key "$T/ops.key" 2>&1) || {
		echo "bench_control: deploy $v: $out" >&2
		exit 1
	}
	lat="$lat $(printf '%s\n' "$out" | sed -n 's/.* in \([0-9.]*\) s$/\1/p')"
done
# shellcheck disable=SC2086,SC2046 # a list of numbers, split on purpose
set -- $(printf '%s\n' $lat | sort -n)
echo "bench: rollout_latency_median $(printf '%s\n' "$@" | awk '{ v[NR] = $1 } END { printf "%.3f", v[int((NR + 1) / 2)] }') s (deploy to reported applied, 10 deploys; target <= 1)"
echo "bench: rollout_latency_max $(printf '%s\n' "$@" | tail -n 1) s"
stop_agents

# ---- the drain after an outage ----
msgs=$(((DRAIN + 999) / 1000))
mkdir -p "$T/d1/data"
"$OUTBOX_FILL" "$T/d1/data/store" "$DRAIN" >/dev/null || exit 1
broker_sub_count "outpost/v1/d1/out/logs" "$msgs" 300 "$T/drain.out" || exit 1
t0=$(now)
agent d1 "$T/d1" solo
wait "$sub_pid" || {
	echo "bench_control: the drain did not end: $(wc -l <"$T/drain.out") of $msgs messages" >&2
	exit 1
}
agent_ns=$(($(now) - t0))
stop_agents
got=$(jq -s 'map(.records | length) | add' "$T/drain.out")
if [ "$got" != "$DRAIN" ]; then
	echo "bench_control: $got records drained, expected $DRAIN" >&2
	exit 1
fi
# The broker's own rate for the same messages, QoS 1, one publisher.
broker_sub_count "bench/raw" "$msgs" 300 "$T/raw.out" || exit 1
t0=$(now)
mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -t bench/raw -l <"$T/drain.out" || exit 1
wait "$sub_pid" || exit 1
raw_ns=$(($(now) - t0))
rate() { awk -v n="$DRAIN" -v t="$1" 'BEGIN { printf "%.0f", n / (t / 1e9) }'; }
agent_rate=$(rate "$agent_ns")
raw_rate=$(rate "$raw_ns")
echo "bench: outbox_drain $agent_rate records/s ($DRAIN records in $msgs messages, from the agent's start; target >= 50000)"
echo "bench: outbox_drain_mosquitto_pub $raw_rate records/s (the same messages)"
echo "bench: outbox_drain_vs_mosquitto_pub $(awk -v a="$agent_rate" -v b="$raw_rate" 'BEGIN { printf "%.2f", a / b }') ratio"

# ---- a fleet ----
i=0
while [ $i -lt "$FLEET" ]; do
	agent "$(printf 'f%03d' $i)" "$T/fleet/$i" fleet
	i=$((i + 1))
done
wait_until 120 online "$FLEET" || {
	echo "bench_control: not all $FLEET agents came online" >&2
	exit 1
}
pipeline_v "$T/p.json" fleet
t0=$(now)
out=$("$OUTPOSTCTL" deploy "$T/p.json" --group fleet --sign-key "$T/ops.key" --timeout 120 --json 2>&1) || {
	echo "bench_control: fleet deploy: $(printf '%s\n' "$out" | tail -n 5)" >&2
	exit 1
}
fleet_ns=$(($(now) - t0))
applied=$(printf '%s\n' "$out" | jq '[.[] | select(.result == "applied")] | length')
rss=0
for p in $pids; do
	r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
	rss=$((rss + ${r:-0}))
done
echo "bench: fleet_deploy $(awk -v t="$fleet_ns" 'BEGIN { printf "%.2f", t / 1e9 }') s ($applied of $FLEET agents applied one deploy --group)"
echo "bench: fleet_rss_total $((rss / 1024)) MiB ($FLEET agents, $((rss / FLEET)) KiB each)"
stop_agents
