package clipvision

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pixery/pixery/engine/nn"
	"github.com/pixery/pixery/engine/safetensors"
	"github.com/pixery/pixery/engine/sdxl/clip"
)

// Open reads an image encoder's safetensors file, works out its sizes
// (ConfigFor) and binds the network to it. Weights are not read: graphs map
// them from the file when sessions are created.
func Open(path string) (*Model, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image encoder: %w", err)
	}
	c, err := ConfigFor(path, f)
	if err != nil {
		return nil, fmt.Errorf("image encoder %s: %w", path, err)
	}
	m, err := New(c)
	if err != nil {
		return nil, fmt.Errorf("image encoder %s: %w", path, err)
	}
	w, err := nn.NewWeights(f)
	if err != nil {
		return nil, fmt.Errorf("image encoder %s: %w", path, err)
	}
	if err := m.Bind(w); err != nil {
		return nil, fmt.Errorf("image encoder %s: %w", path, err)
	}
	return m, nil
}

// ConfigFor works out the sizes of the encoder in f (opened from path), in
// this order: the config.json beside a Hugging Face-style model.safetensors;
// the JSON in the file's "config" metadata; the tensor shapes, with the head
// count of the known towers (ViT-H/14 and ViT-bigG/14: 16 heads; ViT-L/14:
// 16; ViT-B: 12), because heads cannot be read from shapes.
func ConfigFor(path string, f *safetensors.File) (Config, error) {
	if err := checkLayout(f); err != nil {
		return Config{}, err
	}
	if filepath.Base(path) == "model.safetensors" {
		p := filepath.Join(filepath.Dir(path), "config.json")
		data, err := os.ReadFile(p)
		switch {
		case err == nil:
			c, err := ParseConfig(data)
			if err != nil {
				return Config{}, fmt.Errorf("%s: %w", p, err)
			}
			return c, nil
		case !errors.Is(err, fs.ErrNotExist):
			return Config{}, fmt.Errorf("read %s: %w", p, err)
		}
	}
	if js, ok := f.Metadata["config"]; ok {
		c, err := ParseConfig([]byte(js))
		if err != nil {
			return Config{}, fmt.Errorf("metadata config: %w", err)
		}
		return c, nil
	}
	return InferConfig(f)
}

// checkLayout rejects files that are not a transformers CLIP vision model,
// with a message that says what they are.
func checkLayout(f *safetensors.File) error {
	var vision, openclip int
	for _, n := range f.Names() {
		switch {
		case strings.HasPrefix(n, PrefixVision), strings.HasPrefix(n, PrefixProjection):
			vision++
		case strings.HasPrefix(n, "visual."):
			openclip++
		}
	}
	switch {
	case vision > 0:
		return nil
	case openclip > 0:
		return errors.New("this image encoder uses OpenCLIP's naming (visual.transformer.*); pixery reads the transformers layout (vision_model.*, visual_projection.weight) that h94/IP-Adapter's image_encoder/model.safetensors uses")
	}
	return fmt.Errorf("not a CLIP image encoder: none of its %d tensors is under %q", f.Len(), PrefixVision)
}

// InferConfig reads the sizes from the tensor shapes. The head count comes
// from the width of the known towers.
func InferConfig(f *safetensors.File) (Config, error) {
	shape := func(name string, rank int) ([]int64, error) {
		t, ok := f.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("cannot infer the encoder's sizes: tensor %s is missing", name)
		}
		if len(t.Shape) != rank {
			return nil, fmt.Errorf("cannot infer the encoder's sizes: %s has shape %v, want rank %d", name, t.Shape, rank)
		}
		return t.Shape, nil
	}
	patch, err := shape(PrefixVision+"embeddings.patch_embedding.weight", 4)
	if err != nil {
		return Config{}, err
	}
	pos, err := shape(PrefixVision+"embeddings.position_embedding.weight", 2)
	if err != nil {
		return Config{}, err
	}
	fc1, err := shape(PrefixVision+"encoder.layers.0.mlp.fc1.weight", 2)
	if err != nil {
		return Config{}, err
	}
	proj, err := shape(PrefixProjection+"weight", 2)
	if err != nil {
		return Config{}, err
	}
	layers := int64(0)
	for _, n := range f.Names() {
		rest, ok := strings.CutPrefix(n, PrefixVision+"encoder.layers.")
		if !ok {
			continue
		}
		idx, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.ParseInt(idx, 10, 64); err == nil && i+1 > layers {
			layers = i + 1
		}
	}
	width := patch[0]
	grid := int64(math.Round(math.Sqrt(float64(pos[0] - 1))))
	if grid*grid+1 != pos[0] {
		return Config{}, fmt.Errorf("cannot infer the image size: %d positions is not a square grid plus a class token", pos[0])
	}
	c := Config{ImageSize: grid * patch[2], PatchSize: patch[2], Channels: patch[1], Width: width, Layers: layers,
		MLPWidth: fc1[0], ProjectionDim: proj[0], Activation: clip.GELU, LayerNormEps: 1e-5}
	switch width {
	case 1280, 1664, 1024:
		c.Heads = 16
	case 768:
		c.Heads = 12
	default:
		return Config{}, fmt.Errorf("cannot infer the head count of a %d-wide encoder; put its transformers config.json beside it as <name>/config.json with the weights as <name>/model.safetensors", width)
	}
	// OpenAI's ViT-L/14 and ViT-B use quick GELU; OpenCLIP's towers (the
	// ones SDXL adapters use) the exact GELU.
	if (width == 1024 && layers == 24) || width == 768 {
		c.Activation = clip.QuickGELU
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
