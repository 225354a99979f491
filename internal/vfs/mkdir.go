package vfs

import (
	"errors"
	"fmt"
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

// WriteFileAtomic replaces dir/name with data, crash-atomically: it writes
// name.tmp, fsyncs it, renames it over name and fsyncs dir. After a crash
// either the old or the new file is there, whole (a leftover name.tmp may
// remain; its owner deletes it). Every metadata file trackd writes goes
// through this one helper.
func WriteFileAtomic(fsys FS, dir, name string, data []byte) error {
	tmp := path.Join(dir, name+".tmp")
	f, err := fsys.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err := fsys.Rename(tmp, path.Join(dir, name)); err != nil {
		return fmt.Errorf("rename %s: %w", name, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("sync directory for %s: %w", name, err)
	}
	return nil
}
