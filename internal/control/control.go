package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Operations.
const (
	OpUnlock = "unlock" // Request.Volume, Request.Passphrase
	OpStatus = "status" // Response.Status
	// OpClearReservations removes a LUN's persistent reservation
	// registrations and reservation, as PERSISTENT RESERVE OUT CLEAR
	// would (ReservationHandler). Request.Volume.
	OpClearReservations = "clear-reservations"

	// Replicated LUNs (ReplicationHandler); each takes Request.Volume.
	OpPrimary    = "primary"    // Request.Force
	OpSecondary  = "secondary"  //
	OpConnect    = "connect"    // Request.DiscardMyData
	OpDisconnect = "disconnect" //
	OpVerify     = "verify"     // start an online verify
	OpInvalidate = "invalidate" // full resync from the peer

	// The LUKS2 header of an encrypted replicated LUN, read and written
	// through replication (HeaderHandler). OpHeaderOpen takes the
	// header's lock for this connection (until it closes) and answers
	// Response.Size; the others need it.
	OpHeaderOpen  = "header-open"  // Request.Volume
	OpHeaderRead  = "header-read"  // Request.Off, Request.Len; Response.Data
	OpHeaderWrite = "header-write" // Request.Off, Request.Data
	OpHeaderSync  = "header-sync"  // make the writes durable on both nodes
)

// MaxHeaderIO bounds one header read or write.
const MaxHeaderIO = 256 << 10

// Request is one command from hastorctl.
type Request struct {
	Op string `json:"op"`
	// Volume is a LUN's volume_id.
	Volume string `json:"volume,omitempty"`
	// Passphrase unlocks a keyslot of Volume's LUKS2 header.
	Passphrase []byte `json:"passphrase,omitempty"`
	// Force: primary --force (declare this node's data authoritative).
	Force bool `json:"force,omitempty"`
	// DiscardMyData: connect --discard-my-data (resolve a split brain by
	// throwing this node's changes away).
	DiscardMyData bool `json:"discard_my_data,omitempty"`
	// Off, Len and Data: a header read or write.
	Off  int64  `json:"off,omitempty"`
	Len  int    `json:"len,omitempty"`
	Data []byte `json:"data,omitempty"`
}

// Response answers a Request. Error is empty on success.
type Response struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	// Slot is the keyslot that an unlock opened.
	Slot *int `json:"slot,omitempty"`
	// Size (header-open) is the size of the replicated device; Data
	// (header-read) the bytes read.
	Size int64  `json:"size,omitempty"`
	Data []byte `json:"data,omitempty"`
}

// HeaderHandler is implemented by a hastord that lets hastorctl change the
// LUKS2 header of an encrypted replicated LUN through replication, so that
// both nodes get the change.
type HeaderHandler interface {
	// OpenHeader locks volume's header (waiting a little for another
	// holder) and returns it; the caller closes it.
	OpenHeader(ctx context.Context, volume string) (Header, error)
}

// Header is an open, locked LUKS2 header area of a replicated device.
type Header interface {
	// Size is the size of the device the header is on.
	Size() int64
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes p at off, durably on both nodes (FUA).
	WriteAt(p []byte, off int64) (int, error)
	Sync() error
	// Close releases the lock.
	Close()
}

// Status is hastord's state as hastorctl status shows it.
type Status struct {
	Volumes []VolumeStatus `json:"volumes"`
}

// VolumeStatus describes one LUN.
type VolumeStatus struct {
	VolumeID  string `json:"volume_id"`
	Target    string `json:"target"`
	LUN       int    `json:"lun"`
	Path      string `json:"path"`
	Size      int64  `json:"size"` // bytes the initiators see
	BlockSize int    `json:"block_size"`
	ReadOnly  bool   `json:"read_only,omitempty"`
	Encrypted bool   `json:"encrypted,omitempty"`
	// Locked is true while an encrypted LUN waits for its key.
	Locked bool `json:"locked,omitempty"`
	// Replication is set for a replicated LUN.
	Replication *ReplicationStatus `json:"replication,omitempty"`
	// Reservations is set while the LUN has persistent reservation
	// registrations (where it is served: not on a replicated LUN's
	// secondary).
	Reservations *ReservationStatus `json:"reservations,omitempty"`
}

