package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/trackd/trackd/internal/forward"
	"github.com/trackd/trackd/internal/vfs"
)

// The public status view is what customers see during an incident: no
// internal detail, components with a Statuspage status derived from the
// SLO burn rates, and the incidents an operator opens and updates
// (`trackd incident`). Its JSON has the shape of the Statuspage public API
// (/api/v2/summary.json), so existing tools can read it.

// Incident phases, in order.
var IncidentPhases = []string{"investigating", "identified", "monitoring", "resolved"}

// IncidentUpdate is one message of an incident.
type IncidentUpdate struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// Incident is one incident, with its history.
type Incident struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Status     string           `json:"status"`
	Impact     string           `json:"impact"` // none, minor, major, critical
	CreatedAt  time.Time        `json:"created_at"`
	UpdatedAt  time.Time        `json:"updated_at"`
	ResolvedAt *time.Time       `json:"resolved_at"`
	Updates    []IncidentUpdate `json:"incident_updates"`
}

// IncidentsFile is where incidents are kept in the data dir.
const IncidentsFile = "incidents.json"

// LoadIncidents reads the incidents of a data dir (none if the file is
// missing).
func LoadIncidents(dataDir string) ([]Incident, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, IncidentsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var inc []Incident
	if err := json.Unmarshal(b, &inc); err != nil {
		return nil, fmt.Errorf("%s: %w", IncidentsFile, err)
	}
	return inc, nil
}

// SaveIncidents writes the incidents crash-atomically.
func SaveIncidents(dataDir string, inc []Incident) error {
	b, err := json.MarshalIndent(inc, "", "  ")
	if err != nil {
		return err
	}
	return vfs.WriteFileAtomic(vfs.OS{}, dataDir, IncidentsFile, append(b, '\n'))
}

// ValidPhase reports whether s is an incident phase.
func ValidPhase(s string) bool {
	for _, p := range IncidentPhases {
		if p == s {
			return true
		}
	}
	return false
}

// PublicOptions say where the public view gets its data.
type PublicOptions struct {
	Name       string // page name; default "trackd"
	Region     string
	Tracker    *Tracker
	Forwarders func() []forward.Stats
	Incidents  func() ([]Incident, error)
	Now        func() time.Time
}

// Statuspage component statuses.
const (
	Operational         = "operational"
	DegradedPerformance = "degraded_performance"
	PartialOutage       = "partial_outage"
	MajorOutage         = "major_outage"
)

type component struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Position  int       `json:"position"`
	PageID    string    `json:"page_id"`
	Group     bool      `json:"group"`
}

type summary struct {
	Page struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		URL       string    `json:"url"`
		TimeZone  string    `json:"time_zone"`
		UpdatedAt time.Time `json:"updated_at"`
	} `json:"page"`
	Status struct {
		Indicator   string `json:"indicator"`
		Description string `json:"description"`
	} `json:"status"`
	Components            []component `json:"components"`
	Incidents             []Incident  `json:"incidents"`
	ScheduledMaintenances []any       `json:"scheduled_maintenances"`
}

// Summary builds the Statuspage-shaped summary: components derived from
// the SLO burn rates and forwarding, and the unresolved incidents.
func (o PublicOptions) Summary() summary {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now().UTC()
	var s summary
	s.Page.ID, s.Page.Name, s.Page.TimeZone, s.Page.UpdatedAt = "trackd", o.Name, "Etc/UTC", t
	if s.Page.Name == "" {
		s.Page.Name = "trackd"
	}
	apiStatus := Operational
	if o.Tracker != nil {
		for _, a := range o.Tracker.Alerts() {
			st := DegradedPerformance
			if a.SLO == "availability" {
				st = PartialOutage
				if a.Severity == "page" {
					st = MajorOutage
				}
			}
			apiStatus = worse(apiStatus, st)
		}
	}
	s.Components = append(s.Components, component{ID: "api-" + o.Region, Name: "Data Collection API (" + o.Region + ")", Status: apiStatus})
	if o.Forwarders != nil {
		for _, f := range o.Forwarders() {
			st := Operational
			if !f.Waiting && f.LastError != "" && f.LastDeliveredAt != 0 && t.Sub(time.Unix(0, f.LastDeliveredAt)) > 5*time.Minute {
				st = DegradedPerformance
			}
			s.Components = append(s.Components, component{ID: "forwarding-" + o.Region + "-" + f.Destination, Name: "Forwarding (" + f.Destination + ", " + o.Region + ")", Status: st})
		}
	}
	indicator := "none"
	for i := range s.Components {
		c := &s.Components[i]
		c.Position, c.PageID, c.CreatedAt, c.UpdatedAt = i+1, "trackd", t, t
		switch c.Status {
		case MajorOutage:
			indicator = maxIndicator(indicator, "critical")
		case PartialOutage:
			indicator = maxIndicator(indicator, "major")
		case DegradedPerformance:
			indicator = maxIndicator(indicator, "minor")
		}
	}
	s.Incidents = []Incident{}
	if o.Incidents != nil {
		if inc, err := o.Incidents(); err == nil {
			for _, in := range inc {
				if in.Status != "resolved" {
					s.Incidents = append(s.Incidents, in)
					indicator = maxIndicator(indicator, map[string]string{"minor": "minor", "major": "major", "critical": "critical"}[in.Impact])
				}
			}
		}
	}
	s.Status.Indicator = indicator
	s.Status.Description = map[string]string{"none": "All Systems Operational", "minor": "Minor Service Outage",
		"major": "Partial System Outage", "critical": "Major Service Outage"}[indicator]
	s.ScheduledMaintenances = []any{}
	return s
}

