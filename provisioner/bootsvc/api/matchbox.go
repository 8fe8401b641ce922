package api

// The embedded matchbox (poseidon/matchbox v0.11.0) that lokoctl's Terraform
// writes profiles and groups into: where it lives, on the wire and on disk.
// Lokomotive's baremetal platform is configured with these
// (matchbox_endpoint, matchbox_http_endpoint, matchbox_*_path).
const (
	// MatchboxPath is where matchbox's read-only HTTP endpoints are
	// mounted on the boot services' HTTP server (boot.ipxe, ipxe,
	// ignition, generic, metadata): matchbox_http_endpoint is
	// BASE-URL + MatchboxPath.
	MatchboxPath = "/matchbox"
	// MatchboxRPCPort is the port of matchbox's gRPC API (mutual TLS) on
	// the management node's address, upstream Racker's port.
	MatchboxRPCPort = 8081
	// MatchboxDir, in the state folder, holds the CA and the server's
	// certificate and key (mode 0700) and matchbox's data (data/).
	MatchboxDir = "matchbox"
	// MatchboxClientDir, in the state folder, is the client bundle for
	// lokoctl: the CA certificate, a client certificate and its key.
	MatchboxClientDir = "matchbox-client"
	// Files of the client bundle.
	MatchboxCAFile         = "ca.crt"
	MatchboxClientCertFile = "client.crt"
	MatchboxClientKeyFile  = "client.key"
)
