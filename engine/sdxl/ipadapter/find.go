package ipadapter

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pixery/pixery/engine/registry"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl/clipvision"
)

// FindEncoder picks, among candidate image encoder files, the first (in
// the given order) whose sizes fit the adapter at adapterPath (Check). Only
// headers are read. The error lists what each candidate is.
func FindEncoder(adapterPath string, candidates []string) (string, error) {
	f, err := safetensors.Open(adapterPath)
	if err != nil {
		return "", fmt.Errorf("find image encoder: %w", err)
	}
	kind, dim, err := Inspect(f)
	if err != nil {
		return "", fmt.Errorf("find image encoder for %s: %w", adapterPath, err)
	}
	probe := &Adapter{Kind: kind, InputDim: dim}
	var seen []string
	for _, p := range candidates {
		ef, err := safetensors.Open(p)
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s (unreadable: %v)", filepath.Base(p), err))
			continue
		}
		c, err := clipvision.ConfigFor(p, ef)
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s (%v)", filepath.Base(p), err))
			continue
		}
		if Check(probe, c) == nil {
			return p, nil
		}
		seen = append(seen, fmt.Sprintf("%s (%s)", p, c.Name()))
	}
	found := "none is installed"
	if len(seen) > 0 {
		found = "found only " + strings.Join(seen, ", ")
	}
	return "", fmt.Errorf("no image encoder fits IP-Adapter %s: it needs %s (%d-wide %s); %s",
		filepath.Base(adapterPath), EncoderHint(kind, dim), dim, map[Kind]string{Plain: "image_embeds", Plus: "hidden states"}[kind], found)
}

// FindEncoderIn looks for the adapter's encoder in a models folder laid out
// as package registry scans it: ip-adapters/image_encoders/*.safetensors
// and ip-adapters/image_encoders/<name>/model.safetensors.
func FindEncoderIn(modelsDir, adapterPath string) (string, error) {
	inv, err := registry.Scan(modelsDir)
	if err != nil {
		return "", fmt.Errorf("find image encoder: %w", err)
	}
	var paths []string
	for _, e := range inv.ImageEncoders {
		paths = append(paths, e.Path)
	}
	return FindEncoder(adapterPath, paths)
}
