// Package login implements the pure parts of iSCSI login and text
// negotiation (RFC 7143 §6, §12 and §13): the key=value text format, the
// negotiation result functions for every operational key, and CHAP
// authentication with mutual authentication.
//
// Nothing here reads a socket or a clock. The connection code in package
// target feeds it the decoded text of Login and Text Requests and sends back
// what it returns. Text is validated once by ParseText; later code trusts the
// typed values.
package login
