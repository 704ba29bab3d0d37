#!/usr/bin/env bash
# Installs the SAP test peer's node_modules (npm ci from package-lock.json)
# when they are missing or the lock file changed since the last install.
# Used by tests/e2e/sap.sh (sap_start) and by .ci/run. Fails, naming what is
# missing, when node (>= 20) or npm is not there: the peer cannot run then.
#
# --ignore-scripts: nothing is compiled. @cap-js/sqlite pulls in
# better-sqlite3, whose native addon stays unbuilt; the peer uses sql.js
# (WASM SQLite, package.json: cds.requires.db.driver) instead.
set -eu
cd "$(dirname "$0")"

if ! command -v node >/dev/null 2>&1; then
	echo "sap peer: node not found; Node.js >= 20 (with npm) is needed for the SAP tests" >&2
	exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
	echo "sap peer: node $(node --version 2>/dev/null) is too old; Node.js >= 20 is needed for the SAP tests" >&2
	exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
	echo "sap peer: npm not found; it comes with Node.js >= 20 and is needed to install the SAP test peer" >&2
	exit 1
fi

mkdir -p .run
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.sap-peer-installed
# One install at a time: parallel test runs wait here for the first.
exec 9>.run/install.lock
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi
echo "sap peer: installing node_modules (npm ci)..." >&2
npm ci --ignore-scripts --no-audit --no-fund >&2
echo "$want" >"$stamp"
