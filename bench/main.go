// Command bench measures Racker against the peers users would run instead
// (dnsmasq, ipmitool, sushy, a bare Go server), side by side in one run, inside
// network namespaces it makes and removes. It prints one table (figure,
// Racker, peer, ratio) and writes bench-results.json. Root only.
//
//	go run ./bench            # full run
//	go run ./bench -short     # smoke run for CI, under 2 minutes
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

var logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

// testosDir holds the test OS release folders racker serve offers.
var testosDir string

func main() {
	if spec := os.Getenv(refServerEnv); spec != "" {
		err := refServerMain(spec)
		fmt.Fprintln(os.Stderr, "bench reference server:", err)
		os.Exit(1)
	}
	short := flag.Bool("short", false, "smoke mode: fewer levels, shorter runs")
	out := flag.String("json", "bench-results.json", "where to write the results as JSON")
	racker := flag.String("racker", "bin/racker", "the racker binary under test")
	only := flag.String("only", "", "run only this section (dhcp, tftp, http, ipmi, redfish, scale)")
	flag.StringVar(&testosDir, "testos", "bin/testos", "test OS release folders (make testos)")
	flag.Parse()
	if err := run(*short, *out, *racker, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(short bool, out, racker, only string) error {
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
	work, err := os.MkdirTemp("", "racker-bench-")
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
	r := &results{Mode: mode}
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
	r.print(os.Stdout)
	return r.writeJSON(out)
}
