# The sap step end to end through outpostctl run, against the S/4HANA-like
# OData peer (tests/peers/sap, SAP's CAP runtime) on loopback: V2 and V4
# reads with $filter/$select/$expand/$orderby, server paging followed to the
# end or a limit, values from messages as literals (an injection attempt),
# create, update with If-Match ETags, delete, $batch with change sets, the
# CSRF token fetched once, reused and fetched again when the server drops
# the session, SAP error bodies as the step's error, and bad logons.
. "$(dirname "$0")/lib.sh"
. "$E2E_DIR/sap.sh"
. "$E2E_DIR/peer.sh"

SAP_PEER_MAX_PAGE_SIZE=30 sap_start || exit 1
SO=$sap_v2/API_SALES_ORDER_SRV
BP=$sap_v2/API_BUSINESS_PARTNER
SO4=$sap_v4/API_SALES_ORDER_SRV

agent_config
account s4 "{\"type\":\"basic\",\"username\":\"$sap_user\",\"password\":\"$sap_password\"}"
account s4-wrong '{"type":"basic","username":"alice","password":"not-hers"}'

# sap NAME MEMBERS: a pipeline of one sap step with config {MEMBERS}.
sap() { step_pipeline "$1" sap "\"account\":\"s4\",$2"; }
# stats: the peer's counters ({csrfFetches, requests}).
stats() { curl -s "$sap_url/sap-peer/stats"; }

what="V2 read: \$filter from the message, \$select, \$orderby, \$top; plain entities"
sap rd "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"filter\":\"SoldToParty eq {{ message.bp }}\",\"select\":\"SalesOrder,SoldToParty,TotalNetAmount,CreationDate\",\"orderby\":\"SalesOrder desc\",\"top\":2"
run rd '{"bp":"1000001"}'
expect_rc 0
expect_json '.value | length' '2'
expect_json '[.value[].SoldToParty] | unique' '["1000001"]'
expect_json '.value[0].SalesOrder > .value[1].SalesOrder' 'true'
expect_json '.value[0] | [has("SalesOrder","CreationDate","TotalNetAmount","to_Item","__metadata","PurchaseOrderByCustomer")]' '[true,true,true,false,false,false]'
expect_json '.value[0].CreationDate | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}(\\.[0-9]+)?Z$")' 'true'
expect_json '.pages' '1'

what="a value from the message stays a literal: an injection attempt matches nothing"
run rd '{"bp":"x'"'"' or SoldToParty ne '"'"'"}'
expect_rc 0
expect_json '.value' '[]'

what="V2 read by key with \$expand: one entity, its expanded collection an array"
sap key "\"service\":\"$BP\",\"entitySet\":\"A_BusinessPartner\",\"key\":\"{{ message.id }}\",\"expand\":\"to_BusinessPartnerAddress\""
run key '{"id":"1000001"}'
expect_rc 0
expect_json '.value.BusinessPartner' '"1000001"'
expect_json '.value.to_BusinessPartnerAddress | type' '"array"'
expect_json '.value.to_BusinessPartnerAddress[0].BusinessPartner' '"1000001"'
expect_json '.value | has("__metadata")' 'false'

what="read through navigation: to many (an array) and to one (the entity)"
sap nav "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000001\",\"navigation\":\"to_Item\""
run nav
expect_json '[(.value | type), .value[0].SalesOrder]' '["array","5000001"]'
sap nav1 "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrderItem\",\"key\":{\"SalesOrder\":\"5000001\",\"SalesOrderItem\":\"10\"},\"navigation\":\"to_SalesOrder\""
run nav1
expect_rc 0
expect_json '[(.value | type), .value.SalesOrder]' '["object","5000001"]'

what="server paging (30 a page) followed to the end, with the count"
sap all "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"select\":\"SalesOrder\",\"count\":true"
run all
expect_rc 0
expect_json '.value | length' '200'
expect_json '[.value[].SalesOrder] | unique | length' '200'
expect_json '.count' '200'
expect_json '.pages' '7'

