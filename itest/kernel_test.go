package itest

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"hastor/internal/hastordtest"
	"hastor/internal/uml"
)

// TestKernelInitiator runs the Linux kernel's own initiator (iscsi_tcp
// with open-iscsi's iscsid/iscsiadm, Linux 6.1 under user-mode-linux)
// against hastord in a network namespace: discovery, one-way and mutual
// CHAP (wrong secrets refused both ways), CRC32C header and data digests
// required by the target, an O_DIRECT pattern, sg3_utils' EXTENDED COPY
// (sg_xcopy), blkdiscard (UNMAP) and persistent reservations (sg_persist),
// fio with verification, and an ext4 filesystem that survives a logout
// and a new login.
func TestKernelInitiator(t *testing.T) {
	uml.Require(t)
	start := time.Now()
	rootfs, err := uml.EnsureRootfs(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ns := uml.NewNetns(t)
	port, err := ns.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	const (
		t1 = "iqn.2026-11.dev.hastor:kernel-mutual"
		t2 = "iqn.2026-11.dev.hastor:kernel-oneway"
	)
	cfg := `state_dir: {{STATE}}
portals: ["` + netip.AddrPortFrom(ns.HostIP(), port).String() + `"]
iscsi:
  header_digest: [CRC32C]
  data_digest: [CRC32C]
targets:
  - iqn: ` + t1 + `
    auth:
      chap: {username: user1, secret: secret1-0123456}
      mutual_chap: {username: target1, secret: tsecret1-012345}
    luns:
      - {lun: 0, volume_id: kernel-lun-a, path: a.img, size: 64MiB}
  - iqn: ` + t2 + `
    auth:
      chap: {username: user2, secret: secret2-0123456}
    luns:
      - {lun: 0, volume_id: kernel-lun-b, path: b.img, size: 16MiB}
`
	d := hastordtest.Start(t, hastordtest.Options{Config: cfg, Netns: ns.Name, Host: ns.HostIP().String(), Port: int(port)})
	res := uml.RunT(t, uml.Options{
		Rootfs: rootfs,
		Netns:  ns,
		Script: kernelGuestScript,
		Env: map[string]string{
			"PORT": strconv.Itoa(int(port)),
			"T1":   t1, "USER1": "user1", "SECRET1": "secret1-0123456",
			"USER1_OUT": "target1", "SECRET1_OUT": "tsecret1-012345",
			"T2": t2, "USER2": "user2", "SECRET2": "secret2-0123456",
		},
		Timeout: 4 * time.Minute,
	})
	t.Logf("kernel initiator: total %.1fs (boot %.2fs, guest %.1fs)",
		time.Since(start).Seconds(), res.Boot.Seconds(), res.Elapsed.Seconds())
	d.CheckLog(t)
}

const kernelGuestScript = `
P=$HOST_IP:$PORT
step iscsid
iscsi_start
step discovery
iscsi_discover "$P"

step chap-wrong-secret
iscsi_node_new "$T2" "$P"
iscsi_digests "$T2" "$P" CRC32C
iscsi_chap "$T2" "$P" "$USER2" wrong-secret-0123
if iscsi_login "$T2" "$P"; then fail "login with a wrong CHAP secret succeeded"; fi
step chap-oneway
iscsi_chap "$T2" "$P" "$USER2" "$SECRET2"
iscsi_login "$T2" "$P"
iscsi_expect_digests "$T2" on
d=$(iscsi_disk "$T2")
check_pattern "$d" 4

step xcopy
# sg3_utils' EXTENDED COPY client: 1 MiB from the start to 8 MiB, inside
# the target, then compared through the kernel. This kernel has bsg but no
# sg driver, so sg_xcopy gets the disk's bsg node.
x=/dev/bsg/$(ls "/sys/block/${d#/dev/}/device/bsg")
sg_xcopy if="$x" of="$x" bs=512 count=2048 seek=16384 >/hastor/logs/sg_xcopy.log 2>&1 ||
	{ cat /hastor/logs/sg_xcopy.log; fail "sg_xcopy on $d"; }
a=$(dd if="$d" bs=1M count=1 iflag=direct status=none | sha256sum)
b=$(dd if="$d" bs=1M skip=8 count=1 iflag=direct status=none | sha256sum)
[ "$a" = "$b" ] || fail "the EXTENDED COPY destination differs from its source"

step discard
[ "$(cat "/sys/block/${d#/dev/}/queue/discard_max_bytes")" -gt 0 ] ||
	fail "the kernel sees no discard support on $d"
blkdiscard -o 0 -l 4194304 "$d" || fail "blkdiscard $d"
dd if="$d" bs=1M count=4 iflag=direct status=none | cmp -s -n 4194304 - /dev/zero ||
	fail "blocks read back after blkdiscard are not zeros"

step persistent-reservations
sg_persist --out --register --param-sark=0xabc "$d" >/dev/null || fail "PR register"
sg_persist --out --reserve --param-rk=0xabc --prout-type=5 "$d" >/dev/null || fail "PR reserve"
sg_persist --in --read-reservation "$d" | grep -qi "key=0xabc" ||
	{ sg_persist --in --read-reservation "$d"; fail "PR read reservation"; }
sg_persist --out --release --param-rk=0xabc --prout-type=5 "$d" >/dev/null || fail "PR release"
sg_persist --out --register --param-rk=0xabc "$d" >/dev/null || fail "PR unregister"
iscsi_logout "$T2" "$P"

step chap-mutual-wrong-target-secret
iscsi_node_new "$T1" "$P"
iscsi_digests "$T1" "$P" CRC32C
iscsi_chap "$T1" "$P" "$USER1" "$SECRET1" "$USER1_OUT" wrong-secret-0123
if iscsi_login "$T1" "$P"; then fail "login accepted a target with the wrong mutual secret"; fi
step chap-mutual-digests
iscsi_chap "$T1" "$P" "$USER1" "$SECRET1" "$USER1_OUT" "$SECRET1_OUT"
iscsi_login "$T1" "$P"
iscsi_expect_digests "$T1" on
iscsi_logout "$T1" "$P"

suite_full "$T1" "$P"
`
