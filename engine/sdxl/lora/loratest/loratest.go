// Package loratest writes small LoRA files for the tests of packages that
// find and apply LoRAs (the engine service, the CLI).
package loratest

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/lora"
)

// WriteTiny writes to path (creating its folder) a kohya-format LoRA of
// rank 4 and alpha 2 for the first perComponent default layers of each
// component (UNet and text encoders) of the tiny pipeline model, with
// random factors drawn from r, so that applying it visibly changes an
// image.
func WriteTiny(t testing.TB, path string, r *rand.Rand, perComponent int) {
	t.Helper()
	cfg, err := sdxl.LoadConfigDir(nntest.Golden(t, "pipeline/configs"))
	if err != nil {
		t.Fatal(err)
	}
	arch, err := lora.NewArch(cfg)
	if err != nil {
		t.Fatal(err)
	}
	alpha, _ := safetensors.EncodeFloat32(safetensors.F32, []float32{2})
	var ts []safetensors.Named
	picked := map[sdxl.Component]int{}
	for _, l := range arch.Layers() {
		if !l.Default || l.Part != "" || picked[l.Component] >= perComponent {
			continue
		}
		picked[l.Component]++
		ts = append(ts,
			nntest.RandomF32(r, l.Kohya+".lora_down.weight", 0.5, l.DownShape(4)...),
			nntest.RandomF32(r, l.Kohya+".lora_up.weight", 0.5, l.UpShape(4)...),
			safetensors.Named{Name: l.Kohya + ".alpha", DType: safetensors.F32, Shape: []int64{}, Data: alpha})
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}
