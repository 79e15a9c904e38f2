package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Layout of a models folder, as Scan reads it:
//
//	<dir>/*.safetensors                          checkpoints
//	<dir>/loras/**/*.safetensors                 LoRAs (subfolders allowed; the name keeps them: "styles/ink")
//	<dir>/ip-adapters/*.safetensors              IP-Adapter weights
//	<dir>/ip-adapters/image_encoders/*.safetensors     CLIP vision encoders, one file each
//	<dir>/ip-adapters/image_encoders/<name>/model.safetensors
//	                                             the same as Hugging Face lays them out (h94/IP-Adapter's
//	                                             sdxl_models/image_encoder/, with config.json); named <name>
//	<dir>/*.toml                                 extra registry entries (LoadDir)
//
// Names starting with a dot and unfinished downloads (*.safetensors.part) are
// skipped.
const (
	LoRADir         = "loras"
	IPAdapterDir    = "ip-adapters"
	ImageEncoderDir = "ip-adapters/image_encoders"
)

const safetensorsExt = ".safetensors"

// FileInfo is one weights file on disk.
type FileInfo struct {
	// Name identifies the file in its category: the path relative to the
	// category's folder, slash-separated, without the extension (or the
	// folder name for a Hugging Face-style image encoder).
	Name    string
	Path    string // absolute
	Size    int64
	ModTime time.Time
}

// Inventory is what a models folder holds. Each list is sorted by name.
type Inventory struct {
	Dir           string // absolute
	Checkpoints   []FileInfo
	LoRAs         []FileInfo
	IPAdapters    []FileInfo
	ImageEncoders []FileInfo
}

// Scan lists the weights in a models folder (layout above). Missing
// subfolders are simply empty; a missing or unreadable dir is an error.
func Scan(dir string) (Inventory, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Inventory{}, fmt.Errorf("scan %s: %w", dir, err)
	}
	inv := Inventory{Dir: abs}
	if inv.Checkpoints, err = scanFlat(abs, true); err != nil {
		return Inventory{}, err
	}
	if inv.LoRAs, err = scanTree(filepath.Join(abs, LoRADir)); err != nil {
		return Inventory{}, err
	}
	if inv.IPAdapters, err = scanFlat(filepath.Join(abs, filepath.FromSlash(IPAdapterDir)), false); err != nil {
		return Inventory{}, err
	}
	if inv.ImageEncoders, err = scanEncoders(filepath.Join(abs, filepath.FromSlash(ImageEncoderDir))); err != nil {
		return Inventory{}, err
	}
	return inv, nil
}

// scanFlat lists the *.safetensors files directly in dir; a missing dir is
// empty unless mustExist.
func scanFlat(dir string, mustExist bool) ([]FileInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !mustExist {
			return nil, nil
		}
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	var out []FileInfo
	for _, e := range entries {
		if fi, ok := weightsFile(dir, e.Name()); ok {
			fi.Name = strings.TrimSuffix(e.Name(), safetensorsExt)
			out = append(out, fi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// scanTree lists *.safetensors files in dir and its subfolders.
func scanTree(root string) ([]FileInfo, error) {
	if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var out []FileInfo
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if p != root && strings.HasPrefix(e.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		fi, ok := weightsFile(filepath.Dir(p), e.Name())
		if !ok {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi.Name = strings.TrimSuffix(filepath.ToSlash(rel), safetensorsExt)
		out = append(out, fi)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// scanEncoders lists image encoders: single files, and folders holding a
// model.safetensors as Hugging Face repositories lay them out.
func scanEncoders(dir string) ([]FileInfo, error) {
	out, err := scanFlat(dir, false)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out, nil // already reported as empty by scanFlat
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !isDir(filepath.Join(dir, e.Name())) {
			continue
		}
		if fi, ok := weightsFile(filepath.Join(dir, e.Name()), "model.safetensors"); ok {
			fi.Name = e.Name()
			out = append(out, fi)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// weightsFile stats dir/name when it is a *.safetensors regular file (a
// symlink to one counts: users link checkpoints shared with other tools).
func weightsFile(dir, name string) (FileInfo, bool) {
	if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, safetensorsExt) || name == safetensorsExt {
		return FileInfo{}, false
	}
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return FileInfo{}, false
	}
	return FileInfo{Path: p, Size: st.Size(), ModTime: st.ModTime()}, true
}

// AddDiscovered offers every checkpoint in inv that no entry names as a
// Model: its id and display name are the file name without the extension,
// its defaults FallbackDefaults, its architecture SDXL (assumed, not
// verified), with no source. When the name is already another entry's id,
// the full file name is used instead; when that is taken too, the file is
// reported and skipped.
func (r *Registry) AddDiscovered(inv Inventory) []Problem {
	named := map[string]bool{}
	for _, m := range r.byID {
		named[m.File] = true
	}
	var problems []Problem
	for _, c := range inv.Checkpoints {
		file := filepath.Base(c.Path)
		if named[file] {
			continue
		}
		id := c.Name
		if _, taken := r.byID[id]; taken {
			id = file
		}
		if _, taken := r.byID[id]; taken {
			problems = append(problems, Problem{File: c.Path, Severity: Warning,
				Message: fmt.Sprintf("not offered: its names %q and %q are both ids of other models", c.Name, file)})
			continue
		}
		r.byID[id] = &Model{
			ID:           id,
			DisplayName:  id,
			File:         file,
			Architecture: ArchitectureSDXL,
			Prediction:   PredictionEpsilon,
			Defaults:     FallbackDefaults,
			PromptGuide: PromptGuide{
				Notes: "Found in the models folder; no registry entry describes it. Assumed to be an SDXL checkpoint with the usual settings.",
			},
			Origin:     c.Path,
			Discovered: true,
		}
	}
	return problems
}

// State of a model's file on disk.
type State string

// States a model's file can be in. (The server adds "downloading" and
// "loaded", which it alone knows.)
const (
	StateMissing State = "missing"
	StateOnDisk  State = "on_disk"
)

// FileState says whether a model's file is in a models folder.
type FileState struct {
	State State
	Path  string
	Size  int64 // on disk: the file's size
	// PartialBytes is the size of an interrupted download (<file>.part)
	// that a new download would resume; 0 when there is none.
	PartialBytes int64
}

// StateOf looks for m's file in the models folder dir.
func StateOf(dir string, m *Model) FileState {
	p := filepath.Join(dir, m.File)
	if m.Discovered && filepath.IsAbs(m.Origin) {
		p = m.Origin
	}
	fsOut := FileState{State: StateMissing, Path: p}
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		fsOut.State, fsOut.Size = StateOnDisk, st.Size()
		return fsOut
	}
	if st, err := os.Stat(p + ".part"); err == nil && st.Mode().IsRegular() {
		fsOut.PartialBytes = st.Size()
	}
	return fsOut
}
