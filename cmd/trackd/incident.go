package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/trackd/trackd/internal/admin"
	"github.com/trackd/trackd/internal/cli"
)

// runIncident is `trackd incident open|update|resolve|list`: the incidents
// shown on the public status view (--public-listen, and /public/ on the
// admin listener), kept in <data-dir>/incidents.json. It works while the
// node runs: the node reads the file on every request of the public view.
func runIncident(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cli.Usagef("incident: want a subcommand: open, update, resolve or list")
	}
	sub, args := args[0], args[1:]
	fs := cli.NewFlagSet("incident "+sub, stderr)
	dataDir := fs.String("data-dir", "./data", "trackd's data directory")
	name := fs.String("name", "", "incident title (open)")
	message := fs.String("message", "", "what customers are told")
	impact := fs.String("impact", "minor", "none, minor, major or critical (open)")
	status := fs.String("status", "", "investigating, identified or monitoring (open: default investigating; update: required)")
	switch sub {
	case "open", "update", "resolve", "list":
	default:
		return cli.Usagef("incident: unknown subcommand %q: want open, update, resolve or list", sub)
	}
	if err := fs.Parse(args); err != nil {
		return cli.Usagef("incident %s: %v", sub, err)
	}
	var problems []string
	id := ""
	switch sub {
	case "open":
		if *name == "" || *message == "" {
			problems = append(problems, "incident open: --name and --message are required")
		}
		if *status == "" {
			*status = "investigating"
		}
		if !map[string]bool{"none": true, "minor": true, "major": true, "critical": true}[*impact] {
			problems = append(problems, fmt.Sprintf("--impact %q: want none, minor, major or critical", *impact))
		}
	case "update", "resolve":
		if fs.NArg() != 1 {
			problems = append(problems, fmt.Sprintf("incident %s: want one incident ID", sub))
		} else {
			id = fs.Arg(0)
		}
		if *message == "" {
			problems = append(problems, fmt.Sprintf("incident %s: --message is required", sub))
		}
		if sub == "resolve" {
			*status = "resolved"
		} else if *status == "" {
			problems = append(problems, "incident update: --status is required")
		}
	}
	if sub != "list" && sub != "resolve" && (!admin.ValidPhase(*status) || *status == "resolved") {
		problems = append(problems, fmt.Sprintf("--status %q: want investigating, identified or monitoring (resolve with `incident resolve`)", *status))
	}
	if len(problems) > 0 {
		return &cli.UsageError{Problems: problems}
	}

	incs, err := admin.LoadIncidents(*dataDir)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	update := admin.IncidentUpdate{ID: "u" + strconv.FormatInt(now.UnixNano(), 36), Status: *status, Body: *message, CreatedAt: now}
	switch sub {
	case "list":
		for _, in := range incs {
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\n", in.ID, in.Status, in.Impact, in.CreatedAt.Format(time.RFC3339), in.Name)
		}
		return nil
	case "open":
		in := admin.Incident{ID: "inc" + strconv.FormatInt(now.UnixNano(), 36), Name: *name, Status: *status, Impact: *impact,
			CreatedAt: now, UpdatedAt: now, Updates: []admin.IncidentUpdate{update}}
		incs = append(incs, in)
		id = in.ID
	default:
		found := false
		for i := range incs {
			if incs[i].ID != id {
				continue
			}
			if incs[i].Status == "resolved" {
				return fmt.Errorf("incident %s is resolved", id)
			}
			found = true
			incs[i].Status, incs[i].UpdatedAt = *status, now
			incs[i].Updates = append([]admin.IncidentUpdate{update}, incs[i].Updates...)
			if *status == "resolved" {
				incs[i].ResolvedAt = &now
			}
		}
		if !found {
			return fmt.Errorf("no incident %s (see `trackd incident list`)", id)
		}
	}
	if err := admin.SaveIncidents(*dataDir, incs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s: %s\n", id, *status, *message)
	return nil
}
