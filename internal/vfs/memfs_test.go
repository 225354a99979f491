package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// writeFile creates (or truncates) name, writes data and, if sync is set,
// syncs the file. It does not sync the directory.
func writeFile(t *testing.T, fs FS, name, data string, sync bool) {
	t.Helper()
	f, err := fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(fs FS, name string) ([]byte, error) {
	f, err := fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func mustOpen(t *testing.T, fs FS, name string, flag int) File {
	t.Helper()
	f, err := fs.OpenFile(name, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// durableFile makes name hold data, synced, with its directory synced.
func durableFile(t *testing.T, fs FS, name, data string) {
	t.Helper()
	writeFile(t, fs, name, data, true)
	must(t, fs.SyncDir(path.Dir(name)))
}

func TestMemFSCrash(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, fs *MemFS)
		files  map[string]string // must exist with this content
		dirs   []string          // must exist as directories
		absent []string          // must not exist
	}{
		{
			name: "unsynced data lost",
			setup: func(t *testing.T, fs *MemFS) {
				writeFile(t, fs, "/d/f", "hello", false)
				must(t, fs.SyncDir("/d"))
			},
			files: map[string]string{"/d/f": ""},
		},
		{
			name: "synced data kept",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/f", "hello")
			},
			files: map[string]string{"/d/f": "hello"},
		},
		{
			name: "datasync is durable",
			setup: func(t *testing.T, fs *MemFS) {
				f := mustOpen(t, fs, "/d/f", os.O_RDWR|os.O_CREATE)
				must(t, fs.SyncDir("/d"))
				if _, err := f.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				must(t, f.Datasync())
			},
			files: map[string]string{"/d/f": "hello"},
		},
		{
			name: "synced file in unsynced directory lost",
			setup: func(t *testing.T, fs *MemFS) {
				writeFile(t, fs, "/d/f", "hello", true)
			},
			absent: []string{"/d/f"},
		},
		{
			name: "unsynced append lost",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/f", "hello")
				f := mustOpen(t, fs, "/d/f", os.O_WRONLY|os.O_APPEND)
				if _, err := f.Write([]byte(" world")); err != nil {
					t.Fatal(err)
				}
			},
			files: map[string]string{"/d/f": "hello"},
		},
		{
			name: "rename without SyncDir",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "x")
				must(t, fs.Rename("/d/a", "/d/b"))
			},
			files:  map[string]string{"/d/a": "x"},
			absent: []string{"/d/b"},
		},
		{
			name: "rename with SyncDir",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "x")
				must(t, fs.Rename("/d/a", "/d/b"))
				must(t, fs.SyncDir("/d"))
			},
			files:  map[string]string{"/d/b": "x"},
			absent: []string{"/d/a"},
		},
		{
			name: "rename over existing without SyncDir",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "new")
				durableFile(t, fs, "/d/b", "old")
				must(t, fs.Rename("/d/a", "/d/b"))
			},
			files: map[string]string{"/d/a": "new", "/d/b": "old"},
		},
		{
			name: "rename over existing with SyncDir",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "new")
				durableFile(t, fs, "/d/b", "old")
				must(t, fs.Rename("/d/a", "/d/b"))
				must(t, fs.SyncDir("/d"))
			},
			files:  map[string]string{"/d/b": "new"},
			absent: []string{"/d/a"},
		},
		{
			name: "cross-directory rename with only the target synced",
			setup: func(t *testing.T, fs *MemFS) {
				must(t, fs.MkdirAll("/e", 0o755))
				must(t, fs.SyncDir("/"))
				durableFile(t, fs, "/d/a", "x")
				must(t, fs.Rename("/d/a", "/e/a"))
				must(t, fs.SyncDir("/e"))
			},
			files: map[string]string{"/d/a": "x", "/e/a": "x"},
		},
		{
			name: "remove without SyncDir",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "x")
				must(t, fs.Remove("/d/a"))
			},
			files: map[string]string{"/d/a": "x"},
		},
		{
			name: "remove with SyncDir",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "x")
				must(t, fs.Remove("/d/a"))
				must(t, fs.SyncDir("/d"))
			},
			absent: []string{"/d/a"},
		},
		{
			name: "removed file written through open handle",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "x")
				f := mustOpen(t, fs, "/d/a", os.O_RDWR)
				must(t, fs.Remove("/d/a"))
				must(t, fs.SyncDir("/d"))
				if _, err := f.Write([]byte("y")); err != nil {
					t.Fatal(err)
				}
				must(t, f.Sync())
			},
			absent: []string{"/d/a"},
		},
		{
			name: "MkdirAll without SyncDir",
			setup: func(t *testing.T, fs *MemFS) {
				must(t, fs.MkdirAll("/x/y", 0o755))
			},
			absent: []string{"/x"},
		},
		{
			name: "MkdirAll with only the root synced",
			setup: func(t *testing.T, fs *MemFS) {
				must(t, fs.MkdirAll("/x/y", 0o755))
				must(t, fs.SyncDir("/"))
			},
			dirs:   []string{"/", "/x"},
			absent: []string{"/x/y"},
		},
		{
			name: "directory synced through a handle",
			setup: func(t *testing.T, fs *MemFS) {
				writeFile(t, fs, "/d/a", "x", true)
				d := mustOpen(t, fs, "/d", os.O_RDONLY)
				must(t, d.Sync())
			},
			files: map[string]string{"/d/a": "x"},
		},
		{
			name: "unsynced truncate lost",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "hello")
				f := mustOpen(t, fs, "/d/a", os.O_RDWR)
				must(t, f.Truncate(2))
			},
			files: map[string]string{"/d/a": "hello"},
		},
		{
			name: "synced truncate kept",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "hello")
				f := mustOpen(t, fs, "/d/a", os.O_RDWR)
				must(t, f.Truncate(2))
				must(t, f.Sync())
			},
			files: map[string]string{"/d/a": "he"},
		},
		{
			name: "unsynced O_TRUNC lost",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "hello")
				mustOpen(t, fs, "/d/a", os.O_RDWR|os.O_TRUNC)
			},
			files: map[string]string{"/d/a": "hello"},
		},
		{
			name: "unsynced preallocate lost",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "hello")
				f := mustOpen(t, fs, "/d/a", os.O_RDWR)
				must(t, f.Preallocate(0, 100))
			},
			files: map[string]string{"/d/a": "hello"},
		},
		{
			name: "synced preallocate kept",
			setup: func(t *testing.T, fs *MemFS) {
				durableFile(t, fs, "/d/a", "hi")
				f := mustOpen(t, fs, "/d/a", os.O_RDWR)
				must(t, f.Preallocate(1, 3))
				must(t, f.Sync())
			},
			files: map[string]string{"/d/a": "hi\x00\x00"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewMemFS()
			must(t, fs.MkdirAll("/d", 0o755))
			must(t, fs.SyncDir("/"))
			tt.setup(t, fs)
			crashed := fs.Crash(CrashOptions{})
			for name, want := range tt.files {
				got, err := readFile(crashed, name)
				if err != nil {
					t.Errorf("after crash: %v", err)
				} else if string(got) != want {
					t.Errorf("after crash %s = %q, want %q", name, got, want)
				}
			}
			for _, name := range tt.dirs {
				fi, err := crashed.Stat(name)
				if err != nil {
					t.Errorf("after crash: %v", err)
				} else if !fi.IsDir() {
					t.Errorf("after crash %s is not a directory", name)
				}
			}
			for _, name := range tt.absent {
				if _, err := crashed.Stat(name); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("after crash Stat(%s) = %v, want ErrNotExist", name, err)
				}
			}
		})
	}
}