// ReservationStatus is a LUN's persistent reservation state (SPC-4).
type ReservationStatus struct {
	Generation    uint32         `json:"generation"`
	Registrations []Registration `json:"registrations"`
	// Type is the reservation type, empty when nothing is reserved.
	Type string `json:"type,omitempty"`
	// Holder is the registration holding the reservation; nil for the
	// "All Registrants" types, where every registrant holds it.
	Holder *Registration `json:"holder,omitempty"`
}

// Registration is one registered initiator port (I_T nexus).
type Registration struct {
	Initiator string `json:"initiator"`
	ISID      string `json:"isid"` // 12 hex digits
	Key       string `json:"key"`  // 0x and 16 hex digits
}

// ReplicationStatus is a replicated LUN's state, as drbdadm status shows
// a resource's.
type ReplicationStatus struct {
	Node       string `json:"node"`       // this node
	Peer       string `json:"peer"`       // the other node
	Role       string `json:"role"`       // Primary | Secondary
	PeerRole   string `json:"peer_role"`  // Primary | Secondary | Unknown
	Connection string `json:"connection"` // StandAlone | Connecting | Handshake | Connected | SyncSource | SyncTarget | SplitBrain | Unrelated
	Disk       string `json:"disk"`       // UpToDate | Outdated | Inconsistent | Failed
	PeerDisk   string `json:"peer_disk"`  // the same, or DUnknown
	Protocol   string `json:"protocol"`   // A | B | C
	// OutOfSync is the bytes marked out of sync in the local bitmap.
	OutOfSync int64 `json:"out_of_sync"`
	// Resync is a running resync or verify.
	Resync   *Progress    `json:"resync,omitempty"`
	Paths    []PathStatus `json:"paths"`
	Counters Counters     `json:"counters"`
	// Message says what happened and what the admin should do (after a
	// split brain, a refused connection, a disk failure, a verify).
	Message string `json:"message,omitempty"`
	// Detached: the local disk failed; I/O goes through the peer.
	Detached bool `json:"detached,omitempty"`
}

// Progress is a running resync or online verify.
type Progress struct {
	Kind       string `json:"kind"`            // full | bitmap | repair | verify
	Direction  string `json:"direction"`       // source | target
	Done       int64  `json:"done"`            // bytes
	Total      int64  `json:"total"`           // bytes
	RateBps    int64  `json:"rate"`            // bytes/s since it started
	ETASeconds int64  `json:"eta"`             // -1: unknown
	Found      int64  `json:"found,omitempty"` // verify: bytes found out of sync
}

// PathStatus is one replication path.
type PathStatus struct {
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	DataConns int    `json:"data_conns"`
	DataUp    int    `json:"data_up"`
	ControlUp bool   `json:"control_up"`
	Sent      int64  `json:"sent"`
	Received  int64  `json:"received"`
}

// Counters are the statistics DRBD users watch.
type Counters struct {
	Sent        int64 `json:"sent"`         // bytes of data sent to the peer (ns)
	Received    int64 `json:"received"`     // bytes of data received from the peer (nr)
	DiskWrite   int64 `json:"written"`      // bytes written to the local disk (dw)
	DiskRead    int64 `json:"read"`         // bytes read from the local disk for the peer (dr)
	Pending     int64 `json:"pending"`      // requests sent to the peer, not yet answered (pe)
	Unacked     int64 `json:"unacked"`      // requests from the peer, not yet answered (ua)
	ALWrites    int64 `json:"al_writes"`    // activity-log transactions written (al)
	BMWrites    int64 `json:"bm_writes"`    // bitmap pages written (bm)
	ResyncBytes int64 `json:"resync_bytes"` // bytes resynced since hastord started
}

