package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"hastor/config"
	"hastor/internal/control"
)

// defaultConfig is where hastorctl looks for hastord's configuration, to
// find the control socket.
const defaultConfig = "/etc/hastor/hastor.yaml"

// daemonAddr holds the flags that locate hastord's control socket.
type daemonAddr struct {
	cfgPath, socket, node *string
}

// daemonFlags adds the flags that locate hastord's control socket.
func daemonFlags(fs *flag.FlagSet) (cfgPath, socket *string) {
	a := daemonFlagsNode(fs)
	return a.cfgPath, a.socket
}

// daemonFlagsNode adds the flags that locate hastord's control socket,
// with --node for files whose nodes set their own sockets.
func daemonFlagsNode(fs *flag.FlagSet) daemonAddr {
	var a daemonAddr
	a.cfgPath = fs.String("config", defaultConfig, "hastord's configuration `file`, to find its control socket")
	a.socket = fs.String("socket", "", "hastord's control socket `path` (overrides --config)")
	a.node = fs.String("node", "", "this node's `name` in the configuration (default: from the host name)")
	return a
}

// dial connects to hastord's control socket.
func dial(ctx context.Context, cfgPath, socket string) (*control.Client, error) {
	return dialNode(ctx, cfgPath, socket, "")
}

func dialNode(ctx context.Context, cfgPath, socket, node string) (*control.Client, error) {
	if socket == "" {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (or give --socket PATH)", cfgPath, err)
		}
		n, err := cfg.LocalNode(node)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
		socket = cfg.ControlSocketFor(n)
	}
	return control.Dial(ctx, socket)
}

// callTimeout bounds one exchange with hastord. Unlocking runs the
// keyslot's key derivation, which takes seconds by design.
const callTimeout = 2 * time.Minute

func cmdUnlock(ctx context.Context, args []string, st stdio) error {
	fs := newFlagSet("unlock", st)
	cfgPath, socket := daemonFlags(fs)
	keyFile := fs.String("key-file", "", "read the passphrase from `file` (\"-\": standard input)")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	vol := fs.Arg(0)
	cl, err := dial(ctx, *cfgPath, *socket)
	if err != nil {
		return err
	}
	defer cl.Close()
	pass, err := passphrase(st, *keyFile, "Passphrase for "+vol, false)
	if err != nil {
		return err
	}
	defer clear(pass)
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := cl.Call(ctx, control.Request{Op: control.OpUnlock, Volume: vol, Passphrase: pass})
	if err != nil {
		return err
	}
	fmt.Fprintf(st.out, "%s unlocked with keyslot %d\n", vol, *resp.Slot)
	return nil
}

// newFlagSet returns a FlagSet whose errors and help go to st.err.
func newFlagSet(name string, st stdio) *flag.FlagSet {
	fs := flag.NewFlagSet("hastorctl "+name, flag.ContinueOnError)
	fs.SetOutput(st.err)
	return fs
}

// parseFlags parses args and checks that exactly nargs arguments remain.
func parseFlags(fs *flag.FlagSet, args []string, nargs int) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errUsage{}
		}
		return errUsage{msg: oneLine(err.Error())}
	}
	if fs.NArg() != nargs {
		return errUsage{msg: fmt.Sprintf("want %d arguments, got %d", nargs, fs.NArg())}
	}
	return nil
}
