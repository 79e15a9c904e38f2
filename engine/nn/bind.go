package nn

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pixery/pixery/engine/safetensors"
)

// Weights is the set of checkpoint files a network's parameters are bound
// from, with a record of which keys have been bound.
type Weights struct {
	files []*safetensors.File
	index map[string]*safetensors.File
	used  map[string]string // key → Go path of the field that bound it
}

// NewWeights indexes the tensors of the given files. A key present in two
// files is an error: it would be ambiguous which one the network uses.
func NewWeights(files ...*safetensors.File) (*Weights, error) {
	w := &Weights{index: map[string]*safetensors.File{}, used: map[string]string{}}
	for _, f := range files {
		w.files = append(w.files, f)
		for _, n := range f.Names() {
			if other, dup := w.index[n]; dup {
				return nil, fmt.Errorf("tensor %q is in both %s and %s", n, other.Path, f.Path)
			}
			w.index[n] = f
		}
	}
	return w, nil
}

// Files returns the files the weights come from.
func (w *Weights) Files() []*safetensors.File { return w.files }

// Has reports whether a tensor of that name exists.
func (w *Weights) Has(key string) bool { _, ok := w.index[key]; return ok }

// Lookup returns the tensor of that name and the file holding it.
func (w *Weights) Lookup(key string) (*safetensors.Tensor, *safetensors.File, bool) {
	f, ok := w.index[key]
	if !ok {
		return nil, nil, false
	}
	t, _ := f.Tensor(key)
	return t, f, true
}

// Dir returns the deepest folder that contains every file's real path; it is
// the folder ONNX Runtime resolves external data against.
func (w *Weights) Dir() string {
	var dir string
	for i, f := range w.files {
		d := filepath.Dir(f.RealPath)
		if i == 0 {
			dir = d
			continue
		}
		for !within(dir, d) {
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return dir
}

func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func externalLocation(dir, real string) (string, error) {
	if dir == "" {
		return "", errors.New("builder has no external-data folder")
	}
	rel, err := filepath.Rel(dir, real)
	if err != nil || !within(dir, real) {
		return "", fmt.Errorf("%s is not inside the external-data folder %s", real, dir)
	}
	return filepath.ToSlash(rel), nil
}

// BindError lists every problem found while binding a network, so that a
// checkpoint of another architecture is explained in one message.
type BindError struct {
	Prefix   string
	Missing  []string // "key (expected shape)"
	Mismatch []string // "key: shape X, expected Y"
	Other    []string
}

func (e *BindError) Error() string {
	var b strings.Builder
	n := len(e.Missing) + len(e.Mismatch) + len(e.Other)
	fmt.Fprintf(&b, "%d problem(s) binding %s*:", n, e.Prefix)
	list := func(label string, items []string) {
		for i, s := range items {
			if i == 8 {
				fmt.Fprintf(&b, " … and %d more %s", len(items)-8, label)
				break
			}
			fmt.Fprintf(&b, " %s %s;", label, s)
		}
	}
	list("missing", e.Missing)
	list("wrong shape", e.Mismatch)
	list("invalid", e.Other)
	return strings.TrimSuffix(b.String(), ";")
}

// Bind walks module (a pointer to a struct) and binds every tagged
// parameter to the tensor "prefix + path". All problems are collected into
// one *BindError.
func (w *Weights) Bind(prefix string, module any) error {
	e := &BindError{Prefix: prefix}
	err := walk(prefix, module, func(key, gopath string, p *Param) { w.bindParam(key, p, gopath, e) })
	if err != nil {
		return err
	}
	if len(e.Missing)+len(e.Mismatch)+len(e.Other) > 0 {
		return e
	}
	return nil
}

// Walk calls fn for every parameter of module (a pointer to a struct) with
// its full checkpoint key, in field order. Tools that write checkpoints or
// list a network's keys use it, so they agree with Bind by construction.
func Walk(prefix string, module any, fn func(key string, p *Param)) error {
	return walk(prefix, module, func(key, _ string, p *Param) { fn(key, p) })
}

var paramType = reflect.TypeOf((*Param)(nil))

func walk(prefix string, module any, fn func(key, gopath string, p *Param)) error {
	v := reflect.ValueOf(module)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("nn: module must be a pointer to a struct, got %T", module)
	}
	var bad []string
	walkStruct(prefix, v, reflect.TypeOf(module).Elem().Name(), fn, &bad)
	if len(bad) > 0 {
		return fmt.Errorf("nn: %s", strings.Join(bad, "; "))
	}
	return nil
}

func walkStruct(prefix string, v reflect.Value, gopath string, fn func(key, gopath string, p *Param), bad *[]string) {
	s := v.Elem()
	t := s.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("sd")
		if !ok || tag == "-" {
			continue
		}
		walkField(prefix+tag, s.Field(i), gopath+"."+f.Name, fn, bad)
	}
}

