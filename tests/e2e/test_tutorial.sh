# Runs the steps of docs/tutorial.md against throwaway servers on 127.0.0.1
# and checks what they print and what lands on the SFTP server:
#   PostgreSQL (tests/e2e/pg.sh) with docs/examples/orders.sql and a
#     read-only role;
#   OpenSSH sshd with SFTP (tests/e2e/sshd.sh), the agent's own ed25519 key
#     added to its authorized_keys;
#   mosquitto with packaging/mosquitto/outpost-broker.conf and .acl, installed
#     as packaging/mosquitto/README.md says (paths moved to the temp dir,
#     a free port instead of 8883) under a main config shaped like Debian's,
#     and a PKI made with that README's openssl commands;
#   outpostd on the shipped packaging/outpost.conf with the tutorial's lines
#     appended (plus data, pipeline and listener paths for the test), its
#     accounts key given as a systemd credential (CREDENTIALS_DIRECTORY).
# Then: outpostctl status, account put, check, deploy, invoke; the file
# fetched with OpenSSH's sftp and compared byte for byte with
# docs/examples/orders-2026-11-23.csv; executions; the HTTP variant with curl;
# the schedule variant firing. Everything runs as root (sshd.sh makes a
# throwaway login user) and is stopped at exit.
#
#   OUTPOSTCTL=$PWD/build/debug/outpostctl OUTPOSTD=$PWD/build/debug/outpostd \
#     bash tests/e2e/test_tutorial.sh
# shellcheck disable=SC2154 # port and admin are set by lib.sh's start_daemon
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh" # sets T (temp dir) and TOP (the tree)
# shellcheck source=tests/e2e/pg.sh
. "$TOP/tests/e2e/pg.sh"
# shellcheck source=tests/e2e/sshd.sh
. "$TOP/tests/e2e/sshd.sh"
: "${OUTPOSTD:?set OUTPOSTD to the outpostd binary}"
OUTPOSTCTL=$(cd "$(dirname "$OUTPOSTCTL")" && pwd)/$(basename "$OUTPOSTCTL")
OUTPOSTD=$(cd "$(dirname "$OUTPOSTD")" && pwd)/$(basename "$OUTPOSTD")
EX=$TOP/docs/examples
B=$OUTPOSTCTL
step() { echo "=== $*"; }

pid=""
mq_pid=""
stop_servers() {
	if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; fi
	if [ -n "$mq_pid" ]; then kill -TERM "$mq_pid" 2>/dev/null && wait "$mq_pid" 2>/dev/null; fi
	pid=""
	mq_pid=""
}
at_exit stop_servers
# show WHAT COMMAND...: runs COMMAND, prints its output; a failure is a failed check.
show() {
	_what=$1
	shift
	"$@" >"$T/show.out" 2>&1
	_rc=$?
	cat "$T/show.out"
	checks=$((checks + 1))
	[ $_rc -eq 0 ] || fail "$_what: exit $_rc"
}

step "servers: PostgreSQL and sshd"
# shellcheck disable=SC2119 # pg_start takes an optional extra config file
pg_start || exit 1
sshd_start || exit 1
chmod 711 "$T"
W=$T/work
mkdir -p "$W" && cd "$W" || exit 1

step "5. the database: erp, the sample table, a read-only role"
DBPW=$(openssl rand -hex 16)
pgsu() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_socket_dir" -p "$pg_port" -U postgres "$@"; }
pgsu -d postgres -c "CREATE DATABASE erp" || fail "create database"
pgsu -d erp -f "$EX/orders.sql" || fail "orders.sql"
pgsu -d erp -c "CREATE ROLE outpost_reader LOGIN PASSWORD '$DBPW'" \
	-c "GRANT SELECT ON orders TO outpost_reader" || fail "role"

step "6. SFTP: the agent's key, authorized; the host key's fingerprint"
ssh-keygen -t ed25519 -N '' -C outpost@site-a -f exchange_key -q || fail "ssh-keygen"
cat exchange_key.pub >>"$T/sshd/authorized_keys"
mkdir -p "$sshd_home/incoming" && chown -R "$sshd_user:" "$sshd_home"
ssh-keyscan -p "$sshd_port" -t ed25519 127.0.0.1 2>/dev/null | ssh-keygen -lf - | tee fp.txt
check "ssh-keyscan gives the ed25519 fingerprint" test "$(cut -d' ' -f2 fp.txt)" = "$sshd_fingerprint"

step "2. the PKI, with packaging/mosquitto/README.md's commands (broker name localhost)"
(
	mkdir -p pki && cd pki && umask 077
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout ca.key -out ca.crt -days 3650 -subj "/CN=Outpost control plane CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout server.key -out server.csr -subj "/CN=localhost" &&
		openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
			-out server.crt -extfile <(printf '%s\n' \
				'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
				'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost') || exit 1
	client() {
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$1.key" -out "$1.csr" -subj "/CN=$1" &&
			openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
				-out "$1.crt" -extfile <(printf '%s\n' \
					'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
					'extendedKeyUsage=clientAuth')
	}
	client outpost-control && client site-a
) >pki.log 2>&1 || fail "pki: $(cat pki.log)"
check "site-a.crt has CN site-a" sh -c "openssl x509 -in pki/site-a.crt -noout -subject | grep -q 'CN = site-a'"