// TestMemFSCrashIsolation checks that the crashed FS is independent of the
// original and of its open handles and locks.
func TestMemFSCrashIsolation(t *testing.T) {
	fs := NewMemFS()
	fs.SetFree(12345)
	durableFile(t, fs, "/a", "hello")
	f := mustOpen(t, fs, "/a", os.O_RDWR)
	lock, err := fs.Lock("/LOCK")
	must(t, err)
	must(t, fs.SyncDir("/"))

	crashed := fs.Crash(CrashOptions{})

	if _, err := f.WriteAt([]byte("J"), 0); err != nil {
		t.Fatal(err)
	}
	must(t, f.Sync())
	if got, _ := readFile(crashed, "/a"); string(got) != "hello" {
		t.Errorf("crashed FS sees old handle's write: %q", got)
	}
	if got, _ := readFile(fs, "/a"); string(got) != "Jello" {
		t.Errorf("original FS = %q, want %q", got, "Jello")
	}
	l2, err := crashed.Lock("/LOCK")
	if err != nil {
		t.Fatalf("lock carried over by Crash: %v", err)
	}
	must(t, l2.Close())
	if _, err := fs.Lock("/LOCK"); !errors.Is(err, ErrLocked) {
		t.Errorf("original lock lost: %v", err)
	}
	must(t, lock.Close())
	if n, err := crashed.Free("/"); err != nil || n != 12345 {
		t.Errorf("Free after crash = %d, %v", n, err)
	}
	// The crashed FS is fully durable: crashing it again changes nothing.
	again := crashed.Crash(CrashOptions{Rand: rand.New(rand.NewPCG(1, 2))})
	if got, _ := readFile(again, "/a"); string(got) != "hello" {
		t.Errorf("second crash = %q", got)
	}
}

