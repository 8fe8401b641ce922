package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

// SSHKeyPath is the cluster's private key, relative to the state folder.
const SSHKeyPath = "ssh/id_ed25519"

func newGenSSHKeyCmd(env *Env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use: "gen-ssh-key",
		Example: `  racker factory gen-ssh-key
  racker factory gen-ssh-key --force`,
		Short: "Make the ed25519 SSH key pair that the cluster's nodes trust; print the public key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := GenSSHKey(env.StateDir, force)
			if err != nil {
				return err
			}
			fmt.Fprint(env.Stdout, pub)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing key")
	return cmd
}

// GenSSHKey writes a new key pair into stateDir and returns the public key in
// authorized_keys form. It never overwrites a key unless force.
func GenSSHKey(stateDir string, force bool) (string, error) {
	priv := filepath.Join(stateDir, SSHKeyPath)
	if _, err := os.Stat(priv); err == nil && !force {
		return "", fmt.Errorf("%s exists; --force replaces it (nodes installed with the old key will no longer accept it)", priv)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(key, "racker")
	if err != nil {
		return "", err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	authorized := string(ssh.MarshalAuthorizedKey(sshPub))
	if err := os.MkdirAll(filepath.Dir(priv), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(priv+".tmp", pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(priv+".pub", []byte(authorized), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(priv+".tmp", priv); err != nil {
		return "", err
	}
	return authorized, nil
}
