package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MemFS is an in-memory FS that can simulate a power loss. Its model is
// deliberately pessimistic:
//
//   - Each file is an inode holding its current bytes, which every read sees
//     (like the page cache), and its synced bytes, which are what survives a
//     crash. File.Sync and File.Datasync make the current bytes (content and
//     size) durable. Writes, Truncate and Preallocate change only the current
//     bytes.
//   - Each directory has a volatile namespace, which OpenFile, Stat, ReadDir
//     and the rest see now, and a durable namespace. Creating, renaming and
//     removing entries and MkdirAll change only volatile namespaces;
//     SyncDir(dir) (or Sync on a handle opened on the directory) makes the
//     durable namespace of that one directory equal to its volatile one.
//
// Crash returns a new MemFS holding only what was durable. Paths are cleaned
// with path.Clean and taken relative to the root "/". Errors are
// *os.PathError (or *os.LinkError for Rename, like package os) wrapping
// syscall errnos, so errors.Is(err, os.ErrNotExist) and friends work.
//
// A MemFS is safe for concurrent use.
type MemFS struct {
	// mu guards every field below, every node reachable from root or held
	// by an open handle (including unlinked ones), and the mutable state of
	// every memFile and memLock created by this MemFS.
	mu    sync.Mutex
	root  *memNode
	locks map[string]*memLock // by cleaned path
	free  uint64
}

var _ FS = (*MemFS)(nil)

// memNode is an inode: a file or a directory. Its fields are guarded by the
// owning MemFS's mu.
type memNode struct {
	dir  bool
	mode os.FileMode

	// Files only.
	data   []byte // current content, what reads see
	synced []byte // content that survives a crash; never aliases data
	// cleanTo is how much of data is known to equal synced, so a sync
	// copies only what changed since the last one.
	cleanTo int64

	// Directories only.
	entries map[string]*memNode // volatile namespace
	durable map[string]*memNode // namespace that survives a crash
}

func newMemDir(perm os.FileMode) *memNode {
	return &memNode{
		dir:     true,
		mode:    os.ModeDir | perm.Perm(),
		entries: make(map[string]*memNode),
		durable: make(map[string]*memNode),
	}
}

// NewMemFS returns an empty MemFS holding only the root directory "/", which
// is always durable. Free reports 1<<40 bytes until SetFree is called.
func NewMemFS() *MemFS {
	return &MemFS{
		root:  newMemDir(0o755),
		locks: make(map[string]*memLock),
		free:  1 << 40,
	}
}

// SetFree sets the value Free reports. MemFS does not enforce it: writes
// never fail for lack of space (use ErrorFS for that).
func (m *MemFS) SetFree(n uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.free = n
}

// CrashOptions configures MemFS.Crash.
type CrashOptions struct {
	// Rand, if non-nil, enables torn tails: for each surviving file whose
	// current content is its synced content followed by an unsynced
	// extension, a random-length prefix of the extension survives too, and
	// with probability 1/4 a few bytes of that kept prefix are corrupted.
	// Synced bytes are never altered. Files are visited in a deterministic
	// order, so a seeded Rand reproduces the same crash. If Rand is nil,
	// exactly the synced state survives.
	Rand *rand.Rand
}

// Crash simulates a power loss and returns a new MemFS holding only what was
// durable: the durable namespaces reachable from the root (a directory
// survives only if its parent's durable namespace names it; "/" always
// survives), each surviving file holding its synced bytes, plus a torn tail
// if opts.Rand is set. In the new MemFS everything is durable, no locks are
// held and Free reports the same value as m.
//
// m itself is not changed and stays usable; its open handles and locks keep
// working on m and never affect the returned MemFS.
func (m *MemFS) Crash(opts CrashOptions) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := crasher{rnd: opts.Rand, seen: make(map[*memNode]*memNode)}
	out := NewMemFS()
	out.free = m.free
	out.root = c.node(m.root)
	return out
}

// crasher copies the durable state of a tree of memNodes.
type crasher struct {
	rnd *rand.Rand
	// seen maps old nodes to their copies, so an inode reachable by two
	// durable names (e.g. a rename synced in only one of two directories)
	// stays one inode, and so directory cycles terminate.
	seen map[*memNode]*memNode
}

