# The SAP test peer of tests/e2e/sap.sh, checked on its own before the SAP
# connector's tests rely on it: Basic auth is required, V2 and V4 reads with
# query options answer in their envelopes, server-driven paging hands out
# __next / @odata.nextLink and reaches every row, the CSRF fetch gives a
# token and a session cookie, writes need both (403 "Required" otherwise),
# reset-sessions invalidates the token, A_SalesOrder has ETags, $batch
# works, business errors come in SAP's error body (V1/302), sap_stop ends
# the server, and a second start with SAP_PEER_ORDERS=10000 and a short CSRF
# TTL serves 10,000 orders through paging and expires the token. Nothing is
# written into tests/peers/sap but node_modules and .run.
# shellcheck disable=SC2016 # OData's $options and jq's filters are literal
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=sap.sh
. "$(dirname "$0")/sap.sh"

# req CURL_ARGS...: one request; sets $code (HTTP status, 000 when none
# came), $out (the body, for lib.sh's expect_json) and $T/hdr (headers).
req() {
	code=$(curl -s --max-time 30 -o "$T/body" -D "$T/hdr" -w '%{http_code}' "$@")
	out=$(cat "$T/body")
}

# auth_req CURL_ARGS...: req with the peer's Basic credentials.
auth_req() {
	req -u "$sap_user:$sap_password" "$@"
}

# expect_code N: the last request answered N.
expect_code() {
	checks=$((checks + 1))
	[ "$code" = "$1" ] || fail "${what:-}: HTTP $code, expected $1; body: $(head -c 400 "$T/body")"
}

# header NAME: the last request's response header NAME (the last one sent).
header() {
	awk -v n="$1" -F': ' 'tolower($1) == tolower(n) { v = $2 } END { print v }' "$T/hdr" |
		tr -d '\r'
}

# expect_header NAME VALUE: the last response had header NAME: VALUE.
expect_header() {
	checks=$((checks + 1))
	_h=$(header "$1")
	[ "$_h" = "$2" ] || fail "${what:-}: header $1 is '$_h', expected '$2'"
}

# csrf_fetch URL JAR: fetches a token with a fresh session cookie in JAR;
# sets $token (empty if none came).
csrf_fetch() {
	rm -f "$2"
	auth_req -c "$2" -H 'X-CSRF-Token: Fetch' "$1"
	token=$(header x-csrf-token)
}

# post_bad_order TOKEN JAR: POSTs a sales order whose sold-to party does not
# exist: 400 V1/302 when the token is valid, 403 when it is not (the CSRF
# check comes first), and no data changes either way.
post_bad_order() {
	auth_req -b "$2" -H "X-CSRF-Token: $1" -H 'Content-Type: application/json' \
		-H 'Accept: application/json' -d '{"SoldToParty":"999"}' \
		"$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder"
}

# read_pages VERSION URL: follows the pages of an entity set from URL to the
# end (at most 100 pages), V2 (__next) or V4 (@odata.nextLink); sets $pages
# and writes the SalesOrder keys, one per line, to $T/keys.
read_pages() {
	_url=$2
	pages=0
	: >"$T/keys"
	while [ -n "$_url" ] && [ $pages -lt 100 ]; do
		auth_req "$_url"
		[ "$code" = 200 ] || {
			fail "${what:-}: page $pages: HTTP $code: $(head -c 400 "$T/body")"
			return
		}
		pages=$((pages + 1))
		if [ "$1" = v2 ]; then
			jq -r '.d.results[].SalesOrder' "$T/body" >>"$T/keys"
			# The adapter writes localhost into links; the peer is on 127.0.0.1.
			_url=$(jq -r '.d.__next // empty' "$T/body" | sed "s#^http://localhost:$sap_port/#$sap_url/#")
		else
			jq -r '.value[].SalesOrder' "$T/body" >>"$T/keys"
			# Relative to the service root.
			_url=$(jq -r '."@odata.nextLink" // empty' "$T/body")
			[ -z "$_url" ] || _url=$sap_v4/API_SALES_ORDER_SRV/$_url
		fi
	done
}

# expect_keys N FIRST LAST: $T/keys holds N distinct keys, FIRST to LAST.
expect_keys() {
	checks=$((checks + 1))
	_k="$(wc -l <"$T/keys") $(sort -u "$T/keys" | wc -l) $(sort "$T/keys" | head -n 1) $(sort "$T/keys" | tail -n 1)"
	[ "$_k" = "$1 $1 $2 $3" ] || fail "${what:-}: rows, distinct, first, last: $_k; expected $1 $1 $2 $3"
}

# ms_since NS: milliseconds since NS (from date +%s%N).
ms_since() {
	echo $((($(date +%s%N) - $1) / 1000000))
}

