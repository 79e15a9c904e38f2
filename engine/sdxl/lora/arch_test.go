package lora

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pixery/pixery/engine/nn/nntest"
	"github.com/pixery/pixery/engine/sdxl"
)

// TestTargetsTSV maps every row of lora-targets.tsv (the 1,052 module names
// a kohya SDXL LoRA can carry) at full SDXL size: the kohya name and the
// diffusers/PEFT name must both find the layer of the row's sgm key, with
// its shape, kind, row block and training condition.
func TestTargetsTSV(t *testing.T) {
	a, err := NewArch(sdxl.Default())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(nntest.Root(t), "testdata", "sdxl", "lora-targets.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	if got := sc.Text(); got != "kohya_module\tsgm_weight_key\tsgm_weight_shape\tlayer_kind\ttrained_when\tdiffusers_module\tpart_of_weight" {
		t.Fatalf("unexpected header %q", got)
	}
	seen := map[*Layer]bool{}
	rows := 0
	for sc.Scan() {
		rows++
		c := strings.Split(sc.Text(), "\t")
		if len(c) != 7 {
			t.Fatalf("row %d: %d columns", rows, len(c))
		}
		kohya, key, shape, kind, when, diff, part := c[0], c[1], c[2], c[3], c[4], c[5], c[6]
		l, ok := a.Lookup(kohya)
		if !ok {
			t.Errorf("%s: no layer", kohya)
			continue
		}
		if l2, ok := a.Lookup(diff); !ok || l2 != l {
			t.Errorf("%s: diffusers name %s maps to %v, want %s", kohya, diff, l2, l.ID())
		}
		if l.Key != key {
			t.Errorf("%s: key %s, want %s", kohya, l.Key, key)
		}
		if got := dims(l.Shape); got != shape {
			t.Errorf("%s: shape %s, want %s", kohya, got, shape)
		}
		wantKind := map[string]int64{"linear": 0, "conv1x1": 1, "conv3x3": 3}[kind]
		if l.Kernel != wantKind {
			t.Errorf("%s: kernel %d, want %s", kohya, l.Kernel, kind)
		}
		switch when {
		case "default":
			if !l.Default || l.Component != sdxl.UNet {
				t.Errorf("%s: default %v component %s, want a default UNet layer", kohya, l.Default, l.Component)
			}
		case "conv_option":
			if l.Default || l.Component != sdxl.UNet {
				t.Errorf("%s: default %v component %s, want a conv_dim UNet layer", kohya, l.Default, l.Component)
			}
		case "te":
			if l.Component != sdxl.CLIPL && l.Component != sdxl.CLIPG {
				t.Errorf("%s: component %s, want a text encoder", kohya, l.Component)
			}
		default:
			t.Errorf("%s: unknown trained_when %q", kohya, when)
		}
		wantPart := "all"
		if l.Part != "" {
			wantPart = fmt.Sprintf("rows %d:%d", l.Row0, l.Row0+l.Out)
		}
		if part != wantPart {
			t.Errorf("%s: %s, want %s", kohya, wantPart, part)
		}
		if seen[l] {
			t.Errorf("%s: layer %s listed twice", kohya, l.ID())
		}
		seen[l] = true
	}
	if rows != 1052 {
		t.Errorf("%d rows, want 1052", rows)
	}
	// The Arch has the rows' layers plus the six UNet layers kohya never
	// adapts but other trainers do (lora.md §1).
	var extra []string
	for _, l := range a.Layers() {
		if !seen[l] {
			extra = append(extra, strings.TrimPrefix(l.Key, "model.diffusion_model."))
		}
	}
	want := []string{"time_embed.0.weight", "time_embed.2.weight", "label_emb.0.0.weight", "label_emb.0.2.weight", "input_blocks.0.0.weight", "out.2.weight"}
	slices.Sort(extra)
	slices.Sort(want)
	if !slices.Equal(extra, want) {
		t.Errorf("layers beyond the TSV: %v, want %v", extra, want)
	}
	t.Logf("%d TSV rows mapped; %d layers in all", rows, len(a.Layers()))
}

func dims(s []int64) string {
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(p, "x")
}

// TestNames checks the other namings lora.md lists for one layer each:
// kohya with diffusers UNet paths, old diffusers attention processors and
// LoRACompatibleLinear, and ComfyUI's sgm keys.
func TestNames(t *testing.T) {
	a, err := NewArch(sdxl.Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, id string }{
		{"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q", "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"},
		{"lora_unet_up_blocks_0_resnets_2_conv_shortcut", "model.diffusion_model.output_blocks.2.0.skip_connection.weight"},
		{"lora_unet_mid_block_attentions_0_proj_out", "model.diffusion_model.middle_block.1.proj_out.weight"},
		{"lora_unet_down_blocks_1_downsamplers_0_conv", "model.diffusion_model.input_blocks.6.0.op.weight"},
		{"lora_unet_up_blocks_2_resnets_0_time_emb_proj", "model.diffusion_model.output_blocks.6.0.emb_layers.1.weight"},
		{"lora_unet_conv_in", "model.diffusion_model.input_blocks.0.0.weight"},
		{"lora_unet_time_embedding_linear_2", "model.diffusion_model.time_embed.2.weight"},
		{"lora_unet_add_embedding_linear_1", "model.diffusion_model.label_emb.0.0.weight"},
		{"unet.up_blocks.1.upsamplers.0.conv", "model.diffusion_model.output_blocks.5.2.conv.weight"},
		{"up_blocks.0.attentions.2.transformer_blocks.9.ff.net.2", "model.diffusion_model.output_blocks.2.1.transformer_blocks.9.ff.net.2.weight"},
		{normalise("unet.down_blocks.2.attentions.1.transformer_blocks.3.attn2.processor.to_out"), "model.diffusion_model.input_blocks.8.1.transformer_blocks.3.attn2.to_out.0.weight"},
		{normalise("unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_k"), "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_k.weight"},
		{normalise("text_encoder.text_model.encoder.layers.3.self_attn.to_v"), "conditioner.embedders.0.transformer.text_model.encoder.layers.3.self_attn.v_proj.weight"},
		{"text_encoder_2.text_model.encoder.layers.31.self_attn.k_proj", "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight:k"},
		{"diffusion_model.output_blocks.8.0.out_layers.3", "model.diffusion_model.output_blocks.8.0.out_layers.3.weight"},
		{"text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1", "conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight"},
	} {
		l, ok := a.Lookup(c.name)
		if !ok {
			t.Errorf("%s: no layer", c.name)
			continue
		}
		if l.ID() != c.id {
			t.Errorf("%s → %s, want %s", c.name, l.ID(), c.id)
		}
	}
}