// Handler carries out requests. Its methods are called from one goroutine
// per client connection.
type Handler interface {
	Unlock(ctx context.Context, volume string, passphrase []byte) (slot int, err error)
	Status(ctx context.Context) (Status, error)
}

// ReservationHandler carries out OpClearReservations. A Handler that does
// not implement it answers it with an error.
type ReservationHandler interface {
	ClearReservations(ctx context.Context, volume string) error
}

// ReplicationHandler carries out the replication requests. A Handler that
// does not implement it answers them with an error.
type ReplicationHandler interface {
	Primary(ctx context.Context, volume string, force bool) error
	Secondary(ctx context.Context, volume string) error
	Connect(ctx context.Context, volume string, discardMyData bool) error
	Disconnect(ctx context.Context, volume string) error
	Verify(ctx context.Context, volume string) error
	Invalidate(ctx context.Context, volume string) error
}

// maxLine bounds one request or response line.
const maxLine = 1 << 20

// ErrNotPermitted: the peer of a control connection is neither root nor
// hastord's own user.
var ErrNotPermitted = errors.New("control socket: permission denied (run as root)")

// Listen creates the control socket at path with mode 0600, replacing a
// stale socket file that nobody listens on. It refuses to replace anything
// that is not a socket, or a socket that is in use.
func Listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket; remove it or set control_socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: in use (is another hastord running with this state_dir?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// Serve accepts connections on ln until ctx ends, then closes ln and
// waits for the connections' goroutines. Each connection is served by its
// own goroutine; a peer that is neither root nor this process's user gets
// one error response and is disconnected.
func Serve(ctx context.Context, ln *net.UnixListener, h Handler, log *slog.Logger) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		var c *net.UnixConn
		c, err = ln.AcceptUnix()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveConn(ctx, c, h, log)
		}()
	}
	ln.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("control socket: %w", err)
}

func serveConn(ctx context.Context, c *net.UnixConn, h Handler, log *slog.Logger) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	enc := json.NewEncoder(c)
	if err := checkPeer(c); err != nil {
		log.Warn("control: refused connection", "err", err)
		enc.Encode(Response{Error: err.Error()})
		return
	}
	r := bufio.NewReaderSize(c, 4096)
	headers := map[string]Header{} // open on this connection, by volume
	defer func() {
		for _, hd := range headers {
			hd.Close()
		}
	}()
	for {
		line, err := readLine(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				enc.Encode(Response{Error: err.Error()})
			}
			return
		}
		var req Request
		err = json.Unmarshal(line, &req)
		clear(line)
		var resp Response
		if err != nil {
			resp.Error = "malformed request: " + err.Error()
		} else if strings.HasPrefix(req.Op, "header-") {
			resp = handleHeader(ctx, h, &req, headers)
			clear(req.Data)
		} else {
			resp = handle(ctx, h, &req)
			log.Info("control: request", "op", req.Op, "volume", req.Volume, "ok", resp.Error == "")
		}
		clear(req.Passphrase)
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

func handle(ctx context.Context, h Handler, req *Request) Response {
	switch req.Op {
	case OpUnlock:
		if req.Volume == "" || len(req.Passphrase) == 0 {
			return Response{Error: "unlock needs a volume and a passphrase"}
		}
		slot, err := h.Unlock(ctx, req.Volume, req.Passphrase)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Slot: &slot}
	case OpStatus:
		st, err := h.Status(ctx)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{Status: &st}
	case OpClearReservations:
		rh, ok := h.(ReservationHandler)
		if !ok || req.Volume == "" {
			return Response{Error: req.Op + " needs a volume"}
		}
		if err := rh.ClearReservations(ctx, req.Volume); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	case OpPrimary, OpSecondary, OpConnect, OpDisconnect, OpVerify, OpInvalidate:
		rh, ok := h.(ReplicationHandler)
		if !ok {
			return Response{Error: "this hastord has no replicated LUNs"}
		}
		if req.Volume == "" {
			return Response{Error: req.Op + " needs a volume"}
		}
		var err error
		switch req.Op {
		case OpPrimary:
			err = rh.Primary(ctx, req.Volume, req.Force)
		case OpSecondary:
			err = rh.Secondary(ctx, req.Volume)
		case OpConnect:
			err = rh.Connect(ctx, req.Volume, req.DiscardMyData)
		case OpDisconnect:
			err = rh.Disconnect(ctx, req.Volume)
		case OpVerify:
			err = rh.Verify(ctx, req.Volume)
		case OpInvalidate:
			err = rh.Invalidate(ctx, req.Volume)
		}
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{}
	}
	return Response{Error: fmt.Sprintf("unknown operation %q", req.Op)}
}

