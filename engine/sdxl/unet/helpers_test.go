package unet

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
)

// sdxlWeights opens a header-only full-size SDXL UNet checkpoint.
func sdxlWeights(tb testing.TB) (*nn.Weights, []nntest.Row) {
	tb.Helper()
	rows := nntest.SDXLKeys(tb, "unet")
	path := tb.TempDir() + "/sdxl-unet-header.safetensors"
	nntest.WriteHeaderOnly(tb, path, rows, nil)
	return nntest.OpenWeights(tb, path), rows
}

// params lists every non-nil parameter of a module tree (test-side walk,
// independent of nn's binder, to check what the binder did).
func params(module any) []*nn.Param {
	var out []*nn.Param
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch {
		case v.Type() == reflect.TypeOf((*nn.Param)(nil)):
			if !v.IsNil() {
				out = append(out, v.Interface().(*nn.Param))
			}
		case v.Kind() == reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case v.Kind() == reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case v.Kind() == reflect.Struct:
			for i := range v.NumField() {
				if _, ok := v.Type().Field(i).Tag.Lookup("sd"); ok {
					walk(v.Field(i))
				}
			}
		}
	}
	walk(reflect.ValueOf(module))
	return out
}

// tinyConfigJSON is the golden tiny UNet's diffusers config, as a map that
// tests can alter.
func tinyConfigJSON(tb testing.TB) map[string]any {
	tb.Helper()
	var doc struct {
		Config map[string]any `json:"config_diffusers"`
	}
	readJSON(tb, nntest.Golden(tb, "unet-tiny.json"), &doc)
	if doc.Config == nil {
		tb.Fatal("unet-tiny.json has no config_diffusers")
	}
	return doc.Config
}

func readJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
}

func tinyConfig(tb testing.TB) Config {
	tb.Helper()
	data, _ := json.Marshal(tinyConfigJSON(tb))
	c, err := ParseConfig(data)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// tinyModel opens the golden tiny checkpoint (plus extra files) and binds
// the tiny UNet.
func tinyModel(tb testing.TB, extra ...string) (*Model, *nn.Weights) {
	tb.Helper()
	w := nntest.OpenWeights(tb, append([]string{nntest.Golden(tb, "unet-tiny.safetensors")}, extra...)...)
	m, err := New(tinyConfig(tb))
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Bind(w); err != nil {
		tb.Fatal(err)
	}
	return m, w
}
