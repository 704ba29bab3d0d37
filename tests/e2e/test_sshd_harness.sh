# The SSH/SFTP test server of tests/e2e/sshd.sh, checked on its own before
# the SFTP connector's tests rely on it: a file put and got back with key
# auth round-trips byte for byte, the exported fingerprint is the one the
# server presents, the PEM and the encrypted user keys are what they claim,
# password auth works (and a wrong password does not), a client with a
# wrong or no known_hosts entry is refused, concurrent clients are served,
# sshd_restart keeps the port and host keys, sshd_stop leaves no process of
# the server behind (open sessions included), and the exit trap and a
# SIGKILLed test shell leave neither a server nor (as root) a test user.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sshd.sh"

what="sshd_start"
checks=$((checks + 1))
t0=$(date +%s%N)
sshd_start || fail "$what: the server did not start"
[ -n "$sshd_pid" ] || {
	finish
	exit 1
}
echo "sshd_start took $((($(date +%s%N) - t0) / 1000000)) ms (port $sshd_port, user $sshd_user)"
LOG=$T/sshd/sshd.log

# sftp_ok WHAT COMMANDS [SFTP_ARGS...]: sshd_sftp with COMMANDS succeeds.
sftp_ok() {
	checks=$((checks + 1))
	_w=$1
	_c=$2
	shift 2
	printf '%s\n' "$_c" | sshd_sftp "$@" >"$T/sftp.out" 2>"$T/sftp.err" ||
		fail "$_w: sftp failed: $(cat "$T/sftp.out" "$T/sftp.err")"
}

# sftp_refused WHAT TEXT [SFTP_ARGS...]: a `pwd` with SFTP_ARGS fails and
# sftp's stderr has TEXT.
sftp_refused() {
	checks=$((checks + 1))
	_w=$1
	_t=$2
	shift 2
	if echo pwd | sshd_sftp "$@" >"$T/sftp.out" 2>"$T/sftp.err"; then
		fail "$_w: sftp succeeded, expected a refusal"
	elif ! grep -qF -- "$_t" "$T/sftp.err"; then
		fail "$_w: stderr lacks \"$_t\": $(cat "$T/sftp.err")"
	fi
}

what="the exported files and values"
for f in "$sshd_user_key" "$sshd_user_key.pub" "$sshd_user_key_pem" \
	"$sshd_user_key_enc" "$sshd_known_hosts"; do
	checks=$((checks + 1))
	[ -s "$f" ] || fail "$what: '$f' is missing or empty"
done
checks=$((checks + 1))
if [ ! -d "$sshd_home" ] || [ -z "$sshd_user" ] || [ "$sshd_host" != 127.0.0.1 ]; then
	fail "$what: home '$sshd_home', user '$sshd_user', host '$sshd_host'"
fi
checks=$((checks + 1))
[ "$(grep -c "^\[127.0.0.1\]:$sshd_port " "$sshd_known_hosts")" = 2 ] ||
	fail "$what: known_hosts: $(cat "$sshd_known_hosts")"
checks=$((checks + 1))
head -n 1 "$sshd_user_key_pem" | grep -qx -- '-----BEGIN EC PRIVATE KEY-----' ||
	fail "$what: $sshd_user_key_pem is not a PEM EC key"
checks=$((checks + 1))
ssh-keygen -y -P '' -f "$sshd_user_key_enc" >/dev/null 2>&1 &&
	fail "$what: $sshd_user_key_enc opens without a passphrase"
checks=$((checks + 1))
ssh-keygen -y -P "$sshd_key_passphrase" -f "$sshd_user_key_enc" >"$T/enc.pub" 2>&1
if [ "$(cut -d' ' -f2 "$T/enc.pub")" != "$(cut -d' ' -f2 "$sshd_user_key_enc.pub")" ]; then
	fail "$what: $sshd_user_key_enc does not open with \$sshd_key_passphrase: $(cat "$T/enc.pub")"
fi

what="the fingerprints are the server's"
for kt in ed25519:"$sshd_fingerprint" ecdsa:"$sshd_fingerprint_ecdsa"; do
	checks=$((checks + 1))
	got=$(ssh-keyscan -t "${kt%%:*}" -p "$sshd_port" 127.0.0.1 2>/dev/null |
		ssh-keygen -lf - | cut -d' ' -f2)
	case ${kt#*:} in
	SHA256:?*) [ "$got" = "${kt#*:}" ] || fail "$what: ${kt%%:*} presented $got, exported ${kt#*:}" ;;
	*) fail "$what: ${kt%%:*} fingerprint '${kt#*:}' is not SHA256:..." ;;
	esac