func (c *crasher) node(n *memNode) *memNode {
	if cp, ok := c.seen[n]; ok {
		return cp
	}
	if !n.dir {
		cp := &memNode{mode: n.mode, data: c.fileData(n)}
		cp.synced = bytes.Clone(cp.data)
		cp.cleanTo = int64(len(cp.data))
		c.seen[n] = cp
		return cp
	}
	cp := newMemDir(n.mode)
	c.seen[n] = cp
	for _, name := range slices.Sorted(maps.Keys(n.durable)) {
		child := n.durable[name]
		if _, ok := c.seen[child]; ok && child.dir {
			// Directories cannot be hard-linked: keep the first name
			// (and break cycles made by out-of-order durable renames).
			continue
		}
		ch := c.node(child)
		cp.entries[name] = ch
		cp.durable[name] = ch
	}
	return cp
}

func (c *crasher) fileData(n *memNode) []byte {
	data := bytes.Clone(n.synced)
	if c.rnd == nil || len(n.data) <= len(n.synced) || !bytes.HasPrefix(n.data, n.synced) {
		return data
	}
	ext := n.data[len(n.synced):]
	k := c.rnd.IntN(len(ext) + 1)
	tail := bytes.Clone(ext[:k])
	if k > 0 && c.rnd.IntN(4) == 0 {
		for range 1 + c.rnd.IntN(min(3, k)) {
			tail[c.rnd.IntN(k)] ^= byte(1 + c.rnd.IntN(255))
		}
	}
	return append(data, tail...)
}

