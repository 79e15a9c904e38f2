package ipadapter

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// row is one tensor of a header-only file.
type row = nntest.Row

// sdxlCross is ip-adapter.md §3: the sgm transformers holding SDXL's
// cross-attention layers in the adapter's numbering order (down blocks,
// up blocks, middle block last), with their depth and width.
var sdxlCross = []struct {
	path  string
	depth int
	ch    int64
}{
	{"input_blocks.4.1", 2, 640}, {"input_blocks.5.1", 2, 640},
	{"input_blocks.7.1", 10, 1280}, {"input_blocks.8.1", 10, 1280},
	{"output_blocks.0.1", 10, 1280}, {"output_blocks.1.1", 10, 1280}, {"output_blocks.2.1", 10, 1280},
	{"output_blocks.3.1", 2, 640}, {"output_blocks.4.1", 2, 640}, {"output_blocks.5.1", 2, 640},
	{"middle_block.1", 10, 1280},
}

// sdxlLayers expands sdxlCross: N = 1, 3, …, 139 with the sgm module and
// width of each.
func sdxlLayers() (ns []int, modules []string, chans []int64) {
	n := 1
	for _, c := range sdxlCross {
		for i := range c.depth {
			ns = append(ns, n)
			modules = append(modules, fmt.Sprintf("model.diffusion_model.%s.transformer_blocks.%d.attn2", c.path, i))
			chans = append(chans, c.ch)
			n += 2
		}
	}
	return
}

// adapterRows lists the tensors of the three SDXL adapter files from the
// key tables of ip-adapter.md §2.1, §2.2 and §3.
func adapterRows(kind string) []row {
	var rows []row
	switch kind {
	case "ip-adapter_sdxl", "ip-adapter_sdxl_vit-h":
		in := int64(1280)
		if kind == "ip-adapter_sdxl_vit-h" {
			in = 1024
		}
		rows = []row{
			{Name: "image_proj.proj.weight", Shape: []int64{8192, in}}, {Name: "image_proj.proj.bias", Shape: []int64{8192}},
			{Name: "image_proj.norm.weight", Shape: []int64{2048}}, {Name: "image_proj.norm.bias", Shape: []int64{2048}},
		}
	case "ip-adapter-plus_sdxl_vit-h":
		rows = []row{
			{Name: "image_proj.latents", Shape: []int64{1, 16, 1280}},
			{Name: "image_proj.proj_in.weight", Shape: []int64{1280, 1280}}, {Name: "image_proj.proj_in.bias", Shape: []int64{1280}},
			{Name: "image_proj.proj_out.weight", Shape: []int64{2048, 1280}}, {Name: "image_proj.proj_out.bias", Shape: []int64{2048}},
			{Name: "image_proj.norm_out.weight", Shape: []int64{2048}}, {Name: "image_proj.norm_out.bias", Shape: []int64{2048}},
		}
		for i := range 4 {
			p := fmt.Sprintf("image_proj.layers.%d.", i)
			rows = append(rows,
				row{Name: p + "0.norm1.weight", Shape: []int64{1280}}, row{Name: p + "0.norm1.bias", Shape: []int64{1280}},
				row{Name: p + "0.norm2.weight", Shape: []int64{1280}}, row{Name: p + "0.norm2.bias", Shape: []int64{1280}},
				row{Name: p + "0.to_q.weight", Shape: []int64{1280, 1280}},
				row{Name: p + "0.to_kv.weight", Shape: []int64{2560, 1280}},
				row{Name: p + "0.to_out.weight", Shape: []int64{1280, 1280}},
				row{Name: p + "1.0.weight", Shape: []int64{1280}}, row{Name: p + "1.0.bias", Shape: []int64{1280}},
				row{Name: p + "1.1.weight", Shape: []int64{5120, 1280}},
				row{Name: p + "1.3.weight", Shape: []int64{1280, 5120}})
		}
	}
	ns, _, chans := sdxlLayers()
	for j, n := range ns {
		rows = append(rows, row{Name: KeyName(n), Shape: []int64{chans[j], 2048}}, row{Name: ValueName(n), Shape: []int64{chans[j], 2048}})
	}
	return rows
}

