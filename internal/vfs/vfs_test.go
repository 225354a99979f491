package vfs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// implementations returns each FS under test with a directory to work in.
func implementations(t *testing.T) []struct {
	name string
	fs   FS
	dir  string
} {
	mem := NewMemFS()
	must(t, mem.MkdirAll("/data", 0o755))
	return []struct {
		name string
		fs   FS
		dir  string
	}{
		{"OS", OS{}, t.TempDir()},
		{"MemFS", mem, "/data"},
		{"ErrorFS", NewErrorFS(NewMemFS(), nil), "/"},
	}
}

// TestFSAgree runs the same behaviour against every implementation.
func TestFSAgree(t *testing.T) {
	for _, impl := range implementations(t) {
		t.Run(impl.name, func(t *testing.T) {
			fs, dir := impl.fs, impl.dir
			p := func(name string) string { return filepath.Join(dir, name) }

			must(t, fs.MkdirAll(p("sub/deeper"), 0o755))
			must(t, fs.MkdirAll(p("sub/deeper"), 0o755)) // already there

			f, err := fs.OpenFile(p("a"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
			must(t, err)
			if f.Name() != p("a") {
				t.Errorf("Name = %q, want %q", f.Name(), p("a"))
			}
			for _, s := range []string{"hello ", "world"} {
				if n, err := f.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			must(t, f.Sync())
			must(t, f.Datasync())
			if _, err := fs.OpenFile(p("a"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, os.ErrExist) {
				t.Errorf("O_EXCL on existing file: %v", err)
			}

			fi, err := f.Stat()
			must(t, err)
			if fi.Name() != "a" || fi.Size() != 11 || fi.IsDir() || !fi.Mode().IsRegular() {
				t.Errorf("File.Stat = %s %d %v %v", fi.Name(), fi.Size(), fi.IsDir(), fi.Mode())
			}
			fi, err = fs.Stat(p("a"))
			must(t, err)
			if fi.Name() != "a" || fi.Size() != 11 || fi.IsDir() {
				t.Errorf("FS.Stat = %s %d %v", fi.Name(), fi.Size(), fi.IsDir())
			}
			fi, err = fs.Stat(p("sub"))
			must(t, err)
			if fi.Name() != "sub" || !fi.IsDir() || !fi.Mode().IsDir() {
				t.Errorf("Stat(sub) = %s %v %v", fi.Name(), fi.IsDir(), fi.Mode())
			}

			// Read through a second handle, sequentially.
			if got, err := readFile(fs, p("a")); err != nil || string(got) != "hello world" {
				t.Errorf("ReadAll = %q, %v", got, err)
			}
			r := mustOpen(t, fs, p("a"), os.O_RDONLY)
			buf := make([]byte, 4)
			var got []byte
			for {
				n, err := r.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				must(t, err)
			}
			if string(got) != "hello world" {
				t.Errorf("Read loop = %q", got)
			}
			if _, err := r.Write([]byte("x")); err == nil {
				t.Error("Write on O_RDONLY handle succeeded")
			}

			// Sizes: truncate, preallocate, write past the end.
			must(t, f.Truncate(5))
			if err := f.Preallocate(0, 8); err != nil {
				if errors.Is(err, syscall.EOPNOTSUPP) {
					t.Log("fallocate unsupported here; growing by Truncate")
					must(t, f.Truncate(8))
				} else {
					t.Fatal(err)
				}
			}
			if _, err := f.WriteAt([]byte("!"), 10); err != nil {
				t.Fatal(err)
			}
			if got, _ := readFile(fs, p("a")); string(got) != "hello\x00\x00\x00\x00\x00!" {
				t.Errorf("after Truncate/Preallocate/WriteAt = %q", got)
			}

			// O_APPEND writes go to the end.
			ap := mustOpen(t, fs, p("a"), os.O_WRONLY|os.O_APPEND)
			if _, err := ap.Write([]byte("?")); err != nil {
				t.Fatal(err)
			}
			if got, _ := readFile(fs, p("a")); !bytes.HasSuffix(got, []byte("!?")) {
				t.Errorf("after append = %q", got)
			}
			must(t, f.Close())
			if _, err := f.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
				t.Errorf("Write after Close: %v", err)
			}
			if err := f.Close(); err == nil {
				t.Error("second Close succeeded")
			}

			// Rename, also over an existing file.
			must(t, fs.Rename(p("a"), p("b")))
			if _, err := fs.Stat(p("a")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Stat(a) after rename: %v", err)
			}
			writeFile(t, fs, p("c"), "cc", false)
			must(t, fs.Rename(p("c"), p("b")))
			if got, _ := readFile(fs, p("b")); string(got) != "cc" {
				t.Errorf("b after rename over it = %q", got)
			}
			must(t, fs.SyncDir(dir))

			names, err := fs.ReadDir(dir)
			must(t, err)
			if !slices.Equal(names, []string{"b", "sub"}) {
				t.Errorf("ReadDir = %q", names)
			}

			// Locks.
			l, err := fs.Lock(p("LOCK"))
			must(t, err)
			if _, err := fs.Lock(p("LOCK")); !errors.Is(err, ErrLocked) {
				t.Errorf("second Lock: %v", err)
			}
			must(t, l.Close())
			l, err = fs.Lock(p("LOCK"))
			must(t, err)
			must(t, l.Close())
			if _, err := fs.Stat(p("LOCK")); err != nil {
				t.Errorf("Lock did not create its file: %v", err)
			}

			if n, err := fs.Free(dir); err != nil || n == 0 {
				t.Errorf("Free = %d, %v", n, err)
			}

			// Remove.
			if err := fs.Remove(p("sub")); err == nil {
				t.Error("Remove of a non-empty directory succeeded")
			}
			must(t, fs.Remove(p("sub/deeper")))
			must(t, fs.Remove(p("sub")))
			must(t, fs.Remove(p("b")))
			must(t, fs.Remove(p("LOCK")))
			if err := fs.Remove(p("b")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("second Remove: %v", err)
			}
			names, err = fs.ReadDir(dir)
			if err != nil || names == nil || len(names) != 0 {
				t.Errorf("ReadDir of empty dir = %#v, %v", names, err)
			}
			if _, err := fs.ReadDir(p("missing")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("ReadDir(missing): %v", err)
			}
			if _, err := fs.OpenFile(p("missing/f"), os.O_RDWR|os.O_CREATE, 0o644); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("create in missing dir: %v", err)
			}
			var pe *os.PathError
			if _, err := fs.OpenFile(p("missing"), os.O_RDONLY, 0); !errors.As(err, &pe) || !errors.Is(err, os.ErrNotExist) {
				t.Errorf("open missing: %v", err)
			}
		})
	}
}

func TestReadAtEOF(t *testing.T) {
	tests := []struct {
		off     int64
		len     int
		want    string
		wantEOF bool
	}{
		{0, 5, "hello", false},
		{1, 3, "ell", false},
		{0, 10, "hello", true},
		{3, 5, "lo", true},
		{5, 1, "", true},
		{10, 1, "", true},
		{7, 0, "", false},
	}
	for _, impl := range implementations(t) {
		t.Run(impl.name, func(t *testing.T) {
			name := filepath.Join(impl.dir, "f")
			writeFile(t, impl.fs, name, "hello", false)
			f := mustOpen(t, impl.fs, name, os.O_RDONLY)
			for _, tt := range tests {
				buf := make([]byte, tt.len)
				n, err := f.ReadAt(buf, tt.off)
				if string(buf[:n]) != tt.want || (err == io.EOF) != tt.wantEOF || (err != nil && err != io.EOF) {
					t.Errorf("ReadAt(len %d, off %d) = %q, %v; want %q, EOF %v",
						tt.len, tt.off, buf[:n], err, tt.want, tt.wantEOF)
				}
			}
			if _, err := f.ReadAt(make([]byte, 1), -1); err == nil || err == io.EOF {
				t.Errorf("ReadAt at negative offset: %v", err)
			}
		})
	}
}
