package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"hastor/target/scsi"
)

// prFile keeps a LUN's persistent reservations in a file in the node's
// state directory, for initiators that register with APTPL (persist
// through power loss): the LU hands it every state registered with APTPL,
// and nil, which removes the file, once a registration clears APTPL. The
// file is replaced atomically (write, fsync, rename, fsync of the
// directory) before PERSISTENT RESERVE OUT returns.
type prFile struct {
	path string
	mu   sync.Mutex
	last []byte // the state read at start, or the last one stored
}

var _ scsi.PRStore = (*prFile)(nil)

// prFileName is the name of volume's persistent reservation file.
func prFileName(stateDir, volume string) string {
	return filepath.Join(stateDir, volume+".reservations")
}

// openPRFile reads the reservations stored at path, if any.
func openPRFile(path string) (*prFile, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("persistent reservations: %w", err)
	}
	return &prFile{path: path, last: b}, nil
}

// PREpoch implements scsi.PRStore: the state is read once, at start (the
// LU begins at epoch 0, so it loads it before its first command).
func (f *prFile) PREpoch() uint64 { return 1 }

// LoadPR implements scsi.PRStore.
func (f *prFile) LoadPR() ([]byte, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, 1
}

// PersistsThroughPowerLoss implements scsi.PRStore.
func (f *prFile) PersistsThroughPowerLoss() bool { return true }

// SavePR implements scsi.PRStore.
//
// When it fails the LU keeps its previous state, so SavePR puts the
// previous file back as well as it can: a restart must not enforce a state
// the initiator was told failed.
func (f *prFile) SavePR(state []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.store(state); err != nil {
		if rerr := f.store(f.last); rerr != nil {
			return fmt.Errorf("%w (and putting the previous state back: %v)", err, rerr)
		}
		return err
	}
	f.last = state
	return nil
}

// store replaces the file with state, or removes it for nil.
func (f *prFile) store(state []byte) error {
	if state == nil {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	} else if err := writeFileSynced(f.path, state); err != nil {
		return err
	}
	return syncDir(filepath.Dir(f.path))
}

// writeFileSynced replaces path with data: a temporary file, fsynced, then
// renamed over it.
func writeFileSynced(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// syncDir fsyncs directory dir, making a rename or removal in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
