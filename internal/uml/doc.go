// Package uml runs the real Linux kernel iSCSI initiator (iscsi_tcp driven by
// open-iscsi's iscsid and iscsiadm) against a target under test, by booting
// Debian's User-Mode Linux kernel (package user-mode-linux, Linux 6.1 as an
// ordinary host process) inside a private network namespace. It exists for
// tests: the host kernel of CI has no SCSI, so this is the only way to check
// the target against the initiator that users run.
//
// # Pieces
//
//   - [EnsureRootfs] runs scripts/uml/build-rootfs.sh, which builds a Debian
//     bookworm root directory with mmdebstrap (open-iscsi, fio, e2fsprogs,
//     sg3-utils, ...) from the host's configured apt mirror, cached under
//     ${HASTOR_CACHE:-$HOME/.cache/hastor}/uml/rootfs-<hash of the inputs>.
//     The guest boots it read-only over hostfs and mounts the host's
//     /usr/lib/uml/modules on /lib/modules, so the modules always match the
//     kernel binary.
//   - [NewNetns] (or [CreateNetns]) makes a network namespace with a unique
//     name holding a tap device whose host side has [Netns.HostAddr]; the
//     guest gets [Netns.GuestAddr] on eth0. [Netns.Start] and
//     [Netns.Command] run a process in it; [Netns.Listen] opens a listener in
//     it from this process (for an in-process target).
//   - [Run] boots the guest in the namespace and runs a shell script as its
//     workload, with a timeout, and returns the console and the parsed
//     result. [RunT] is the test wrapper.
//
// # The guest script
//
// Options.Script is POSIX sh, run by the guest's init under "set -eu" after
// sourcing scripts/uml/guest/iscsi.sh, which provides step, iscsi_start,
// iscsi_node_new, iscsi_chap, iscsi_digests, iscsi_login, iscsi_disk,
// check_pattern, check_fio, fs_make, fs_fill, fs_verify, fs_check and the
// composite suite_full (see that file). The script sees GUEST_ADDR and
// HOST_ADDR (prefixes, e.g. 10.213.0.2/30), HOST_IP (the bare host address)
// and Options.Env as environment variables. Files written to /hastor/logs in
// the guest appear in Result.RunDir/logs on the host. The guest prints
// "UML-RESULT: PASS" or "UML-RESULT: FAIL <step>"; Run turns the latter into
// a *GuestError.
//
// # Callers' duties
//
//   - Call [Require] first: it skips the test when root, the tools or
//     /dev/net/tun are missing, and fails it instead when the CI environment
//     variable is set. scripts/uml/install-deps.sh installs the tools.
//   - Start the target under test inside the namespace, listening on
//     HostAddr and a port from [Netns.FreePort], before calling Run; stop it
//     afterwards ([Netns.Start] registers that with the test).
//   - Keep the guest workload short: Run kills the guest after
//     Options.Timeout and reports the step it was in.
//
// # Example: a test against a target daemon
//
//	func TestKernelInitiator(t *testing.T) {
//		uml.Require(t)
//		rootfs, err := uml.EnsureRootfs(t.Context(), nil)
//		if err != nil {
//			t.Fatal(err)
//		}
//		ns := uml.NewNetns(t)
//		port, err := ns.FreePort()
//		if err != nil {
//			t.Fatal(err)
//		}
//		portal := netip.AddrPortFrom(ns.HostIP(), port)
//		ns.Start(t, daemonPath, "--listen", portal.String()) // or ns.Listen + in-process server
//		if err := ns.WaitListening(t.Context(), portal); err != nil {
//			t.Fatal(err)
//		}
//		uml.RunT(t, uml.Options{
//			Rootfs: rootfs, Netns: ns,
//			Env:    map[string]string{"T": iqn, "PORT": strconv.Itoa(int(port))},
//			Script: `P=$HOST_IP:$PORT
//				step iscsid; iscsi_start
//				iscsi_node_new "$T" "$P"; iscsi_digests "$T" "$P" CRC32C
//				suite_full "$T" "$P"`,
//		})
//	}
//
// TestKernelInitiatorAgainstTgt (tgt_test.go) is the complete reference,
// against Debian's tgtd, including CHAP. Run it with
//
//	sudo scripts/uml/install-deps.sh && go test -race -v -run Tgt ./internal/uml/
//
// and HASTOR_UML_VERBOSE=1 to see the whole guest console.
//
// Everything here needs root (network namespaces, tap devices, mmdebstrap).
// Nothing writes outside the namespace, the run directory and the cache.
package uml
