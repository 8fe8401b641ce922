package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/orchestrator"
)

// scaleSettings are the rack-scale bootstrap's knobs (-scale KEY=VALUE,…).
//
// A simulated node takes the time a real server takes, divided by Ratio,
// and downloads the OS image divided by the same Ratio: at 1:50 a 500 MB
// Flatcar image is served as 10 MB and four minutes of firmware, boot and
// install pass in 4.8 s, so bandwidth and time keep their proportions.
// Racker's own pace is never scaled: the BMC spacing (--bmc-interval) and
// the BMC operations run in real time against real IPMI servers, which
// makes them weigh Ratio times more in the scaled run than on hardware.
// The real-world times are assumptions stated here and in the results,
// not measurements: servers differ, and these are typical, not worst, cases.
type scaleSettings struct {
	Nodes int // rack size for the shipped-defaults and best-settings runs
	Ratio int // time and size divisor
	// ImageMB is the real image's size (Flatcar's production image is
	// about 500 MB compressed).
	ImageMB int
	// Real node times: firmware power-on self test to the PXE ROM's
	// DHCP (each boot), the live system's boot to the install script,
	// the install's write after the download, the installed system's
	// boot to its booted callback.
	POST, Live, Install, Boot time.Duration
	// Best settings: what the bench can justify over the shipped defaults.
	BestParallel       int
	BestBMCInterval    time.Duration
	BestBMCConcurrency int
	// BMC selects the BMCs: "ipmi" (a virtual BMC per node, real IPMI
	// over UDP loopback, Racker's ipmi:// driver) or "fake" (in memory).
	BMC string
	// Runs lists the runs: defaults, best.
	Runs []string

	set map[string]bool // keys given on the command line
}

func defaultScale(short bool) scaleSettings {
	s := scaleSettings{Nodes: 1000, Ratio: 50, ImageMB: 500, POST: 60 * time.Second, Live: 30 * time.Second,
		Install: 60 * time.Second, Boot: 30 * time.Second,
		// 250 is Ironic's default max_concurrent_deploy (see scale_report.go);
		// 10 ms still spreads 1,000 power-ons over 10 s, one at a time.
		BestParallel: 250, BestBMCInterval: 10 * time.Millisecond, BestBMCConcurrency: orchestrator.DefaultBMCConcurrency,
		BMC: "ipmi", Runs: []string{"defaults", "best"}}
	if short {
		s.Nodes, s.Ratio = 100, 200
	}
	return s
}

// scaleFlags holds what -scale said, applied over the defaults for the
// mode by settings().
var scaleFlags scaleArgs

type scaleArgs struct{ raw string }

func (a *scaleArgs) String() string { return a.raw }
func (a *scaleArgs) Set(v string) error {
	_, err := a.apply(defaultScale(false), v)
	a.raw = v
	return err
}

func (a *scaleArgs) settings(short bool) (scaleSettings, error) {
	return a.apply(defaultScale(short), a.raw)
}

func (a *scaleArgs) apply(s scaleSettings, raw string) (scaleSettings, error) {
	s.set = map[string]bool{}
	if raw == "" {
		return s, nil
	}
	for _, kv := range strings.Split(raw, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return s, fmt.Errorf("-scale %q: want KEY=VALUE", kv)
		}
		var err error
		num := func(p *int) {
			if *p, err = strconv.Atoi(v); err == nil && *p < 1 {
				err = fmt.Errorf("want 1 or more")
			}
		}
		dur := func(p *time.Duration) {
			if *p, err = time.ParseDuration(v); err == nil && *p < 0 {
				err = fmt.Errorf("want 0 or more")
			}
		}
		switch k {
		case "nodes":
			num(&s.Nodes)
		case "ratio":
			num(&s.Ratio)
		case "image-mb":
			num(&s.ImageMB)
		case "post":
			dur(&s.POST)
		case "live":
			dur(&s.Live)
		case "install":
			dur(&s.Install)
		case "boot":
			dur(&s.Boot)
		case "best-parallel":
			num(&s.BestParallel)
		case "best-interval":
			dur(&s.BestBMCInterval)
		case "best-concurrency":
			num(&s.BestBMCConcurrency)
		case "bmc":
			if v != "ipmi" && v != "fake" {
				err = fmt.Errorf("want ipmi or fake")
			}
			s.BMC = v
		case "runs":
			s.Runs = strings.Split(v, "+")
			for _, r := range s.Runs {
				if r != "defaults" && r != "best" {
					err = fmt.Errorf("want defaults, best or defaults+best")
				}
			}
		default:
			err = fmt.Errorf("unknown setting (nodes, ratio, image-mb, post, live, install, boot, best-parallel, best-interval, best-concurrency, bmc, runs)")
		}
		if err != nil {
			return s, fmt.Errorf("-scale %s=%s: %w", k, v, err)
		}
		s.set[k] = true
	}
	return s, nil
}

// scaled is a real node time as the simulated node spends it.
func (s scaleSettings) scaled(d time.Duration) time.Duration { return d / time.Duration(s.Ratio) }

// nodeTime is what a node's hardware takes in one bootstrap, real: two
// POSTs, the live boot, the install's write and the first boot (the
// image download and Racker's BMC operations come on top).
func (s scaleSettings) nodeTime() time.Duration { return 2*s.POST + s.Live + s.Install + s.Boot }

// imageBytes is the image the simulated nodes download.
func (s scaleSettings) imageBytes() int64 { return int64(s.ImageMB) * 1_000_000 / int64(s.Ratio) }

func (s scaleSettings) describe() string {
	return fmt.Sprintf("node times and image 1:%d (a %d MB image served as %.1f MB; %s of POST ×2, live boot, install and first boot as %s)",
		s.Ratio, s.ImageMB, float64(s.imageBytes())/1e6, s.nodeTime(), s.scaled(s.nodeTime()))
}
