package orchestrator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// reactiveBMC is a BMC whose node reacts at once: powered on with PXE set,
// it netboots and installs (events into the fake boot services); given the
// disk boot device after that, it boots. No goroutine per node, so the
// benchmark measures the orchestrator, not the simulation.
type reactiveBMC struct {
	mac  string
	boot *fakeBoot
	pxe  *map[string]bool
}

func (b reactiveBMC) Diag(ctx context.Context) (string, error)       { return "off", nil }
func (b reactiveBMC) PowerState(ctx context.Context) (string, error) { return "off", nil }
func (b reactiveBMC) Close() error                                   { return nil }
func (b reactiveBMC) SetBoot(ctx context.Context, d BootDevice, p, e bool) (bool, error) {
	if d == BootDisk {
		b.boot.Emit(api.Event{MAC: b.mac, Kind: api.KindBooted})
	}
	return true, nil
}
func (b reactiveBMC) Power(ctx context.Context, a string) error {
	if a == "on" {
		for _, k := range []api.EventKind{api.KindDHCP, api.KindInstalling, api.KindInstalled} {
			b.boot.Emit(api.Event{MAC: b.mac, Kind: k})
		}
	}
	return nil
}

// BenchmarkRackOfNodes provisions whole racks against instant nodes and
// reports the orchestrator's own cost: wall time per node, the journal
// lines it wrote (one fdatasync each) and the size of the final snapshot.
func BenchmarkRackOfNodes(b *testing.B) {
	for _, size := range []int{100, 1000} {
		for _, parallel := range []int{20, 1000} {
			b.Run(fmt.Sprintf("nodes=%d/parallel=%d", size, parallel), func(b *testing.B) {
				for range b.N {
					dir := b.TempDir()
					boot := newFakeBoot(newFakeClock())
					var specs []NodeSpec
					for i := range size {
						specs = append(specs, NodeSpec{PrimaryMAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256), Hostname: fmt.Sprintf("n%d", i)})
					}
					start := time.Now()
					res, err := Run(context.Background(), Config{StateDir: dir, Nodes: specs, Boot: boot, Parallel: parallel,
						BMCInterval: -1, BMCConcurrency: 50, Tick: 10 * time.Millisecond,
						OpenBMC: func(ctx context.Context, n NodeSpec) (BMC, error) {
							return reactiveBMC{mac: n.PrimaryMAC, boot: boot}, nil
						}})
					if err != nil || len(res.Failed()) > 0 {
						b.Fatalf("run: %v, failed %v", err, res.Failed())
					}
					el := time.Since(start)
					fi, _ := os.Stat(filepath.Join(dir, StateFile))
					b.ReportMetric(float64(el.Microseconds())/float64(size)/1000, "ms/node")
					b.ReportMetric(float64(fi.Size())/1024, "KiB-state")
					b.ReportMetric(float64(res.Stats.Commits), "commits")
					b.ReportMetric(float64(res.Stats.CommitTime.Microseconds())/float64(max(res.Stats.Commits, 1)), "µs/commit")
				}
			})
		}
	}
}
