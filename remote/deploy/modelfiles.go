package deploy

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ModelFile is a local file to put into the host's models folder: a
// checkpoint the user already has, a LoRA (Name "loras/x.safetensors"),
// or a file of a model's config_dir.
type ModelFile struct {
	// Path is the local file.
	Path string
	// Name is where it goes, a slash-separated path inside the models
	// folder; "" means Path's base name.
	Name string
}

// CheckModelFiles checks model files before anything is uploaded: each is
// a readable regular file, its name stays inside the models folder and is
// not a registry TOML (those go with the registry, which is validated),
// and no two go to the same place. It returns them with their names filled in.
func CheckModelFiles(files []ModelFile) ([]ModelFile, error) {
	out := make([]ModelFile, 0, len(files))
	seen := map[string]string{}
	for _, mf := range files {
		name := mf.Name
		if name == "" {
			name = filepath.Base(mf.Path)
		}
		clean := path.Clean(strings.ReplaceAll(name, `\`, "/"))
		if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || path.IsAbs(clean) {
			return nil, fmt.Errorf("model file %s: name %q must be a path inside the models folder", mf.Path, name)
		}
		if !strings.Contains(clean, "/") && strings.HasSuffix(strings.ToLower(clean), ".toml") {
			// The engine would read it as a registry entry that no check saw.
			return nil, fmt.Errorf("model file %s: %s would be a registry file; give it with the registry, which is checked before the upload", mf.Path, clean)
		}
		st, err := os.Stat(mf.Path)
		if err != nil {
			return nil, fmt.Errorf("model file: %w", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("model file %s: not a regular file", mf.Path)
		}
		f, err := os.Open(mf.Path)
		if err != nil {
			return nil, fmt.Errorf("model file: %w", err)
		}
		f.Close()
		if prev, ok := seen[clean]; ok {
			return nil, fmt.Errorf("model files %s and %s would both go to %s on the host", prev, mf.Path, clean)
		}
		seen[clean] = mf.Path
		out = append(out, ModelFile{Path: mf.Path, Name: clean})
	}
	return out, nil
}
