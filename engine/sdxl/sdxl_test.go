package sdxl

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/safetensors"
)

// row is one tensor of a header-only checkpoint.
type row = nntest.Row

// keyRows reads testdata/sdxl/checkpoint-keys.tsv: the 2,515 tensors of
// sd_xl_base_1.0.safetensors.
func keyRows(t *testing.T) []row {
	t.Helper()
	rows := nntest.SDXLKeys(t)
	if len(rows) != 2515 {
		t.Fatalf("%d rows, want 2515", len(rows))
	}
	return rows
}

// writeSparse writes a header-only F16 checkpoint: the data section is a
// hole, so a 6.9 GB file takes no disk.
func writeSparse(t *testing.T, rows []row) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sdxl.safetensors")
	nntest.WriteHeaderOnly(t, p, rows, nil)
	return p
}

func TestFullSizeCheckpointBindsEveryKeyOnce(t *testing.T) {
	rows := keyRows(t)
	extra := append(slices.Clone(rows),
		row{Name: "v_pred"}, row{Name: "ztsnr"},
		row{Name: "something_else", Shape: []int64{1}})
	p := writeSparse(t, extra)
	c, err := Open(p, Default())
	if err != nil {
		t.Fatal(err)
	}
	info := c.Info
	if info.Architecture != ArchSDXL || info.Prediction != VPrediction || !info.ZeroTerminalSNR || info.DType != "F16" {
		t.Fatalf("info = %s", info)
	}
	perComp := map[string]int{}
	for _, r := range rows {
		perComp[r.Component]++
	}
	for comp, want := range map[Component]int{UNet: 1680, CLIPL: 196, CLIPG: 389, VAE: 248} {
		if got := info.Components[comp].Tensors; got != want {
			t.Errorf("%s: %d tensors counted, want %d", comp, got, want)
		}
	}
	if info.Params != 3468837945+2+1 {
		t.Errorf("params = %d", info.Params)
	}
	bound := 0
	for _, r := range rows {
		if c.Weights.Used(r.Name) {
			bound++
			continue
		}
		if !slices.Contains(knownExtras, r.Name) {
			t.Errorf("%s (%s) not bound", r.Name, r.Component)
		}
	}
	if bound != 2515-2 || c.Weights.NumUsed() != bound {
		t.Errorf("bound %d keys (NumUsed %d), want 2513 (2515 less position_ids and logit_scale)", bound, c.Weights.NumUsed())
	}
	if u := c.Unknown(); !slices.Equal(u, []string{"something_else"}) {
		t.Errorf("unknown = %v", u)
	}
	if !slices.Equal(info.Unknown, []string{"something_else"}) {
		t.Errorf("header-level unknown = %v", info.Unknown)
	}
	t.Logf("bound %d of %d keys; known extras %v", bound, len(extra), info.KnownExtras)

	// A tensor inside a network's namespace that no layer takes means the
	// sizes do not match the file: refused, and named.
	_, err = Open(writeSparse(t, append(slices.Clone(rows), row{Name: "model.diffusion_model.mystery.weight", Shape: []int64{4}})), Default())
	if err == nil || !strings.Contains(err.Error(), "model.diffusion_model.mystery.weight [4]: unexpected tensor") {
		t.Fatalf("unexpected UNet tensor: %v", err)
	}
}

