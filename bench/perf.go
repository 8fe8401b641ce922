package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The machine the bench runs on is often shared, so absolute throughput is
// noisy. What a server spends per unit of work is not: CPU time, system
// calls and context switches per block (or per exchange) are properties of
// the server's design, measured by Linux's perf on the server's process for
// exactly the window of one measurement. The bench reports them beside the
// throughput, for Racker and its peer alike, and -profile DIR keeps a
// call-graph profile of each server for the cases that decide a comparison.

// perfCost is what one server process spent during one measurement window.
type perfCost struct {
	CPUms    float64 `json:"cpu_ms"`            // task-clock, all threads
	Syscalls float64 `json:"syscalls"`          // raw_syscalls:sys_enter
	Switches float64 `json:"switches"`          // context switches
	Window   float64 `json:"window_s"`          // seconds measured
	Missing  string  `json:"missing,omitempty"` // why nothing was counted
}

// perfAvailable says whether perf can count this machine's system calls.
var perfAvailable = func() bool {
	out, err := exec.Command("perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true").CombinedOutput()
	return err == nil && !bytes.Contains(out, []byte("not supported")) && !bytes.Contains(out, []byte("<not"))
}()

// perfCounter counts one process's costs until stop.
type perfCounter struct {
	cmd   *exec.Cmd
	out   string
	start time.Time
}

// countCosts starts `perf stat` on pid (every thread of it). With perf
// missing it returns a counter whose stop says so.
func countCosts(pid int, dir string) *perfCounter {
	if !perfAvailable {
		return &perfCounter{}
	}
	f, err := os.CreateTemp(dir, "perfstat-*.csv")
	if err != nil {
		return &perfCounter{}
	}
	f.Close()
	cmd := exec.Command("perf", "stat", "-x,", "-o", f.Name(), "-e", "task-clock,raw_syscalls:sys_enter,context-switches",
		"-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		return &perfCounter{}
	}
	// perf attaches within a few milliseconds; give it that before the
	// measured work starts.
	time.Sleep(50 * time.Millisecond)
	return &perfCounter{cmd: cmd, out: f.Name(), start: time.Now()}
}

// stop ends the count and returns it.
func (p *perfCounter) stop() perfCost {
	if p.cmd == nil {
		return perfCost{Missing: "perf not available"}
	}
	window := time.Since(p.start).Seconds()
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	defer os.Remove(p.out)
	b, err := os.ReadFile(p.out)
	if err != nil {
		return perfCost{Missing: err.Error()}
	}
	c := perfCost{Window: window}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch f[2] {
		case "task-clock":
			c.CPUms = v
		case "raw_syscalls:sys_enter":
			c.Syscalls = v
		case "context-switches":
			c.Switches = v
		}
	}
	return c
}

// profileDir, when set (-profile DIR), receives perf call-graph profiles of
// the servers under test; empty: none are recorded.
var profileDir string

// perfProfile records a call-graph profile of pid until stop, into
// profileDir/name.perf.data, and writes the folded report next to it
// (name.txt: the heaviest call chains) so it can be read without perf.
type perfProfile struct {
	cmd  *exec.Cmd
	data string
}

func recordProfile(pid int, name string) *perfProfile {
	if profileDir == "" {
		return &perfProfile{}
	}
	if err := os.MkdirAll(profileDir, 0o755); err != nil {
		logger.Warn("no profile directory", "err", err)
		return &perfProfile{}
	}
	data := filepath.Join(profileDir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-g", "-F", "999", "-o", data, "-p", strconv.Itoa(pid))
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		logger.Warn("perf record did not start", "err", err)
		return &perfProfile{}
	}
	time.Sleep(100 * time.Millisecond)
	return &perfProfile{cmd: cmd, data: data}
}

func (p *perfProfile) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	txt := strings.TrimSuffix(p.data, ".perf.data") + ".txt"
	out, err := exec.Command("perf", "report", "-i", p.data, "--stdio", "--no-children", "--percent-limit", "1",
		"--sort", "dso,sym").Output()
	if err != nil {
		logger.Warn("perf report failed", "data", p.data, "err", err)
		return
	}
	if err := os.WriteFile(txt, out, 0o644); err != nil {
		logger.Warn("cannot write the profile report", "err", err)
		return
	}
	logger.Info("profile written", "data", p.data, "report", txt)
}

// costPer divides a server's cost by units of work done in the window
// (blocks, exchanges): "µs CPU per block", "system calls per block".
func (c perfCost) per(units float64) (cpuUs, syscalls, switches float64) {
	if units <= 0 || c.Missing != "" {
		return 0, 0, 0
	}
	return c.CPUms * 1000 / units, c.Syscalls / units, c.Switches / units
}

func (c perfCost) String() string {
	if c.Missing != "" {
		return "(" + c.Missing + ")"
	}
	return fmt.Sprintf("%.0f ms CPU, %.0f syscalls, %.0f switches in %.1f s", c.CPUms, c.Syscalls, c.Switches, c.Window)
}
