package genid

import "errors"

// ErrUnknownPolicy is returned by ParsePolicy for a name it does not know.
var ErrUnknownPolicy = errors.New("genid: unknown split-brain policy")
