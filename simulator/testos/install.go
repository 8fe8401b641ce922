package testos

import (
	"bufio"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// ImageFile is the release file flatcar-install writes (docs/boot-contract.md §2).
const ImageFile = "flatcar_production_image.bin.bz2"

// InstallOptions are flatcar-install's flags the contract uses.
type InstallOptions struct {
	Disk     string // -d; empty with Smallest
	Smallest bool   // -s
	Ignition string // -i
	BaseURL  string // -b
	Version  string // -V, default "current"
}

// ParseInstallArgs reads flatcar-install's command line. Flags the test OS
// does not implement are refused rather than ignored, so a script that relies
// on one fails loudly.
func ParseInstallArgs(args []string) (InstallOptions, error) {
	o := InstallOptions{Version: "current"}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %s needs a value", arg)
			}
			i++
			return args[i], nil
		}
		var err error
		switch arg {
		case "-d":
			o.Disk, err = value()
		case "-s":
			o.Smallest = true
		case "-i":
			o.Ignition, err = value()
		case "-b":
			o.BaseURL, err = value()
		case "-V":
			o.Version, err = value()
		default:
			return o, fmt.Errorf("option %s is not supported by the test OS's flatcar-install", arg)
		}
		if err != nil {
			return o, err
		}
	}
	if o.Disk == "" && !o.Smallest {
		return o, errors.New("either -d DISK or -s is required")
	}
	if o.Disk != "" && o.Smallest {
		return o, errors.New("-d and -s exclude each other")
	}
	if o.BaseURL == "" {
		return o, errors.New("-b BASEURL is required (the test OS has no default release server)")
	}
	return o, nil
}

// ImageURL is where the image of this release lives.
func (o InstallOptions) ImageURL() string {
	return strings.TrimSuffix(o.BaseURL, "/") + "/" + o.Version + "/" + ImageFile
}

// Installer writes a release image to a disk. Its fields are what differs
// between the node (real /sys/block, block devices, a FAT mount) and tests.
type Installer struct {
	SysBlock    string // /sys/block
	Client      *http.Client
	StoreConfig func(disk string, cfg []byte) error
	Say         func(string)
}

// Install downloads the image, streams it decompressed onto the disk, checks
// it is a disk image (MBR signature), and stores the Ignition config.
func (in Installer) Install(ctx context.Context, o InstallOptions) error {
	disk := o.Disk
	if o.Smallest {
		disks, err := ListDisks(in.SysBlock)
		if err != nil {
			return err
		}
		d, err := SmallestDisk(disks)
		if err != nil {
			return err
		}
		disk = d.Dev()
	}
	var cfg []byte
	if o.Ignition != "" {
		var err error
		if cfg, err = os.ReadFile(o.Ignition); err != nil {
			return fmt.Errorf("while reading the Ignition config %s: %w", o.Ignition, err)
		}
		if _, err := ParseConfig(cfg); err != nil {
			return fmt.Errorf("the Ignition config %s: %w", o.Ignition, err)
		}
	}
	url := o.ImageURL()
	in.Say(fmt.Sprintf("flatcar-install: writing %s to %s", url, disk))
	written, err := in.writeImage(ctx, url, disk)
	if err != nil {
		return err
	}
	in.Say(fmt.Sprintf("flatcar-install: wrote %d MiB to %s", written>>20, disk))
	if cfg != nil {
		if err := in.StoreConfig(disk, cfg); err != nil {
			return fmt.Errorf("while storing the Ignition config on %s: %w", disk, err)
		}
		in.Say(fmt.Sprintf("flatcar-install: stored %s as /%s on %s", o.Ignition, storedConfigPath, disk))
	}
	return nil
}

func (in Installer) writeImage(ctx context.Context, url, disk string) (int64, error) {
	client := in.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("while building the request for %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("while downloading %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("while downloading %s: HTTP %d", url, resp.StatusCode)
	}
	img := bufio.NewReaderSize(bzip2.NewReader(bufio.NewReaderSize(resp.Body, 1<<20)), 4<<20)
	head, err := img.Peek(512)
	if err != nil {
		return 0, fmt.Errorf("while reading the first sector of %s: %w", url, err)
	}
	if head[510] != 0x55 || head[511] != 0xaa {
		return 0, fmt.Errorf("%s is not a disk image (no MBR signature)", url)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("while opening %s: %w", disk, err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, img, make([]byte, 4<<20))
	if err != nil {
		return n, fmt.Errorf("while writing %s to %s after %d bytes: %w", url, disk, n, err)
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("while syncing %s: %w", disk, err)
	}
	return n, nil
}
