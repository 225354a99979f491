// Package kafka is the Kafka sink (DESIGN §2.7, a fleet's alternative to
// JetStream): it produces each spool record as one Kafka record in
// CloudEvents binary content mode (docs/ENVELOPE.md), with franz-go's
// idempotent producer and acks=all.
//
// # Records
//
// Topic: Options.Topic ("trackd"). Key: envelope.PartitionKey, the
// workspace and the event's subject ("<workspace>/<person>", or the record
// ID when the event is about no one), hashed by the default partitioner
// (murmur2, as the Java client) so that one person's events go to one
// partition, in spool order. Value: the validated request body, byte for
// byte; an empty, non-null value for operations without a body (a null
// value would be a tombstone). Headers: every CloudEvents attribute as
// ce_<name> (ce_id, ce_source, ce_specversion, ce_type, ce_time, ...), and
// content-type: application/json when there is a body. Header values are
// byte for byte (Kafka headers are bytes). The record timestamp is the
// produce time (ce_time is when trackd received the request).
//
// # Delivery, ordering and dedup
//
// The producer is idempotent (franz-go's default, never disabled here) and
// waits for acks from all in-sync replicas. Idempotence is what makes
// retries safe for order: the broker numbers each producer's batches per
// partition and refuses one out of sequence, franz-go keeps at most 5
// produce requests in flight per broker and resends failed batches in
// their original order, and when it gives up on a record it fails every
// record buffered behind it in that partition too (never a later one
// stored after an earlier one failed). MaxProduceRequestsInflightPerBroker,
// DisableIdempotentWrite and AllowIdempotentProduceCancellation, which
// would weaken this, are not used. On the first record of a Send that
// fails transiently, the rest of the Send is cancelled (what franz-go has
// not yet written fails), as the jetstream sink stops publishing: the
// forwarder resends from the first failure, in order.
//
// The broker refuses a partition's whole batch when one of its records is
// invalid (INVALID_RECORD): none of it is stored, and franz-go fails every
// record buffered in that partition with the error. Send then produces no
// more (the rest of the Send fails as not sent), waits for what it has
// produced, and produces the records that failed so again, alone, one at
// a time in spool order, each after the outcome of the one before (so
// each person's order holds): only a record refused on its own is
// quarantined, the innocent records batched with it are stored, unless a
// later record of their partition was stored meanwhile (franz-go reports
// the failure after Send may have produced more): those stay refused, as
// storing them now would break the order. Records after a transient failure of the Send (or of this isolation) are not
// produced again; they fail as not sent, for the forwarder's resend. (A
// record produced alone can still share a batch with a concurrent Send's
// records for the same partition; the forwarder does not overlap Sends.)
//
// Kafka has no dedup by message ID: the idempotent producer drops
// duplicates of its own retries within one producer session, but a resend
// after a trackd crash (or after a Send gave up waiting) is stored again.
// Delivery to Kafka is therefore at least once, and consumers deduplicate
// by ce_id (unique per record, the same on every resend; a resend lands
// after the first copy in the same partition, so keeping the first copy
// keeps each person's order). That is DESIGN §2.1's "exactly once where
// the back end can dedup": Kafka cannot, its consumers can.
//
// Adding partitions to the topic remaps keys: a person's new events may go
// to another partition than their older ones, and a lagging consumer may
// read them out of order. Size the topic up front.
//
// # Errors
//
// Send reports per record: nil once all in-sync replicas have it; a
// sink.Permanent error for a record that can never be stored: one larger
// than the topic's max.message.bytes (learned at New and given to franz-go
// as its batch limit, so such a record is refused before it is sent, alone,
// and the records batched around it are not affected), one the broker
// rejects as invalid (INVALID_RECORD) when produced alone (see above), one
// without an ID; and a transient error for everything else: timeouts
// (Options.ProduceTimeout), broker errors and outages, an unknown topic,
// and authorization failures, which are configuration an operator fixes
// (ACLs) while the backlog waits in the spool, rather than a reason to
// quarantine every record.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/trackd/trackd/internal/envelope"
	"github.com/trackd/trackd/internal/sink"
	"github.com/trackd/trackd/internal/spool"
)

