package ipadapter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl/clipvision"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// copyAdapter writes a copy of a golden adapter without the named tensors
// and with extra ones.
func copyAdapter(t *testing.T, src string, drop []string, extra ...safetensors.Named) string {
	t.Helper()
	f, err := safetensors.Open(nntest.Golden(t, src))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Named
	for _, n := range f.Names() {
		if slices.Contains(drop, n) {
			continue
		}
		tt, _ := f.Tensor(n)
		data, err := f.ReadRaw(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Named{Name: n, DType: tt.DType, Shape: tt.Shape, Data: data})
	}
	path := filepath.Join(t.TempDir(), "adapter.safetensors")
	if err := safetensors.WriteFile(path, append(ts, extra...), nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// sd15Rows is a plain SD1.5 adapter (ip-adapter_sd15): 768-wide tokens and
// 16 cross-attention layers of 320, 640 and 1280 channels.
func sd15Rows() []row {
	rows := []row{
		{Name: "image_proj.proj.weight", Shape: []int64{3072, 1024}}, {Name: "image_proj.proj.bias", Shape: []int64{3072}},
		{Name: "image_proj.norm.weight", Shape: []int64{768}}, {Name: "image_proj.norm.bias", Shape: []int64{768}},
	}
	chans := []int64{320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320, 1280}
	for j, c := range chans {
		rows = append(rows, row{Name: KeyName(2*j + 1), Shape: []int64{c, 768}}, row{Name: ValueName(2*j + 1), Shape: []int64{c, 768}})
	}
	return rows
}

func TestAdapterErrors(t *testing.T) {
	tiny := tinyConfig(t)
	sd15 := filepath.Join(t.TempDir(), "ip-adapter_sd15.safetensors")
	nntest.WriteHeaderOnly(t, sd15, sd15Rows(), nil)
	faceid := filepath.Join(t.TempDir(), "faceid.safetensors")
	nntest.WriteHeaderOnly(t, faceid, append([]row{{Name: "image_proj.proj.0.weight", Shape: []int64{1024, 512}}}, adapterRows("ip-adapter_sdxl")[4:]...), nil)
	noN55 := []string{KeyName(55), ValueName(55)}
	for _, tc := range []struct {
		name string
		path string
		cfg  unet.Config
		want []string
		bind bool // the error wraps a *nn.BindError
	}{
		{"SD1.5 adapter on SDXL", sd15, unet.Config{}, []string{"768-wide tokens (SD1.x", "takes 2048 (SDXL)"}, false},
		{"missing tensors", copyAdapter(t, plainFile, []string{ValueName(5), "image_proj.norm.bias"}), tiny,
			[]string{"missing ip_adapter.5.to_v_ip.weight [32 32]", "missing image_proj.norm.bias [32]"}, true},
		{"missing layer", copyAdapter(t, plusFile, noN55), tiny,
			[]string{"27 cross-attention layers, this UNet has 28", "missing ip_adapter.55.to_k_ip.weight [64 32]"}, true},
		{"extra tensor", copyAdapter(t, plainFile, nil, safetensors.Named{Name: "ip_adapter.57.to_k_ip.weight", DType: safetensors.F32, Shape: []int64{2}, Data: make([]byte, 8)}), tiny,
			[]string{"ip_adapter.57.to_k_ip.weight [2]: unexpected tensor"}, true},
		{"plus without latents width", copyAdapter(t, plusFile, []string{"image_proj.layers.0.0.to_q.weight"}), tiny,
			[]string{"image_proj.layers.0.0.to_q.weight is missing"}, false},
		{"FaceID", faceid, unet.Config{}, []string{"MLP image projection"}, false},
		{"a UNet file", nntest.Golden(t, "unet-tiny.safetensors"), tiny, []string{"not an IP-Adapter"}, false},
		{"absent", filepath.Join(t.TempDir(), "none.safetensors"), tiny, []string{"open IP-Adapter"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path, tc.cfg)
			if err == nil {
				t.Fatal("opened")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			var be *nn.BindError
			if errors.As(err, &be) != tc.bind {
				t.Errorf("error %v: wraps a *nn.BindError: %v, want %v", err, !tc.bind, tc.bind)
			}
		})
	}
}

// encoderRows lists a transformers CLIP vision file's tensors for the
// full-size towers (only what InferConfig and Bind need to see).
func encoderRows(c clipvision.Config) []row {
	v := "vision_model."
	w := c.Width
	rows := []row{
		{Name: v + "embeddings.patch_embedding.weight", Shape: []int64{w, 3, 14, 14}},
		{Name: v + "embeddings.class_embedding", Shape: []int64{w}},
		{Name: v + "embeddings.position_embedding.weight", Shape: []int64{257, w}},
		{Name: v + "pre_layrnorm.weight", Shape: []int64{w}}, {Name: v + "pre_layrnorm.bias", Shape: []int64{w}},
		{Name: v + "post_layernorm.weight", Shape: []int64{w}}, {Name: v + "post_layernorm.bias", Shape: []int64{w}},
		{Name: "visual_projection.weight", Shape: []int64{c.ProjectionDim, w}},
	}
	for i := range c.Layers {
		l := fmt.Sprintf("%sencoder.layers.%d.", v, i)
		for _, n := range []string{"layer_norm1", "layer_norm2"} {
			rows = append(rows, row{Name: l + n + ".weight", Shape: []int64{w}}, row{Name: l + n + ".bias", Shape: []int64{w}})
		}
		for _, n := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			rows = append(rows, row{Name: l + "self_attn." + n + ".weight", Shape: []int64{w, w}}, row{Name: l + "self_attn." + n + ".bias", Shape: []int64{w}})
		}
		rows = append(rows, row{Name: l + "mlp.fc1.weight", Shape: []int64{c.MLPWidth, w}}, row{Name: l + "mlp.fc1.bias", Shape: []int64{c.MLPWidth}},
			row{Name: l + "mlp.fc2.weight", Shape: []int64{w, c.MLPWidth}}, row{Name: l + "mlp.fc2.bias", Shape: []int64{w}})
	}
	return rows
}

// modelsDir lays out a models folder as package registry scans it, with
// header-only SDXL adapters, a ViT-bigG encoder as a single file and,
// unless noViTH, a ViT-H encoder as a Hugging Face folder.
func modelsDir(t *testing.T, noViTH bool) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "checkpoint.safetensors"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"ip-adapter_sdxl", "ip-adapter_sdxl_vit-h", "ip-adapter-plus_sdxl_vit-h"} {
		nntest.WriteHeaderOnly(t, filepath.Join(dir, "ip-adapters", a+".safetensors"), adapterRows(a), nil)
	}
	enc := filepath.Join(dir, "ip-adapters", "image_encoders")
	nntest.WriteHeaderOnly(t, filepath.Join(enc, "clip-vit-bigG.safetensors"), encoderRows(clipvision.ViTBigG14()), nil)
	if !noViTH {
		nntest.WriteHeaderOnly(t, filepath.Join(enc, "vit-h", "model.safetensors"), encoderRows(clipvision.ViTH14()), nil)
	}
	return dir
}

