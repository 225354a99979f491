package main

import (
	"context"
	"io"

	"github.com/trackd/trackd/internal/cli"
	"github.com/trackd/trackd/internal/sink/jetstream"
)

// runTail is `trackd tail`: it prints what the back end receives, as JSON
// lines (subject, sequence, headers, the CloudEvents envelope, data).
func runTail(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("tail", stderr)
	url := fs.String("nats-url", "nats://"+jetstream.DefaultListen, "NATS server (default: the local embedded one)")
	stream := fs.String("nats-stream", jetstream.DefaultStream, "JetStream stream")
	subject := fs.String("subject", "", "subject filter, e.g. trackd.us.*.v1.identify (default: all)")
	count := fs.Int("count", 0, "exit after N messages (0: run until interrupted)")
	all := fs.Bool("all", false, "print everything the stream still holds, then new messages (default: new only)")
	creds := fs.String("nats-creds", "", "NATS credentials file")
	user := fs.String("nats-user", "", "NATS user")
	password := fs.String("nats-password", "", "NATS password")
	token := fs.String("nats-token", "", "NATS token")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *count < 0 {
		return cli.Usagef("tail: --count must not be negative")
	}
	if v := getenv("TRACKD_NATS_PASSWORD"); *password == "" && v != "" {
		*password = v
	}
	return jetstream.Tail(ctx, *url, jetstream.TailOptions{
		ConnOptions: jetstream.ConnOptions{CredsFile: *creds, User: *user, Password: *password, Token: *token},
		Stream:      *stream, Subject: *subject, All: *all, Count: *count,
	}, stdout)
}