step "2. the broker, installed as the README says"
MQ=$T/mq
mkdir -p "$MQ/conf.d" "$MQ/lib" "$MQ/run" && chown mosquitto "$MQ/lib" "$MQ/run"
install -d -m 0750 -o root -g mosquitto "$MQ/outpost"
install -m 0644 pki/ca.crt pki/server.crt "$MQ/outpost/"
install -m 0640 -o root -g mosquitto pki/server.key "$MQ/outpost/"
install -m 0644 "$TOP/packaging/mosquitto/outpost-broker.acl" "$MQ/outpost/"
mq_port=""
while [ -z "$mq_port" ] || [ -n "$(ss -ltnH "( sport = :$mq_port )")" ]; do
	mq_port=$((20000 + RANDOM % 30000))
done
sed -e "s#/etc/mosquitto/outpost#$MQ/outpost#g" -e "s/^listener 8883\$/listener $mq_port 127.0.0.1/" \
	"$TOP/packaging/mosquitto/outpost-broker.conf" >"$MQ/conf.d/outpost-broker.conf"
# Debian's /etc/mosquitto/mosquitto.conf, with paths in $MQ.
printf '%s\n' "pid_file $MQ/run/mosquitto.pid" "persistence true" "persistence_location $MQ/lib/" \
	"log_dest file $MQ/mosquitto.log" "include_dir $MQ/conf.d" >"$MQ/mosquitto.conf"
touch "$MQ/mosquitto.log" && chown mosquitto "$MQ/mosquitto.log"
mosquitto -c "$MQ/mosquitto.conf" >"$MQ/out" 2>&1 &
mq_pid=$!
if ! wait_until 10 grep -q " running" "$MQ/mosquitto.log"; then
	fail "mosquitto did not start: $(cat "$MQ/out" "$MQ/mosquitto.log")"
	finish
	exit 1
fi

step "3. the control plane's side"
show "keygen" "$B" keygen ops.key --kid ops-1
export OUTPOST_BROKER=mqtts://localhost:$mq_port OUTPOST_CA=$W/pki/ca.crt \
	OUTPOST_CERT=$W/pki/outpost-control.crt OUTPOST_KEY=$W/pki/outpost-control.key
unset OUTPOST_PREFIX OUTPOST_ADMIN
show "status, no agent yet" "$B" status
check "no agent yet" grep -q "no agent has a retained status or reported under outpost/v1/" "$T/show.out"

step "4. connect the agent: the shipped outpost.conf with the tutorial's lines"
E=$T/etc
mkdir -p "$E/tls" "$E/keys" "$E/pipelines.d" "$T/files" "$T/creds"
install -m 0644 pki/ca.crt pki/site-a.crt "$E/tls/"
install -m 0640 pki/site-a.key "$E/tls/"
install -m 0644 ops.key.pub "$E/keys/ops-1.pub"
head -c 32 /dev/urandom >"$T/creds/accounts.key" && chmod 600 "$T/creds/accounts.key"
export CREDENTIALS_DIRECTORY=$T/creds
cp "$TOP/packaging/outpost.conf" "$E/outpost.conf"
cat >>"$E/outpost.conf" <<CONF

[agent]
id = site-a

[files]
dirs = $T/files

[control]
url = mqtts://localhost:$mq_port
ca_file = $E/tls/ca.crt
cert_file = $E/tls/site-a.crt
key_file = $E/tls/site-a.key
trusted_keys = $E/keys/ops-1.pub

# For this test only: paths and ports of the temp dir.
[agent]
data_dir = $T/data
pipelines_dir = $E/pipelines.d
[http]
listen = 127.0.0.1:0
[admin]
listen = 127.0.0.1:0
CONF
"$OUTPOSTD" --config "$E/outpost.conf" --check-config >check.out 2>&1
grep '^outpostd:' check.out
check "check-config: $(grep '^outpostd:' check.out)" grep -q "outpostd: config and pipelines are valid" check.out
if ! start_daemon "$E/outpost.conf" "$T/outpostd.log"; then
	fail "outpostd did not start: $(cat "$T/outpostd.log")"
	finish
	exit 1
fi
export OUTPOST_ADMIN=127.0.0.1:$admin
online() { "$B" status --agent site-a --json 2>/dev/null | jq -e '.["site-a"].status.state == "online"' >/dev/null; }
check "the agent comes online" wait_until 15 online
grep "control" "$T/outpostd.log"
show "status" "$B" status

