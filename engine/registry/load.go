package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/pixery/pixery/models"
)

// maxTOMLSize bounds what is read from one registry file; real entries are a
// few KB, so anything bigger is a mistake (or not a registry file at all).
const maxTOMLSize = 1 << 20

// Load reads every *.toml file directly inside dir of fsys (in name order)
// and returns the entries that are valid. Each file that could not be used,
// and each questionable thing in a file that could, is reported as a Problem
// naming the file as path.Join(dir, name); one broken file never keeps the
// others from loading. A relative config_dir stays a path inside fsys.
func Load(fsys fs.FS, dir string) (*Registry, []Problem) {
	return load(fsys, dir, "", func(name string) string { return path.Join(dir, name) })
}

// LoadDir is Load for a folder on disk (a user's models folder). Problems
// name files by their OS path, and a relative config_dir is resolved against
// the folder into an absolute path.
func LoadDir(dir string) (*Registry, []Problem) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return New(), []Problem{{File: dir, Severity: Error, Message: fmt.Sprintf("resolve folder: %v", err)}}
	}
	return load(os.DirFS(abs), ".", abs, func(name string) string { return filepath.Join(abs, name) })
}

// Embedded loads the registry built into the binary (package models). Its
// problems name files as models/<name>.toml, their place in the repository.
func Embedded() (*Registry, []Problem) {
	return load(models.FS, ".", "", func(name string) string { return "models/" + name })
}

// LoadAll loads the embedded registry and then, when userDir is not empty,
// the TOML files in userDir; a user entry with the id of a built-in one
// replaces it (reported as a Warning).
func LoadAll(userDir string) (*Registry, []Problem) {
	r, problems := Embedded()
	if userDir == "" {
		return r, problems
	}
	user, p := LoadDir(userDir)
	problems = append(problems, p...)
	problems = append(problems, r.Merge(user)...)
	return r, problems
}

func load(fsys fs.FS, dir, osBase string, label func(string) string) (*Registry, []Problem) {
	r := New()
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return r, []Problem{{File: label(""), Severity: Error, Message: fmt.Sprintf("read registry folder: %v", err)}}
	}
	var problems []Problem
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".toml") || strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		file := label(name)
		src, err := readLimited(fsys, path.Join(dir, name))
		if err != nil {
			problems = append(problems, Problem{File: file, Severity: Error, Message: err.Error()})
			continue
		}
		m, p := parse(src, file, fsys, dir, osBase)
		problems = append(problems, p...)
		if m == nil {
			continue
		}
		if prev, dup := r.byID[m.ID]; dup {
			problems = append(problems, Problem{File: file, Line: keyLine(src, "id"), Severity: Error,
				Message: fmt.Sprintf("duplicate id %q: already defined in %s; this entry is ignored", m.ID, prev.Origin)})
			continue
		}
		r.byID[m.ID] = m
	}
	return r, problems
}

func readLimited(fsys fs.FS, name string) (string, error) {
	st, err := fs.Stat(fsys, name)
	if err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	if st.Size() > maxTOMLSize {
		return "", fmt.Errorf("file is %d bytes, more than the %d a registry entry may have", st.Size(), maxTOMLSize)
	}
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	return string(b), nil
}

// Parse decodes and validates one registry entry. file names it in
// problems; a relative config_dir is left as written. The model is nil when
// any Problem has Severity Error.
func Parse(src, file string) (*Model, []Problem) {
	return parse(src, file, nil, "", "")
}

func parse(src, file string, fsys fs.FS, dir, osBase string) (*Model, []Problem) {
	var m Model
	md, err := toml.Decode(src, &m)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			p := Problem{File: file, Line: pe.Position.Line, Severity: Error, Message: pe.Message}
			// The offset is more precise than the decoder's line: for an
			// error at a line's end ("got '\n'") the decoder already counts
			// the next line.
			if pe.Position.Start > 0 || pe.Position.Len > 0 {
				p.Line, p.Col = lineCol(src, pe.Position.Start)
			}
			if pe.LastKey != "" {
				p.Message = fmt.Sprintf("%s (after key %q)", pe.Message, pe.LastKey)
			}
			return nil, []Problem{p}
		}
		return nil, []Problem{decodeErrorProblem(file, err)}
	}
	var problems []Problem
	var reported []string
	for _, k := range md.Undecoded() {
		key := k.String()
		if coveredBy(key, reported) {
			continue
		}
		reported = append(reported, key)
		msg := fmt.Sprintf("unknown key %q is ignored", key)
		if s := suggestKey(key); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		problems = append(problems, Problem{File: file, Line: keyLine(src, key), Severity: Warning, Message: msg})
	}

	fillDefaults(&m, md)
	m.Origin = file
	for _, fe := range validate(&m) {
		problems = append(problems, Problem{File: file, Line: keyLine(src, fe.key), Severity: Error, Message: fe.key + ": " + fe.msg})
	}
	if m.ConfigDir != "" && fsys != nil {
		if fe := resolveConfigDir(&m, fsys, dir, osBase); fe != nil {
			problems = append(problems, Problem{File: file, Line: keyLine(src, fe.key), Severity: Error, Message: fe.key + ": " + fe.msg})
		}
	}
	for _, p := range problems {
		if p.Severity == Error {
			return nil, problems
		}
	}
	return &m, problems
}

