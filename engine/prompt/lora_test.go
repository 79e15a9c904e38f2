package prompt

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExtractLoRAs(t *testing.T) {
	for _, c := range []struct {
		in    string
		clean string
		loras []LoRARef
	}{
		{"no tags here", "no tags here", nil},
		{"", "", nil},
		{"a <lora:style:0.8>, b", "a , b", []LoRARef{{"style", 0.8}}},
		{"<lora:plain>1girl", "1girl", []LoRARef{{"plain", 1}}},
		{"<lyco:loha_x:.5> x", " x", []LoRARef{{"loha_x", 0.5}}},
		{"<lora:a:1><lora:b:-0.25>", "", []LoRARef{{"a", 1}, {"b", -0.25}}},
		{"<lora:spaced: 0.7 >", "", []LoRARef{{"spaced", 0.7}}},
		{"<lora:te:te=0.6>", "", []LoRARef{{"te", 0.6}}},
		{"<lora:same:0.6:0.6>", "", []LoRARef{{"same", 0.6}}},
		{"<lora:dir/name v2:1>", "", []LoRARef{{"dir/name v2", 1}}},
		{"(a:1.2) <lora:x:1> (b)", "(a:1.2)  (b)", []LoRARef{{"x", 1}}},
		{"<3 love <no colon>", "<3 love <no colon>", nil},
		{"a > b < c", "a > b < c", nil},
	} {
		clean, loras, err := ExtractLoRAs(c.in)
		if err != nil {
			t.Errorf("ExtractLoRAs(%q): %v", c.in, err)
			continue
		}
		if clean != c.clean || !slices.Equal(loras, c.loras) {
			t.Errorf("ExtractLoRAs(%q) = %q, %v; want %q, %v", c.in, clean, loras, c.clean, c.loras)
		}
	}
}

func TestExtractLoRAsErrors(t *testing.T) {
	for _, c := range []struct{ in, mention string }{
		{"<lora:>", "<lora:>"},
		{"x <lora:unclosed:0.5", "<lora:unclosed"},
		{"<lora::0.8>", "<lora::0.8>"},
		{"<lora:x:abc>", "<lora:x:abc>"},
		{"<lora:x:inf>", "<lora:x:inf>"},
		{"<lora:x:0x1p1>", "<lora:x:0x1p1>"},
		{"<lora:x:1:0.5>", "<lora:x:1:0.5>"},
		{"<lora:x:1:1:8>", "<lora:x:1:1:8>"},
		{"<hypernet:h:1>", "<hypernet:h:1>"},
		{"<lora:a <lora:b:1>", "<lora:a <lora:b:1>"},
		{"bad \xff utf8", ""},
	} {
		_, _, err := ExtractLoRAs(c.in)
		if err == nil {
			t.Errorf("ExtractLoRAs(%q): no error", c.in)
			continue
		}
		if !strings.Contains(err.Error(), c.mention) {
			t.Errorf("ExtractLoRAs(%q): error %q does not name %q", c.in, err, c.mention)
		}
		if c.mention == "" && !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("ExtractLoRAs(%q): error %v, want ErrInvalidUTF8", c.in, err)
		}
	}
}

// Many '<' without a closing '>' must stay linear.
func TestExtractLoRAsLinear(t *testing.T) {
	for _, in := range []string{
		strings.Repeat("<a:", 300000),
		strings.Repeat("<a:b", 200000) + ">",
		strings.Repeat("<", 1<<20),
	} {
		start := time.Now()
		_, _, err := ExtractLoRAs(in)
		d := time.Since(start)
		t.Logf("%d bytes: %v in %v", len(in), err, d)
		if d > time.Minute { // a hang guard, not a speed test
			t.Errorf("took %v", d)
		}
	}
}