what="paging stops at limit"
sap lim "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"select\":\"SalesOrder\",\"limit\":45"
run lim
expect_json '[(.value | length), .pages]' '[45,2]'

what="V4: read with a filter, paging through @odata.nextLink, read by key"
sap v4 "\"service\":\"$SO4\",\"version\":\"v4\",\"entitySet\":\"A_SalesOrder\",\"filter\":\"TotalNetAmount gt {{ message.min }}\",\"select\":\"SalesOrder,TotalNetAmount\",\"count\":true"
run v4 '{"min":0}'
expect_rc 0
expect_json '[(.value | length), .count, .pages]' '[200,200,7]'
expect_json '.value[0].TotalNetAmount | type' '"number"'
sap v4key "\"service\":\"$SO4\",\"version\":\"v4\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000001\",\"expand\":\"to_Item\""
run v4key
expect_json '[.value.SalesOrder, (.value.to_Item | length > 0), (.value | has("@odata.context"))]' '["5000001",true,false]'

what="create (V2) with the CSRF token; the answer has the new key and ETag"
before=$(stats)
sap cr "\"service\":\"$SO\",\"operation\":\"create\",\"entitySet\":\"A_SalesOrder\",\"body\":{\"SoldToParty\":\"{{ message.bp }}\",\"PurchaseOrderByCustomer\":\"PO-E2E-1\",\"TransactionCurrency\":\"EUR\",\"to_Item\":[{\"Material\":\"TG11\",\"RequestedQuantity\":\"5\",\"RequestedQuantityUnit\":\"PC\",\"NetAmount\":\"250.00\"}]}"
run cr '{"bp":"1000001"}'
expect_rc 0
expect_json '.status' '201'
expect_json '.value.SalesOrder' '"5000201"'
expect_json '.value.PurchaseOrderByCustomer' '"PO-E2E-1"'
expect_json '(.value["@odata.etag"] // .etag) | type' '"string"'
etag=$(printf '%s' "$out" | jq -r '.value["@odata.etag"] // .etag')
after=$(stats)
check "one token fetch for the write ($before -> $after)" \
	test "$(jq -n "$after.csrfFetches - $before.csrfFetches")" = 1

what="update: If-Match with the ETag from create; without it 428, stale 412"
sap up "\"service\":\"$SO\",\"operation\":\"update\",\"entitySet\":\"A_SalesOrder\",\"key\":\"{{ message.id }}\",\"ifMatch\":\"{{ message.etag }}\",\"body\":{\"PurchaseOrderByCustomer\":\"{{ message.po }}\"}"
run up "{\"id\":\"5000201\",\"etag\":$(jq -Rn --arg e "$etag" '$e'),\"po\":\"PO-E2E-2\"}"
expect_rc 0
expect_json '.status' '204'
run up "{\"id\":\"5000201\",\"etag\":$(jq -Rn --arg e "$etag" '$e'),\"po\":\"PO-E2E-3\"}"
expect_rc 1
expect_err_json '[.code, .class]' '["SAP_ERROR","rejected"]'
expect_err_has '412'
sap up0 "\"service\":\"$SO\",\"operation\":\"update\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000201\",\"body\":{\"PurchaseOrderByCustomer\":\"x\"}"
run up0
expect_err_has '428'
run key '{"id":"1000001"}' # the read still works after errors
sap get1 "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000201\""
run get1
expect_json '.value.PurchaseOrderByCustomer' '"PO-E2E-2"'

