# A full disk under an async HTTP trigger: the store lives on a 4 MiB tmpfs
# (its map may grow far past that) and a gated pipeline keeps the queue from
# draining. A burst of 14 events of 256 KiB at once, then 64 KiB events one
# by one, fill the filesystem. The trigger answers 503 STORE_FULL with
# Retry-After short of disk_reserve, no commit fails, the agent stays up and
# says why in its log; when the peer answers, every event that got a 202
# runs, and the trigger accepts again. The test runs in a mount namespace of
# its own (unshare -m), so the small filesystem is nobody else's; it needs
# root.
if [ -z "${OP_DISK_FULL_NS:-}" ]; then
	if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null 2>&1; then
		echo "skip test_disk_full: needs root and unshare to mount a small tmpfs"
		exit 0
	fi
	OP_DISK_FULL_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/peer.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"

mkdir -p "$T/data" "$T/p"
mount -t tmpfs -o size=4m,mode=0700 outpost-e2e "$T/data" || {
	fail "cannot mount a tmpfs on $T/data"
	finish
	exit 1
}
at_exit "umount -l '$T/data'"

http_peer_start P || exit 1

cat >"$T/outpost.conf" <<CONF
[agent]
id = e2e
data_dir = $T/data
pipelines_dir = $T/p
workers = 1
shutdown_timeout = 2s
[store]
map_initial = 1MB
map_max = 256MB
disk_reserve = 1MB
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
CONF
gated_pipeline "$T/p/slow.json" "$P"
# Bodies of 64 and 256 KiB: {"n":N,"pad":PAD}, PAD a string of 65000 or
# 262000 letters x.
head -c 65000 /dev/zero | tr '\0' x >"$T/pad"
head -c 262000 /dev/zero | tr '\0' x >"$T/pad256"

# post N [PAD]: POSTs event N (padded with $T/pad, or PAD); its status line
# and headers in $T/N.head, body in $T/N.out.
post() {
	{ printf '{"n":%s,"pad":"' "$1"; cat "${2:-$T/pad}"; printf '"}'; } >"$T/$1.body"
	curl -s -m 10 -D "$T/$1.head" -o "$T/$1.out" -w '%{http_code}' -X POST \
		-H 'content-type: application/json' --data-binary @"$T/$1.body" \
		"http://127.0.0.1:$port/slow"
}

start_daemon "$T/outpost.conf" "$T/d.log" || {
	fail "outpostd did not start: $(cat "$T/d.log")"
	finish
	exit 1
}
at_exit stop_daemon

what="14 events of 256 KiB at once on the empty disk (3.6 MB of its 4)"
posts=""
for i in $(seq 1 14); do
	{
		post "$i" "$T/pad256"
		echo
	} >"$T/$i.code" &
	posts="$posts $!"
done
# shellcheck disable=SC2086 # one PID a word
wait $posts
accepted=$(cat "$T"/[0-9]*.code | grep -c 202)
refused=$(cat "$T"/[0-9]*.code | grep -c 503)
check "$accepted of 14 accepted" test "$accepted" -ge 2
check "$refused of 14 refused, $accepted accepted: $(cat "$T"/[0-9]*.code | tr '\n' ' ')" \
	test "$refused" -ge 1 -a $((accepted + refused)) -eq 14
check "a commit failed: $(grep 'commit failed' "$T/d.log")" \
	test "$(grep -c 'commit failed' "$T/d.log")" = 0

what="64 KiB events until the disk is full"
n=100 code=""
while [ $n -lt 300 ]; do
	n=$((n + 1))
	code=$(post $n)
	[ "$code" = 202 ] || break
	accepted=$((accepted + 1))
done
check "event $n answered $code, not 503: $(cat "$T/$n.out")" test "$code" = 503
check "no Retry-After: $(cat "$T/$n.head")" grep -qi '^retry-after: ' "$T/$n.head"
check "its error: $(cat "$T/$n.out")" test "$(jq -r .error.code "$T/$n.out")" = STORE_FULL
avail=$(df --output=avail "$T/data" | tail -1)
# New events stop near the reserve (and start again only at twice it); the
# events taken into flight (a lease is a copy) may use the reserve.
check "the disk has $avail KiB free, not near disk_reserve's 1024" \
	test "$avail" -gt 0 -a "$avail" -lt 2304
check "the agent went down" curl -sf -m 5 -o /dev/null "http://127.0.0.1:$admin/healthz"
check "the log does not say why: $(tail -3 "$T/d.log")" \
	grep -q "the disk under $T/data/store has .* free, too little to keep disk_reserve (1.0 MiB)" "$T/d.log"
check "a commit failed: $(grep 'commit failed' "$T/d.log")" \
	test "$(grep -c 'commit failed' "$T/d.log")" = 0
code=$(post $((n + 1)))
check "a second event on the full disk answered $code" test "$code" = 503
check "outpost_store_refusing is $(metric outpost_store_refusing), not 1" \
	test "$(metric outpost_store_refusing)" = 1
free=$(metric outpost_store_disk_free_bytes)
check "outpost_store_disk_free_bytes is $free, df says $avail KiB" \
	test "${free%.*}" -gt 0 -a "${free%.*}" -le $(((avail + 64) * 1024))

what="once the peer answers, every accepted event runs and the trigger accepts again"
curl -s -m 5 -o /dev/null "http://127.0.0.1:$P/open"
ran() { [ "$(metric 'outpost_executions_total{pipeline="slow",status="success"}')" = "$1" ]; }
wait_until 30 ran "$accepted"
check "$(metric 'outpost_executions_total{pipeline="slow",status="success"}') executions, not $accepted" \
	ran "$accepted"
check "the queue holds $(metric 'outpost_queue_depth{pipeline="slow"}')" \
	test "$(metric 'outpost_queue_depth{pipeline="slow"}')" = 0
code=$(post 1000)
check "an event after the drain answered $code: $(cat "$T/1000.out")" test "$code" = 202
wait_until 20 ran $((accepted + 1))
check "the event after the drain did not run" ran $((accepted + 1))

check "the log does not say there is room again: $(tail -3 "$T/d.log")" \
	grep -q "the disk under $T/data/store has room again" "$T/d.log"
check "outpost_store_refusing is $(metric outpost_store_refusing), not 0" \
	test "$(metric outpost_store_refusing)" = 0

[ "$failures" -eq 0 ] || {
	tail -15 "$T/d.log"
	df "$T/data"
	command -v mdb_stat >/dev/null && mdb_stat -ef "$T/data/store" | grep -i "pages\|entries"
} >&2
stop_daemon
check "the agent did not stop cleanly: $(tail -3 "$T/d.log")" test $? -eq 0
finish
