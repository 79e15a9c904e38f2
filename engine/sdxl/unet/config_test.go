package unet

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
)

// sdxlBaseConfig is stabilityai/stable-diffusion-xl-base-1.0's
// unet/config.json as diffusers wrote it.
const sdxlBaseConfig = `{
  "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.19.0.dev0",
  "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
  "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280],
  "center_input_sample": false, "class_embed_type": null, "class_embeddings_concat": false,
  "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_dim": 2048, "cross_attention_norm": null,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "downsample_padding": 1, "dual_cross_attention": false, "encoder_hid_dim": null, "encoder_hid_dim_type": null,
  "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_only_cross_attention": null, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
  "norm_eps": 1e-05, "norm_num_groups": 32, "num_attention_heads": null, "num_class_embeds": null,
  "only_cross_attention": false, "out_channels": 4, "projection_class_embeddings_input_dim": 2816,
  "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": false, "resnet_time_scale_shift": "default",
  "sample_size": 128, "time_cond_proj_dim": null, "time_embedding_act_fn": null, "time_embedding_dim": null,
  "time_embedding_type": "positional", "timestep_post_act": null, "transformer_layers_per_block": [1, 2, 10],
  "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  "upcast_attention": null, "use_linear_projection": true
}`

// sd15Config is runwayml/stable-diffusion-v1-5's unet/config.json.
const sd15Config = `{
  "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "act_fn": "silu",
  "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false,
  "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
}`

func TestParseSDXLConfig(t *testing.T) {
	c, err := ParseConfig([]byte(sdxlBaseConfig))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, SDXL()) {
		t.Errorf("parsed SDXL config\n%+v\ndiffers from SDXL()\n%+v", c, SDXL())
	}
	if c.PooledDim() != 1280 || c.HeadDim(1) != 64 || c.HeadDim(2) != 64 || c.EmbedDim() != 1280 {
		t.Errorf("pooled %d, head dims %d/%d, embed %d; want 1280, 64, 64, 1280", c.PooledDim(), c.HeadDim(1), c.HeadDim(2), c.EmbedDim())
	}
}

// The tiny golden config must give the sgm-equivalent sizes unet-tiny.json
// derives from it.
func TestParseTinyConfig(t *testing.T) {
	var doc struct {
		Derived struct {
			SGM struct {
				Depth      []int `json:"transformer_depth"`
				MidDepth   int   `json:"transformer_depth_middle"`
				HeadDim    int64 `json:"num_head_channels"`
				Context    int64 `json:"context_dim"`
				Adm        int64 `json:"adm_in_channels"`
				Groups     int64 `json:"GroupNorm_groups"`
				ResBlocks  int   `json:"num_res_blocks"`
				ModelChans int64 `json:"model_channels"`
			} `json:"sgm_equivalent"`
			Heads     []int64 `json:"num_heads_per_level"`
			TimeEmbed int64   `json:"time_embed_dim"`
			Pooled    int64   `json:"pooled_text_embed_dim"`
			UpDepth   []*int  `json:"up_block_transformer_layers"`
		} `json:"derived"`
	}
	readJSON(t, nntest.Golden(t, "unet-tiny.json"), &doc)
	d := doc.Derived
	c := tinyConfig(t)
	if !reflect.DeepEqual(c.Depth, d.SGM.Depth) || c.MidDepth != d.SGM.MidDepth || c.ContextDim != d.SGM.Context ||
		c.AdmChannels != d.SGM.Adm || c.Groups != d.SGM.Groups || c.ResBlocks != d.SGM.ResBlocks ||
		c.Channels[0] != d.SGM.ModelChans || !reflect.DeepEqual(c.Heads, d.Heads) ||
		c.EmbedDim() != d.TimeEmbed || c.PooledDim() != d.Pooled {
		t.Errorf("parsed tiny config %v disagrees with unet-tiny.json derived sizes %+v", c, d)
	}
	for l := range c.Channels {
		if c.HeadDim(l) != d.SGM.HeadDim {
			t.Errorf("level %d head dim %d, want %d", l, c.HeadDim(l), d.SGM.HeadDim)
		}
		// up_block_transformer_layers is in up-block order, deepest first.
		// null means an UpBlock2D, depth 0.
		want := 0
		if up := d.UpDepth[len(c.Channels)-1-l]; up != nil {
			want = *up
		}
		if c.UpDepth[l] != want {
			t.Errorf("level %d up depth %d, want %d", l, c.UpDepth[l], want)
		}
	}
}

