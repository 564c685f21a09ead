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
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Operations.
const (
	OpUnlock = "unlock" // Request.Volume, Request.Passphrase
	OpStatus = "status" // Response.Status
)

// Request is one command from hastorctl.
type Request struct {
	Op string `json:"op"`
	// Volume is a LUN's volume_id.
	Volume string `json:"volume,omitempty"`
	// Passphrase unlocks a keyslot of Volume's LUKS2 header.
	Passphrase []byte `json:"passphrase,omitempty"`
}

// Response answers a Request. Error is empty on success.
type Response struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	// Slot is the keyslot that an unlock opened.
	Slot *int `json:"slot,omitempty"`
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
}

// Handler carries out requests. Its methods are called from one goroutine
// per client connection.
type Handler interface {
	Unlock(ctx context.Context, volume string, passphrase []byte) (slot int, err error)
	Status(ctx context.Context) (Status, error)
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
	}
	return Response{Error: fmt.Sprintf("unknown operation %q", req.Op)}
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
