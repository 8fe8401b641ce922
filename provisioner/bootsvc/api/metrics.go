package api

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the boot services' Prometheus collectors, shared by the DHCP,
// TFTP and HTTP servers of one process and exposed on /metrics. Every method
// is safe on a nil *Metrics, so a server under test may run without them.
type Metrics struct {
	// Registry holds every collector below (plus Go and process collectors);
	// the web server serves it on /metrics.
	Registry *prometheus.Registry

	HTTPRequests  *prometheus.CounterVec // handler, code
	DHCPLeases    *prometheus.CounterVec // kind: node, bmc, pool
	DHCPDropped   *prometheus.CounterVec // reason: malformed, unknown, …
	TFTPTransfers *prometheus.CounterVec // file, result: ok, error
	TFTPBytes     prometheus.Counter
	AssetBytes    prometheus.Counter
	// HTTPCapped counts connections closed at accept because their
	// source already held its cap of open connections.
	HTTPCapped prometheus.Counter
	Events     *prometheus.CounterVec // kind
	// NodePhase is 1 for each node's phase as the boot services see it
	// (mac, phase), kube-state-metrics style: sum by (phase) counts the
	// nodes per phase, and a node stuck in one shows by its MAC.
	NodePhase *prometheus.GaugeVec
	// InstallDuration observes each install, from the live system's
	// installing callback to its installed callback.
	InstallDuration prometheus.Histogram

	mu           sync.Mutex
	phases       map[string]Phase     // MAC → phase shown
	installStart map[string]time.Time // MAC → its installing callback
}

// NewMetrics makes and registers the collectors in a fresh registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racker_http_requests_total", Help: "HTTP requests answered by the boot services, by handler and status code.",
		}, []string{"handler", "code"}),
		DHCPLeases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racker_dhcp_leases_total", Help: "DHCP leases given (ACKs), by kind of client.",
		}, []string{"kind"}),
		DHCPDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racker_dhcp_dropped_total", Help: "DHCP packets dropped without an answer, by reason.",
		}, []string{"reason"}),
		TFTPTransfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racker_tftp_transfers_total", Help: "TFTP read transfers, by file and result.",
		}, []string{"file", "result"}),
		TFTPBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racker_tftp_bytes_total", Help: "Bytes sent over TFTP.",
		}),
		AssetBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racker_http_asset_bytes_total", Help: "Bytes of /assets files served over HTTP.",
		}),
		HTTPCapped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "racker_http_connections_capped_total", Help: "HTTP connections closed at accept: their source already held its cap of open connections.",
		}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "racker_events_total", Help: "Events recorded in the journal, by kind.",
		}, []string{"kind"}),
		NodePhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "racker_node_phase", Help: "1 for each node's current phase as the boot services observe it (dhcp, netbooting, installing, installed, booted, failed).",
		}, []string{"mac", "phase"}),
		InstallDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "racker_install_duration_seconds", Help: "Duration of installs, from the installing callback to the installed callback.",
			Buckets: []float64{30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600},
		}),
		phases:       map[string]Phase{},
		installStart: map[string]time.Time{},
	}
	reg.MustRegister(m.HTTPRequests, m.DHCPLeases, m.DHCPDropped, m.TFTPTransfers, m.TFTPBytes, m.AssetBytes, m.HTTPCapped, m.Events,
		m.NodePhase, m.InstallDuration,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Capped counts an HTTP connection closed for its source's cap.
func (m *Metrics) Capped() {
	if m != nil {
		m.HTTPCapped.Inc()
	}
}

// Lease counts a DHCP lease given to a client of this kind (node, bmc, pool).
func (m *Metrics) Lease(kind string) {
	if m != nil {
		m.DHCPLeases.WithLabelValues(kind).Inc()
	}
}

// Dropped counts a DHCP packet dropped for reason.
func (m *Metrics) Dropped(reason string) {
	if m != nil {
		m.DHCPDropped.WithLabelValues(reason).Inc()
	}
}

// Transfer counts one finished TFTP transfer of file and the bytes sent.
func (m *Metrics) Transfer(file string, bytes int64, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.TFTPTransfers.WithLabelValues(file, result).Inc()
	if bytes > 0 {
		m.TFTPBytes.Add(float64(bytes))
	}
}

// Event counts one recorded event.
func (m *Metrics) Event(kind EventKind) {
	if m != nil {
		m.Events.WithLabelValues(string(kind)).Inc()
	}
}

// NodeEvent follows a node's phase (phase "" keeps it) and times its
// installs. Events replayed from the journal at start (live false) set
// the phase but are not observed as installs again.
func (m *Metrics) NodeEvent(mac string, phase Phase, kind EventKind, at time.Time, live bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.phases[mac]; phase != "" && (!ok || old != phase) {
		if ok {
			m.NodePhase.DeleteLabelValues(mac, string(old))
		}
		m.phases[mac] = phase
		m.NodePhase.WithLabelValues(mac, string(phase)).Set(1)
	}
	switch kind {
	case KindInstalling:
		m.installStart[mac] = at
	case KindInstalled:
		if start, ok := m.installStart[mac]; ok && live && at.After(start) {
			m.InstallDuration.Observe(at.Sub(start).Seconds())
		}
		delete(m.installStart, mac)
	case KindFailed:
		delete(m.installStart, mac)
	}
}

// Request counts one HTTP answer.
func (m *Metrics) Request(handler string, code int) {
	if m != nil {
		m.HTTPRequests.WithLabelValues(handler, itoa(code)).Inc()
	}
}

// Asset counts bytes of an /assets file sent.
func (m *Metrics) Asset(bytes int64) {
	if m != nil && bytes > 0 {
		m.AssetBytes.Add(float64(bytes))
	}
}

func itoa(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 206:
		return "206"
	case 400:
		return "400"
	case 403:
		return "403"
	case 404:
		return "404"
	}
	b := []byte{byte('0' + code/100%10), byte('0' + code/10%10), byte('0' + code%10)}
	return string(b)
}
