package testos

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"golang.org/x/sys/unix"
)

// ImageFile is the release file flatcar-install writes (docs/boot-contract.md §2).
const ImageFile = "flatcar_production_image.bin.bz2"

// OEMConfigFile is where flatcar-install -i stores the Ignition config: on
// the filesystem labelled OEM of the installed disk, read on first boot.
const OEMConfigFile = "config.ign"

// InstallOptions are the flatcar-install flags Racker's install script uses.
type InstallOptions struct {
	Disk     string // -d; empty with Smallest
	Smallest bool   // -s
	Ignition string // -i
	BaseURL  string // -b
	Version  string // -V, default "current" (resolved through version.txt)
	KeyFile  string // -k
}

// ParseInstallArgs reads flatcar-install's command line. Flags the stand-in
// does not implement are refused rather than ignored, so a script that
// relies on one fails loudly.
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
		case "-k":
			o.KeyFile, err = value()
		default:
			return o, fmt.Errorf("option %s is not supported by the test OS's stand-in flatcar-install", arg)
		}
		if err != nil {
			return o, err
		}
	}
	switch {
	case o.Disk == "" && !o.Smallest:
		return o, errors.New("either -d DISK or -s is required")
	case o.Disk != "" && o.Smallest:
		return o, errors.New("-d and -s exclude each other")
	case o.BaseURL == "":
		return o, errors.New("-b BASEURL is required (the stand-in has no default release server)")
	case o.KeyFile == "":
		// Flatcar's script falls back on Flatcar's own key, which signs no
		// test OS image: the install would fail at the signature anyway.
		return o, errors.New("-k KEYFILE is required (the stand-in has no built-in image signing key)")
	}
	o.BaseURL = strings.TrimSuffix(o.BaseURL, "/")
	return o, nil
}

// ImageURL is where the image of a release lives.
func (o InstallOptions) ImageURL(version string) string {
	return o.BaseURL + "/" + version + "/" + ImageFile
}

// Installer is the test OS's stand-in for flatcar-install, used where
// Flatcar's own script is not in the image (a checkout outside the usual
// layout). It is as strict as the script: the image must carry a good
// signature by the -k key, -s takes only disks over 10 GB, and the -i
// config goes to config.ign on the OEM partition. Its fields are what
// differs between the node and unit tests.
type Installer struct {
	SysBlock string          // /sys/block
	Mounts   func() []string // lines of /proc/self/mounts
	Client   *http.Client
	// StoreConfig writes the -i config as config.ign on the installed
	// disk's OEM partition.
	StoreConfig func(disk string, cfg []byte) error
	Say         func(string)
}

// Install resolves the version, checks the signature is there, streams the
// image decompressed onto the disk while verifying it, and stores the
// Ignition config. A bad signature after the write wipes the disk's start,
// so a half-trusted image never boots.
func (in Installer) Install(ctx context.Context, o InstallOptions) error {
	keys, err := readKeyring(o.KeyFile)
	if err != nil {
		return err
	}
	disk := o.Disk
	if o.Smallest {
		var mounts []string
		if in.Mounts != nil {
			mounts = in.Mounts()
		}
		disks, err := ListDisks(in.SysBlock, mounts)
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
		if cfg, err = os.ReadFile(o.Ignition); err != nil {
			return fmt.Errorf("Ignition config file (%s) does not exist: %w", o.Ignition, err)
		}
		if _, err := ParseConfig(cfg); err != nil {
			return fmt.Errorf("the Ignition config %s: %w", o.Ignition, err)
		}
	}
	version := o.Version
	if version == "current" {
		if version, err = in.currentVersion(ctx, o.BaseURL); err != nil {
			return err
		}
		in.Say("flatcar-install: current version is " + version)
	}
	url := o.ImageURL(version)
	sig, err := in.get(ctx, url+".sig", 64<<10)
	if err != nil {
		return fmt.Errorf("image signature unavailable: %w", err)
	}
	in.Say(fmt.Sprintf("flatcar-install: writing and verifying %s to %s", url, disk))
	written, err := in.writeImage(ctx, url, disk, keys, sig)
	if err != nil {
		return err
	}
	in.Say(fmt.Sprintf("flatcar-install: wrote %d MiB to %s; signature good", written>>20, disk))
	if cfg != nil {
		if err := in.StoreConfig(disk, cfg); err != nil {
			return fmt.Errorf("while storing the Ignition config on %s: %w", disk, err)
		}
		in.Say(fmt.Sprintf("flatcar-install: installed Ignition config %s as %s on the OEM partition of %s", o.Ignition, OEMConfigFile, disk))
	}
	in.Say(fmt.Sprintf("Success! Flatcar Container Linux (test OS stand-in) %s is installed on %s", version, disk))
	return nil
}

// currentVersion reads FLATCAR_VERSION from BASEURL/current/version.txt.
func (in Installer) currentVersion(ctx context.Context, base string) (string, error) {
	b, err := in.get(ctx, base+"/current/version.txt", 64<<10)
	if err != nil {
		return "", fmt.Errorf("version.txt unavailable: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "FLATCAR_VERSION="); ok && v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s/current/version.txt has no FLATCAR_VERSION", base)
}

func (in Installer) client() *http.Client {
	if in.Client != nil {
		return in.Client
	}
	return http.DefaultClient
}

func (in Installer) open(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("while building the request for %s: %w", url, err)
	}
	resp, err := in.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("while downloading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("while downloading %s: HTTP %d", url, resp.StatusCode)
	}
	return resp.Body, nil
}

