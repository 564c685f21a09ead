#!/usr/bin/env bash
# shellcheck disable=SC2016 # mmdebstrap hooks are single-quoted: it sets $1
# Builds (or reuses) the Debian bookworm root filesystem that the User-Mode
# Linux guest boots over hostfs, and prints its directory as the last line.
#
# Cache: ${HASTOR_CACHE:-$HOME/.cache/hastor}/uml/rootfs-<key>, where <key>
# hashes this script, the package list, the mirror and the architecture, so
# any change rebuilds. Older rootfs-* directories are removed after a
# successful build. Concurrent callers are serialised with flock(1).
#
# Mirror: the first bookworm "main" URI found in /etc/apt/sources.list and
# /etc/apt/sources.list.d/*.{list,sources} (HASTOR_UML_MIRROR overrides).
#
# Needs root, mmdebstrap and flock (scripts/uml/install-deps.sh installs them).
set -euo pipefail

SUITE=bookworm
# Guest tools: the initiator (open-iscsi), workload and checks (fio,
# e2fsprogs, util-linux, coreutils), network (iproute2), module loading
# (kmod), SCSI-level probes for target tests (sg3-utils), ps/pkill (procps),
# LUKS2 with the kernel's dm-crypt (cryptsetup-bin; it pulls in dmsetup).
PACKAGES="open-iscsi fio e2fsprogs util-linux iproute2 kmod procps sg3-utils cryptsetup-bin"

die() { echo "build-rootfs: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap root mode, hostfs ownership)"
command -v mmdebstrap >/dev/null || die "mmdebstrap missing: run scripts/uml/install-deps.sh"
command -v flock >/dev/null || die "flock missing: run scripts/uml/install-deps.sh"

# find_mirror prints the first URI that serves "$SUITE main" for binary
# packages, reading one-line and deb822 apt sources.
find_mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v suite="$SUITE" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				uri = $i; s = $(i + 1)
				if (s != suite) next
				for (j = i + 2; j <= NF; j++) if ($j == "main") { print uri; exit }
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v suite="$SUITE" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
				    (" " comps " ") ~ / main / && enabled != "no")
					{ split(uris, u, " "); print u[1]; found = 1 }
				types = suites = comps = uris = ""; enabled = "yes"
			}
			BEGIN { enabled = "yes" }
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); if (found) exit; next }
			{
				k = tolower($1); sub(/:$/, "", k); $1 = ""; sub(/^ +/, "")
				if (k == "types") types = $0
				else if (k == "suites") suites = $0
				else if (k == "components") comps = $0
				else if (k == "uris") uris = $0
				else if (k == "enabled") enabled = tolower($0)
			}
			END { if (!found) flush() }' "$f"
	done
}

MIRROR=${HASTOR_UML_MIRROR:-$(find_mirror | head -n1)}
[ -n "$MIRROR" ] || die "no '$SUITE main' source in /etc/apt/sources.list*; set HASTOR_UML_MIRROR"

HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE=${HASTOR_CACHE:-$HOME/.cache/hastor}/uml
KEY=$( { cat "$0"; echo "$PACKAGES $MIRROR $SUITE $(dpkg --print-architecture)"; } | sha256sum | cut -c1-16)
DIR=$CACHE/rootfs-$KEY
mkdir -p "$CACHE"

if [ -e "$DIR/.hastor-complete" ]; then
	echo "$DIR"
	exit 0
fi

exec 9>"$CACHE/rootfs.lock"
flock 9
if [ -e "$DIR/.hastor-complete" ]; then # built by a concurrent caller
	echo "$DIR"
	exit 0
fi

TMP=$DIR.tmp
rm -rf "$TMP"
trap 'rm -rf "$TMP"' EXIT
start=$(date +%s)
echo "build-rootfs: building $DIR from $MIRROR ($SUITE)" >&2

# The guest's first program. The kernel passes unknown "KEY=VALUE" command
# line words to init as environment, so HASTOR_RUN names the host directory
# holding the per-run scripts; everything else happens in its init.sh, which
# is not baked in here so that editing it does not rebuild the rootfs.
hook_init='cat >"$1/sbin/hastor-uml-init" <<"INIT"
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
if [ -z "$HASTOR_RUN" ] || ! mount -t hostfs -o "$HASTOR_RUN" hostfs /hastor; then
	echo "UML-RESULT: FAIL mount-run-dir HASTOR_RUN=$HASTOR_RUN"
	echo o >/proc/sysrq-trigger # power off: minbase has no poweroff(8)
	sleep 60
fi
exec /bin/sh /hastor/init.sh
INIT
chmod 0755 "$1/sbin/hastor-uml-init"'

mmdebstrap --variant=minbase --mode=root \
	--include="$(echo "$PACKAGES" | tr ' ' ,)" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--customize-hook='mkdir -p "$1/hastor" "$1/lib/modules" "$1/mnt/lun"' \
	--customize-hook='echo uml-guest >"$1/etc/hostname"' \
	--customize-hook='rm -f "$1/etc/iscsi/initiatorname.iscsi"' \
	--customize-hook="$hook_init" \
	"$SUITE" "$TMP" \
	"deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" >&2

touch "$TMP/.hastor-complete"
mv "$TMP" "$DIR"
trap - EXIT
for old in "$CACHE"/rootfs-*; do
	[ "$old" = "$DIR" ] || rm -rf "$old"
done
echo "build-rootfs: built in $(( $(date +%s) - start ))s" >&2
echo "$DIR"
