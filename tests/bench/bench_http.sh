#!/bin/sh
# HTTP benchmarks of outpostd against nginx, side by side in one run.
#
# Starts nginx (a generated config: `return 200`, free 127.0.0.1 port, every
# path in a temp dir) and outpostd (generated config, log level warn, store in
# the temp dir), then drives both with wrk (2 threads, 32 connections, 10 s,
# a ~300-byte JSON order POSTed by a Lua script):
#   W1 sync:  POST /orders -> jq transform (renames and adds fields) -> answer;
#             compared with nginx as a ratio of requests/s (the median of
#             three pairs of runs, BENCH_W1_ROUNDS).
#   W2 async: POST /events -> 202 after the durable commit -> the pipeline
#             (the same jq transform) consumes; accepted events/s, p99, and
#             whether the queue drains; then the same with a one-step `set`
#             pipeline (POST /events-set).
#   The CPU the servers used a request, from /proc, beside the rates.
#   idle RSS of a daemon with 20 pipelines deployed, and start-to-ready time.
# Prints "bench: NAME VALUE UNIT" lines. Installs nothing: without wrk or nginx
# it prints a skip line and exits 0 (make bench installs them: role "bench" in
# packaging/deps.txt). Absolute numbers depend on the machine and its load;
# the ratios are what to compare. Takes about 130 s.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
OUTPOSTD=${OUTPOSTD:-$top/build/release/outpostd}
DURATION=${BENCH_DURATION:-10}
# shellcheck source=lib.sh
. "$top/tests/bench/lib.sh"

for tool in wrk nginx; do
	if ! command -v $tool >/dev/null 2>&1 && [ ! -x /usr/sbin/$tool ]; then
		echo "bench: skip bench_http: $tool not found (apt-get install wrk nginx-light," \
			"or packaging/install-deps.sh bench)"
		exit 0
	fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$OUTPOSTD" ]; then
	echo "bench_http: $OUTPOSTD not found (make VARIANT=release)" >&2
	exit 1
fi

T=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill -TERM "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }

die() {
	echo "bench_http: $*" >&2
	exit 1
}

# ---- nginx ---------------------------------------------------------------

# Paths compiled into Debian's nginx (/var/lib/nginx/..., /run/nginx.pid,
# /var/log/nginx) all point into the temp dir, so it runs as any user.
start_nginx() {
	mkdir -p "$T/nginx"
	user=""
	[ "$(id -u)" -eq 0 ] && user="user $(id -un);"
	tries=0
	while [ $tries -lt 10 ]; do
		nport=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
		cat >"$T/nginx/nginx.conf" <<CONF
$user
daemon off;
worker_processes auto;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $T/nginx/body;
	proxy_temp_path $T/nginx/proxy;
	fastcgi_temp_path $T/nginx/fastcgi;
	uwsgi_temp_path $T/nginx/uwsgi;
	scgi_temp_path $T/nginx/scgi;
	server {
		listen 127.0.0.1:$nport;
		location / { return 200; }
	}
}
CONF
		"$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" 2>>"$T/nginx/stderr.log" &
		npid=$!
		dl=$(($(date +%s) + 5))
		while [ "$(date +%s)" -lt $dl ]; do
			if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$nport/")" = 200 ]; then
				pids="$pids $npid"
				return 0
			fi
			kill -0 $npid 2>/dev/null || break
			sleep 0.02 # poll interval, bounded by the deadline
		done
		kill -TERM $npid 2>/dev/null
		wait $npid 2>/dev/null
		tries=$((tries + 1))
	done
	die "nginx did not start: $(tail -5 "$T/nginx/error.log" "$T/nginx/stderr.log")"
}

# ---- outpostd ------------------------------------------------------------

BODY='{"order_id":"SO-2026-000417","customer":{"id":"C-10293","name":"Acme Industrial GmbH","country":"DE"},"currency":"EUR","items":[{"sku":"BRG-6204-2RS","qty":12,"price":4.35},{"sku":"SEAL-35x52x7","qty":4,"price":1.9},{"sku":"BLT-M8x40-8.8","qty":100,"price":0.12}],"requested":"2026-12-01","priority":"normal"}'
# Renames fields, computes a total, adds fields of its own and from globals.
# shellcheck disable=SC2016 # $globals is jq's, not the shell's
JQ='{orderId: .body.order_id, customerId: .body.customer.id, customerName: .body.customer.name, country: .body.customer.country, lines: [.body.items[] | {article: .sku, quantity: .qty, unitPrice: .price, amount: (.qty * .price)}], total: ([.body.items[] | .qty * .price] | add), currency: .body.currency, deliveryDate: .body.requested, rush: (.body.priority == \"high\"), source: \"outpost\", region: $globals.region}'

