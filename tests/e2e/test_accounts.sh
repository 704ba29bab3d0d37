# outpostctl account set|list|delete end to end, on a generated config: the
# key file and the sealed files are made 0600, no secret reaches a file, the
# output or an error, bad documents are refused by field, and a vault sealed
# with another key is named as such.
. "$(dirname "$0")/lib.sh"

SECRET='Pa55-never-shown-9'
cat >"$T/outpost.conf" <<CONF
[agent]
data_dir = $T/data
[accounts]
key_file = $T/etc/accounts.key
CONF
mkdir -p "$T/etc"
# Every output so far, to look for the secret in.
seen() { printf '%s\n%s\n' "$out" "$err" >>"$T/seen"; }

what="list before any account: no key yet, said so"
run_ctl account list --config "$T/outpost.conf"
seen
expect_rc 2
expect_err_has 'no accounts key'

what="set reads the document from stdin and seals it"
printf '{"type":"basic","username":"svc-erp","password":"%s"}' "$SECRET" >"$T/erp.json"
run_ctl account set erp --config "$T/outpost.conf" --file - <"$T/erp.json"
seen
expect_rc 0
checks=$((checks + 1))
case "$out" in "account erp (basic) sealed with key "*) ;; *) fail "$what: $out" ;; esac
checks=$((checks + 1))
[ "$(stat -c %a "$T/etc/accounts.key")" = 600 ] || fail "$what: key file mode $(stat -c %a "$T/etc/accounts.key")"
checks=$((checks + 1))
[ "$(stat -c %a "$T/data/accounts/erp.acct")" = 600 ] || fail "$what: account file mode"

what="set from a file, an oauth2 account"
printf '{"type":"oauth2","tokenUrl":"https://login.example/token","clientId":"agent-7","clientSecret":"%s"}' \
	"$SECRET" >"$T/api.json"
run_ctl account set api --config "$T/outpost.conf" --file "$T/api.json"
seen
expect_rc 0

what="list shows names, types and users, never a secret"
run_ctl account list --config "$T/outpost.conf" --json
seen
expect_rc 0
expect_json '[.[] | [.name, .type, (.username // .clientId)]]' '[["api","oauth2","agent-7"],["erp","basic","svc-erp"]]'
expect_json '[.[] | keys[]] | unique' '["clientId","name","tokenUrl","type","updated","username"]'
run_ctl account list --config "$T/outpost.conf"
seen
expect_rc 0
checks=$((checks + 1))
printf '%s\n' "$out" | grep -Eq '^erp +basic +svc-erp +20[0-9-]+T' || fail "$what: table: $out"

what="a bad document is refused by field"
printf '{"type":"basic","username":"x","token":"%s"}' "$SECRET" >"$T/bad.json"
run_ctl account set bad --config "$T/outpost.conf" --file "$T/bad.json"
seen
expect_rc 2
expect_err_has 'account bad: token: unknown key for a basic account'
expect_err_has 'account bad: password: missing'
run_ctl account set '../up' --config "$T/outpost.conf" --file "$T/erp.json"
seen
expect_rc 2
expect_err_has 'not an account name'

what="the secret is in no file of the vault and in no output"
checks=$((checks + 1))
if grep -rqF -- "$SECRET" "$T/data" "$T/etc"; then fail "$what: found in $(grep -rlF -- "$SECRET" "$T/data" "$T/etc")"; fi
checks=$((checks + 1))
if grep -qF -- "$SECRET" "$T/seen"; then fail "$what: printed"; fi

what="a vault read with another key names both keys"
cp "$T/etc/accounts.key" "$T/etc/right.key"
head -c 32 /dev/urandom >"$T/etc/accounts.key"
run_ctl account list --config "$T/outpost.conf"
expect_rc 1
expect_err_has 'was sealed with another key'
cp "$T/etc/right.key" "$T/etc/accounts.key"

what="a key file others can read is refused"
chmod 644 "$T/etc/accounts.key"
run_ctl account list --config "$T/outpost.conf"
expect_rc 2
expect_err_has 'chmod 600'
chmod 600 "$T/etc/accounts.key"

what="delete, then it is gone"
run_ctl account delete erp --config "$T/outpost.conf"
expect_rc 0
run_ctl account delete erp --config "$T/outpost.conf"
expect_rc 3
expect_err_has 'no account named erp'
run_ctl account list --config "$T/outpost.conf" --json
expect_rc 0
expect_json '[.[].name]' '["api"]'

what="usage errors"
run_ctl account set --config "$T/outpost.conf"
expect_rc 2
run_ctl account list --dev --config "$T/outpost.conf"
expect_rc 2

finish