func TestMemFSTornTail(t *testing.T) {
	synced := bytes.Repeat([]byte("S"), 100)
	unsynced := make([]byte, 200)
	for i := range unsynced {
		unsynced[i] = byte(i)
	}
	full := slices.Concat(synced, unsynced)

	fs := NewMemFS()
	f := mustOpen(t, fs, "/f", os.O_RDWR|os.O_CREATE)
	if _, err := f.Write(synced); err != nil {
		t.Fatal(err)
	}
	must(t, f.Sync())
	if _, err := f.Write(unsynced); err != nil {
		t.Fatal(err)
	}
	// A file whose synced bytes were overwritten gets no tail.
	g := mustOpen(t, fs, "/g", os.O_RDWR|os.O_CREATE)
	if _, err := g.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	must(t, g.Sync())
	if _, err := g.WriteAt([]byte("XYZW"), 0); err != nil {
		t.Fatal(err)
	}
	// A fully synced file is untouched.
	durableFile(t, fs, "/h", "done")
	must(t, fs.SyncDir("/"))

	var clean, torn, corrupt, empty, whole int
	for seed := range uint64(500) {
		crashed := fs.Crash(CrashOptions{Rand: rand.New(rand.NewPCG(seed, 0))})
		got, err := readFile(crashed, "/f")
		must(t, err)
		if !bytes.HasPrefix(got, synced) {
			t.Fatalf("seed %d: synced bytes altered: %q", seed, got)
		}
		if len(got) > len(full) {
			t.Fatalf("seed %d: file grew to %d bytes", seed, len(got))
		}
		tail := got[len(synced):]
		diff := 0
		for i := range tail {
			if tail[i] != unsynced[i] {
				diff++
			}
		}
		if diff > 3 {
			t.Fatalf("seed %d: %d corrupted bytes", seed, diff)
		}
		switch {
		case diff > 0:
			corrupt++
		case len(tail) == 0:
			empty++
		case len(tail) == len(unsynced):
			whole++
		default:
			clean++
		}
		if len(tail) > 0 && len(tail) < len(unsynced) {
			torn++
		}
		if got, _ := readFile(crashed, "/g"); string(got) != "abc" {
			t.Fatalf("seed %d: /g = %q, want %q", seed, got, "abc")
		}
		if got, _ := readFile(crashed, "/h"); string(got) != "done" {
			t.Fatalf("seed %d: /h = %q, want %q", seed, got, "done")
		}
		// The same seed gives the same crash.
		again := fs.Crash(CrashOptions{Rand: rand.New(rand.NewPCG(seed, 0))})
		if got2, _ := readFile(again, "/f"); !bytes.Equal(got, got2) {
			t.Fatalf("seed %d: not deterministic", seed)
		}
	}
	t.Logf("clean=%d torn=%d corrupt=%d empty=%d whole=%d", clean, torn, corrupt, empty, whole)
	if clean == 0 || torn == 0 || corrupt == 0 {
		t.Errorf("torn tails not exercised: clean=%d torn=%d corrupt=%d", clean, torn, corrupt)
	}
	// Without Rand exactly the synced state survives.
	got, _ := readFile(fs.Crash(CrashOptions{}), "/f")
	if !bytes.Equal(got, synced) {
		t.Errorf("crash without Rand = %d bytes, want the %d synced", len(got), len(synced))
	}
}

