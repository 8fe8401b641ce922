package testos

import (
	"encoding/json"
	"fmt"
)

// Flatcar's Ignition still reads spec 2.x (and 1) configs and translates
// them to spec 3 at runtime (Flatcar's Ignition specification page; the
// translation is ign-converter's). Lokomotive v0.9.0's Terraform renders
// spec 2.3.0, so a Lokomotive rack depends on it. The test OS translates
// the parts it applies, and refuses what ign-converter cannot translate
// without a filesystem map (files on a filesystem other than "root").

// configV2 is the spec 2.x subset the test OS applies.
type configV2 struct {
	Ignition struct {
		Version string `json:"version"`
		Config  struct {
			Replace *Resource  `json:"replace"`
			Append  []Resource `json:"append"`
		} `json:"config"`
	} `json:"ignition"`
	Storage struct {
		Directories []struct {
			Filesystem string `json:"filesystem"`
			Path       string `json:"path"`
			Mode       *int   `json:"mode"`
		} `json:"directories"`
		Files []struct {
			Filesystem string   `json:"filesystem"`
			Path       string   `json:"path"`
			Mode       *int     `json:"mode"`
			Append     bool     `json:"append"`
			Contents   Resource `json:"contents"`
		} `json:"files"`
	} `json:"storage"`
	Passwd struct {
		Users []User `json:"users"`
	} `json:"passwd"`
	Systemd struct {
		Units []struct {
			Name     string   `json:"name"`
			Enable   bool     `json:"enable"` // deprecated in 2.x, still read
			Enabled  *bool    `json:"enabled"`
			Mask     bool     `json:"mask"`
			Contents string   `json:"contents"`
			Dropins  []Dropin `json:"dropins"`
		} `json:"units"`
	} `json:"systemd"`
}

// translateV2 turns a spec 2.x config into the spec 3 Config it means.
func translateV2(data []byte) (*Config, error) {
	var v2 configV2
	if err := json.Unmarshal(data, &v2); err != nil {
		return nil, fmt.Errorf("while decoding the Ignition %s config: %w", "2.x", err)
	}
	var c Config
	c.Ignition.Version = "3.0.0"
	if v2.Ignition.Config.Replace != nil {
		c.Ignition.Config.Replace = *v2.Ignition.Config.Replace
	}
	c.Ignition.Config.Merge = v2.Ignition.Config.Append
	for _, d := range v2.Storage.Directories {
		if d.Filesystem != "root" {
			return nil, fmt.Errorf("Ignition %s config: directory %s is on filesystem %q, which cannot be translated to spec 3 without a filesystem map (only \"root\" can)", v2.Ignition.Version, d.Path, d.Filesystem)
		}
		c.Storage.Directories = append(c.Storage.Directories, Directory{Path: d.Path, Mode: d.Mode})
	}
	for _, f := range v2.Storage.Files {
		if f.Filesystem != "root" {
			return nil, fmt.Errorf("Ignition %s config: file %s is on filesystem %q, which cannot be translated to spec 3 without a filesystem map (only \"root\" can)", v2.Ignition.Version, f.Path, f.Filesystem)
		}
		nf := File{Path: f.Path, Mode: f.Mode}
		if f.Append { // 2.x appends the contents; spec 3 lists what to append
			nf.Append = []Resource{f.Contents}
		} else {
			nf.Contents = f.Contents
		}
		c.Storage.Files = append(c.Storage.Files, nf)
	}
	c.Passwd.Users = v2.Passwd.Users
	for _, u := range v2.Systemd.Units {
		nu := Unit{Name: u.Name, Dropins: u.Dropins}
		if u.Enabled != nil {
			nu.Enabled = u.Enabled
		} else if u.Enable {
			t := true
			nu.Enabled = &t
		}
		if u.Mask {
			t := true
			nu.Mask = &t
		}
		if u.Contents != "" {
			s := u.Contents
			nu.Contents = &s
		}
		c.Systemd.Units = append(c.Systemd.Units, nu)
	}
	return &c, nil
}
