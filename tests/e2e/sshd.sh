# A real SSH/SFTP server for the end-to-end tests and benchmarks: OpenSSH's
# sshd (Debian's openssh-server, /usr/sbin/sshd; never the system service)
# on 127.0.0.1, a free port, with throwaway host and user keys and the
# built-in SFTP server (internal-sftp). Source it after lib.sh, then
# sshd_start; sshd_stop, sshd_restart and sshd_sftp (OpenSSH's sftp client
# against it, for checks and speed comparisons) as needed. The server is
# killed when the test script exits (chained in front of lib.sh's EXIT trap),
# and, where setpriv exists, also when the script's shell dies by SIGKILL.
#
# As root, clients log in as a throwaway user, outpost-sftp-<pid of the test
# shell> (one per run, so runs in parallel do not share one), created by
# sshd_start with a random password and removed at exit (users left behind
# by a killed run are removed by the next one). Its home is $T/sshd/home, so
# $T and $T/sshd are made traversable (mode 0711) for it. Not as root, the
# current user logs in; then password authentication cannot work (sshd
# cannot read the shadow file) and $sshd_password is empty.
#
# Keys are ed25519 and ECDSA P-256 only: libssh2 1.10 (Debian 12) signs and
# verifies RSA only as ssh-rsa (SHA-1), which this OpenSSH refuses. libssh2
# picks the ECDSA host key unless told otherwise (method preference).
#
# What it sets (all after sshd_start; paths are under $T/sshd):
#   sshd_host, sshd_port    127.0.0.1 and the port sshd listens on
#   sshd_user, sshd_password   the login; password empty when not root
#   sshd_home               where SFTP sessions start (relative paths land
#                           here), writable by the user: put files here
#   sshd_user_key           ed25519 private key, OpenSSH format, no passphrase
#   sshd_user_key_pem       ECDSA P-256 private key, PEM ("BEGIN EC PRIVATE
#                           KEY"), no passphrase: a second key for clients
#                           that read only PEM (ed25519 has no PEM form)
#   sshd_user_key_enc       ed25519 private key, OpenSSH format, encrypted
#   sshd_key_passphrase     ...with this passphrase
#                           (the public keys are KEY.pub; all three are in
#                           the server's authorized_keys)
#   sshd_known_hosts        known_hosts with the server's host keys for
#                           [127.0.0.1]:port (ed25519 and ECDSA P-256)
#   sshd_fingerprint        SHA256:... of the ed25519 host key (ssh-keygen -lf)
#   sshd_fingerprint_ecdsa  SHA256:... of the ECDSA P-256 host key
#   sshd_pid                the server's pid (empty when stopped)
# The server's log (sshd -e, LogLevel VERBOSE) is $T/sshd/sshd.log.
# shellcheck disable=SC2034 # the sshd_* variables are for the sourcing script
: "${T:?source lib.sh before sshd.sh}"

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd} # sshd re-executes itself: absolute path
sshd_host=127.0.0.1
sshd_port=""
sshd_pid=""
sshd_user=""
sshd_password=""
sshd_home=""
sshd_user_key=""
sshd_user_key_pem=""
sshd_user_key_enc=""
sshd_key_passphrase=""
sshd_known_hosts=""
sshd_fingerprint=""
sshd_fingerprint_ecdsa=""
_sshd_dir=$T/sshd
_sshd_user_made="" # the user sshd_start created; removed at exit
# The throwaway users are recognised by this prefix and comment.
_sshd_user_prefix=outpost-sftp-
_sshd_user_gecos="Outpost e2e SFTP test user"

# _sshd_keygen FILE ARGS...: ssh-keygen -q -N '' -f FILE ARGS..., unless FILE
# exists (keys are made once per $T and survive a restart).
_sshd_keygen() {
	_f=$1
	shift
	[ -f "$_f" ] && [ -f "$_f.pub" ] && return 0
	rm -f "$_f" "$_f.pub"
	ssh-keygen -q -N '' -C "outpost-e2e-$(basename "$_f")" -f "$_f" "$@" </dev/null ||
		{
			echo "sshd_start: ssh-keygen for $_f failed" >&2
			return 1
		}
}