func TestMissingAndMisshapenTensorsAreNamed(t *testing.T) {
	rows := keyRows(t)
	var kept []row
	for _, r := range rows {
		switch r.Name {
		case "model.diffusion_model.output_blocks.4.1.transformer_blocks.1.attn2.to_k.weight":
			continue
		case "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight":
			r.Shape = []int64{256, 512, 3, 3}
		}
		kept = append(kept, r)
	}
	_, err := Open(writeSparse(t, kept), Default())
	if err == nil {
		t.Fatal("a damaged checkpoint opened")
	}
	for _, want := range []string{
		"unet:", "missing model.diffusion_model.output_blocks.4.1.transformer_blocks.1.attn2.to_k.weight [640 2048]",
		"vae:", "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight: shape [256 512 3 3], expected [256 512 1 1]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestOtherArchitecturesAreRefused(t *testing.T) {
	cases := map[string]struct {
		keys []string
		want string
	}{
		"sd1.5":   {[]string{"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "model.diffusion_model.input_blocks.1.1.proj_in.weight"}, "sd1"},
		"sd2":     {[]string{"cond_stage_model.model.token_embedding.weight", "model.diffusion_model.out.2.weight"}, "sd2"},
		"refiner": {[]string{"conditioner.embedders.0.model.token_embedding.weight", "model.diffusion_model.out.2.weight"}, "sdxl-refiner"},
		"unknown": {[]string{"transformer.h.0.attn.weight"}, "unknown"},
	}
	for name, tc := range cases {
		var rows []row
		for _, k := range tc.keys {
			rows = append(rows, row{Name: k, Shape: []int64{2, 2}})
		}
		_, err := Open(writeSparse(t, rows), Default())
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "this is "+tc.want+" (") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTinyPipelineCheckpointWithConfigDir(t *testing.T) {
	cfg, err := LoadConfigDir(nntest.Golden(t, "pipeline/configs"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UNet.Groups != 8 || cfg.VAE.NormGroups != 4 || cfg.CLIPG.Heads != 3 {
		t.Fatalf("configs not read: %+v", cfg)
	}
	c, err := Open(nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Unknown(); len(u) != 0 {
		t.Fatalf("unknown keys %v", u)
	}
	if got := c.Weights.NumUsed(); got != 1075-2 {
		t.Fatalf("bound %d of 1075 tensors", got)
	}
	// SDXL's sizes do not fit the tiny file: the error names tensors.
	if _, err := Open(nntest.Golden(t, "pipeline/sdxl-tiny.safetensors"), Default()); err == nil || !strings.Contains(err.Error(), "expected [") {
		t.Fatalf("tiny file with SDXL sizes: %v", err)
	}
}

func TestConfigDirErrors(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "unet"), 0o755)
	os.WriteFile(filepath.Join(dir, "unet", "config.json"), []byte(`{"block_out_channels": "wide"}`), 0o644)
	if _, err := LoadConfigDir(dir); err == nil || !strings.Contains(err.Error(), filepath.Join("unet", "config.json")) {
		t.Fatalf("got %v", err)
	}
	cfg, err := LoadConfigDir(t.TempDir())
	if err != nil || cfg.UNet.Channels[0] != 320 {
		t.Fatalf("empty dir: %v %v", cfg.UNet.Channels, err)
	}
}

func TestRandomCheckpointIsDeterministicAndBinds(t *testing.T) {
	cfg, err := LoadConfigDir(nntest.Golden(t, "pipeline/configs"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sum := func(p string) string {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		io.Copy(h, f)
		return string(h.Sum(nil))
	}
	a, b, c := filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors"), filepath.Join(dir, "c.safetensors")
	var calls int
	if err := WriteRandom(context.Background(), a, cfg, safetensors.F16, 7, func(done, total int64) { calls++ }); err != nil {
		t.Fatal(err)
	}
	if err := WriteRandom(context.Background(), b, cfg, safetensors.F16, 7, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteRandom(context.Background(), c, cfg, safetensors.F16, 8, nil); err != nil {
		t.Fatal(err)
	}
	if sum(a) != sum(b) || sum(a) == sum(c) {
		t.Fatal("same seed gave different files, or different seeds the same")
	}
	ck, err := Open(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Unknown()) != 0 || ck.Weights.NumUsed() != ck.File.Len() || calls != ck.File.Len() {
		t.Fatalf("unknown %v, bound %d of %d, progress calls %d", ck.Unknown(), ck.Weights.NumUsed(), ck.File.Len(), calls)
	}
	// The full-size key set equals the real checkpoint's, shapes included.
	specs, err := Specs(Default(), safetensors.F16)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, r := range keyRows(t) {
		if !slices.Contains(knownExtras, r.Name) {
			want[r.Name] = strings.Trim(strings.Join(strings.Fields(strings.Trim(fmtShape(r.Shape), "[]")), "x"), "")
		}
	}
	if len(specs) != len(want) {
		t.Fatalf("%d specs, real checkpoint has %d network tensors", len(specs), len(want))
	}
	for _, s := range specs {
		if w, ok := want[s.Name]; !ok || w != strings.Join(strings.Fields(strings.Trim(fmtShape(s.Shape), "[]")), "x") {
			t.Errorf("%s %v: real checkpoint has %q", s.Name, s.Shape, w)
		}
	}
}

func fmtShape(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