what="V2 update with PATCH and with MERGE (the default)"
sap upbp "\"service\":\"$BP\",\"operation\":\"update\",\"entitySet\":\"A_BusinessPartner\",\"key\":\"1000002\",\"updateMethod\":\"PATCH\",\"body\":{\"SearchTerm1\":\"PATCHED\"}"
run upbp
expect_json '.status' '204'
sap upbp2 "\"service\":\"$BP\",\"operation\":\"update\",\"entitySet\":\"A_BusinessPartner\",\"key\":\"1000002\",\"body\":{\"BusinessPartnerGrouping\":\"BP01\"}"
run upbp2
expect_json '.status' '204'
sap bp2 "\"service\":\"$BP\",\"entitySet\":\"A_BusinessPartner\",\"key\":\"1000002\",\"select\":\"SearchTerm1,BusinessPartnerGrouping\""
run bp2
expect_json '[.value.SearchTerm1, .value.BusinessPartnerGrouping]' '["PATCHED","BP01"]'

what="SAP error bodies become the step's error: code and message"
run cr '{"bp":"999"}'
expect_rc 1
expect_err_json '[.code, .class]' '["SAP_ERROR","rejected"]'
expect_err_has 'SAP error V1/302: Sold-to party 999 does not exist'
run key '{"id":"9999999"}'
expect_err_json '.class' '"notfound"'

what="the token is reused within a run and fetched again when the session is dropped"
pipeline csrf "{\"name\":\"csrf\",\"version\":\"1\",\"steps\":[
 {\"type\":\"sap\",\"output\":\"a\",\"config\":{\"account\":\"s4\",\"service\":\"$SO\",\"operation\":\"create\",\"entitySet\":\"A_SalesOrder\",\"body\":{\"SoldToParty\":\"1000003\"}}},
 {\"type\":\"sap\",\"output\":\"b\",\"config\":{\"account\":\"s4\",\"service\":\"$SO\",\"operation\":\"create\",\"entitySet\":\"A_SalesOrder\",\"body\":{\"SoldToParty\":\"1000003\"}}},
 {\"type\":\"rest\",\"output\":\"r\",\"config\":{\"url\":\"$sap_url/sap-peer/reset-sessions\",\"method\":\"POST\"}},
 {\"type\":\"sap\",\"output\":\"c\",\"config\":{\"account\":\"s4\",\"service\":\"$SO\",\"operation\":\"create\",\"entitySet\":\"A_SalesOrder\",\"body\":{\"SoldToParty\":\"1000003\"}}}]}"
before=$(stats)
run csrf
expect_rc 0
expect_json '[.a.status, .b.status, .c.status]' '[201,201,201]'
after=$(stats)
# Steps a and b each fetch (a session per step); c is refused once and
# fetches again.
check "token fetches ($before -> $after)" \
	test "$(jq -n "$after.csrfFetches - $before.csrfFetches")" = 3

what="delete with If-Match; the entity is gone"
sap del "\"service\":\"$SO\",\"operation\":\"delete\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000201\",\"ifMatch\":\"*\""
run del
expect_rc 0
expect_json '.status' '204'
run get1
expect_err_json '.class' '"notfound"'

what="\$batch: a GET and a change set of a create and an update, all committed"
sap batch "\"service\":\"$SO\",\"operation\":\"batch\",\"requests\":\"{{ message.ops }}\""
run batch '{"ops":[
 {"method":"GET","path":"A_SalesOrder?$top=2&$select=SalesOrder"},
 {"method":"POST","path":"A_SalesOrder","body":{"SoldToParty":"1000002","PurchaseOrderByCustomer":"PO-BATCH"},"changeset":"c1"},
 {"method":"MERGE","path":"A_SalesOrder('"'"'5000003'"'"')","body":{"PurchaseOrderByCustomer":"PO-MERGED"},"ifMatch":"*","changeset":"c1"}]}'
expect_rc 0
expect_json '[.responses[].status]' '[200,201,204]'
expect_json '.responses[0].value | length' '2'
expect_json '.responses[1].value.PurchaseOrderByCustomer' '"PO-BATCH"'
sap so3 "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000003\""
run so3
expect_json '.value.PurchaseOrderByCustomer' '"PO-MERGED"'

what="\$batch: a failing change set rolls back whole and fails the step"
run batch '{"ops":[
 {"method":"MERGE","path":"A_SalesOrder('"'"'5000004'"'"')","body":{"PurchaseOrderByCustomer":"PO-NEVER"},"ifMatch":"*","changeset":"c1"},
 {"method":"POST","path":"A_SalesOrder","body":{"SoldToParty":"999"},"changeset":"c1"}]}'
