package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

func TestOpString(t *testing.T) {
	seen := make(map[string]Op)
	for op := OpOpen; op <= OpFree; op++ {
		s := op.String()
		if prev, dup := seen[s]; dup {
			t.Errorf("%d and %d are both %q", prev, op, s)
		}
		seen[s] = op
	}
	if got := Op(99).String(); got != "Op(99)" {
		t.Errorf("Op(99) = %q", got)
	}
}

func TestInjectedErrors(t *testing.T) {
	if !errors.Is(ErrInjectedNoSpace, syscall.ENOSPC) || errors.Is(ErrInjectedNoSpace, syscall.EIO) {
		t.Error("ErrInjectedNoSpace is not ENOSPC")
	}
	if !errors.Is(ErrInjectedIO, syscall.EIO) || errors.Is(ErrInjectedIO, syscall.ENOSPC) {
		t.Error("ErrInjectedIO is not EIO")
	}
	fs := NewErrorFS(NewMemFS(), ErrorsOn(ErrInjectedNoSpace, OpMkdir))
	err := fs.MkdirAll("/d", 0o755)
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Op != "mkdir" || pe.Path != "/d" ||
		!errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrInjectedNoSpace) {
		t.Errorf("MkdirAll = %#v", err)
	}
}

// fsOp is one operation on an FS or a File opened on it.
type fsOp struct {
	op  Op
	run func(fs FS, f File) error
}

// allOps returns every operation once. Operations that mutate leave the FS
// in a state that the next ones expect whether or not they failed.
func allOps() []fsOp {
	return []fsOp{
		{OpRead, func(_ FS, f File) error { _, err := f.Read(make([]byte, 1)); return err }},
		{OpRead, func(_ FS, f File) error { _, err := f.ReadAt(make([]byte, 1), 0); return err }},
		{OpWrite, func(_ FS, f File) error { _, err := f.Write([]byte("w")); return err }},
		{OpWrite, func(_ FS, f File) error { _, err := f.WriteAt([]byte("w"), 0); return err }},
		{OpSync, func(_ FS, f File) error { return f.Sync() }},
		{OpSync, func(_ FS, f File) error { return f.Datasync() }},
		{OpTruncate, func(_ FS, f File) error { return f.Truncate(2) }},
		{OpPreallocate, func(_ FS, f File) error { return f.Preallocate(0, 8) }},
		{OpStat, func(_ FS, f File) error { _, err := f.Stat(); return err }},
		{OpStat, func(fs FS, _ File) error { _, err := fs.Stat("/d/f"); return err }},
		{OpReadDir, func(fs FS, _ File) error { _, err := fs.ReadDir("/d"); return err }},
		{OpSyncDir, func(fs FS, _ File) error { return fs.SyncDir("/d") }},
		{OpMkdir, func(fs FS, _ File) error { return fs.MkdirAll("/d/sub", 0o755) }},
		{OpLock, func(fs FS, _ File) error {
			l, err := fs.Lock("/d/LOCK")
			if err == nil {
				l.Close()
			}
			return err
		}},
		{OpFree, func(fs FS, _ File) error { _, err := fs.Free("/d"); return err }},
		{OpOpen, func(fs FS, _ File) error { return openErr(fs, "/d/f", os.O_RDONLY) }},
		{OpRename, func(fs FS, _ File) error { return fs.Rename("/d/r", "/d/r2") }},
		{OpRemove, func(fs FS, _ File) error { return fs.Remove("/d/x") }},
		{OpClose, func(_ FS, f File) error { return f.Close() }},
	}
}

// TestErrorFSInjectsOnChosenOps fails one op at a time and checks that
// exactly the operations of that op fail, with the injected error.
func TestErrorFSInjectsOnChosenOps(t *testing.T) {
	for op := OpOpen; op <= OpFree; op++ {
		t.Run(op.String(), func(t *testing.T) {
			mem := NewMemFS()
			must(t, mem.MkdirAll("/d", 0o755))
			writeFile(t, mem, "/d/f", "data", true)
			writeFile(t, mem, "/d/r", "r", false)
			writeFile(t, mem, "/d/x", "x", false)
			var on atomic.Bool
			inj := ErrorsOn(ErrInjectedIO, op)
			fs := NewErrorFS(mem, func(o Op, name string) error {
				if !on.Load() {
					return nil
				}
				return inj(o, name)
			})
			f, err := fs.OpenFile("/d/f", os.O_RDWR, 0)
			must(t, err)
			on.Store(true)
			for i, tt := range allOps() {
				err := tt.run(fs, f)
				if tt.op != op {
					if err != nil {
						t.Errorf("step %d (%v): unexpected error %v", i, tt.op, err)
					}
					continue
				}
				var pe *os.PathError
				if !errors.Is(err, syscall.EIO) || !errors.As(err, &pe) || pe.Op != op.String() {
					t.Errorf("step %d (%v): got %v, want injected EIO", i, tt.op, err)
				}
			}
			// Failed operations were not performed.
			switch op {
			case OpWrite, OpTruncate, OpPreallocate:
				want := map[Op]string{
					OpWrite:       "da\x00\x00\x00\x00\x00\x00",
					OpTruncate:    "wwta\x00\x00\x00\x00",
					OpPreallocate: "ww",
				}[op]
				if got, _ := readFile(mem, "/d/f"); string(got) != want {
					t.Errorf("/d/f = %q, want %q", got, want)
				}
			case OpRemove:
				if _, err := mem.Stat("/d/x"); err != nil {
					t.Errorf("removed despite error: %v", err)
				}
			case OpRename:
				if _, err := mem.Stat("/d/r"); err != nil {
					t.Errorf("renamed despite error: %v", err)
				}
			case OpMkdir:
				if _, err := mem.Stat("/d/sub"); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("made despite error: %v", err)
				}
			case OpClose:
				// A failed Close still closes the inner file.
				on.Store(false)
				if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
					t.Errorf("Stat after failed Close: %v", err)
				}
			}
		})
	}
}

