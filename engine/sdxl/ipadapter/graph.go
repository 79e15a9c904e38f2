package ipadapter

import (
	"fmt"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/onnx"
	"github.com/pixery/pixery/engine/sdxl/unet"
)

// Names of the projection graph's inputs and outputs. The per-layer keys
// and values share their names with the hooked UNet graph's inputs.
const (
	InputImageEmbeds = "image_embeds"        // plain: [B, InputDim]
	InputImageHidden = "image_hidden_states" // plus: [B, tokens, InputDim]
	OutputTokens     = "image_prompt_embeds" // [B, Tokens, ContextDim]
)

// KeyInput names layer N's image keys, [B, tokens, channels]: an output of
// the projection graph and an input of the hooked UNet.
func KeyInput(n int) string { return fmt.Sprintf("ip_k.%d", n) }

// ValueInput names layer N's image values, like KeyInput.
func ValueInput(n int) string { return fmt.Sprintf("ip_v.%d", n) }

// Input is the name of the projection graph's input for this adapter.
func (a *Adapter) Input() string {
	if a.Kind == Plus {
		return InputImageHidden
	}
	return InputImageEmbeds
}

// Build makes the projection graph: image features → the image tokens and,
// for every cross-attention layer N, to_k_ip(tokens) and to_v_ip(tokens).
// It runs once per reference image; the UNet then takes the keys and
// values as inputs at every step, so the UNet graph holds no adapter
// weight and changing the adapter or the image rebuilds nothing.
func (a *Adapter) Build(o nn.BuildOptions) (*nn.Graph, error) {
	b := nn.NewBuilder("ip_adapter", a.w.Dir(), o)
	batch := nn.Dyn("batch")
	var tokens onnx.Value
	if a.Kind == Plus {
		h := nn.Input(b, InputImageHidden, batch, nn.Dyn("image_tokens"), nn.Fixed(a.InputDim))
		tokens = a.Resampler.Forward(h)
	} else {
		emb := nn.Input(b, InputImageEmbeds, batch, nn.Fixed(a.InputDim))
		tokens = a.Plain.Forward(emb)
	}
	nn.Output(b, tokens, OutputTokens)
	outputs := []string{OutputTokens}
	for _, l := range a.Layers {
		b.Push(fmt.Sprintf("ip_adapter.%d", l.N))
		nn.Output(b, l.ToK.Forward(tokens), KeyInput(l.N))
		nn.Output(b, l.ToV.Forward(tokens), ValueInput(l.N))
		b.Pop()
		outputs = append(outputs, KeyInput(l.N), ValueInput(l.N))
	}
	return &nn.Graph{Name: "ip_adapter", Model: b.Model(), Inputs: []string{a.Input()}, Outputs: outputs, ExternalDir: a.w.Dir()}, nil
}

// LayerShape describes one hooked cross-attention layer.
type LayerShape struct {
	N        int   // the adapter files' number of the layer
	Channels int64 // its width: the last dimension of its keys and values
}

// Hook is the decoupled cross-attention added to a UNet.
type Hook struct {
	Layers []LayerShape
}

// decoupled is IP-Adapter's second attention inside one attn2: the layer's
// queries attend to the image keys and values, which arrive as graph
// inputs. The scale is folded into the values (scale·softmax(qKᵀ)V =
// softmax(qKᵀ)(scale·V)), so the graph needs no scale input and scale 0
// adds exact zeros.
type decoupled struct {
	layer LayerShape
}

type inputKey struct {
	n     int
	value bool
}

// Attend implements unet.ExtraAttention.
func (d *decoupled) Attend(q onnx.Value, heads, headDim int64) onnx.Value {
	b := q.Builder()
	in := func(value bool) onnx.Value {
		name := KeyInput(d.layer.N)
		if value {
			name = ValueInput(d.layer.N)
		}
		return b.Memo(inputKey{d.layer.N, value}, func() onnx.Value {
			return nn.Input(b, name, nn.Dyn("batch"), nn.Dyn("ip_tokens"), nn.Fixed(d.layer.Channels))
		})
	}
	return nn.Attention(q, in(false), in(true), heads, headDim, nil)
}

// HookUNet adds the decoupled image cross-attention to every attn2 of m
// (ip-adapter.md §4): h = attn(q, k_text, v_text) + attn(q, K_ip, V_ip)
// before to_out, K_ip and V_ip being the inputs KeyInput(N) and
// ValueInput(N) of the graph m.Build makes next. Calling it again on the
// same model changes nothing.
func HookUNet(m *unet.Model) *Hook {
	h := &Hook{}
	for j, a := range m.CrossAttentions() {
		l := LayerShape{N: 2*j + 1, Channels: a.Heads * a.HeadDim}
		h.Layers = append(h.Layers, l)
		hooked := false
		for _, e := range a.Extra {
			if _, ok := e.(*decoupled); ok {
				hooked = true
			}
		}
		if !hooked {
			a.Extra = append(a.Extra, &decoupled{layer: l})
		}
	}
	return h
}

// Unhook removes what HookUNet added, so the next Build makes the plain
// UNet graph again.
func Unhook(m *unet.Model) {
	for _, a := range m.CrossAttentions() {
		kept := a.Extra[:0]
		for _, e := range a.Extra {
			if _, ok := e.(*decoupled); !ok {
				kept = append(kept, e)
			}
		}
		a.Extra = kept
		if len(a.Extra) == 0 {
			a.Extra = nil
		}
	}
}
