package spool

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/trackd/trackd/internal/vfs"
)

// TestLastNonZeroOnPreallocatedFile: on a real file system, where the
// search skips reserved space that was never written, stray bytes after
// the end of the data are still found, wherever they are.
func TestLastNonZeroOnPreallocatedFile(t *testing.T) {
	const size = 8 << 20
	for _, stray := range []int64{-1, 100, zeroChunk - 1, zeroChunk, 5<<20 + 17, size - 1} {
		name := filepath.Join(t.TempDir(), "seg")
		f, err := vfs.OS{}.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Preallocate(0, size); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("data"), 0); err != nil {
			t.Fatal(err)
		}
		want := int64(4)
		if stray >= 0 {
			if _, err := f.WriteAt([]byte{7}, stray); err != nil {
				t.Fatal(err)
			}
			want = max(want, stray+1)
		}
		for round := range 2 { // the second time with every page cached
			got, err := lastNonZero(f, 4, size)
			if err != nil || got != want {
				t.Fatalf("stray byte at %d, round %d: lastNonZero = %d, %v; want %d", stray, round, got, err, want)
			}
			if _, err := readLastNonZero(f, 0, size); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	}
}