expect_rc 1
expect_err_json '[.code, .class]' '["SAP_ERROR","rejected"]'
expect_err_has 'V1/302'
sap so4 "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000004\""
run so4
expect_json '.value.PurchaseOrderByCustomer != "PO-NEVER"' 'true'
sap batchlax "\"service\":\"$SO\",\"operation\":\"batch\",\"failOnError\":false,\"requests\":\"{{ message.ops }}\""
run batchlax '{"ops":[{"method":"GET","path":"A_SalesOrder('"'"'5000001'"'"')"},{"method":"POST","path":"A_SalesOrder","body":{"SoldToParty":"999"}}]}'
expect_rc 0
expect_json '[.responses[].status]' '[200,400]'
expect_json '.responses[1].error.code' '"V1/302"'

what="V4 create, update (PATCH), \$batch and delete"
sap cr4 "\"service\":\"$SO4\",\"version\":\"v4\",\"operation\":\"create\",\"entitySet\":\"A_SalesOrder\",\"body\":{\"SoldToParty\":\"1000002\",\"PurchaseOrderByCustomer\":\"PO-V4\"}"
run cr4
expect_rc 0
expect_json '.status' '201'
id4=$(printf '%s' "$out" | jq -r '.value.SalesOrder')
sap up4 "\"service\":\"$SO4\",\"version\":\"v4\",\"operation\":\"update\",\"entitySet\":\"A_SalesOrder\",\"key\":\"$id4\",\"ifMatch\":\"*\",\"body\":{\"PurchaseOrderByCustomer\":\"PO-V4-2\"}"
run up4
expect_rc 0
expect_json '[.status, .value.PurchaseOrderByCustomer]' '[200,"PO-V4-2"]'
sap b4 "\"service\":\"$SO4\",\"version\":\"v4\",\"operation\":\"batch\",\"requests\":[{\"method\":\"GET\",\"path\":\"A_SalesOrder('$id4')\"},{\"method\":\"DELETE\",\"path\":\"A_SalesOrder('$id4')\",\"ifMatch\":\"*\"}]"
run b4
expect_rc 0
expect_json '[.responses[].status]' '[200,204]'
expect_json '.responses[0].value.PurchaseOrderByCustomer' '"PO-V4-2"'
sap b4lax "\"service\":\"$SO4\",\"version\":\"v4\",\"operation\":\"batch\",\"failOnError\":false,\"requests\":[{\"method\":\"POST\",\"path\":\"A_SalesOrder\",\"body\":{\"SoldToParty\":\"999\"}},{\"method\":\"GET\",\"path\":\"A_SalesOrder('5000001')\"}]"
run b4lax
expect_rc 0
expect_json '[.responses[].status, .responses[0].error.code]' '[400,200,"V1/302"]'

what="a wrong password is an auth error naming the server's answer"
step_pipeline bad sap "\"account\":\"s4-wrong\",\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"top\":1"
run bad
expect_rc 1
expect_err_json '[.code, .class]' '["SAP_ERROR","auth"]'
expect_err_has '401'
step_pipeline badw sap "\"account\":\"s4-wrong\",\"service\":\"$SO\",\"operation\":\"delete\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000001\",\"ifMatch\":\"*\""
run badw
expect_err_json '[.code, .class]' '["SAP_CSRF","auth"]'

