package tftp

import (
	"sync"
	"testing"
)

// BenchmarkTenClientsBlksize512 serves a 1 MiB file to ten concurrent
// pin/tftp clients over loopback, one block per round trip: the case where
// dnsmasq was ahead of pin/tftp's sender in make bench. Run with
// -cpuprofile to see where the server's time goes (the clients share the
// process; make bench's perf counts the server alone).
func BenchmarkTenClientsBlksize512(b *testing.B) {
	root := b.TempDir()
	want := randomFile(b, root, "ipxe.efi", 1<<20)
	addr := serve(b, root, nil)
	b.SetBytes(int64(10 * len(want)))
	for b.Loop() {
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, _, err := fetch(b, addr, "ipxe.efi", 512)
				if err != nil || len(got) != len(want) {
					b.Errorf("fetch: %d bytes, %v", len(got), err)
				}
			}()
		}
		wg.Wait()
	}
}
