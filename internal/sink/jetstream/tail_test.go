package jetstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/spool"
)

// tailLines splits Tail's output into lines, checking that each is one
// JSON object.
func tailLines(t *testing.T, out []byte) [][]byte {
	t.Helper()
	var lines [][]byte
	for l := range bytes.Lines(out) {
		l = bytes.TrimSuffix(l, []byte("\n"))
		if !json.Valid(l) || l[0] != '{' {
			t.Fatalf("line %q is not a JSON object", l)
		}
		lines = append(lines, l)
	}
	return lines
}

// checkTailLine checks one printed line against the record it shows.
func checkTailLine(t *testing.T, line []byte, seq uint64, r *spool.Record) {
	t.Helper()
	var got struct {
		Subject  string            `json:"subject"`
		Seq      uint64            `json:"seq"`
		Headers  map[string]string `json:"headers"`
		Envelope map[string]string `json:"envelope"`
		Data     json.RawMessage   `json:"data"`
	}
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatal(err)
	}
	if got.Subject != envelope.NATSSubject(DefaultSubjectPrefix, r) || got.Seq != seq {
		t.Errorf("subject %q seq %d, want %q %d", got.Subject, got.Seq, envelope.NATSSubject(DefaultSubjectPrefix, r), seq)
	}
	wantHeaders := map[string]string{}
	wantEnv := map[string]string{}
	for k, v := range wantHeader(r) {
		wantHeaders[k] = v[0]
		if name, ok := strings.CutPrefix(k, "ce-"); ok {
			wantEnv[name] = v[0]
		}
	}
	if diff := cmp.Diff(wantHeaders, got.Headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantEnv, got.Envelope); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
	// The body, compacted onto the line.
	var want bytes.Buffer
	if len(r.Body) == 0 {
		want.WriteString("null")
	} else if err := json.Compact(&want, r.Body); err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != want.String() {
		t.Errorf("data %s, want %s", got.Data, want.String())
	}
}

func TestTailAll(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	recs := testRecords(0, 6) // record 3 (v1.delete) has no body
	sendAll(t, s, recs)

	var out bytes.Buffer
	if err := Tail(testCtx(t), e.ClientURL(), TailOptions{All: true, Count: 4}, &out); err != nil {
		t.Fatal(err)
	}
	lines := tailLines(t, out.Bytes())
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), out.Bytes())
	}
	for i, l := range lines {
		checkTailLine(t, l, uint64(i+1), &recs[i])
	}
	if !strings.Contains(out.String(), `"s":"\u00e9漢 \"q\" <&>"`) {
		t.Errorf("the body is not shown as sent (escapes kept, no HTML escaping):\n%s", out.Bytes())
	}
}

func TestTailFilter(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	recs := testRecords(0, 10)
	sendAll(t, s, recs)
	var out bytes.Buffer
	opts := TailOptions{All: true, Count: 2, Subject: "trackd.*.*.v1.identify"}
	if err := Tail(testCtx(t), e.ClientURL(), opts, &out); err != nil {
		t.Fatal(err)
	}
	lines := tailLines(t, out.Bytes())
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	checkTailLine(t, lines[0], 1, &recs[0])
	checkTailLine(t, lines[1], 6, &recs[5])
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func TestTailNewOnly(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	recs := testRecords(0, 5)
	sendAll(t, s, recs[:2]) // before the tail: not shown

	var out syncBuffer
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Tail(testCtx(t), e.ClientURL(), TailOptions{Count: 3, Ready: func() { close(ready) }}, &out)
	}()
	<-ready
	sendAll(t, s, recs[2:])
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := tailLines(t, out.Bytes())
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, l := range lines {
		checkTailLine(t, l, uint64(i+3), &recs[i+2])
	}
}

func TestTailUntilContextEnds(t *testing.T) {
	e := startEmbedded(t, "", "")
	s := newSink(t, e.ClientURL(), Options{})
	recs := testRecords(0, 3)
	sendAll(t, s, recs)

	// The tail prints what there is, then waits for more until ctx ends.
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Tail(ctx, e.ClientURL(), TailOptions{All: true}, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	for i := range recs {
		if !sc.Scan() {
			t.Fatalf("line %d: %v", i, sc.Err())
		}
		checkTailLine(t, sc.Bytes(), uint64(i+1), &recs[i])
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Tail after ctx ended: %v", err)
	}
	if sc.Scan() {
		t.Fatalf("extra line %q", sc.Bytes())
	}
}

func TestTailNoStream(t *testing.T) {
	e := startEmbedded(t, "", "")
	err := Tail(testCtx(t), e.ClientURL(), TailOptions{Count: 1}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "stream TRACKD not found") {
		t.Fatalf("Tail = %v", err)
	}
}
