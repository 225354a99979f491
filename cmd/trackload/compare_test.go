package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

// TestCompare runs compare's alternation against an httptest server
// standing in for trackd (and compare's own in-process plain server).
func TestCompare(t *testing.T) {
	var hits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if u, p, ok := r.BasicAuth(); !ok || u != "s" || p != "k" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		hits.Add(1)
		w.Write([]byte("{}"))
	}))
	defer target.Close()
	args := []string{"compare", "--url", target.URL, "--site", "s", "--key", "k", "--requests", "100", "--conns", "4", "--rounds", "3"}

	var out strings.Builder
	if err := run(context.Background(), args, os.Getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 300 {
		t.Errorf("the target got %d requests, want 3 rounds × 100", n)
	}
	for _, want := range []string{"round", "plain ok/s", "ratio trackd/plain (200s per second): min ", "trackd p99: min"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if err := run(context.Background(), append(args, "--json", "--rounds", "2"), os.Getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var res compareResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if len(res.Rounds) != 2 {
		t.Fatalf("%d rounds, want 2", len(res.Rounds))
	}
	for i, rd := range res.Rounds {
		if rd.Plain.OK != 100 || rd.Trackd.OK != 100 || rd.Ratio <= 0 {
			t.Errorf("round %d: plain ok %d, trackd ok %d, ratio %v", i+1, rd.Plain.OK, rd.Trackd.OK, rd.Ratio)
		}
		if rd.Plain.Target == rd.Trackd.Target {
			t.Errorf("round %d: both runs against %s", i+1, rd.Plain.Target)
		}
	}
	if !(res.Ratio.Min <= res.Ratio.Median && res.Ratio.Median <= res.Ratio.Max) {
		t.Errorf("ratio spread %+v", res.Ratio)
	}
	// By default the plain server is its own process, sampled like trackd.
	if res.PlainPID <= 0 || res.Rounds[0].Plain.Proc == nil {
		t.Errorf("plain server pid %d, sampled %v: want its own process", res.PlainPID, res.Rounds[0].Plain.Proc)
	}

	out.Reset()
	if err := run(context.Background(), append(args, "--json", "--rounds", "1", "--plain", "inprocess"), os.Getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	res = compareResult{}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if res.PlainPID != 0 || len(res.Rounds) != 1 || res.Rounds[0].Plain.OK != 100 {
		t.Errorf("--plain inprocess: plain pid %d, rounds %+v", res.PlainPID, res.Rounds)
	}
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want spread
	}{
		{nil, spread{}},
		{[]float64{3}, spread{3, 3, 3}},
		{[]float64{0.9, 0.7, 0.8}, spread{0.7, 0.8, 0.9}},
		{[]float64{4, 1, 3, 2}, spread{1, 2.5, 4}},
	}
	for _, tt := range tests {
		if got := spreadOf(tt.in); got != tt.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestMain lets this test binary be compare's plain-server child, as the
// trackload binary is.
func TestMain(m *testing.M) {
	if os.Getenv(plainServerEnv) != "" {
		os.Exit(plainServerMain(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}
