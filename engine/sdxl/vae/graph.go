package vae

import (
	"errors"

	"github.com/pixery/pixery/engine/nn"
)

// Names of the graphs' inputs and outputs, as in the golden io files.
const (
	// LatentInput is the decoder's input [B, L, h, w]: the latent already
	// divided by the scaling factor (the pipeline divides, not the graph).
	LatentInput = "latent"
	// ImageOutput is the decoder's output [B, 3, 8h, 8w] (for SDXL's four
	// levels), raw and not clamped.
	ImageOutput = "image"
	// ImageInput is the encoder's input [B, 3, H, W] in [−1, 1].
	ImageInput = "image"
	// MomentsOutput is the encoder's output [B, 2L, H/8, W/8]: mean, then
	// log-variance.
	MomentsOutput = "moments"
)

var errNotBound = errors.New("VAE weights not bound (call Bind first)")

// BuildDecoder builds the decoder graph: LatentInput → post_quant_conv →
// decoder → ImageOutput. Batch, height and width are dynamic.
func (m *Model) BuildDecoder(o nn.BuildOptions) (*nn.Graph, error) {
	if !m.bound {
		return nil, errNotBound
	}
	b := nn.NewBuilder("sdxl_vae_decoder", m.dir, o)
	z := nn.Input(b, LatentInput, nn.Dyn("batch"), nn.Fixed(m.Config.LatentChannels), nn.Dyn("height"), nn.Dyn("width"))
	nn.Output(b, m.Decode(z), ImageOutput)
	return &nn.Graph{Name: "vae_decoder", Model: b.Model(), Inputs: []string{LatentInput}, Outputs: []string{ImageOutput}, ExternalDir: m.dir}, nil
}

// BuildEncoder builds the encoder graph: ImageInput → encoder → quant_conv
// → MomentsOutput. Batch, height and width are dynamic.
func (m *Model) BuildEncoder(o nn.BuildOptions) (*nn.Graph, error) {
	if !m.bound {
		return nil, errNotBound
	}
	b := nn.NewBuilder("sdxl_vae_encoder", m.dir, o)
	x := nn.Input(b, ImageInput, nn.Dyn("batch"), nn.Fixed(m.Config.InChannels), nn.Dyn("height"), nn.Dyn("width"))
	nn.Output(b, m.Encode(x), MomentsOutput)
	return &nn.Graph{Name: "vae_encoder", Model: b.Model(), Inputs: []string{ImageInput}, Outputs: []string{MomentsOutput}, ExternalDir: m.dir}, nil
}