# _sshd_keys: host keys, user keys and authorized_keys in $_sshd_dir.
_sshd_keys() {
	_k=$_sshd_dir
	_sshd_keygen "$_k/host_ed25519" -t ed25519 &&
		_sshd_keygen "$_k/host_ecdsa" -t ecdsa -b 256 &&
		_sshd_keygen "$_k/user_ed25519" -t ed25519 &&
		_sshd_keygen "$_k/user_ecdsa.pem" -t ecdsa -b 256 -m PEM || return 1
	if [ ! -f "$_k/passphrase" ] || [ ! -f "$_k/user_ed25519_enc" ]; then
		head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$_k/passphrase"
		rm -f "$_k/user_ed25519_enc" "$_k/user_ed25519_enc.pub"
		ssh-keygen -q -t ed25519 -N "$(cat "$_k/passphrase")" \
			-C outpost-e2e-user_ed25519_enc -f "$_k/user_ed25519_enc" </dev/null || {
			echo "sshd_start: ssh-keygen for the encrypted key failed" >&2
			return 1
		}
	fi
	# Read by sshd with the user's privileges: world-readable.
	cat "$_k/user_ed25519.pub" "$_k/user_ecdsa.pem.pub" "$_k/user_ed25519_enc.pub" \
		>"$_k/authorized_keys" && chmod 644 "$_k/authorized_keys" || return 1
	sshd_user_key=$_k/user_ed25519
	sshd_user_key_pem=$_k/user_ecdsa.pem
	sshd_user_key_enc=$_k/user_ed25519_enc
	sshd_key_passphrase=$(cat "$_k/passphrase")
	sshd_fingerprint=$(ssh-keygen -lf "$_k/host_ed25519.pub" | cut -d' ' -f2)
	sshd_fingerprint_ecdsa=$(ssh-keygen -lf "$_k/host_ecdsa.pub" | cut -d' ' -f2)
}

# _sshd_sweep_users: removes throwaway users whose test shell is gone (left
# behind by a run that was killed before its EXIT trap ran).
_sshd_sweep_users() {
	getent passwd | while IFS=: read -r _n _ _ _ _g _; do
		case $_n in "$_sshd_user_prefix"*) ;; *) continue ;; esac
		[ "$_g" = "$_sshd_user_gecos" ] || continue
		_p=${_n#"$_sshd_user_prefix"}
		case $_p in '' | *[!0-9]*) continue ;; esac
		kill -0 "$_p" 2>/dev/null && continue # its run is still going
		userdel "$_n" >/dev/null 2>&1
	done
}

# _sshd_useradd NAME HOME: creates the throwaway user; 0 if it exists.
_sshd_useradd() {
	getent passwd "$1" >/dev/null && return 0
	useradd -M -d "$2" -s /bin/sh -c "$_sshd_user_gecos" "$1" 2>>"$_sshd_dir/useradd.err"
}

# _sshd_user: sets $sshd_user, $sshd_password and $sshd_home; as root
# creates the throwaway user (once) with a fresh random password.
_sshd_user() {
	sshd_home=$_sshd_dir/home
	mkdir -p "$sshd_home" || return 1
	if [ "$(id -u)" != 0 ]; then
		sshd_user=$(id -un)
		sshd_password=""
		return 0
	fi
	[ -n "$_sshd_user_made" ] || _sshd_sweep_users
	sshd_user=$_sshd_user_prefix$$
	# useradd fails while another process holds the passwd lock: retry.
	if ! wait_until 10 _sshd_useradd "$sshd_user" "$sshd_home"; then
		echo "sshd_start: useradd $sshd_user failed: $(cat "$_sshd_dir/useradd.err")" >&2
		return 1
	fi
	_sshd_user_made=$sshd_user
	chown "$sshd_user:" "$sshd_home" && chmod 755 "$sshd_home" || return 1
	# The user reaches its home and authorized_keys through these.
	chmod 711 "$T" "$_sshd_dir" || return 1
	if [ -z "$sshd_password" ]; then
		sshd_password=$(head -c 15 /dev/urandom | base64 | tr '+/' 'xy')
		printf '%s:%s\n' "$sshd_user" "$sshd_password" | chpasswd || {
			echo "sshd_start: chpasswd for $sshd_user failed" >&2
			sshd_password=""
			return 1
		}
	fi
}

# _sshd_pick_port: sets $_sshd_p to a random port in 20000-59999 that
# nothing listens on right now (sshd may still lose a race for it).
_sshd_pick_port() {
	while :; do
		_sshd_p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		[ "$_sshd_p" != "$sshd_port" ] || continue
		if command -v ss >/dev/null 2>&1; then
			[ -z "$(ss -ltnH "( sport = :$_sshd_p )" 2>/dev/null)" ] && return 0
		elif ! (: <>"/dev/tcp/127.0.0.1/$_sshd_p") 2>/dev/null; then
			return 0
		fi
	done
}

