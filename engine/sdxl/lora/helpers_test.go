package lora

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/runtime"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl"
	"github.com/pixery/pixery/engine/sdxl/clip"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// goldenTol is the bound on outputs (max abs); mergeTol the brief's
// bound on merged weight tensors.
const (
	goldenTol = 1e-4
	mergeTol  = 1e-5
)

// Golden files, relative to testdata/golden.
const (
	kohyaTiny = "lora/lora-kohya-tiny.safetensors"
	peftTiny  = "lora/lora-peft-tiny.safetensors"
	ioTiny    = "lora/lora-kohya-tiny-io.safetensors"
)

// tinyConfigs are the sizes of the golden tiny UNet and text encoders.
func tinyConfigs(tb testing.TB) sdxl.Configs {
	tb.Helper()
	cfg := sdxl.Default()
	var doc struct {
		Config json.RawMessage `json:"config_diffusers"`
	}
	data, err := os.ReadFile(nntest.Golden(tb, "unet-tiny.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		tb.Fatal(err)
	}
	if cfg.UNet, err = unet.ParseConfig(doc.Config); err != nil {
		tb.Fatal(err)
	}
	f, err := safetensors.Open(nntest.Golden(tb, "text-encoders-tiny.safetensors"))
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.CLIPL, err = clip.ParseConfig([]byte(f.Metadata["encoder1_config"])); err != nil {
		tb.Fatal(err)
	}
	if cfg.CLIPG, err = clip.ParseConfig([]byte(f.Metadata["encoder2_config"])); err != nil {
		tb.Fatal(err)
	}
	return cfg
}

func tinyArch(tb testing.TB) *Arch {
	tb.Helper()
	a, err := NewArch(tinyConfigs(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func openGolden(tb testing.TB, a *Arch, name string) *File {
	tb.Helper()
	f, err := a.Open(nntest.Golden(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// tinyUNet binds the golden tiny UNet, attaches slots (nil: none) and
// builds its graph.
func tinyUNet(tb testing.TB, cfg sdxl.Configs, slots *Slots, o nn.BuildOptions) *nn.Graph {
	tb.Helper()
	w := nntest.OpenWeights(tb, nntest.Golden(tb, "unet-tiny.safetensors"))
	m, err := unet.New(cfg.UNet)
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Bind(w); err != nil {
		tb.Fatal(err)
	}
	if slots != nil {
		if err := slots.Attach(sdxl.UNet, m); err != nil {
			tb.Fatal(err)
		}
	}
	g, err := m.Build(w, o)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// tinyText binds one golden tiny text encoder, attaches slots and builds.
func tinyText(tb testing.TB, cfg sdxl.Configs, c sdxl.Component, slots *Slots, o nn.BuildOptions) *nn.Graph {
	tb.Helper()
	w := nntest.OpenWeights(tb, nntest.Golden(tb, "text-encoders-tiny.safetensors"))
	kind, ccfg := clip.L, cfg.CLIPL
	if c == sdxl.CLIPG {
		kind, ccfg = clip.G, cfg.CLIPG
	}
	enc, err := clip.New(kind, ccfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := enc.Bind(w); err != nil {
		tb.Fatal(err)
	}
	if slots != nil {
		if err := slots.Attach(c, enc); err != nil {
			tb.Fatal(err)
		}
	}
	g, err := enc.Build(o)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

func session(tb testing.TB, g *nn.Graph) *runtime.Session {
	tb.Helper()
	s, err := g.Session(nntest.Env(tb), runtime.SessionConfig{})
	if err != nil {
		tb.Fatalf("session for %s: %v", g.Name, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// run runs s on base inputs plus a component's feeds.
func run(tb testing.TB, s *runtime.Session, base map[string]runtime.Tensor, feeds map[string]runtime.Tensor) map[string]runtime.Tensor {
	tb.Helper()
	in := make(map[string]runtime.Tensor, len(base)+len(feeds))
	for k, v := range feeds {
		in[k] = v
	}
	for k, v := range base {
		in[k] = v
	}
	out, err := s.Run(context.Background(), in)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func ioTensor(tb testing.TB, name string) runtime.Tensor {
	return nntest.IOTensor(tb, nntest.Golden(tb, ioTiny), name)
}

// unetInputs are the golden UNet inputs at the given timestep tensor.
func unetInputs(tb testing.TB, timestep string) map[string]runtime.Tensor {
	return map[string]runtime.Tensor{
		unet.InputSample:  ioTensor(tb, "sample"),
		unet.InputTime:    ioTensor(tb, timestep),
		unet.InputContext: ioTensor(tb, "encoder_hidden_states"),
		unet.InputPooled:  ioTensor(tb, "text_embeds"),
		unet.InputTimeIDs: ioTensor(tb, "time_ids"),
	}
}

func hasSuffix(s, suffix string) bool { return strings.HasSuffix(s, suffix) }

// readAll reads every tensor of a safetensors file, in name order.
func readAll(tb testing.TB, path string) ([]safetensors.Named, map[string]string) {
	tb.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out []safetensors.Named
	for _, n := range f.Names() {
		tt, _ := f.Tensor(n)
		raw, err := f.ReadRaw(n)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, safetensors.Named{Name: n, DType: tt.DType, Shape: tt.Shape, Data: raw})
	}
	return out, f.Metadata
}

// writeVariant writes dst with every tensor of src passed through edit
// (which may drop, change or add tensors) and src's metadata.
func writeVariant(tb testing.TB, src, dst string, edit func(safetensors.Named) []safetensors.Named) string {
	tb.Helper()
	in, md := readAll(tb, src)
	var out []safetensors.Named
	for _, n := range in {
		out = append(out, edit(n)...)
	}
	if err := safetensors.WriteFile(dst, out, md); err != nil {
		tb.Fatal(err)
	}
	return dst
}

// scaled multiplies an F32 tensor's values by f.
func scaled(n safetensors.Named, f float32) safetensors.Named {
	v, err := safetensors.DecodeFloat32(n.DType, n.Data)
	if err != nil {
		panic(err)
	}
	for i := range v {
		v[i] *= f
	}
	raw, err := safetensors.EncodeFloat32(n.DType, v)
	if err != nil {
		panic(err)
	}
	n.Data = raw
	return n
}

// f32 makes an F32 tensor of the given shape filled by fill(i).
func f32(name string, fill func(i int) float32, shape ...int64) safetensors.Named {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = fill(i)
	}
	raw, _ := safetensors.EncodeFloat32(safetensors.F32, v)
	return safetensors.Named{Name: name, DType: safetensors.F32, Shape: shape, Data: raw}
}
