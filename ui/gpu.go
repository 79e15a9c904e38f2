package ui

import (
	"time"

	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/ui/gpupanel"
)

// newGPUPanel builds the GPU tab over a remote.Manager whose SSH questions
// (host key on first contact, key passphrase) are asked in dialogs, with the
// Vast.ai key and SSH key from the settings.
func (u *UI) newGPUPanel() (*gpupanel.View, error) {
	cfg := u.cfg.Remote
	if u.Settings.VastKey != "" {
		cfg.VastKey = u.Settings.VastKey
	}
	if u.Settings.SSHKey != "" {
		cfg.SSH.KeyFiles = []string{u.Settings.SSHKey}
	}
	u.dialogs = gpupanel.NewDialogs(u.Window)
	u.dialogs.Configure(&cfg)
	m, err := remote.New(cfg)
	if err != nil {
		return nil, err
	}
	return gpupanel.New(gpupanel.Deps{
		Window:      u.Window,
		Manager:     m,
		Dialogs:     u.dialogs,
		Engine:      u.Engine,
		OnConnected: u.connectTunnel,
		IdleDestroy: time.Duration(u.Settings.IdleDestroyMinutes) * time.Minute,
		Activity:    u.lastActivity,
		Do:          u.cfg.Do,
	}), nil
}