// Defaults of Options.
const (
	DefaultName               = "kafka"
	DefaultTopic              = "trackd"
	DefaultClientID           = "trackd"
	DefaultProduceTimeout     = 10 * time.Second
	DefaultMaxBufferedRecords = 10000
	// DefaultMaxMessageBytes is the record batch limit used when the
	// topic's max.message.bytes cannot be read: Kafka's default.
	DefaultMaxMessageBytes = 1000012
)

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// TLSOptions configure TLS to the brokers. TLS is on when Enable is set or
// any file is given.
type TLSOptions struct {
	// Enable turns TLS on with the system's root CAs (or CAFile).
	Enable bool
	// CAFile verifies the brokers' certificates against this CA bundle
	// (PEM) instead of the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate and key (PEM), for
	// brokers that require mutual TLS. Both or neither.
	CertFile, KeyFile string
}

func (t *TLSOptions) enabled() bool {
	return t.Enable || t.CAFile != "" || t.CertFile != "" || t.KeyFile != ""
}

// SASLOptions configure SASL authentication. Mechanism empty means none.
type SASLOptions struct {
	// Mechanism is SASLPlain, SASLScramSHA256 or SASLScramSHA512.
	Mechanism string
	// User and Password are the credentials.
	User, Password string
}

// Options configures a Sink. Zero values are the documented defaults.
type Options struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topic is where records go; default DefaultTopic.
	Topic string
	// Name is the sink's name, which names its spool cursor; default
	// DefaultName. Must match [a-z0-9_-]{1,64}.
	Name string
	// ClientID is the Kafka client ID (broker logs, quotas); default
	// DefaultClientID.
	ClientID string
	// TLS and SASL are optional.
	TLS  TLSOptions
	SASL SASLOptions
	// ProduceTimeout bounds how long a record may wait for its acks
	// (franz-go's RecordDeliveryTimeout, where failing it is safe: the
	// record was never sent, or the broker answered) and how long a Send
	// waits, even when its context has no deadline; default
	// DefaultProduceTimeout, at least 1s. During an outage every Send
	// fails within it.
	ProduceTimeout time.Duration
	// MaxBufferedRecords bounds the records the client buffers (over all
	// Sends, including records of a Send that gave up waiting); Send
	// blocks when it is reached. Default DefaultMaxBufferedRecords.
	MaxBufferedRecords int
	// CreateTopic creates the topic when it does not exist, with
	// Partitions partitions (0: the broker's num.partitions), replication
	// factor ReplicationFactor (0: the broker's default.replication.factor)
	// and TopicConfigs (e.g. "min.insync.replicas": "2",
	// "retention.ms"). Without it, New fails if the topic is absent.
	CreateTopic       bool
	Partitions        int32
	ReplicationFactor int16
	TopicConfigs      map[string]string
	// Logger receives the client's warnings and errors (its informational
	// messages at Debug) and topic warnings; nil discards.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	if o.ProduceTimeout == 0 {
		o.ProduceTimeout = DefaultProduceTimeout
	}
	if o.MaxBufferedRecords == 0 {
		o.MaxBufferedRecords = DefaultMaxBufferedRecords
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

var (
	topicRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
)

// validate reports every problem with o at once.
func (o *Options) validate() error {
	var errs []error
	if len(o.Brokers) == 0 {
		errs = append(errs, errors.New("no Kafka brokers"))
	}
	for _, b := range o.Brokers {
		if strings.TrimSpace(b) == "" {
			errs = append(errs, errors.New("an empty broker address"))
			break
		}
	}
	if !spool.ValidCursorName(o.Name) {
		errs = append(errs, fmt.Errorf("sink name %q does not match [a-z0-9_-]{1,64}", o.Name))
	}
	if !topicRE.MatchString(o.Topic) || o.Topic == "." || o.Topic == ".." {
		errs = append(errs, fmt.Errorf("topic name %q: want 1 to 249 of [a-zA-Z0-9._-], not . or ..", o.Topic))
	}
	if o.ProduceTimeout < time.Second {
		errs = append(errs, fmt.Errorf("produce timeout %s: want at least 1s (franz-go's minimum)", o.ProduceTimeout))
	}
	if o.MaxBufferedRecords < 1 {
		errs = append(errs, fmt.Errorf("max buffered records %d: want at least 1", o.MaxBufferedRecords))
	}
	if o.Partitions < 0 {
		errs = append(errs, fmt.Errorf("partitions %d is negative", o.Partitions))
	}
	if o.ReplicationFactor < 0 {
		errs = append(errs, fmt.Errorf("replication factor %d is negative", o.ReplicationFactor))
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		errs = append(errs, errors.New("TLS client certificate and key go together"))
	}
	switch o.SASL.Mechanism {
	case "":
		if o.SASL.User != "" || o.SASL.Password != "" {
			errs = append(errs, errors.New("SASL user or password given without a SASL mechanism"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if o.SASL.User == "" {
			errs = append(errs, fmt.Errorf("SASL %s needs a user", o.SASL.Mechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("SASL mechanism %q: want %s, %s or %s", o.SASL.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kafka: options: %w", err)
	}
	return nil
}

// tlsConfig loads the TLS files.
func (t *TLSOptions) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: TLS CA %s: no PEM certificate in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func (s *SASLOptions) mechanism() sasl.Mechanism {
	switch s.Mechanism {
	case SASLPlain:
		return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
	case SASLScramSHA256:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()
	}
	return nil
}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("kafka: sink closed")

// errNotSent marks the records of a Send left unproduced, or cancelled,
// after an earlier record failed transiently (so that a resend keeps the
// spool's order).
var errNotSent = errors.New("kafka: not sent: an earlier record failed")

// Sink produces records to a Kafka topic. It is safe for concurrent use.
type Sink struct {
	name           string
	topic          string
	produceTimeout time.Duration
	log            *slog.Logger
	cl             *kgo.Client

	// maxBytes is the topic's max.message.bytes, learned by New; franz-go
	// reads it (ProducerBatchMaxBytesFn) when it first produces to a
	// partition.
	maxBytes atomic.Int32
	// partitions and replicas are the topic's partition count and
	// replication factor seen by New (0 when unknown).
	partitions, replicas int

	closeOnce sync.Once
	closed    chan struct{} // closed by Close

	stored, transient, permanent atomic.Uint64
}

// Stats counts Send's outcomes per record since New.
type Stats struct {
	// Stored is records acknowledged by all in-sync replicas (resends
	// included: Kafka cannot tell them apart).
	Stored uint64
	// Transient and Permanent count records that failed.
	Transient, Permanent uint64
}

// Stats returns the counts so far, for metrics.
func (s *Sink) Stats() Stats {
	return Stats{Stored: s.stored.Load(), Transient: s.transient.Load(), Permanent: s.permanent.Load()}
}

var _ sink.Sink = (*Sink)(nil)

// New connects to the brokers, creates the topic if asked to and it is
// absent, checks it and learns its max.message.bytes, and returns a Sink.
// ctx bounds these calls. It fails, naming the problem, when the brokers
// cannot be reached or refuse the credentials, when the topic is absent
// and CreateTopic is off, and when the topic is compacted (compaction keeps
// only the last record per key: one event per person).
func New(ctx context.Context, opts Options) (*Sink, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Sink{
		name:           opts.Name,
		topic:          opts.Topic,
		produceTimeout: opts.ProduceTimeout,
		log:            opts.Logger,
		closed:         make(chan struct{}),
	}
	s.maxBytes.Store(DefaultMaxMessageBytes)
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.ClientID(opts.ClientID),
		kgo.DefaultProduceTopic(opts.Topic),
		kgo.WithLogger(kgoLogger{opts.Logger}),
		// Durability: every in-sync replica has the record before Send
		// reports it. The idempotent producer, franz-go's default, needs
		// acks=all anyway; it is left on (see the package comment).
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// One person, one partition: keys are hashed (murmur2); records
		// without a key (none here) would stick to a partition for 64 KiB.
		kgo.RecordPartitioner(kgo.UniformBytesPartitioner(64<<10, true, true, nil)),
		// A Send hands over its whole batch at once and waits: lingering
		// would only add latency.
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(opts.ProduceTimeout),
		// A retriable produce error makes the client refresh metadata
		// before it retries, and it refreshes at most once per min age
		// (5s by default): longer than a short ProduceTimeout, and the
		// pause after an outage ends. One topic makes this cheap.
		kgo.MetadataMinAge(time.Second),
		// Retries back off as the Java client's do (retry.backoff.ms 100,
		// retry.backoff.max.ms 1000), rather than up to franz-go's 5s: a
		// returning broker is used within a second, and records a Send
		// gave up on are failed (or stored) soon after.
		kgo.RetryBackoffFn(retryBackoff),
		kgo.MaxBufferedRecords(opts.MaxBufferedRecords),
		// Batches stay under the topic's limit, and a record over it is
		// refused alone, before it is sent.
		kgo.ProducerBatchMaxBytesFn(func(string) int32 { return s.maxBytes.Load() }),
	}
	if opts.TLS.enabled() {
		tc, err := opts.TLS.config()
		if err != nil {
			return nil, err
		}
		kopts = append(kopts, kgo.DialTLSConfig(tc))
	}
	if m := opts.SASL.mechanism(); m != nil {
		kopts = append(kopts, kgo.SASL(m))
		if !opts.TLS.enabled() {
			opts.Logger.Warn("kafka: SASL without TLS: credentials and records cross the network in clear", "mechanism", opts.SASL.Mechanism)
		}
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: client: %w", err)
	}
	s.cl = cl
	if err := s.ensureTopic(ctx, &opts); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

// Name implements sink.Sink.
func (s *Sink) Name() string { return s.name }

// Topic returns the topic's name.
func (s *Sink) Topic() string { return s.topic }

// MaxMessageBytes returns the record batch limit in use: the topic's
// max.message.bytes.
func (s *Sink) MaxMessageBytes() int { return int(s.maxBytes.Load()) }

// Close flushes what the client still buffers (bounded by ProduceTimeout)
// and closes the client. Sends in progress report the records not yet
// acknowledged as failed. Safe to call more than once.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		ctx, cancel := context.WithTimeout(context.Background(), s.produceTimeout)
		err := s.cl.Flush(ctx)
		cancel()
		if err != nil {
			s.log.Warn("kafka: close: records still buffered were abandoned; the spool resends them", "err", err)
		}
		s.cl.Close()
	})
	return nil
}

// ensureTopic creates the topic if absent and asked to, then checks it and
// learns its limit.
func (s *Sink) ensureTopic(ctx context.Context, o *Options) error {
	adm := kadm.NewClient(s.cl)
	topics, err := adm.ListTopics(ctx, o.Topic)
	if err != nil {
		return fmt.Errorf("kafka: look up topic %s on %s: %w", o.Topic, strings.Join(o.Brokers, ","), err)
	}
	td, ok := topics[o.Topic]
	switch {
	case ok && td.Err == nil:
		s.partitions = len(td.Partitions)
		for _, p := range td.Partitions {
			s.replicas = len(p.Replicas)
		}
	case ok && !errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("kafka: look up topic %s: %w", o.Topic, td.Err)
	case !o.CreateTopic:
		return fmt.Errorf("kafka: topic %s does not exist (create it, or let trackd create it)", o.Topic)
	default:
		partitions, rf := o.Partitions, o.ReplicationFactor
		if partitions == 0 {
			partitions = -1
		}
		if rf == 0 {
			rf = -1
		}
		var configs map[string]*string
		if len(o.TopicConfigs) > 0 {
			configs = make(map[string]*string, len(o.TopicConfigs))
			for k, v := range o.TopicConfigs {
				configs[k] = &v
			}
		}
		resp, err := adm.CreateTopic(ctx, partitions, rf, configs, o.Topic)
		switch {
		case err == nil:
			s.partitions, s.replicas = int(resp.NumPartitions), int(resp.ReplicationFactor)
			o.Logger.Info("created kafka topic", "topic", o.Topic, "partitions", resp.NumPartitions,
				"replication_factor", resp.ReplicationFactor)
		case errors.Is(err, kerr.TopicAlreadyExists): // another node, meanwhile
		default:
			msg := resp.ErrMessage
			if msg != "" {
				msg = " (" + msg + ")"
			}
			return fmt.Errorf("kafka: create topic %s: %w%s", o.Topic, err, msg)
		}
	}
	return s.checkTopic(ctx, adm, o)
}

// checkTopic reads the topic's configuration: it refuses a compacted topic,
// learns max.message.bytes, and warns about settings that weaken
// durability.
func (s *Sink) checkTopic(ctx context.Context, adm *kadm.Client, o *Options) error {
	rcs, err := adm.DescribeTopicConfigs(ctx, o.Topic)
	if err == nil && len(rcs) == 1 {
		err = rcs[0].Err
	}
	if err == nil && len(rcs) != 1 {
		err = fmt.Errorf("%d answers", len(rcs))
	}
	if err != nil {
		// E.g. no DescribeConfigs ACL: work with Kafka's defaults.
		o.Logger.Warn("kafka: cannot read the topic's configuration; assuming max.message.bytes is Kafka's default",
			"topic", o.Topic, "max_message_bytes", DefaultMaxMessageBytes, "err", err)
		return nil
	}
	cfg := map[string]string{}
	for _, c := range rcs[0].Configs {
		cfg[c.Key] = c.MaybeValue()
	}
	if strings.Contains(cfg["cleanup.policy"], "compact") {
		return fmt.Errorf("kafka: topic %s has cleanup.policy=%s: compaction keeps only the last record per key, "+
			"and the key is the person, so it would delete their earlier events; use cleanup.policy=delete",
			o.Topic, cfg["cleanup.policy"])
	}
	if v, ok := cfg["max.message.bytes"]; ok {
		var n int64
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
			o.Logger.Warn("kafka: unreadable max.message.bytes; assuming Kafka's default", "topic", o.Topic, "value", v)
		} else {
			// franz-go accepts [512, 1 GiB].
			s.maxBytes.Store(int32(min(max(n, 512), 1<<30)))
		}
	}
	switch {
	case s.replicas == 1:
		o.Logger.Warn("kafka: topic has a single replica: losing its broker loses acknowledged records; "+
			"use 3 replicas and min.insync.replicas=2 in a fleet", "topic", o.Topic)
	case s.replicas > 1 && cfg["min.insync.replicas"] == "1":
		o.Logger.Warn("kafka: topic has min.insync.replicas=1: acks=all is then satisfied by the leader alone, "+
			"whose loss can lose acknowledged records; set it to 2", "topic", o.Topic, "replicas", s.replicas)
	}
	o.Logger.Info("kafka sink ready", "topic", o.Topic, "partitions", s.partitions, "replicas", s.replicas,
		"max_message_bytes", s.maxBytes.Load())
	return nil
}

// ceHeader returns "ce_" + name, without allocating for the attributes
// every record has.
func ceHeader(name string) string {
	switch name {
	case "id":
		return "ce_id"
	case "source":
		return "ce_source"
	case "specversion":
		return "ce_specversion"
	case "type":
		return "ce_type"
	case "time":
		return "ce_time"
	case "subject":
		return "ce_subject"
	case "datacontenttype":
		return "ce_datacontenttype"
	case "workspace":
		return "ce_workspace"
	case "operation":
		return "ce_operation"
	}
	return "ce_" + name
}

// record builds the Kafka record for r (see the package comment).
func record(topic string, r *spool.Record) *kgo.Record {
	attrs := envelope.Attributes(r)
	hs := make([]kgo.RecordHeader, 0, len(attrs)+1)
	for _, a := range attrs {
		hs = append(hs, kgo.RecordHeader{Key: ceHeader(a.Name), Value: []byte(a.Value)})
	}
	value := r.Body
	if len(value) > 0 {
		hs = append(hs, kgo.RecordHeader{Key: "content-type", Value: []byte("application/json")})
	} else {
		value = []byte{} // empty, not null: a null value is a tombstone
	}
	return &kgo.Record{
		Topic:   topic,
		Key:     []byte(envelope.PartitionKey(r)),
		Value:   value,
		Headers: hs,
	}
}

// encodedSizeBound is an upper bound of the bytes a record batch holding
// only kr takes: the batch header (61 bytes) and the record with
// worst-case varints.
func encodedSizeBound(kr *kgo.Record) int {
	n := 61 + 5 + 1 + 10 + 5 + 5 + len(kr.Key) + 5 + len(kr.Value) + 5
	for _, h := range kr.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

// classify maps a produce error to the sink's contract (see the package
// comment). batchTooLarge reports a broker refusing, as too large, a batch
// whose records each fit the topic's limit learned by New.
func (s *Sink) classify(err error, kr *kgo.Record) (_ error, batchTooLarge bool) {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		// franz-go refuses a record over the topic's limit alone; a broker
		// refusal covers the whole batch, so it condemns only a record that
		// could never fit on its own.
		if limit := int(s.maxBytes.Load()); encodedSizeBound(kr) > limit {
			return sink.Permanent(fmt.Errorf("kafka: record of %d bytes (key, value and headers) over the topic's max.message.bytes %d: %w",
				len(kr.Key)+len(kr.Value)+headerBytes(kr), limit, err)), false
		}
		return fmt.Errorf("kafka: produce: %w", err), true
	case errors.Is(err, kerr.InvalidRecord):
		// The broker refuses the whole batch: Send produces its records
		// again, alone, to find the invalid ones (isolate).
		return sink.Permanent(fmt.Errorf("kafka: produce: %w", err)), false
	case errors.Is(err, kgo.ErrClientClosed):
		return ErrClosed, false
	}
	return fmt.Errorf("kafka: produce: %w", err), false
}

func headerBytes(kr *kgo.Record) int {
	n := 0
	for _, h := range kr.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// outcome is one record's result, passed from its promise to Send.
type outcome struct {
	i   int
	err error
}

// errPending marks, inside Send, a produced record still awaiting its
// outcome.
var errPending = errors.New("kafka: pending")

// Send implements sink.Sink: it produces every record of recs (in order,
// pipelined by the client), then waits for each outcome, for ctx, or for
// ProduceTimeout (plus a second, so that the client's own timeout verdict
// usually comes first), whichever ends first. Records the broker refused
// as invalid with their batch are then produced again one at a time
// (isolate), within the same bound. The client may still hold
// records of a Send that stopped waiting, and deliver them later: the
// forwarder resends them, and consumers dedup by ce_id. Send does not
// modify recs and keeps their bodies (not the slice) until the client is
// done with them.
func (s *Sink) Send(ctx context.Context, recs []spool.Record) []error {
	errs := make([]error, len(recs))
	if len(recs) == 0 {
		return errs
	}
	select {
	case <-s.closed:
		return sink.Fill(len(recs), ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return sink.Fill(len(recs), fmt.Errorf("kafka: %w", err))
	}

	// wctx bounds the Send. pctx is the records' context: cancelled at
	// the first transient failure (franz-go then fails what it has not
	// written yet), and when Send returns (what the client still buffers
	// unwritten is dropped rather than stored after Send reported it
	// failed). It also ends a Produce blocked on a full buffer.
	wctx, wcancel := context.WithTimeout(ctx, s.produceTimeout+time.Second)
	defer wcancel()
	pctx, cancel := context.WithCancel(wctx)
	defer cancel()

	krs := make([]*kgo.Record, len(recs))
	// invalid is set at the first record refused as invalid with its
	// partition's batch: Send produces no more. Records it produced before
	// it learned of the failure may be stored after the refused batch
	// (franz-go fails the partition's buffer at once but runs the
	// promises later); isolate leaves the refused records before such a
	// record refused, so that order holds.
	var invalid atomic.Bool
	// Promises run on the client's goroutine and must not block: the
	// channel has room for every outcome, and errs is Send's alone.
	outcomes := make(chan outcome, len(recs))
	produced := 0
	for i := range recs {
		r := &recs[i]
		switch {
		case ctx.Err() != nil:
			errs[i] = fmt.Errorf("kafka: %w", ctx.Err())
			continue
		case pctx.Err() != nil, invalid.Load():
			errs[i] = errNotSent
			continue
		case r.ID == "":
			errs[i] = sink.Permanent(errors.New("kafka: record has no ID (the consumers' dedup key)"))
			continue
		}
		kr := record(s.topic, r)
		krs[i] = kr
		errs[i] = errPending
		produced++
		s.cl.Produce(pctx, kr, func(kr *kgo.Record, err error) {
			if err != nil {
				switch perr, _ := s.classify(err, kr); {
				case errors.Is(err, kerr.InvalidRecord):
					invalid.Store(true)
				case !sink.IsPermanent(perr):
					cancel() // the rest of the batch is not sent
				}
			}
			outcomes <- outcome{i, err}
		})
	}

	tooLarge, refused := 0, 0
wait:
	for ; produced > 0; produced-- {
		select {
		case o := <-outcomes:
			switch {
			case o.err == nil:
				errs[o.i] = nil
			case errors.Is(o.err, context.Canceled) && ctx.Err() == nil:
				errs[o.i] = errNotSent // cancelled by an earlier failure
			default:
				var big bool
				errs[o.i], big = s.classify(o.err, krs[o.i])
				if big {
					tooLarge++
				}
				if errors.Is(o.err, kerr.InvalidRecord) {
					refused++
				}
			}
			continue
		case <-wctx.Done():
		case <-s.closed:
		}
		// Stopped waiting: the rest failed (transiently).
		err := s.waitErr(ctx)
		for i := range errs {
			if errs[i] == errPending {
				errs[i] = err
			}
		}
		break wait
	}
	if refused > 0 {
		tooLarge += s.isolate(ctx, wctx, recs, krs, errs, refused)
	}
	if tooLarge > 0 {
		s.log.Warn("kafka: the broker refused records as too large although each fits the topic's max.message.bytes read at start; "+
			"restart trackd if the topic's limit was lowered", "topic", s.topic, "records", tooLarge,
			"max_message_bytes", s.maxBytes.Load())
	}
	for _, err := range errs {
		switch {
		case err == nil:
			s.stored.Add(1)
		case sink.IsPermanent(err):
			s.permanent.Add(1)
		default:
			s.transient.Add(1)
		}
	}
	return errs
}

// waitErr is the error of the records whose outcome Send stopped waiting
// for, because ctx ended, the produce timeout passed, or the sink closed.
func (s *Sink) waitErr(ctx context.Context) error {
	select {
	case <-s.closed:
		return ErrClosed
	default:
	}
	if ctx.Err() != nil {
		return fmt.Errorf("kafka: waiting for acks: %w", ctx.Err())
	}
	return fmt.Errorf("kafka: no acks within the produce timeout %s", s.produceTimeout)
}

// isolate finds the invalid records among the n records of a Send that
// failed with INVALID_RECORD, most of them merely batched with an invalid
// one (see the package comment): it produces each again, alone, in the
// order of recs, and waits for its outcome before the next. A record
// refused alone as invalid is permanent; one stored is delivered; any
// other failure is classified as usual. A record is not produced again,
// but stays refused (quarantined, as its batch was), when a later record
// of its partition in this Send is stored already: franz-go fails a
// partition's buffered records at once but reports them later, so Send
// may have produced more records of the partition meanwhile, in a new
// batch, and storing the earlier record now would put it after them. From the Send's first transient
// failure on (isolate's own included), the records are not produced again
// and fail as not sent. wctx bounds isolate as it bounds Send. It updates
// errs, and returns how many records the broker refused as too large
// although each fits the topic's limit (see classify).
func (s *Sink) isolate(ctx, wctx context.Context, recs []spool.Record, krs []*kgo.Record, errs []error, n int) (tooLarge int) {
	// The last record of each partition that is stored.
	lastStored := map[int32]int{}
	for i, err := range errs {
		if err == nil && krs[i] != nil {
			lastStored[krs[i].Partition] = i
		}
	}
	// ictx is the records' context, as pctx is in Send: cancelled when
	// isolate returns, so that a record it stopped waiting for is dropped
	// if the client has not written it yet.
	ictx, cancel := context.WithCancel(wctx)
	defer cancel()
	// The promise must not block, also for a record isolate stopped
	// waiting for: room for one outcome, and nothing produced after it.
	done := make(chan error, 1)
	stopped := false
	produced, refused, kept := 0, 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			continue
		case !errors.Is(err, kerr.InvalidRecord):
			// Permanent (no ID): settled. Transient: the forwarder resends
			// from here, so nothing after it is produced again.
			stopped = stopped || !sink.IsPermanent(err)
			continue
		case stopped:
			errs[i] = errNotSent
			continue
		}
		if last, ok := lastStored[krs[i].Partition]; ok && last > i {
			kept++ // stays refused, with its batch: see above
			continue
		}
		// A new record: the failed one keeps Send's context, cancelled.
		kr := record(s.topic, &recs[i])
		var out error
		waited := false
		select {
		case <-wctx.Done():
		case <-s.closed:
		default:
			produced++
			s.cl.Produce(ictx, kr, func(_ *kgo.Record, err error) { done <- err })
			select {
			case out = <-done:
				waited = true
			case <-wctx.Done():
			case <-s.closed:
			}
		}
		switch {
		case !waited, errors.Is(out, context.Canceled), errors.Is(out, context.DeadlineExceeded):
			// Stopped waiting, or the record failed because ctx or the
			// Send's bound ended.
			errs[i] = s.waitErr(ctx)
		case out == nil:
			errs[i] = nil
		case errors.Is(out, kerr.InvalidRecord):
			refused++
			errs[i] = sink.Permanent(fmt.Errorf("kafka: the broker refuses the record as invalid, produced alone: %w", out))
		default:
			var big bool
			errs[i], big = s.classify(out, kr)
			if big {
				tooLarge++
			}
		}
		stopped = errs[i] != nil && !sink.IsPermanent(errs[i])
	}
	s.log.Warn("kafka: the broker refused a batch as invalid; produced its records again one at a time",
		"topic", s.topic, "failed_with_batch", n, "produced_alone", produced, "invalid", refused,
		"kept_refused_for_order", kept)
	return tooLarge
}

// retryBackoff is the delay before retry n (1-based): 100ms doubling up to
// 1s, with ±20% jitter.
func retryBackoff(n int) time.Duration {
	d := time.Second
	if n < 5 {
		d = 100 * time.Millisecond << max(n-1, 0)
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// kgoLogger routes franz-go's log to slog: its errors and warnings as such,
// its informational messages at Debug (connections, producer IDs, metadata),
// its debug output below Debug.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug-4):
		return kgo.LogLevelDebug
	case l.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case l.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	case l.log.Enabled(ctx, slog.LevelError):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var lv slog.Level
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	case kgo.LogLevelInfo:
		lv = slog.LevelDebug
	default:
		lv = slog.LevelDebug - 4
	}
	l.log.Log(context.Background(), lv, "kafka: "+msg, keyvals...)
}