step "7. accounts"
printf '{"type": "basic", "username": "outpost_reader", "password": "%s"}\n' "$DBPW" >erp-db.json
jq -n --arg u "$sshd_user" --rawfile k exchange_key \
	'{type: "key", username: $u, privateKey: $k}' >exchange-sftp.json
show "account put erp-db" "$B" account put --agent site-a erp-db --file erp-db.json --sign-key ops.key
show "account put exchange-sftp" "$B" account put --agent site-a exchange-sftp --file exchange-sftp.json --sign-key ops.key
show "account list" "$B" account list --config "$E/outpost.conf"

step "8. the pipeline, with this test's servers"
sed -e "s#/var/lib/outpost/files#$T/files#g" \
	-e "s#host=erp-db.example.internal port=5432#host=127.0.0.1 port=$pg_port#" \
	-e "s#\"host\": \"sftp.example.internal\", \"port\": 22#\"host\": \"127.0.0.1\", \"port\": $sshd_port#" \
	-e "s#SHA256:frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxVA#$(cut -d' ' -f2 fp.txt)#" \
	"$EX/orders-export.json" >orders-export.json
check "five values changed" test "$(diff "$EX/orders-export.json" orders-export.json | grep -c '^>')" = 5
show "check" "$B" check orders-export.json

step "9. deploy"
show "deploy" "$B" deploy orders-export.json --agent site-a --sign-key ops.key --wait
show "status --agent" "$B" status --agent site-a

step "10. invoke"
echo '{"date": "2026-11-23"}' >day.json
show "invoke" "$B" invoke --agent site-a orders-export --input day.json --sign-key ops.key
check "invoke's output" test "$(jq -c . "$T/show.out")" = \
	'{"date":"2026-11-23","rows":3,"file":"incoming/orders-2026-11-23.csv","bytes":178}'

step "11. the file on the SFTP server"
rm -f "$T/fetched.csv"
sftp -i exchange_key -P "$sshd_port" -o UserKnownHostsFile="$sshd_known_hosts" -o IdentitiesOnly=yes \
	"$sshd_user@127.0.0.1:incoming/orders-2026-11-23.csv" "$T/fetched.csv" </dev/null
cat -A "$T/fetched.csv"
check "byte for byte docs/examples/orders-2026-11-23.csv" cmp "$T/fetched.csv" "$EX/orders-2026-11-23.csv"
check "the agent's copy too" cmp "$T/files/orders-2026-11-23.csv" "$EX/orders-2026-11-23.csv"
echo '{"date": "2026-11-25"}' | "$B" invoke --agent site-a orders-export --input - --sign-key ops.key --json
check "a day without orders: an empty file" test -f "$sshd_home/incoming/orders-2026-11-25.csv" -a \
	! -s "$sshd_home/incoming/orders-2026-11-25.csv"
echo '{"date": "../x"}' | "$B" invoke --agent site-a orders-export --input - --sign-key ops.key
check "a bad date is refused" test $? -eq 1

step "12. executions"
show "executions" "$B" executions --limit 5
show "executions --agent" "$B" executions --agent site-a --sign-key ops.key --limit 5
show "pipelines" "$B" pipelines
id=$("$B" executions --json --limit 5 | jq -r '[.[] | select(.status == "success")][0].id')
show "execution" "$B" execution "$id"

step "13. variant: an HTTP trigger, with curl"
jq '.version = "2" | .trigger = {"type": "http", "config": {"method": "POST", "path": "/exports/orders"}}' \
	orders-export.json >orders-export-http.json
show "deploy http" "$B" deploy orders-export-http.json --agent site-a --sign-key ops.key
curl -s -XPOST "localhost:$port/exports/orders" -H 'content-type: application/json' \
	-d '{"date":"2026-11-24"}' | tee curl.out
echo
check "curl's answer" test "$(cat curl.out)" = \
	'{"date":"2026-11-24","rows":1,"file":"incoming/orders-2026-11-24.csv","bytes":70}'
code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "localhost:$port/exports/orders" \
	-H 'content-type: application/json' -d '{"date":"yesterday"}')
check "a bad date over HTTP: 400 (got $code)" test "$code" = 400

step "the schedule fires (every 5 s in this copy), with yesterday's date"
jq '.version = "3" | .trigger.config.cron = "*/5 * * * * *"' orders-export.json >orders-export-5s.json
yesterday=$(date -u -d yesterday +%F)
rm -f "$sshd_home/incoming/orders-$yesterday.csv"
show "deploy 5s" "$B" deploy orders-export-5s.json --agent site-a --sign-key ops.key
sched_ran() { "$B" executions --json --limit 5 | jq -e 'any(.[]; .trigger == "schedule" and .status == "success")' >/dev/null; }
check "a scheduled run succeeded" wait_until 12 sched_ran
check "it wrote orders-$yesterday.csv" wait_until 2 test -f "$sshd_home/incoming/orders-$yesterday.csv"
show "rollback" "$B" rollback --agent site-a --sign-key ops.key

finish
