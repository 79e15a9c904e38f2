package clipconfig

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		name           string
		json           string
		needProjection bool
		want           Sizes
		missing        []string
	}{
		{"text defaults", `{"hidden_size":16,"num_attention_heads":2,"num_hidden_layers":3,"intermediate_size":64,"hidden_act":"gelu"}`,
			false, Sizes{Width: 16, Heads: 2, Layers: 3, MLPWidth: 64, Activation: "gelu", LayerNormEps: 1e-5}, nil},
		{"vision given eps and projection", `{"hidden_size":16,"num_attention_heads":2,"num_hidden_layers":3,"intermediate_size":64,"projection_dim":8,"hidden_act":"quick_gelu","layer_norm_eps":1e-6}`,
			true, Sizes{Width: 16, Heads: 2, Layers: 3, MLPWidth: 64, ProjectionDim: 8, Activation: "quick_gelu", LayerNormEps: 1e-6}, nil},
		{"optional projection read", `{"hidden_size":16,"num_attention_heads":2,"num_hidden_layers":3,"intermediate_size":64,"projection_dim":8,"hidden_act":"gelu"}`,
			false, Sizes{Width: 16, Heads: 2, Layers: 3, MLPWidth: 64, ProjectionDim: 8, Activation: "gelu", LayerNormEps: 1e-5}, nil},
		{"all missing, projection required", `{}`, true, Sizes{LayerNormEps: 1e-5},
			[]string{"hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "projection_dim", "hidden_act"}},
		{"all missing, projection optional", `{"layer_norm_eps":0}`, false, Sizes{},
			[]string{"hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "hidden_act"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Fields
			if err := json.Unmarshal([]byte(tc.json), &f); err != nil {
				t.Fatal(err)
			}
			s, missing := f.Sizes(tc.needProjection)
			if s != tc.want || !slices.Equal(missing, tc.missing) {
				t.Errorf("Sizes = %+v, missing %v; want %+v, missing %v", s, missing, tc.want, tc.missing)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	good := Sizes{Width: 16, Heads: 2, Layers: 3, MLPWidth: 64, Activation: "gelu", LayerNormEps: 1e-5}
	var p Problems
	p.Sizes(good)
	p.Heads(good)
	p.Numerics(good, "quick_gelu", "gelu")
	if err := p.Err("invalid config"); err != nil {
		t.Errorf("valid sizes: %v", err)
	}

	bad := Sizes{Width: 15, Heads: 2, Layers: 0, MLPWidth: 64, Activation: "gelu_new", LayerNormEps: 0}
	p = nil
	p.Sizes(bad)
	p.Heads(bad)
	p.Numerics(bad, "gelu", "quick_gelu")
	want := `invalid CLIP vision config: num_hidden_layers must be positive, got 0; ` +
		`hidden_size 15 is not a multiple of num_attention_heads 2; ` +
		`hidden_act "gelu_new" is not supported (want "gelu" or "quick_gelu"); ` +
		`layer_norm_eps must be a positive number, got 0`
	if err := p.Err("invalid CLIP vision config"); err == nil || err.Error() != want {
		t.Errorf("Err = %v\nwant %s", err, want)
	}
}

func TestNested(t *testing.T) {
	for raw, want := range map[string]bool{"": false, "null": false, " null ": false, "{}": true, `{"hidden_size":1}`: true} {
		if got := Nested(json.RawMessage(raw)); got != want {
			t.Errorf("Nested(%q) = %v, want %v", raw, got, want)
		}
	}
}