func TestMemFSUnlinkedFile(t *testing.T) {
	fs := NewMemFS()
	f := mustOpen(t, fs, "/a", os.O_RDWR|os.O_CREATE)
	must(t, fs.Remove("/a"))
	if _, err := fs.Stat("/a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Stat of removed file: %v", err)
	}
	if _, err := f.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if n, err := f.ReadAt(buf, 0); err != nil || string(buf[:n]) != "still here" {
		t.Fatalf("ReadAt = %q, %v", buf[:n], err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != 10 {
		t.Fatalf("Stat = %v, %v", fi, err)
	}
	must(t, f.Sync())
	// A new file of the same name is a new inode.
	writeFile(t, fs, "/a", "new", false)
	if n, err := f.ReadAt(buf, 0); err != nil || string(buf[:n]) != "still here" {
		t.Fatalf("ReadAt after re-create = %q, %v", buf[:n], err)
	}
}

func TestMemFSErrors(t *testing.T) {
	fs := NewMemFS()
	writeFile(t, fs, "/file", "x", false)
	must(t, fs.MkdirAll("/dir/sub", 0o755))
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"open in missing dir", openErr(fs, "/nodir/f", os.O_RDWR|os.O_CREATE), syscall.ENOENT},
		{"open below a file", openErr(fs, "/file/f", os.O_RDWR|os.O_CREATE), syscall.ENOTDIR},
		{"open dir for writing", openErr(fs, "/dir", os.O_RDWR), syscall.EISDIR},
		{"MkdirAll over a file", fs.MkdirAll("/file/x", 0o755), syscall.ENOTDIR},
		{"Remove root", fs.Remove("/"), syscall.EBUSY},
		{"Remove non-empty dir", fs.Remove("/dir"), syscall.ENOTEMPTY},
		{"Rename missing", fs.Rename("/missing", "/x"), syscall.ENOENT},
		{"Rename into missing dir", fs.Rename("/file", "/nodir/x"), syscall.ENOENT},
		{"Rename dir below itself", fs.Rename("/dir", "/dir/sub/x"), syscall.EINVAL},
		{"Rename file over dir", fs.Rename("/file", "/dir"), syscall.EISDIR},
		{"Rename dir over file", fs.Rename("/dir", "/file"), syscall.ENOTDIR},
		{"ReadDir of a file", readDirErr(fs, "/file"), syscall.ENOTDIR},
		{"SyncDir of a file", fs.SyncDir("/file"), syscall.ENOTDIR},
		{"SyncDir missing", fs.SyncDir("/missing"), syscall.ENOENT},
		{"Free missing", freeErr(fs, "/missing"), syscall.ENOENT},
		{"Lock a dir", lockErr(fs, "/dir"), syscall.EISDIR},
		{"Lock in missing dir", lockErr(fs, "/nodir/LOCK"), syscall.ENOENT},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	// Failed operations changed nothing.
	if names, _ := fs.ReadDir("/"); !slices.Equal(names, []string{"dir", "file"}) {
		t.Errorf("ReadDir(/) = %q", names)
	}
	var pe *os.PathError
	if !errors.As(fs.Remove("/missing"), &pe) || pe.Op != "remove" || pe.Path != "/missing" {
		t.Errorf("Remove error is not a *os.PathError with context: %#v", pe)
	}
}

