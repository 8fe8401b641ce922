package web

import (
	"io"
	"net/http"
	"time"
)

// An OS image is hundreds of MB, and how fast a node takes it depends on
// the node: Flatcar's flatcar-install pipes the download through bunzip2
// and dd, so a slow disk or CPU (a VM under TCG: a few MB/s) slows the
// download down. A deadline for the whole answer would cut such a node off
// however steadily it reads; none at all would let a host that stops
// reading hold a connection and its file forever. So an asset's write
// deadline is moved before each step of assetStep bytes: a node that keeps
// reading gets the whole file, one that stalls for assetStall is cut off.

// assetStep is how much of an asset is sent per write deadline (variables
// so tests can shrink them).
var assetStep int64 = 8 << 20

// assetStall is how long an asset may make no progress of assetStep bytes.
var assetStall = writeTimeout

// progressDeadlines wraps w so that every write, and every assetStep bytes
// of a ReadFrom, gets a fresh write deadline of assetStall.
func progressDeadlines(w http.ResponseWriter) http.ResponseWriter {
	return &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
}

type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (p *progressWriter) extend() { p.rc.SetWriteDeadline(time.Now().Add(assetStall)) }

func (p *progressWriter) Write(b []byte) (int, error) {
	p.extend()
	return p.ResponseWriter.Write(b)
}

// ReadFrom sends r in steps through the underlying ReadFrom, so each step
// still goes by sendfile(2) when r is (a limited) *os.File, as
// http.ServeContent hands it (images.go).
func (p *progressWriter) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := p.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{p}, r)
	}
	lr, ok := r.(*io.LimitedReader)
	if !ok {
		lr = &io.LimitedReader{R: r, N: 1<<63 - 1}
	}
	var total int64
	for lr.N > 0 {
		p.extend()
		n, err := rf.ReadFrom(&io.LimitedReader{R: lr.R, N: min(lr.N, assetStep)})
		lr.N -= n
		total += n
		if err != nil || n == 0 { // n == 0: the source is at its end
			return total, err
		}
	}
	return total, nil
}

func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// writerOnly hides ReadFrom, so io.Copy writes through Write.
type writerOnly struct{ io.Writer }