func TestErrorFSInjectorSeesNames(t *testing.T) {
	type call struct {
		op   Op
		name string
	}
	var mu sync.Mutex // guards calls
	var calls []call
	fs := NewErrorFS(NewMemFS(), func(op Op, name string) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{op, name})
		return nil
	})
	f, err := fs.OpenFile("/f", os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	_, err = f.Write([]byte("x"))
	must(t, err)
	must(t, f.Close())
	must(t, fs.Rename("/f", "/g"))
	want := []call{{OpOpen, "/f"}, {OpWrite, "/f"}, {OpClose, "/f"}, {OpRename, "/f"}}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != len(want) {
		t.Fatalf("calls = %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d = %v, want %v", i, calls[i], want[i])
		}
	}
}

func TestAfter(t *testing.T) {
	fs := NewErrorFS(NewMemFS(), After(2, ErrorsOn(ErrInjectedNoSpace, OpWrite)))
	f, err := fs.OpenFile("/f", os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	steps := []struct {
		write   bool
		wantErr bool
	}{
		{true, false},
		{false, false}, // reads are not counted
		{true, false},
		{false, false},
		{true, true},
		{false, false},
		{true, true},
	}
	for i, s := range steps {
		var err error
		if s.write {
			_, err = f.Write([]byte("x"))
		} else {
			_, err = f.ReadAt(make([]byte, 1), 0)
		}
		if (err != nil) != s.wantErr || (err != nil && !errors.Is(err, syscall.ENOSPC)) {
			t.Errorf("step %d: err = %v, want error %v", i, err, s.wantErr)
		}
	}
	if fi, _ := f.Stat(); fi.Size() != 2 {
		t.Errorf("size = %d, want 2", fi.Size())
	}
}

func TestAfterConcurrent(t *testing.T) {
	const n, goroutines, calls = 100, 8, 50
	inj := After(n, ErrorsOn(ErrInjectedIO, OpWrite))
	var passed, failed atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				if inj(OpRead, "r") != nil {
					t.Error("non-matching op failed")
				}
				if inj(OpWrite, "w") == nil {
					passed.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != n || failed.Load() != goroutines*calls-n {
		t.Errorf("passed %d, failed %d; want %d, %d", passed.Load(), failed.Load(), n, goroutines*calls-n)
	}
}

func TestPartialWrites(t *testing.T) {
	tests := []struct {
		name    string
		inj     Injector
		writeAt bool
		wantN   int
		want    string
	}{
		{"Write partial", PartialWrites(ErrorsOn(ErrInjectedNoSpace, OpWrite)), false, 5, "abcd01234"},
		{"WriteAt partial", PartialWrites(ErrorsOn(ErrInjectedNoSpace, OpWrite)), true, 5, "ab01234"},
		{"Write whole failure", ErrorsOn(ErrInjectedNoSpace, OpWrite), false, 0, "abcd"},
		{"WriteAt whole failure", ErrorsOn(ErrInjectedNoSpace, OpWrite), true, 0, "abcd"},
		{"partial after 1", PartialWrites(After(1, ErrorsOn(ErrInjectedNoSpace, OpWrite))), false, 5, "abcd01234"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := NewMemFS()
			writeFile(t, mem, "/f", "abcd", false)
			var on atomic.Bool
			fs := NewErrorFS(mem, func(op Op, name string) error {
				if !on.Load() {
					return nil
				}
				return tt.inj(op, name)
			})
			flag := os.O_RDWR | os.O_APPEND
			if tt.writeAt {
				flag = os.O_RDWR
			}
			f, err := fs.OpenFile("/f", flag, 0)
			must(t, err)
			defer f.Close()
			on.Store(true)
			if tt.name == "partial after 1" {
				// The first failing call passes whole.
				if _, err := f.Write(nil); err != nil {
					t.Fatal(err)
				}
			}
			var n int
			if tt.writeAt {
				n, err = f.WriteAt([]byte("0123456789"), 2)
			} else {
				n, err = f.Write([]byte("0123456789"))
			}
			if n != tt.wantN || !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("write = %d, %v; want %d, ENOSPC", n, err, tt.wantN)
			}
			if got, _ := readFile(mem, "/f"); string(got) != tt.want {
				t.Errorf("content = %q, want %q", got, tt.want)
			}
			// Other ops fail without side effects.
			if err := f.Sync(); err != nil {
				t.Errorf("Sync: %v", err)
			}
		})
	}
	fs := NewErrorFS(NewMemFS(), PartialWrites(ErrorsOn(ErrInjectedIO, OpTruncate)))
	f, err := fs.OpenFile("/f", os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	if err := f.Truncate(3); !errors.Is(err, syscall.EIO) {
		t.Errorf("Truncate = %v", err)
	}
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Errorf("size after failed Truncate = %d", fi.Size())
	}
}

func TestErrorFSOverOS(t *testing.T) {
	dir := t.TempDir()
	fs := NewErrorFS(OS{}, ErrorsOn(ErrInjectedNoSpace, OpSync, OpSyncDir))
	name := filepath.Join(dir, "f")
	f, err := fs.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	defer f.Close()
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Sync = %v", err)
	}
	if err := fs.SyncDir(dir); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("SyncDir = %v", err)
	}
	if got, err := readFile(OS{}, name); err != nil || string(got) != "x" {
		t.Errorf("content = %q, %v", got, err)
	}
}