// split returns the components of a cleaned path, nil for the root.
func split(name string) []string {
	p := path.Clean("/" + name)
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

// walkLocked follows comps from the root through volatile namespaces.
func (m *MemFS) walkLocked(comps []string) (*memNode, error) {
	n := m.root
	for _, c := range comps {
		if !n.dir {
			return nil, syscall.ENOTDIR
		}
		child, ok := n.entries[c]
		if !ok {
			return nil, syscall.ENOENT
		}
		n = child
	}
	return n, nil
}

// lookupLocked returns the node named by name.
func (m *MemFS) lookupLocked(name string) (*memNode, error) {
	if name == "" {
		return nil, syscall.ENOENT
	}
	return m.walkLocked(split(name))
}

// parentLocked returns the directory that holds name and name's last
// component, or (nil, "") for the root.
func (m *MemFS) parentLocked(name string) (*memNode, string, error) {
	if name == "" {
		return nil, "", syscall.ENOENT
	}
	comps := split(name)
	if len(comps) == 0 {
		return nil, "", nil
	}
	dir, err := m.walkLocked(comps[:len(comps)-1])
	if err != nil {
		return nil, "", err
	}
	if !dir.dir {
		return nil, "", syscall.ENOTDIR
	}
	return dir, comps[len(comps)-1], nil
}

// OpenFile implements FS.
func (m *MemFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := m.openLocked(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (m *MemFS) openLocked(name string, flag int, perm os.FileMode) (*memFile, error) {
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	f := &memFile{
		fs:       m,
		name:     name,
		readable: acc == os.O_RDONLY || acc == os.O_RDWR,
		writable: acc == os.O_WRONLY || acc == os.O_RDWR,
		append:   flag&os.O_APPEND != 0,
	}
	dir, base, err := m.parentLocked(name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	n := m.root
	if base != "" {
		n = dir.entries[base]
	}
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOENT}
	case n == nil:
		n = &memNode{mode: perm.Perm()}
		dir.entries[base] = n
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EEXIST}
	case n.dir && (f.writable || flag&os.O_TRUNC != 0):
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	if f.writable && flag&os.O_TRUNC != 0 {
		n.data = nil
		n.cleanTo = 0
	}
	f.node = n
	return f, nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir, base, err := m.parentLocked(name)
	if err == nil && base == "" {
		err = syscall.EBUSY
	}
	if err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	n, ok := dir.entries[base]
	switch {
	case !ok:
		return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOENT}
	case n.dir && len(n.entries) > 0:
		return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
	}
	delete(dir.entries, base)
	return nil
}

// Rename implements FS. Like os.Rename it returns *os.LinkError.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.renameLocked(oldname, newname); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}

func (m *MemFS) renameLocked(oldname, newname string) error {
	odir, obase, err := m.parentLocked(oldname)
	if err != nil {
		return err
	}
	ndir, nbase, err := m.parentLocked(newname)
	if err != nil {
		return err
	}
	if obase == "" || nbase == "" {
		return syscall.EBUSY
	}
	n, ok := odir.entries[obase]
	if !ok {
		return syscall.ENOENT
	}
	if n.dir {
		// A directory cannot move below itself.
		comps := split(newname)
		cur := m.root
		for _, c := range comps[:len(comps)-1] {
			cur = cur.entries[c]
			if cur == n {
				return syscall.EINVAL
			}
		}
	}
	old, ok := ndir.entries[nbase]
	switch {
	case !ok:
	case old == n:
		return nil
	case n.dir && !old.dir:
		return syscall.ENOTDIR
	case !n.dir && old.dir:
		return syscall.EISDIR
	case old.dir && len(old.entries) > 0:
		return syscall.ENOTEMPTY
	}
	delete(odir.entries, obase)
	ndir.entries[nbase] = n
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(name string, perm os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.root
	for _, c := range split(name) {
		child, ok := n.entries[c]
		if !ok {
			child = newMemDir(perm)
			n.entries[c] = child
		} else if !child.dir {
			return &os.PathError{Op: "mkdir", Path: name, Err: syscall.ENOTDIR}
		}
		n = child
	}
	return nil
}

// ReadDir implements FS.
func (m *MemFS) ReadDir(name string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked(name)
	if err == nil && !n.dir {
		err = syscall.ENOTDIR
	}
	if err != nil {
		return nil, &os.PathError{Op: "readdir", Path: name, Err: err}
	}
	names := make([]string, 0, len(n.entries))
	return append(names, slices.Sorted(maps.Keys(n.entries))...), nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked(name)
	if err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return n.infoLocked(name), nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked(name)
	if err == nil && !n.dir {
		err = syscall.ENOTDIR
	}
	if err != nil {
		return &os.PathError{Op: "syncdir", Path: name, Err: err}
	}
	n.syncLocked()
	return nil
}

// Lock implements FS. Locks are per MemFS and cleaned path; they are not
// carried over by Crash.
func (m *MemFS) Lock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.openLocked(name, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return nil, err
	}
	key := path.Clean("/" + name)
	if _, held := m.locks[key]; held {
		return nil, fmt.Errorf("lock %s: %w", name, ErrLocked)
	}
	l := &memLock{fs: m, key: key, name: name}
	m.locks[key] = l
	return l, nil
}

// RLock implements FS: it fails while an exclusive Lock on name is held,
// and never creates the file. Shared holders are not tracked (they do not
// exclude one another, and Lock does not wait for them).
func (m *MemFS) RLock(name string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.lookupLocked(name); err != nil {
		return io.NopCloser(nil), nil
	}
	if _, held := m.locks[path.Clean("/"+name)]; held {
		return nil, fmt.Errorf("lock %s: %w", name, ErrLocked)
	}
	return io.NopCloser(nil), nil
}

// Free implements FS: it reports the value set by SetFree.
func (m *MemFS) Free(name string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.lookupLocked(name); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: name, Err: err}
	}
	return m.free, nil
}

// syncLocked makes n's current state durable.
func (n *memNode) syncLocked() {
	if n.dir {
		n.durable = maps.Clone(n.entries)
	} else {
		keep := min(n.cleanTo, int64(len(n.synced)), int64(len(n.data)))
		n.synced = append(n.synced[:keep], n.data[keep:]...)
		n.cleanTo = int64(len(n.data))
	}
}

func (n *memNode) infoLocked(name string) memFileInfo {
	return memFileInfo{
		name: path.Base(path.Clean("/" + name)),
		size: int64(len(n.data)),
		mode: n.mode,
	}
}

// memLock is a lock held on a MemFS.
type memLock struct {
	fs   *MemFS
	key  string
	name string
	// closed is guarded by fs.mu.
	closed bool
}

// Close releases the lock.
func (l *memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if l.closed {
		return &os.PathError{Op: "unlock", Path: l.name, Err: os.ErrClosed}
	}
	l.closed = true
	if l.fs.locks[l.key] == l {
		delete(l.fs.locks, l.key)
	}
	return nil
}

// memFile is an open handle on a MemFS node. The node stays usable after
// its name is removed.
type memFile struct {
	fs                         *MemFS
	name                       string
	node                       *memNode
	readable, writable, append bool

	// off and closed are guarded by fs.mu.
	off    int64
	closed bool
}