# conf DIR LEVEL: writes DIR/outpost.conf for a daemon whose pipelines are in
# DIR/p, logging at LEVEL.
conf() {
	mkdir -p "$1/p"
	cat >"$1/outpost.conf" <<CONF
[agent]
id = bench
data_dir = $1/data
pipelines_dir = $1/p
log_level = $2
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
[globals]
region = eu-1
CONF
}

# pipeline DIR NAME MODE PATH [OWN]: an http pipeline running the transform;
# with OWN, a program of its own (the transform, then a field naming it).
pipeline() {
	prog=$JQ
	[ $# -ge 5 ] && prog="$JQ | .route = \\\"$2\\\""
	cat >"$1/p/$2.json" <<JSON
{"name":"$2","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"$4","mode":"$3"}},
 "steps":[{"type":"transform","config":{"program":"$prog"}}]}
JSON
}

# start_daemon DIR: starts outpostd on DIR's config; sets $dpid, $port and
# $admin once /readyz answers 200. At log level warn the ports are not
# logged, so they come from the listening sockets of the process.
start_daemon() {
	"$OUTPOSTD" --config "$1/outpost.conf" 2>>"$1/d.log" &
	dpid=$!
	pids="$pids $dpid"
	dl=$(($(date +%s) + 10))
	while [ "$(date +%s)" -lt $dl ]; do
		ports=$(listening $dpid)
		if [ -n "$ports" ]; then
			for p in $ports; do
				if [ "$(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/readyz")" = 200 ]; then
					admin=$p
					port=$(echo "$ports" | tr ' ' '\n' | grep -vx "$p" | head -n 1)
					return 0
				fi
			done
		fi
		kill -0 $dpid 2>/dev/null || break
		sleep 0.02 # poll interval, bounded by the deadline
	done
	die "outpostd did not become ready: $(tail -5 "$1/d.log")"
}

# start_timed DIR: starts outpostd on DIR's config (log level info) and waits
# for its ready log line, polling every millisecond or so; sets $dpid, $admin
# and $ready_ms, the time from exec to that line.
start_timed() {
	: >"$1/d.log"
	t0=$(now_ms)
	"$OUTPOSTD" --config "$1/outpost.conf" 2>>"$1/d.log" &
	dpid=$!
	pids="$pids $dpid"
	dl=$((t0 + 10000))
	while [ "$(now_ms)" -lt $dl ]; do
		if grep -q 'ready (agent bench)' "$1/d.log"; then
			ready_ms=$(($(now_ms) - t0))
			admin=$(sed -n 's/.*admin endpoint on 127.0.0.1:\([0-9]*\).*/\1/p' "$1/d.log")
			return 0
		fi
		kill -0 $dpid 2>/dev/null || break
		sleep 0.001 # poll interval, bounded by the deadline
	done
	die "outpostd did not become ready: $(tail -5 "$1/d.log")"
}

# listening PID: the 127.0.0.1 TCP ports PID listens on (from /proc).
listening() {
	inodes=$(find /proc/"$1"/fd -lname 'socket:*' -printf '%l\n' 2>/dev/null |
		sed 's/socket:\[\([0-9]*\)\]/\1/')
	[ -n "$inodes" ] || return 0
	for h in $(echo "$inodes" | awk 'NR == FNR { want[$1] = 1; next }
		$4 == "0A" && ($10 in want) { split($2, a, ":"); print a[2] }' - /proc/"$1"/net/tcp); do
		printf '%d ' "0x$h"
	done
}

stop_daemon() {
	kill -TERM "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# ---- wrk -----------------------------------------------------------------

cat >"$T/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$BODY'
LUA

# run_wrk NAME URL: runs wrk, keeps its output in $T/NAME.wrk; sets $rps, $reqs
# (requests done), $p99 (ms), $secs (measured duration) and $bad (non-2xx
# answers and errors).
run_wrk() {
	wrk -t2 -c32 -d"${DURATION}s" --latency -s "$T/post.lua" "$2" >"$T/$1.wrk" 2>&1 ||
		die "wrk failed: $(cat "$T/$1.wrk")"
	rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' "$T/$1.wrk")
	reqs=$(awk '/requests in/ { print $1 }' "$T/$1.wrk")
	p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
		m = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : (u == "m") ? v * 60000 : v;
		printf "%.2f", m }' "$T/$1.wrk")
	secs=$(awk '/requests in/ { v = $4; sub(/,$/, "", v); u = v; sub(/[0-9.]+/, "", u);
		sub(/[a-z]+$/, "", v); printf "%.3f", (u == "ms") ? v / 1000 : (u == "m") ? v * 60 : v }' "$T/$1.wrk")
	bad=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ {
		for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i } END { print n + 0 }' "$T/$1.wrk")
}

# drain PIPELINE: waits (at most 40 s) until PIPELINE's queue and the
# daemon's in-flight events are empty; sets $q and $f to the last readings.
drain() {
	_dl=$(($(date +%s) + 40))
	q=""
	f=""
	while [ "$(date +%s)" -lt $_dl ]; do
		q=$(metric "outpost_queue_depth{pipeline=\"$1\"}")
		f=$(metric 'outpost_inflight')
		[ "${q:-1}" -eq 0 ] && [ "${f:-1}" -eq 0 ] && break
		sleep 0.05 # poll interval, bounded by the deadline
	done
}

echo "# bench_http: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"

start_nginx
D="$T/w"
conf "$D" warn
pipeline "$D" orders sync /orders
pipeline "$D" events async /events
# The same renames without jq: a set step's template (no computed amounts),
# to show what the HTTP path and the engine cost without the transform.
cat >"$D/p/orders-set.json" <<'JSON'
{"name":"orders-set","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/orders-set","mode":"sync"}},
 "steps":[{"type":"set","config":{"template":{"orderId":"{{ message.body.order_id }}",
  "customerId":"{{ message.body.customer.id }}","customerName":"{{ message.body.customer.name }}",
  "country":"{{ message.body.customer.country }}","lines":"{{ message.body.items }}",
  "currency":"{{ message.body.currency }}","deliveryDate":"{{ message.body.requested }}",
  "source":"outpost","region":"{{ globals.region }}"}}}]}
