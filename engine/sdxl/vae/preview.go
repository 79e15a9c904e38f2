package vae

import (
	"image"
	"image/color"
	"math"
)

// latentRGB maps the four channels of an SDXL latent, in the sampler's
// space (the latent the UNet sees: VAE latent × 0.13025), to RGB in about
// [−1, 1]: rgb = Σ_c latent[c]·latentRGB[c] + latentRGBBias. The numbers
// are the least-squares fit ComfyUI ships for SDXL previews
// (comfy/latent_formats.py, class SDXL: latent_rgb_factors and
// latent_rgb_factors_bias).
var latentRGB = [4][3]float32{
	{0.3651, 0.4232, 0.4341},
	{-0.2533, -0.0042, 0.1068},
	{0.1076, 0.1111, -0.0362},
	{-0.3165, -0.2492, -0.2188},
}

var latentRGBBias = [3]float32{0.1084, -0.0175, -0.0011}

// Preview is a cheap approximation of the decoded image for live previews
// while sampling: a fixed linear map of each latent pixel to a colour, with
// no network. latent holds one image's four channels, channel-major
// ([4, h, w], the first image of a [B, 4, h, w] batch), in the sampler's
// space (not divided by the scaling factor). The result is h×w (an eighth
// of the final image's size each way); colours in [−1, 1] map to 0..255,
// clamped. A latent too short for h×w, or a non-positive size, gives an
// empty image.
func Preview(latent []float32, h, w int) image.Image {
	if h <= 0 || w <= 0 || h > math.MaxInt/w || len(latent)/4 < h*w {
		return image.NewRGBA(image.Rectangle{})
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	plane := h * w
	for i := 0; i < plane; i++ {
		rgb := latentRGBBias
		for c := range 4 {
			v := latent[c*plane+i]
			for k := range 3 {
				rgb[k] += v * latentRGB[c][k]
			}
		}
		img.SetRGBA(i%w, i/w, color.RGBA{toByte(rgb[0]), toByte(rgb[1]), toByte(rgb[2]), 255})
	}
	return img
}

// toByte maps [−1, 1] to 0..255, rounding to nearest and clamping (NaN
// becomes 0).
func toByte(v float32) uint8 {
	x := (v + 1) * 0.5 * 255
	switch {
	case !(x > 0):
		return 0
	case x >= 255:
		return 255
	}
	return uint8(x + 0.5)
}
