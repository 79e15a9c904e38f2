// Package assets holds the files the desktop app bundles: its icon.
package assets

import _ "embed"

// IconPNG is the application icon (512×512 PNG), the same file FyneApp.toml
// names for `fyne package`.
//
//go:embed icon.png
var IconPNG []byte
