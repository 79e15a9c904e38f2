package pngmeta

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParseParameters feeds arbitrary text to the infotext parser. It must
// never panic; what it accepts must be consistent (a Size always gives both
// dimensions), and a recipe's own infotext must read back.
func FuzzParseParameters(f *testing.F) {
	f.Add(sampleRecipe().Parameters())
	f.Add("a\nNegative prompt: b\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512")
	f.Add(`x` + "\n" + `Steps: 1, Lora hashes: "a: b, c", TI hashes: "\"", Size: 9x, Seed: 99999999999999999999`)
	f.Add("Negative prompt:\nSteps: -1, Sampler: , CFG scale: NaN")
	f.Add(`p` + "\n" + `A: "unterminated, B: "\u12", C: """`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseParameters(s)
		if p == nil {
			if err == nil {
				t.Fatal("nil result without an error")
			}
			return
		}
		if (p.Width == 0) != (p.Height == 0) {
			t.Fatalf("half a size: %dx%d", p.Width, p.Height)
		}
		if p.ClipSkip < 1 {
			t.Fatalf("clip skip %d", p.ClipSkip)
		}
		for _, fld := range p.Fields {
			if strings.Contains(fld.Key, ":") {
				t.Fatalf("key %q holds a colon", fld.Key)
			}
		}
	})
}

// FuzzDecode feeds arbitrary bytes, after a valid PNG prefix or alone, to
// the chunk reader and interpreters: errors must be *FormatError, never a
// panic.
func FuzzDecode(f *testing.F) {
	f.Add(pngWith(f, rawChunk("tEXt", []byte("parameters\x00a\nSteps: 1, Seed: 2, Size: 8x8"))), false)
	f.Add(pngWith(f, rawChunk("tEXt", []byte("prompt\x00"+comfyPrompt))), false)
	f.Add(pngWith(f, rawChunk("iTXt", append([]byte("workflow\x00\x01\x00\x00\x00"), zlibBytes([]byte(comfyWorkflow))...))), false)
	f.Add([]byte("\x00\x00\x00\x0dIHDR"), true)
	f.Fuzz(func(t *testing.T, data []byte, prefixed bool) {
		if prefixed {
			data = append(append([]byte{}, pngSignature...), data...)
		}
		m, err := Decode(bytes.NewReader(data))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FormatError: %v", err)
			}
			return
		}
		if m.Parameters != "" && m.A1111 == nil && len(m.Problems) == 0 {
			t.Fatal("parameters present but neither parsed nor reported")
		}
	})
}

// FuzzParseComfy feeds arbitrary JSON-ish text as both ComfyUI chunks.
func FuzzParseComfy(f *testing.F) {
	f.Add(comfyPrompt, comfyWorkflow)
	f.Add(`{"1":{"class_type":"KSamplerAdvanced","inputs":{"noise_seed":["1",0],"positive":["1",0]}}}`, `{"nodes":[{"id":"a","type":"KSampler","widgets_values":["x"]}],"links":[[1]]}`)
	f.Fuzz(func(t *testing.T, prompt, workflow string) {
		c, err := ParseComfy(prompt, workflow)
		if (c == nil) == (err == nil) {
			t.Fatalf("want exactly one of result and error: %+v, %v", c, err)
		}
	})
}
