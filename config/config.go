package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// MaxFileSize is the largest configuration file Load and Parse accept.
const MaxFileSize = 1 << 20

// Config is the whole configuration file, with defaults applied and already
// validated. Treat it as read-only.
type Config struct {
	// StateDir is the directory for hastord's own state, and the base
	// directory of relative LUN paths. Required. A relative state_dir
	// resolves against the directory of the configuration file. After
	// loading it is absolute. hastord creates it if it is missing.
	StateDir string `yaml:"state_dir"`
	// Portals are the TCP addresses that iSCSI listens on, written as
	// "ip:port", with IPv6 in brackets: "192.0.2.10:3260", "[2001:db8::10]:3260".
	// The host must be an IP address; no name is looked up. 0.0.0.0 means
	// all IPv4 addresses and [::] all IPv4 and IPv6 addresses. A wildcard
	// takes its port on every address, so no other portal may use that
	// port. No duplicates. Default: ["0.0.0.0:3260"]. After loading, the
	// entries are in canonical form.
	Portals []string `yaml:"portals"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// ISCSI holds the limits that targets offer in login negotiation.
	ISCSI Negotiation `yaml:"iscsi"`
	// Discovery configures SendTargets discovery sessions.
	Discovery Discovery `yaml:"discovery"`
	// Targets lists the iSCSI targets. At least one is required.
	Targets []Target `yaml:"targets"`
	// ControlSocket is the unix socket on which hastord takes commands from
	// hastorctl (unlocking encrypted LUNs, status). Only root may use it:
	// hastord creates it with mode 0600 and checks each client's user ID.
	// A relative path resolves under state_dir. Default: hastord.sock under
	// state_dir. At most 107 bytes once resolved (the unix socket limit).
	ControlSocket string `yaml:"control_socket"`
	// Nodes lists the hosts that run hastord with this file (storage
	// nodes; later also the witness). Needed for replicated LUNs. Each
	// host finds its entry by host name or hastord --node NAME.
	Nodes []Node `yaml:"nodes"`
}

// Log configures hastord's logging.
type Log struct {
	// Level is the least severe level logged: debug, info, warn or error.
	// Default: info.
	Level LogLevel `yaml:"level"`
}

// Discovery configures SendTargets discovery sessions (RFC 7143 §4.3),
// which initiators use to list targets before they log in to one.
type Discovery struct {
	// Auth sets the CHAP credentials for discovery sessions. Default: none.
	Auth Auth `yaml:"auth"`
}

// Negotiation holds the values the target offers, or the limits it enforces,
// when it negotiates operational parameters at login (RFC 7143 §13). The
// result of a negotiation also depends on what the initiator offers.
// Lengths are in bytes, times in seconds unless the type is Duration.
type Negotiation struct {
	// MaxRecvDataSegmentLength is the largest data segment the target accepts
	// in one PDU (RFC 7143 §13.12). Default 262144. Range 512..16777215.
	// Larger values mean fewer PDUs per command, but more memory per connection.
	MaxRecvDataSegmentLength int `yaml:"max_recv_data_segment_length"`
	// MaxBurstLength is the most data that one Data-In sequence or one
	// solicited Data-Out sequence may carry (RFC 7143 §13.13). Default
	// 1048576. Range 512..16777215.
	MaxBurstLength int `yaml:"max_burst_length"`
	// FirstBurstLength is the most unsolicited data that an initiator may send
	// with a write, as immediate data or unsolicited Data-Out (RFC 7143 §13.14).
	// Default 65536. Range 512..16777215, and at most MaxBurstLength.
	FirstBurstLength int `yaml:"first_burst_length"`
	// MaxOutstandingR2T is how many R2Ts may be outstanding per task
	// (RFC 7143 §13.17). Default 8. Range 1..65535.
	MaxOutstandingR2T int `yaml:"max_outstanding_r2t"`
	// ImmediateData lets an initiator put write data in the command PDU
	// itself (RFC 7143 §13.11). That saves a round trip on small writes.
	// Default true.
	ImmediateData bool `yaml:"immediate_data"`
	// InitialR2T, when true, makes the initiator wait for an R2T before it
	// sends any Data-Out (RFC 7143 §13.10). Leave it false for lower write
	// latency. Default false.
	InitialR2T bool `yaml:"initial_r2t"`
	// HeaderDigest lists the PDU header digests that the target accepts, in
	// order of preference. Each entry is "CRC32C" or "None" (any case). The
	// target takes the first entry in the initiator's offer that is on this
	// list. When the target makes the offer, it sends the list in this order.
	// CRC32C catches corruption that the TCP checksum misses, at a small CPU
	// cost. Default ["CRC32C", "None"], so the initiator decides.
	HeaderDigest []string `yaml:"header_digest"`
	// DataDigest works like HeaderDigest, for the data segments. Checksumming
	// data costs more CPU than checksumming headers. Default ["CRC32C", "None"].
	DataDigest []string `yaml:"data_digest"`
	// QueueDepth is how many commands a session may have in flight, that is
	// the CmdSN window the target grants. Default 128. Range 1..4096. A deeper
	// queue gives more throughput and uses more memory per session.
	QueueDepth int `yaml:"queue_depth"`
	// NopInInterval is how long a connection may stay idle before the target
	// pings the initiator with a NOP-In. Default 30s. 0 turns pings off;
	// otherwise the range is 1s..1h.
	NopInInterval Duration `yaml:"nop_in_interval"`
	// NopInTimeout is how long the target waits for the NOP-Out answer before
	// it drops the connection. Default 30s. Range 1s..1h.
	NopInTimeout Duration `yaml:"nop_in_timeout"`
	// DefaultTime2Wait is how many seconds an initiator waits before it tries
	// to reconnect after a connection drops (RFC 7143 §13.15). Default 2.
	// Range 0..3600.
	DefaultTime2Wait int `yaml:"default_time2wait"`
	// DefaultTime2Retain is how many seconds after that wait the target keeps
	// the tasks of a dropped connection, so that they can be reassigned
	// (RFC 7143 §13.16). Default 20. Range 0..3600.
	DefaultTime2Retain int `yaml:"default_time2retain"`
}

// DefaultNegotiation returns the Negotiation that applies when the file
// gives no iscsi section.
func DefaultNegotiation() Negotiation {
	n := Negotiation{}
	for _, f := range negotiationInts(&n) {
		*f.ptr = f.def
	}
	n.ImmediateData = true
	n.InitialR2T = false
	n.HeaderDigest = []string{DigestCRC32C, DigestNone}
	n.DataDigest = []string{DigestCRC32C, DigestNone}
	n.NopInInterval = defaultNopIn
	n.NopInTimeout = defaultNopIn
	return n
}

// Digest names used in HeaderDigest and DataDigest (RFC 7143 §13.1).
const (
	DigestCRC32C = "CRC32C"
	DigestNone   = "None"
)

// Target is one iSCSI target.
type Target struct {
	// IQN is the target's iSCSI name. It must be valid (see
	// ValidateISCSIName), be unique in the file, and never change:
	// initiators and multipath identify the target by it.
	IQN string `yaml:"iqn"`
	// Alias is a name for humans, sent as TargetAlias (RFC 7143 §13.6).
	// Optional. At most 255 bytes of printable UTF-8.
	Alias string `yaml:"alias"`
	// Auth sets the CHAP credentials for logging in to this target.
	// Default: none.
	Auth Auth `yaml:"auth"`
	// Initiators limits which initiators may log in. Default: all.
	Initiators ACL `yaml:"initiators"`
	// LUNs lists the logical units. At least one is required.
	LUNs []LUN `yaml:"luns"`
}

// LUN is one logical unit of a target, backed by an image file or a block
// device.
type LUN struct {
	// LUN is the logical unit number initiators see: 0..16383, unique within
	// the target. Required. Most initiators expect a LUN 0.
	LUN int `yaml:"lun"`
	// VolumeID is the volume's lasting identity. The NAA identifier and the
	// serial number that initiators see come from it, so never change it
	// once initiators use the volume. 1..64 characters of A-Z a-z 0-9 . _ :
	// and -. It must be unique in the file, without regard to case.
	VolumeID string `yaml:"volume_id"`
	// Path is the image file or block device that holds the data. A relative
	// path resolves under state_dir. Paths under /dev/ count as block devices.
	// The resolved path must be unique in the file. In a cluster it must name
	// the same volume on every node (an LVM path like /dev/vg0/lv, not
	// /dev/sdb).
	Path string `yaml:"path"`
	// Size is the size the initiators see, for example 1GiB. It must be at
	// least 1MiB and a multiple of BlockSize. An image file needs it; hastord
	// creates a missing file at this size. For a block device it is optional,
	// and when left out the LUN is the whole device.
	Size ByteSize `yaml:"size"`
	// BlockSize is the logical block size in bytes: 512 or 4096. Default 512.
	// VMware ESXi wants 512. 4096 suits newer initiators and 4Kn devices.
	// Changing it once the volume holds data makes that data unreadable.
	BlockSize int `yaml:"block_size"`
	// ReadOnly makes the LUN refuse writes (the write-protect bit in MODE
	// SENSE). Default false.
	ReadOnly bool `yaml:"read_only"`
	// WriteCache is the initial value of the WCE bit (SBC-3 caching mode page).
	// Default false: write-through, where every write is durable before its
	// status is sent. That is safe for initiators that never flush, such as
	// VMware ESXi. true: writes may sit in volatile caches until SYNCHRONIZE
	// CACHE (or a FUA write). Faster, but an initiator that does not flush
	// can lose acknowledged writes in a power failure. Initiators may change
	// the bit with MODE SELECT; the change is not saved to this file.
	WriteCache bool `yaml:"write_cache"`
	// ThinProvisioning says whether initiators may deallocate blocks (UNMAP,
	// WRITE SAME with UNMAP; SBC-3 "logical block provisioning"). Default
	// true for a LUN on an image file or block device: deallocated blocks
	// read as zeros, an image file gets holes punched, and GET LBA STATUS
	// shows an image file's holes. Set false to report the LUN fully
	// provisioned and refuse UNMAP, for example on a block device without
	// discard support, where deallocating means writing zeros, or to keep
	// an image file's space reserved. On a replicated LUN both nodes
	// deallocate. Encrypted LUNs are always fully provisioned (holes would
	// show where the data is), and true is an error there.
	ThinProvisioning *bool `yaml:"thin_provisioning"`
	// Encryption, when present, marks the LUN as encrypted at rest: path
	// holds a LUKS2 volume (made by `hastorctl format` or by cryptsetup
	// luksFormat --type luks2, cipher aes-xts-plain64) and initiators see
	// the decrypted data area that follows its header. For an image file,
	// size is the size of the whole file, header included, and the file
	// must already exist (hastorctl format --size creates it). Until hastord
	// has the volume key the LUN answers NOT READY. A replicated LUN's
	// header is part of the replicated data: format the backing store of
	// the node that is forced primary first; its peer receives the header
	// with the first sync. The volume is opened (and its key_file read)
	// on the node that is primary, and closed, its key destroyed, when
	// that node becomes secondary.
	Encryption *Encryption `yaml:"encryption"`
	// Replication, when present, mirrors the LUN synchronously to a second
	// node (see Replication). path is then the default backing path of
	// both nodes, and size the size of the whole backing file.
	Replication *Replication `yaml:"replication"`
}

// Encryption configures how hastord unlocks an encrypted LUN.
type Encryption struct {
	// KeyFile names a file whose whole content is the passphrase of one of
	// the volume's keyslots, as with cryptsetup --key-file (a trailing
	// newline is part of the passphrase). hastord then unlocks the LUN when
	// it starts. Without it the LUN stays NOT READY until an admin runs
	// `hastorctl unlock VOLUME_ID`. The file must be a regular file that
	// other users cannot read. A relative path resolves against the
	// directory of the configuration file. hastord reads it only to unlock;
	// the passphrase is not kept.
	KeyFile string `yaml:"key_file"`
}

// Thin reports whether l is thin provisioned where its device can
// deallocate: ThinProvisioning, true when not set, and false for encrypted
// LUNs.
func (l *LUN) Thin() bool {
	return (l.ThinProvisioning == nil || *l.ThinProvisioning) && l.Encryption == nil
}

// Encrypted reports whether l is an encrypted LUN.
func (l *LUN) Encrypted() bool { return l.Encryption != nil }

// LUNPath returns the absolute path of l's image file or device: l.Path if
// it is absolute, otherwise l.Path under c.StateDir. The path is cleaned.
func (c *Config) LUNPath(l *LUN) string {
	if filepath.IsAbs(l.Path) {
		return filepath.Clean(l.Path)
	}
	return filepath.Join(c.StateDir, l.Path)
}

// Load reads, parses, completes with defaults and validates the
// configuration file at path. A relative state_dir or secret_file resolves
// against the directory of path. An invalid file gives a *ValidationError
// that lists every problem. Failing to read the file gives an error that
// wraps the os error, so errors.Is(err, fs.ErrNotExist) works.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return parse(data, parseOptions{file: path, baseDir: filepath.Dir(abs), fs: osFS{}})
}

// Parse is Load for a file's contents. A relative state_dir or secret_file
// resolves against the process's working directory. Like Load, it reads
// secret files and stats state_dir and the LUN paths.
func Parse(data []byte) (*Config, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(data, parseOptions{baseDir: wd, fs: osFS{}})
}
