#!/bin/bash
# sap: 10,000 sales orders read through server paging (1,000 a page) from
# the S/4HANA-like OData peer (tests/peers/sap), over OData V2 and V4, by a
# sap read step, against curl and jq following the same next links in the
# same run. The agent's side is `outpostctl run` of one pipeline, process
# start and the account included. The HTTP requests are counted by the
# peer. Prints "bench: NAME VALUE UNIT" lines.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
OUTPOSTCTL=${OUTPOSTCTL:-$top/build/release/outpostctl}
export OUTPOSTCTL
N=${BENCH_SAP_ORDERS:-10000}
PAGE=${BENCH_SAP_PAGE:-1000}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "bench: skip bench_sap: node and npm are needed for the SAP test peer"
	exit 0
fi
[ -x "$OUTPOSTCTL" ] || {
	echo "bench_sap: $OUTPOSTCTL not found (make VARIANT=release)" >&2
	exit 1
}
# shellcheck source=../e2e/lib.sh
. "$top/tests/e2e/lib.sh"
# shellcheck source=../e2e/sap.sh
. "$top/tests/e2e/sap.sh"
SAP_PEER_ORDERS=$N SAP_PEER_MAX_PAGE_SIZE=$PAGE sap_start >/dev/null || exit 1

agent_config
printf '{"type":"basic","username":"%s","password":"%s"}' "$sap_user" "$sap_password" |
	"$OUTPOSTCTL" account set s4 --config "$T/outpost.conf" >/dev/null || exit 1

now() { date +%s%N; }
rate() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%.0f", n / (ns / 1e9) }'; }
requests() { curl -s "$sap_url/sap-peer/stats" | jq .requests; }

# curl_read URL NEXT VALUES BASE: reads every page from URL on, counting
# the entities at VALUES and following the next link at NEXT (jq paths)
# on the peer's own origin, or relative to BASE, as the agent does; prints
# the entities read.
curl_read() {
	_url=$1 _n=0
	while [ -n "$_url" ]; do
		curl -sf -u "$sap_user:$sap_password" -H 'Accept: application/json' "$_url" >"$T/page" ||
			return 1
		_n=$((_n + $(jq "$3 | length" "$T/page")))
		_next=$(jq -r "$2 // empty" "$T/page")
		case "$_next" in
		"") _url="" ;;
		http*) _url=$sap_url/${_next#http*://*/} ;;
		*) _url=$4/$_next ;;
		esac
	done
	echo "$_n"
}

# one VERSION SERVICE_URL NEXT VALUES
one() {
	cat >"$T/read.json" <<JSON
{"name":"read","version":"1","settings":{"timeoutMs":600000},"steps":[
 {"type":"sap","config":{"service":"$2","version":"$1","account":"s4","entitySet":"A_SalesOrder","timeoutMs":600000}},
 {"type":"transform","config":{"program":"{n: (.value | length), pages}"}}]}
JSON
	# Each side once before measuring: the peer's caches are warm for both.
	curl_read "$2/A_SalesOrder" "$3" "$4" "$2" >/dev/null || return 1
	r0=$(requests)
	t0=$(now)
	got=$(curl_read "$2/A_SalesOrder" "$3" "$4" "$2") || return 1
	t1=$(now)
	r1=$(requests)
	"$OUTPOSTCTL" run "$T/read.json" --config "$T/outpost.conf" --compact >"$T/warm.out" || {
		cat "$T/warm.out"
		return 1
	}
	r2=$(requests)
	t2=$(now)
	"$OUTPOSTCTL" run "$T/read.json" --config "$T/outpost.conf" --compact >"$T/read.out" || {
		cat "$T/read.out"
		return 1
	}
	t3=$(now)
	r3=$(requests)
	n=$(jq .n "$T/read.out")
	[ "$n" = "$N" ] && [ "$got" = "$N" ] || {
		echo "bench_sap: read $n (agent) and $got (curl) orders, expected $N" >&2
		return 1
	}
	agent=$(rate "$N" $((t3 - t2)))
	curl=$(rate "$N" $((t1 - t0)))
	echo "bench: sap_read_${1}_agent $agent entities/s"
	echo "bench: sap_read_${1}_agent_requests $((r3 - r2)) requests ($(jq .pages "$T/read.out") pages of $PAGE)"
	echo "bench: sap_read_${1}_curl $curl entities/s ($((r1 - r0)) requests)"
	echo "bench: sap_read_${1}_ratio $(awk -v a="$agent" -v b="$curl" 'BEGIN { printf "%.2f", a / b }') (agent / curl and jq)"
}

one v2 "$sap_v2/API_SALES_ORDER_SRV" '.d.__next' '.d.results' || exit 1
one v4 "$sap_v4/API_SALES_ORDER_SRV" '."@odata.nextLink"' '.value' || exit 1
