package bootsvc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/racker/racker/provisioner/bootsvc/internal/dhcp"
)

// Seen is a MAC that asked for DHCP, as Discover reports it: its vendor
// and user class, client architecture and hostname, and Netboot says
// whether it looks like netboot firmware (a node's primary NIC).
type Seen = dhcp.Seen

// Discover listens for DHCP requests on ifname (UDP port, 67 in
// production) without ever answering, and calls seen each time a client
// sends one, with everything learnt so far about its MAC. It logs once the
// socket is open, and returns when ctx ends (nil) or the socket fails. It
// is what `racker factory discover` runs to draft a new rack's nodes.csv;
// it can run beside the boot services.
func Discover(ctx context.Context, ifname string, port int, log *slog.Logger, seen func(Seen)) error {
	conn, err := dhcp.Listen(ctx, ifname, port)
	if err != nil {
		return fmt.Errorf("listening for DHCP requests: %w", err)
	}
	defer conn.Close()
	if log != nil {
		log.Info("listening for DHCP requests without answering", "interface", ifname)
	}
	return dhcp.Watch(ctx, conn, seen)
}
