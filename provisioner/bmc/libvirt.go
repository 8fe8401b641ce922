package bmc

import (
	"context"
	"errors"
	"io"
	"net/url"
)

// openLibvirt is filled in by libvirt_driver.go.
var errLibvirtTODO = errors.New("libvirt driver not built yet")

func openLibvirt(ctx context.Context, u *url.URL, opts Options) (Controller, error) {
	_ = io.EOF
	return nil, errLibvirtTODO
}
