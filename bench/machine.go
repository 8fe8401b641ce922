package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machineInfo says where and when the figures were measured: a figure
// without its machine and the filesystem its state lived on says little.
type machineInfo struct {
	Date     string `json:"date"` // RFC 3339, UTC
	Hostname string `json:"hostname"`
	CPUModel string `json:"cpu_model"`
	CPUs     int    `json:"cpus"`
	MemGiB   int    `json:"memory_gib"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	// StateFS is the filesystem type of the folder the servers kept
	// their state in (leases, journals), as /proc/self/mountinfo names it.
	StateFS  string            `json:"state_fs"`
	WorkDir  string            `json:"work_dir"`
	Commit   string            `json:"commit,omitempty"`
	Go       string            `json:"go"`
	Peers    map[string]string `json:"peers"`
	Perf     bool              `json:"perf"` // server costs counted with perf
	Duration string            `json:"duration,omitempty"`
	Note     string            `json:"note,omitempty"` // -note: what the run's reader should know
}

func describeMachine(work string) machineInfo {
	m := machineInfo{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Go: runtime.Version(), WorkDir: work,
		Peers: map[string]string{}, Perf: perfAvailable}
	m.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		m.MemGiB = (kb + 1<<19) >> 20
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.StateFS, _ = fsType(work)
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	for name, argv := range map[string][]string{
		"dnsmasq":  {"dnsmasq", "--version"},
		"ipmitool": {"ipmitool", "-V"},
		"ipmi_sim": {"ipmi_sim", "--version"},
		"busybox":  {"busybox"},
	} {
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]); line != "" {
			m.Peers[name] = line
		}
	}
	return m
}

func (m machineInfo) summary() string {
	return fmt.Sprintf("%s, %d CPUs (%s), %d GiB, Linux %s, %s; state folder on %s; %s",
		m.Hostname, m.CPUs, m.CPUModel, m.MemGiB, m.Kernel, m.OS, m.StateFS, m.Date)
}

// fsType names the filesystem that holds path, from /proc/self/mountinfo
// (the mount with the longest matching mount point).
func fsType(path string) (string, error) {
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	best, typ := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional…] - type source super
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		mp := strings.ReplaceAll(fields[4], `\040`, " ")
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, typ = mp, fields[sep+1]
		}
	}
	if typ == "" {
		return "", fmt.Errorf("no mount holds %s", path)
	}
	return typ, nil
}

// memoryFS are filesystems where fsync costs nothing: a server's durable
// state measured there is not what a management node's disk gives.
var memoryFS = map[string]bool{"tmpfs": true, "ramfs": true}

// makeWorkDir makes the bench's work folder under parent, on a filesystem
// a real state folder would use (Racker keeps /opt/racker-state on the
// management node's disk). A memory filesystem is refused unless allowed.
func makeWorkDir(parent string, allowMemory bool) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("while making the bench's work folder: %w", err)
	}
	typ, err := fsType(parent)
	if err != nil {
		return "", fmt.Errorf("while finding the filesystem of %s: %w", parent, err)
	}
	if memoryFS[typ] && !allowMemory {
		return "", errors.New(parent + " is on " + typ + ", where fsync costs nothing and durable state is measured wrong; " +
			"use -work with a folder on a disk filesystem (ext4, xfs), or -allow-tmpfs to measure there anyway")
	}
	return os.MkdirTemp(parent, "racker-bench-")
}

// fsName names the filesystem of path for a table ("ext4"), or "?".
func fsName(path string) string {
	if t, err := fsType(path); err == nil {
		return t
	}
	return "?"
}