func walkField(key string, fv reflect.Value, gopath string, fn func(key, gopath string, p *Param), bad *[]string) {
	switch {
	case fv.Type() == paramType:
		if !fv.IsNil() {
			fn(key, gopath, fv.Interface().(*Param))
		}
	case fv.Kind() == reflect.Pointer && fv.Elem().Kind() == reflect.Struct:
		if !fv.IsNil() {
			walkStruct(key+".", fv, gopath, fn, bad)
		}
	case fv.Kind() == reflect.Pointer && fv.IsNil():
		// A module the architecture leaves out.
	case fv.Kind() == reflect.Slice:
		for j := 0; j < fv.Len(); j++ {
			walkField(key+"."+strconv.Itoa(j), fv.Index(j), gopath+"["+strconv.Itoa(j)+"]", fn, bad)
		}
	case fv.Kind() == reflect.Interface && !fv.IsNil():
		walkField(key, fv.Elem(), gopath, fn, bad)
	case fv.Kind() == reflect.Interface:
	default:
		*bad = append(*bad, fmt.Sprintf("%s: field %s has unsupported type %s", key, gopath, fv.Type()))
	}
}

func (w *Weights) bindParam(key string, p *Param, gopath string, e *BindError) {
	if prev, dup := w.used[key]; dup {
		e.Other = append(e.Other, fmt.Sprintf("%s: bound twice (%s and %s)", key, prev, gopath))
		return
	}
	t, f, ok := w.Lookup(key)
	if !ok {
		if !p.Optional {
			e.Missing = append(e.Missing, fmt.Sprintf("%s %v", key, p.Shape))
		}
		return
	}
	if !floatDType(t.DType) {
		e.Other = append(e.Other, fmt.Sprintf("%s: dtype %s cannot hold weights (want F32, F16 or BF16)", key, t.DType))
		return
	}
	if !shapeCompatible(t.Shape, p.Shape) {
		e.Mismatch = append(e.Mismatch, fmt.Sprintf("%s: shape %v, expected %v", key, t.Shape, p.Shape))
		return
	}
	p.Key, p.File, p.Tensor = key, f, t
	w.used[key] = gopath
}

// shapeCompatible accepts the expected shape, or the same shape with
// trailing 1×1 kernel dimensions (attention projections the VAE stores as
// 1×1 convolutions are read as matrices).
func shapeCompatible(got, want []int64) bool {
	if slices.Equal(got, want) {
		return true
	}
	if len(got) == len(want)+2 && got[len(got)-1] == 1 && got[len(got)-2] == 1 {
		return slices.Equal(got[:len(want)], want)
	}
	return false
}

// Used reports whether the key has been bound.
func (w *Weights) Used(key string) bool { _, ok := w.used[key]; return ok }

// NumUsed is the number of keys bound so far.
func (w *Weights) NumUsed() int { return len(w.used) }

// Unused returns, sorted, the keys under any of the prefixes that no
// parameter bound.
func (w *Weights) Unused(prefixes ...string) []string {
	var out []string
	for k := range w.index {
		if _, ok := w.used[k]; ok {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				out = append(out, k)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