JSON
cat >"$D/p/events-set.json" <<'JSON'
{"name":"events-set","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/events-set","mode":"async"}},
 "steps":[{"type":"set","config":{"template":{"orderId":"{{ message.body.order_id }}","region":"{{ globals.region }}"}}}]}
JSON
start_daemon "$D"
wpid=$dpid

# Each server answers one request first, so both are warm (jq compiled,
# connections accepted once) before the measured runs.
curl -s -o /dev/null -H 'content-type: application/json' --data-binary "$BODY" "http://127.0.0.1:$port/orders"
out=$(curl -s -H 'content-type: application/json' --data-binary "$BODY" "http://127.0.0.1:$port/orders")
case "$out" in
*'"orderId":"SO-2026-000417"'*'"total":'*) ;;
*) die "W1 pipeline answered unexpectedly: $out" ;;
esac
out=$(curl -s -H 'content-type: application/json' --data-binary "$BODY" "http://127.0.0.1:$port/orders-set")
case "$out" in
*'"orderId":"SO-2026-000417"'*'"region":"eu-1"'*) ;;
*) die "the set pipeline answered unexpectedly: $out" ;;
esac

# W1: nginx and outpostd with the same load, in $W1_ROUNDS pairs whose order
# alternates (nginx first, then outpostd first, ...), so that a machine
# getting busier or quieter during the run weighs on both sides alike. The
# ratio is the median of the pairs' ratios; the rates are each side's median;
# p99 is the worst run's. The CPU each server used a request (nginx: master
# and workers) shows where the time goes, beside the rates that the two cores
# shared with wrk set.
W1_ROUNDS=${BENCH_W1_ROUNDS:-3}
# median: the median of the numbers on standard input, one a line.
median() {
	sort -n | awk '{ v[NR] = $1 } END {
		if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2];
		else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# w1_nginx / w1_outpost: one run of a side; append to the side's lists.
