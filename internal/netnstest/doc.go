// Package netnstest builds real Linux network namespaces for integration
// tests, so that two (or more) hastor nodes can talk over links the test
// controls: a link can be pulled (Link.Down), put back (Link.Up) or slowed
// down (Link.SetRate) while the nodes run.
//
// A test calls New, then Net.Namespace for each node and Net.Link to join
// two namespaces with a veth pair. Programs run inside a namespace with
// NS.Command or NS.Run; the test process itself can open sockets inside a
// namespace with NS.DialContext and NS.Listen. Everything is configured with
// the ip and tc commands of iproute2; no traffic ever leaves the namespaces
// the test made.
//
// Callers' duties:
//   - The tests run as root and need ip (and tc for SetRate). When either is
//     missing, or the test does not run as root, New fails the test if the
//     environment variable CI is set and skips it otherwise.
//   - Call the methods that take no testing.TB (Link.Up, Link.Down,
//     Link.SetRate, Net.Namespace, Net.Link) from the test goroutine: they
//     report failures with t.Fatal.
//   - Give DialContext and Listen numeric IP addresses, never host names:
//     name resolution would run on other threads, in the wrong namespace.
//   - Stop the processes started with NS.Command. At cleanup the helper also
//     SIGKILLs whatever still runs in its namespaces, closes the sockets
//     returned by DialContext and Listen, and deletes the namespaces (and
//     with them the veth links). Connections accepted from a listener are
//     the caller's to close; until they are, the kernel keeps the (already
//     unnamed) namespace alive.
//
// Everything is removed in t.Cleanup, which also runs when the test fails
// or panics. Names are unique per Net: every namespace name starts with
// "hst-" and a random suffix, so parallel tests and other test binaries do
// not collide.
package netnstest