# _sshd_conf: writes $_sshd_dir/sshd_config and known_hosts for $sshd_port.
_sshd_conf() {
	cat >"$_sshd_dir/sshd_config" <<CONF
# Written by tests/e2e/sshd.sh; run with sshd -D -e -f (logs to stderr).
ListenAddress $sshd_host
Port $sshd_port
HostKey $_sshd_dir/host_ed25519
HostKey $_sshd_dir/host_ecdsa
PidFile $_sshd_dir/sshd.pid
AuthorizedKeysFile $_sshd_dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
# The keys and homes live in temp dirs with loose owners and modes.
StrictModes no
# Sessions start in \$sshd_home, the user's home or not (not as root).
Subsystem sftp internal-sftp -d $sshd_home
LogLevel VERBOSE
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# Room for many concurrent test and benchmark clients.
MaxStartups 64
MaxSessions 64
MaxAuthTries 10
LoginGraceTime 30
CONF
	{
		printf '[%s]:%s ' "$sshd_host" "$sshd_port"
		cut -d' ' -f1,2 "$_sshd_dir/host_ed25519.pub"
		printf '[%s]:%s ' "$sshd_host" "$sshd_port"
		cut -d' ' -f1,2 "$_sshd_dir/host_ecdsa.pub"
	} >"$_sshd_dir/known_hosts"
	sshd_known_hosts=$_sshd_dir/known_hosts
}

# sshd_sftp [SFTP_ARGS...]: runs OpenSSH's sftp in batch mode against the
# server as $sshd_user with key auth ($sshd_user_key) and strict host key
# checking against $sshd_known_hosts; the batch commands come from stdin
# (e.g. `printf 'put a b\n' | sshd_sftp`), sftp's output goes to stdout and
# stderr. SFTP_ARGS come first, so an -o in them overrides the default of
# the same option (ssh takes the first value), e.g. -o UserKnownHostsFile=X;
# -B/-R/-l tune buffer size, requests in flight and bandwidth for benchmarks.
# Returns sftp's status: 0 when every command worked.
# shellcheck disable=SC2120 # the arguments come from the sourcing scripts
sshd_sftp() {
	# No -q: it would also silence ssh's "Host key verification failed".
	sftp -F /dev/null "$@" -b - -P "$sshd_port" -i "$sshd_user_key" \
		-o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
		-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$sshd_known_hosts" \
		-o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no \
		-o ConnectTimeout=5 -o LogLevel=ERROR \
		"$sshd_user@$sshd_host"
}

# _sshd_ready: an SFTP login with the user key works.
# shellcheck disable=SC2119 # no extra sftp arguments here
_sshd_ready() {
	echo pwd | sshd_sftp >/dev/null 2>"$_sshd_dir/probe.err"
}

# _sshd_launch: starts sshd on the written config and waits (bounded) until
# it listens and an SFTP login works. Returns 0 when ready (sets $sshd_pid),
# 2 if it could not bind its port, 1 otherwise (not left running).
_sshd_launch() {
	_sshd_log=$_sshd_dir/sshd.log
	_sshd_from=0
	[ -f "$_sshd_log" ] && _sshd_from=$(wc -l <"$_sshd_log")
	: >"$_sshd_dir/probe.err"
	if command -v setpriv >/dev/null 2>&1; then
		setpriv --pdeathsig KILL "$SSHD_BIN" -D -e -f "$_sshd_dir/sshd_config" \
			</dev/null >>"$_sshd_log" 2>&1 &
	else
		"$SSHD_BIN" -D -e -f "$_sshd_dir/sshd_config" </dev/null >>"$_sshd_log" 2>&1 &
	fi
	sshd_pid=$!
	_sshd_deadline=$(($(date +%s) + 15))
	while :; do
		if ! kill -0 "$sshd_pid" 2>/dev/null; then
			wait "$sshd_pid" 2>/dev/null
			sshd_pid=""
			case $(tail -n "+$((_sshd_from + 1))" "$_sshd_log" 2>/dev/null) in
			*"Address already in use"*) return 2 ;;
			esac
			return 1
		fi
		# Logged once the socket listens: the port probed below is ours.
		case $(tail -n "+$((_sshd_from + 1))" "$_sshd_log" 2>/dev/null) in
		*"Server listening on $sshd_host port $sshd_port."*)
			_sshd_ready && return 0
			# Refused by a listening server: retrying will not help.
			grep -q 'Permission denied' "$_sshd_dir/probe.err" && break
			;;
		esac
		[ "$(date +%s)" -ge "$_sshd_deadline" ] && break
		sleep 0.02 # poll interval, bounded by the deadline (15 s)
	done
	_sshd_kill
	return 1
}

# _sshd_tree PID: prints PID's descendants, each before its own (sshd forks
# a process per connection, which forks one for the logged-in user).
_sshd_tree() {
	for _c in $(pgrep -P "$1" 2>/dev/null); do
		echo "$_c"
		_sshd_tree "$_c"
	done
}

