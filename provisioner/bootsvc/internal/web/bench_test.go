package web

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
)

// BenchmarkRecordParallel measures durable events per second with many
// concurrent recorders (group commit: one fsync per batch); the number of
// recording goroutines is parallelism × GOMAXPROCS. Run with
// go test -bench Record -run '^$' ./provisioner/bootsvc/internal/web
func BenchmarkRecordParallel(b *testing.B) {
	for _, writers := range []int{1, 4, 32} {
		b.Run(fmt.Sprintf("parallelism%d", writers), func(b *testing.B) {
			st, err := openStore(b.TempDir(), testPlan(), nil, nil, discard(), time.Now, DefaultWindow)
			if err != nil {
				b.Fatal(err)
			}
			defer st.close()
			b.SetParallelism(writers)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					st.Record(api.Event{MAC: bmcA, Kind: api.KindDHCP, Message: "ip=172.24.213.10 arch=0 class=PXEClient"})
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkAssetDownload measures /assets throughput over loopback (the
// file is streamed with sendfile, never read into memory).
func BenchmarkAssetDownload(b *testing.B) {
	dir := b.TempDir()
	const size = 64 << 20
	f, _ := os.Create(filepath.Join(dir, images.Image))
	f.Truncate(size)
	f.Close()
	s, err := New(Config{Plan: testPlan(), StateDir: filepath.Join(dir, "state"),
		Release: &images.Release{OS: "testos", Version: "current", Dir: dir, Files: []string{images.Image}}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := http.Get(srv.URL + "/assets/testos/current/" + images.Image)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != size {
			b.Fatalf("got %d bytes", n)
		}
	}
}
