package remote

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/pixery/pixery/internal/atomicfile"
)

// Target is a host pixery knows: an instance it rented on Vast.ai, or an
// SSH host the user deployed to.
type Target struct {
	// Name identifies the target: "vast-<instance id>" or "ssh-user@host:port".
	Name string `json:"name"`
	// Kind is "vast" or "ssh".
	Kind string `json:"kind"`

	// Vast instances.
	InstanceID int64   `json:"instance_id,omitempty"`
	Label      string  `json:"label,omitempty"`
	OfferID    int64   `json:"offer_id,omitempty"`
	GPU        string  `json:"gpu,omitempty"`
	DPH        float64 `json:"dph,omitempty"` // $/h when rented

	// How to reach it over SSH (for Vast: as last seen).
	User string `json:"user,omitempty"`
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`

	// Where the engine lives there (deploy.Layout), as last deployed.
	Root       string `json:"root,omitempty"`
	EnginePort int    `json:"engine_port,omitempty"`

	CreatedAt    time.Time `json:"created_at"`
	DeployedAt   time.Time `json:"deployed_at,omitempty"`
	EngineSHA256 string    `json:"engine_sha256,omitempty"`
}

// HostKeyAlias is the target's name in pixery's known_hosts: Vast
// instances are recorded per instance, since Vast reuses proxy ports.
func (t Target) HostKeyAlias() string {
	if t.Kind == KindVast {
		return t.Name
	}
	return ""
}

// Target kinds.
const (
	KindVast = "vast"
	KindSSH  = "ssh"
)

func vastName(id int64) string { return "vast-" + strconv.FormatInt(id, 10) }

// State is what pixery remembers between runs. It holds no secrets, but
// it is written with mode 0600 like every file pixery keeps about hosts.
type State struct {
	Version int      `json:"version"`
	Current string   `json:"current,omitempty"`
	Targets []Target `json:"targets"`
}

// Find returns the target with that name.
func (s *State) Find(name string) (Target, bool) {
	for _, t := range s.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}

// Put adds or replaces a target.
func (s *State) Put(t Target) {
	for i := range s.Targets {
		if s.Targets[i].Name == t.Name {
			s.Targets[i] = t
			return
		}
	}
	s.Targets = append(s.Targets, t)
	sort.Slice(s.Targets, func(i, j int) bool { return s.Targets[i].Name < s.Targets[j].Name })
}

// Remove drops a target (and makes no target current if it was).
func (s *State) Remove(name string) {
	out := s.Targets[:0]
	for _, t := range s.Targets {
		if t.Name != name {
			out = append(out, t)
		}
	}
	s.Targets = out
	if s.Current == name {
		s.Current = ""
	}
}

// DefaultStateFile is $XDG_CONFIG_HOME/pixery/remote.json.
func DefaultStateFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find config folder: %w", err)
	}
	return filepath.Join(dir, "pixery", "remote.json"), nil
}

// LoadState reads a state file; a missing file is an empty state.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read remote state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("remote state %s is damaged (%v); move it away to start afresh — instances it listed can be found with `pixery remote orphans`", path, err)
	}
	if s.Version == 0 {
		s.Version = 1
	}
	return &s, nil
}

// SaveState writes the state atomically: a temporary file in the same
// folder, created 0600, synced, then renamed over the old one, so a crash
// leaves either the old state or the new one.
func SaveState(path string, s *State) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save remote state: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save remote state: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save remote state: %w", err)
	}
	return nil
}
