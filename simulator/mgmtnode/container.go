package mgmtnode

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ContainerCommand is the hidden racker-sim command that becomes a
// container's first process (ContainerStage).
const ContainerCommand = "container-init"

// bundle is what ContainerStage needs, written as BUNDLE/config.json (the
// role of an OCI runtime bundle).
type bundle struct {
	Rootfs   string   `json:"rootfs"`
	Args     []string `json:"args"`
	Env      []string `json:"env"`
	Cwd      string   `json:"cwd"`
	Hostname string   `json:"hostname"`
}

// RunImage runs an OCI image archive's default command inside the node
// whose PID 1 is nodePID, as `docker run --rm --privileged --pid host
// IMAGE` runs it on Flatcar:
//
//   - skopeo (a real OCI client) reads the archive, and the image's layers
//     are unpacked into a fresh root file system under the node's
//     /var/lib/containers: the container sees the image and nothing else;
//   - the process shares the node's PID namespace (--pid host: its
//     /proc/1 is the node's init) and has its own mount, UTS, IPC and
//     network namespaces (a network of its own with loopback only);
//   - it runs as root with every capability (--privileged), a /proc of the
//     node's PID namespace, a read-write /sys, /dev, /etc/hostname,
//     /etc/hosts and /etc/resolv.conf, and /.dockerenv, which is how
//     programs tell they run under Docker;
//   - its environment is the image's, plus HOSTNAME and HOME as Docker
//     adds them; the container is removed when it ends (--rm).
//
// The command's output goes to out; RunImage fails when it exits non-zero.
func RunImage(ctx context.Context, l Layout, nodePID int, archive, simBinary string, out io.Writer) error {
	if _, err := os.Stat(archive); err != nil {
		return fmt.Errorf("the installer image %s is missing (make image writes bin/racker-VERSION.oci.tar): %w", archive, err)
	}
	id := make([]byte, 6)
	rand.Read(id)
	name := hex.EncodeToString(id)
	dir := filepath.Join(l.containers(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("while creating the container folder: %w", err)
	}
	defer os.RemoveAll(dir) // --rm
	b, err := unpackImage(ctx, archive, dir)
	if err != nil {
		return err
	}
	b.Hostname = name
	b.Env = append(b.Env, "HOSTNAME="+name)
	if !hasVar(b.Env, "HOME") {
		b.Env = append(b.Env, "HOME=/root")
	}
	data, _ := json.Marshal(b)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, simBinary, ContainerCommand, dir)
	cmd.Stdout, cmd.Stderr = out, out // the stage has racker-sim's environment, the image's command its own
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// No Pdeathsig: the thread that forks it ends right after.
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET,
	}
	if err := startIn(cmd, "/proc/"+strconv.Itoa(nodePID)+"/ns/pid", syscall.CLONE_NEWPID); err != nil {
		return fmt.Errorf("while starting the installer container in the management node: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("the installer container (%s) failed: %w", strings.Join(b.Args, " "), err)
	}
	return nil
}

func hasVar(env []string, name string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, name+"=") {
			return true
		}
	}
	return false
}

// unpackImage reads the archive with skopeo into an OCI layout in
// dir/image, unpacks the flattened layers into dir/rootfs and returns the
// image's default command, environment and working folder.
func unpackImage(ctx context.Context, archive, dir string) (*bundle, error) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		return nil, fmt.Errorf("skopeo reads the installer image (make deps installs it): %w", err)
	}
	abs, err := filepath.Abs(archive)
	if err != nil {
		return nil, err
	}
	// The image by its ref name when it has one: a signed archive also
	// holds its signature, and skopeo wants to be told which to copy.
	which, err := archiveImage(abs)
	if err != nil {
		return nil, fmt.Errorf("the installer image %s: %w", archive, err)
	}
	src := "oci-archive:" + abs
	if ref := which.refName(); ref != "" {
		src += ":" + ref
	}
	imgDir := filepath.Join(dir, "image")
	cmd := exec.CommandContext(ctx, skopeo, "copy", "--quiet", src, "oci:"+imgDir+":image")
	cmd.Env = append(os.Environ(), "TMPDIR="+dir) // skopeo unpacks the archive there, not in /var/tmp
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("skopeo cannot read the installer image %s: %w: %s", archive, err, strings.TrimSpace(string(b)))
	}
	p, err := layout.FromPath(imgDir)
	if err != nil {
		return nil, fmt.Errorf("while opening the installer image: %w", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("while opening the installer image: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		return nil, fmt.Errorf("the installer image %s: want exactly one image (%v)", archive, err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("while opening the installer image: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("while reading the installer image's config: %w", err)
	}
	if u := cfg.Config.User; u != "" && u != "root" && u != "0" && u != "0:0" {
		return nil, fmt.Errorf("the installer image runs as user %q: the simulated engine runs images as root only", u)
	}
	args := append(append([]string{}, cfg.Config.Entrypoint...), cfg.Config.Cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("the installer image %s has no default command", archive)
	}
	rootfs := filepath.Join(dir, "rootfs")
	rc := mutate.Extract(img)
	defer rc.Close()
	if err := untar(rc, rootfs); err != nil {
		return nil, fmt.Errorf("while unpacking the installer image's layers: %w", err)
	}
	os.RemoveAll(imgDir)
	cwd := cfg.Config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	return &bundle{Rootfs: rootfs, Args: args, Env: cfg.Config.Env, Cwd: cwd}, nil
}

// untar writes a flattened image file system into root; names that would
// leave root are refused.
func untar(r io.Reader, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := os.Link(filepath.Join(root, filepath.Clean("/"+h.Linkname)), p); err != nil {
				return err
			}
		default:
			continue // devices and fifos have no place in an installer image
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(p, os.FileMode(h.Mode)&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
				return err
			}
		}
	}
}