func coveredBy(key string, parents []string) bool {
	for _, p := range parents {
		if key == p || strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// knownKeys lists every key the format has, for "did you mean" hints.
var knownKeys = []string{
	"id", "display_name", "file", "source", "architecture", "sha256", "prediction", "config_dir",
	"defaults", "defaults.cfg", "defaults.steps", "defaults.width", "defaults.height",
	"defaults.sampler", "defaults.scheduler", "defaults.clip_skip",
	"negative_prompt", "negative_prompt.default",
	"prompt_guide", "prompt_guide.quality_tags", "prompt_guide.style", "prompt_guide.notes",
	"prompt_guide.prefix", "prompt_guide.example",
}

// suggestKey returns the known key closest to an unknown one when the two
// differ by a typo (edit distance ≤ 2, ignoring case).
func suggestKey(key string) string {
	best, bestD := "", 3
	for _, k := range knownKeys {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// fillDefaults supplies what an entry leaves out. IsDefined tells an omitted
// key from one set to zero, so that "cfg = 0" stays 0 (and is validated).
func fillDefaults(m *Model, md toml.MetaData) {
	d, f := &m.Defaults, FallbackDefaults
	if !md.IsDefined("defaults", "cfg") {
		d.CFG = f.CFG
	}
	if !md.IsDefined("defaults", "steps") {
		d.Steps = f.Steps
	}
	if !md.IsDefined("defaults", "width") {
		d.Width = f.Width
	}
	if !md.IsDefined("defaults", "height") {
		d.Height = f.Height
	}
	if !md.IsDefined("defaults", "sampler") {
		d.Sampler = f.Sampler
	}
	if !md.IsDefined("defaults", "clip_skip") {
		d.ClipSkip = f.ClipSkip
	}
	if m.Architecture == "" {
		m.Architecture = ArchitectureSDXL
	}
	if m.Prediction == "" {
		m.Prediction = PredictionEpsilon
	}
	if m.DisplayName == "" {
		m.DisplayName = m.ID
	}
	m.SHA256 = strings.ToLower(m.SHA256)
}

// configFiles are the files a config_dir must hold, as diffusers lays out a
// pipeline folder.
var configFiles = []string{"unet/config.json", "vae/config.json", "text_encoder/config.json", "text_encoder_2/config.json"}

// resolveConfigDir makes m.ConfigDir usable (absolute on disk, or a valid
// path inside fsys) and checks that the config files are there.
func resolveConfigDir(m *Model, fsys fs.FS, dir, osBase string) *fieldError {
	cd := m.ConfigDir
	var missing []string
	switch {
	case filepath.IsAbs(cd) || osBase != "":
		if !filepath.IsAbs(cd) {
			cd = filepath.Join(osBase, filepath.FromSlash(cd))
		}
		cd = filepath.Clean(cd)
		if st, err := os.Stat(cd); err != nil {
			return &fieldError{"config_dir", fmt.Sprintf("%s: %v", cd, errors.Unwrap(err))}
		} else if !st.IsDir() {
			return &fieldError{"config_dir", fmt.Sprintf("%s is not a folder", cd)}
		}
		for _, f := range configFiles {
			if _, err := os.Stat(filepath.Join(cd, filepath.FromSlash(f))); err != nil {
				missing = append(missing, f)
			}
		}
	default:
		cd = path.Join(dir, cd)
		if !fs.ValidPath(cd) {
			return &fieldError{"config_dir", fmt.Sprintf("%q points outside the file system the registry is read from", m.ConfigDir)}
		}
		for _, f := range configFiles {
			if _, err := fs.Stat(fsys, path.Join(cd, f)); err != nil {
				missing = append(missing, f)
			}
		}
	}
	if len(missing) > 0 {
		return &fieldError{"config_dir", fmt.Sprintf("%s lacks %s (a diffusers-style folder holds %s)",
			cd, strings.Join(missing, ", "), strings.Join(configFiles, ", "))}
	}
	m.ConfigDir = cd
	return nil
}

// Registry is a set of models by id.
type Registry struct {
	byID map[string]*Model
}

// New returns an empty registry.
func New() *Registry { return &Registry{byID: map[string]*Model{}} }

// Add puts m into the registry, replacing an entry with the same id.
func (r *Registry) Add(m *Model) { r.byID[m.ID] = m }

// Merge adds every entry of other to r; entries of other win, and each
// replacement is reported as a Warning on the overriding file.
func (r *Registry) Merge(other *Registry) []Problem {
	var problems []Problem
	for _, m := range other.List() {
		if prev, ok := r.byID[m.ID]; ok {
			problems = append(problems, Problem{File: m.Origin, Severity: Warning,
				Message: fmt.Sprintf("id %q overrides the entry from %s", m.ID, prev.Origin)})
		}
		r.byID[m.ID] = m
	}
	return problems
}

// List returns the models sorted by id.
func (r *Registry) List() []*Model {
	out := make([]*Model, 0, len(r.byID))
	for _, m := range r.byID {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Len is the number of models.
func (r *Registry) Len() int { return len(r.byID) }

// ErrUnknownModel is returned (wrapped) by Resolve for a name that matches no
// model.
var ErrUnknownModel = errors.New("unknown model")

// Resolve finds a model by id; failing that, by its file name with or
// without the .safetensors extension, since A1111-style clients name
// checkpoints by file.
func (r *Registry) Resolve(name string) (*Model, error) {
	if m, ok := r.byID[name]; ok {
		return m, nil
	}
	for _, m := range r.List() {
		if m.File == name || strings.TrimSuffix(m.File, ".safetensors") == name {
			return m, nil
		}
	}
	const maxListed = 20
	var ids []string
	for _, m := range r.List() {
		if len(ids) == maxListed {
			ids = append(ids, fmt.Sprintf("and %d more", r.Len()-maxListed))
			break
		}
		ids = append(ids, m.ID)
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownModel, name, strings.Join(ids, ", "))
}
