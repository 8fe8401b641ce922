package testos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Apply writes a resolved config's files, directories, SSH keys and units
// under root ("/" on the node, a temp dir in tests) and returns the enabled
// units in config order, ready for RunUnits.
func Apply(ctx context.Context, root string, c *Config, f Fetcher, say func(string)) ([]Unit, error) {
	for _, d := range c.Storage.Directories {
		mode := os.FileMode(0o755)
		if d.Mode != nil {
			mode = os.FileMode(*d.Mode)
		}
		if err := os.MkdirAll(under(root, d.Path), mode); err != nil {
			return nil, fmt.Errorf("while creating directory %s: %w", d.Path, err)
		}
	}
	for _, file := range c.Storage.Files {
		if err := writeFile(ctx, root, file, f); err != nil {
			return nil, err
		}
		say(fmt.Sprintf("wrote %s (mode %#o)", file.Path, fileMode(file)))
	}
	for _, u := range c.Passwd.Users {
		if len(u.SSHAuthorizedKeys) == 0 {
			continue
		}
		home := "/home/" + u.Name
		if u.Name == "root" {
			home = "/root"
		}
		dir := under(root, home+"/.ssh")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("while creating %s/.ssh for user %s: %w", home, u.Name, err)
		}
		keys := strings.Join(u.SSHAuthorizedKeys, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(keys), 0o600); err != nil {
			return nil, fmt.Errorf("while writing SSH keys for user %s: %w", u.Name, err)
		}
		say(fmt.Sprintf("user %s: %d SSH key(s) in %s/.ssh/authorized_keys", u.Name, len(u.SSHAuthorizedKeys), home))
	}
	var enabled []Unit
	for _, u := range c.Systemd.Units {
		if u.Contents != nil {
			path := under(root, "/etc/systemd/system/"+u.Name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, fmt.Errorf("while creating the unit folder: %w", err)
			}
			if err := os.WriteFile(path, []byte(*u.Contents), 0o644); err != nil {
				return nil, fmt.Errorf("while writing unit %s: %w", u.Name, err)
			}
		}
		if u.Enabled != nil && *u.Enabled && (u.Mask == nil || !*u.Mask) {
			enabled = append(enabled, u)
		}
	}
	return enabled, nil
}

func fileMode(f File) os.FileMode {
	if f.Mode != nil {
		return os.FileMode(*f.Mode)
	}
	return 0o644
}

func writeFile(ctx context.Context, root string, file File, f Fetcher) error {
	if !strings.HasPrefix(file.Path, "/") {
		return fmt.Errorf("file path %q is not absolute", file.Path)
	}
	data, err := fetchResource(ctx, f, file.Contents)
	if err != nil {
		return fmt.Errorf("while fetching the contents of %s: %w", file.Path, err)
	}
	for _, a := range file.Append {
		more, err := fetchResource(ctx, f, a)
		if err != nil {
			return fmt.Errorf("while fetching appended contents of %s: %w", file.Path, err)
		}
		data = append(data, more...)
	}
	path := under(root, file.Path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("while creating the folder of %s: %w", file.Path, err)
	}
	// Remove first so a new mode applies and a running executable can be replaced.
	_ = os.Remove(path)
	if err := os.WriteFile(path, data, fileMode(file)); err != nil {
		return fmt.Errorf("while writing %s: %w", file.Path, err)
	}
	return os.Chmod(path, fileMode(file))
}

// under joins an absolute config path onto root without letting ".." escape it.
func under(root, p string) string {
	return filepath.Join(root, filepath.Clean("/"+p))
}
