package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
)

// Op names an operation that an Injector can fail.
type Op int

// The operations an Injector is consulted on.
const (
	OpOpen        Op = iota // FS.OpenFile
	OpRead                  // File.Read, File.ReadAt
	OpWrite                 // File.Write, File.WriteAt
	OpSync                  // File.Sync, File.Datasync
	OpTruncate              // File.Truncate
	OpPreallocate           // File.Preallocate
	OpRemove                // FS.Remove
	OpRename                // FS.Rename
	OpMkdir                 // FS.MkdirAll
	OpReadDir               // FS.ReadDir
	OpStat                  // FS.Stat, File.Stat
	OpSyncDir               // FS.SyncDir
	OpLock                  // FS.Lock
	OpClose                 // File.Close
	OpFree                  // FS.Free
)

// String returns the operation's name, as used in the Op field of the
// *os.PathError that ErrorFS returns.
func (o Op) String() string {
	switch o {
	case OpOpen:
		return "open"
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	case OpTruncate:
		return "truncate"
	case OpPreallocate:
		return "preallocate"
	case OpRemove:
		return "remove"
	case OpRename:
		return "rename"
	case OpMkdir:
		return "mkdir"
	case OpReadDir:
		return "readdir"
	case OpStat:
		return "stat"
	case OpSyncDir:
		return "syncdir"
	case OpLock:
		return "lock"
	case OpClose:
		return "close"
	case OpFree:
		return "free"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// injectedError is an errno returned on purpose by a test.
type injectedError struct{ errno syscall.Errno }

// Error implements error.
func (e injectedError) Error() string { return "injected: " + e.errno.Error() }

// Unwrap returns the errno.
func (e injectedError) Unwrap() error { return e.errno }

// Errors for injectors. Each wraps its errno, so errors.Is(ErrInjectedNoSpace,
// syscall.ENOSPC) and errors.Is(ErrInjectedIO, syscall.EIO) hold, while the
// message tells injected errors from real ones.
var (
	// ErrInjectedNoSpace is an injected ENOSPC.
	ErrInjectedNoSpace error = injectedError{syscall.ENOSPC}
	// ErrInjectedIO is an injected EIO.
	ErrInjectedIO error = injectedError{syscall.EIO}
)

// Injector decides whether an operation fails. It is called before op is
// performed on name (for file operations, the name the file was opened
// with; for Rename, the old name); a non-nil result fails the operation with
// that error. An Injector may be called from many goroutines at once.
type Injector func(op Op, name string) error

// ErrorsOn returns an Injector that fails every call of the given ops with
// err, and nothing else. With no ops it fails nothing.
func ErrorsOn(err error, ops ...Op) Injector {
	fail := make(map[Op]bool, len(ops))
	for _, op := range ops {
		fail[op] = true
	}
	return func(op Op, _ string) error {
		if fail[op] {
			return err
		}
		return nil
	}
}

// After returns an Injector that lets the first n calls that inj would fail
// pass, then fails like inj. Calls that inj lets pass are not counted. It is
// safe for concurrent use.
func After(n int, inj Injector) Injector {
	var failed atomic.Int64
	return func(op Op, name string) error {
		err := inj(op, name)
		if err == nil || failed.Add(1) <= int64(n) {
			return nil
		}
		return err
	}
}

// partialWriteError marks an injected error as one that lets a write
// through in part.
type partialWriteError struct{ err error }

// Error implements error.
func (e *partialWriteError) Error() string { return e.err.Error() }

// Unwrap returns the injected error.
func (e *partialWriteError) Unwrap() error { return e.err }

// PartialWrites returns an Injector that fails like inj, except that a
// failing Write or WriteAt first writes the first half (len(p)/2 bytes) of
// its data and returns that count with the error, like a disk filling up
// mid-write. Other operations fail without doing anything.
func PartialWrites(inj Injector) Injector {
	return func(op Op, name string) error {
		if err := inj(op, name); err != nil {
			return &partialWriteError{err}
		}
		return nil
	}
}

// ErrorFS wraps an FS and fails the operations its Injector chooses. A
// failed operation is not performed, with two exceptions: a failed Close
// still closes the inner file (as close(2) releases the descriptor even
// when it reports an error), and a write failed by a PartialWrites injector
// writes a prefix. Errors are *os.PathError with Op set to the Op's name.
// Locks returned by Lock are the inner FS's and are not wrapped.
type ErrorFS struct {
	inner FS
	inj   Injector
}

var _ FS = (*ErrorFS)(nil)

// NewErrorFS returns an ErrorFS over inner. A nil inj injects nothing.
func NewErrorFS(inner FS, inj Injector) *ErrorFS {
	return &ErrorFS{inner: inner, inj: inj}
}

// check consults the injector and wraps its error.
func (e *ErrorFS) check(op Op, name string) error {
	if e.inj == nil {
		return nil
	}
	if err := e.inj(op, name); err != nil {
		return &os.PathError{Op: op.String(), Path: name, Err: err}
	}
	return nil
}

// OpenFile implements FS.
func (e *ErrorFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if err := e.check(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := e.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &errorFile{fs: e, f: f}, nil
}

// Remove implements FS.
func (e *ErrorFS) Remove(name string) error {
	if err := e.check(OpRemove, name); err != nil {
		return err
	}
	return e.inner.Remove(name)
}

// Rename implements FS.
func (e *ErrorFS) Rename(oldname, newname string) error {
	if err := e.check(OpRename, oldname); err != nil {
		return err
	}
	return e.inner.Rename(oldname, newname)
}

// MkdirAll implements FS.
func (e *ErrorFS) MkdirAll(name string, perm os.FileMode) error {
	if err := e.check(OpMkdir, name); err != nil {
		return err
	}
	return e.inner.MkdirAll(name, perm)
}

// ReadDir implements FS.
func (e *ErrorFS) ReadDir(name string) ([]string, error) {
	if err := e.check(OpReadDir, name); err != nil {
		return nil, err
	}
	return e.inner.ReadDir(name)
}

// Stat implements FS.
func (e *ErrorFS) Stat(name string) (os.FileInfo, error) {
	if err := e.check(OpStat, name); err != nil {
		return nil, err
	}
	return e.inner.Stat(name)
}

// SyncDir implements FS.
func (e *ErrorFS) SyncDir(name string) error {
	if err := e.check(OpSyncDir, name); err != nil {
		return err
	}
	return e.inner.SyncDir(name)
}

// Lock implements FS.
func (e *ErrorFS) Lock(name string) (io.Closer, error) {
	if err := e.check(OpLock, name); err != nil {
		return nil, err
	}
	return e.inner.Lock(name)
}

// RLock implements FS.
func (e *ErrorFS) RLock(name string) (io.Closer, error) {
	if err := e.check(OpLock, name); err != nil {
		return nil, err
	}
	return e.inner.RLock(name)
}

// Free implements FS.
func (e *ErrorFS) Free(name string) (uint64, error) {
	if err := e.check(OpFree, name); err != nil {
		return 0, err
	}
	return e.inner.Free(name)
}

// errorFile is a File opened through an ErrorFS.
type errorFile struct {
	fs *ErrorFS
	f  File
}

// partial handles an injected write error: if it came from PartialWrites,
// write the first half of p with write, and report that count.
func partial(err error, p []byte, write func([]byte) (int, error)) (int, error) {
	var pw *partialWriteError
	if !errors.As(err, &pw) {
		return 0, err
	}
	n, _ := write(p[:len(p)/2])
	return n, err
}

// Read implements io.Reader.
func (f *errorFile) Read(p []byte) (int, error) {
	if err := f.fs.check(OpRead, f.f.Name()); err != nil {
		return 0, err
	}
	return f.f.Read(p)
}

// ReadAt implements io.ReaderAt.
func (f *errorFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpRead, f.f.Name()); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

// Write implements io.Writer; see PartialWrites.
func (f *errorFile) Write(p []byte) (int, error) {
	if err := f.fs.check(OpWrite, f.f.Name()); err != nil {
		return partial(err, p, f.f.Write)
	}
	return f.f.Write(p)
}

// WriteAt implements io.WriterAt; see PartialWrites.
func (f *errorFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpWrite, f.f.Name()); err != nil {
		return partial(err, p, func(q []byte) (int, error) { return f.f.WriteAt(q, off) })
	}
	return f.f.WriteAt(p, off)
}

// Close implements io.Closer; the inner file is closed even when the close fails.
func (f *errorFile) Close() error {
	if err := f.fs.check(OpClose, f.f.Name()); err != nil {
		f.f.Close()
		return err
	}
	return f.f.Close()
}

// Sync implements File.
func (f *errorFile) Sync() error {
	if err := f.fs.check(OpSync, f.f.Name()); err != nil {
		return err
	}
	return f.f.Sync()
}

// Datasync implements File; it is failed by OpSync.
func (f *errorFile) Datasync() error {
	if err := f.fs.check(OpSync, f.f.Name()); err != nil {
		return err
	}
	return f.f.Datasync()
}

// Truncate implements File.
func (f *errorFile) Truncate(size int64) error {
	if err := f.fs.check(OpTruncate, f.f.Name()); err != nil {
		return err
	}
	return f.f.Truncate(size)
}

// Preallocate implements File.
func (f *errorFile) Preallocate(off, n int64) error {
	if err := f.fs.check(OpPreallocate, f.f.Name()); err != nil {
		return err
	}
	return f.f.Preallocate(off, n)
}

// Stat implements File.
func (f *errorFile) Stat() (os.FileInfo, error) {
	if err := f.fs.check(OpStat, f.f.Name()); err != nil {
		return nil, err
	}
	return f.f.Stat()
}

// Name implements File; it is never failed.
func (f *errorFile) Name() string { return f.f.Name() }
