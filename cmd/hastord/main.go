// Command hastord is the hastor storage daemon: it serves the iSCSI targets
// and LUNs described by its configuration file.
//
//	hastord --config /etc/hastor/hastor.yaml
//	hastord --check --config /etc/hastor/hastor.yaml
//	hastord --config /etc/hastor/hastor.yaml --node alpha
//
// The same file is used on every node; a node finds its own entry in the
// file's nodes list by its host name, or by --node. --check validates the
// file and exits.
// SIGINT and SIGTERM shut the daemon down gracefully: listeners close,
// in-flight commands finish, and backing devices are flushed and closed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"hastor/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("hastord", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "path of the YAML configuration `file` (required)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	nodeName := fs.String("node", "", "this node's `name` in the configuration's nodes list (default: from the host name)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to `file` until shutdown (diagnostics)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "hastord: --config FILE is required")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "hastord: %s: %v\n", *cfgPath, err)
		return 1
	}
	node, err := cfg.LocalNode(*nodeName)
	if err != nil {
		fmt.Fprintf(stderr, "hastord: %s: %v\n", *cfgPath, err)
		return 1
	}
	if *check {
		fmt.Fprintf(stderr, "hastord: %s: configuration is valid (%d targets)\n", *cfgPath, len(cfg.Targets))
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.Log.Level.Level()}))
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "hastord: --cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "hastord: --cpuprofile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, node, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("hastord stopped", "err", err)
		return 1
	}
	return 0
}