touch "$T/before"
what="sap_start"
checks=$((checks + 1))
t0=$(date +%s%N)
SAP_PEER_MAX_PAGE_SIZE=50 sap_start || fail "$what: the peer did not start"
[ -n "$sap_pid" ] || {
	finish
	exit 1
}
echo "sap_start took $(ms_since "$t0") ms (port $sap_port, SAP_PEER_MAX_PAGE_SIZE=50)"
check "$what: sap_url is '$sap_url'" [ "$sap_url" = "http://127.0.0.1:$sap_port" ]
check "$what: sap_v2 is '$sap_v2'" [ "$sap_v2" = "$sap_url/sap/opu/odata/sap" ]
check "$what: sap_v4 is '$sap_v4'" [ "$sap_v4" = "$sap_url/odata/v4" ]
check "$what: the peer uses sql.js" grep -q 'sqlite-driver=sql.js' "$sap_log"
what="a second sap_start while one runs is refused"
check "$what" eval '! sap_start 2>/dev/null'

what="/healthz needs no credentials"
req "$sap_url/healthz"
expect_code 200
check "$what: body '$out'" [ "$out" = ok ]

what="V2 without credentials"
req "$sap_v2/API_BUSINESS_PARTNER/A_BusinessPartner?\$top=1"
expect_code 401
expect_header WWW-Authenticate 'Basic realm="SAP NetWeaver Application Server [S4H/100]"'
what="V4 \$metadata without credentials"
req "$sap_v4/API_SALES_ORDER_SRV/\$metadata"
expect_code 401
what="a wrong password"
req -u "$sap_user:wrong" "$sap_v2/API_BUSINESS_PARTNER/A_BusinessPartner?\$top=1"
expect_code 401

what="V2 read with \$filter, \$select, \$top"
auth_req -G "$sap_v2/API_BUSINESS_PARTNER/A_BusinessPartner" \
	--data-urlencode "\$filter=BusinessPartnerCategory eq '2'" \
	--data-urlencode '$select=BusinessPartner,BusinessPartnerCategory' \
	--data-urlencode '$top=3' --data-urlencode '$format=json'
expect_code 200
expect_json '.d.results | length' 3
expect_json '[.d.results[].BusinessPartnerCategory] | unique' '["2"]'
expect_json '[.d.results[] | keys - ["__metadata"]] | unique' '[["BusinessPartner","BusinessPartnerCategory"]]'
expect_json '.d.results[0].BusinessPartner' '"1000001"'

what="V4 read"
auth_req "$sap_v4/API_SALES_ORDER_SRV/A_SalesOrder?\$filter=SoldToParty%20eq%20'1000001'&\$select=SalesOrder,SoldToParty&\$top=2"
expect_code 200
expect_json '.value | length' 2
expect_json '[.value[].SoldToParty] | unique' '["1000001"]'
expect_json '."@odata.context"' '"$metadata#A_SalesOrder"'

what="V2 paging, SAP_PEER_MAX_PAGE_SIZE=50"
auth_req "$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder?\$select=SalesOrder&\$format=json"
expect_code 200
expect_json '.d.results | length' 50
expect_json '.d.__next | test("[?&]\\$skiptoken=50($|&)")' true
read_pages v2 "$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder?\$select=SalesOrder&\$format=json"
expect_keys 200 5000001 5000200
echo "V2: 200 orders in $pages pages"
what="V4 paging, SAP_PEER_MAX_PAGE_SIZE=50"
auth_req "$sap_v4/API_SALES_ORDER_SRV/A_SalesOrder?\$select=SalesOrder"
expect_code 200
expect_json '.value | length' 50
expect_json '."@odata.nextLink" | test("[?&]%24skiptoken=50($|&)")' true
read_pages v4 "$sap_v4/API_SALES_ORDER_SRV/A_SalesOrder?\$select=SalesOrder"
expect_keys 200 5000001 5000200
what="V2 \$top under the page size is not paged"
auth_req "$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder?\$select=SalesOrder&\$top=7&\$format=json"
expect_code 200
expect_json '[(.d.results | length), .d.__next]' '[7,null]'

what="CSRF token fetch"
csrf_fetch "$sap_v2/API_BUSINESS_PARTNER/" "$T/jar"
expect_code 200
check "$what: token '$token'" [ "${#token}" -ge 16 ]
check "$what: no session cookie in the jar" grep -q $'\tSAP_SESSIONID_S4H_100\t' "$T/jar"
check "$what: no sap-usercontext cookie in the jar" grep -q $'\tsap-usercontext\tsap-client=100$' "$T/jar"
tok1=$token
what="a second fetch in the session"
auth_req -b "$T/jar" -H 'X-CSRF-Token: Fetch' "$sap_v4/API_SALES_ORDER_SRV/"
expect_code 200
expect_header x-csrf-token "$tok1"