# _sshd_alive PIDS...: one of PIDS still runs (a zombie counts as gone:
# the orphaned connection processes are reaped by whoever inherits them).
_sshd_alive() {
	for _q in "$@"; do
		_st=$(sed 's/.*) \(.\).*/\1/' "/proc/$_q/stat" 2>/dev/null) || continue
		[ -n "$_st" ] && [ "$_st" != Z ] && return 0
	done
	return 1
}

# _sshd_kill: SIGTERM to sshd and its connection processes (they outlive
# the listener otherwise), SIGKILL to whatever is left after 5 s; reaped.
_sshd_kill() {
	[ -n "$sshd_pid" ] || return 0
	# Stopped, the listener forks no connection process the list misses;
	# the SIGTERM waits for the SIGCONT.
	kill -STOP "$sshd_pid" 2>/dev/null
	_sshd_pids="$sshd_pid $(_sshd_tree "$sshd_pid" | tr '\n' ' ')"
	# shellcheck disable=SC2086 # a list of pids
	kill -TERM $_sshd_pids 2>/dev/null
	kill -CONT "$sshd_pid" 2>/dev/null
	_i=0
	# shellcheck disable=SC2086 # a list of pids
	while [ $_i -lt 500 ] && _sshd_alive $_sshd_pids; do
		_i=$((_i + 1))
		sleep 0.01 # poll interval, bounded by the loop (5 s)
	done
	# shellcheck disable=SC2086 # a list of pids
	_sshd_alive $_sshd_pids && kill -KILL $_sshd_pids 2>/dev/null
	wait "$sshd_pid" 2>/dev/null
	sshd_pid=""
}

# _sshd_fail WHAT: reports a server that never got ready, with its log.
_sshd_fail() {
	echo "$1: sshd never got ready; config, log and the last login probe's errors:" >&2
	cat "$_sshd_dir/sshd_config" "$_sshd_dir/sshd.log" "$_sshd_dir/probe.err" >&2 2>/dev/null
	return 1
}

# sshd_start: makes the keys (once per $T), the user (as root) and the
# config, starts sshd on 127.0.0.1:$sshd_port (a free port; retried with
# another one when taken, 10 tries) and returns once an SFTP login with
# $sshd_user_key works, with every sshd_* variable above set. Returns 1 with
# the config and log printed if it never got ready. Call it from the test
# script's own shell (not in a subshell), so the server is its child.
sshd_start() {
	[ -z "$sshd_pid" ] || {
		echo "sshd_start: sshd is already running ($sshd_pid)" >&2
		return 1
	}
	[ -x "$SSHD_BIN" ] || {
		echo "sshd_start: $SSHD_BIN not found (packaging/install-deps.sh test)" >&2
		return 1
	}
	(umask 077 && mkdir -p "$_sshd_dir") || return 1
	_sshd_keys || return 1
	_sshd_user || return 1
	# The privilege separation directory sshd insists on as root (the
	# service's unit creates it; it is left in place, as the service does).
	if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then
		mkdir -p /run/sshd && chmod 755 /run/sshd || return 1
	fi
	_sshd_try=0
	while [ $_sshd_try -lt 10 ]; do
		sshd_port=""
		_sshd_pick_port
		sshd_port=$_sshd_p
		_sshd_conf || return 1
		_sshd_launch
		case $? in
		0) return 0 ;;
		2) _sshd_try=$((_sshd_try + 1)) ;;
		*) _sshd_fail sshd_start; return 1 ;;
		esac
	done
	_sshd_fail "sshd_start (10 tries, ports always taken)"
}

# sshd_stop: stops sshd and every connection process of it (SIGTERM, then
# SIGKILL after 5 s) and reaps it: open sessions are cut. No-op when none
# runs. The keys and the user stay; sshd_restart brings it back on the same
# port, sshd_start on a new one.
sshd_stop() {
	_sshd_kill
}

# sshd_restart: stops sshd if it runs and starts it again on the same port,
# config and keys (the fingerprints and $sshd_known_hosts stay valid), for
# reconnect tests. Returns 1 with the log printed if it never got ready
# (e.g. the port was taken meanwhile).
sshd_restart() {
	[ -n "$sshd_port" ] || {
		echo "sshd_restart: sshd_start first" >&2
		return 1
	}
	_sshd_kill
	_sshd_launch || _sshd_fail sshd_restart
}

# _sshd_cleanup: stops the server and removes the user it made; at exit.
_sshd_cleanup() {
	_sshd_kill
	if [ -n "$_sshd_user_made" ]; then
		userdel "$_sshd_user_made" >/dev/null 2>&1 ||
			echo "sshd.sh: could not remove user $_sshd_user_made" >&2
		_sshd_user_made=""
	fi
}

# Stopped when the script exits, before lib.sh removes $T.
at_exit _sshd_cleanup
