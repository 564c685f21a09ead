// Package config loads and validates hastord's configuration file.
//
// hastord reads exactly one YAML file. [Load] reads it, [Parse] takes its bytes.
// Both decode the YAML, apply defaults and validate every field and every
// cross-field rule. All problems found go into one [*ValidationError]. Each
// problem names the field by its YAML key path, for example
// targets[0].luns[1].block_size, and gives the line where possible.
// A [*ValidationError] matches [ErrInvalid] with errors.Is.
//
// # File format
//
// The file is one YAML document whose top-level keys are those of [Config].
// A key that is unknown or misspelt is an error that names the key and its line.
// A key given twice is an error too. A key with an empty value (null) counts as
// absent and gets its default. examples/quickstart.yaml is the smallest useful
// file and examples/full.yaml shows every field. Both are commented for
// administrators.
//
// The same file is meant to be copied unchanged to every node of a cluster:
// two storage nodes and a witness. So no value in it may depend on the host.
// Later versions will add nodes:, replication and encryption sections.
// Until then, those keys are rejected as unknown.
//
// # Paths
//
//   - A relative state_dir resolves against the directory that holds the
//     configuration file when the file comes from [Load]. With [Parse] it
//     resolves against the process's working directory. An absolute state_dir
//     is kept as written. After loading, [Config.StateDir] is always absolute.
//   - A relative LUN path resolves under state_dir; see [Config.LUNPath].
//   - A relative secret_file resolves the same way as state_dir.
//
// # What loading touches on disk
//
// Loading opens no LUN and creates nothing. It does three things on disk:
//   - It reads each secret_file. The file must be a regular file that other
//     users cannot read (no o+r bit). One trailing newline is removed.
//   - It stats state_dir. If state_dir exists it must be a directory. If it is
//     missing, hastord creates it at start-up.
//   - It stats each LUN path. The path must not be a directory, a character
//     device, a FIFO or a socket. An existing block device needs no size.
//     Any other path is an image file, which needs a size; hastord creates a
//     missing image file.
//     A path under /dev/ always counts as a block device, whether or not it
//     exists when the file is loaded. Loading does not report a missing device,
//     because devices such as LVM volumes may appear later. hastord reports it
//     when it opens the LUN.
//     The file's size and whether it can be opened are also checked only when
//     hastord opens the LUN.
//
// # Callers' duties
//
// Treat the returned [*Config] as read-only. It is then safe to share between
// goroutines without locks. A setting that changes at runtime does not live
// here; for example, an initiator may change the write-cache bit with MODE
// SELECT, so [LUN.WriteCache] is only the initial value. Never log a secret.
// [Credential] redacts itself when formatted with fmt, logged with log/slog
// or marshalled as text, but the raw Secret field is exported for the CHAP
// code and must not be printed by hand.
package config