what="POST without a token"
auth_req -b "$T/jar" -H 'Content-Type: application/json' -d '{"OrganizationBPName1":"No Token AG"}' \
	"$sap_v2/API_BUSINESS_PARTNER/A_BusinessPartner"
expect_code 403
expect_header x-csrf-token Required
check "$what: body '$out'" [ "$out" = "CSRF token validation failed" ]
what="POST with the token but no session cookie"
auth_req -H "X-CSRF-Token: $tok1" -H 'Content-Type: application/json' \
	-d '{"OrganizationBPName1":"No Cookie AG"}' "$sap_v2/API_BUSINESS_PARTNER/A_BusinessPartner"
expect_code 403
expect_header x-csrf-token Required
what="POST with a wrong token"
auth_req -b "$T/jar" -H "X-CSRF-Token: x$tok1" -H 'Content-Type: application/json' \
	-d '{"OrganizationBPName1":"Bogus AG"}' "$sap_v2/API_BUSINESS_PARTNER/A_BusinessPartner"
expect_code 403

what="V2 POST with token and cookie"
auth_req -b "$T/jar" -H "X-CSRF-Token: $tok1" -H 'Content-Type: application/json' \
	-H 'Accept: application/json' -d '{"OrganizationBPName1":"Harness Test AG"}' \
	"$sap_v2/API_BUSINESS_PARTNER/A_BusinessPartner"
expect_code 201
expect_json '.d | [.BusinessPartner, .BusinessPartnerFullName, .CreatedByUser]' '["1000051","Harness Test AG","alice"]'
what="the new partner reads back"
auth_req "$sap_v4/API_BUSINESS_PARTNER/A_BusinessPartner('1000051')?\$select=BusinessPartnerFullName"
expect_code 200
expect_json '.BusinessPartnerFullName' '"Harness Test AG"'

what="V4 POST with the same token"
auth_req -b "$T/jar" -H "X-CSRF-Token: $tok1" -H 'Content-Type: application/json' \
	-d '{"SoldToParty":"1000002","to_Item":[{"Material":"TG11","RequestedQuantity":2,"RequestedQuantityUnit":"PC","NetAmount":100}]}' \
	"$sap_v4/API_SALES_ORDER_SRV/A_SalesOrder"
expect_code 201
expect_json '[.SalesOrder, .TotalNetAmount]' '["5000201",100]'

what="A_SalesOrder has an ETag"
auth_req "$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder('5000201')?\$format=json"
expect_code 200
etag=$(header ETag)
expect_json '.d.__metadata.etag | startswith("W/\"")' true
check "$what: header ETag '$etag' is not __metadata.etag" \
	[ "$(jq -r .d.__metadata.etag "$T/body")" = "$etag" ]
what="PATCH without If-Match"
auth_req -b "$T/jar" -H "X-CSRF-Token: $tok1" -H 'Content-Type: application/json' -X PATCH \
	-d '{"PurchaseOrderByCustomer":"PO-H"}' "$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder('5000201')"
expect_code 428
what="PATCH with a stale If-Match"
auth_req -b "$T/jar" -H "X-CSRF-Token: $tok1" -H 'Content-Type: application/json' -X PATCH \
	-H 'If-Match: W/"2000-01-01T00:00:00.000Z"' -d '{"PurchaseOrderByCustomer":"PO-H"}' \
	"$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder('5000201')"
expect_code 412
what="PATCH with the ETag"
auth_req -b "$T/jar" -H "X-CSRF-Token: $tok1" -H 'Content-Type: application/json' -X PATCH \
	-H "If-Match: $etag" -d '{"PurchaseOrderByCustomer":"PO-H"}' \
	"$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder('5000201')"
expect_code 204

what="SAP error body for a sold-to party that does not exist"
post_bad_order "$tok1" "$T/jar"
expect_code 400
expect_json '.error | [.code, .message.lang, .message.value, .target]' \
	'["V1/302","en","Sold-to party 999 does not exist","SoldToParty"]'
expect_json '.error.innererror.errordetails[0].code' '"V1/302"'

