package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/racker/racker/netenv"
)

// benchNet is the benchmarks' network: a server namespace and a client
// namespace on one bridge. All traffic stays inside it.
type benchNet struct {
	env             *netenv.Env
	srvNS, cliNS    string
	srvIf, cliIf    string
	srvMAC          net.HardwareAddr
	srvAddr, subnet netip.Prefix
}

func newBenchNet(work string) (*benchNet, error) {
	tag := fmt.Sprintf("rb%d", os.Getpid()%100000)
	n := &benchNet{
		srvNS: tag + "-srv", cliNS: tag + "-cli", srvIf: "srv0", cliIf: "cli0",
		srvMAC:  net.HardwareAddr{0x02, 0xbb, 0, 0, 0, 0x03},
		srvAddr: netip.MustParsePrefix("10.77.0.1/20"),
		subnet:  netip.MustParsePrefix("10.77.0.0/20"),
	}
	cliMAC := net.HardwareAddr{0x02, 0xbb, 0, 0, 0, 0x04}
	top := netenv.Topology{
		Bridges:    []netenv.Bridge{{Name: tag + "-br"}},
		Namespaces: []string{n.srvNS, n.cliNS},
		Veths: []netenv.Veth{
			{Host: tag + "-s", Bridge: tag + "-br", Peer: n.srvIf, Namespace: n.srvNS, MAC: n.srvMAC, Addresses: []netip.Prefix{n.srvAddr}},
			{Host: tag + "-c", Bridge: tag + "-br", Peer: n.cliIf, Namespace: n.cliNS, MAC: cliMAC, Addresses: []netip.Prefix{netip.MustParsePrefix("10.77.15.250/20")}},
		},
	}
	env, err := netenv.Create(top, filepath.Join(work, "netenv.json"), logger)
	if err != nil {
		return nil, err
	}
	n.env = env
	return n, nil
}

func (n *benchNet) Close() {
	if err := n.env.Teardown(); err != nil {
		logger.Error("bench network teardown", "err", err)
	}
}

