package vfs

import (
	"errors"
	"os"
	"path"
)

// MkdirAllSync is MkdirAll made durable: it creates dir and any missing
// parents, and syncs the parent of every directory it created, so the new
// entries survive a crash.
func MkdirAllSync(fsys FS, dir string, perm os.FileMode) error {
	dir = path.Clean(dir)
	if _, err := fsys.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parent := path.Dir(dir)
	if parent != dir {
		if err := MkdirAllSync(fsys, parent, perm); err != nil {
			return err
		}
	}
	if err := fsys.MkdirAll(dir, perm); err != nil {
		return err
	}
	return fsys.SyncDir(parent)
}
