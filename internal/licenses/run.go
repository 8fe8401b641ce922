package licenses

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrStale is returned by Run with check set when the file on disk is not
// what the modules and the manifest produce now.
var ErrStale = errors.New("stale")

// Run is the licenses command: generate the report for o, fail on every
// problem (listed in the error), then write it to out (relative to o.Dir),
// or with check compare it with out and fail with ErrStale when they differ.
func Run(ctx context.Context, o Options, out string, check bool, stdout io.Writer) error {
	rep, err := Generate(ctx, o)
	if err != nil {
		return err
	}
	if probs := rep.Problems(); len(probs) > 0 {
		return fmt.Errorf("%d dependencies without a known, accepted licence (%s left as it was):\n  %s", len(probs), out, strings.Join(probs, "\n  "))
	}
	doc := rep.Markdown()
	path := filepath.Join(o.Dir, out)
	if check {
		have, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("checking %s: %w (make licenses writes it)", out, err)
		}
		if !bytes.Equal(have, doc) {
			return fmt.Errorf("%s is %w: go.mod, a dependency's licence or %s changed since it was written; run make licenses and commit it", out, ErrStale, o.Manifest)
		}
		fmt.Fprintf(stdout, "%s: %d modules and %d payload files, every licence known and accepted, file up to date\n", out, len(rep.Entries), len(rep.Assets))
		return nil
	}
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d modules and %d payload files\n", out, len(rep.Entries), len(rep.Assets))
	return nil
}
