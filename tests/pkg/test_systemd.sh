# The Debian package under a real systemd (make test-systemd, as root; not
# part of make test: it needs systemd-nspawn, debootstrap and Debian's
# mirror, and takes a few minutes the first time). A minimal Debian 12 is
# bootstrapped once into build/pkg/nsroot and booted with systemd-nspawn,
# sharing this machine's network; the .deb is installed there with apt, so
# outpost.service runs as packaged: its user, its hardening, LoadCredential=,
# Type=notify with the watchdog. Servers started here on 127.0.0.1
# (PostgreSQL, OpenSSH sshd, mosquitto with TLS, a plain HTTP server) are
# reached from the service through every feature: the control link over
# mutual TLS with its private key as a credential, an MQTT trigger (its
# consumer processes), a db step, an sftp put, a rest call; plus reload,
# outpostctl as root beside the service, and journalctl -p.
export OUTPOSTCTL=${OUTPOSTCTL:-$(cd "$(dirname "$0")/../.." && pwd)/build/debug/outpostctl}
. "$(dirname "$0")/../e2e/lib.sh"
. "$TOP/tests/e2e/pg.sh"
. "$TOP/tests/e2e/sshd.sh"
. "$TOP/tests/e2e/broker.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
	echo "skip test_systemd: needs root, systemd-nspawn and debootstrap"
	exit 0
fi
R=$TOP/build/pkg/nsroot
deb=$TOP/build/pkg/deb/outpost_$(dpkg-parsechangelog -l "$TOP/packaging/debian/changelog" -S Version)_$(dpkg-architecture -qDEB_HOST_ARCH).deb
[ -f "$deb" ] || "$TOP/packaging/deb.sh" >"$T/deb.log" 2>&1 || {
	tail -n 30 "$T/deb.log"
	exit 1
}
if [ ! -x "$R/usr/lib/systemd/systemd" ]; then
	rm -rf "$R"
	debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl,ca-certificates \
		bookworm "$R" >"$T/debootstrap.log" 2>&1 || {
		tail -n 30 "$T/debootstrap.log"
		exit 1
	}
fi

# nspawn keeps its mounts under /run/systemd/nspawn, which must be a tmpfs.
mkdir -p /run/systemd/nspawn
mountpoint -q /run/systemd/nspawn || mount -t tmpfs tmpfs /run/systemd/nspawn
systemd-nspawn -D "$R" -b --console=pipe --machine=outpost-test --register=no --keep-unit \
	>"$T/nspawn.log" 2>&1 &
nspawn=$!
inner=""
ns() { nsenter -t "$inner" -a -- "$@"; }
poweroff() {
	[ -n "$inner" ] && ns systemctl poweroff >/dev/null 2>&1
	wait "$nspawn" 2>/dev/null
}
at_exit poweroff
booted() {
	inner=$(pgrep -P "$nspawn" -x systemd)
	[ -n "$inner" ] && ns systemctl is-system-running 2>/dev/null | grep -Eq 'running|degraded'
}
if ! wait_until 60 booted; then
	fail "the container did not boot: $(tail -n 20 "$T/nspawn.log")"
	finish
	exit 1
fi

what="apt installs the package; the service runs"
cp "$deb" "$R/root/outpost.deb"
ns sh -c 'dpkg -P outpost; rm -rf /etc/systemd/system/outpost.service.d /etc/outpost /var/lib/outpost' >/dev/null 2>&1
checks=$((checks + 1))
ns sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /root/outpost.deb' \
	>"$T/apt.log" 2>&1 || fail "$what: $(tail -n 20 "$T/apt.log")"
check "outpost.service is not active" ns systemctl is-active -q outpost
check "its exposure is not 2.0 or lower" sh -c "nsenter -t $inner -a -- systemd-analyze security outpost |
	sed -n 's/.*exposure level for outpost.service: \([0-9.]*\).*/\1/p' | awk '{ exit !(\$1 <= 2.0) }'"
check "no watchdog" sh -c "nsenter -t $inner -a -- systemctl show -p WatchdogUSec --value outpost | grep -qx 30s"

pg_start || exit 1
sshd_start || exit 1
start_broker || exit 1
export PGPASSWORD=$pg_password
psql() { "$pg_bin/psql" -X -qAt -h 127.0.0.1 -p "$pg_port" -U "$pg_user" -d "$pg_db" "$@"; }
psql -c "CREATE TABLE seen (n int)" || fail "create table"

what="the control link over mutual TLS, its key a credential"
"$OUTPOSTCTL" keygen "$T/ops.key" --kid ops-1 >/dev/null
gid=$(ns getent group outpost | cut -d: -f3)
install -d -m 0750 -g "$gid" "$R/etc/outpost/tls"
install -m 0644 "$T/pki/ca.pem" "$T/pki/client-a.pem" "$T/ops.key.pub" "$R/etc/outpost/tls/"
install -m 0600 "$T/pki/client-a.key" "$R/etc/outpost/tls/agent.key" # root's only
mkdir -p "$R/etc/systemd/system/outpost.service.d"
printf '[Service]\nLoadCredential=agent.key:/etc/outpost/tls/agent.key\n' \
	>"$R/etc/systemd/system/outpost.service.d/credentials.conf"
cat >>"$R/etc/outpost/outpost.conf" <<EOF