done

what="a put and a get with key auth round-trip the bytes"
head -c 300000 /dev/urandom >"$T/up.bin"
sftp_ok "$what" "put $T/up.bin up.bin
get up.bin $T/down.bin"
checks=$((checks + 1))
cmp -s "$T/up.bin" "$sshd_home/up.bin" || fail "$what: the server's copy differs"
checks=$((checks + 1))
cmp -s "$T/up.bin" "$T/down.bin" || fail "$what: the copy got back differs"
checks=$((checks + 1))
[ "$(stat -c %U "$sshd_home/up.bin")" = "$sshd_user" ] ||
	fail "$what: up.bin is owned by $(stat -c %U "$sshd_home/up.bin"), not $sshd_user"
checks=$((checks + 1))
grep -q "Accepted publickey for $sshd_user from 127.0.0.1 .* ED25519 " "$LOG" ||
	fail "$what: no ED25519 publickey login in the log"

what="the PEM user key logs in"
sftp_ok "$what" pwd -i "$sshd_user_key_pem"
checks=$((checks + 1))
grep -q "Accepted publickey for $sshd_user from 127.0.0.1 .* ECDSA " "$LOG" ||
	fail "$what: no ECDSA publickey login in the log"

what="password auth"
if [ -z "$sshd_password" ]; then
	echo "note: $what not checked: not root, so sshd cannot check passwords"
else
	# OpenSSH's own askpass hook (no sshpass needed): ssh runs $SSH_ASKPASS
	# for the password when SSH_ASKPASS_REQUIRE=force, tty or not.
	printf '#!/bin/sh\ncat "%s"\n' "$T/pw" >"$T/askpass"
	chmod 700 "$T/askpass"
	pw_args="-o BatchMode=no -o PubkeyAuthentication=no
		-o PreferredAuthentications=password -o NumberOfPasswordPrompts=1"
	printf '%s\n' "$sshd_password" >"$T/pw"
	# shellcheck disable=SC2086 # pw_args are words
	SSH_ASKPASS=$T/askpass SSH_ASKPASS_REQUIRE=force sftp_ok "$what" "ls" $pw_args
	checks=$((checks + 1))
	grep -q "Accepted password for $sshd_user from 127.0.0.1" "$LOG" ||
		fail "$what: no password login in the log"
	what="a wrong password is refused"
	printf 'not-%s\n' "$sshd_password" >"$T/pw"
	# shellcheck disable=SC2086 # pw_args are words
	SSH_ASKPASS=$T/askpass SSH_ASKPASS_REQUIRE=force \
		sftp_refused "$what" "Permission denied" $pw_args
fi

what="a client pinning another host key is refused"
ssh-keygen -q -N '' -t ed25519 -f "$T/rogue" </dev/null
printf '[127.0.0.1]:%s %s\n' "$sshd_port" "$(cut -d' ' -f1,2 "$T/rogue.pub")" >"$T/rogue_known_hosts"
sftp_refused "$what" "Host key verification failed" -o UserKnownHostsFile="$T/rogue_known_hosts"
what="a client that knows no host key is refused"
: >"$T/empty_known_hosts"
sftp_refused "$what" "Host key verification failed" -o UserKnownHostsFile="$T/empty_known_hosts"

what="16 concurrent clients"
pids=""
for i in $(seq 1 16); do
	printf 'put %s c%d.bin\n' "$T/up.bin" "$i" | sshd_sftp >"$T/c$i.out" 2>&1 &
	pids="$pids $!"
done
n=0
for p in $pids; do
	wait "$p" && n=$((n + 1))
done
checks=$((checks + 1))
[ $n = 16 ] || fail "$what: $n of 16 worked: $(cat "$T"/c*.out)"
checks=$((checks + 1))
for i in $(seq 1 16); do
	cmp -s "$T/up.bin" "$sshd_home/c$i.bin" || {
		fail "$what: c$i.bin differs"
		break
	}
done

what="sshd_restart keeps the port and the host keys"
old_port=$sshd_port
old_pid=$sshd_pid
checks=$((checks + 1))
sshd_restart || fail "$what: it did not come back"
checks=$((checks + 1))
if [ "$sshd_port" != "$old_port" ] || [ "$sshd_pid" = "$old_pid" ]; then
	fail "$what: port $old_port -> $sshd_port, pid $old_pid -> $sshd_pid"
fi
sftp_ok "$what" "get up.bin $T/down2.bin"

