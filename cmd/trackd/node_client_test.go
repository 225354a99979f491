package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trackd/trackd/internal/spool"
)

// nodeTestDir holds the Node test (test/node), relative to this package.
const nodeTestDir = "../../test/node"

// nodeRec is one record a Node client call must leave in the spool.
type nodeRec struct {
	op string
	// meta: each key must have this value; "" means the key is absent.
	// The record of an expectation is the only one with this op and meta.
	meta map[string]string
	id   string // the record ID, when the client supplied a ULID
	body string // JSON, compared semantically; "" means no body
}

// nodeCall is one TrackClient call of test/node/clients.test.mjs, named as
// it lists it in TRACKD_NODE_OUT, and the records it must produce.
type nodeCall struct {
	method, id string
	recs       []nodeRec
}

// nodeCalls mirrors test/node/clients.test.mjs. The expected bodies are
// what the reference (track-api.md §6) says customerio-node 5.2.0 sends,
// not what it was seen to send.
var nodeCalls = []nodeCall{
	{"identify", "node-identify-1", []nodeRec{{op: "v1.identify", meta: map[string]string{"identifier": "node-identify-1"},
		body: `{"email":"node-identify-1@example.com","plan":"pro","created_at":1700000000,"nested":{"a":1,"b":[true,null]}}`}}},
	// No data: the client sends {}. The identifier arrives percent-encoded.
	{"identify", "node-identify-2/ü@example.com", []nodeRec{{op: "v1.identify", meta: map[string]string{"identifier": "node-identify-2/ü@example.com"},
		body: `{}`}}},
	{"destroy", "node-destroy-1", []nodeRec{{op: "v1.delete", meta: map[string]string{"identifier": "node-destroy-1"}}}},
	// suppress and unsuppress POST {}.
	{"suppress", "node-suppress-1", []nodeRec{{op: "v1.suppress", meta: map[string]string{"identifier": "node-suppress-1"}, body: `{}`}}},
	{"unsuppress", "node-unsuppress-1", []nodeRec{{op: "v1.unsuppress", meta: map[string]string{"identifier": "node-unsuppress-1"}, body: `{}`}}},
	{"track", "node-track-1", []nodeRec{{op: "v1.event", id: "01JD7N0DE0000000000000TRK1",
		meta: map[string]string{"identifier": "node-track-1", "timestamp": "1700000001"},
		body: `{"name":"node-purchase","id":"01JD7N0DE0000000000000TRK1","timestamp":1700000001,"data":{"price":9.5,"sku":"node-sku-1"}}`}}},
	{"trackAnonymous", "node-anon-1", []nodeRec{{op: "v1.anonymous_event", meta: map[string]string{"anonymous_id": "node-anon-1"},
		body: `{"name":"node-anon-visit","data":{"page":"/pricing"},"anonymous_id":"node-anon-1"}`}}},
	// An invite: no anonymous_id at all.
	{"trackAnonymous", "node-invite-1", []nodeRec{{op: "v1.anonymous_event", meta: map[string]string{"anonymous_id": ""},
		body: `{"name":"node-invite","data":{"recipient":"node-invite-1@example.com"}}`}}},
	{"trackPageView", "node-page-1", []nodeRec{{op: "v1.event", meta: map[string]string{"identifier": "node-page-1"},
		body: `{"type":"page","name":"/node/pricing?x=1"}`}}},
	{"trackPush", "node-push-delivery-1", []nodeRec{{op: "v1.push_metric",
		meta: map[string]string{"delivery_id": "node-push-delivery-1", "timestamp": "1700000002"},
		body: `{"delivery_id":"node-push-delivery-1","device_id":"node-push-device-1","event":"opened","timestamp":1700000002}`}}},
	// last_used at the top of device, the rest under attributes.
	{"addDevice", "node-device-token-1", []nodeRec{{op: "v1.device.add",
		meta: map[string]string{"identifier": "node-device-1", "device_id": "node-device-token-1", "timestamp": "1700000003"},
		body: `{"device":{"id":"node-device-token-1","platform":"ios","last_used":1700000003,"attributes":{"app_version":"1.2.3","push_enabled":"true"}}}`}}},
	// No data: no last_used, no attributes.
	{"addDevice", "node-device-token-2", []nodeRec{{op: "v1.device.add",
		meta: map[string]string{"identifier": "node-device-2", "device_id": "node-device-token-2", "timestamp": ""},
		body: `{"device":{"id":"node-device-token-2","platform":"android"}}`}}},
	{"deleteDevice", "node-device-token-1/x", []nodeRec{{op: "v1.device.delete",
		meta: map[string]string{"identifier": "node-device-1", "device_id": "node-device-token-1/x"}}}},
	// One record per batch item, each with its own body and index.
	{"batch", "node-batch-1", []nodeRec{
		{op: "v2.person.identify", meta: map[string]string{"batch_index": "0", "identifiers": `{"id":"node-batch-1"}`},
			body: `{"type":"person","action":"identify","identifiers":{"id":"node-batch-1"},"attributes":{"plan":"free"}}`},
		{op: "v2.person.event", meta: map[string]string{"batch_index": "1", "identifiers": `{"email":"node-batch-2@example.com"}`, "timestamp": "1700000004"},
			body: `{"type":"person","action":"event","identifiers":{"email":"node-batch-2@example.com"},"name":"node-batch-event","timestamp":1700000004,"attributes":{"n":1}}`},
		{op: "v2.object.identify", meta: map[string]string{"batch_index": "2", "identifiers": `{"object_id":"node-batch-object-1","object_type_id":"1"}`},
			body: `{"type":"object","action":"identify","identifiers":{"object_type_id":"1","object_id":"node-batch-object-1"},"attributes":{"name":"Acme"},"cio_relationships":[{"identifiers":{"id":"node-batch-1"}}]}`},
		{op: "v2.delivery.event", meta: map[string]string{"batch_index": "3", "identifiers": `{"id":"node-batch-delivery-1"}`},
			body: `{"type":"delivery","action":"event","identifiers":{"id":"node-batch-delivery-1"},"name":"opened","attributes":{"device_token":"node-batch-token-1"}}`},
		{op: "v2.person.add_device", meta: map[string]string{"batch_index": "4", "identifiers": `{"id":"node-batch-1"}`},
			body: `{"type":"person","action":"add_device","identifiers":{"id":"node-batch-1"},"device":{"token":"node-batch-token-2","platform":"android"}}`},
	}},
	{"entity", "node-entity-1", []nodeRec{{op: "v2.person.event", id: "01JD7N0DE0000000000000ENT1",
		meta: map[string]string{"identifiers": `{"id":"node-entity-1"}`, "timestamp": "1700000005", "batch_index": ""},
		body: `{"type":"person","action":"event","identifiers":{"id":"node-entity-1"},"name":"node-entity-event","id":"01JD7N0DE0000000000000ENT1","timestamp":1700000005,"attributes":{"source":"node"}}`}}},
	{"mergeCustomers", "node-merge-primary-1", []nodeRec{{op: "v1.merge", meta: map[string]string{},
		body: `{"primary":{"id":"node-merge-primary-1"},"secondary":{"email":"node-merge-secondary-1@example.com"}}`}}},
	{"getAccountRegion", "", nil}, // a GET: nothing stored; the Node test checks the answer
	{"addCustomersToSegment", "node-seg-1@example.com", []nodeRec{{op: "v1.segment.add",
		meta: map[string]string{"segment_id": "7", "id_type": "email"},
		body: `{"ids":["node-seg-1@example.com","node-seg-2@example.com"]}`}}},
	// No idType: no query parameter; trackd records the default.
	{"removeCustomersFromSegment", "node-seg-3", []nodeRec{{op: "v1.segment.remove",
		meta: map[string]string{"segment_id": "8", "id_type": "id"},
		body: `{"ids":["node-seg-3"]}`}}},
	{"submitForm", "node-form-1", []nodeRec{{op: "v1.form", meta: map[string]string{"form_id": "node-form-1"},
		body: `{"data":{"email":"node-form-1@example.com","name":"Ada","plan":"pro"}}`}}},
	{"reportMetric", "node-metric-delivery-1", []nodeRec{{op: "v1.metric",
		meta: map[string]string{"delivery_id": "node-metric-delivery-1", "timestamp": "1700000006"},
		body: `{"delivery_id":"node-metric-delivery-1","metric":"clicked","timestamp":1700000006,"recipient":"node-metric-1@example.com","href":"https://example.com/node"}`}}},
	// At the host root, not under /api/v1.
	{"unsubscribe", "node-unsub-delivery-1", []nodeRec{{op: "v1.unsubscribe", meta: map[string]string{"delivery_id": "node-unsub-delivery-1"},
		body: `{"unsubscribe":true}`}}},
	{"unsubscribe", "node-unsub-delivery-2", []nodeRec{{op: "v1.unsubscribe", meta: map[string]string{"delivery_id": "node-unsub-delivery-2"},
		body: `{"unsubscribe":false}`}}},
}