w1_nginx() {
	# shellcheck disable=SC2046 # one PID a word
	c0=$(cpu_ticks $npid $(children $npid))
	run_wrk "w1_nginx_$1" "http://127.0.0.1:$nport/orders"
	# shellcheck disable=SC2046
	c1=$(cpu_ticks $npid $(children $npid))
	n_rps=$rps
	n_list="$n_list $rps" n_p99=$(awk -v a="$n_p99" -v b="$p99" 'BEGIN { print (b > a) ? b : a }')
	n_ticks=$((n_ticks + c1 - c0)) n_reqs=$((n_reqs + reqs))
}
w1_outpost() {
	c0=$(cpu_ticks $wpid)
	run_wrk "w1_outpost_$1" "http://127.0.0.1:$port/orders"
	c1=$(cpu_ticks $wpid)
	o_rps=$rps
	o_list="$o_list $rps" o_p99=$(awk -v a="$o_p99" -v b="$p99" 'BEGIN { print (b > a) ? b : a }')
	o_ticks=$((o_ticks + c1 - c0)) o_reqs=$((o_reqs + reqs)) o_bad=$((o_bad + bad))
}
n_list="" o_list="" pairs="" n_p99=0 o_p99=0 n_ticks=0 n_reqs=0 o_ticks=0 o_reqs=0 o_bad=0
i=1
while [ "$i" -le "$W1_ROUNDS" ]; do
	if [ $((i % 2)) -eq 1 ]; then
		w1_nginx "$i"
		w1_outpost "$i"
	else
		w1_outpost "$i"
		w1_nginx "$i"
	fi
	pairs="$pairs $(ratio "$o_rps" "$n_rps")"
	i=$((i + 1))
done
# shellcheck disable=SC2086 # one number a word
n_rps=$(printf '%s\n' $n_list | median)
# shellcheck disable=SC2086
o_rps=$(printf '%s\n' $o_list | median)
echo "bench: w1_nginx_rps $n_rps req/s"
echo "bench: w1_nginx_p99 $n_p99 ms"
echo "bench: w1_nginx_cpu $(cpu_us 0 "$n_ticks" "$n_reqs") us/req"
echo "bench: w1_outpost_rps $o_rps req/s"
# shellcheck disable=SC2086
echo "bench: w1_outpost_vs_nginx $(printf '%s\n' $pairs | median) ratio"
# shellcheck disable=SC2086
echo "bench: w1_outpost_vs_nginx_min $(printf '%s\n' $pairs | sort -n | head -1) ratio"
# shellcheck disable=SC2086
echo "bench: w1_outpost_vs_nginx_max $(printf '%s\n' $pairs | sort -n | tail -1) ratio"
echo "bench: w1_outpost_p99 $o_p99 ms"
echo "bench: w1_outpost_errors $o_bad answers"
echo "bench: w1_outpost_cpu $(cpu_us 0 "$o_ticks" "$o_reqs") us/req"
c0=$(cpu_ticks $wpid)
run_wrk w1_set "http://127.0.0.1:$port/orders-set"
c1=$(cpu_ticks $wpid)
echo "bench: w1_set_rps $rps req/s"
echo "bench: w1_set_vs_nginx $(ratio "$rps" "$n_rps") ratio"
echo "bench: w1_set_p99 $p99 ms"
echo "bench: w1_set_errors $bad answers"
echo "bench: w1_set_cpu $(cpu_us "$c0" "$c1" "$reqs") us/req"

# W2: async, durable. Accepted = 202 answers counted by the daemon itself.
a0=$(metric 'outpost_http_requests_total{code="202"}')
k0=$(metric outpost_store_commit_seconds_count)
w0=$(disk_written "$T")
c0=$(cpu_ticks $wpid)
run_wrk w2_outpost "http://127.0.0.1:$port/events"
a1=$(metric 'outpost_http_requests_total{code="202"}')
t_end=$(now_ms)
accepted=$((${a1:-0} - ${a0:-0}))
echo "bench: w2_accepted_per_s $(awk -v n=$accepted -v s="$secs" 'BEGIN { printf "%d", n / s }') events/s"
echo "bench: w2_outpost_vs_nginx $(ratio "$rps" "$n_rps") ratio"
echo "bench: w2_p99 $p99 ms"
echo "bench: w2_refused $bad answers"
depth=$(metric 'outpost_queue_depth{pipeline="events"}')
echo "bench: w2_queue_at_end ${depth:-0} events"
drain events
done_n=$(metric 'outpost_executions_total{pipeline="events",status="success"}')
if [ "${q:-1}" -eq 0 ] && [ "${f:-1}" -eq 0 ]; then
	echo "bench: w2_drained 1 bool"
	echo "bench: w2_drain_time $(($(now_ms) - t_end)) ms"
else
	echo "bench: w2_drained 0 bool"
	echo "bench: w2_queue_left_after_40s ${q:-?} events"
fi
echo "bench: w2_executed_per_s $(awk -v n="${done_n:-0}" -v ms=$(($(now_ms) - t_end + ${secs%.*} * 1000)) \
	'BEGIN { printf "%d", n * 1000 / ms }') events/s"
