# The packages end to end, as root on a Debian machine: builds the .deb
# (lintian clean) and installs it with dpkg; checks the files, the service
# user, the directories and their owners and modes; starts outpostd as the
# service user with the unit's own command line and a credentials folder
# as LoadCredential= makes it (systemd need not be PID 1), calls /healthz
# and the demo pipeline, and outpostctl with no options; upgrades to a
# rebuilt package of a higher version (store, vault key and the edited
# config survive); removes (data kept) and purges (nothing left). Then the
# unit's systemd-analyze security exposure, and the RPM (rpmlint clean):
# its file list, scripts and automatic requirements, and an install into
# a temporary root.
#
# It installs and purges the package "outpost" on this machine, so it runs
# only as root and only where that package is not installed already.
export OUTPOSTCTL=/usr/bin/outpostctl
. "$(dirname "$0")/../e2e/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
	echo "skip test_packages: needs root (it installs the package)"
	exit 0
fi
if dpkg-query -W -f='${Status}' outpost 2>/dev/null | grep -q installed; then
	echo "skip test_packages: the package outpost is installed here; it would be purged"
	exit 0
fi

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
v1=$(dpkg-parsechangelog -l "$TOP/packaging/debian/changelog" -S Version)
v2=$v1.1
deb1=$TOP/build/pkg/deb/outpost_${v1}_$arch.deb
deb2=$TOP/build/pkg/deb/outpost_${v2}_$arch.deb

pid=""
purge() { dpkg -P outpost >/dev/null 2>&1 || true; }
at_exit purge
at_exit stop_daemon

what="make deb builds a lintian-clean package"
checks=$((checks + 1))
"$TOP/packaging/deb.sh" >"$T/deb1.log" 2>&1 || {
	tail -n 40 "$T/deb1.log"
	fail "$what"
	finish
	exit 1
}

what="the package depends on Debian's library packages, found by shlibs"
checks=$((checks + 1))
deps=$(dpkg-deb -f "$deb1" Depends)
for lib in libc6 libcjson1 liblmdb0 libjq1 libpaho-mqtt1.3 libwolfssl35 libmicrohttpd12 libcurl4 libpq5 libssh2-1 libsystemd0; do
	case "$deps" in
	*"$lib"*) ;;
	*) fail "$what: $lib is not in Depends: $deps" ;;
	esac
done

what="dpkg installs it"
checks=$((checks + 1))
dpkg -i "$deb1" >"$T/install.log" 2>&1 || fail "$what: $(cat "$T/install.log")"