func (in Installer) get(ctx context.Context, url string, max int64) ([]byte, error) {
	body, err := in.open(ctx, url)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(io.LimitReader(body, max))
}

// writeImage streams the download through the signature check and, in
// parallel, bunzips it onto the disk, as flatcar-install's tee does.
func (in Installer) writeImage(ctx context.Context, url, disk string, keys openpgp.EntityList, sig []byte) (int64, error) {
	body, err := in.open(ctx, url)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	pr, pw := io.Pipe()
	verified := make(chan error, 1)
	go func() {
		_, err := verify(keys, pr, sig)
		pr.CloseWithError(err) // unblocks the writer if verification gave up early
		_, _ = io.Copy(io.Discard, pr)
		verified <- err
	}()
	src := io.TeeReader(bufio.NewReaderSize(body, 1<<20), pw)
	n, werr := in.writeDisk(src, url, disk)
	// Read what bzip2 left (trailing bytes) so the signature covers the
	// whole file, then let the verifier finish.
	_, _ = io.Copy(io.Discard, src)
	pw.Close()
	// A failed signature check is the error to report even when it made
	// the write fail (the verifier stops reading, which stops the tee).
	if verr := <-verified; verr != nil {
		werr = fmt.Errorf("GPG signature verification failed for %s: %w", url, verr)
	}
	if werr != nil && n > 0 {
		// As flatcar-install's trap does (wipefs --all): nothing of an
		// unverified or broken image may boot.
		_ = zeroStart(disk)
	}
	return n, werr
}

func (in Installer) writeDisk(src io.Reader, url, disk string) (int64, error) {
	img := bufio.NewReaderSize(bzip2.NewReader(src), 4<<20)
	head, err := img.Peek(512)
	if err != nil {
		return 0, fmt.Errorf("cannot expand %s: %w", url, err)
	}
	if head[510] != 0x55 || head[511] != 0xaa {
		return 0, fmt.Errorf("%s is not a disk image (no boot record signature)", url)
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

func zeroStart(disk string) error {
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(make([]byte, 1<<20), 0)
	return err
}

// readKeyring reads the -k key file, armored or binary, as gpg --import does.
func readKeyring(path string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("while reading the image signing key: %w", err)
	}
	var list openpgp.EntityList
	if bytes.Contains(b[:min(len(b), 100)], []byte("-----BEGIN PGP")) {
		list, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	} else {
		list, err = openpgp.ReadKeyRing(bytes.NewReader(b))
	}
	if err != nil || len(list) == 0 {
		return nil, fmt.Errorf("the image signing key %s holds no OpenPGP public key: %v", path, err)
	}
	return list, nil
}

// verify checks data against a detached (binary or armored) signature. Like
// gpg, it judges the key at the signature's creation time, so a signature
// made while its key was valid is good after the key expired (Flatcar
// rotates its signing subkeys yearly); a revoked key never passes.
func verify(keys openpgp.EntityList, data io.Reader, sig []byte) (*openpgp.Entity, error) {
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN PGP")) {
		block, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return nil, fmt.Errorf("while reading the armored signature: %w", err)
		}
		if sig, err = io.ReadAll(block.Body); err != nil {
			return nil, fmt.Errorf("while reading the armored signature: %w", err)
		}
	}
	p, err := packet.Read(bytes.NewReader(sig))
	if err != nil {
		return nil, fmt.Errorf("while reading the signature: %w", err)
	}
	s, ok := p.(*packet.Signature)
	if !ok {
		return nil, fmt.Errorf("the signature file holds a %T, not a signature", p)
	}
	at := s.CreationTime
	return openpgp.CheckDetachedSignature(keys, data, bytes.NewReader(sig), &packet.Config{Time: func() time.Time { return at }})
}

// StoreConfig writes cfg as config.ign on the OEM partition of disk (the
// kernel is asked to read the new partition table first), as flatcar-install
// -i does; the partition is found by its GPT name.
func StoreConfig(disk string, cfg []byte) error {
	if err := rereadPartitions(disk); err != nil {
		return err
	}
	name := filepath.Base(disk)
	var oem Partition
	deadline := time.Now().Add(10 * time.Second)
	for {
		parts, err := Partitions("/sys/block", name)
		if err != nil {
			return err
		}
		var ok bool
		if oem, ok = partitionByLabel(parts, "OEM"); ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has no partition named OEM (is the image Flatcar-shaped?)", disk)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := waitForDevice(oem.Dev, 10*time.Second); err != nil {
		return err
	}
	return withMount(oem.Dev, "ext4", false, func(dir string) error {
		if err := os.WriteFile(filepath.Join(dir, OEMConfigFile), cfg, 0o600); err != nil {
			return fmt.Errorf("while writing %s on %s: %w", OEMConfigFile, oem.Dev, err)
		}
		unix.Sync()
		return nil
	})
}