// TestStructureSDXL binds header-only copies of the three SDXL adapter
// files: every tensor bound once with its shape, 70 layers numbered 1, 3,
// …, 139 with the widths of §3; and builds their projection graphs.
func TestStructureSDXL(t *testing.T) {
	for _, tc := range []struct {
		file          string
		kind          Kind
		tensors       int
		inDim, tokens int64
	}{
		{"ip-adapter_sdxl", Plain, 144, 1280, 4},
		{"ip-adapter_sdxl_vit-h", Plain, 144, 1024, 4},
		{"ip-adapter-plus_sdxl_vit-h", Plus, 191, 1280, 16},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rows := adapterRows(tc.file)
			if len(rows) != tc.tensors {
				t.Fatalf("the reference's key list has %d tensors, it says %d", len(rows), tc.tensors)
			}
			path := filepath.Join(t.TempDir(), tc.file+".safetensors")
			nntest.WriteHeaderOnly(t, path, rows, nil)
			a, err := Open(path, unet.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if a.Kind != tc.kind || a.InputDim != tc.inDim || a.Tokens != tc.tokens || a.ContextDim != 2048 {
				t.Errorf("opened as %s reading %d-wide features into %d×%d tokens", a.Kind, a.InputDim, a.Tokens, a.ContextDim)
			}
			want := map[string][]int64{}
			for _, r := range rows {
				want[r.Name] = r.Shape
			}
			seen := map[string]int{}
			var params int64
			check := func(prefix string, module any) {
				if err := nn.Walk(prefix, module, func(key string, p *nn.Param) {
					seen[key]++
					params += p.NumElements()
					if p.Tensor == nil || !slices.Equal(p.Tensor.Shape, want[key]) || !slices.Equal(p.Shape, want[key]) {
						t.Errorf("%s: bound %v, expected %v by the model, %v in the file", key, p.Tensor != nil, p.Shape, want[key])
					}
				}); err != nil {
					t.Fatal(err)
				}
			}
			if a.Plain != nil {
				check(PrefixImageProj, a.Plain)
			} else {
				check(PrefixImageProj, a.Resampler)
			}
			ns, _, chans := sdxlLayers()
			if len(a.Layers) != 70 {
				t.Fatalf("%d layers", len(a.Layers))
			}
			for j, l := range a.Layers {
				if l.N != ns[j] || l.Channels != chans[j] {
					t.Errorf("layer %d: N %d width %d, want N %d width %d", j, l.N, l.Channels, ns[j], chans[j])
				}
				check(fmt.Sprintf("%s%d.", PrefixLayers, l.N), l)
			}
			for _, r := range rows {
				if seen[r.Name] != 1 {
					t.Errorf("%s bound %d times", r.Name, seen[r.Name])
				}
			}
			if un := a.w.Unused(""); len(un) > 0 {
				t.Errorf("unbound: %v", un)
			}
			start := time.Now()
			g, err := a.Build(nn.BuildOptions{Float16: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d tensors, %d parameters; projection graph of %d nodes and %d outputs built in %v",
				tc.file, len(rows), params, len(g.Model.Graph.Nodes), len(g.Outputs), time.Since(start))
		})
	}
}

// TestSDXLUNetMapping binds a header-only full-size SDXL UNet, checks that
// the hook numbers its 70 cross-attention layers as ip-adapter.md §3 maps
// them to sgm modules, and builds the hooked graph (no session).
func TestSDXLUNetMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unet.safetensors")
	nntest.WriteHeaderOnly(t, path, nntest.SDXLKeys(t, "unet"), nil)
	w := nntest.OpenWeights(t, path)
	m, err := unet.New(unet.SDXL())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Bind(w); err != nil {
		t.Fatal(err)
	}
	h := HookUNet(m)
	ns, modules, chans := sdxlLayers()
	cross := m.CrossAttentions()
	if len(h.Layers) != 70 || len(cross) != 70 {
		t.Fatalf("%d hooked layers, %d cross-attentions", len(h.Layers), len(cross))
	}
	for j, l := range h.Layers {
		if got := strings.TrimSuffix(cross[j].ToQ.Weight.Key, ".to_q.weight"); l.N != ns[j] || got != modules[j] || l.Channels != chans[j] {
			t.Errorf("hooked layer %d: N %d on %s (%d wide), want N %d on %s (%d wide)", j, l.N, got, l.Channels, ns[j], modules[j], chans[j])
		}
	}
	start := time.Now()
	g, err := m.Build(w, nn.BuildOptions{Float16: true})
	if err != nil {
		t.Fatal(err)
	}
	dims := map[string]int64{}
	for _, in := range g.Model.Graph.Inputs {
		if len(in.Shape) == 3 {
			dims[in.Name] = in.Shape[2].Value
		}
	}
	for j, n := range ns {
		for _, name := range []string{KeyInput(n), ValueInput(n)} {
			if !slices.Contains(g.Inputs, name) || dims[name] != chans[j] {
				t.Errorf("graph input %s: present %v, width %d, want %d", name, slices.Contains(g.Inputs, name), dims[name], chans[j])
			}
		}
	}
	if len(g.Inputs) != 5+140 {
		t.Errorf("%d graph inputs, want the UNet's 5 and 140 image inputs", len(g.Inputs))
	}
	t.Logf("hooked SDXL UNet: %d nodes, %d inputs, built in %v", len(g.Model.Graph.Nodes), len(g.Inputs), time.Since(start))
}
