package cli

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/plan"
)

// terminal drives racker through a pseudo-terminal as a person would:
// wait for a prompt, type an answer.
type terminal struct {
	t    *testing.T
	ptmx *os.File
	mu   sync.Mutex
	out  strings.Builder
	seen int // how much of out the prompts matched so far
	done chan struct{}
}

func newTerminal(t *testing.T) (*terminal, *os.File) {
	ptmx, tty := openPTY(t, 120, 40)
	term := &terminal{t: t, ptmx: ptmx, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return term, tty
}

// answer waits for prompt (after the last one matched), then types a.
func (term *terminal) answer(prompt, a string) {
	term.t.Helper()
	term.expect(prompt)
	if _, err := term.ptmx.Write([]byte(a + "\r")); err != nil {
		term.t.Fatal(err)
	}
}

// expect waits until the terminal shows text after what matched last.
func (term *terminal) expect(text string) {
	term.t.Helper()
	prompt := text
	deadline := time.Now().Add(20 * time.Second)
	for {
		term.mu.Lock()
		all := term.out.String()
		i := strings.Index(all[term.seen:], prompt)
		if i >= 0 {
			term.seen += i + len(prompt)
		}
		term.mu.Unlock()
		if i >= 0 {
			break
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("no prompt %q; the terminal shows:\n%s", prompt, all[term.seen:])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (term *terminal) shown() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// TestWizardThroughAPseudoTerminal answers every question of the bootstrap
// wizard on a pseudo-terminal, in upstream Racker's order, with wrong
// answers on the way (asked again), an editor for the public addresses
// (a script as $EDITOR, failing the check once), and the backup keys read
// without echo; then bootstrap runs with those answers (lokoctl is
// e2e/lokoctl-standin, which registers the nodes in the boot services'
// matchbox) and saves them:
// the Lokomotive files have the components, plan.json the choices, and a
// second bootstrap on a terminal asks nothing.
func TestWizardThroughAPseudoTerminal(t *testing.T) {
	flags, url, mbPort := bootRigWith(t, true)
	state := flags[3]
	bin := lokoctlStandIn(t)
	// The editor: the first time it writes an address that is not one,
	// the second time the worker's static address.
	marker := filepath.Join(bin, "edited-once")
	editor := filepath.Join(bin, "editor")
	os.WriteFile(editor, []byte(`#!/bin/sh
grep -q '^\[00:11:22:33:44:50\]$' "$1" || { echo "no section for the worker" >&2; exit 1; }
if [ ! -e `+marker+` ]; then
  touch `+marker+`
  sed -i '/^\[00:11:22:33:44:50\]$/{n;s|^ip_addr =$|ip_addr = not-an-address|}' "$1"
else
  sed -i 's|^ip_addr = not-an-address$|ip_addr = 203.0.113.20/24|; /^ip_addr = 203.0.113.20\/24$/{n;s|^gateway =$|gateway = 203.0.113.1|;n;s|^dns =$|dns = 1.1.1.1|}' "$1"
fi
`), 0o755)
	t.Setenv("EDITOR", editor)

	args := append([]string{"bootstrap", "--boot-services", url, "--bmc-driver", "fake", "--os", "testos", "--bmc-timeout", "2s",
		"--exclude", "00:11:22:33:44:60", "--matchbox-port", strconv.Itoa(mbPort)}, flags...)
	term, tty := newTerminal(t)
	env := &Env{Stdin: tty, Stdout: tty, Stderr: tty}
	code := make(chan int, 1)
	go func() { code <- env.Run(t.Context(), args) }()

	term.answer("Provisioning: lokomotive (Kubernetes) or flatcar (plain Flatcar) [flatcar]: ", "lokomotive")
	term.answer("Cluster name [racker]: ", "rack1")
	term.answer("Control plane: 1 controller, or 3 for high availability [auto: 3 when the type has 3 nodes, else 1]: ", "2")
	term.expect(`"2": answer one of 1, 3`)
	term.answer("Control plane: 1 controller, or 3 for high availability [auto: 3 when the type has 3 nodes, else 1]: ", "1")
	// --controller-type is on the command line: not asked.
	term.answer("Public IP assignment: dhcp, or manual (an editor opens with every node's section) [dhcp]: ", "manual")
	term.expect("not-an-address")
	term.answer("Public IP assignment: dhcp, or manual (an editor opens with every node's section) [manual]: ", "")
	term.answer("Kubernetes domain [k8s.localdomain]: ", "prod.example.com")
	// --subnet is on the command line: not asked.
	term.answer("Install the web UI (yes or no) [no]: ", "yes")
	term.answer("Storage provider (none, rook or openebs) [none]: ", "rook")
	term.answer("Storage node type (red, purple) [", "purple")
	term.answer("Number of storage nodes (a number, or all) [all]: ", "1")
	term.answer("Set up backup/restore with velero to S3 (yes or no) [no]: ", "yes")
	term.answer("AWS access key ID (empty: back): ", "AKIAEXAMPLE")
	term.answer("AWS secret access key (empty: back): ", "wJalr-s3cr3t")
	term.answer("Backup name [lokomotive-backup]: ", "")
	term.answer("S3 bucket name (empty: back): ", "racker-backups")
	term.answer("S3 bucket region [us-east-2]: ", "eu-central-1")

	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("bootstrap after the wizard: exit %d; the terminal shows:\n%s", c, term.shown())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("bootstrap did not finish; the terminal shows:\n%s", term.shown())
	}
	shown := term.shown()
	if strings.Contains(shown, "wJalr-s3cr3t") {
		t.Errorf("the secret key was echoed:\n%s", shown)
	}
	if strings.Contains(shown, "Controller node type") || strings.Contains(shown, "Internal subnet") {
		t.Errorf("asked for a choice given as a flag:\n%s", shown)
	}
	if !strings.Contains(shown, cluster.LokoctlPrefix+"Apply complete!") {
		t.Errorf("lokoctl did not run:\n%s", shown)
	}

	// The answers are saved with the rack's choices…
	st, err := plan.NewStore(state).Load()
	if err != nil {
		t.Fatal(err)
	}
	ips := filepath.Join(state, wizardPublicIPsFile)
	keys := filepath.Join(state, wizardBackupKeys)
	for k, want := range map[string]string{"provision": "lokomotive", "cluster-name": "rack1", "controllers": "1", "public-ips": ips,
		"domain": "prod.example.com", "web-ui": "true", "storage": "rook", "storage-type": "purple", "storage-nodes": "1",
		"backup-bucket": "racker-backups", "backup-region": "eu-central-1", "backup-name": DefaultBackupName, "backup-credentials": keys} {
		if st.Choices[k] != want {
			t.Errorf("saved choice %s = %q, want %q", k, st.Choices[k], want)
		}
	}
	for k, v := range st.Choices {
		if strings.Contains(v, "s3cr3t") || strings.Contains(v, "AKIAEXAMPLE") {
			t.Errorf("a backup key is in plan.json (%s)", k)
		}
	}
	if fi, err := os.Stat(keys); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup keys file: %v, %v; want mode 0600", fi, err)
	}
	// …and the Lokomotive configuration follows them.
	dir := filepath.Join(state, cluster.LokomotiveDir)
	for _, f := range []string{cluster.WebUIFile, cluster.RookFile, cluster.VeleroFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("component file: %v", err)
		}
	}
	vars, _ := os.ReadFile(filepath.Join(dir, cluster.LokocfgVarFile))
	for _, want := range []string{`"rack1-controller-0.prod.example.com"`, `backup_s3_bucket_name           = "racker-backups"`,
		`backup_aws_region               = "eu-central-1"`, `"storage.lokomotive.io" = "rook"`} {
		if !strings.Contains(string(vars), want) {
			t.Errorf("%s lacks %q:\n%s", cluster.LokocfgVarFile, want, vars)
		}
	}
	if b, _ := os.ReadFile(ips); !strings.Contains(string(b), "ip_addr = 203.0.113.20/24") {
		t.Errorf("public addresses file:\n%s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, cluster.BackupCredentialsFile)); !strings.Contains(string(b), "wJalr-s3cr3t") {
		t.Errorf("velero's credentials do not carry the key typed in the wizard")
	}

	// A second bootstrap on a terminal takes the saved answers.
	term2, tty2 := newTerminal(t)
	env2 := &Env{Stdin: tty2, Stdout: tty2, Stderr: tty2}
	go func() { code <- env2.Run(t.Context(), args) }()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("second bootstrap: exit %d:\n%s", c, term2.shown())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("second bootstrap did not finish (waiting for an answer?):\n%s", term2.shown())
	}
	if s := term2.shown(); strings.Contains(s, "]: ") {
		t.Errorf("the second bootstrap asked again:\n%s", s)
	}

	// With --replan it asks again, the saved answers as the defaults
	// (Enter keeps each, and the saved AWS keys).
	term3, tty3 := newTerminal(t)
	env3 := &Env{Stdin: tty3, Stdout: tty3, Stderr: tty3}
	go func() { code <- env3.Run(t.Context(), append(args, "--replan")) }()
	for _, prompt := range []string{
		"Provisioning: lokomotive (Kubernetes) or flatcar (plain Flatcar) [lokomotive]: ",
		"Cluster name [rack1]: ",
		"Control plane: 1 controller, or 3 for high availability [1]: ",
		"Public IP assignment: dhcp, or manual (an editor opens with every node's section) [manual]: ",
		"Kubernetes domain [prod.example.com]: ",
		"Install the web UI (yes or no) [yes]: ",
		"Storage provider (none, rook or openebs) [rook]: ",
		"Storage node type (red, purple) [purple]: ",
		"Number of storage nodes (a number, or all) [1]: ",
		"Set up backup/restore with velero to S3 (yes or no) [yes]: ",
		"AWS access key ID (empty: keep the saved keys): ",
		"Backup name [lokomotive-backup]: ",
		"S3 bucket name [racker-backups]: ",
		"S3 bucket region [eu-central-1]: ",
	} {
		term3.answer(prompt, "")
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("bootstrap --replan: exit %d:\n%s", c, term3.shown())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("bootstrap --replan did not finish:\n%s", term3.shown())
	}
	st2, err := plan.NewStore(state).Load()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range st.Choices {
		if st2.Choices[k] != v {
			t.Errorf("after --replan with every default, %s = %q, was %q", k, st2.Choices[k], v)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, cluster.BackupCredentialsFile)); !strings.Contains(string(b), "wJalr-s3cr3t") {
		t.Errorf("the saved AWS keys were not kept")
	}
}