func TestParsePipelineConfig(t *testing.T) {
	data, err := os.ReadFile("../../../testdata/golden/pipeline/configs/unet/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	// Cross-check against the file's own fields.
	if c.ContextDim != int64(raw["cross_attention_dim"].(float64)) ||
		c.AdmChannels != int64(raw["projection_class_embeddings_input_dim"].(float64)) ||
		c.PooledDim() != c.AdmChannels-6*int64(raw["addition_time_embed_dim"].(float64)) {
		t.Errorf("parsed %v does not match the file", c)
	}
	if _, err := New(c); err != nil {
		t.Error(err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(m map[string]any)
		raw     string // used instead of the edited tiny config when set
		wantErr string // "" means it must parse
	}{
		{name: "sd15", raw: sd15Config, wantErr: "addition_embed_type is missing"},
		{name: "sd21 style", edit: func(m map[string]any) { m["addition_embed_type"] = nil }, wantErr: "SD1.x/SD2.x"},
		{name: "conv projection", edit: func(m map[string]any) { m["use_linear_projection"] = false }, wantErr: "use_linear_projection must be true"},
		{name: "projection unset", edit: func(m map[string]any) { delete(m, "use_linear_projection") }, wantErr: "use_linear_projection"},
		{name: "other addition", edit: func(m map[string]any) { m["addition_embed_type"] = "text" }, wantErr: `addition_embed_type "text"`},
		{name: "not json", raw: "{", wantErr: "not a JSON object"},
		{name: "json array", raw: "[1]", wantErr: "not a JSON object"},
		{name: "no channels", edit: func(m map[string]any) { delete(m, "block_out_channels") }, wantErr: "block_out_channels is missing"},
		{name: "bad channel", edit: func(m map[string]any) { m["block_out_channels"] = []any{16, 32.5, 64} }, wantErr: "block_out_channels[1]"},
		{name: "no context", edit: func(m map[string]any) { delete(m, "cross_attention_dim") }, wantErr: "cross_attention_dim is missing"},
		{name: "context list", edit: func(m map[string]any) { m["cross_attention_dim"] = []any{32, 32, 32} }, wantErr: "cross_attention_dim"},
		{name: "heads length", edit: func(m map[string]any) { m["attention_head_dim"] = []any{2, 4} }, wantErr: "attention_head_dim has 2 entries"},
		{name: "heads indivisible", edit: func(m map[string]any) { m["attention_head_dim"] = []any{2, 4, 7} }, wantErr: "cannot be split into 7 heads"},
		{name: "groups indivisible", edit: func(m map[string]any) { m["norm_num_groups"] = 12 }, wantErr: "not divisible by 12"},
		{name: "nested depth", edit: func(m map[string]any) { m["transformer_layers_per_block"] = []any{[]any{1, 1}, 2, 3} }, wantErr: "per-layer list"},
		{name: "block types length", edit: func(m map[string]any) { m["down_block_types"] = []any{"DownBlock2D"} }, wantErr: "down_block_types has 1 entries"},
		{name: "unknown block", edit: func(m map[string]any) {
			m["up_block_types"] = []any{"CrossAttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"}
		}, wantErr: `"AttnUpBlock2D" is not supported`},
		{name: "mid block", edit: func(m map[string]any) { m["mid_block_type"] = "UNetMidBlock2DSimpleCrossAttn" }, wantErr: "mid_block_type"},
		{name: "class embed", edit: func(m map[string]any) { m["class_embed_type"] = "timestep" }, wantErr: "class_embed_type"},
		{name: "scale shift", edit: func(m map[string]any) { m["resnet_time_scale_shift"] = "scale_shift" }, wantErr: "resnet_time_scale_shift"},
		{name: "only cross list", edit: func(m map[string]any) { m["only_cross_attention"] = []any{false, true, false} }, wantErr: "only_cross_attention"},
		{name: "pooled too small", edit: func(m map[string]any) { m["projection_class_embeddings_input_dim"] = 48 }, wantErr: "no room for a pooled"},
		{name: "time embed dim", edit: func(m map[string]any) { m["time_embedding_dim"] = 100 }, wantErr: "time_embedding_dim"},
		{name: "eps type", edit: func(m map[string]any) { m["norm_eps"] = "small" }, wantErr: "norm_eps: want a number"},
		// Accepted spellings.
		{name: "heads as int", edit: func(m map[string]any) { m["attention_head_dim"] = 2 }},
		{name: "depth as int", edit: func(m map[string]any) { m["transformer_layers_per_block"] = 2 }},
		{name: "only cross all false", edit: func(m map[string]any) { m["only_cross_attention"] = []any{false, false, false} }},
		{name: "num_attention_heads", edit: func(m map[string]any) { m["num_attention_heads"] = []any{1, 2, 4}; m["attention_head_dim"] = 99 }},
		{name: "reverse depth", edit: func(m map[string]any) { m["reverse_transformer_layers_per_block"] = []any{1, 2, 1} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.raw)
			if tc.raw == "" {
				m := tinyConfigJSON(t)
				tc.edit(m)
				data, _ = json.Marshal(m)
			}
			c, err := ParseConfig(data)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("parsed as %v, want an error containing %q", c, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

// The accepted spellings must mean what diffusers means by them.
func TestParseConfigSpellings(t *testing.T) {
	parse := func(edit func(m map[string]any)) Config {
		m := tinyConfigJSON(t)
		edit(m)
		data, _ := json.Marshal(m)
		c, err := ParseConfig(data)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := parse(func(m map[string]any) { m["attention_head_dim"] = 2 }); !reflect.DeepEqual(c.Heads, []int64{2, 2, 2}) {
		t.Errorf("attention_head_dim 2: heads %v", c.Heads)
	}
	if c := parse(func(m map[string]any) { m["transformer_layers_per_block"] = 2 }); !reflect.DeepEqual(c.Depth, []int{0, 2, 2}) || c.MidDepth != 2 {
		t.Errorf("transformer_layers_per_block 2: depth %v mid %d", c.Depth, c.MidDepth)
	}
	// reverse_transformer_layers_per_block is in up-block order.
	if c := parse(func(m map[string]any) { m["reverse_transformer_layers_per_block"] = []any{4, 1, 9} }); !reflect.DeepEqual(c.UpDepth, []int{0, 1, 4}) {
		t.Errorf("reverse depths [4,1,9]: up depth %v, want [0 1 4]", c.UpDepth)
	}
	if c := parse(func(m map[string]any) { m["num_attention_heads"] = []any{1, 2, 4} }); !reflect.DeepEqual(c.Heads, []int64{1, 2, 4}) {
		t.Errorf("num_attention_heads: heads %v", c.Heads)
	}
}
