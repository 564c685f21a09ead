package main

import (
	"context"
	"fmt"

	"hastor/internal/control"
)

// replCommand returns a command that sends op for one volume and prints
// verb. A non-empty warning (with %s for the volume) makes the command ask
// for confirmation, or --yes.
func replCommand(op, verb string, warning string) func(ctx context.Context, args []string, st stdio) error {
	return func(ctx context.Context, args []string, st stdio) error {
		fs := newFlagSet(op, st)
		addr := daemonFlagsNode(fs)
		var force, discard, yes *bool
		switch op {
		case control.OpPrimary:
			force = fs.Bool("force", false, "declare this node's data authoritative: the first sync of a new resource, or promoting a node whose data is not UpToDate (the peer's changes since are overwritten)")
		case control.OpConnect:
			discard = fs.Bool("discard-my-data", false, "resolve a split brain by throwing this node's changes away: it becomes the sync target")
		}
		if warning != "" || op == control.OpConnect {
			yes = fs.Bool("yes", false, "do not ask for confirmation")
		}
		if err := parseFlags(fs, args, 1); err != nil {
			return err
		}
		vol := fs.Arg(0)
		msg := warning
		if discard != nil && *discard {
			msg = discardWarning
		}
		if msg != "" {
			if err := confirm(st, *yes, fmt.Sprintf(msg, vol)); err != nil {
				return err
			}
		}
		cl, err := dialNode(ctx, *addr.cfgPath, *addr.socket, *addr.node)
		if err != nil {
			return err
		}
		defer cl.Close()
		req := control.Request{Op: op, Volume: vol}
		if force != nil {
			req.Force = *force
		}
		if discard != nil {
			req.DiscardMyData = *discard
		}
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if _, err := cl.Call(ctx, req); err != nil {
			return err
		}
		fmt.Fprintf(st.out, "%s: %s\n", vol, verb)
		return nil
	}
}

// confirm refuses a destructive command without --yes.
func confirm(_ stdio, yes bool, what string) error {
	if yes {
		return nil
	}
	return fmt.Errorf("%s Add --yes if you mean it", what)
}

// discardWarning is the confirmation text of the commands that throw this
// node's copy of a replicated LUN away.
const discardWarning = "This throws away the data of %s on this node; it is then copied from the peer."
