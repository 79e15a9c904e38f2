package vae

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
)

func TestParseConfigGolden(t *testing.T) {
	raw, err := os.ReadFile(nntest.Golden(t, "vae-tiny.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Config json.RawMessage `json:"config_diffusers"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	pipeline, err := os.ReadFile(nntest.Golden(t, "pipeline/configs/vae/config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		boc    []int64
		groups int64
	}{
		{"vae-tiny.json", doc.Config, []int64{16, 32, 64, 64}, 8},
		{"pipeline config.json", pipeline, []int64{8, 16, 32, 32}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.BlockOutChannels, tc.boc) || c.NormGroups != tc.groups || c.LayersPerBlock != 2 ||
				c.LatentChannels != 4 || c.InChannels != 3 || c.OutChannels != 3 || c.ScalingFactor != 0.13025 || !c.ForceUpcast {
				t.Errorf("parsed %+v", c)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	const base = `"block_out_channels":[128,256,512,512],"layers_per_block":2,"latent_channels":4,"norm_num_groups":32`
	for _, tc := range []struct {
		name string
		json string
		err  string // substring of the error; "" for success
		// check, on success, inspects the result.
		check func(Config) bool
	}{
		{name: "SDXL sizes, defaults", json: `{` + base + `}`, check: func(c Config) bool {
			want := SDXL()
			return slices.Equal(c.BlockOutChannels, want.BlockOutChannels) && c.ScalingFactor == DefaultScalingFactor &&
				c.ForceUpcast && c.InChannels == 3 && c.OutChannels == 3 && c.NormGroups == 32
		}},
		{name: "explicit fields", json: `{` + base + `,"scaling_factor":0.18215,"force_upcast":false,"in_channels":4,"out_channels":1,"act_fn":"silu"}`,
			check: func(c Config) bool {
				return c.ScalingFactor == 0.18215 && !c.ForceUpcast && c.InChannels == 4 && c.OutChannels == 1
			}},
		{name: "not JSON", json: `{"block_out_channels":`, err: "parse VAE config"},
		{name: "missing fields", json: `{"block_out_channels":[8]}`, err: "missing layers_per_block, latent_channels, norm_num_groups"},
		{name: "groups do not divide", json: `{"block_out_channels":[128,250],"layers_per_block":2,"latent_channels":4,"norm_num_groups":32}`,
			err: "block_out_channels[1] = 250 is not a multiple of norm_num_groups 32"},
		{name: "no levels", json: `{"block_out_channels":[],"layers_per_block":2,"latent_channels":4,"norm_num_groups":32}`,
			err: "block_out_channels has 0 entries"},
		{name: "zero layers", json: `{"block_out_channels":[32],"layers_per_block":0,"latent_channels":4,"norm_num_groups":32}`,
			err: "layers_per_block = 0"},
		{name: "negative latent", json: `{"block_out_channels":[32],"layers_per_block":1,"latent_channels":-4,"norm_num_groups":32}`,
			err: "latent_channels = -4"},
		{name: "huge width", json: `{"block_out_channels":[4294967296],"layers_per_block":1,"latent_channels":4,"norm_num_groups":32}`,
			err: "block_out_channels[0] = 4294967296"},
		{name: "zero scaling factor", json: `{` + base + `,"scaling_factor":0}`, err: "scaling_factor = 0"},
		{name: "other block type", json: `{` + base + `,"down_block_types":["DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D","AttnDownEncoderBlock2D"]}`,
			err: `down_block_types[3] = "AttnDownEncoderBlock2D" is not supported`},
		{name: "block types count", json: `{` + base + `,"up_block_types":["UpDecoderBlock2D"]}`,
			err: "up_block_types has 1 entries but block_out_channels has 4"},
		{name: "other activation", json: `{` + base + `,"act_fn":"gelu"}`, err: `act_fn "gelu"`},
		{name: "no mid attention", json: `{` + base + `,"mid_block_add_attention":false}`, err: "mid_block_add_attention false"},
		{name: "no quant conv", json: `{` + base + `,"use_quant_conv":false}`, err: "use_quant_conv false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("parsed %+v", c)
			}
		})
	}
}