# mode_of PATH: "MODE OWNER:GROUP" as stat prints them (ids in a root
# of another passwd).
mode_of() {
	case "$1" in
	"$T"/*) stat -c '%a %u:%g' "$1" 2>&1 ;;
	*) stat -c '%a %U:%G' "$1" 2>&1 ;;
	esac
}
expect_mode() {
	checks=$((checks + 1))
	[ "$(mode_of "$1")" = "$2" ] || fail "$what: $1 is $(mode_of "$1"), expected $2"
}

what="the files are where they belong"
for f in /usr/sbin/outpostd /usr/bin/outpostctl /lib/systemd/system/outpost.service \
	/usr/lib/sysusers.d/outpost.conf /usr/lib/tmpfiles.d/outpost.conf \
	/usr/share/man/man8/outpostd.8.gz /usr/share/man/man1/outpostctl.1.gz \
	/usr/share/man/man5/outpost.conf.5.gz /usr/share/doc/outpost/copyright \
	/usr/share/doc/outpost/examples/pipelines/demo-http.json; do
	check "$f is missing" test -f "$f"
done
expect_mode /usr/sbin/outpostd "755 root:root"
for so in db http sftp; do
	expect_mode /usr/lib/outpost/$so.so "644 root:root"
done
check "outpostd --version says $v1" sh -c "/usr/sbin/outpostd --version | grep -qF '$v1'"
check "outpostctl --version says $v1" sh -c "/usr/bin/outpostctl --version | grep -qxF 'outpostctl $v1'"
check "the config is not a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' outpost | grep -q '/etc/outpost/outpost.conf '"
check "the man page does not render" sh -c "man -l /usr/share/man/man5/outpost.conf.5.gz 2>/dev/null | grep -q data_dir"

what="the installed outpostd loads its connector plugins from /usr/lib/outpost"
mkdir -p "$T/plug"
cat >"$T/plug/all.json" <<'JSON'
{"name":"all","version":"1","steps":[
 {"type":"rest","config":{"url":"http://127.0.0.1:1/x"}},
 {"type":"sap","config":{"service":"http://127.0.0.1:1/s","entitySet":"X"}},
 {"type":"db","config":{"connection":"host=127.0.0.1","account":"pg","sql":"SELECT 1"}},
 {"type":"sftp","config":{"host":"127.0.0.1","account":"s","operation":"list","path":"/",
  "hostKey":"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"}}]}
JSON
out=$(cd "$T" && /usr/sbin/outpostd --dev --pipelines "$T/plug" --check-config 2>&1 >/dev/null)
rc=$?
checks=$((checks + 1))
[ $rc -eq 0 ] || fail "$what: --check-config failed: $out"
for t in rest:http sap:http db:db sftp:sftp; do
	case "$out" in
	*"step type ${t%%:*} loaded from /usr/lib/outpost/${t#*:}.so"*) checks=$((checks + 1)) ;;
	*) fail "$what: no ${t%%:*} from ${t#*:}.so: $out" ;;
	esac
done

what="the service user and its directories"
check "no user outpost" sh -c "getent passwd outpost >/dev/null"
uid=$(id -u outpost)
check "outpost is not a system user (uid $uid)" test "$uid" -lt 1000
check "outpost has a login shell" sh -c "getent passwd outpost | cut -d: -f7 | grep -q nologin"
check "outpost's home is not /var/lib/outpost" sh -c "getent passwd outpost | cut -d: -f6 | grep -qx /var/lib/outpost"
expect_mode /var/lib/outpost "750 outpost:outpost"
expect_mode /etc/outpost "755 root:root"
expect_mode /etc/outpost/outpost.conf "640 root:outpost"
expect_mode /etc/outpost/pipelines.d "750 root:outpost"
expect_mode /etc/outpost/accounts.key "600 root:root"
check "accounts.key is not 32 bytes" test "$(stat -c %s /etc/outpost/accounts.key)" -eq 32
check "pipelines.d is not empty" test -z "$(ls -A /etc/outpost/pipelines.d)"
check "the service is not enabled" test -L /etc/systemd/system/multi-user.target.wants/outpost.service
check "the postinst does not restart the service on upgrade" \
	grep -q '_dh_action=restart' /var/lib/dpkg/info/outpost.postinst
# The service may start only once its credential (the vault key) is there.
check "the postinst starts the service before it makes the vault key" awk '
	/accounts\.key\.new/ && !key { key = NR }
	/deb-systemd-(helper|invoke)/ && !unit { unit = NR }
	END { exit !(key && unit && key < unit) }' /var/lib/dpkg/info/outpost.postinst
check "the postinst runs the debhelper snippets more than once" \
	test "$(grep -c 'dh_installsystemd' /var/lib/dpkg/info/outpost.postinst)" -eq 2
expect_mode /var/lib/outpost/accounts "700 outpost:outpost"

# The unit's command line, run the way systemd runs it: as the service user,
# with its home and user name in the environment, and the credential
# LoadCredential= names in $CREDENTIALS_DIRECTORY.
exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/outpost.service)
creds=$T/credentials
chmod 711 "$T"
install -d -m 0700 -o outpost -g outpost "$creds"
install -m 0400 -o outpost -g outpost /etc/outpost/accounts.key "$creds/accounts.key"
log=$T/agent.log
start_agent() {
	: >"$log"
	chown outpost "$log"
	# shellcheck disable=SC2086 # the unit's words
	CREDENTIALS_DIRECTORY=$creds HOME=/var/lib/outpost USER=outpost LOGNAME=outpost setpriv --reuid=outpost --regid=outpost --init-groups \
		--inh-caps=-all $exec_start 2>>"$log" &
	pid=$!
	wait_until 10 grep -q ' ready (agent ' "$log"
}
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9090/healthz)" = 200 ]; }

what="an account root adds before the first start is the service's"
printf '{"type":"basic","username":"erp","password":"s3cret"}' >"$T/erp.json"
run_ctl account set erp --file "$T/erp.json"
expect_rc 0
out=$(CREDENTIALS_DIRECTORY=$creds setpriv --reuid=outpost --regid=outpost --init-groups \
	/usr/bin/outpostctl account list --json 2>&1)
checks=$((checks + 1))
printf '%s' "$out" | jq -e 'map(.name) == ["erp"]' >/dev/null 2>&1 ||
	fail "$what: the service user lists: $out"

what="outpostd starts as the service user with the installed config"
# As an admin sets it up: the demo pipelines in pipelines.d, HTTPS for the
# triggers with its private key root-only, handed over as a credential
# (LoadCredential=http.key:... in a drop-in), and so an edit to the config
# (which an upgrade must keep).
install -m 0640 -g outpost /usr/share/doc/outpost/examples/pipelines/*.json /etc/outpost/pipelines.d/
install -d -m 0750 -g outpost /etc/outpost/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
	-addext subjectAltName=IP:127.0.0.1 -days 2 -keyout /etc/outpost/tls/http.key \
	-out /etc/outpost/tls/http.pem 2>"$T/openssl.log" || fail "$what: openssl: $(cat "$T/openssl.log")"
chmod 0600 /etc/outpost/tls/http.key
chmod 0644 /etc/outpost/tls/http.pem
install -m 0400 -o outpost -g outpost /etc/outpost/tls/http.key "$creds/http.key"
check "the service user reads the root-only key itself" \
	sh -c "! setpriv --reuid=outpost --regid=outpost --init-groups cat /etc/outpost/tls/http.key >/dev/null 2>&1"
sed -i -e 's/^#log_level = info$/log_level = info\n# edited by test_packages/' \
	-e 's|^#tls_cert =$|tls_cert = /etc/outpost/tls/http.pem|' \
	-e 's|^#tls_key =$|tls_key = $CREDENTIALS_DIRECTORY/http.key|' /etc/outpost/outpost.conf
checks=$((checks + 1))
start_agent || fail "$what: not ready: $(cat "$log")"
checks=$((checks + 1))
[ "$(ps -o user= -p "$pid")" = outpost ] || fail "$what: runs as $(ps -o user= -p "$pid")"
checks=$((checks + 1))
wait_until 5 healthy || fail "$what: /healthz does not answer 200"
out=$(curl -s --cacert /etc/outpost/tls/http.pem -X POST https://127.0.0.1:8080/orders \
	-H 'content-type: application/json' -d @"$TOP/packaging/demo/input.json")
checks=$((checks + 1))
printf '%s' "$out" | jq -e '.reference == "DE-A-1001" and .total == 1249.8' >/dev/null ||
	fail "$what: POST /orders answered $out"
check "the store is not in /var/lib/outpost" test -f /var/lib/outpost/store/data.mdb
expect_mode /var/lib/outpost/store/data.mdb "600 outpost:outpost"

what="outpostctl reaches the local agent with no options"
run_ctl executions --json
expect_rc 0
expect_json 'map(select(.pipeline == "demo-http" and .status == "success")) | length' 1
exec_id=$(printf '%s' "$out" | jq -r 'map(select(.pipeline == "demo-http"))[0].id')
checks=$((checks + 1))
stop_daemon || fail "$what: outpostd exited $? on SIGTERM"

what="make deb builds a higher version"
checks=$((checks + 1))
OUTPOST_PKG_VERSION=$v2 OUTPOST_PKG_CONF_LINE="# new in $v2" \
	"$TOP/packaging/deb.sh" >"$T/deb2.log" 2>&1 || {
	tail -n 40 "$T/deb2.log"
	fail "$what"
}
key_before=$(sha256sum /etc/outpost/accounts.key)

what="an upgrade keeps the store, the vault key and the edited config"
# Both the admin and the new version changed the config: dpkg keeps the
# admin's (as apt's default answer does) and leaves the new one beside it.
checks=$((checks + 1))
dpkg -i --force-confold "$deb2" >"$T/upgrade.log" 2>&1 || fail "$what: $(cat "$T/upgrade.log")"
check "the new version's config is not beside it" grep -qx "# new in $v2" /etc/outpost/outpost.conf.dpkg-dist
check "outpostd --version does not say $v2" sh -c "/usr/sbin/outpostd --version | grep -qF '$v2'"
check "the config edit is gone" grep -q '^# edited by test_packages$' /etc/outpost/outpost.conf
check "accounts.key changed" test "$(sha256sum /etc/outpost/accounts.key)" = "$key_before"
expect_mode /etc/outpost/outpost.conf "640 root:outpost"
checks=$((checks + 1))
start_agent || fail "$what: not ready: $(cat "$log")"
run_ctl execution "$exec_id" --json
expect_rc 0
expect_json '.pipeline' '"demo-http"'
checks=$((checks + 1))
stop_daemon || fail "$what: outpostd exited $? on SIGTERM"

what="remove keeps the data and the config"
checks=$((checks + 1))
dpkg -r outpost >"$T/remove.log" 2>&1 || fail "$what: $(cat "$T/remove.log")"
check "outpostd is still there" test ! -e /usr/sbin/outpostd
check "the store is gone" test -f /var/lib/outpost/store/data.mdb
check "the config is gone" test -f /etc/outpost/outpost.conf
check "the vault key is gone" test -f /etc/outpost/accounts.key

what="purge leaves nothing behind"
checks=$((checks + 1))
dpkg -P outpost >"$T/purge.log" 2>&1 || fail "$what: $(cat "$T/purge.log")"
for p in /etc/outpost /var/lib/outpost /lib/systemd/system/outpost.service \
	/etc/systemd/system/multi-user.target.wants/outpost.service \
	/usr/lib/sysusers.d/outpost.conf /usr/lib/tmpfiles.d/outpost.conf /usr/share/doc/outpost \
	/usr/share/man/man8/outpostd.8.gz /usr/bin/outpostctl; do
	check "$p is left" test ! -e "$p"
done
check "a statoverride is left" sh -c "! dpkg-statoverride --list | grep -q /etc/outpost"

what="the unit's exposure is 2.0 or lower"
exposure=$(systemd-analyze security --offline=yes "$TOP/packaging/systemd/outpost.service" 2>&1 |
	sed -n 's/.*Overall exposure level for outpost.service: \([0-9.]*\).*/\1/p')
checks=$((checks + 1))
awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }' ||
	fail "$what: exposure ${exposure:-not printed}"

