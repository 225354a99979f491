package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/sink/jetstream"
	"github.com/trackd/trackd/internal/ulid"
)

// startNATS starts an embedded JetStream server (as trackd embeds it) and
// returns a connection to it.
func startNATS(t *testing.T) (string, natsjs.JetStream) {
	t.Helper()
	srv, err := jetstream.StartEmbedded(jetstream.EmbeddedOptions{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), js
}

// msg is one message to publish: an oracle ID (by index) or a foreign one,
// for a person; resend publishes it without Nats-Msg-Id so that the
// stream keeps it as a duplicate (a consumer sees ce-id twice).
type msg struct {
	id      int // index into the case's IDs; -1: a record ID not in the oracle
	person  string
	resend  bool
	noHdrID bool // only Nats-Msg-Id, no ce-id
}

func TestVerify(t *testing.T) {
	url, js := startNATS(t)
	tests := []struct {
		name    string
		ids     int   // oracle size; the IDs are increasing
		publish []msg // in stream order
		want    verifyResult
		fails   bool
	}{
		{
			name: "all there, in order",
			ids:  4,
			publish: []msg{
				{id: 0, person: "a"}, {id: 1, person: "b"}, {id: 2, person: "a"}, {id: 3, person: "b", noHdrID: true},
			},
			want: verifyResult{Oracle: 4, StreamMessages: 4},
		},
		{
			name: "one lost",
			ids:  3,
			publish: []msg{
				{id: 0, person: "a"}, {id: 2, person: "a"},
			},
			want:  verifyResult{Oracle: 3, StreamMessages: 2, Lost: 1, TimedOut: true},
			fails: true,
		},
		{
			name: "a duplicate after the last wanted ID is still counted",
			ids:  2,
			publish: []msg{
				{id: 0, person: "a"}, {id: 1, person: "a"}, {id: -1, person: "z"}, {id: 0, person: "a", resend: true},
			},
			want: verifyResult{Oracle: 2, StreamMessages: 4, Foreign: 1, Duplicated: 1, DuplicateMessages: 1},
		},
		{
			name: "out of order for one person only",
			ids:  4,
			publish: []msg{
				{id: 1, person: "a"}, {id: 0, person: "a"}, {id: 2, person: "b"}, {id: 3, person: "b"},
			},
			want: verifyResult{Oracle: 4, StreamMessages: 4, OutOfOrder: 1},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stream := fmt.Sprintf("T%d", i)
			if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: stream, Subjects: []string{fmt.Sprintf("t%d.>", i)}}); err != nil {
				t.Fatal(err)
			}
			gen := ulid.NewGenerator(nil, nil)
			ids := make([]ulid.ULID, tt.ids)
			for j := range ids {
				ids[j] = gen.New()
			}
			for _, m := range tt.publish {
				id := gen.New() // foreign
				if m.id >= 0 {
					id = ids[m.id]
				}
				h := nats.Header{}
				if !m.resend {
					h.Set(nats.MsgIdHdr, id.String())
				}
				if !m.noHdrID {
					h.Set("ce-id", id.String())
				}
				h.Set("ce-subject", m.person)
				if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: fmt.Sprintf("t%d.us.site.v1.event", i), Header: h, Data: []byte("{}")}); err != nil {
					t.Fatal(err)
				}
			}

			got, err := verifyStream(ctx, ids, verifyOptions{NATSURL: url, Stream: stream, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, *got, cmpopts.IgnoreFields(verifyResult{}, "Elapsed", "LostSample")); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if err := verdict(got, false); (err != nil) != tt.fails {
				t.Errorf("verdict = %v, want failure %v", err, tt.fails)
			}

			// The command: exit 1 on loss, 0 otherwise.
			file := filepath.Join(t.TempDir(), "oracle")
			var lines strings.Builder
			for _, id := range ids {
				lines.WriteString(id.String() + "\n")
			}
			os.WriteFile(file, []byte(lines.String()), 0o644)
			var out strings.Builder
			err = run(ctx, []string{"verify", "--oracle", file, "--nats-url", url, "--stream", stream, "--timeout", "1s"},
				os.Getenv, &out, io.Discard)
			if code, want := cli.ExitCode("trackload", err, io.Discard), map[bool]int{false: 0, true: 1}[tt.fails]; code != want {
				t.Errorf("verify command: exit %d (%v), want %d:\n%s", code, err, want, out.String())
			}
			if !strings.Contains(out.String(), fmt.Sprintf("lost       %d\n", tt.want.Lost)) {
				t.Errorf("verify output:\n%s", out.String())
			}
		})
	}
}

func TestReadOracle(t *testing.T) {
	gen := ulid.NewGenerator(nil, nil)
	a, b := gen.NewString(), gen.NewString()
	tests := []struct {
		name    string
		content string
		want    []string
		torn    bool
		err     bool
	}{
		{"plain", a + "\n" + b + "\n", []string{a, b}, false, false},
		{"blank lines and a repeat", "\n" + a + "\n\n" + a + "\n" + b + "\n", []string{a, b}, false, false},
		{"torn last line", a + "\n" + b[:10], []string{a}, true, false},
		{"garbage in the middle", a + "\nnot-an-id\n" + b + "\n", nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "oracle")
			os.WriteFile(file, []byte(tt.content), 0o644)
			ids, torn, err := readOracle(file)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			var got []string
			for _, id := range ids {
				got = append(got, id.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" || torn != tt.torn {
				t.Errorf("ids (-want +got):\n%s torn %v want %v", diff, torn, tt.torn)
			}
		})
	}
}
