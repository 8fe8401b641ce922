package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// refServerEnv makes the bench binary the HTTP reference server instead:
// RACKER_BENCH_REF_SERVER=ADDR,FILE serves FILE from memory on ADDR.
const refServerEnv = "RACKER_BENCH_REF_SERVER"

// startRefServer runs the reference, a minimal Go server that answers from
// memory (http.ServeContent on a bytes.Reader), as its own process in the
// server namespace, like racker serve: both are measured the same way
// (their own CPU time and peak RSS), and neither shares a process, a
// heap or a scheduler with the clients.
func startRefServer(ns, addr, file, logPath string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("while finding the bench binary to run the reference server: %w", err)
	}
	return startServer("reference server", ns, logPath, "env", refServerEnv+"="+addr+","+file, self)
}

// refServerMain is the reference server process (see refServerEnv).
func refServerMain(spec string) error {
	addr, file, ok := strings.Cut(spec, ",")
	if !ok {
		return fmt.Errorf("%s=%q: want ADDR,FILE", refServerEnv, spec)
	}
	image, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.Write([]byte("ok\n"))
			return
		}
		http.ServeContent(w, r, imageName, time.Time{}, bytes.NewReader(image))
	}))
}

// cpuSeconds is a process's CPU time so far (user + system, all threads).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// resetPeakRSSOf restarts another process's VmHWM, so the next peakRSS is
// this case's alone.
func resetPeakRSSOf(pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		logger.Warn("cannot reset a server's peak RSS; its figure includes earlier cases", "pid", pid, "err", err)
	}
}