// TestNodeClient runs the official Node client, customerio-node 5.2.0
// unchanged, against a real `trackd serve` (test/node/clients.test.mjs
// calls every TrackClient method), then checks every call's records in the
// spool: operation, workspace, identifiers, body, and nothing else stored
// (no replays, nothing from the call with wrong credentials).
func TestNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(nodeTestDir, "node_modules", "customerio-node", "package.json"))
	}
	if err != nil {
		msg := "the Node client test needs node and test/node/node_modules (run ./scripts/test, or `npm ci` in test/node): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	// The key makes standard base64 (what the client sends) differ from
	// the URL-safe alphabet: "bm9kZXNpdGU6Pj4+Pz8/bm9kZQ==".
	const site, key = "nodesite", ">>>???node"
	dataDir := t.TempDir()
	base, _, stop := startServe(t, dataDir, "--workspace", site+":"+key)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()

	outFile := filepath.Join(t.TempDir(), "sent.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", nodeTestDir+"/")
	cmd.Env = append(os.Environ(),
		"TRACKD_URL="+base, "TRACKD_SITE_ID="+site, "TRACKD_API_KEY="+key, "TRACKD_NODE_OUT="+outFile,
		"NO_COLOR=1", "NODE_OPTIONS=")
	// node --test runs each file in a child process: kill the whole group
	// on timeout, and stop waiting for pipes shortly after.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("node --test did not finish in time:\n%s", out)
	}
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s", nodeTestDir, err, out)
	}
	t.Logf("node --test:\n%s", out)

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after a graceful stop", err)
	}
	stopped = true

	// The calls the Node test made are the calls this table checks.
	raw, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatalf("the Node test wrote no call list: %v", err)
	}
	var sent []struct{ Method, ID string }
	if err := json.Unmarshal(raw, &sent); err != nil {
		t.Fatalf("call list %q: %v", raw, err)
	}
	var got, want []string
	for _, s := range sent {
		got = append(got, s.Method+" "+s.ID)
	}
	for _, c := range nodeCalls {
		want = append(want, c.method+" "+c.id)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the Node test's calls and this test's table differ:\nnode:  %q\ntable: %q", got, want)
	}

	recs := readRecords(t, dataDir)
	used := make([]bool, len(recs))
	nwant := 0
	for _, c := range nodeCalls {
		for _, w := range c.recs {
			nwant++
			var idx []int
			for i := range recs {
				if recs[i].Op == w.op && metaMatches(&recs[i], w.meta) {
					idx = append(idx, i)
				}
			}
			if len(idx) != 1 {
				t.Errorf("%s(%q): %d records with op %s and meta %v, want 1", c.method, c.id, len(idx), w.op, w.meta)
				continue
			}
			if used[idx[0]] {
				t.Errorf("%s(%q): its record %s was already claimed by another call", c.method, c.id, recs[idx[0]].ID)
			}
			used[idx[0]] = true
			r := &recs[idx[0]]
			if r.Workspace != site {
				t.Errorf("%s(%q): workspace %q, want %q", c.method, c.id, r.Workspace, site)
			}
			if ua, _ := r.Get("user_agent"); ua != "Customer.io Node Client/5.2.0" {
				t.Errorf("%s(%q): user_agent %q", c.method, c.id, ua)
			}
			if api, _ := r.Get("api"); api != w.op[:2] {
				t.Errorf("%s(%q): api %q, want %q", c.method, c.id, api, w.op[:2])
			}
			if w.id != "" && r.ID != w.id {
				t.Errorf("%s(%q): record ID %q, want the client's %q", c.method, c.id, r.ID, w.id)
			}
			if d := jsonDiff(w.body, r.Body); d != "" {
				t.Errorf("%s(%q): %s", c.method, c.id, d)
			}
		}
	}
	// Nothing else: no replays, nothing from the wrong credentials.
	for i := range recs {
		if !used[i] {
			t.Errorf("unexpected record %s %s %v %s", recs[i].ID, recs[i].Op, recs[i].Meta, recs[i].Body)
		}
	}
	if len(recs) != nwant {
		t.Errorf("the spool holds %d records, want %d", len(recs), nwant)
	}
}

func metaMatches(r *spool.Record, want map[string]string) bool {
	for k, v := range want {
		got, ok := r.Get(k)
		if v == "" && ok || v != "" && got != v {
			return false
		}
	}
	return true
}

// jsonDiff compares a stored body with the expected JSON ("" = no body).
func jsonDiff(want string, body []byte) string {
	if want == "" {
		if len(body) != 0 {
			return "body " + string(body) + ", want none"
		}
		return ""
	}
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return "bad expectation " + want + ": " + err.Error()
	}
	if err := json.Unmarshal(body, &g); err != nil {
		return "stored body " + strings.TrimSpace(string(body)) + ": " + err.Error()
	}
	if !reflect.DeepEqual(w, g) {
		return "body " + string(body) + ", want " + want
	}
	return ""
}