// handleHeader serves the header operations; headers holds those open on
// the connection.
func handleHeader(ctx context.Context, h Handler, req *Request, headers map[string]Header) Response {
	hh, ok := h.(HeaderHandler)
	if !ok || req.Volume == "" {
		return Response{Error: req.Op + " needs a volume, and a hastord with replicated LUNs"}
	}
	hd := headers[req.Volume]
	if req.Op == OpHeaderOpen {
		if hd != nil {
			return Response{Error: "the header is already open on this connection"}
		}
		hd, err := hh.OpenHeader(ctx, req.Volume)
		if err != nil {
			return Response{Error: err.Error()}
		}
		headers[req.Volume] = hd
		return Response{Size: hd.Size()}
	}
	if hd == nil {
		return Response{Error: req.Op + ": open the header first (" + OpHeaderOpen + ")"}
	}
	var err error
	switch req.Op {
	case OpHeaderRead:
		if req.Len <= 0 || req.Len > MaxHeaderIO {
			return Response{Error: fmt.Sprintf("header read of %d bytes: 1 to %d at a time", req.Len, MaxHeaderIO)}
		}
		p := make([]byte, req.Len)
		var n int
		n, err = hd.ReadAt(p, req.Off)
		if err == nil || n > 0 {
			return Response{Data: p[:n]}
		}
	case OpHeaderWrite:
		if len(req.Data) > MaxHeaderIO {
			return Response{Error: fmt.Sprintf("header write of %d bytes: at most %d at a time", len(req.Data), MaxHeaderIO)}
		}
		_, err = hd.WriteAt(req.Data, req.Off)
	case OpHeaderSync:
		err = hd.Sync()
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	return Response{}
}

// readLine reads one newline-terminated line of at most maxLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			clear(line)
			return nil, fmt.Errorf("request longer than %d bytes", maxLine)
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			clear(line)
			return nil, err
		}
	}
}

// checkPeer admits root and the server's own user (SO_PEERCRED).
func checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("control socket: peer credentials: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: uid %d", ErrNotPermitted, cred.Uid)
	}
	return nil
}

// Client is a connection to hastord's control socket.
type Client struct {
	c   net.Conn
	r   *bufio.Reader
	enc *json.Encoder
}

// Dial connects to the control socket at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("cannot reach hastord at %s: is it running? (%w)", path, err)
		case errors.Is(err, syscall.EACCES):
			return nil, fmt.Errorf("cannot reach hastord at %s: permission denied (run as root)", path)
		}
		return nil, fmt.Errorf("cannot reach hastord at %s: %w", path, err)
	}
	return &Client{c: c, r: bufio.NewReader(c), enc: json.NewEncoder(c)}, nil
}

// Call sends req and returns the response; a response with Error set is
// returned as an error.
func (cl *Client) Call(ctx context.Context, req Request) (Response, error) {
	if dl, ok := ctx.Deadline(); ok {
		cl.c.SetDeadline(dl)
	}
	if err := cl.enc.Encode(req); err != nil {
		return Response{}, fmt.Errorf("control: send: %w", err)
	}
	line, err := readLine(cl.r)
	if err != nil {
		return Response{}, fmt.Errorf("control: no answer from hastord: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control: malformed answer: %w", err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// Close closes the connection.
func (cl *Client) Close() error { return cl.c.Close() }
