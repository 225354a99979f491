package admin

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/spool"
)

// StatusOptions say where the status page gets its data.
type StatusOptions struct {
	Region     string
	Tracker    *Tracker
	Spool      func() spool.Stats
	Forwarders func() []forward.Stats
	// Quarantine returns the number of entries by kind.
	Quarantine func() map[string]int
	Now        func() time.Time
}

// StatusData is what the status page shows; /status.json serves it as is.
type StatusData struct {
	Region     string          `json:"region"`
	Time       time.Time       `json:"time"`
	Windows    []WindowStats   `json:"windows"`
	Alerts     []Alert         `json:"alerts"`
	Banner     string          `json:"banner,omitempty"`
	Reasons    []Count         `json:"rejection_reasons_5m"`
	Workspaces []Count         `json:"top_rejected_workspaces_5m"`
	Pairs      []Count         `json:"top_workspace_reasons_5m"`
	ReasonsH   []Count         `json:"rejection_reasons_1h"`
	Spool      *spoolStatus    `json:"spool,omitempty"`
	Forwarding []forwardStatus `json:"forwarding"`
	Quarantine map[string]int  `json:"quarantine"`
}

type spoolStatus struct {
	Records          int64   `json:"records"`
	Bytes            int64   `json:"bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	FreeDiskBytes    int64   `json:"free_disk_bytes"`
	Failed           string  `json:"failed,omitempty"`
}

type forwardStatus struct {
	Destination string `json:"destination"`
	Delivered   uint64 `json:"delivered"`
	Retries     uint64 `json:"retries"`
	Quarantined uint64 `json:"quarantined"`
	Waiting     bool   `json:"caught_up"`
	LastError   string `json:"last_error,omitempty"`
}

// Data gathers the status now.
func (o StatusOptions) Data() StatusData {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	d := StatusData{Region: o.Region, Time: now().UTC(), Quarantine: map[string]int{}}
	if o.Tracker != nil {
		for _, w := range Windows {
			d.Windows = append(d.Windows, o.Tracker.Window(w))
		}
		d.Alerts = o.Tracker.Alerts()
		d.Reasons, d.Workspaces, d.Pairs = o.Tracker.Rejections(5, 10)
		d.ReasonsH, _, _ = o.Tracker.Rejections(60, 10)
		d.Banner = banner(d)
	}
	if o.Spool != nil {
		st := o.Spool()
		ss := &spoolStatus{Records: st.Records, Bytes: st.Bytes, FreeDiskBytes: st.FreeDisk}
		if st.OldestAt != 0 {
			ss.OldestAgeSeconds = now().Sub(time.Unix(0, st.OldestAt)).Seconds()
		}
		if st.Failed != nil {
			ss.Failed = st.Failed.Error()
		}
		d.Spool = ss
	}
	if o.Forwarders != nil {
		for _, f := range o.Forwarders() {
			d.Forwarding = append(d.Forwarding, forwardStatus{f.Destination, f.Delivered, f.Retries, f.Quarantined, f.Waiting, f.LastError})
		}
	}
	if o.Quarantine != nil {
		d.Quarantine = o.Quarantine()
	}
	return d
}

// banner names the cause when something is wrong: a burn-rate alert, or
// more than 1% of the last 5 minutes' requests rejected.
func banner(d StatusData) string {
	var w5 WindowStats
	for _, w := range d.Windows {
		if w.Window == (5 * time.Minute).String() {
			w5 = w
		}
	}
	if len(d.Alerts) == 0 && (w5.Requests == 0 || w5.RejectedRatio <= 0.01) {
		return ""
	}
	msg := ""
	if d.Region != "" {
		msg = "Region " + d.Region + ": "
	}
	for _, a := range d.Alerts {
		msg += fmt.Sprintf("%s SLO burning (%s, %s). ", a.SLO, a.Rule, a.Severity)
	}
	if len(d.Pairs) > 0 {
		msg += fmt.Sprintf("%.1f%% of requests rejected in the last 5 minutes; dominant: reason %s", w5.RejectedRatio*100, d.Reasons[0].Name)
		if len(d.Workspaces) > 0 {
			msg += fmt.Sprintf(" from workspace %s (%d rejections)", d.Workspaces[0].Name, d.Workspaces[0].Count)
		}
		msg += "."
	}
	return msg
}

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.3f%%", f*100) },
	"f1":  func(f float64) string { return fmt.Sprintf("%.1f", f) },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>trackd status — {{.Region}}</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.banner{background:#c62828;color:#fff;padding:.8em 1em;font-weight:bold;margin-bottom:1em}.ok{background:#2e7d32;color:#fff;padding:.5em 1em;margin-bottom:1em}</style></head>
<body><h1>trackd — region {{.Region}}</h1><p>{{.Time.Format "2006-01-02 15:04:05 UTC"}} · refreshes every 10 s · <a href="/status.json">JSON</a> · <a href="/metrics">metrics</a></p>
{{if .Banner}}<div class="banner" id="banner">{{.Banner}}</div>{{else}}<div class="ok">All SLOs within budget.</div>{{end}}
<h2>Requests and SLOs — region {{.Region}}</h2>
<table><tr><th>window</th><th>requests</th><th>req/s</th><th>5xx ratio</th><th>availability burn</th><th>slow ratio</th><th>latency burn</th><th>rejected ratio</th></tr>
{{range .Windows}}<tr><td>{{.Window}}</td><td>{{.Requests}}</td><td>{{f1 .RequestRate}}</td><td>{{pct .ErrorRatio}}</td><td>{{f1 .AvailabilityBurn}}×</td><td>{{pct .SlowRatio}}</td><td>{{f1 .LatencyBurn}}×</td><td>{{pct .RejectedRatio}}</td></tr>{{end}}</table>
<h2>Rejections, last 5 minutes — region {{.Region}}</h2>
<table><tr><th>reason</th><th>count</th></tr>{{range .Reasons}}<tr><td>{{.Name}}</td><td>{{.Count}}</td></tr>{{else}}<tr><td colspan="2">none</td></tr>{{end}}</table>
<table><tr><th>top workspaces</th><th>rejections</th></tr>{{range .Workspaces}}<tr><td>{{.Name}}</td><td>{{.Count}}</td></tr>{{else}}<tr><td colspan="2">none</td></tr>{{end}}</table>
<table><tr><th>workspace reason</th><th>count</th></tr>{{range .Pairs}}<tr><td>{{.Name}}</td><td>{{.Count}}</td></tr>{{end}}</table>
{{with .Spool}}<h2>Spool — region {{$.Region}}</h2><table><tr><th>records</th><th>bytes</th><th>oldest age (s)</th><th>free disk</th><th>state</th></tr>
<tr><td>{{.Records}}</td><td>{{.Bytes}}</td><td>{{f1 .OldestAgeSeconds}}</td><td>{{.FreeDiskBytes}}</td><td>{{if .Failed}}FAILED: {{.Failed}}{{else}}ok{{end}}</td></tr></table>{{end}}
<h2>Forwarding — region {{.Region}}</h2><table><tr><th>destination</th><th>delivered</th><th>retries</th><th>quarantined</th><th>caught up</th><th>last error</th></tr>
{{range .Forwarding}}<tr><td>{{.Destination}}</td><td>{{.Delivered}}</td><td>{{.Retries}}</td><td>{{.Quarantined}}</td><td>{{.Waiting}}</td><td>{{.LastError}}</td></tr>{{else}}<tr><td colspan="6">no destination</td></tr>{{end}}</table>
<h2>Quarantine — region {{.Region}}</h2><table><tr><th>kind</th><th>entries</th></tr>{{range $k, $v := .Quarantine}}<tr><td>{{$k}}</td><td>{{$v}}</td></tr>{{end}}</table>
</body></html>
`))

func statusHandlers(mux *http.ServeMux, o StatusOptions) {
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(o.Data())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		statusTmpl.Execute(w, o.Data())
	})
}