# alive PID: PID runs (a zombie waiting for its reaper does not count).
alive() {
	st=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}
# tree PID: PID's descendants, one per line.
tree() {
	for c in $(pgrep -P "$1"); do
		echo "$c"
		tree "$c"
	done
}
# session_up: the server runs a logged-in session ("sshd: USER@notty").
session_up() {
	for p in $(tree "$sshd_pid"); do
		tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q "@notty" && return 0
	done
	return 1
}
# user_procs: the test user's running processes (as root only: else the
# user is the one running this test).
user_procs() {
	[ "$(id -u)" = 0 ] || return 0
	for p in $(pgrep -u "$sshd_user"); do
		alive "$p" && echo "$p"
	done
}

what="sshd_stop ends the server and its open sessions"
# A session kept open: sftp waits for commands on a pipe held open here.
mkfifo "$T/hold"
sshd_sftp <"$T/hold" >"$T/hold.out" 2>&1 &
held=$!
exec 9>"$T/hold"
checks=$((checks + 1))
wait_until 10 session_up || fail "$what: the held session never showed up"
listener=$sshd_pid
procs="$listener $(tree "$listener" | tr '\n' ' ')"
sshd_stop
checks=$((checks + 1))
[ -z "$sshd_pid" ] || fail "$what: sshd_pid is still '$sshd_pid'"
for p in $procs; do
	checks=$((checks + 1))
	alive "$p" && fail "$what: process $p still runs: $(tr '\0' ' ' <"/proc/$p/cmdline")"
done
checks=$((checks + 1))
[ -z "$(user_procs)" ] || fail "$what: $sshd_user still runs processes: $(user_procs)"
checks=$((checks + 1))
pgrep -f -- "-f $T/sshd/sshd_config" >/dev/null && fail "$what: an sshd on our config still runs"
# The client notices when its next command needs the server (pwd would
# not: sftp answers it from memory); the subshell takes the SIGPIPE if the
# client is gone already.
(echo ls >&9) 2>/dev/null
exec 9>&-
checks=$((checks + 1))
wait "$held" && fail "$what: the held session still worked after its server was stopped"
sshd_stop # again: a no-op
checks=$((checks + 1))
kill -0 "$listener" 2>/dev/null && fail "$what: the listener $listener is still there"

# child.sh MODE: a test shell of its own using sshd.sh; prints its user, its
# server's pid and its $T, then exits (MODE exit) or waits to be killed.
cat >"$T/child.sh" <<CHILD
. "$E2E_DIR/lib.sh"
. "$E2E_DIR/sshd.sh"
sshd_start >&2 || exit 1
echo "ready \$sshd_user \$sshd_pid \$T"
[ "\$1" = exit ] && exit 0
wait "\$sshd_pid"
CHILD

# child MODE: runs child.sh MODE in the background, sets $cpid and, once it
# is ready, $cuser, $cserver and $ct.
child() {
	: >"$T/child.out"
	bash "$T/child.sh" "$1" >"$T/child.out" 2>"$T/child.err" &
	cpid=$!
	child_ready() { grep -q '^ready ' "$T/child.out"; }
	checks=$((checks + 1))
	wait_until 20 child_ready || fail "$what: the child never got ready: $(cat "$T/child.err")"
	read -r _ cuser cserver ct <"$T/child.out"
}
is_user() { getent passwd "$1" >/dev/null; }
gone() { ! alive "$1"; }

what="a SIGKILLed test shell takes its server along"
child wait
killed_user=$cuser
killed_t=$ct
{
	kill -KILL "$cpid"
	wait "$cpid" # bash reports "Killed" here: not an error
} 2>/dev/null
checks=$((checks + 1))
wait_until 10 gone "$cserver" || fail "$what: its sshd $cserver still runs"

what="the exit trap stops the server and removes the user"
child exit
checks=$((checks + 1))
wait "$cpid" || fail "$what: the child failed: $(cat "$T/child.err")"
checks=$((checks + 1))
alive "$cserver" && fail "$what: its sshd $cserver still runs"
checks=$((checks + 1))
[ -e "$ct" ] && fail "$what: its \$T $ct is still there"
if [ "$(id -u)" = 0 ]; then
	checks=$((checks + 1))
	is_user "$cuser" && fail "$what: user $cuser is still there"
	what="the next run removes the user a killed run left behind"
	checks=$((checks + 1))
	is_user "$killed_user" && fail "$what: user $killed_user is still there"
fi
rm -rf "$killed_t"

finish
