package pipeline

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sampler"
	"github.com/pixery/pixery/engine/sdxl"
)

// TestVPredictionCheckpoint: a checkpoint marked v_pred + ztsnr (NoobAI's
// v-pred release marks itself so) is run as v-prediction on the
// zero-terminal-SNR schedule, with CFG rescale, and gives finite images
// that differ from the epsilon reading of the same weights.
func TestVPredictionCheckpoint(t *testing.T) {
	src, err := safetensors.Open(nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var named []safetensors.Named
	for _, tt := range src.Tensors() {
		raw, err := src.ReadRaw(tt.Name)
		if err != nil {
			t.Fatal(err)
		}
		named = append(named, safetensors.Named{Name: tt.Name, DType: tt.DType, Shape: tt.Shape, Data: raw})
	}
	empty, _ := safetensors.EncodeFloat32(safetensors.F32, []float32{0})
	named = append(named,
		safetensors.Named{Name: "v_pred", DType: safetensors.F32, Shape: []int64{}, Data: empty[:4]},
		safetensors.Named{Name: "ztsnr", DType: safetensors.F32, Shape: []int64{}, Data: empty[:4]})
	path := filepath.Join(t.TempDir(), "vpred.safetensors")
	if err := safetensors.WriteFile(path, named, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := sdxl.LoadConfigDir(nntest.Golden(t, "pipeline/configs"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(context.Background(), nntest.Env(t), path, LoadOptions{Configs: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Prediction() != sampler.VPrediction || !m.Info.ZeroTerminalSNR {
		t.Fatalf("prediction %v, ztsnr %v", m.Prediction(), m.Info.ZeroTerminalSNR)
	}
	eps := tinyModel(t)
	req := Request{Prompt: "1girl", NegativePrompt: "lowres", Width: 64, Height: 64, Steps: 4, CFG: 5, CFGRescale: 0.7, Sampler: "euler", Batch: 1, Seed: 3, Variant: sampler.A1111}
	var first float64
	req.Trace = func(name string, d []float32) {
		if name == "initial_latents_times_init_noise_sigma" {
			first = math.Abs(float64(d[0]))
		}
	}
	a, err := m.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	firstV := first
	b, err := eps.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Zero terminal SNR makes the first sigma huge (A1111: 4518.8 at the
	// rescaled end), so the starting latent is scaled far more than with
	// SDXL's 14.6.
	if firstV < 50*first {
		t.Errorf("initial latent |x0| %.3g (v-pred, ztsnr) vs %.3g (epsilon): the zero-SNR schedule was not used", firstV, first)
	}
	same := true
	for i := range a.Images[0].RGB.Pix {
		if a.Images[0].RGB.Pix[i] != b.Images[0].RGB.Pix[i] {
			same = false
			break
		}
	}
	if same {
		t.Error("v-prediction and epsilon gave the same image")
	}
}
