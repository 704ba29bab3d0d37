#!/bin/sh
# Installs the Debian packages listed in packaging/deps.txt for the given roles
# (build, test, lint, bench, pkg) when any of them is missing. Needs root only when
# something is missing; prints what it installs.
set -eu
here=$(dirname "$0")
roles=${*:-build}
want=""
for role in $roles; do
	want="$want $(awk -v r="$role" '$1 == r { print $2 }' "$here/deps.txt")"
done
missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages and not root; run as root or: apt-get install$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
