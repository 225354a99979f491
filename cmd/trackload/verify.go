package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/ulid"
)

// verifyOptions says where the stream is.
type verifyOptions struct {
	NATSURL string        // default nats://127.0.0.1:4222
	Stream  string        // default TRACKD
	Timeout time.Duration // bound on waiting for the oracle's IDs; default 60s
}

// verifyResult is what a check of an oracle against the stream found.
//
// Definitions:
//   - lost: an oracle ID that is in no message of the stream.
//   - duplicated: an oracle ID in more than one message (DuplicateMessages
//     counts the extra messages).
//   - out of order: trackload gives each sending worker its own persons
//     (tl-<run tag>-<worker>) and each worker sends one request at a time,
//     so a person's acknowledged events were stored one after another, in
//     the order of their IDs (a worker's ULIDs increase). Grouping the
//     stream's messages by person (the ce-subject header: the v1 path
//     identifier, or the v2 identifiers object), an oracle ID whose first
//     message comes after the first message of a greater oracle ID of the
//     same person is out of order. Messages that are not in the oracle
//     (unacknowledged requests, identify, other clients) are not checked.
type verifyResult struct {
	Oracle            int      `json:"oracle_ids"`
	StreamMessages    int64    `json:"stream_messages"` // messages read
	Foreign           int64    `json:"not_in_oracle"`   // messages whose ID is not in the oracle
	Lost              int      `json:"lost"`
	Duplicated        int      `json:"duplicated"`
	DuplicateMessages int64    `json:"duplicate_messages"`
	OutOfOrder        int      `json:"out_of_order"`
	TimedOut          bool     `json:"timed_out,omitempty"`
	LostSample        []string `json:"lost_sample,omitempty"` // up to 10 lost IDs
	Elapsed           float64  `json:"elapsed_seconds"`
}

// verifyStream reads the whole stream with an ordered consumer until every
// oracle ID was seen or o.Timeout passed, then on to the stream's last
// message (to count duplicates that came after), and compares.
func verifyStream(ctx context.Context, ids []ulid.ULID, o verifyOptions) (*verifyResult, error) {
	if o.NATSURL == "" {
		o.NATSURL = "nats://127.0.0.1:4222"
	}
	if o.Stream == "" {
		o.Stream = "TRACKD"
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	began := time.Now()
	want := make(map[ulid.ULID]uint32, len(ids)) // ID → times seen
	for _, id := range ids {
		want[id] = 0
	}
	res := &verifyResult{Oracle: len(want)}

	nc, err := nats.Connect(o.NATSURL, nats.Timeout(10*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", o.NATSURL, err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, err
	}
	consCtx, cancelCons := context.WithTimeout(ctx, 30*time.Second)
	defer cancelCons()
	cons, err := js.OrderedConsumer(consCtx, o.Stream, natsjs.OrderedConsumerConfig{DeliverPolicy: natsjs.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("stream %s: consumer: %w", o.Stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", o.Stream, err)
	}
	defer it.Stop()

	waitCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	found := 0
	var lastSeq uint64
	maxBySubject := map[string]ulid.ULID{}
	next := func(nopt natsjs.NextOpt) bool {
		msg, err := it.Next(nopt)
		if err != nil {
			return false
		}
		res.StreamMessages++
		if m, err := msg.Metadata(); err == nil {
			lastSeq = m.Sequence.Stream
		}
		h := msg.Headers()
		s := h.Get("ce-id")
		if s == "" {
			s = h.Get(nats.MsgIdHdr)
		}
		id, err := ulid.Parse(s)
		if err != nil {
			res.Foreign++
			return true
		}
		n, ok := want[id]
		if !ok {
			res.Foreign++
			return true
		}
		want[id] = n + 1
		if n > 0 {
			res.DuplicateMessages++
			if n == 1 {
				res.Duplicated++
			}
			return true
		}
		found++
		if subj := h.Get("ce-subject"); subj != "" {
			if prev, ok := maxBySubject[subj]; ok && bytes.Compare(id[:], prev[:]) < 0 {
				res.OutOfOrder++
			} else {
				maxBySubject[subj] = id
			}
		}
		return true
	}
	for found < len(want) && next(natsjs.NextContext(waitCtx)) {
	}
	if found < len(want) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.TimedOut = true
	}
	// Read on to the stream's current end, to count duplicates stored
	// after the last wanted ID. Bounded anew: the first phase may have
	// used up the timeout.
	endCtx, cancelEnd := context.WithTimeout(ctx, o.Timeout)
	defer cancelEnd()
	info, err := js.Stream(endCtx, o.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: info: %w", o.Stream, err)
	}
	for last := info.CachedInfo().State.LastSeq; lastSeq < last && next(natsjs.NextContext(endCtx)); {
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for id, n := range want {
		if n == 0 {
			res.Lost++
			if len(res.LostSample) < 10 {
				res.LostSample = append(res.LostSample, id.String())
			}
		}
	}
	res.Elapsed = time.Since(began).Seconds()
	return res, nil
}

func printVerify(w io.Writer, r *verifyResult) {
	fmt.Fprintf(w, "verify     %d oracle IDs; %d stream messages read (%d not in the oracle) in %.1fs\n",
		r.Oracle, r.StreamMessages, r.Foreign, r.Elapsed)
	fmt.Fprintf(w, "lost       %d\n", r.Lost)
	fmt.Fprintf(w, "duplicated %d IDs (%d extra messages)\n", r.Duplicated, r.DuplicateMessages)
	fmt.Fprintf(w, "out of order %d (per person, among acknowledged IDs)\n", r.OutOfOrder)
	if r.TimedOut {
		fmt.Fprintln(w, "note       timed out waiting for the oracle's IDs")
	}
	if len(r.LostSample) > 0 {
		fmt.Fprintf(w, "lost IDs (first %d): %v\n", len(r.LostSample), r.LostSample)
	}
}

// runVerify is `trackload verify`.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("verify", stderr)
	oracle := fs.String("oracle", "", "oracle file (one acknowledged ULID per line)")
	var o verifyOptions
	fs.StringVar(&o.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server")
	fs.StringVar(&o.Stream, "stream", "TRACKD", "JetStream stream")
	fs.DurationVar(&o.Timeout, "timeout", 60*time.Second, "how long to wait for the oracle's IDs to arrive")
	strict := fs.Bool("strict", false, "also fail (exit 1) on duplicates and out-of-order events")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *oracle == "" {
		return cli.Usagef("verify: --oracle FILE is required")
	}
	ids, torn, err := readOracle(*oracle)
	if err != nil {
		return err
	}
	if torn {
		fmt.Fprintln(stderr, "trackload: verify: the oracle's last line is torn (a run stopped while writing); skipped")
	}
	res, err := verifyStream(ctx, ids, o)
	if err != nil {
		return err
	}
	if err := writeResult(stdout, *asJSON, res, func() { printVerify(stdout, res) }); err != nil {
		return err
	}
	return verdict(res, *strict)
}

// verdict maps a verify result to cli.ErrCheckFailed: any loss, and with strict
// any duplicate or out-of-order event.
func verdict(r *verifyResult, strict bool) error {
	if r.Lost > 0 || (strict && (r.Duplicated > 0 || r.OutOfOrder > 0)) {
		return cli.ErrCheckFailed
	}
	return nil
}
