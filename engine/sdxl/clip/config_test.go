package clip

import (
	"strings"
	"testing"
)

func TestSDXLConfigsValid(t *testing.T) {
	for _, k := range []Kind{L, G} {
		if err := k.SDXL().Validate(k); err != nil {
			t.Errorf("%s.SDXL(): %v", k, err)
		}
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want Config
	}{
		{
			// The fields of SDXL base's text_encoder/config.json.
			name: "sdxl text_encoder",
			json: `{"architectures":["CLIPTextModel"],"hidden_act":"quick_gelu","hidden_size":768,"intermediate_size":3072,
				"layer_norm_eps":1e-05,"max_position_embeddings":77,"model_type":"clip_text_model","num_attention_heads":12,
				"num_hidden_layers":12,"projection_dim":768,"vocab_size":49408,"torch_dtype":"float16"}`,
			want: func() Config { c := L.SDXL(); c.ProjectionDim = 768; return c }(),
		},
		{
			name: "sdxl text_encoder_2",
			json: `{"architectures":["CLIPTextModelWithProjection"],"hidden_act":"gelu","hidden_size":1280,"intermediate_size":5120,
				"layer_norm_eps":1e-05,"max_position_embeddings":77,"num_attention_heads":20,"num_hidden_layers":32,
				"projection_dim":1280,"vocab_size":49408}`,
			want: G.SDXL(),
		},
		{
			name: "defaults for optional fields",
			json: `{"hidden_size":16,"num_attention_heads":2,"num_hidden_layers":3,"intermediate_size":64,"hidden_act":"quick_gelu"}`,
			want: Config{VocabSize: 49408, Width: 16, Heads: 2, Layers: 3, MLPWidth: 64, Positions: 77, Activation: QuickGELU, LayerNormEps: 1e-5},
		},
		{
			name: "full CLIPConfig with text_config",
			json: `{"model_type":"clip","projection_dim":512,"text_config":{"hidden_size":24,"num_attention_heads":3,
				"num_hidden_layers":4,"intermediate_size":96,"hidden_act":"gelu","projection_dim":24,"layer_norm_eps":1e-6}}`,
			want: Config{VocabSize: 49408, Width: 24, Heads: 3, Layers: 4, MLPWidth: 96, Positions: 77, Activation: GELU, LayerNormEps: 1e-6, ProjectionDim: 24},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	const ok = `"hidden_size":16,"num_attention_heads":2,"num_hidden_layers":3,"intermediate_size":64,"hidden_act":"gelu"`
	for _, tc := range []struct {
		name, json string
		want       []string // substrings of the error
	}{
		{"not json", `{"hidden_size":`, []string{"parse CLIP text config"}},
		{"trailing garbage", `{` + ok + `} x`, []string{"parse CLIP text config"}},
		{"string size", `{"hidden_size":"16","num_attention_heads":2,"num_hidden_layers":3,"intermediate_size":64,"hidden_act":"gelu"}`, []string{"hidden_size"}},
		{"missing sizes", `{"hidden_act":"gelu","num_hidden_layers":3}`, []string{"missing", "hidden_size", "num_attention_heads", "intermediate_size"}},
		{"missing hidden_act", `{"hidden_size":16,"num_attention_heads":2,"num_hidden_layers":3,"intermediate_size":64}`, []string{"missing hidden_act"}},
		{"heads do not divide width", `{"hidden_size":16,"num_attention_heads":3,"num_hidden_layers":3,"intermediate_size":64,"hidden_act":"gelu"}`, []string{"not a multiple of num_attention_heads 3"}},
		{"unsupported activation", `{"hidden_size":16,"num_attention_heads":2,"num_hidden_layers":3,"intermediate_size":64,"hidden_act":"gelu_new"}`, []string{`hidden_act "gelu_new" is not supported`}},
		{"zero layers", `{"hidden_size":16,"num_attention_heads":2,"num_hidden_layers":0,"intermediate_size":64,"hidden_act":"gelu"}`, []string{"num_hidden_layers must be positive"}},
		{"negative eps", `{` + ok + `,"layer_norm_eps":-1}`, []string{"layer_norm_eps"}},
		{"negative vocab", `{` + ok + `,"vocab_size":-5}`, []string{"vocab_size must be positive"}},
		{"ambiguous text_config", `{` + ok + `,"text_config":{` + ok + `}}`, []string{"ambiguous"}},
		{"bad text_config", `{"text_config":{"hidden_size":16}}`, []string{"missing", "hidden_act"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	noProj := G.SDXL()
	noProj.ProjectionDim = 0
	for _, tc := range []struct {
		name string
		kind Kind
		cfg  Config
		want string
	}{
		{"G without projection", G, noProj, "projection_dim must be positive"},
		{"unknown kind", Kind("clip_h"), L.SDXL(), `unknown text encoder "clip_h"`},
		{"zero config", L, Config{}, "hidden_size must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := New(tc.kind, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, %v; want error containing %q", enc, err, tc.want)
			}
		})
	}
	// CLIP-L has no projection, so the same config is fine there.
	if _, err := New(L, noProj); err != nil {
		t.Errorf("L without projection_dim: %v", err)
	}
}

func TestParseKind(t *testing.T) {
	for _, s := range []string{"clip_l", "clip_g"} {
		k, err := ParseKind(s)
		if err != nil || string(k) != s {
			t.Errorf("ParseKind(%q) = %q, %v", s, k, err)
		}
	}
	if _, err := ParseKind("unet"); err == nil {
		t.Error("ParseKind(unet) gave no error")
	}
}
