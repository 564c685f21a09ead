//go:build linux && !(amd64 || arm64)

package blockdev

import (
	"errors"
	"fmt"
	"runtime"
)

// Native AIO is used only where this package knows the kernel's struct
// iocb layout (see aio_linux.go); elsewhere every File uses pread/pwrite.

const haveAIOLayout = false

const (
	iocbCmdPread  = 0
	iocbCmdPwrite = 1
)

type aioCtx struct{}

func newAIOContext(depth int) (*aioCtx, error) {
	return nil, fmt.Errorf("native AIO on %s: %w", runtime.GOARCH, errors.ErrUnsupported)
}

func (*aioCtx) start(fd int, op uint16, p []byte, off int64, done func(res int64)) bool {
	return false
}

func (*aioCtx) rw(fd int, op uint16, rwFlags int32, p []byte, off int64) (int, error) {
	return 0, errAIOAgain
}

func (*aioCtx) close() error { return nil }
