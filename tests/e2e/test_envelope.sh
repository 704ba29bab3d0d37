# outpostctl keygen, sign and verify: signing keys (the private one 0600,
# never overwritten), envelopes signed over the document's exact bytes, and
# verify refusing what an agent must refuse: a changed payload, a key it
# does not trust, a replayed seq, documents without seq.
. "$(dirname "$0")/lib.sh"

cd "$T" || exit 1
what="keygen: a private key 0600 and its public half; the key id printed"
run_ctl keygen ops.key
expect_rc 0
kid=$out
check "key id $kid" sh -c "printf '%s' '$kid' | grep -Eq '^ed25519-[0-9a-f]{16}$'"
check "mode of the private key" test "$(stat -c %a ops.key)" = 600
expect_file_json() { out=$(cat "$1"); expect_json "$2" "$3"; }
expect_file_json ops.key.pub '[.alg, .kid, (.public | length), has("seed")]' "[\"ed25519\",\"$kid\",44,false]"
expect_file_json ops.key '[.kid, (.seed | length)]' "[\"$kid\",44]"
run_ctl keygen ops.key
expect_rc 2
expect_err_has 'never overwritten'
run_ctl keygen next.key --kid rotation-2
check "the --kid is used" test "$(jq -r .kid next.key.pub)" = rotation-2

what="sign and verify: the document comes back as signed"
printf '{"seq":5,"pipelines":[{"name":"a","version":"1"}]}' >doc.json
run_ctl sign --key ops.key doc.json
expect_rc 0
printf '%s\n' "$out" >env.json
expect_json '[.alg, .kid, (.payload | @base64d)]' "[\"ed25519\",\"$kid\",\"{\\\"seq\\\":5,\\\"pipelines\\\":[{\\\"name\\\":\\\"a\\\",\\\"version\\\":\\\"1\\\"}]}\"]"
run_ctl verify --pub next.key.pub --pub ops.key.pub --last-seq 4 env.json
expect_rc 0
expect_json '.pipelines[0].name' '"a"'

what="verify refuses a changed payload, an untrusted key, a replay"
jq -c '.payload = ("{\"seq\":6,\"pipelines\":[]}" | @base64)' env.json >forged.json
run_ctl verify --pub ops.key.pub forged.json
expect_rc 1
expect_err_has 'refused (auth): the signature does not verify'
run_ctl verify --pub next.key.pub env.json
expect_rc 1
expect_err_has "signed with key \"$kid\", which is not one of the 1 trusted keys"
run_ctl verify --pub ops.key.pub --last-seq 5 env.json
expect_rc 1
expect_err_has 'refused (rejected): seq 5 is not above 5'

what="sign refuses what no agent would take"
printf '{"pipelines":[]}' >noseq.json
run_ctl sign --key ops.key noseq.json
expect_rc 2
expect_err_has 'the document needs "seq"'
run_ctl sign --key ops.key.pub doc.json
expect_rc 2
expect_err_has 'not an Ed25519 private key file'
check "no secret on any output" sh -c "! grep -rqF \"\$(jq -r .seed ops.key)\" '$T/out' '$T/err'"

finish
