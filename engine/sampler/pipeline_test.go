package sampler

import (
	"encoding/json"
	"math"
	"testing"
)

// TestPipelineGoldenSchedules checks the schedules of the pipeline golden
// (diffusers v0.27.2, 4 and 5 steps) that the pipeline will run with.
func TestPipelineGoldenSchedules(t *testing.T) {
	b, err := readPythonJSON("../../testdata/golden/pipeline/pipeline.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases map[string]struct {
			Class          string    `json:"scheduler_class"`
			Steps          int       `json:"num_inference_steps"`
			Timesteps      []float64 `json:"timesteps"`
			Sigmas         []float64 `json:"sigmas"`
			InitNoiseSigma float64   `json:"init_noise_sigma"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("parse pipeline.json: %v", err)
	}
	specs := map[string]Spec{
		"a_euler":          {Euler, ScheduleUniform},
		"b_dpmpp2m_karras": {DPMPP2M, ScheduleKarras},
		"c_euler_nocfg":    {Euler, ScheduleUniform},
	}
	if len(g.Cases) != len(specs) {
		t.Fatalf("pipeline golden has %d cases, want %d", len(g.Cases), len(specs))
	}
	for name, c := range g.Cases {
		spec, ok := specs[name]
		if !ok {
			t.Fatalf("unexpected case %s", name)
		}
		s, err := New(spec, c.Steps, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var worst float64
		cmp := func(got, want []float64) {
			if len(got) != len(want) {
				t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
			}
			for i := range got {
				worst = math.Max(worst, math.Abs(got[i]-want[i])/math.Max(1, math.Abs(want[i])))
			}
		}
		cmp(s.Timesteps(), c.Timesteps)
		cmp(s.Sigmas(), c.Sigmas)
		cmp([]float64{s.InitNoiseSigma()}, []float64{c.InitNoiseSigma})
		t.Logf("%s (%s, %d steps): max scaled error %.3g", name, c.Class, c.Steps, worst)
		if worst > 1e-6 {
			t.Errorf("%s: schedule off by %.3g", name, worst)
		}
	}
}
