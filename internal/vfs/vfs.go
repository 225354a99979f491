// Package vfs is the filesystem seam used by the spool: the operating
// system's filesystem (OS), an in-memory filesystem that can simulate a crash
// by keeping only what was synced (MemFS), and a wrapper that injects errors
// (ErrorFS). Code that must survive crashes and disk errors talks to an FS,
// never to package os directly, so tests can break the disk on purpose.
package vfs

import (
	"errors"
	"io"
	"os"
)

// FS is the subset of a filesystem the spool needs. Paths are plain
// slash-separated paths as understood by package os.
type FS interface {
	// OpenFile opens a file with os.OpenFile flags (O_RDONLY, O_RDWR,
	// O_CREATE, O_EXCL, O_TRUNC, O_APPEND are honoured).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// Rename renames oldname to newname, replacing newname if it exists.
	// It is durable only after SyncDir of the directory (or directories).
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and its parents. New directory entries
	// are durable only after SyncDir of their parents.
	MkdirAll(name string, perm os.FileMode) error
	// ReadDir lists the names in a directory, sorted.
	ReadDir(name string) ([]string, error)
	// Stat describes a file.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable.
	SyncDir(name string) error
	// Lock takes an exclusive advisory lock on the named file, creating it
	// if needed. It fails at once with ErrLocked if another holder has it.
	Lock(name string) (io.Closer, error)
	// RLock takes a shared lock on the named file for a reader that must
	// not run beside an exclusive holder; it never creates the file (a
	// missing file means there is no holder, and RLock returns a no-op
	// Closer). It fails at once with ErrLocked if an exclusive holder has
	// it.
	RLock(name string) (io.Closer, error)
	// Free reports the bytes available to an unprivileged writer on the
	// filesystem that holds the named directory.
	Free(name string) (uint64, error)
}

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync flushes the file's data and metadata to stable storage (fsync).
	Sync() error
	// Datasync flushes the file's data, and only the metadata needed to
	// read it back, to stable storage (fdatasync).
	Datasync() error
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Preallocate reserves space for [off, off+n) without changing the
	// file's size semantics for readers beyond what was written (fallocate
	// with mode 0 extends the size; see the implementation).
	Preallocate(off, n int64) error
	// Stat describes the file.
	Stat() (os.FileInfo, error)
	// Name is the path the file was opened with.
	Name() string
}

// DataSeeker is implemented by files that can skip holes: SeekData
// returns the offset of the first byte at or after off that may hold data
// (everything in between reads as zeros: holes, or space reserved by
// Preallocate and never written), or io.EOF when only zeros follow.
// SeekHole returns the offset of the first byte at or after off from which
// on a hole begins (the file's size if none). A file system that cannot tell
// reports the whole file as data. Cached pages count as data, so reading
// the file changes the answers: ask before reading.
type DataSeeker interface {
	SeekData(off int64) (int64, error)
	SeekHole(off int64) (int64, error)
}

// ErrLocked is returned by Lock when another holder has the lock.
var ErrLocked = errors.New("vfs: locked by another process")