func TestFindEncoder(t *testing.T) {
	dir := modelsDir(t, false)
	enc := filepath.Join(dir, "ip-adapters", "image_encoders")
	for _, tc := range []struct{ adapter, want string }{
		{"ip-adapter_sdxl", filepath.Join(enc, "clip-vit-bigG.safetensors")},
		{"ip-adapter_sdxl_vit-h", filepath.Join(enc, "vit-h", "model.safetensors")},
		{"ip-adapter-plus_sdxl_vit-h", filepath.Join(enc, "vit-h", "model.safetensors")},
	} {
		got, err := FindEncoderIn(dir, filepath.Join(dir, "ip-adapters", tc.adapter+".safetensors"))
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.adapter, got, err, tc.want)
		}
	}
	lone := modelsDir(t, true)
	_, err := FindEncoderIn(lone, filepath.Join(lone, "ip-adapters", "ip-adapter-plus_sdxl_vit-h.safetensors"))
	if err == nil || !strings.Contains(err.Error(), "needs CLIP ViT-H/14") || !strings.Contains(err.Error(), "clip-vit-bigG.safetensors (CLIP ViT-bigG/14)") {
		t.Errorf("no ViT-H installed: %v", err)
	}
	if _, err := FindEncoder(filepath.Join(lone, "ip-adapters", "ip-adapter_sdxl_vit-h.safetensors"), nil); err == nil || !strings.Contains(err.Error(), "none is installed") {
		t.Errorf("no candidates: %v", err)
	}
}

// TestWrongEncoder loads adapters with an encoder of the wrong width: the
// error names what the adapter needs, before any session is made.
func TestWrongEncoder(t *testing.T) {
	dir := modelsDir(t, false)
	bigG := filepath.Join(dir, "ip-adapters", "image_encoders", "clip-vit-bigG.safetensors")
	vitH := filepath.Join(dir, "ip-adapters", "image_encoders", "vit-h", "model.safetensors")
	for _, tc := range []struct {
		adapter, encoder string
		cfg              unet.Config
		want             string
	}{
		{filepath.Join(dir, "ip-adapters", "ip-adapter_sdxl_vit-h.safetensors"), bigG, unet.Config{},
			"reads 1024-wide image_embeds (CLIP ViT-H/14, h94/IP-Adapter models/image_encoder); this image encoder (CLIP ViT-bigG/14) gives 1280-wide ones"},
		{filepath.Join(dir, "ip-adapters", "ip-adapter-plus_sdxl_vit-h.safetensors"), bigG, unet.Config{},
			"reads 1280-wide hidden states (CLIP ViT-H/14"},
		{filepath.Join(dir, "ip-adapters", "ip-adapter_sdxl.safetensors"), vitH, unet.Config{},
			"reads 1280-wide image_embeds (CLIP ViT-bigG/14"},
		{nntest.Golden(t, plainFile), vitH, tinyConfig(t), "reads 24-wide image_embeds"},
	} {
		_, err := Load(nntest.Env(t), tc.adapter, tc.encoder, Options{UNet: tc.cfg})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s with %s: %v", filepath.Base(tc.adapter), filepath.Base(tc.encoder), err)
		}
	}
}