var componentRank = map[string]int{Operational: 0, DegradedPerformance: 1, PartialOutage: 2, MajorOutage: 3}

func worse(a, b string) string {
	if componentRank[b] > componentRank[a] {
		return b
	}
	return a
}

var indicatorRank = map[string]int{"none": 0, "minor": 1, "major": 2, "critical": 3}

func maxIndicator(a, b string) string {
	if indicatorRank[b] > indicatorRank[a] {
		return b
	}
	return a
}

var publicTmpl = template.Must(template.New("public").Funcs(template.FuncMap{
	"human": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30"><title>{{.Page.Name}} status</title>
<style>body{font:15px system-ui,sans-serif;margin:2em;max-width:50em;color:#222}.s{padding:.8em 1em;color:#fff;font-weight:bold}
.none{background:#2e7d32}.minor{background:#f9a825}.major{background:#ef6c00}.critical{background:#c62828}
li{margin:.3em 0}.operational{color:#2e7d32}.degraded_performance{color:#f9a825}.partial_outage{color:#ef6c00}.major_outage{color:#c62828}</style></head>
<body><h1>{{.Page.Name}} status</h1><div class="s {{.Status.Indicator}}">{{.Status.Description}}</div>
<h2>Components</h2><ul>{{range .Components}}<li>{{.Name}}: <b class="{{.Status}}">{{human .Status}}</b></li>{{end}}</ul>
<h2>Incidents</h2>{{range .Incidents}}<h3>{{.Name}} — {{.Status}}</h3><ul>{{range .Updates}}<li><b>{{.Status}}</b> {{.CreatedAt.Format "2006-01-02 15:04 UTC"}}: {{.Body}}</li>{{end}}</ul>{{else}}<p>No open incidents.</p>{{end}}
<p><a href="api/v2/summary.json">JSON</a> · updated {{.Page.UpdatedAt.Format "2006-01-02 15:04:05 UTC"}}</p></body></html>
`))

// PublicHandler serves the public view: an HTML page at the prefix and the
// Statuspage-shaped JSON at prefix+"api/v2/summary.json" and
// prefix+"api/v2/status.json". prefix ends in "/".
func PublicHandler(mux *http.ServeMux, prefix string, o PublicOptions) {
	mux.HandleFunc("GET "+prefix+"api/v2/summary.json", func(w http.ResponseWriter, r *http.Request) {
		publicHeaders(w)
		writeJSON(w, o.Summary())
	})
	mux.HandleFunc("GET "+prefix+"api/v2/status.json", func(w http.ResponseWriter, r *http.Request) {
		publicHeaders(w)
		s := o.Summary()
		writeJSON(w, map[string]any{"page": s.Page, "status": s.Status})
	})
	mux.HandleFunc("GET "+prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		publicHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		s := o.Summary()
		sort.SliceStable(s.Incidents, func(i, j int) bool { return s.Incidents[i].CreatedAt.After(s.Incidents[j].CreatedAt) })
		publicTmpl.Execute(w, s)
	})
}

// PublicOnlyHandler serves nothing but the public view, for a listener of
// its own that can be exposed to customers (--public-listen): the page at /
// and /public/, the JSON at /api/v2/summary.json and /api/v2/status.json
// (and the same under /public/, so links to the admin listener's view work
// unchanged). Every other path is 404.
func PublicOnlyHandler(o PublicOptions) http.Handler {
	mux := http.NewServeMux()
	PublicHandler(mux, "/", o)
	PublicHandler(mux, "/public/", o)
	return mux
}

// publicHeaders are set on every answer of the public view, which may be
// exposed to the internet: the page loads nothing from anywhere (its style
// is inline), cannot be framed, and sends no referrer.
func publicHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