// ContainerStage is a container's first process (racker-sim
// container-init BUNDLE), started by RunImage in the node's PID namespace
// and fresh mount, UTS, IPC and network namespaces: it makes the
// container's mounts and files, pivots into the image's root file system
// and execs the image's default command.
func ContainerStage(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return fmt.Errorf("while reading the container's config: %w", err)
	}
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("while reading the container's config: %w", err)
	}
	root := b.Rootfs
	at := func(p string) string { return filepath.Join(root, p) }
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("while making the container's mounts private: %w", err)
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "etc", "tmp", "root"} {
		if err := os.MkdirAll(at(d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("proc", at("proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("while mounting the container's /proc: %w", err)
	}
	if err := unix.Mount("sysfs", at("sys"), "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("while mounting the container's /sys: %w", err)
	}
	if err := makeDev(at("dev")); err != nil {
		return err
	}
	files := map[string]string{
		"etc/hostname":    b.Hostname + "\n",
		"etc/hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\t" + b.Hostname + "\n",
		"etc/resolv.conf": "",
		".dockerenv":      "",
	}
	for p, content := range files {
		if err := os.WriteFile(at(p), []byte(content), 0o644); err != nil {
			return fmt.Errorf("while writing the container's /%s: %w", p, err)
		}
	}
	if err := os.MkdirAll(at(b.Cwd), 0o755); err != nil { // Docker makes a missing WorkingDir
		return err
	}
	if err := unix.Sethostname([]byte(b.Hostname)); err != nil {
		return err
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	if err := pivot(root); err != nil {
		return err
	}
	if err := os.Chdir(b.Cwd); err != nil {
		return fmt.Errorf("the image's working folder %s: %w", b.Cwd, err)
	}
	for _, e := range b.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			os.Setenv("PATH", v)
		}
	}
	bin, err := exec.LookPath(b.Args[0])
	if err != nil {
		return fmt.Errorf("the image's command %s: %w", b.Args[0], err)
	}
	return syscall.Exec(bin, b.Args, b.Env)
}

// ArchiveDigest reads the digest of the one image in an OCI archive
// (its index.json), without unpacking it.
func ArchiveDigest(archive string) (string, error) {
	m, err := archiveImage(archive)
	return m.Digest, err
}

// archivedImage is the index.json entry of an archive's image.
type archivedImage struct {
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations"`
}

// refName is the image's name in the archive (its tag), or "".
func (m archivedImage) refName() string { return m.Annotations["org.opencontainers.image.ref.name"] }

// archiveImage finds the one image of an OCI archive in its index.json. A
// signed release also carries its cosign signature there, an image whose
// ref name is the signature tag (sha256-HEX.sig); that one is not run.
func archiveImage(archive string) (archivedImage, error) {
	f, err := os.Open(archive)
	if err != nil {
		return archivedImage{}, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			return archivedImage{}, fmt.Errorf("while reading %s: no index.json (%w)", archive, err)
		}
		if strings.TrimPrefix(h.Name, "./") != "index.json" {
			continue
		}
		var idx struct {
			Manifests []archivedImage `json:"manifests"`
		}
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			return archivedImage{}, fmt.Errorf("while reading %s/index.json: %w", archive, err)
		}
		var images []archivedImage
		for _, m := range idx.Manifests {
			if !strings.HasSuffix(m.refName(), ".sig") {
				images = append(images, m)
			}
		}
		if len(images) != 1 {
			return archivedImage{}, fmt.Errorf("while reading %s/index.json: want one image besides its signature, found %d", archive, len(images))
		}
		return images[0], nil
	}
}
