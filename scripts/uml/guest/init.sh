#!/bin/sh
# PID 1 of the User-Mode Linux guest, second stage.
#
# /sbin/hastor-uml-init (baked into the rootfs by build-rootfs.sh) mounts
# /proc, /sys, /dev and the per-run host directory on /hastor, then runs this
# file from there. Run (internal/uml) fills /hastor with:
#   env        shell assignments: GUEST_ADDR, HOST_ADDR, UML_MODULES, the
#              caller's variables
#   init.sh    this file
#   iscsi.sh   the guest library (steps, iSCSI, data checks)
#   test.sh    the caller's script, sourced with "set -eu" after iscsi.sh
#   logs/      written by the guest (iscsid.log, ...), readable by the host
#
# Console protocol, parsed by the host:
#   UML-BOOTED               init started (boot time is measured up to here)
#   UML-STEP: NAME           the script entered step NAME
#   UML-RESULT: PASS         the script exited 0
#   UML-RESULT: FAIL STEP    it failed in STEP (the last step entered)
# Afterwards the guest syncs and powers off, so the UML process exits.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
H=/hastor

poweroff_now() {
	sync
	echo o >/proc/sysrq-trigger # minbase has no poweroff(8); sysrq works in UML
	while :; do sleep 60; done
}

echo "UML-BOOTED"

setup() {
	. $H/env || return 1
	# The root is hostfs, mounted read-only and shared by concurrent runs:
	# every directory the guest writes gets a private tmpfs.
	for d in /run /tmp /var/tmp /var/lib/iscsi /var/lock /mnt /root; do
		[ -d "$d" ] && [ ! -L "$d" ] || continue
		mount -t tmpfs -o mode=0755 tmpfs "$d" || return 1
	done
	mkdir -p /run/lock /run/hastor /mnt/lun
	chmod 1777 /tmp /var/tmp
	# /etc/iscsi holds the node database and initiator name: copy it to tmpfs.
	mkdir -p /run/etc-iscsi && cp -a /etc/iscsi/. /run/etc-iscsi/ &&
		mount --bind /run/etc-iscsi /etc/iscsi || return 1
	mount -t hostfs -o "$UML_MODULES" hostfs /lib/modules || return 1
	ip link set lo up || return 1
	if [ -n "${GUEST_ADDR:-}" ]; then
		ip addr add "$GUEST_ADDR" dev eth0 && ip link set eth0 up || return 1
	fi
}

mkdir -p $H/logs
if ! setup >$H/logs/setup.log 2>&1; then
	cat $H/logs/setup.log
	echo "UML-RESULT: FAIL guest-setup"
	poweroff_now
fi

echo guest-setup >/run/hastor/step
/bin/sh -c 'set -eu; . /hastor/iscsi.sh; . /hastor/test.sh' </dev/null
rc=$?
step=$(cat /run/hastor/step 2>/dev/null || echo unknown)
if [ $rc -eq 0 ]; then
	echo "UML-RESULT: PASS"
else
	echo "guest: script exited $rc in step $step"
	/bin/sh -c '. /hastor/iscsi.sh; guest_diag' </dev/null
	echo "UML-RESULT: FAIL $step"
fi
poweroff_now