what="OAuth2 client credentials: a token per step, cached for its calls; reads and writes"
account s4-oauth "{\"type\":\"oauth2\",\"tokenUrl\":\"$sap_url/sap-peer/oauth/token\",\"clientId\":\"outpost-client\",\"clientSecret\":\"client-secret\"}"
pipeline oauth "{\"name\":\"oauth\",\"version\":\"1\",\"steps\":[
 {\"type\":\"for-each\",\"output\":\"reads\",\"config\":{\"items\":\"{{ [1,2,3] }}\",\"steps\":[
   {\"type\":\"sap\",\"config\":{\"account\":\"s4-oauth\",\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000002\"}}]}},
 {\"type\":\"set\",\"output\":\"r\",\"config\":{\"template\":\"{{ message.reads[2] }}\"}},
 {\"type\":\"sap\",\"output\":\"w\",\"config\":{\"account\":\"s4-oauth\",\"service\":\"$SO\",\"operation\":\"update\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000002\",\"ifMatch\":\"{{ message.r.value['@odata.etag'] }}\",\"body\":{\"PurchaseOrderByCustomer\":\"PO-OAUTH\"}}}]}"
before=$(stats)
run oauth
expect_rc 0
expect_json '[.r.value.SalesOrder, .w.status]' '["5000002",204]'
after=$(stats)
# A step keeps its token for all its calls: one for the three reads, one
# for the update.
check "OAuth2 tokens fetched ($before -> $after)" \
	test "$(jq -n "$after.tokens - $before.tokens")" = 2
sap so2 "\"service\":\"$SO\",\"entitySet\":\"A_SalesOrder\",\"key\":\"5000002\""
run so2
expect_json '.value.PurchaseOrderByCustomer' '"PO-OAUTH"'

what="hostile peers: not JSON, garbage, cut short, too large, no answer"
http_peer_start BAD_PORT || exit 1
BAD=http://127.0.0.1:$BAD_PORT
bad() { step_pipeline "$1" sap "\"service\":\"$BAD\",\"entitySet\":\"$2\",\"timeoutMs\":${3:-10000}"; }
bad nj badjson
run nj
expect_err_json '[.code, .class]' '["SAP_BAD_RESPONSE","parse"]'
bad txt text
run txt
expect_err_json '[.code, .class]' '["SAP_BAD_RESPONSE","parse"]'
bad gb garbage
run gb
expect_err_json '.class' '"parse"'
bad cut truncated
run cut
expect_err_json '.class' '"io"'
step_pipeline big sap "\"service\":\"$BAD\",\"entitySet\":\"huge\",\"params\":{\"bytes\":100000},\"maxResponseBytes\":50000"
run big
expect_err_json '[.code, .class]' '["HTTP_RESPONSE_TOO_LARGE","limit"]'
bad hang hang 300
run hang
expect_err_json '[.code, .class]' '["HTTP_TIMEOUT","timeout"]'

what="bad configs are refused at load, naming the key"
step_pipeline cfg sap "\"service\":\"ftp://x\",\"operation\":\"update\",\"entitySet\":\"A b\",\"filter\":\"A eq 'x\""
run cfg
expect_rc 2
expect_err_has 'steps[0].config.service: expected an absolute http:// or https:// URL'
expect_err_has 'steps[0].config.entitySet: "A b" is not an entity set name'
expect_err_has 'steps[0].config.key: update needs the entity'"'"'s key'
expect_err_has 'steps[0].config.filter: column 6: the quote is not closed'
step_pipeline cfg2 sap "\"service\":\"http://alice:alice-secret@127.0.0.1/x\",\"operation\":\"create\",\"entitySet\":\"A\",\"key\":\"1\""
run cfg2
expect_rc 2
expect_err_has 'steps[0].config.service: user names and passwords go in an account, not in the URL'
expect_err_has 'steps[0].config.key: create takes a key only with navigation'

what="no secret in any error text"
check "a password was printed" sh -c "! grep -q -e '$sap_password' -e not-hers '$T/errors'"

finish
