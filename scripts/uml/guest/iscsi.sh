# Guest library for the User-Mode Linux iSCSI harness (POSIX sh / dash).
#
# Sourced by init.sh before the caller's test.sh, which runs under "set -eu".
# Every function returns non-zero on failure (so it also works inside "if"
# and "||", where set -e is off) and prints why. Call "step NAME" before each
# stage: the host reports the last step entered when the script fails.
#
# Pitfalls this library already handles:
#   - SendTargets discovery returns the target's own view of its portals,
#     which may not be reachable from the guest: node records are created
#     for the portal the caller names (iscsi_node_new), not from discovery.
#   - The guest has no udev: iscsi_disk finds the disk under
#     /sys/class/iscsi_session/*/device/target*/*/block/ and mknods it.
#   - iscsid runs in the foreground with its log in /hastor/logs/iscsid.log,
#     which guest_diag prints on failure.
#   - replacement_timeout is lowered (ISCSI_REPLACEMENT_TIMEOUT, default 5 s)
#     so a dead connection fails I/O quickly instead of queueing for 120 s.

# step NAME records the current stage and prints "UML-STEP: NAME".
step() {
	echo "$1" >/run/hastor/step
	echo "UML-STEP: $1 (uptime $(cut -d' ' -f1 /proc/uptime)s)"
}

# fail MSG... prints a message and returns 1: use as "cmd || fail why".
fail() {
	echo "guest: FAIL: $*" >&2
	return 1
}

