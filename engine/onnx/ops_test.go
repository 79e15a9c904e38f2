package onnx_test

import (
	"context"
	"math"
	"testing"

	"github.com/pixery/pixery/engine/onnx"
	"github.com/pixery/pixery/engine/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

func runGraph(t *testing.T, b *onnx.Builder, in map[string]runtime.Tensor, names ...string) runtime.Tensor {
	t.Helper()
	env, err := runtime.Init(runtime.Config{Provider: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.NewSession(b.Model().Marshal(), names, []string{"y"}, runtime.SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out["y"]
}

func ramp(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*0.7)) * 2
	}
	return v
}

func maxDiff(t *testing.T, got []float32, want []float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d values, want %d", len(got), len(want))
	}
	var m float64
	for i := range want {
		m = math.Max(m, math.Abs(float64(got[i])-want[i]))
	}
	return m
}

func TestGroupNormMatchesDefinition(t *testing.T) {
	const n, c, h, w, g = 2, 8, 3, 5, 4
	x := ramp(n * c * h * w)
	scale, bias := ramp(c), ramp(c + 3)[3:]
	b := onnx.NewBuilder("gn")
	in := b.Input("x", onnx.Float, onnx.Dim{Value: n}, onnx.Dim{Value: c}, onnx.Dim{Value: h}, onnx.Dim{Value: w})
	y := in.GroupNorm(b.ConstFloat([]int64{c}, scale...), b.ConstFloat([]int64{c}, bias...), g, c, 1e-5)
	b.Output(y, "y", onnx.Float)
	got := runGraph(t, b, map[string]runtime.Tensor{"x": runtime.F32(x, n, c, h, w)}, "x")
	want := make([]float64, len(x))
	per := c / g * h * w
	for i := 0; i < n*g; i++ {
		var mean, v float64
		for j := 0; j < per; j++ {
			mean += float64(x[i*per+j]) / float64(per)
		}
		for j := 0; j < per; j++ {
			d := float64(x[i*per+j]) - mean
			v += d * d / float64(per)
		}
		for j := 0; j < per; j++ {
			ch := (i%g)*(c/g) + j/(h*w)
			want[i*per+j] = (float64(x[i*per+j])-mean)/math.Sqrt(v+1e-5)*float64(scale[ch]) + float64(bias[ch])
		}
	}
	if d := maxDiff(t, got.F32, want); d > 1e-5 {
		t.Fatalf("GroupNorm max|Δ| = %g", d)
	}
}

func TestUpsampleNearest(t *testing.T) {
	b := onnx.NewBuilder("up")
	in := b.Input("x", onnx.Float, onnx.Dim{Value: 1}, onnx.Dim{Value: 1}, onnx.Dim{Value: 2}, onnx.Dim{Value: 3})
	b.Output(in.UpsampleNearest2x(), "y", onnx.Float)
	got := runGraph(t, b, map[string]runtime.Tensor{"x": runtime.F32([]float32{1, 2, 3, 4, 5, 6}, 1, 1, 2, 3)}, "x")
	want := []float64{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6}
	if d := maxDiff(t, got.F32, want); d != 0 || got.Shape[2] != 4 || got.Shape[3] != 6 {
		t.Fatalf("upsample = %v %v", got.Shape, got.F32)
	}
}

func TestSplitSliceConcatPad(t *testing.T) {
	b := onnx.NewBuilder("ssc")
	in := b.Input("x", onnx.Float, onnx.Dim{Value: 6})
	parts := in.Split(0, 2, 4)
	y := onnx.Concat(0, parts[1].Slice(0, 1, 3), parts[0]).Pad(1, 2)
	b.Output(y, "y", onnx.Float)
	got := runGraph(t, b, map[string]runtime.Tensor{"x": runtime.F32([]float32{0, 1, 2, 3, 4, 5}, 6)}, "x")
	if d := maxDiff(t, got.F32, []float64{0, 3, 4, 0, 1, 0, 0}); d != 0 {
		t.Fatalf("got %v", got.F32)
	}
}

// TestExternalDataFieldsOnTheWire decodes the written TensorProto to make
// sure the external-data entries use the field numbers ONNX defines.
func TestExternalDataFieldsOnTheWire(t *testing.T) {
	tensor := &onnx.Tensor{Name: "w", DataType: onnx.Float16, Dims: []int64{2, 3},
		External: &onnx.ExternalData{Location: "ck.safetensors", Offset: 409, Length: 12}}
	b := onnx.NewBuilder("g")
	b.Initializer(tensor)
	raw := b.Model().Marshal()
	graph := field(t, raw, 7)
	init := field(t, graph, 5)
	entries := map[string]string{}
	var loc uint64
	for len(init) > 0 {
		num, typ, n := protowire.ConsumeTag(init)
		init = init[n:]
		switch {
		case num == 13 && typ == protowire.BytesType:
			e, m := protowire.ConsumeBytes(init)
			init = init[m:]
			k := string(field(t, e, 1))
			entries[k] = string(field(t, e, 2))
		case num == 14:
			v, m := protowire.ConsumeVarint(init)
			loc = v
			init = init[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, init)
			init = init[m:]
		}
	}
	if entries["location"] != "ck.safetensors" || entries["offset"] != "409" || entries["length"] != "12" || loc != 1 {
		t.Fatalf("external data = %v, data_location %d", entries, loc)
	}
}

func field(t *testing.T, msg []byte, want protowire.Number) []byte {
	t.Helper()
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			t.Fatal("bad tag")
		}
		msg = msg[n:]
		if num == want && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(msg)
			return v
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			t.Fatal("bad field")
		}
		msg = msg[m:]
	}
	t.Fatalf("field %d not found", want)
	return nil
}