// rackFiles writes an OEM folder for a rack of nodes machines (each with a
// BMC: 2 reservations per node) whose management node is the server
// namespace's NIC, and returns every reserved MAC and the folder.
func rackFiles(dir string, nodes int, srvMAC net.HardwareAddr) ([]net.HardwareAddr, error) {
	var b strings.Builder
	b.WriteString("Primary MAC address, BMC MAC address, Secondary MAC address, Node Type, Comments\n")
	fmt.Fprintf(&b, "02:bb:00:00:00:01,02:bb:00:00:00:02,%s,mgmt,bench server\n", srvMAC)
	var macs []net.HardwareAddr
	for i := range nodes {
		p := net.HardwareAddr{0x02, 0xb1, 0, 0, byte(i >> 8), byte(i)}
		m := net.HardwareAddr{0x02, 0xb2, 0, 0, byte(i >> 8), byte(i)}
		fmt.Fprintf(&b, "%s,%s,,worker\n", p, m)
		macs = append(macs, p, m)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, content := range map[string]string{"nodes.csv": b.String(), "ipmi_user": "bench\n", "ipmi_password": "bench-password\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	return macs, nil
}

// reservations reads Racker's plan (MAC → address), so dnsmasq gets exactly
// the same static leases.
func reservations(racker, oem, state string, subnet netip.Prefix) (map[string]string, error) {
	out, err := exec.Command(racker, "plan", "-o", "json", "--oem-dir", oem, "--state-dir", state,
		"--mgmt-mac", "02:bb:00:00:00:01", "--subnet", subnet.String()).Output()
	if err != nil {
		return nil, fmt.Errorf("while planning the bench rack: %w", err)
	}
	var p struct {
		Nodes []struct {
			PrimaryMAC string `json:"primary_mac"`
			BMCMAC     string `json:"bmc_mac"`
			IP         string `json:"ip"`
			BMCIP      string `json:"bmc_ip"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return nil, err
	}
	res := map[string]string{}
	for _, n := range p.Nodes {
		res[n.PrimaryMAC] = n.IP
		res[n.BMCMAC] = n.BMCIP
	}
	return res, nil
}

// server is a DHCP server under test, running in the server namespace.
type server struct {
	name string
	cmd  *exec.Cmd
	log  string
}

func startServer(name, ns, logPath string, argv ...string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := netenv.Command(context.Background(), ns, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("while starting %s: %w", name, err)
	}
	logf.Close()
	return &server{name: name, cmd: cmd, log: logPath}, nil
}

// pid is the server process's own PID (ip netns exec execs it in place).
func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) stop() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// dnsmasqArgs configures dnsmasq as a rack's DHCP server: the same static
// reservations, a durable lease file, no DNS, no dynamic range.
func dnsmasqArgs(dir string, n *benchNet, res map[string]string) ([]string, error) {
	var hosts strings.Builder
	for mac, ip := range res {
		fmt.Fprintf(&hosts, "%s,%s\n", mac, ip)
	}
	hostsFile := filepath.Join(dir, "dnsmasq.hosts")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o644); err != nil {
		return nil, err
	}
	return []string{"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=" + n.srvIf, "--bind-interfaces", "--dhcp-authoritative", "--quiet-dhcp", "--log-facility=-",
		fmt.Sprintf("--dhcp-range=%s,static,255.255.240.0,1h", n.subnet.Addr()),
		"--dhcp-hostsfile=" + hostsFile, "--dhcp-leasefile=" + filepath.Join(dir, "dnsmasq.leases"),
		fmt.Sprintf("--dhcp-lease-max=%d", 4*len(res)), "--pid-file=" + filepath.Join(dir, "dnsmasq.pid"),
		"--user=root"}, nil
}

// benchDHCP measures full DORA exchanges per second, latency and drops for
// Racker's DHCP and dnsmasq with the same reservations, same network, same run.
func benchDHCP(r *results, n *benchNet, work, racker string, short bool) error {
	nodes, dur, levels := 1000, 10*time.Second, []int{1, 16, 64, 256}
	if short {
		dur, levels = 2*time.Second, []int{1, 64}
	}
	oem, state := filepath.Join(work, "oem"), filepath.Join(work, "state")
	macs, err := rackFiles(oem, nodes, n.srvMAC)
	if err != nil {
		return err
	}
	res, err := reservations(racker, oem, state, n.subnet)
	if err != nil {
		return err
	}
	var load *dhcpLoad
	if err := netenv.Do(n.cliNS, func() (err error) { load, err = newDHCPLoad(n.cliIf); return err }); err != nil {
		return err
	}
	defer load.Close()

	measure := func(s *server) (map[int]loadResult, error) {
		defer s.stop()
		// Wait until the server answers, at most 20 s.
		ready := false
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			if ok, _ := load.exchange(macs[0], 500*time.Millisecond, 500*time.Millisecond); ok {
				ready = true
				break
			}
		}
		if !ready {
			b, _ := os.ReadFile(s.log)
			return nil, fmt.Errorf("%s never answered DHCP; its log:\n%s", s.name, b)
		}
		out := map[int]loadResult{}
		for _, c := range levels {
			cnt := countCosts(s.pid(), work)
			x := load.run(macs, c, dur)
			x.Cost = cnt.stop()
			out[c] = x
			cpu, sys, _ := x.Cost.per(float64(x.Exchanges))
			logger.Info("dhcp", "server", s.name, "c", c, "exchanges/s", int(x.Rate()), "p50", x.P50, "p99", x.P99,
				"lost", x.Lost, "timeouts", x.Timeouts, "cpu_us_per_exchange", int(cpu), "syscalls_per_exchange", fmt.Sprintf("%.1f", sys))
		}
		return out, nil
	}

	rs, err := startServer("racker", n.srvNS, filepath.Join(work, "racker-serve.log"), rackerServeArgs(racker, oem, state, testosDir, n)...)
	if err != nil {
		return err
	}
	rk, err := measure(rs)
	if err != nil {
		return err
	}
	args, err := dnsmasqArgs(work, n, res)
	if err != nil {
		return err
	}
	ds, err := startServer("dnsmasq", n.srvNS, filepath.Join(work, "dnsmasq.log"), args...)
	if err != nil {
		return err
	}
	dm, err := measure(ds)
	if err != nil {
		return err
	}
	sec := fmt.Sprintf("DHCP DORA, %d reservations, leases durable on %s, broadcast clients that resend after 1 s", len(res), fsName(work))
	top := levels[len(levels)-1]
	for _, c := range levels {
		a, b := rk[c], dm[c]
		r.add(row{Section: sec, Figure: fmt.Sprintf("exchanges/s, %d clients", c), Unit: "/s", Racker: a.Rate(), Peer: b.Rate(), PeerIs: "dnsmasq", HigherIsBetter: true,
			Headline: c == top})
		r.add(row{Section: sec, Figure: fmt.Sprintf("p50 latency, %d clients", c), Unit: "ms", Racker: ms(a.P50), Peer: ms(b.P50), PeerIs: "dnsmasq"})
		r.add(row{Section: sec, Figure: fmt.Sprintf("p99 latency, %d clients", c), Unit: "ms", Racker: ms(a.P99), Peer: ms(b.P99), PeerIs: "dnsmasq",
			Headline: c == 64, Note: "resends included"})
		// Lost and late are counts where 0 is the goal: no ratio.
		r.add(row{Section: sec, Figure: fmt.Sprintf("exchanges lost (no ACK within a PXE ROM's 4 s), %d clients", c), Unit: "",
			Racker: float64(a.Lost), Peer: float64(b.Lost), PeerIs: "dnsmasq", Headline: c == top, Note: fmt.Sprintf("of %d and %d", a.Exchanges+a.Lost, b.Exchanges+b.Lost)})
		r.add(row{Section: sec, Figure: fmt.Sprintf("1 s timeouts (message resent), %d clients", c), Unit: "",
			Racker: float64(a.Timeouts), Peer: float64(b.Timeouts), PeerIs: "dnsmasq"})
		if a.Cost.Missing == "" {
			ca, sa, _ := a.Cost.per(float64(a.Exchanges))
			cb, sb, _ := b.Cost.per(float64(b.Exchanges))
			r.add(row{Section: sec, Figure: fmt.Sprintf("server CPU per exchange, %d clients", c), Unit: "µs", Racker: ca, Peer: cb, PeerIs: "dnsmasq",
				Note: "perf, same window"})
			r.add(row{Section: sec, Figure: fmt.Sprintf("server system calls per exchange, %d clients", c), Unit: "", Racker: sa, Peer: sb, PeerIs: "dnsmasq", Decimals: 1})
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
