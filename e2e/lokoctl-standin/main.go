// Command lokoctl-standin stands in for `lokoctl cluster apply` where the
// real lokoctl cannot finish: its Terraform providers (matchbox, ct) are
// not served on these machines. It does exactly what Lokomotive v0.9.0's
// bare-metal Terraform does to matchbox, and nothing else: for every
// controller and worker of the lokocfg.vars in its working folder, it
// registers through matchbox's gRPC API (matchbox's own Go client, the one
// the matchbox Terraform provider wraps, with the certificates the vars
// name) the matchbox-flatcar module's cached install profile and its group
// selected by MAC, and the node's profile and group selected by MAC and
// os=installed, each raw Ignition stored as the provider stores it
// (PROFILE.ign). The install profile's Ignition is the module's install
// template rendered as ct would (install.go); the node's own config is a
// placeholder (the hostname) where Lokomotive renders its controller or
// worker config. Both are spec 2.3.0, the version Lokomotive's ct provider
// writes.
//
// It accepts lokoctl's command line (cluster apply [--confirm] [--verbose])
// and prints what it registers, one line per object, as lokoctl's
// Terraform would report its resources.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/poseidon/matchbox/matchbox/client"
	"github.com/poseidon/matchbox/matchbox/server/serverpb"
	"github.com/poseidon/matchbox/matchbox/storage/storagepb"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lokoctl-standin:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 || args[0] != "cluster" || args[1] != "apply" {
		return fmt.Errorf("usage: lokoctl cluster apply [--confirm] [--verbose] (got %q)", args)
	}
	v, err := readVars("lokocfg.vars")
	if err != nil {
		return err
	}
	c, err := dial(v)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := 0
	for _, role := range []string{"controller", "worker"} {
		names, macs := v.list(role+"_names"), v.list(role+"_macs")
		if len(names) != len(macs) {
			return fmt.Errorf("lokocfg.vars: %d %s_names but %d %s_macs", len(names), role, len(macs), role)
		}
		for i := range names {
			if err := register(ctx, c, v, role, names[i], macs[i]); err != nil {
				return fmt.Errorf("registering %s %s: %w", role, names[i], err)
			}
			nodes++
		}
	}
	if nodes == 0 {
		return errors.New("lokocfg.vars names no controller or worker")
	}
	fmt.Printf("Apply complete! %d node(s) registered in matchbox.\n", nodes)
	return nil
}

// register puts what the matchbox-flatcar module's resources put
// (cached_install = true).
func register(ctx context.Context, c *client.Client, v vars, role, name, mac string) error {
	version, http := v.str("os_version"), v.str("matchbox_http_endpoint")
	args := append([]string{"initrd=flatcar_production_pxe_image.cpio.gz",
		"ignition.config.url=" + http + "/ignition?uuid=${uuid}&mac=${mac:hexhyp}", "flatcar.first_boot=yes"},
		v.list("kernel_console")...)
	install := &storagepb.Profile{Id: "cached-flatcar-linux-install-" + name, IgnitionId: "cached-flatcar-linux-install-" + name + ".ign",
		Boot: &storagepb.NetBoot{
			Kernel: "/assets/flatcar/" + version + "/flatcar_production_pxe.vmlinuz",
			Initrd: []string{"/assets/flatcar/" + version + "/flatcar_production_pxe_image.cpio.gz"},
			Args:   args,
		}}
	node := &storagepb.Profile{Id: v.str("cluster_name") + "-" + role + "-" + name, IgnitionId: v.str("cluster_name") + "-" + role + "-" + name + ".ign"}
	installIgn, err := installIgnition(v, mac)
	if err != nil {
		return err
	}
	ign := map[*storagepb.Profile]string{
		install: installIgn,
		node:    `{"ignition":{"version":"2.3.0"},"storage":{"files":[{"filesystem":"root","path":"/etc/hostname","contents":{"source":"data:,` + name + `"},"mode":420}]}}`,
	}
	for _, p := range []*storagepb.Profile{install, node} {
		if _, err := c.Profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: p}); err != nil {
			return err
		}
		if _, err := c.Ignition.IgnitionPut(ctx, &serverpb.IgnitionPutRequest{Name: p.IgnitionId, Config: []byte(ign[p])}); err != nil {
			return err
		}
		fmt.Printf("matchbox_profile.%s: Creation complete\n", p.Id)
	}
	groups := []*storagepb.Group{
		{Id: "install-" + name, Name: "install-" + name, Profile: install.Id, Selector: map[string]string{"mac": mac}},
		{Id: v.str("cluster_name") + "-" + name, Name: v.str("cluster_name") + "-" + name, Profile: node.Id, Selector: map[string]string{"mac": mac, "os": "installed"}},
	}
	for _, g := range groups {
		if _, err := c.Groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: g}); err != nil {
			return err
		}
		fmt.Printf("matchbox_group.%s: Creation complete\n", g.Id)
	}
	return nil
}

// dial connects as the matchbox Terraform provider does: the endpoint and
// the three certificate files the vars name, mutual TLS.
func dial(v vars) (*client.Client, error) {
	pair, err := tls.LoadX509KeyPair(v.str("matchbox_client_cert_path"), v.str("matchbox_client_key_path"))
	if err != nil {
		return nil, fmt.Errorf("matchbox client certificate: %w", err)
	}
	ca, err := os.ReadFile(v.str("matchbox_ca_path"))
	if err != nil {
		return nil, fmt.Errorf("matchbox CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("matchbox CA: no certificate in " + v.str("matchbox_ca_path"))
	}
	c, err := client.New(&client.Config{Endpoints: []string{v.str("matchbox_endpoint")}, DialTimeout: 10 * time.Second,
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}})
	if err != nil {
		return nil, fmt.Errorf("connecting to matchbox at %s: %w", v.str("matchbox_endpoint"), err)
	}
	return c, nil
}

// vars are the top-level attributes of lokocfg.vars whose values are a
// string, a list of strings or a bool, written as Racker writes them (one per
// line; HCL's string and list literals of that kind are JSON). A stand-in
// needs no more of HCL.
type vars map[string]any

func readVars(path string) (vars, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	v := vars{}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.HasPrefix(k, " ") || strings.HasPrefix(k, "\t") {
			continue
		}
		var s string
		var l []string
		var b bool
		switch raw := strings.TrimSpace(val); {
		case json.Unmarshal([]byte(raw), &s) == nil:
			v[strings.TrimSpace(k)] = s
		case json.Unmarshal([]byte(raw), &l) == nil:
			v[strings.TrimSpace(k)] = l
		case json.Unmarshal([]byte(raw), &b) == nil:
			v[strings.TrimSpace(k)] = b
		}
	}
	return v, sc.Err()
}

func (v vars) str(k string) string { s, _ := v[k].(string); return s }

func (v vars) list(k string) []string { l, _ := v[k].([]string); return l }

// boolean is a true/false attribute, or def where the vars have none.
func (v vars) boolean(k string, def bool) bool {
	if b, ok := v[k].(bool); ok {
		return b
	}
	return def
}
