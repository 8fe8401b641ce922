package web

import (
	"fmt"
	"testing"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// BenchmarkRecordParallel measures durable events per second with many
// concurrent recorders (group commit: one fsync per batch); the number of
// recording goroutines is parallelism × GOMAXPROCS. Run with
// go test -bench Record -run '^$' ./provisioner/bootsvc/web
func BenchmarkRecordParallel(b *testing.B) {
	for _, writers := range []int{1, 4, 32} {
		b.Run(fmt.Sprintf("parallelism%d", writers), func(b *testing.B) {
			st, err := openStore(b.TempDir(), testPlan(), nil, nil, discard())
			if err != nil {
				b.Fatal(err)
			}
			defer st.close()
			b.SetParallelism(writers)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					st.Record(api.Event{MAC: macA, Kind: api.KindDHCP, Message: "ip=172.24.213.10 arch=0 class=PXEClient"})
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
