// Package itest holds integration tests that run a real hastord process
// and drive it with real initiators: libiscsi's tools and its conformance
// suite iscsi-test-cu, loop devices, and (in internal/uml) the Linux
// kernel's own initiator.
//
// The tests need root and the Debian packages that
// scripts/install-test-deps.sh installs; in CI (CI set) a missing tool is a
// failure, never a silent skip.
package itest