c1=$(cpu_ticks $wpid)
k1=$(metric outpost_store_commit_seconds_count)
w1=$(disk_written "$T")
echo "bench: w2_cpu $(cpu_us "$c0" "$c1" "$accepted") us/event"
echo "bench: w2_commits_per_event $(awk -v k=$((${k1:-0} - ${k0:-0})) -v n=$accepted \
	'BEGIN { printf "%.3f", n ? k / n : 0 }') commits"
echo "bench: w2_written_per_event $(awk -v w=$((w1 - w0)) -v n=$accepted \
	'BEGIN { printf "%d", n ? w / n : 0 }') bytes"

# W2 again with a pipeline whose one set step takes two fields: the durable
# path with less of the workers' own work on the same two cores.
a0=$(metric 'outpost_http_requests_total{code="202"}')
c0=$(cpu_ticks $wpid)
run_wrk w2_set "http://127.0.0.1:$port/events-set"
a1=$(metric 'outpost_http_requests_total{code="202"}')
accepted=$((${a1:-0} - ${a0:-0}))
drain events-set
c1=$(cpu_ticks $wpid)
echo "bench: w2_set_accepted_per_s $(awk -v n=$accepted -v s="$secs" 'BEGIN { printf "%d", n / s }') events/s"
echo "bench: w2_set_p99 $p99 ms"
echo "bench: w2_set_refused $bad answers"
echo "bench: w2_set_drained $([ "${q:-1}" -eq 0 ] && [ "${f:-1}" -eq 0 ] && echo 1 || echo 0) bool"
echo "bench: w2_set_cpu $(cpu_us "$c0" "$c1" "$accepted") us/event"
stop_daemon $wpid

# Idle RSS and start to ready with 20 pipelines deployed: 10 sync and 10
# async HTTP pipelines, each with its own jq program.
R="$T/r"
conf "$R" info
i=1
while [ $i -le 10 ]; do
	pipeline "$R" sync$i sync /sync/$i own
	pipeline "$R" async$i async /async/$i own
	i=$((i + 1))
done
start_timed "$R"
first_ms=$ready_ms
# On a new store every program is compiled once to validate it; a restart
# knows them (the known set) and compiles none until they run.
rss_new=$(awk '/^VmRSS:/ { print $2 }' /proc/$dpid/status)
stop_daemon $dpid
times=""
for i in 1 2 3 4 5; do
	start_timed "$R"
	times="$times $ready_ms"
	[ $i -lt 5 ] && stop_daemon $dpid
done
rss=$(awk '/^VmRSS:/ { print $2 }' /proc/$dpid/status)
n=$(curl -s -m 2 "http://127.0.0.1:$admin/metrics" | grep -c '^outpost_queue_depth{')
[ "$n" -eq 20 ] || die "expected 20 pipelines, the daemon reports $n"
echo "bench: idle_rss_20_pipelines $rss KiB"
echo "bench: idle_rss_20_pipelines_new_store $rss_new KiB"
echo "bench: start_to_ready $(echo "$times" | tr ' ' '\n' | grep . | sort -n | sed -n 3p) ms"
echo "bench: start_to_ready_new_store $first_ms ms"

# The same daemon once pipelines with a rest, a db and an sftp step are
# added (SIGHUP): their plugins load, and with them libcurl, libpq, unixODBC
# and libssh2. Nothing runs them: no server is needed.
conn() {
	cat >"$R/p/$1.json" <<JSON
{"name":"$1","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/$1","mode":"async"}},
 "steps":[{"type":"$2","config":{$3}}]}
JSON
}
conn c-rest rest '"url":"http://127.0.0.1:1/x"'
conn c-db db '"connection":"host=127.0.0.1","account":"pg","sql":"SELECT 1"'
conn c-sftp sftp '"host":"127.0.0.1","account":"s","operation":"list","path":"/","hostKey":"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"'
kill -HUP $dpid
dl=$(($(now_ms) + 20000))
while [ "$(curl -s -m 2 "http://127.0.0.1:$admin/metrics" | grep -c '^outpost_queue_depth{')" -ne 23 ]; do
	[ "$(now_ms)" -lt $dl ] || die "the pipelines with connectors were not deployed: $(tail -3 "$R/d.log")"
	sleep 0.01 # poll interval, bounded by the deadline
done
while grep -qx op-jq-warm /proc/$dpid/task/*/comm 2>/dev/null && [ "$(now_ms)" -lt $dl ]; do
	sleep 0.01 # poll interval, bounded by the deadline
done
echo "bench: idle_rss_with_connectors $(awk '/^VmRSS:/ { print $2 }' /proc/$dpid/status) KiB"
stop_daemon $dpid
echo "# bench_http: load average $(cut -d' ' -f1-3 /proc/loadavg) after the run"
