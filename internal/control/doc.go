// Package control is the local admin interface between hastord and
// hastorctl: a unix socket that only root (or hastord's own user) may use,
// carrying one JSON request and one JSON response per line.
//
// hastord serves it with Serve and a Handler; hastorctl uses Dial and
// Client.Call. Requests carry secrets (passphrases): the server never
// logs a request's fields, and both sides zero the passphrase buffers
// they own once used.
package control