func openErr(fs FS, name string, flag int) error {
	f, err := fs.OpenFile(name, flag, 0o644)
	if err == nil {
		f.Close()
	}
	return err
}

func readDirErr(fs FS, name string) error {
	_, err := fs.ReadDir(name)
	return err
}

func freeErr(fs FS, name string) error {
	_, err := fs.Free(name)
	return err
}

func lockErr(fs FS, name string) error {
	l, err := fs.Lock(name)
	if err == nil {
		l.Close()
	}
	return err
}

func TestMemFSPaths(t *testing.T) {
	fs := NewMemFS()
	must(t, fs.MkdirAll("a/b/", 0o755))
	writeFile(t, fs, "/a//b/../b/f", "x", false)
	for _, name := range []string{"/a/b/f", "a/b/f", "/a/./b/f"} {
		if got, err := readFile(fs, name); err != nil || string(got) != "x" {
			t.Errorf("read %s = %q, %v", name, got, err)
		}
	}
	fi, err := fs.Stat("/")
	if err != nil || !fi.IsDir() || fi.Name() != "/" {
		t.Errorf("Stat(/) = %v, %v", fi, err)
	}
	if _, err := fs.Stat(""); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat(\"\") = %v", err)
	}
}

func TestMemFSConcurrent(t *testing.T) {
	fs := NewMemFS()
	const chunk, chunks = 16, 500
	pattern := func(i int) []byte {
		return bytes.Repeat([]byte{byte(i)}, chunk)
	}
	w := mustOpen(t, fs, "/log", os.O_WRONLY|os.O_CREATE|os.O_APPEND)
	r := mustOpen(t, fs, "/log", os.O_RDONLY)
	var written atomic.Int64 // chunks fully written to /log
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range chunks {
			if _, err := w.Write(pattern(i)); err != nil {
				t.Error(err)
				return
			}
			written.Store(int64(i + 1))
			if i%50 == 0 {
				if err := w.Datasync(); err != nil {
					t.Error(err)
				}
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			buf := make([]byte, chunk)
			for {
				n := int(written.Load())
				for i := range n {
					if _, err := r.ReadAt(buf, int64(i*chunk)); err != nil {
						t.Errorf("ReadAt chunk %d: %v", i, err)
						return
					}
					if !bytes.Equal(buf, pattern(i)) {
						t.Errorf("chunk %d = %v", i, buf)
						return
					}
				}
				if n == chunks {
					return
				}
			}
		})
	}
	for g := range 4 {
		wg.Go(func() {
			name := fmt.Sprintf("/other%d", g)
			f, err := fs.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			for i := range 200 {
				if _, err := f.WriteAt(pattern(i), int64(i*chunk)); err != nil {
					t.Error(err)
					return
				}
				if _, err := fs.Stat(name); err != nil {
					t.Error(err)
				}
				if _, err := fs.ReadDir("/"); err != nil {
					t.Error(err)
				}
			}
			if err := f.Sync(); err != nil {
				t.Error(err)
			}
			if err := fs.SyncDir("/"); err != nil {
				t.Error(err)
			}
			fs.Crash(CrashOptions{})
		})
	}
	wg.Wait()
	fi, err := fs.Stat("/log")
	if err != nil || fi.Size() != chunk*chunks {
		t.Errorf("Stat(/log) = %v, %v", fi, err)
	}
}
