package jetstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// TailOptions configures Tail.
type TailOptions struct {
	ConnOptions
	// Stream is the stream to read; default DefaultStream.
	Stream string
	// Subject filters the stream's subjects (wildcards allowed, e.g.
	// "trackd.us.*.v1.identify"); empty reads them all.
	Subject string
	// All starts with the oldest message the stream still holds; otherwise
	// only messages stored after Tail started are printed.
	All bool
	// Count stops Tail after that many messages; 0 runs until ctx ends.
	Count int
	// Ready, if set, is called once the consumer exists: every message
	// stored afterwards will be printed.
	Ready func()
}

// TailLine is one line Tail prints: a message as the back end holds it.
type TailLine struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	// Headers are all the message's headers (the first value of each).
	Headers map[string]string `json:"headers"`
	// Envelope is the CloudEvents attributes: the ce- headers without
	// their prefix.
	Envelope map[string]string `json:"envelope"`
	// Data is the body as JSON (compacted onto the line), or null when
	// the message has none.
	Data json.RawMessage `json:"data"`
	// DataBase64 holds a body that is not JSON (trackd never stores one).
	DataBase64 []byte `json:"data_base64,omitempty"`
}

// Tail prints the messages of a stream as JSON lines (TailLine), through an
// ordered consumer (ephemeral, in stream order, recreated by the client
// after a gap or reconnect). It returns after opts.Count messages when
// Count > 0, and returns nil when ctx ends.
func Tail(ctx context.Context, url string, opts TailOptions, w io.Writer) error {
	if opts.Stream == "" {
		opts.Stream = DefaultStream
	}
	if err := opts.ConnOptions.validate(); err != nil {
		return fmt.Errorf("jetstream: tail: %w", err)
	}
	nc, err := connect(url, opts.ConnOptions, "trackd tail", slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: tail: %w", err)
	}
	cfg := natsjs.OrderedConsumerConfig{DeliverPolicy: natsjs.DeliverNewPolicy}
	if opts.All {
		cfg.DeliverPolicy = natsjs.DeliverAllPolicy
	}
	if opts.Subject != "" {
		cfg.FilterSubjects = []string{opts.Subject}
	}
	cons, err := js.OrderedConsumer(ctx, opts.Stream, cfg)
	if err != nil {
		return tailErr(ctx, opts.Stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return tailErr(ctx, opts.Stream, err)
	}
	defer it.Stop()
	if opts.Ready != nil {
		opts.Ready()
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for n := 0; opts.Count <= 0 || n < opts.Count; n++ {
		msg, err := it.Next(natsjs.NextContext(ctx))
		if err != nil {
			return tailErr(ctx, opts.Stream, err)
		}
		buf.Reset()
		if err := enc.Encode(lineOf(msg)); err != nil {
			return fmt.Errorf("jetstream: tail: encode: %w", err)
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("jetstream: tail: %w", err)
		}
	}
	return nil
}

func tailErr(ctx context.Context, stream string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return fmt.Errorf("jetstream: tail: stream %s not found (has trackd forwarded anything to this server yet?)", stream)
	}
	return fmt.Errorf("jetstream: tail stream %s: %w", stream, err)
}

// lineOf renders one message.
func lineOf(msg natsjs.Msg) TailLine {
	l := TailLine{
		Subject:  msg.Subject(),
		Headers:  make(map[string]string),
		Envelope: make(map[string]string),
		Data:     json.RawMessage("null"),
	}
	if md, err := msg.Metadata(); err == nil {
		l.Seq = md.Sequence.Stream
	}
	for k, v := range msg.Headers() {
		if len(v) == 0 {
			continue
		}
		l.Headers[k] = v[0]
		if name, ok := strings.CutPrefix(k, "ce-"); ok {
			l.Envelope[name] = v[0]
		}
	}
	switch data := msg.Data(); {
	case len(data) == 0:
	case json.Valid(data):
		l.Data = json.RawMessage(data)
	default:
		l.DataBase64 = data
	}
	return l
}
