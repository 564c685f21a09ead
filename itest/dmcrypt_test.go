package itest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hastor/internal/hastordtest"
	"hastor/internal/uml"
)

// dmVolume is one image of TestDmCryptOpensHastorVolume.
type dmVolume struct {
	name    string // file name stem and volume_id suffix
	lun     int
	sector  int // LUKS2 encryption sector size in bytes
	keyBits int // volume key size: 512 (AES-256-XTS) or 256 (AES-128-XTS)
}

// dmRange is a byte range of a LUN's data area, in whole 4096-byte blocks.
type dmRange struct {
	lba int64 // in 4096-byte blocks
	n   int   // bytes, a multiple of 4096
}

func (r dmRange) off() int64 { return r.lba * dmBlock }

const (
	dmBlock   = 4096     // the LUNs' block_size
	dmImgSize = 48 << 20 // image size; the data area is 32 MiB after the 16 MiB header
	dmIQN     = "iqn.2026-11.dev.hastor:dmcrypt"
	dmSeed    = "hastor dm-crypt interop" // fixed: the plaintexts are the same on every run
)

var (
	// dmHastorRanges are written through iSCSI by hastord and read in the
	// guest through dm-crypt: the start of the data area, a 2 MiB run, an
	// odd start, and its last two blocks.
	dmHastorRanges = []dmRange{{0, 64 << 10}, {1000, 2 << 20}, {5001, 1<<20 + 12<<10}, {8190, 2 * dmBlock}}
	// dmGuestRange is written in the guest through dm-crypt and read
	// through iSCSI by hastord.
	dmGuestRange = dmRange{7000, 1 << 20}
)

