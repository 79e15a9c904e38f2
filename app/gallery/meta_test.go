package gallery

import (
	"reflect"
	"testing"
)

func TestPromptLoRAs(t *testing.T) {
	for _, c := range []struct {
		prompt string
		want   []LoRA
	}{
		{"1girl, <lora:add_detail:0.5>, smile", []LoRA{{"add_detail", 0.5}}},
		{"<lyco:style> <lora:c:1.2:0.8> <hypernet:x:1>", []LoRA{{"style", 1}, {"c", 1.2}}},
		{"<lora:bad:abc>, <lora: spaced name :0.25>", []LoRA{{"bad", 1}, {"spaced name", 0.25}}},
		{"<lora:>, <lora:unclosed:1", nil},
		{"no tags at all", nil},
	} {
		if got := promptLoRAs(c.prompt); !reflect.DeepEqual(got, c.want) {
			t.Errorf("promptLoRAs(%q) = %+v, want %+v", c.prompt, got, c.want)
		}
	}
}

func TestModelStem(t *testing.T) {
	for in, want := range map[string]string{
		"sdxl/animagine-xl-3.1.safetensors": "animagine-xl-3.1",
		`C:\models\pony.ckpt`:               "pony",
		"plain":                             "plain",
		"model.v2":                          "model.v2",
		"":                                  "",
	} {
		if got := modelStem(in); got != want {
			t.Errorf("modelStem(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestComfyLoRAs(t *testing.T) {
	graph := `{"12":{"class_type":"LoraLoaderModelOnly","inputs":{"lora_name":"b.safetensors","strength_model":0.3}},
		"9":{"class_type":"LoraLoader","inputs":{"lora_name":"dir/a.safetensors","strength_model":0.9,"strength_clip":1}},
		"3":{"class_type":"LoraLoader","inputs":{"lora_name":["5",0]}},
		"4":{"class_type":"KSampler","inputs":{}}}`
	want := []LoRA{{"a", 0.9}, {"b", 0.3}}
	if got := comfyLoRAs(graph); !reflect.DeepEqual(got, want) {
		t.Errorf("comfyLoRAs = %+v, want %+v", got, want)
	}
	if got := comfyLoRAs("{not json"); got != nil {
		t.Errorf("comfyLoRAs of garbage = %+v", got)
	}
}
