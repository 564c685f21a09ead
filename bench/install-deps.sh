#!/bin/sh
# install-deps.sh installs what the benchmark harness (go run ./bench) needs
# from Debian's packages: the comparison targets (tgt, istgt), libiscsi's
# tools and headers, and what bench/build-fio.sh needs to rebuild fio with its
# libiscsi engine (dpkg-dev, fio's build dependencies, and a deb-src entry for
# the mirror this machine already uses, written to its own sources file).
#
# Idempotent: it does nothing when everything is already there. Needs root.
set -eu

pkgs="tgt istgt libiscsi-bin libiscsi-dev dpkg-dev build-essential fakeroot"
srcfile=/etc/apt/sources.list.d/hastor-deb-src.sources

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done

have_src() {
	grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/
}

# fio's build dependencies are recorded in a stamp once installed so that the
# (slow) apt-get build-dep is not repeated on every run.
stamp=/var/lib/hastor-bench-builddeps.stamp

if [ -z "$missing" ] && have_src && [ -e "$stamp" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: must run as root (missing:$missing)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive

if ! have_src; then
	# Reuse the mirror and suites the machine is configured with.
	uri=""
	suite=""
	if [ -r /etc/apt/sources.list.d/debian.sources ]; then
		uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
		suite=$(awk '/^Suites:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
		uri=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
		suite=$(awk '$1 == "deb" && $2 !~ /security/ {print $3; exit}' /etc/apt/sources.list)
	fi
	: "${uri:=http://deb.debian.org/debian}"
	: "${suite:=$(. /etc/os-release && echo "$VERSION_CODENAME")}"
	cat >"$srcfile" <<EOF
# Written by hastor's bench/install-deps.sh: source packages, so that
# bench/build-fio.sh can rebuild fio with its libiscsi engine.
Types: deb-src
URIs: $uri
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	apt-get update -q
elif [ -n "$missing" ]; then
	apt-get update -q
fi

if [ -n "$missing" ]; then
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing
fi

if [ ! -e "$stamp" ]; then
	apt-get build-dep -y -q fio
	touch "$stamp"
fi
