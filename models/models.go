// Package models holds pixery's built-in model registry: one TOML file per
// model (format in ARCHITECTURE.md §5, parsed by engine/registry), embedded in
// the binaries so that a fresh install knows which checkpoints to fetch and
// how to prompt them.
package models

import "embed"

// FS holds every *.toml file of this folder.
//
//go:embed *.toml
var FS embed.FS
