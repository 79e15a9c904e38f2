package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/pngmeta"
)

func TestGenerateWritesPNGsWithMetadata(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tiny.safetensors"), src, 0o644)
	os.WriteFile(filepath.Join(dir, "tiny.toml"), []byte(fmt.Sprintf("id = \"tiny\"\ndisplay_name = \"Tiny\"\nfile = \"tiny.safetensors\"\narchitecture = \"sdxl\"\nconfig_dir = %q\n[defaults]\ncfg = 4.0\nsteps = 2\nwidth = 64\nheight = 64\nsampler = \"euler\"\n", nntest.Golden(t, "pipeline/configs"))), 0o644)
	out := filepath.Join(dir, "out.png")
	v, stderr, code := runJSON(t, "generate", "--provider", "cpu", "--models", dir, "-m", "tiny", "-p", "1girl, solo", "--seed", "5", "--batch", "2", "--size", "128x64", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	files := v["files"].([]any)
	if len(files) != 2 || files[1] != filepath.Join(dir, "out-1.png") || !strings.Contains(stderr, "step 2/2") {
		t.Fatalf("printed %v; stderr %q", v, stderr)
	}
	for i, f := range files {
		raw, err := os.ReadFile(f.(string))
		if err != nil {
			t.Fatal(err)
		}
		md, err := pngmeta.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Steps: 2", "CFG scale: 4", fmt.Sprintf("Seed: %d", 5+i), "Size: 128x64", "Model: tiny"} {
			if !strings.Contains(md.Parameters, want) {
				t.Errorf("%s lacks %q: %s", f, want, md.Parameters)
			}
		}
	}
	for _, bad := range [][]string{
		{"generate", "--provider", "cpu", "--models", dir, "-m", "nope", "-p", "x", "-o", out},
		{"generate", "--provider", "cpu", "--models", dir, "-m", "tiny", "-p", "x", "--size", "100x64", "-o", out},
		{"generate", "--provider", "cpu", "--models", dir, "-m", "tiny", "-p", "x", "--size", "big", "-o", out},
		{"generate", "-p", "x"},
	} {
		if _, stderr, code := runJSON(t, bad...); code == 0 || stderr == "" {
			t.Errorf("%v: exit %d", bad, code)
		} else {
			t.Log(strings.TrimSpace(stderr))
		}
	}
}