what="V2 \$batch"
printf '%s\r\n' '--batch_1' 'Content-Type: application/http' 'Content-Transfer-Encoding: binary' '' \
	'GET A_SalesOrder?$top=2&$select=SalesOrder HTTP/1.1' 'Accept: application/json' '' '' \
	'--batch_1' 'Content-Type: multipart/mixed; boundary=changeset_1' '' \
	'--changeset_1' 'Content-Type: application/http' 'Content-Transfer-Encoding: binary' '' \
	"MERGE A_SalesOrder('5000003') HTTP/1.1" 'Content-Type: application/json' 'If-Match: *' '' \
	'{"PurchaseOrderByCustomer":"PO-BATCH"}' '--changeset_1--' '' '--batch_1--' >"$T/batch"
auth_req -b "$T/jar" -H "X-CSRF-Token: $tok1" -H 'Content-Type: multipart/mixed; boundary=batch_1' \
	--data-binary @"$T/batch" "$sap_v2/API_SALES_ORDER_SRV/\$batch"
expect_code 202
check "$what: no '200 OK' part: $out" grep -q '^HTTP/1.1 200 OK' "$T/body"
check "$what: no '204 No Content' part: $out" grep -q '^HTTP/1.1 204 No Content' "$T/body"
auth_req "$sap_v4/API_SALES_ORDER_SRV/A_SalesOrder('5000003')?\$select=PurchaseOrderByCustomer"
expect_json .PurchaseOrderByCustomer '"PO-BATCH"'

what="reset-sessions"
req -X POST "$sap_url/sap-peer/reset-sessions"
expect_code 200
what="the token after reset-sessions"
post_bad_order "$tok1" "$T/jar"
expect_code 403
expect_header x-csrf-token Required
what="a token fetched after reset-sessions"
csrf_fetch "$sap_v2/API_SALES_ORDER_SRV/" "$T/jar"
check "$what: token '$token', the old one was '$tok1'" [ "${token:-$tok1}" != "$tok1" ]
post_bad_order "$token" "$T/jar"
expect_code 400

what="sap_stop"
old_pid=$sap_pid
old_port=$sap_port
sap_stop
check "$what: sap_pid is still '$sap_pid'" [ -z "$sap_pid" ]
check "$what: node $old_pid still runs" eval '! kill -0 "$old_pid" 2>/dev/null'
check "$what: port $old_port still answers" eval '! curl -s --max-time 2 "http://127.0.0.1:$old_port/healthz" >/dev/null'
check "$what: a second sap_stop fails" sap_stop

what="sap_start with SAP_PEER_ORDERS=10000"
checks=$((checks + 1))
t0=$(date +%s%N)
SAP_PEER_ORDERS=10000 SAP_PEER_MAX_PAGE_SIZE=1000 SAP_PEER_CSRF_TTL_S=3 sap_start ||
	fail "$what: the peer did not start"
if [ -n "$sap_pid" ]; then
	echo "sap_start took $(ms_since "$t0") ms with 10,000 orders (port $sap_port)"
	check "$what: the generated CSVs were not removed: $(ls "$T/sap")" \
		eval '! ls -d "$T"/sap/sap-peer-data-* >/dev/null 2>&1'
	auth_req "$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder/\$count"
	expect_code 200
	check "$what: \$count is '$out'" [ "$out" = 10000 ]
	what="10,000 orders through V2 paging (SAP_PEER_MAX_PAGE_SIZE=1000)"
	t0=$(date +%s%N)
	read_pages v2 "$sap_v2/API_SALES_ORDER_SRV/A_SalesOrder?\$format=json"
	echo "V2: 10,000 orders in $pages pages, $(ms_since "$t0") ms"
	expect_keys 10000 5000001 5010000
	# 10 full pages; CAP adds an empty 11th when the last one was full.
	check "$what: $pages pages" [ "$pages" = 10 -o "$pages" = 11 ]

	what="SAP_PEER_CSRF_TTL_S=3"
	csrf_fetch "$sap_v4/API_SALES_ORDER_SRV/" "$T/jar"
	post_bad_order "$token" "$T/jar"
	expect_code 400
	t0=$(date +%s%N)
	expired() {
		post_bad_order "$token" "$T/jar"
		[ "$code" = 403 ]
	}
	check "$what: the token still worked after 15 s" wait_until 15 expired
	echo "the token expired after $(ms_since "$t0") ms"
	check "$what: it expired after $(ms_since "$t0") ms, in under 1 s" [ "$(ms_since "$t0")" -ge 1000 ]
fi

what="nothing written into tests/peers/sap"
written=$(find "$TOP/tests/peers/sap" \( -path "$TOP/tests/peers/sap/node_modules" -o \
	-path "$TOP/tests/peers/sap/.run" \) -prune -o ! -type d -newer "$T/before" -print)
check "$what: $written" [ -z "$written" ]

if [ "$failures" -ne 0 ]; then
	echo "peer log:" >&2
	sed 's/^/    /' "$sap_log" >&2
fi
finish