# wait_for TRIES CMD... runs CMD every 0.1 s until it succeeds, at most
# TRIES times.
wait_for() {
	_n=$1
	shift
	while [ "$_n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		_n=$((_n - 1))
		sleep 0.1
	done
	return 1
}

# guest_diag prints what helps to understand a failure.
guest_diag() {
	echo "----- iscsiadm -m session -P 3"
	iscsiadm -m session -P 3 2>&1 | head -n 80
	echo "----- tail of /hastor/logs/iscsid.log"
	tail -n 60 /hastor/logs/iscsid.log 2>/dev/null
	echo "----- tail of dmesg"
	dmesg 2>/dev/null | tail -n 40
	echo "-----"
}

# ---------------------------------------------------------------- iscsid

# iscsi_start [INITIATOR_IQN] loads the initiator modules, writes the
# initiator name (default: a fresh iqn per run) and starts iscsid in the
# foreground (debug level ISCSID_DEBUG, default 1) in the background.
iscsi_start() {
	_iqn=${1:-${INITIATOR_IQN:-iqn.2005-03.org.open-iscsi:hastor-uml-$(cut -c1-8 /proc/sys/kernel/random/uuid)}}
	modprobe -a iscsi_tcp sd_mod || fail "modprobe iscsi_tcp sd_mod" || return 1
	echo "InitiatorName=$_iqn" >/etc/iscsi/initiatorname.iscsi
	iscsid -f -d "${ISCSID_DEBUG:-1}" >/hastor/logs/iscsid.log 2>&1 &
	echo $! >/run/hastor/iscsid.pid
	# iscsiadm talks to iscsid over an abstract unix socket.
	wait_for 100 grep -q ISCSIADM_ABSTRACT_NAMESPACE /proc/net/unix ||
		fail "iscsid did not start" || return 1
	echo "guest: iscsid running, initiator $_iqn"
}

# ----------------------------------------------------------- node records

# iscsi_discover PORTAL prints the SendTargets answer ("addr:port,tpgt iqn"
# lines) without storing node records.
iscsi_discover() {
	iscsiadm -m discovery -t sendtargets -p "$1" -o nonpersistent ||
		fail "discovery at $1"
}

# iscsi_set IQN PORTAL NAME VALUE updates one setting of a node record.
iscsi_set() {
	iscsiadm -m node -T "$1" -p "$2" -o update -n "$3" -v "$4" >/dev/null ||
		fail "set $3 on $1 at $2"
}

# iscsi_node_new IQN PORTAL creates the node record for the portal the guest
# can reach and sets fail-fast timeouts.
iscsi_node_new() {
	iscsiadm -m node -T "$1" -p "$2" -o new >/dev/null || fail "new node $1 at $2" || return 1
	iscsi_set "$1" "$2" node.session.timeo.replacement_timeout "${ISCSI_REPLACEMENT_TIMEOUT:-5}" &&
		iscsi_set "$1" "$2" "node.conn[0].timeo.login_timeout" "${ISCSI_LOGIN_TIMEOUT:-10}" &&
		iscsi_set "$1" "$2" node.session.initial_login_retry_max 1
}

# iscsi_chap IQN PORTAL USER SECRET [USER_IN SECRET_IN] turns on CHAP; with
# the last two arguments the target must authenticate too (mutual CHAP).
iscsi_chap() {
	iscsi_set "$1" "$2" node.session.auth.authmethod CHAP &&
		iscsi_set "$1" "$2" node.session.auth.username "$3" &&
		iscsi_set "$1" "$2" node.session.auth.password "$4" || return 1
	if [ $# -ge 6 ]; then
		iscsi_set "$1" "$2" node.session.auth.username_in "$5" &&
			iscsi_set "$1" "$2" node.session.auth.password_in "$6" || return 1
	fi
}

# iscsi_digests IQN PORTAL [VALUE] sets HeaderDigest and DataDigest
# (default CRC32C; "None" turns them off).
iscsi_digests() {
	iscsi_set "$1" "$2" "node.conn[0].iscsi.HeaderDigest" "${3:-CRC32C}" &&
		iscsi_set "$1" "$2" "node.conn[0].iscsi.DataDigest" "${3:-CRC32C}"
}

# ---------------------------------------------------------- login/logout

iscsi_login() {
	iscsiadm -m node -T "$1" -p "$2" --login || fail "login to $1 at $2"
}

iscsi_logout() {
	iscsiadm -m node -T "$1" -p "$2" --logout || fail "logout from $1 at $2"
}

# iscsi_session_param IQN NAME prints a negotiated parameter of the
# session to IQN (e.g. header_digest, data_digest from
# /sys/class/iscsi_connection, or max_burst_len from iscsi_session).
iscsi_session_param() {
	for _s in /sys/class/iscsi_session/session*; do
		[ "$(cat "$_s/targetname" 2>/dev/null)" = "$1" ] || continue
		_c=$(ls -d "$_s"/device/connection*/iscsi_connection/connection* 2>/dev/null | head -n1)
		if [ -r "$_c/$2" ]; then cat "$_c/$2"; return 0; fi
		if [ -r "$_s/$2" ]; then cat "$_s/$2"; return 0; fi
	done
	fail "no parameter $2 for a session to $1"
}

# iscsi_expect_digests IQN [on|off] checks that header and data digests
# were negotiated on (default) or off for the session to IQN.
iscsi_expect_digests() {
	_want=1
	[ "${2:-on}" = on ] || _want=0
	_h=$(iscsi_session_param "$1" header_digest) || return 1
	_dd=$(iscsi_session_param "$1" data_digest) || return 1
	[ "$_h" = "$_want" ] && [ "$_dd" = "$_want" ] ||
		fail "digests on $1: header=$_h data=$_dd, want ${2:-on}"
}

# _disk_path IQN [LUN] prints the sysfs block directory of the session's
# disk (first disk if LUN is empty).
_disk_path() {
	for _s in /sys/class/iscsi_session/session*; do
		[ "$(cat "$_s/targetname" 2>/dev/null)" = "$1" ] || continue
		for _b in "$_s"/device/target*/*/block/*; do
			[ -e "$_b/dev" ] || continue
			if [ -n "${2:-}" ]; then
				_hctl=$(basename "$(dirname "$(dirname "$_b")")")
				[ "${_hctl##*:}" = "$2" ] || continue
			fi
			echo "$_b"
			return 0
		done
	done
	return 1
}

# iscsi_disk IQN [LUN] waits (up to 30 s) for the SCSI disk of the logged-in
# session to IQN and prints its /dev path, creating the node if needed.
iscsi_disk() {
	wait_for 300 _disk_path "$1" "${2:-}" || fail "no disk for $1 lun ${2:-any}" || return 1
	_b=$(_disk_path "$1" "${2:-}")
	_name=$(basename "$_b")
	_dev=/dev/$_name
	if [ ! -b "$_dev" ]; then
		_mm=$(cat "$_b/dev")
		mknod "$_dev" b "${_mm%%:*}" "${_mm##*:}" || fail "mknod $_dev" || return 1
	fi
	# The size becomes non-zero once the capacity is read.
	wait_for 100 test "$(cat "$_b/size")" -gt 0 || fail "$_dev has size 0" || return 1
	echo "$_dev"
}

# disk_bytes DEV prints the size of DEV in bytes.
disk_bytes() {
	blockdev --getsize64 "$1"
}

# ------------------------------------------------------------ data checks

# check_pattern DEV MIB writes MIB MiB of random data with O_DIRECT, reads
# it back with O_DIRECT and compares SHA-256 sums.
check_pattern() {
	head -c "$(($2 * 1048576))" /dev/urandom >/tmp/pattern || return 1
	_want=$(sha256sum </tmp/pattern | cut -d' ' -f1)
	dd if=/tmp/pattern of="$1" bs=1M oflag=direct conv=fsync status=none ||
		fail "dd write $1" || return 1
	_got=$(dd if="$1" bs=1M count="$2" iflag=direct status=none | sha256sum | cut -d' ' -f1)
	rm -f /tmp/pattern
	[ "$_want" = "$_got" ] || fail "pattern mismatch on $1: wrote $_want read $_got"
}

# check_fio DEV [SIZE] runs a bounded fio write-then-verify (crc32c) job:
# random 4 KiB writes at queue depth 8, then 64 KiB sequential writes, each
# over SIZE (default 16M) and verified when written.
check_fio() {
	_rc=0
	(cd /tmp && fio --verify_state_save=0 \
		--name=rand4k --filename="$1" --direct=1 --ioengine=libaio \
		--iodepth=8 --rw=randwrite --bs=4k --size="${2:-16M}" --randrepeat=0 \
		--verify=crc32c --verify_fatal=1 --do_verify=1 \
		--name=seq64k --stonewall --filename="$1" --direct=1 --ioengine=libaio \
		--iodepth=4 --rw=write --bs=64k --size="${2:-16M}" \
		--verify=crc32c --verify_fatal=1 --do_verify=1 \
		>/hastor/logs/fio.log 2>&1) || _rc=$?
	grep -E '^ *(READ|WRITE):|err=' /hastor/logs/fio.log || true
	[ $_rc -eq 0 ] || { cat /hastor/logs/fio.log; fail "fio verify on $1"; }
}

# fs_make DEV creates ext4 on DEV.
fs_make() {
	mkfs.ext4 -q -F "$1" || fail "mkfs.ext4 $1"
}

# fs_fill DEV [FILES] mounts DEV on /mnt/lun, writes FILES (default 8)
# random files of 64..512 KiB, records their SHA-256 sums in
# /run/hastor/files.sha256, syncs and unmounts.
fs_fill() {
	mount -t ext4 "$1" /mnt/lun || fail "mount $1" || return 1
	_i=0
	while [ $_i -lt "${2:-8}" ]; do
		head -c "$(((_i % 8 + 1) * 65536))" /dev/urandom >"/mnt/lun/f$_i" || { umount /mnt/lun; fail "write f$_i"; return 1; }
		_i=$((_i + 1))
	done
	mkdir -p /mnt/lun/dir/sub && echo hastor >/mnt/lun/dir/sub/marker
	(cd /mnt/lun && find . -type f ! -name 'lost+found' -print | sort | xargs sha256sum) >/run/hastor/files.sha256
	sync || fail "sync" || return 1
	umount /mnt/lun || fail "umount $1"
}

# fs_verify DEV mounts DEV read-only, checks the files fs_fill wrote and
# unmounts.
fs_verify() {
	mount -t ext4 -o ro "$1" /mnt/lun || fail "mount $1" || return 1
	_rc=0
	(cd /mnt/lun && sha256sum -c --quiet /run/hastor/files.sha256) || _rc=$?
	umount /mnt/lun || fail "umount $1" || return 1
	[ $_rc -eq 0 ] || fail "file contents differ on $1"
}

# fs_check DEV runs a read-only forced fsck and fails unless it is clean.
fs_check() {
	e2fsck -f -n "$1" || fail "e2fsck -f -n $1 found problems"
}

# --------------------------------------------------------------- suites

# suite_full IQN PORTAL [LUN] runs the whole initiator sequence against a
# target whose node record is already configured (CHAP, digests): login,
# O_DIRECT pattern, fio verify, ext4 create and fill, logout, login, verify,
# fsck, logout. Set FIO_SIZE / PATTERN_MIB to change the amount of I/O.
suite_full() {
	_sf_t=$1 _sf_p=$2 _sf_l=${3:-}
	step login
	iscsi_login "$_sf_t" "$_sf_p" || return 1
	_sf_d=$(iscsi_disk "$_sf_t" "$_sf_l") || return 1
	echo "guest: $_sf_t is $_sf_d, $(disk_bytes "$_sf_d") bytes, header/data digest" \
		"$(iscsi_session_param "$_sf_t" header_digest)/$(iscsi_session_param "$_sf_t" data_digest)"
	step dd-pattern
	check_pattern "$_sf_d" "${PATTERN_MIB:-8}" || return 1
	step fio-verify
	check_fio "$_sf_d" "${FIO_SIZE:-16M}" || return 1
	step mkfs
	fs_make "$_sf_d" || return 1
	step fs-fill
	fs_fill "$_sf_d" || return 1
	step logout
	iscsi_logout "$_sf_t" "$_sf_p" || return 1
	step relogin
	iscsi_login "$_sf_t" "$_sf_p" || return 1
	_sf_d=$(iscsi_disk "$_sf_t" "$_sf_l") || return 1
	step fs-verify
	fs_verify "$_sf_d" || return 1
	step fsck
	fs_check "$_sf_d" || return 1
	step final-logout
	iscsi_logout "$_sf_t" "$_sf_p"
}
