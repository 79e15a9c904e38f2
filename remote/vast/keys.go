package vast

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// User is the part of GET /api/v0/users/current/ pixery reads (§8).
type User struct {
	ID       int64   `json:"id"`
	Username string  `json:"username"`
	Email    string  `json:"email"`
	Credit   float64 `json:"credit"` // money left, per the SDK guide
	Balance  float64 `json:"balance"`
	CanPay   bool    `json:"can_pay"`
	SSHKey   string  `json:"ssh_key"`
}

// CurrentUser checks the key and returns the account (§8, §13.1).
func (c *Client) CurrentUser(ctx context.Context) (*User, error) {
	var u User
	if err := c.do(ctx, request{op: "check API key", method: http.MethodGet, path: "/api/v0/users/current/",
		retry: c.Retry}, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// SSHKey is an SSH public key registered on the account (§6).
type SSHKey struct {
	ID        int64  `json:"id"`
	PublicKey string `json:"public_key"`
	Key       string `json:"key"` // the OpenAPI spelling (§6 UNCONFIRMED)
}

// Text returns the key line whichever field carried it.
func (k SSHKey) Text() string {
	if k.PublicKey != "" {
		return k.PublicKey
	}
	return k.Key
}

// ListSSHKeys returns the account's keys (GET /api/v0/ssh/).
func (c *Client) ListSSHKeys(ctx context.Context) ([]SSHKey, error) {
	var keys []SSHKey
	if err := c.do(ctx, request{op: "list SSH keys", method: http.MethodGet, path: "/api/v0/ssh/", retry: c.Retry}, &keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// AddSSHKey registers a public key line on the account (POST /api/v0/ssh/);
// new instances get the account's keys when they are created (§6).
func (c *Client) AddSSHKey(ctx context.Context, publicKey string) error {
	return c.do(ctx, request{op: "add SSH key", method: http.MethodPost, path: "/api/v0/ssh/",
		body: map[string]string{"ssh_key": strings.TrimSpace(publicKey)}, retry: c.Retry}, nil)
}

// AttachSSHKey adds a public key to one instance (POST /api/v0/instances/{id}/ssh/),
// for instances created before the key was on the account (§6).
func (c *Client) AttachSSHKey(ctx context.Context, id int64, publicKey string) error {
	return c.do(ctx, request{op: fmt.Sprintf("attach SSH key to instance %d", id), method: http.MethodPost,
		path: idPath("/api/v0/instances/", id) + "ssh/", body: map[string]string{"ssh_key": strings.TrimSpace(publicKey)},
		retry: c.Retry}, nil)
}

// ErrNoKey means no Vast.ai API key was found.
var ErrNoKey = errors.New("no Vast.ai API key: set VAST_API_KEY or run `vastai set api-key KEY` (it writes ~/.config/vastai/vast_api_key)")

// LoadAPIKey finds the key where the vast CLI keeps it (§1.2): the
// VAST_API_KEY variable, else a 2FA session key vast_tfa_key, else
// vast_api_key, both in $XDG_CONFIG_HOME/vastai (normally ~/.config/vastai),
// else the legacy ~/.vast_api_key. It returns the key and where it came
// from (never the key itself in errors).
func LoadAPIKey() (key, source string, err error) {
	if k := strings.TrimSpace(os.Getenv("VAST_API_KEY")); k != "" {
		return k, "VAST_API_KEY", nil
	}
	var files []string
	if dir, e := os.UserConfigDir(); e == nil {
		files = append(files, filepath.Join(dir, "vastai", "vast_tfa_key"), filepath.Join(dir, "vastai", "vast_api_key"))
	}
	if home, e := os.UserHomeDir(); e == nil {
		files = append(files, filepath.Join(home, ".vast_api_key"))
	}
	for _, f := range files {
		b, e := os.ReadFile(f)
		if errors.Is(e, fs.ErrNotExist) {
			continue
		}
		if e != nil {
			return "", f, fmt.Errorf("read Vast.ai API key: %w", e)
		}
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, f, nil
		}
	}
	return "", "", ErrNoKey
}