what="make rpm builds an rpmlint-clean RPM"
checks=$((checks + 1))
"$TOP/packaging/rpm.sh" >"$T/rpm.log" 2>&1 || {
	tail -n 40 "$T/rpm.log"
	fail "$what"
}
rpm=$(ls "$TOP"/build/pkg/rpm/RPMS/*/outpost-"$v1"-*.rpm 2>/dev/null | head -n 1)

what="the RPM's file list"
rpm -qpl "$rpm" >"$T/rpm.files" 2>/dev/null
for f in /usr/sbin/outpostd /usr/bin/outpostctl /etc/outpost/outpost.conf /etc/outpost/pipelines.d \
	/var/lib/outpost /usr/lib/systemd/system/outpost.service /usr/lib/sysusers.d/outpost.conf \
	/usr/lib/tmpfiles.d/outpost.conf /usr/share/man/man8/outpostd.8.gz \
	/usr/lib64/outpost/db.so /usr/lib64/outpost/http.so /usr/lib64/outpost/sftp.so; do
	check "$f is not in it" grep -qx "$f" "$T/rpm.files"
done
check "the config is not %config(noreplace)" sh -c "rpm -qpc '$rpm' 2>/dev/null | grep -qx /etc/outpost/outpost.conf"

what="the RPM's scripts"
rpm -qp --scripts "$rpm" >"$T/rpm.scripts" 2>/dev/null
check "no user from sysusers in %pre" grep -q 'systemd-sysusers --replace=/usr/lib/sysusers.d/outpost.conf' "$T/rpm.scripts"
check "no vault key made in %post" grep -q 'accounts.key' "$T/rpm.scripts"
check "no restart on upgrade" grep -q 'try-restart outpost.service' "$T/rpm.scripts"

what="the RPM's requirements are found automatically"
rpm -qpR "$rpm" >"$T/rpm.requires" 2>/dev/null
for so in 'libcjson.so.1()(64bit)' 'liblmdb.so.0()(64bit)' 'libjq.so.1()(64bit)' 'libpq.so.5()(64bit)' \
	'libssh2.so.1()(64bit)' 'libcurl.so.4()(64bit)' 'libodbc.so.2()(64bit)'; do
	check "$so is not required" grep -qxF "$so" "$T/rpm.requires"
done

what="the RPM installs into a temporary root"
root=$T/rpmroot
mkdir -p "$root/etc"
printf 'root:x:0:0:root:/root:/bin/sh\noutpost:x:999:999::/var/lib/outpost:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\noutpost:x:999:\n' >"$root/etc/group"
checks=$((checks + 1))
rpm --root "$root" --initdb
rpm --root "$root" -i --nodeps --noscripts "$rpm" >"$T/rpmi.log" 2>&1 ||
	fail "$what: $(cat "$T/rpmi.log")"
check "outpostd is not installed" test -x "$root/usr/sbin/outpostd"
expect_mode "$root/etc/outpost/outpost.conf" "640 0:999"
expect_mode "$root/var/lib/outpost" "750 999:999"

finish
