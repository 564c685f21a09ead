// Command hastorctl is hastor's admin tool. It manages the LUKS2 headers of
// encrypted volumes offline, like cryptsetup, and talks to a running
// hastord through its control socket (unlocking encrypted LUNs, the roles
// and connection of replicated LUNs, status).
//
//	hastorctl format [--size SIZE] [options] DEVICE
//	hastorctl add-key | change-key | remove-key [options] DEVICE
//	hastorctl header-backup DEVICE FILE
//	hastorctl header-restore [--yes] DEVICE FILE
//	hastorctl dump DEVICE
//	hastorctl erase [--yes] DEVICE
//	  (with --volume VOLUME_ID instead of DEVICE, the header commands work on
//	  an encrypted replicated LUN's header through hastord on its primary)
//	hastorctl unlock [--key-file FILE] VOLUME_ID
//	hastorctl status [--json] [--watch] [VOLUME_ID]
//	hastorctl primary [--force] | secondary | connect [--discard-my-data] |
//	          disconnect | verify | invalidate VOLUME_ID
//	hastorctl clear-reservations --yes VOLUME_ID
//
// Passphrases are read from the terminal without echo, or from a key file
// (--key-file FILE; "-" reads standard input): never from the command line.
// A key file's whole content is the passphrase, as with cryptsetup.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"hastor/internal/control"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], newStdio())
	stop()
	os.Exit(code)
}

// stdio is the CLI's view of its environment, swapped in tests.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	// term reads a passphrase without echo when standard input is a
	// terminal; nil when it is not.
	term func(prompt string) ([]byte, error)
}

// command is one subcommand.
type command struct {
	usage string // arguments after the name
	help  string
	run   func(ctx context.Context, args []string, st stdio) error
}

var commands = map[string]command{
	"format":             {"[--size SIZE] [--key-file F] [--sector-size 512|4096] [--key-size 256|512] [--pbkdf argon2id|argon2i|pbkdf2] [--pbkdf-memory KiB] [--pbkdf-time N] [--iterations N] [--label L] [--yes] DEVICE", "make DEVICE a LUKS2 volume (aes-xts-plain64) with one passphrase", cmdFormat},
	"add-key":            {"[--key-file F] [--new-key-file F] [--slot N] [pbkdf options] DEVICE | --volume VOLUME_ID", "add a passphrase; an existing one authorises it", cmdAddKey},
	"change-key":         {"[--key-file F] [--new-key-file F] [pbkdf options] DEVICE | --volume VOLUME_ID", "replace a passphrase", cmdChangeKey},
	"remove-key":         {"[--key-file F | --slot N] DEVICE | --volume VOLUME_ID", "remove the keyslot a passphrase opens, or slot N", cmdRemoveKey},
	"header-backup":      {"DEVICE FILE | --volume VOLUME_ID FILE", "save the LUKS2 header and keyslots to FILE", cmdHeaderBackup},
	"header-restore":     {"[--yes] DEVICE FILE | --volume VOLUME_ID FILE", "write a header backup back to DEVICE", cmdHeaderRestore},
	"dump":               {"DEVICE | --volume VOLUME_ID", "show the LUKS2 header (no key material)", cmdDump},
	"erase":              {"[--yes] DEVICE | --volume VOLUME_ID", "crypto erase: destroy every keyslot, making the data unreadable", cmdErase},
	"unlock":             {"[--config F | --socket S] [--key-file F] VOLUME_ID", "give a running hastord the passphrase of an encrypted LUN", cmdUnlock},
	"status":             {"[--config F [--node N] | --socket S] [--json] [--watch [--interval D]] [VOLUME_ID]", "show hastord's LUNs, and replicated LUNs as drbdadm status does", cmdStatus},
	"primary":            {"[--config F [--node N] | --socket S] [--force] VOLUME_ID", "make this node primary for a replicated LUN", replCommand(control.OpPrimary, "primary", "")},
	"secondary":          {"[--config F [--node N] | --socket S] VOLUME_ID", "make this node secondary (waits for I/O in flight)", replCommand(control.OpSecondary, "secondary", "")},
	"connect":            {"[--config F [--node N] | --socket S] [--discard-my-data --yes] VOLUME_ID", "connect to the peer (after disconnect, or to resolve a split brain)", replCommand(control.OpConnect, "connecting", "")},
	"disconnect":         {"[--config F [--node N] | --socket S] VOLUME_ID", "stop replicating and stay StandAlone", replCommand(control.OpDisconnect, "disconnected", "")},
	"verify":             {"[--config F [--node N] | --socket S] VOLUME_ID", "start an online verify: compare both copies and repair differences", replCommand(control.OpVerify, "verify started (hastorctl status shows its progress)", "")},
	"invalidate":         {"[--config F [--node N] | --socket S] --yes VOLUME_ID", "discard this node's copy and resync it fully from the peer", replCommand(control.OpInvalidate, "invalidated: a full resync from the peer follows", discardWarning)},
	"clear-reservations": {"[--config F [--node N] | --socket S] --yes VOLUME_ID", "remove a LUN's persistent reservations and registrations (what a cluster left behind), where it is served", replCommand(control.OpClearReservations, "persistent reservations cleared", "This removes every persistent reservation and registration of %s: initiators that rely on them (cluster fencing) lose their protection.")},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: hastorctl COMMAND [options] [arguments]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-19s %s\n", n, commands[n].help)
	}
	fmt.Fprintln(w, "\nRun hastorctl COMMAND --help for its options.")
}

// errUsage marks an error in the command line (exit status 2).
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func run(ctx context.Context, args []string, st stdio) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(st.err)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(st.err, "hastorctl: unknown command %q\n\n", name)
		usage(st.err)
		return 2
	}
	if err := cmd.run(ctx, args[1:], st); err != nil {
		if u, ok := err.(errUsage); ok {
			if u.msg != "" {
				fmt.Fprintf(st.err, "hastorctl %s: %s\n", name, u.msg)
			}
			fmt.Fprintf(st.err, "usage: hastorctl %s %s\n", name, cmd.usage)
			return 2
		}
		fmt.Fprintf(st.err, "hastorctl %s: %v\n", name, err)
		return 1
	}
	return 0
}

// oneLine trims a message for display.
func oneLine(s string) string { return strings.TrimSpace(strings.ReplaceAll(s, "\n", " ")) }
