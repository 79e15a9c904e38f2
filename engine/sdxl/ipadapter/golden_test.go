package ipadapter

import (
	"context"
	"encoding/json"
	"image"
	"math"
	"os"
	"sync"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

const (
	plainFile   = "unet-tiny-ipadapter.safetensors"
	plainIO     = "unet-tiny-ipadapter-io.safetensors"
	plusFile    = "ipadapter/ip-adapter-plus-tiny.safetensors"
	plusIO      = "ipadapter/ip-adapter-plus-tiny-io.safetensors"
	chainIO     = "ipadapter/chain-plain-io.safetensors"
	encoderFile = "ipadapter/image-encoder-tiny.safetensors"
	encoderIO   = "ipadapter/image-encoder-tiny-io.safetensors"
	unetIO      = "unet-tiny-io.safetensors"
)

// tinyConfig is the golden tiny UNet's configuration, from its diffusers
// config.
func tinyConfig(t testing.TB) unet.Config {
	t.Helper()
	data, err := os.ReadFile(nntest.Golden(t, "unet-tiny.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Config json.RawMessage `json:"config_diffusers"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	c, err := unet.ParseConfig(doc.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tinyUNet binds the golden tiny UNet; hooked adds the image attention.
// The sessions are made once per test binary and shared (creating one
// costs more than the tests that use it).
func tinyUNet(t testing.TB, hooked bool) (*runtime.Session, *Hook) {
	t.Helper()
	unets.Lock()
	defer unets.Unlock()
	if u, ok := unets.m[hooked]; ok {
		return u.s, u.h
	}
	s, h := newTinyUNet(t, hooked, 0)
	unets.m[hooked] = sharedUNet{s, h}
	return s, h
}

type sharedUNet struct {
	s *runtime.Session
	h *Hook
}

var unets = struct {
	sync.Mutex
	m map[bool]sharedUNet
}{m: map[bool]sharedUNet{}}

// tinyUNetThreads is a session of its own with that many intra-op threads.
func tinyUNetThreads(t testing.TB, hooked bool, threads int) (*runtime.Session, *Hook) {
	t.Helper()
	s, h := newTinyUNet(t, hooked, threads)
	t.Cleanup(func() { s.Close() })
	return s, h
}

func newTinyUNet(t testing.TB, hooked bool, threads int) (*runtime.Session, *Hook) {
	t.Helper()
	w := nntest.OpenWeights(t, nntest.Golden(t, "unet-tiny.safetensors"))
	m, err := unet.New(tinyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Bind(w); err != nil {
		t.Fatal(err)
	}
	var h *Hook
	if hooked {
		h = HookUNet(m)
	}
	g, err := m.Build(w, nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := g.Session(nntest.Env(t), runtime.SessionConfig{Threads: threads})
	if err != nil {
		t.Fatalf("session for %s: %v", g.Name, err)
	}
	return s, h
}

func run(t testing.TB, s *runtime.Session, in map[string]runtime.Tensor) map[string]runtime.Tensor {
	t.Helper()
	out, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return out
}

// unetInputs reads the UNet's five inputs from a golden io file and adds
// the image inputs.
func unetInputs(t testing.TB, io string, extra map[string]runtime.Tensor) map[string]runtime.Tensor {
	t.Helper()
	in := map[string]runtime.Tensor{}
	for _, n := range []string{unet.InputSample, unet.InputTime, unet.InputContext, unet.InputPooled, unet.InputTimeIDs} {
		in[n] = nntest.IOTensor(t, io, n)
	}
	for k, v := range extra {
		in[k] = v
	}
	return in
}

// projected runs the adapter's projection graph on per-row image features
// and returns the tokens and the UNet's image inputs for those rows with
// the values scaled.
func projected(t testing.TB, a *Adapter, feats runtime.Tensor, scale float32) (runtime.Tensor, map[string]runtime.Tensor) {
	t.Helper()
	g, err := a.Build(nn.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := nntest.Run(t, g, map[string]runtime.Tensor{a.Input(): feats})
	in := map[string]runtime.Tensor{}
	for _, l := range a.Layers {
		in[KeyInput(l.N)] = out[KeyInput(l.N)]
		v := out[ValueInput(l.N)]
		for i := range v.F32 {
			v.F32[i] *= scale
		}
		in[ValueInput(l.N)] = v
	}
	return out[OutputTokens], in
}

// repeatRows repeats a [1, …] tensor n times along the first axis.
func repeatRows(x runtime.Tensor, n int) runtime.Tensor {
	var data []float32
	for range n {
		data = append(data, x.F32...)
	}
	shape := append([]int64{int64(n)}, x.Shape[1:]...)
	return runtime.F32(data, shape...)
}

func scaleOf(t testing.TB, io string) float32 {
	return nntest.IOTensor(t, io, "scale").F32[0]
}

// TestPlainGolden is the plain adapter on the tiny UNet at scale 0.6
// (image_embeds given), and scale 0 against the plain UNet's output.
func TestPlainGolden(t *testing.T) {
	a, err := Open(nntest.Golden(t, plainFile), tinyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if a.Kind != Plain || a.Tokens != 4 || a.InputDim != 24 || len(a.Layers) != 28 {
		t.Fatalf("opened as %s, %d tokens from %d-wide features, %d layers", a.Kind, a.Tokens, a.InputDim, len(a.Layers))
	}
	io := nntest.Golden(t, plainIO)
	s, _ := tinyUNet(t, true)
	tokens, in := projected(t, a, nntest.IOTensor(t, io, "image_embeds"), scaleOf(t, io))
	nntest.ExpectClose(t, "image tokens", tokens, nntest.IOTensor(t, io, "image_prompt_embeds"), 1e-4)
	nntest.ExpectClose(t, "out with the plain adapter at 0.6", run(t, s, unetInputs(t, io, in))[unet.Output], nntest.IOTensor(t, io, "out"), 1e-4)
	_, in = projected(t, a, nntest.IOTensor(t, io, "image_embeds"), 0)
	nntest.ExpectClose(t, "out at scale 0 vs the plain UNet", run(t, s, unetInputs(t, io, in))[unet.Output], nntest.IOTensor(t, nntest.Golden(t, unetIO), "out"), 1e-4)
}

// TestPlusGolden is the plus adapter: Resampler tokens from the golden
// penultimate states, the negative's tokens, and the UNet output at 0.7
// with the image tokens and with the negative's in both rows.
func TestPlusGolden(t *testing.T) {
	a, err := Open(nntest.Golden(t, plusFile), tinyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	sz := a.Resampler.Sizes
	t.Logf("resampler sizes read from the file: %+v", sz)
	if a.Kind != Plus || a.Tokens != 16 || sz.Heads != 2 || sz.Dim != 48 || sz.In != 32 || sz.Depth != 4 || sz.FFWidth != 192 {
		t.Fatalf("opened as %s with %d tokens, sizes %+v", a.Kind, a.Tokens, sz)
	}
	io := nntest.Golden(t, plusIO)
	scale := scaleOf(t, io)
	s, _ := tinyUNet(t, true)
	tokens, in := projected(t, a, nntest.IOTensor(t, io, "penultimate_hidden_state"), scale)
	nntest.ExpectClose(t, "resampler tokens", tokens, nntest.IOTensor(t, io, "image_prompt_embeds"), 1e-4)
	nntest.ExpectClose(t, "out with the plus adapter at 0.7", run(t, s, unetInputs(t, io, in))[unet.Output], nntest.IOTensor(t, io, "out"), 1e-4)

	neg := nntest.IOTensor(t, io, "neg_penultimate_hidden_state")
	tokens, in = projected(t, a, repeatRows(neg, 2), scale)
	nntest.ExpectClose(t, "negative resampler tokens", runtime.F32(tokens.F32[:len(tokens.F32)/2], 1, 16, 32), nntest.IOTensor(t, io, "neg_image_prompt_embeds"), 1e-4)
	nntest.ExpectClose(t, "out with the negative tokens", run(t, s, unetInputs(t, io, in))[unet.Output], nntest.IOTensor(t, io, "out_neg"), 1e-4)
}

// rawImage reads image i of the encoder io file's raw_uint8.
func rawImage(t testing.TB, i int) image.Image {
	t.Helper()
	f, err := safetensors.Open(nntest.Golden(t, encoderIO))
	if err != nil {
		t.Fatal(err)
	}
	tt, _ := f.Tensor("raw_uint8")
	raw, err := f.ReadRaw("raw_uint8")
	if err != nil {
		t.Fatal(err)
	}
	h, w := int(tt.Shape[1]), int(tt.Shape[2])
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	src := raw[i*h*w*3:]
	for p := 0; p < h*w; p++ {
		copy(img.Pix[4*p:4*p+3], src[3*p:3*p+3])
		img.Pix[4*p+3] = 255
	}
	return img
}

// TestChainsFromPixels runs both adapters end to end through Load and
// Encode from raw pixels, with classifier-free guidance's row layout: row 0
// the negative, row 1 image 1. The golden outputs give row 0 (out_neg, the
// negative in every row) and row 1 (out, image b in row b).
func TestChainsFromPixels(t *testing.T) {
	for _, tc := range []struct {
		name, adapter, io string
		kind              Kind
	}{
		{"plain", plainFile, chainIO, Plain},
		{"plus", plusFile, plusIO, Plus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(nntest.Env(t), nntest.Golden(t, tc.adapter), nntest.Golden(t, encoderFile), Options{UNet: tinyConfig(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Adapter.Kind != tc.kind {
				t.Fatalf("kind %s", m.Adapter.Kind)
			}
			io := nntest.Golden(t, tc.io)
			for pass := range 2 { // the second pass uses the plus negative cached by the first
				c, err := m.Encode(context.Background(), rawImage(t, 1))
				if err != nil {
					t.Fatal(err)
				}
				want := nntest.IOTensor(t, io, "image_prompt_embeds")
				per := len(want.F32) / 2
				nntest.ExpectClose(t, "image tokens", runtime.F32(c.Tokens, 1, c.NumTokens, c.ContextDim), runtime.F32(want.F32[per:], 1, c.NumTokens, c.ContextDim), 1e-4)
				nntest.ExpectClose(t, "negative tokens", runtime.F32(c.NegTokens, 1, c.NumTokens, c.ContextDim), nntest.IOTensor(t, io, "neg_image_prompt_embeds"), 1e-4)
				if pass == 1 {
					break
				}
				ipIn, err := c.Inputs(1, true, scaleOf(t, io))
				if err != nil {
					t.Fatal(err)
				}
				s, _ := tinyUNet(t, true)
				got := run(t, s, unetInputs(t, io, ipIn))[unet.Output]
				half := len(got.F32) / 2
				shape := []int64{1, 4, 16, 24}
				nntest.ExpectClose(t, "row 0 (negative)", runtime.F32(got.F32[:half], shape...), runtime.F32(nntest.IOTensor(t, io, "out_neg").F32[:half], shape...), 1e-4)
				nntest.ExpectClose(t, "row 1 (image 1)", runtime.F32(got.F32[half:], shape...), runtime.F32(nntest.IOTensor(t, io, "out").F32[half:], shape...), 1e-4)
			}
			if tc.kind == Plain {
				// The plain negative is the projection of zero image_embeds.
				if ne := nntest.IOTensor(t, io, "neg_image_embeds"); maxAbs(ne.F32) != 0 {
					t.Fatalf("golden neg_image_embeds is not zero (max %g)", maxAbs(ne.F32))
				}
			}
		})
	}
}

func maxAbs(x []float32) float64 {
	var m float64
	for _, v := range x {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}