// checkLocked returns the error for op on f, or nil if f may do it.
func (f *memFile) checkLocked(op string, read, write bool) error {
	var err error
	switch {
	case f.closed:
		err = os.ErrClosed
	case f.node.dir && (read || write):
		err = syscall.EISDIR
	case read && !f.readable, write && !f.writable:
		err = syscall.EBADF
	}
	if err != nil {
		return &os.PathError{Op: op, Path: f.name, Err: err}
	}
	return nil
}

// Read implements io.Reader.
func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("read", true, false); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[f.off:])
	f.off += int64(n)
	return n, nil
}

// ReadAt implements io.ReaderAt.
func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("read", true, false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &os.PathError{Op: "readat", Path: f.name, Err: errors.New("negative offset")}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Write implements io.Writer.
func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("write", false, true); err != nil {
		return 0, err
	}
	if f.append {
		f.off = int64(len(f.node.data))
	}
	f.writeAtLocked(p, f.off)
	f.off += int64(len(p))
	return len(p), nil
}

// WriteAt implements io.WriterAt.
func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("write", false, true); err != nil {
		return 0, err
	}
	if f.append {
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: errors.New("invalid use of WriteAt on file opened with O_APPEND")}
	}
	if off < 0 {
		return 0, &os.PathError{Op: "writeat", Path: f.name, Err: errors.New("negative offset")}
	}
	f.writeAtLocked(p, off)
	return len(p), nil
}

func (f *memFile) writeAtLocked(p []byte, off int64) {
	f.growLocked(off + int64(len(p)))
	f.node.cleanTo = min(f.node.cleanTo, off)
	copy(f.node.data[off:], p)
}

// growLocked extends the file with zeros to at least size bytes.
func (f *memFile) growLocked(size int64) {
	if d := size - int64(len(f.node.data)); d > 0 {
		f.node.cleanTo = min(f.node.cleanTo, int64(len(f.node.data)))
		f.node.data = append(f.node.data, make([]byte, d)...)
	}
}

// Sync implements File. On a directory handle it syncs the directory's
// entries, like fsync(2) on a directory.
func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("sync", false, false); err != nil {
		return err
	}
	f.node.syncLocked()
	return nil
}

// Datasync implements File. MemFS makes content and size durable, exactly
// like Sync.
func (f *memFile) Datasync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("fdatasync", false, false); err != nil {
		return err
	}
	f.node.syncLocked()
	return nil
}

// Truncate implements File.
func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("truncate", false, false); err != nil {
		return err
	}
	if !f.writable || size < 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	if size <= int64(len(f.node.data)) {
		f.node.data = f.node.data[:size]
		f.node.cleanTo = min(f.node.cleanTo, size)
	} else {
		f.growLocked(size)
	}
	return nil
}

// Preallocate implements File like fallocate(2) with mode 0: the size grows
// to at least off+n, with zeros.
func (f *memFile) Preallocate(off, n int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("fallocate", false, true); err != nil {
		return err
	}
	if off < 0 || n <= 0 {
		return &os.PathError{Op: "fallocate", Path: f.name, Err: syscall.EINVAL}
	}
	f.growLocked(off + n)
	return nil
}

// Stat implements File.
func (f *memFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("stat", false, false); err != nil {
		return nil, err
	}
	return f.node.infoLocked(f.name), nil
}

// Name implements File.
func (f *memFile) Name() string { return f.name }

// Close implements io.Closer.
func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("close", false, false); err != nil {
		return err
	}
	f.closed = true
	return nil
}

// memFileInfo implements os.FileInfo for MemFS.
type memFileInfo struct {
	name string
	size int64
	mode os.FileMode
}

// Name implements os.FileInfo.
func (fi memFileInfo) Name() string { return fi.name }

// Size implements os.FileInfo.
func (fi memFileInfo) Size() int64 { return fi.size }

// Mode implements os.FileInfo.
func (fi memFileInfo) Mode() os.FileMode { return fi.mode }

// ModTime implements os.FileInfo.
func (fi memFileInfo) ModTime() time.Time { return time.Unix(0, 0).UTC() }

// IsDir implements os.FileInfo.
func (fi memFileInfo) IsDir() bool { return fi.mode.IsDir() }

// Sys implements os.FileInfo.
func (fi memFileInfo) Sys() any { return nil }
