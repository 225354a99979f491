package spool

import (
	"context"
	"os"
	"path"
	"testing"

	"github.com/trackd/trackd/internal/vfs"
)

// TestCheckpointAtCloseSparesTheScan: a clean close leaves a checkpoint of
// the open segment in the manifest; the next open trusts the bytes it
// vouches for (as it trusts sealed segments) and reports the same state,
// while a deep open still reads them.
func TestCheckpointAtCloseSparesTheScan(t *testing.T) {
	fsys := vfs.NewMemFS()
	opts := Options{FS: fsys, SegmentSize: 1 << 20, Retention: -1}
	s, err := Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for g := range 20 {
		if err := s.Append(context.Background(), groupRecords(1, g, 3)); err != nil {
			t.Fatal(err)
		}
	}
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := readManifest(fsys, crashDir)
	if err != nil || m.Open == nil || m.Open.Seq != before.Tail.Seq || m.Open.Size != before.Tail.Offset || m.Open.Records != 60 {
		t.Fatalf("manifest after a clean close: %+v, %v; want a checkpoint at %v with 60 records", m, err, before.Tail)
	}

	// Flip a byte inside a record the checkpoint vouches for.
	f, err := fsys.OpenFile(path.Join(crashDir, segmentName(before.Tail.Seq)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, segmentHeaderSize+20); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()

	s, err = Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if !s.Report().Clean() || after.Records != before.Records || after.OldestAt != before.OldestAt || after.Tail != before.Tail {
		t.Fatalf("open after a clean close: report %+v, stats %+v; want clean and %+v (the checkpointed bytes are not read)", s.Report(), after, before)
	}
	s.Close()
	deep := opts
	deep.Deep, deep.ReadOnly = true, true
	s, err = Open(crashDir, deep)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Report().Clean() {
		t.Fatal("a deep open did not read the checkpointed bytes: the flipped byte went unnoticed")
	}
}

// TestCheckpointOfARolledSegmentIsIgnored: after a clean close, the open
// segment fills up and rolls, and the next one grows past the checkpoint's
// size; after a crash, recovery must scan the new open segment from its
// start, not from the stale checkpoint's offset.
func TestCheckpointOfARolledSegmentIsIgnored(t *testing.T) {
	fsys := vfs.NewMemFS()
	opts := Options{FS: fsys, SegmentSize: 64 << 10, Retention: -1}
	s, err := Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	app := func(w, g int) {
		recs := groupRecords(w, g, 2)
		if err := s.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			acked[r.ID] = true
		}
	}
	for g := range 10 {
		app(1, g)
	}
	cpSeq, cpSize := s.Stats().Tail.Seq, s.Stats().Tail.Offset
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(crashDir, opts); err != nil {
		t.Fatal(err)
	}
	for g := 0; ; g++ {
		app(2, g)
		if tail := s.Stats().Tail; tail.Seq > cpSeq && tail.Offset > cpSize+100 {
			break
		}
	}
	crashed := fsys.Crash(vfs.CrashOptions{})
	s.Close()
	opts.FS = crashed
	s, err = Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Report().Clean() {
		t.Fatalf("recovery found damage: %v", s.Report().Damage)
	}
	seen := checkSpool(t, s)
	for id := range acked {
		if !seen[id] {
			t.Fatalf("acknowledged record %s lost", id)
		}
	}
}

// TestCheckpointOfAnotherFileIsIgnored: a checkpoint whose creation time
// does not match the segment's header (another file with the same sequence
// number) vouches for nothing: the segment is scanned in full.
func TestCheckpointOfAnotherFileIsIgnored(t *testing.T) {
	fsys := vfs.NewMemFS()
	opts := Options{FS: fsys, SegmentSize: 1 << 20, Retention: -1}
	s, err := Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for g := range 5 {
		if err := s.Append(context.Background(), groupRecords(1, g, 3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := readManifest(fsys, crashDir)
	if err != nil || m.Open == nil {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	m.Open.Created++
	if err := writeManifest(fsys, crashDir, m); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.OpenFile(path.Join(crashDir, segmentName(m.Open.Seq)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff}, segmentHeaderSize+20)
	f.Sync()
	f.Close()
	s, err = Open(crashDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Report().Clean() {
		t.Fatal("the segment was not scanned: a checkpoint of another file was trusted")
	}
}
