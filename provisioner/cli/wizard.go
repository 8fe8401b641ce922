package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/inventory"
)

// The bootstrap wizard asks upstream Racker's questions (its
// bootstrap/args.yaml and the list), in upstream's order, each
// answering a flag of the same meaning, so a script says the same with
// flags:
//
//	provisioning            --provision lokomotive|flatcar
//	cluster name            --cluster-name
//	control plane           --controllers 1|3
//	controller node type    --controller-type
//	public IP assignment    --public-ips FILE (manual: an editor, prefilled with every node's section)
//	k8s domain              --domain                      (lokomotive)
//	internal subnet         --subnet
//	web UI                  --web-ui                      (lokomotive)
//	storage provider        --storage none|rook|openebs   (lokomotive)
//	storage nodes           --storage-type, --storage-nodes
//	backup                  --backup-bucket, --backup-region, --backup-name, --backup-credentials
//
// It asks only for what the command line did not give. Answers are saved
// with the rack's choices (plan.json) by the bootstrap that follows; a
// later bootstrap takes them without asking, and with --replan asks again,
// offering them as the defaults.

// Files the wizard writes in the state folder.
const (
	wizardPublicIPsFile = "public-ips.ini"
	wizardBackupKeys    = "backup-aws-credentials"
)

type wizard struct {
	env    *Env
	fs     *pflag.FlagSet
	saved  map[string]string
	replan bool
	f      *bootstrapFlags
	inv    *inventory.Inventory // nil when nodes.csv does not load (CheckRack says why later)
	eof    bool                 // the terminal closed: defaults from now on
}

