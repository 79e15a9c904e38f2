package ipadapter

import (
	"context"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// TestFloat16 builds the encoder, the projection and the hooked UNet in
// half precision and runs them on CPU (ONNX Runtime inserts the casts it
// lacks kernels for): tokens and UNet output must agree with the golden
// values within 5e-2 of max|ref|, which proves the graphs are well-typed
// for CUDA.
func TestFloat16(t *testing.T) {
	tiny := tinyConfig(t)
	m, err := Load(nntest.Env(t), nntest.Golden(t, plusFile), nntest.Golden(t, encoderFile), Options{UNet: tiny, Float16: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.Encode(context.Background(), rawImage(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	io := nntest.Golden(t, plusIO)
	want := nntest.IOTensor(t, io, "image_prompt_embeds")
	per := len(want.F32) / 2
	got := runtime.F32(c.Tokens, 1, c.NumTokens, c.ContextDim)
	nntest.ExpectClose(t, "fp16 plus tokens", got, runtime.F32(want.F32[per:], 1, c.NumTokens, c.ContextDim), 5e-2*maxAbs(want.F32[per:]))

	w := nntest.OpenWeights(t, nntest.Golden(t, "unet-tiny.safetensors"))
	u, err := unet.New(tiny)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Bind(w); err != nil {
		t.Fatal(err)
	}
	HookUNet(u)
	g, err := u.Build(w, nn.BuildOptions{Float16: true})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := c.Inputs(1, true, scaleOf(t, io))
	if err != nil {
		t.Fatal(err)
	}
	out := nntest.Run(t, g, unetInputs(t, io, ip))[unet.Output]
	ref := nntest.IOTensor(t, io, "out")
	half := len(ref.F32) / 2
	nntest.ExpectClose(t, "fp16 hooked UNet, image row", runtime.F32(out.F32[half:], 1, 4, 16, 24), runtime.F32(ref.F32[half:], 1, 4, 16, 24), 5e-2*maxAbs(ref.F32[half:]))
}
