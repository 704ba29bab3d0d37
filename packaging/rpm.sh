#!/bin/sh
# make rpm: builds the RPM from this tree into build/pkg/rpm/ with
# rpmbuild and checks it with rpmlint (any error fails; the filters and
# their reasons are in packaging/rpm/rpmlint.toml).
#
# The source is a tarball of the tree (build/, node_modules, a --dev store
# and what .gitignore names left out).
# On Debian the spec's BuildRequires are Debian packages under other names,
# so rpmbuild does not check them (--nodeps): make deps installs them.
# OUTPOST_PKG_VERSION builds another version than the spec's.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/build/pkg/rpm
version=${OUTPOST_PKG_VERSION:-$(sed -n 's/^Version:.*:\([0-9.]*\)}$/\1/p' "$top/packaging/rpm/outpost.spec")}

rm -rf "$out"
mkdir -p "$out/SOURCES" "$out/stage/outpost-$version"
(cd "$top" && tar --exclude=./build --exclude=./.git --exclude=node_modules \
	--exclude=./.outpost-data --exclude=./var --exclude-vcs-ignores -cf - .) |
	(cd "$out/stage/outpost-$version" && tar -xf -)
tar -C "$out/stage" -czf "$out/SOURCES/outpost-$version.tar.gz" "outpost-$version"
rm -rf "$out/stage"
cp "$top/packaging/systemd/outpost.sysusers" "$out/SOURCES/"

rpmbuild -bb --nodeps \
	--define "_topdir $out" \
	--define "outpost_version $version" \
	"$top/packaging/rpm/outpost.spec"
rpm=$(ls "$out"/RPMS/*/outpost-"$version"-*.rpm)
rpmlint -c "$top/packaging/rpm/rpmlint.toml" "$rpm"
echo "rpm: $rpm"
