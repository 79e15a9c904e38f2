package engine

import "github.com/pixery/pixery/engine/api"

// FromClient returns the engine that c talks to, described as describe (its
// base URL, say). It is Remote with the client's knobs in the caller's hands:
// its HTTP client and how patiently Events reconnects.
func FromClient(c *api.Client, describe string) Engine {
	if describe == "" {
		describe = "remote engine"
	}
	return &remoteEngine{Client: c, url: describe}
}