func runWizard(env *Env, fs *pflag.FlagSet, f *bootstrapFlags) error {
	saved, _, err := env.recallChoices(fs)
	if err != nil {
		return err
	}
	w := &wizard{env: env, fs: fs, saved: saved, f: f, replan: f.plan.replan}
	w.inv, _ = env.LoadInventory()
	types := w.nodeTypes()

	if err := w.ask("provision", "Provisioning: lokomotive (Kubernetes) or flatcar (plain Flatcar)", oneOf(cluster.Lokomotive, cluster.Flatcar)); err != nil {
		return err
	}
	loko := f.profile == cluster.Lokomotive
	steps := []func() error{
		func() error { return w.ask("cluster-name", "Cluster name", nil) },
		func() error {
			return w.ask("controllers", "Control plane: 1 controller, or 3 for high availability", oneOf("1", "3"))
		},
		func() error {
			return w.ask("controller-type", "Controller node type ("+strings.Join(append([]string{"any"}, types...), ", ")+")", oneOf(append([]string{"any"}, types...)...))
		},
		w.askPublicIPs,
		func() error {
			if !loko {
				return nil
			}
			return w.ask("domain", "Kubernetes domain", nil)
		},
		func() error { return w.ask("subnet", "Internal subnet", validSubnet) },
	}
	if loko {
		steps = append(steps,
			func() error { return w.ask("web-ui", "Install the web UI (yes or no)", yesNo) },
			func() error {
				return w.ask("storage", "Storage provider (none, rook or openebs)", oneOf(cluster.StorageNone, cluster.StorageRook, cluster.StorageOpenEBS))
			},
			func() error {
				if f.comp.storage == cluster.StorageNone || f.comp.storage == "" {
					return nil
				}
				if err := w.ask("storage-type", "Storage node type ("+strings.Join(types, ", ")+")", oneOf(types...)); err != nil {
					return err
				}
				return w.ask("storage-nodes", "Number of storage nodes (a number, or all)", countOrAll)
			},
			w.askBackup,
		)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// asks says whether the wizard asks for flag: not when the command line
// set it, nor when the rack saved it (unless --replan).
func (w *wizard) asks(flag string) bool {
	if w.eof || w.fs.Lookup(flag) == nil || w.fs.Changed(flag) {
		return false
	}
	_, saved := w.saved[flag]
	return !saved || w.replan
}

// ask asks one question with the flag's value as the default (Enter
// keeps it) and sets the flag from the answer; a bad answer is said and
// asked again.
func (w *wizard) ask(flag, question string, check func(string) (string, error)) error {
	if !w.asks(flag) {
		return nil
	}
	def := w.display(flag)
	for {
		a, err := w.env.ask(fmt.Sprintf("%s [%s]: ", question, def))
		if err != nil && a == "" {
			w.eof = true
			return nil
		}
		if a == "" {
			return nil
		}
		if check != nil {
			if a, err = check(a); err != nil {
				fmt.Fprintf(w.env.Stdout, "  %v\n", err)
				continue
			}
		}
		if err := w.fs.Set(flag, a); err != nil {
			fmt.Fprintf(w.env.Stdout, "  %v\n", err)
			continue
		}
		return nil
	}
}

// display is a flag's current value as the default shown.
func (w *wizard) display(flag string) string {
	v := w.fs.Lookup(flag).Value.String()
	switch {
	case flag == "controllers" && v == "0":
		return "auto: 3 when the type has 3 nodes, else 1"
	case flag == "controller-type" && v == "":
		return "the most common type"
	case flag == "domain" && v == "":
		return cluster.DefaultDomain
	case flag == "storage-nodes" && v == "":
		return "all"
	case v == "true":
		return "yes"
	case v == "false":
		return "no"
	}
	return v
}

func (w *wizard) nodeTypes() []string {
	if w.inv == nil {
		return nil
	}
	var out []string
	for i, n := range w.inv.Nodes {
		if i != w.inv.Management && !slices.Contains(out, n.Type) {
			out = append(out, n.Type)
		}
	}
	return out
}

// askPublicIPs asks how the nodes' public (secondary) NICs get their
// addresses: DHCP, or manually in an editor ($EDITOR, else vi) on a file
// prefilled with a section for every node, which is then checked and
// kept as STATE/public-ips.ini (--public-ips).
func (w *wizard) askPublicIPs() error {
	if !w.asks("public-ips") {
		return nil
	}
	def := "dhcp"
	if w.f.publicIPs != "" {
		def = "manual"
	}
	for {
		a, err := w.env.ask(fmt.Sprintf("Public IP assignment: dhcp, or manual (an editor opens with every node's section) [%s]: ", def))
		if err != nil && a == "" {
			w.eof = true
			return nil
		}
		switch strings.ToLower(a) {
		case "":
			if def == "dhcp" {
				return nil
			}
			fallthrough
		case "manual", "m":
			path, err := w.editPublicIPs()
			if err != nil {
				fmt.Fprintf(w.env.Stdout, "  %v\n", err)
				def = "manual"
				continue
			}
			return w.fs.Set("public-ips", path)
		case "dhcp", "d":
			return w.fs.Set("public-ips", "")
		default:
			fmt.Fprintf(w.env.Stdout, "  %q: answer dhcp or manual\n", a)
		}
	}
}

func (w *wizard) editPublicIPs() (string, error) {
	path := filepath.Join(w.env.StateDir, wizardPublicIPsFile)
	if err := os.MkdirAll(w.env.StateDir, 0o755); err != nil {
		return "", err
	}
	body, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && w.f.publicIPs != "" {
		body, err = os.ReadFile(w.f.publicIPs)
	}
	if err != nil {
		body = []byte(w.prefillPublicIPs())
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return "", err
	}
	editor := "vi"
	if w.env.Getenv != nil && w.env.Getenv("EDITOR") != "" {
		editor = w.env.Getenv("EDITOR")
	} else if e := os.Getenv("EDITOR"); e != "" {
		editor = e
	}
	cmd := exec.Command("/bin/sh", "-c", editor+` "$1"`, "editor", path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = w.env.Stdin, w.env.Stdout, w.env.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("the editor (%s) failed: %w", editor, err)
	}
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	if _, err := cluster.ParsePublicIPs(path, fh); err != nil {
		return "", fmt.Errorf("%w (fix it in the editor)", err)
	}
	return path, nil
}

// prefillPublicIPs is upstream's editor text: how to write it, then one
// section per node with a secondary NIC, empty (DHCP) until filled in.
func (w *wizard) prefillPublicIPs() string {
	var b strings.Builder
	b.WriteString("# Public addresses of the nodes' secondary NICs, one section per secondary MAC.\n" +
		"# Leave ip_addr empty for DHCP. Example:\n#   ip_addr = 203.0.113.10/24\n#   gateway = 203.0.113.1\n#   dns = 1.1.1.1, 8.8.8.8\n" +
		"# A static section without gateway and dns reuses the previous static section's.\n\n")
	if w.inv == nil {
		return b.String()
	}
	for i, n := range w.inv.Nodes {
		if i == w.inv.Management || n.SecondaryMAC == "" {
			continue
		}
		fmt.Fprintf(&b, "# %s, type %s (primary MAC %s)\n[%s]\nip_addr =\ngateway =\ndns =\n\n", strings.TrimSpace(n.Comments), n.Type, n.PrimaryMAC, n.SecondaryMAC)
	}
	return b.String()
}

// askBackup asks upstream's backup questions: whether, then the AWS keys
// (kept in STATE/backup-aws-credentials, mode 0600, never in plan.json),
// the backup's name, the bucket and its region. An empty key or bucket
// goes back to "whether", as upstream's did.
func (w *wizard) askBackup() error {
	if !w.asks("backup-bucket") {
		return nil
	}
	def := "no"
	if w.f.comp.backupBucket != "" {
		def = "yes"
	}
	for {
		a, err := w.env.ask(fmt.Sprintf("Set up backup/restore with velero to S3 (yes or no) [%s]: ", def))
		if err != nil && a == "" {
			w.eof = true
			return nil
		}
		if a == "" {
			a = def
		}
		yes, err := yesNo(a)
		if err != nil {
			fmt.Fprintf(w.env.Stdout, "  %v\n", err)
			continue
		}
		if yes == "false" {
			return w.fs.Set("backup-bucket", "")
		}
		// Keys saved before (--replan) may be kept: Enter keeps them.
		keep := ""
		if f := w.f.comp.backupCredentials; f != "" {
			if _, _, err := readAWSCredentials(f); err == nil {
				keep = f
			}
		}
		var id, secret string
		if keep != "" {
			id = w.secret("AWS access key ID (empty: keep the saved keys)")
		} else if id = w.secret("AWS access key ID (empty: back)"); id == "" {
			continue
		}
		if id != "" {
			if secret = w.secret("AWS secret access key (empty: back)"); secret == "" {
				continue
			}
		}
		if err := w.ask("backup-name", "Backup name", nil); err != nil {
			return err
		}
		bucket := w.f.comp.backupBucket
		if bucket != "" {
			a, _ := w.env.ask(fmt.Sprintf("S3 bucket name [%s]: ", bucket))
			if a != "" {
				bucket = a
			}
		} else if bucket, _ = w.env.ask("S3 bucket name (empty: back): "); bucket == "" {
			continue
		}
		if err := w.ask("backup-region", "S3 bucket region", nil); err != nil {
			return err
		}
		if id != "" {
			path := filepath.Join(w.env.StateDir, wizardBackupKeys)
			if err := writeAWSCredentials(path, id, secret); err != nil {
				return fmt.Errorf("saving the backup's AWS keys: %w", err)
			}
			if err := w.fs.Set("backup-credentials", path); err != nil {
				return err
			}
		}
		return w.fs.Set("backup-bucket", bucket)
	}
}

// secret reads an answer without echo on a terminal.
func (w *wizard) secret(question string) string {
	if in, ok := w.env.Stdin.(*os.File); ok && term.IsTerminal(int(in.Fd())) && (w.env.in == nil || w.env.in.Buffered() == 0) {
		fmt.Fprintf(w.env.Stdout, "%s: ", question)
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(w.env.Stdout)
		if err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	a, _ := w.env.ask(question + ": ")
	return a
}

func oneOf(options ...string) func(string) (string, error) {
	return func(a string) (string, error) {
		for _, o := range options {
			if strings.EqualFold(a, o) {
				return o, nil
			}
		}
		return "", fmt.Errorf("%q: answer one of %s", a, strings.Join(options, ", "))
	}
}

func yesNo(a string) (string, error) {
	switch strings.ToLower(a) {
	case "y", "yes", "true":
		return "true", nil
	case "n", "no", "false":
		return "false", nil
	}
	return "", fmt.Errorf("%q: answer yes or no", a)
}

func validSubnet(a string) (string, error) {
	p, err := netip.ParsePrefix(a)
	if err != nil || !p.Addr().Is4() {
		return "", fmt.Errorf("%q: want an IPv4 subnet such as 172.24.213.0/24", a)
	}
	return p.Masked().String(), nil
}

func countOrAll(a string) (string, error) {
	if strings.EqualFold(a, "all") {
		return "all", nil
	}
	if n, err := strconv.Atoi(a); err != nil || n < 1 {
		return "", fmt.Errorf("%q: want a number of nodes, or all", a)
	}
	return a, nil
}
