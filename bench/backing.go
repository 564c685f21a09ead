package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Magic numbers of statfs(2) f_type for file systems held in memory.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// errTmpfs: the backing file would live on tmpfs, where O_DIRECT fails and
// every target would measure memory copies.
var errTmpfs = errors.New("backing directory is on tmpfs; use a directory on a real disk")

// fillChunk is the write size used to fill the backing file.
const fillChunk = 4 << 20

// createBacking creates (or truncates) the backing file at path with size
// bytes of non-zero data, fsyncs it and returns. Every 4 KiB block starts
// with its own block number, so no two blocks are equal and no layer below
// can deduplicate them; the rest is pseudo-random. Holes would read for
// free, so the file is written in full. The writes go through the page
// cache: afterwards the file is cached (the LUN is far smaller than memory)
// and buffered targets start warm, the same way for every run.
func createBacking(path string, size ByteSize) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("backing: %w", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return fmt.Errorf("backing: statfs: %w", err)
	}
	if st.Type == tmpfsMagic || st.Type == ramfsMagic {
		return fmt.Errorf("%w: %s", errTmpfs, filepath.Dir(path))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("backing: %w", err)
	}
	defer f.Close()
	buf := make([]byte, fillChunk)
	rng := rand.NewChaCha8([32]byte{'h', 'a', 's', 't', 'o', 'r'})
	if _, err := rng.Read(buf); err != nil {
		return fmt.Errorf("backing: %w", err)
	}
	for off := int64(0); off < int64(size); off += fillChunk {
		n := min(int64(fillChunk), int64(size)-off)
		for b := int64(0); b < n; b += 4096 {
			binary.LittleEndian.PutUint64(buf[b:], uint64((off+b)/4096)+1)
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("backing: write at %d: %w", off, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backing: fsync: %w", err)
	}
	return f.Close()
}

// warmCache reads the whole file at path through the page cache and
// returns how long that took. O_DIRECT writes of an earlier
// target evict the pages they cover, and some machines reclaim cold page
// cache proactively (DAMON), so without this a buffered target's numbers
// would depend on which targets ran before it. After warmCache every target
// starts with the file in the page cache (the LUN is far smaller than
// memory), as a buffered target on a real server would after its first
// pass over the working set.
func warmCache(path string) (time.Duration, error) {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("warm cache: %w", err)
	}
	defer f.Close()
	buf := make([]byte, fillChunk)
	for {
		_, err := f.Read(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("warm cache: %w", err)
		}
	}
	return time.Since(start), nil
}

// syncFile fsyncs path, so that data a buffered target left dirty does not
// get written back while the next target is measured.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
