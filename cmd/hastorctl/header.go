package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"hastor/crypt/luks2"
	"hastor/internal/control"
)

// headerFlags adds --volume, and the flags that find hastord, to the
// commands that work on a LUKS2 header. With --volume the header is that
// of an encrypted replicated LUN, read and written through hastord on the
// LUN's primary, so that both nodes get the change; without it, the
// command's DEVICE argument names the file or device.
type headerFlags struct {
	volume *string
	addr   daemonAddr
}

func newHeaderFlags(fs *flag.FlagSet) *headerFlags {
	return &headerFlags{
		volume: fs.String("volume", "", "work on the header of the encrypted replicated LUN `VOLUME_ID` through hastord on its primary (both nodes get the change), instead of DEVICE"),
		addr:   daemonFlagsNode(fs),
	}
}

// parse parses args: the DEVICE argument is there unless --volume is
// given; extra is the number of arguments that follow it.
func (h *headerFlags) parse(fs *flag.FlagSet, args []string, extra int) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errUsage{}
		}
		return errUsage{msg: oneLine(err.Error())}
	}
	want := extra + 1
	if *h.volume != "" {
		want = extra
	}
	if fs.NArg() != want {
		return errUsage{msg: fmt.Sprintf("want %d arguments, got %d (DEVICE, or --volume VOLUME_ID)", want, fs.NArg())}
	}
	return nil
}

// rest returns the arguments after DEVICE.
func (h *headerFlags) rest(fs *flag.FlagSet) []string {
	if *h.volume != "" {
		return fs.Args()
	}
	return fs.Args()[1:]
}

// header is an open LUKS2 header.
type header struct {
	st    luks2.Storage
	name  string // for messages
	close func()
}

// open opens the header, for writing if write (a file is then locked
// against other hastorctl commands; hastord locks its own).
func (h *headerFlags) open(ctx context.Context, fs *flag.FlagSet, write bool) (*header, error) {
	if *h.volume == "" {
		path := fs.Arg(0)
		flag := os.O_RDONLY
		if write {
			flag = os.O_RDWR
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			return nil, err
		}
		if write {
			if err := lockHeader(f); err != nil {
				f.Close()
				return nil, err
			}
		}
		return &header{st: luks2.File{File: f}, name: path, close: func() { f.Close() }}, nil
	}
	cl, err := dialNode(ctx, *h.addr.cfgPath, *h.addr.socket, *h.addr.node)
	if err != nil {
		return nil, err
	}
	r := &remoteHeader{ctx: ctx, cl: cl, volume: *h.volume}
	resp, err := r.call(control.Request{Op: control.OpHeaderOpen})
	if err != nil {
		cl.Close()
		return nil, err
	}
	r.size = resp.Size
	return &header{st: r, name: *h.volume, close: func() { cl.Close() }}, nil
}

// volume opens the header and parses it.
func (h *headerFlags) openVolume(ctx context.Context, fs *flag.FlagSet, write bool) (*header, *luks2.Volume, error) {
	hd, err := h.open(ctx, fs, write)
	if err != nil {
		return nil, nil, err
	}
	v, err := luks2.Open(hd.st)
	if err != nil {
		hd.close()
		return nil, nil, fmt.Errorf("%s: %w", hd.name, err)
	}
	for _, w := range v.Warnings() {
		fmt.Fprintf(os.Stderr, "hastorctl: warning: %s: %s\n", hd.name, w)
	}
	return hd, v, nil
}

// remoteHeader is a luks2.Storage served by hastord (control.Header):
// the control connection holds the header's lock until it closes.
type remoteHeader struct {
	ctx    context.Context
	cl     *control.Client
	volume string
	size   int64
}

var _ luks2.Storage = (*remoteHeader)(nil)

func (r *remoteHeader) call(req control.Request) (control.Response, error) {
	req.Volume = r.volume
	ctx, cancel := context.WithTimeout(r.ctx, callTimeout)
	defer cancel()
	return r.cl.Call(ctx, req)
}

func (r *remoteHeader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		k := min(len(p)-n, control.MaxHeaderIO)
		resp, err := r.call(control.Request{Op: control.OpHeaderRead, Off: off + int64(n), Len: k})
		if err != nil {
			return n, err
		}
		n += copy(p[n:], resp.Data)
		if len(resp.Data) < k {
			return n, io.EOF
		}
	}
	return n, nil
}

func (r *remoteHeader) WriteAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		k := min(len(p)-n, control.MaxHeaderIO)
		if _, err := r.call(control.Request{Op: control.OpHeaderWrite, Off: off + int64(n), Data: p[n : n+k]}); err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}

func (r *remoteHeader) Size() (int64, error) { return r.size, nil }

func (r *remoteHeader) Sync() error {
	_, err := r.call(control.Request{Op: control.OpHeaderSync})
	return err
}
