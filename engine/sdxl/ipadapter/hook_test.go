package ipadapter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image/png"
	"slices"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/sdxl/clipvision"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// loadTiny loads an adapter with the tiny encoder for the tiny UNet.
func loadTiny(t testing.TB, adapter string) *Model {
	t.Helper()
	m, err := Load(nntest.Env(t), nntest.Golden(t, adapter), nntest.Golden(t, encoderFile), Options{UNet: tinyConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestOffIsPlain checks that the hooked UNet gives the plain UNet's output
// at scale 0, with one zero token (Hook.Off) and with no image tokens.
func TestOffIsPlain(t *testing.T) {
	plain, _ := tinyUNet(t, false)
	hooked, h := tinyUNet(t, true)
	io := nntest.Golden(t, unetIO)
	want := run(t, plain, unetInputs(t, io, nil))[unet.Output]
	c, err := loadTiny(t, plusFile).Encode(context.Background(), rawImage(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	zero, err := c.Inputs(1, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	empty := map[string]runtime.Tensor{}
	for _, l := range h.Layers {
		empty[KeyInput(l.N)] = runtime.F32([]float32{}, 2, 0, l.Channels)
		empty[ValueInput(l.N)] = runtime.F32([]float32{}, 2, 0, l.Channels)
	}
	for _, tc := range []struct {
		name string
		in   map[string]runtime.Tensor
	}{{"scale 0", zero}, {"Off (one zero token)", h.Off(2)}, {"no image tokens", empty}} {
		got := run(t, hooked, unetInputs(t, io, tc.in))[unet.Output]
		nntest.ExpectClose(t, tc.name+" vs the plain graph", got, want, 1e-6)
	}
}

func TestHookAndUnhook(t *testing.T) {
	w := nntest.OpenWeights(t, nntest.Golden(t, "unet-tiny.safetensors"))
	m, err := unet.New(tinyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Bind(w); err != nil {
		t.Fatal(err)
	}
	inputs := func() []string {
		g, err := m.Build(w, nn.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return g.Inputs
	}
	plain := inputs()
	h := HookUNet(m)
	h2 := HookUNet(m) // a second call adds nothing
	if !slices.Equal(h.Layers, h2.Layers) {
		t.Error("hooking twice changed the layer list")
	}
	for _, a := range m.CrossAttentions() {
		if len(a.Extra) != 1 {
			t.Fatalf("a cross-attention has %d extra terms after hooking twice", len(a.Extra))
		}
	}
	hooked := inputs()
	if len(hooked) != len(plain)+2*len(h.Layers) || len(h.Layers) != 28 {
		t.Errorf("hooked graph: %d inputs for %d layers (plain: %d)", len(hooked), len(h.Layers), len(plain))
	}
	Unhook(m)
	if got := inputs(); !slices.Equal(got, plain) {
		t.Errorf("after Unhook the graph takes %v, want %v", got, plain)
	}
}

// TestInputsLayout checks the rows Inputs lays out for the pipeline: with
// guidance the negatives first, values scaled, keys not.
func TestInputsLayout(t *testing.T) {
	c, err := loadTiny(t, plainFile).Encode(context.Background(), rawImage(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		batch int
		cfg   bool
		rows  []int // source row per output row: 0 negative, 1 image
	}{{2, true, []int{0, 0, 1, 1}}, {3, false, []int{1, 1, 1}}, {1, true, []int{0, 1}}} {
		in, err := c.Inputs(tc.batch, tc.cfg, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		if len(in) != 2*len(c.Layers()) {
			t.Fatalf("%d inputs for %d layers", len(in), len(c.Layers()))
		}
		for j, l := range c.Layers() {
			k, v := in[KeyInput(l.N)], in[ValueInput(l.N)]
			if !slices.Equal(k.Shape, []int64{int64(len(tc.rows)), c.NumTokens, l.Channels}) {
				t.Fatalf("layer %d keys shape %v", l.N, k.Shape)
			}
			per := int(c.NumTokens * l.Channels)
			for r, src := range tc.rows {
				if !slices.Equal(k.F32[r*per:(r+1)*per], c.k[j][src*per:(src+1)*per]) {
					t.Fatalf("batch %d cfg %v: layer %d row %d keys are not source row %d", tc.batch, tc.cfg, l.N, r, src)
				}
				for i := 0; i < per; i++ {
					if v.F32[r*per+i] != 0.5*c.v[j][src*per+i] {
						t.Fatalf("batch %d cfg %v: layer %d row %d values are not 0.5 × source row %d", tc.batch, tc.cfg, l.N, r, src)
					}
				}
			}
		}
	}
	if _, err := c.Inputs(0, true, 1); err == nil {
		t.Error("batch 0 accepted")
	}
}

// TestEncodeImage goes from a PNG file's bytes: the tokens equal those of
// the decoded image, the digest is the file's; bad bytes are ErrImage.
func TestEncodeImage(t *testing.T) {
	m := loadTiny(t, plainFile)
	var buf bytes.Buffer
	if err := png.Encode(&buf, rawImage(t, 1)); err != nil {
		t.Fatal(err)
	}
	c, err := m.EncodeImage(context.Background(), buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	direct, err := m.Encode(context.Background(), rawImage(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Tokens, direct.Tokens) {
		t.Error("tokens from the PNG file differ from those of the image")
	}
	sum := sha256.Sum256(buf.Bytes())
	if c.ImageSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("digest %s", c.ImageSHA256)
	}
	t.Logf("encode %v, project %v", c.EncodeTime, c.ProjectTime)
	if _, err := m.EncodeImage(context.Background(), buf.Bytes()[:100]); !errors.Is(err, clipvision.ErrImage) {
		t.Errorf("truncated PNG: %v", err)
	}
	if _, err := m.EncodePixels(context.Background(), make([]float32, 10)); err == nil {
		t.Error("10 pixel values accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.EncodeImage(ctx, buf.Bytes()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
