// Command bench measures Racker against the peers users would run instead
// (dnsmasq, ipmitool, OpenIPMI, sushy, a bare Go server), side by side in
// one run, inside network namespaces it makes and removes. It prints one
// table (figure, Racker, peer or limit, ratio) and writes it as JSON with
// the machine it ran on, so README.md's figures are generated from a
// committed results file (make bench-readme), never typed. Root only.
//
//	go run ./bench -out bench/results/full.json   # full run (make bench)
//	go run ./bench -short                          # smoke run for CI, about 2 minutes
//	go run ./bench -readme bench/results/full.json # README.md and docs/benchmarks.md from a results file
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

var logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

// benchNote is -note: what the tables should say about this run.
var benchNote string

// benchRuns overrides how often the median rows are measured (0: the default).
var benchRuns int

// testosDir holds the test OS release folders racker serve offers.
var testosDir string

func main() {
	if spec := os.Getenv(refServerEnv); spec != "" {
		err := refServerMain(spec)
		fmt.Fprintln(os.Stderr, "bench reference server:", err)
		os.Exit(1)
	}
	short := flag.Bool("short", false, "smoke mode: fewer levels, shorter runs")
	out := flag.String("out", "bench-results.json", "where to write the results as JSON")
	flag.StringVar(out, "json", "bench-results.json", "same as -out")
	racker := flag.String("racker", "bin/racker", "the racker binary under test")
	only := flag.String("only", "", "run only this section (dhcp, tftp, http, ipmi, redfish, scale)")
	work := flag.String("work", "/var/tmp", "folder for the servers' state folders (on a disk filesystem, as /opt/racker-state is)")
	allowTmpfs := flag.Bool("allow-tmpfs", false, "accept a -work folder on tmpfs (figures for durable state are then too kind)")
	readme := flag.String("readme", "", "write README.md's measured table and docs/benchmarks.md from this results file, then exit")
	flag.StringVar(&benchNote, "note", "", "a note kept with the results and shown with the tables (e.g. that the machine was shared)")
	flag.IntVar(&benchRuns, "runs", 0, "runs per server for the median rows (default 3, 1 with -short)")
	flag.StringVar(&profileDir, "profile", "", "keep perf call-graph profiles of the servers under test in this folder")
	flag.StringVar(&testosDir, "testos", "bin/testos", "test OS release folders (make testos)")
	flag.Var(&scaleFlags, "scale", "rack-scale bootstrap settings, KEY=VALUE,… (bench/scale_config.go: nodes, ratio, image-mb, post, live, install, boot, best-parallel, best-interval, best-concurrency, bmc, runs)")
	flag.Parse()
	var err error
	if *readme != "" {
		err = writeReadme(*readme, "README.md", "docs/benchmarks.md")
	} else {
		err = run(*short, *out, *racker, *only, *work, *allowTmpfs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(short bool, out, racker, only, workParent string, allowTmpfs bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it builds network namespaces")
	}
	racker, err := filepath.Abs(racker)
	if err != nil {
		return err
	}
	if _, err := os.Stat(racker); err != nil {
		return fmt.Errorf("%s: %w (make build makes it)", racker, err)
	}
	if testosDir, err = filepath.Abs(testosDir); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(testosDir, "current")); err != nil {
		return fmt.Errorf("%s: %w (make testos makes it)", testosDir, err)
	}
	if profileDir != "" {
		if profileDir, err = filepath.Abs(profileDir); err != nil {
			return err
		}
	}
	work, err := makeWorkDir(workParent, allowTmpfs)
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	n, err := newBenchNet(work)
	if err != nil {
		return err
	}
	defer n.Close()
	// An interrupt still tears the network down.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		n.Close()
		os.RemoveAll(work)
		os.Exit(130)
	}()

	mode := "full"
	if short {
		mode = "short"
	}
	began := time.Now()
	r := &results{Mode: mode, Machine: describeMachine(work)}
	r.Machine.Note = benchNote
	logger.Info("bench", "machine", r.Machine.summary(), "work", work, "perf", perfAvailable)
	sections := []struct {
		name string
		fn   func() error
	}{
		{"dhcp", func() error { return benchDHCP(r, n, filepath.Join(work, "dhcp"), racker, short) }},
		{"tftp", func() error { return benchTFTP(r, n, filepath.Join(work, "tftp"), racker, short) }},
		{"http", func() error { return benchHTTP(r, n, filepath.Join(work, "http"), racker, short) }},
		{"ipmi", func() error { return benchIPMI(r, filepath.Join(work, "ipmi"), short) }},
		{"redfish", func() error { return benchRedfish(r, filepath.Join(work, "redfish"), short) }},
		{"scale", func() error { return benchScale(r, n, filepath.Join(work, "scale"), racker, short) }},
	}
	for _, s := range sections {
		if only != "" && only != s.name {
			continue
		}
		if err := os.MkdirAll(filepath.Join(work, s.name), 0o755); err != nil {
			return err
		}
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	r.Machine.Duration = time.Since(began).Round(time.Second).String()
	r.print(os.Stdout)
	return r.writeJSON(out)
}