// TestDmCryptOpensHastorVolume checks hastor's encrypted LUNs against the
// real Linux dm-crypt (Linux 6.1 under user-mode-linux) and cryptsetup:
// images formatted by hastorctl with 4096- and 512-byte encryption sectors
// and 512- and 256-bit keys are written through hastord over iSCSI, then
// opened with "cryptsetup open" in the guest, which must read back the same
// plaintext; data the guest writes through dm-crypt must read back through
// hastord. For 4096-byte sectors the guest also maps the volume with the
// volume key and dm-crypt's iv_large_sectors flag, which cryptsetup does not
// set for LUKS2: that mapping must NOT give the plaintext, which shows that
// the comparison tells the two IV conventions apart (plain64 counts 512-byte
// units of the data area, even with 4096-byte sectors).
func TestDmCryptOpensHastorVolume(t *testing.T) {
	uml.Require(t)
	start := time.Now()
	ctl := hastordtest.Hastorctl(t)
	hastordtest.ISCSIIO(t) // fail or skip now, before the slow parts
	rootfs, err := uml.EnsureRootfs(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}

	vols := []dmVolume{
		{name: "s4096k512", lun: 0, sector: 4096, keyBits: 512},
		{name: "s512k512", lun: 1, sector: 512, keyBits: 512},
		{name: "s4096k256", lun: 2, sector: 4096, keyBits: 256},
		{name: "s512k256", lun: 3, sector: 512, keyBits: 256},
	}
	// The guest mounts dir over hostfs: it holds the images, the key file
	// and the patterns the guest writes.
	dir := hastordtest.DiskDir(t)
	if strings.ContainsAny(dir, ", \t\n'\"") {
		t.Fatalf("image directory %q cannot be a hostfs mount option", dir)
	}
	kf := writeKey(t, dir, "key", "dm-crypt interop passphrase")
	var seed [32]byte
	copy(seed[:], dmSeed)
	rng := rand.NewChaCha8(seed)
	plain := map[string][][]byte{} // volume -> plaintext of each of dmHastorRanges
	pattern := map[string][]byte{} // volume -> plaintext of dmGuestRange
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "state_dir: {{STATE}}\nportals: [\"127.0.0.1:{{PORT}}\"]\niscsi:\n  nop_in_interval: 0s\ntargets:\n  - iqn: %s\n    luns:\n", dmIQN)
	for _, v := range vols {
		img := filepath.Join(dir, v.name+".img")
		out := mustRun(t, 2*time.Minute, nil, ctl, "format", "--size", strconv.Itoa(dmImgSize>>20)+"MiB", "--key-file", kf,
			"--sector-size", strconv.Itoa(v.sector), "--key-size", strconv.Itoa(v.keyBits),
			"--pbkdf", "pbkdf2", "--iterations", "1000", img)
		t.Logf("hastorctl format: %s", strings.TrimSpace(out))
		fmt.Fprintf(&cfg, "      - lun: %d\n        volume_id: dmcrypt-%s\n        path: %s\n        size: %dMiB\n"+
			"        block_size: %d\n        encryption:\n          key_file: %s\n", v.lun, v.name, img, dmImgSize>>20, dmBlock, kf)
		for _, r := range dmHastorRanges {
			b := make([]byte, r.n)
			rng.Read(b)
			plain[v.name] = append(plain[v.name], b)
		}
		p := make([]byte, dmGuestRange.n)
		rng.Read(p)
		pattern[v.name] = p
		if err := os.WriteFile(filepath.Join(dir, v.name+".pattern"), p, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// hastor encrypts.
	d := hastordtest.Start(t, hastordtest.Options{Config: cfg.String()})
	for _, v := range vols {
		u := dmURL(d, v.lun)
		for i, r := range dmHastorRanges {
			if _, errOut, err := iscsiio(t, plain[v.name][i], "write", u, strconv.FormatInt(r.lba, 10), strconv.Itoa(dmBlock)); err != nil {
				t.Fatalf("%s: iSCSI write at LBA %d: %v %s", v.name, r.lba, err, errOut)
			}
		}
	}
	d.CheckLog(t)
	d.Stop(t) // releases the images' locks and flushes
	state := filepath.Join(filepath.Dir(d.Config), "state")

	// dm-crypt decrypts, then encrypts.
	var specs, ranges []string
	for _, v := range vols {
		specs = append(specs, v.name+":"+strconv.Itoa(v.sector))
	}
	for _, r := range dmHastorRanges {
		ranges = append(ranges, fmt.Sprintf("%d:%d", r.off(), r.n))
	}
	// The first block alone: its plain64 IV is 0 under both conventions, so
	// the iv_large_sectors mapping must agree there (its key is right).
	ranges = append(ranges, fmt.Sprintf("0:%d", dmBlock))
	res := uml.RunT(t, uml.Options{
		Rootfs: rootfs,
		Script: dmcryptGuestScript,
		Env: map[string]string{
			"IMG_DIR":     dir,
			"VOLS":        strings.Join(specs, " "),
			"RANGES":      strings.Join(ranges, " "),
			"PATTERN_OFF": strconv.FormatInt(dmGuestRange.off(), 10),
			"PATTERN_LEN": strconv.Itoa(dmGuestRange.n),
		},
		Timeout: 4 * time.Minute,
	})
	report, err := os.ReadFile(filepath.Join(res.RunDir, "logs", "dmcrypt.txt"))
	if err != nil {
		t.Fatalf("guest report: %v", err)
	}
	got := parseDmReport(t, report)

	for _, v := range vols {
		table := got[v.name+" table"]
		t.Logf("%s: guest dmsetup table: %s", v.name, table)
		if fields := strings.Fields(table); len(fields) < 8 || fields[2] != "crypt" || fields[3] != "aes-xts-plain64" {
			t.Errorf("%s: unexpected dm table %q", v.name, table)
		}
		if strings.Contains(table, "iv_large_sectors") {
			t.Errorf("%s: cryptsetup set iv_large_sectors for LUKS2 (table %q): plain64 counts %d-byte sectors", v.name, table, v.sector)
		}
		if want := "sector_size:" + strconv.Itoa(v.sector); v.sector != 512 && !strings.Contains(table, want) {
			t.Errorf("%s: dm table %q lacks %s", v.name, table, want)
		}
		for i, r := range dmHastorRanges {
			key := fmt.Sprintf("%s luks2 %d %d", v.name, r.off(), r.n)
			want := sha256Hex(plain[v.name][i])
			luks := got[key]
			large := got[fmt.Sprintf("%s large %d %d", v.name, r.off(), r.n)]
			switch {
			case luks == want:
			case large == want:
				t.Errorf("%s: bytes %d+%d: dm-crypt opened by cryptsetup (%s) does NOT give the plaintext hastor was given, "+
					"but the same table with iv_large_sectors does: hastor's plain64 IV counts %d-byte sectors, dm-crypt's LUKS2 counts 512-byte units",
					v.name, r.off(), r.n, table, v.sector)
			default:
				t.Errorf("%s: bytes %d+%d: dm-crypt reads sha256 %s, hastor was given %s (table %s)", v.name, r.off(), r.n, luks, want, table)
			}
			if v.sector > 512 && large == want {
				t.Errorf("%s: bytes %d+%d: the iv_large_sectors mapping also gives the plaintext: the check cannot tell IV conventions apart", v.name, r.off(), r.n)
			}
			if v.sector > 512 && large == "" {
				t.Errorf("%s: no iv_large_sectors hash for bytes %d+%d", v.name, r.off(), r.n)
			}
		}
		first := sha256Hex(plain[v.name][0][:dmBlock])
		if h := got[fmt.Sprintf("%s luks2 0 %d", v.name, dmBlock)]; h != first {
			t.Errorf("%s: first block: dm-crypt reads sha256 %s, hastor was given %s", v.name, h, first)
		}
		if h := got[fmt.Sprintf("%s large 0 %d", v.name, dmBlock)]; v.sector > 512 && h != first {
			t.Errorf("%s: first block (IV 0 either way): the iv_large_sectors mapping reads sha256 %s, want %s: its key or table is wrong", v.name, h, first)
		}
		key := fmt.Sprintf("%s written %d %d", v.name, dmGuestRange.off(), dmGuestRange.n)
		if w, want := got[key], sha256Hex(pattern[v.name]); w != want {
			t.Errorf("%s: the guest read back sha256 %s from dm-crypt after writing %s", v.name, w, want)
		}
	}

	// hastor decrypts what dm-crypt wrote.
	d = hastordtest.Start(t, hastordtest.Options{Config: cfg.String(), StateDir: state})
	for _, v := range vols {
		r := dmGuestRange
		b, errOut, err := iscsiio(t, nil, "read", dmURL(d, v.lun), strconv.FormatInt(r.lba, 10), strconv.Itoa(r.n), strconv.Itoa(dmBlock))
		if err != nil {
			t.Fatalf("%s: iSCSI read at LBA %d: %v %s", v.name, r.lba, err, errOut)
		}
		if !bytes.Equal(b, pattern[v.name]) {
			t.Errorf("%s: hastord reads sha256 %s at LBA %d where dm-crypt wrote %s", v.name, sha256Hex(b), r.lba, sha256Hex(pattern[v.name]))
		}
		// What hastor wrote is still there: the guest changed nothing else.
		for i, r := range dmHastorRanges {
			b, errOut, err := iscsiio(t, nil, "read", dmURL(d, v.lun), strconv.FormatInt(r.lba, 10), strconv.Itoa(r.n), strconv.Itoa(dmBlock))
			if err != nil || !bytes.Equal(b, plain[v.name][i]) {
				t.Errorf("%s: iSCSI read back at LBA %d: %v %s (equal %v)", v.name, r.lba, err, errOut, bytes.Equal(b, plain[v.name][i]))
			}
		}
	}
	d.CheckLog(t)
	t.Logf("dm-crypt interop: total %.1fs (guest boot %.2fs, guest %.1fs)", time.Since(start).Seconds(), res.Boot.Seconds(), res.Elapsed.Seconds())
}

// dmcryptGuestScript opens each image of VOLS ("name:sector" words) in
// IMG_DIR with cryptsetup and loop, and appends to /hastor/logs/dmcrypt.txt
//
//	NAME table <dmsetup table line, no keys>
//	NAME luks2 OFF LEN SHA256      for each OFF:LEN of RANGES, through cryptsetup's mapping
//	NAME written OFF LEN SHA256    after writing NAME.pattern at PATTERN_OFF through it
//	NAME large OFF LEN SHA256      (sector > 512) through the same table plus iv_large_sectors
//
// The guest has no udev: DM_DISABLE_UDEV makes libdevmapper create the
// /dev/mapper nodes itself.
const dmcryptGuestScript = `
export DM_DISABLE_UDEV=1
OUT=/hastor/logs/dmcrypt.txt
: >"$OUT"

# blkhash DEV OFF LEN prints the SHA-256 of LEN bytes of DEV at OFF
# (multiples of 4096), read with O_DIRECT.
blkhash() {
	dd if="$1" bs=4096 skip=$(($2 / 4096)) count=$(($3 / 4096)) iflag=direct status=none | sha256sum | cut -d' ' -f1
}

step modules
modprobe -a loop dm_mod dm_crypt xts algif_skcipher || fail "modprobe"
mkdir -p /mnt/img
mount -t hostfs -o "$IMG_DIR" hostfs /mnt/img || fail "mount $IMG_DIR"
echo "guest: $(cryptsetup --version), $(dmsetup --version | tr '\n' ' ')"

for spec in $VOLS; do
	name=${spec%%:*}
	sector=${spec#*:}
	step "open-$name"
	loop=$(losetup -f --show "/mnt/img/$name.img") || fail "losetup $name"
	cryptsetup open --type luks2 --key-file /mnt/img/key "$loop" v || fail "cryptsetup open $name"
	table=$(dmsetup table v)
	echo "$name table $table" >>"$OUT"
	echo "guest: $name: dmsetup table v: $table"

	step "read-$name"
	for r in $RANGES; do
		echo "$name luks2 ${r%%:*} ${r#*:} $(blkhash /dev/mapper/v "${r%%:*}" "${r#*:}")" >>"$OUT"
	done

	step "write-$name"
	dd if="/mnt/img/$name.pattern" of=/dev/mapper/v bs=4096 seek=$((PATTERN_OFF / 4096)) \
		oflag=direct conv=notrunc,fsync status=none || fail "dd to $name"
	echo "$name written $PATTERN_OFF $PATTERN_LEN $(blkhash /dev/mapper/v "$PATTERN_OFF" "$PATTERN_LEN")" >>"$OUT"

	if [ "$sector" -gt 512 ]; then
		step "iv-large-sectors-$name"
		cryptsetup luksDump --batch-mode --dump-volume-key --volume-key-file /tmp/vk \
			--key-file /mnt/img/key "$loop" >/dev/null || fail "dump volume key of $name"
		vk=$(od -An -v -tx1 /tmp/vk | tr -d ' \n')
		rm -f /tmp/vk
		large=$(echo "$table" | awk -v k="$vk" '{ $5 = k; if (NF >= 9) { $9 = $9 + 1; print $0 " iv_large_sectors" } else print $0 " 1 iv_large_sectors" }')
		dmsetup create --readonly vl --table "$large" || fail "dmsetup create iv_large_sectors mapping of $name"
		echo "guest: $name: iv_large_sectors variant: $(dmsetup table vl)"
		for r in $RANGES; do
			echo "$name large ${r%%:*} ${r#*:} $(blkhash /dev/mapper/vl "${r%%:*}" "${r#*:}")" >>"$OUT"
		done
		dmsetup remove vl || fail "dmsetup remove vl"
	fi

	step "close-$name"
	cryptsetup close v || fail "cryptsetup close $name"
	losetup -d "$loop" || fail "losetup -d $loop"
done
sync
cat "$OUT"
`

// parseDmReport maps "NAME KIND OFF LEN" to the hash, and "NAME table" to
// the table line.
func parseDmReport(t *testing.T, report []byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(report))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && f[1] == "table":
			m[f[0]+" table"] = strings.Join(f[2:], " ")
		case len(f) == 5:
			m[strings.Join(f[:4], " ")] = f[4]
		default:
			t.Errorf("bad guest report line %q", sc.Text())
		}
	}
	return m
}

// dmURL is the iSCSI URL of one LUN of the dm-crypt test target.
func dmURL(d *hastordtest.Daemon, lun int) string {
	return fmt.Sprintf("iscsi://%s/%s/%d", d.Addr, dmIQN, lun)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
