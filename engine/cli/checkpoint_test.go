package cli

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
)

func runJSON(t *testing.T, args ...string) (map[string]any, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	var v map[string]any
	if code == 0 {
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Fatalf("%v: output is not JSON: %q", args, out.String())
		}
	}
	return v, errb.String(), code
}

// configFile writes a golden JSON's sub-object as a config.json.
func configFile(t *testing.T, golden string, path ...string) string {
	t.Helper()
	data, err := os.ReadFile(nntest.Golden(t, golden))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	json.Unmarshal(data, &v)
	for _, k := range path {
		v = v.(map[string]any)[k]
	}
	b, _ := json.Marshal(v)
	p := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(p, b, 0o644)
	return p
}

func TestRunComponentMatchesGolden(t *testing.T) {
	cases := []struct {
		comp, ckpt, io, config string
		cfgPath                []string
		pairs                  map[string]string // output → golden tensor
	}{
		{"unet", "unet-tiny.safetensors", "unet-tiny-io.safetensors", "unet-tiny.json", []string{"config_diffusers"}, map[string]string{"out": "out"}},
		{"vae_decoder", "vae-tiny.safetensors", "vae-tiny-io.safetensors", "vae-tiny.json", []string{"config_diffusers"}, map[string]string{"image": "image"}},
		{"vae_encoder", "vae-tiny.safetensors", "vae-tiny-io.safetensors", "vae-tiny.json", []string{"config_diffusers"}, map[string]string{"moments": "enc_moments"}},
		{"clip_l", "text-encoders-tiny.safetensors", "text-encoders-tiny-io.safetensors", "text-encoders-tiny.json", []string{"encoder1", "config"},
			map[string]string{"penultimate": "enc1_penultimate", "hidden": "enc1_last_hidden_state", "pooled": "enc1_pooled_output"}},
		{"clip_g", "text-encoders-tiny.safetensors", "text-encoders-tiny-io.safetensors", "text-encoders-tiny.json", []string{"encoder2", "config"},
			map[string]string{"penultimate": "enc2_penultimate", "pooled": "enc2_text_embeds"}},
	}
	for _, c := range cases {
		out := filepath.Join(t.TempDir(), "out.safetensors")
		v, stderr, code := runJSON(t, "run-component", "--checkpoint", nntest.Golden(t, c.ckpt), "--config", configFile(t, c.config, c.cfgPath...),
			"--component", c.comp, "--inputs", nntest.Golden(t, c.io), "--out", out, "--provider", "cpu")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.comp, code, stderr)
		}
		if v["component"] != c.comp {
			t.Errorf("%s: printed %v", c.comp, v)
		}
		got, err := safetensors.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := safetensors.Open(nntest.Golden(t, c.io))
		for o, g := range c.pairs {
			a, err := got.ReadFloat32(o)
			if err != nil {
				t.Fatalf("%s: %v", c.comp, err)
			}
			b, _ := want.ReadFloat32(g)
			if len(a) != len(b) {
				t.Fatalf("%s %s: %d values, want %d", c.comp, o, len(a), len(b))
			}
			var d float64
			for i := range a {
				d = math.Max(d, math.Abs(float64(a[i]-b[i])))
			}
			t.Logf("%s %s vs %s: max|Δ| %.3g", c.comp, o, g, d)
			if d > 1e-4 {
				t.Errorf("%s %s: max|Δ| %g", c.comp, o, d)
			}
		}
	}
}

func TestRunComponentErrors(t *testing.T) {
	dir := t.TempDir()
	cases := [][]string{
		{"run-component"},
		{"run-component", "--checkpoint", "x", "--component", "toaster", "--inputs", "i", "--out", filepath.Join(dir, "o")},
		{"run-component", "--checkpoint", filepath.Join(dir, "missing.safetensors"), "--component", "unet", "--inputs", "i", "--out", filepath.Join(dir, "o")},
		// SDXL sizes against the tiny file: the error names tensors.
		{"run-component", "--checkpoint", nntest.Golden(t, "unet-tiny.safetensors"), "--component", "unet", "--inputs", nntest.Golden(t, "unet-tiny-io.safetensors"), "--out", filepath.Join(dir, "o"), "--provider", "cpu"},
		// Inputs for another network.
		{"run-component", "--checkpoint", nntest.Golden(t, "vae-tiny.safetensors"), "--config", configFile(t, "vae-tiny.json", "config_diffusers"), "--component", "vae_decoder", "--inputs", nntest.Golden(t, "unet-tiny-io.safetensors"), "--out", filepath.Join(dir, "o"), "--provider", "cpu"},
	}
	for _, args := range cases {
		_, stderr, code := runJSON(t, args...)
		if code == 0 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
		t.Logf("%s", strings.TrimSpace(stderr))
	}
}

func TestInspectAndMakeCheckpoint(t *testing.T) {
	out := filepath.Join(t.TempDir(), "rand.safetensors")
	cfgDir := nntest.Golden(t, "pipeline/configs")
	v, stderr, code := runJSON(t, "make-checkpoint", "--random", "--config", cfgDir, "--dtype", "bf16", "--seed", "3", "--out", out, "--quiet")
	if code != 0 {
		t.Fatalf("make-checkpoint: %s", stderr)
	}
	if v["dtype"] != "BF16" {
		t.Errorf("printed %v", v)
	}
	v, stderr, code = runJSON(t, "inspect", "--config", cfgDir, out)
	if code != 0 {
		t.Fatalf("inspect: %s", stderr)
	}
	if v["architecture"] != "sdxl" || v["dtype"] != "BF16" || v["bind_problem"] != nil || len(v["unbound_keys"].([]any)) != 0 {
		t.Fatalf("inspect printed %v", v)
	}
	comps := v["components"].(map[string]any)
	if len(comps) != 4 || v["bound"].(float64) != v["tensors"].(float64) {
		t.Fatalf("inspect printed %v", v)
	}
	// The tiny pipeline file with SDXL's sizes: described, with the problem.
	v, _, code = runJSON(t, "inspect", nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"))
	if code != 0 || v["bind_problem"] == nil || len(v["known_extras"].([]any)) != 2 {
		t.Fatalf("inspect tiny without config: %v", v)
	}
	if _, _, code := runJSON(t, "make-checkpoint", "--out", out); code != 2 {
		t.Error("make-checkpoint without --random accepted")
	}
	if _, _, code := runJSON(t, "inspect", filepath.Join(t.TempDir(), "none")); code != 1 {
		t.Error("inspect of a missing file did not fail")
	}
}