[agent]
id = agent-a
[control]
url = mqtts://127.0.0.1:$broker_tls_port
ca_file = /etc/outpost/tls/ca.pem
cert_file = /etc/outpost/tls/client-a.pem
key_file = \$CREDENTIALS_DIRECTORY/agent.key
trusted_keys = /etc/outpost/tls/ops.key.pub
[broker local]
url = mqtt://127.0.0.1:$broker_port
EOF
ns systemctl daemon-reload
check "the restart failed" ns systemctl restart outpost
online() {
	OUTPOST_BROKER=mqtts://127.0.0.1:$broker_tls_port OUTPOST_CA=$T/pki/ca.pem \
		OUTPOST_CERT=$T/pki/control.pem OUTPOST_KEY=$T/pki/control.key \
		"$OUTPOSTCTL" status --agent agent-a --json 2>/dev/null |
		jq -e '.["agent-a"].status.state == "online"' >/dev/null
}
check "the agent is not online" wait_until 20 online

what="outpostctl as root beside the service: accounts for the db and sftp steps"
printf '{"type":"basic","username":"%s","password":"%s"}' "$pg_user" "$pg_password" >"$R/root/pg.json"
jq -n --arg u "$sshd_user" --rawfile k "$sshd_user_key" '{type:"key",username:$u,privateKey:$k}' \
	>"$R/root/sftp.json"
check "account set pg failed" ns outpostctl account set pg --file /root/pg.json
check "account set sftp failed" ns outpostctl account set sftp --file /root/sftp.json
rm -f "$R/root/pg.json" "$R/root/sftp.json"

what="pipelines: an MQTT trigger into a db step, sftp put, rest call; a reload"
mkdir -p "$T/www" && printf '{"ok":true}' >"$T/www/x.json"
python3 -m http.server 0 --bind 127.0.0.1 --directory "$T/www" >"$T/www.log" 2>&1 &
www=$!
stop_www() { kill "$www" 2>/dev/null; }
at_exit stop_www
wait_until 5 grep -q "Serving HTTP" "$T/www.log" || fail "$what: the HTTP server did not start"
www_port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$T/www.log" | head -n 1)
P=$R/etc/outpost/pipelines.d
cat >"$P/mq.json" <<EOF
{"name":"mq","version":"1","trigger":{"type":"mqtt","config":{"broker":"local","topic":"in/#","consumers":2}},
 "steps":[{"type":"db","config":{"account":"pg","connection":"host=127.0.0.1 port=$pg_port dbname=$pg_db",
   "sql":"INSERT INTO seen VALUES ({{ message.n }})"}}]}
EOF
cat >"$P/put.json" <<EOF
{"name":"put","version":"1","trigger":{"type":"http","config":{"method":"POST","path":"/put"}},
 "steps":[{"type":"sftp","config":{"account":"sftp","host":"127.0.0.1","port":$sshd_port,
   "hostKey":"$sshd_fingerprint","operation":"put","path":"from-agent.json","content":"{{ message.body }}"}},
  {"type":"rest","config":{"method":"GET","url":"http://127.0.0.1:$www_port/x.json"},"output":"got"}]}
EOF
chgrp "$gid" "$P"/*.json && chmod 0640 "$P"/*.json
check "the reload failed" ns systemctl reload outpost
listed() { ns outpostctl pipelines | grep -q '^put '; }
check "the reload did not take the new pipelines" wait_until 10 listed
subscribed() { ns curl -s localhost:9090/metrics | grep -qx 'outpost_mqtt_consumers_subscribed 2'; }
check "the two consumers did not subscribe" wait_until 20 subscribed
uid=$(ns id -u outpost)
check "no consumer processes of the service user" \
	sh -c "[ \$(pgrep -c -u $uid -f -- '--mqtt-consumer') -eq 2 ]"
for n in 1 2 3; do mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -t in/x -m "{\"n\":$n}"; done
rows() { [ "$(psql -c 'SELECT count(*) FROM seen')" = 3 ]; }
check "the MQTT messages did not reach the database" wait_until 20 rows
out=$(ns curl -s -XPOST localhost:8080/put -H 'content-type: application/json' -d '{"hello":"sftp"}')
checks=$((checks + 1))
printf '%s' "$out" | jq -e '.got.body.ok == true' >/dev/null 2>&1 || fail "$what: POST /put: $out"
checks=$((checks + 1))
[ "$(cat "$sshd_home/from-agent.json" 2>/dev/null)" = '{"hello":"sftp"}' ] ||
	fail "$what: the SFTP server has $(cat "$sshd_home/from-agent.json" 2>&1)"

what="the journal has the agent's priorities"
# A warning: an event the database refuses.
mosquitto_pub -h 127.0.0.1 -p "$broker_port" -q 1 -t in/x -m '{"n":"not a number"}'
failed() { ns journalctl -u outpost -o cat --no-pager | grep -q '^warn  runtime: mq: execution'; }
check "the refused event was not logged" wait_until 20 failed
check "journalctl -p warning shows no warning of the agent" \
	sh -c "nsenter -t $inner -a -- journalctl -u outpost -p warning -o cat --no-pager | grep -q '^warn '"
check "journalctl -p warning shows info lines" \
	sh -c "! nsenter -t $inner -a -- journalctl -u outpost -p warning -o cat --no-pager | grep -q '^info '"
[ "$failures" -eq 0 ] || ns journalctl -u outpost -o cat --no-pager | tail -n 30
check "the service restarted on its own" sh -c "[ \$(nsenter -t $inner -a -- systemctl show -p NRestarts --value outpost) = 0 ]"
finish
