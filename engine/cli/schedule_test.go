package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
)

const samplersGolden = "../../testdata/golden/samplers.json"

type scheduleGolden struct {
	Diffusers map[string]map[string]struct {
		Timesteps []float64 `json:"timesteps"`
		Sigmas    []float64 `json:"sigmas"`
	} `json:"diffusers"`
	KDiff map[string]map[string]struct {
		Sigmas []float64 `json:"sigmas"`
	} `json:"a1111_kdiffusion"`
}

func loadScheduleGolden(t *testing.T) *scheduleGolden {
	t.Helper()
	b, err := os.ReadFile(samplersGolden)
	if err != nil {
		t.Fatal(err)
	}
	// Python wrote the DPM config's lambda_min_clipped as -Infinity.
	b = bytes.ReplaceAll(b, []byte(": -Infinity"), []byte(": null"))
	var g scheduleGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("parse %s: %v", samplersGolden, err)
	}
	return &g
}

// goldenToCLI maps the golden file's sampler names to the command's.
var goldenToCLI = map[string]string{
	"euler": "euler", "euler_ancestral": "euler_a", "dpmpp_2m": "dpmpp_2m",
	"dpmpp_2m_karras": "dpmpp_2m_karras", "ddim": "ddim", "euler_karras": "euler_karras",
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// maxScaledDiff is max |got-want| / max(1, |want|).
func maxScaledDiff(got, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var m float64
	for i := range got {
		m = math.Max(m, math.Abs(got[i]-want[i])/math.Max(1, math.Abs(want[i])))
	}
	return m
}

func TestScheduleGolden(t *testing.T) {
	g := loadScheduleGolden(t)
	n := 0
	for steps, byName := range g.Diffusers {
		for name, want := range byName {
			cliName, ok := goldenToCLI[name]
			if !ok {
				t.Fatalf("golden sampler %q unknown", name)
			}
			code, stdout, stderr := runCLI("schedule", "--sampler", cliName, "--steps", steps)
			if code != 0 {
				t.Fatalf("%s %s: exit %d: %s", cliName, steps, code, stderr)
			}
			if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
				t.Errorf("%s %s: output is not one line: %q", cliName, steps, stdout)
			}
			var got map[string][]float64
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("%s %s: %v: %s", cliName, steps, err, stdout)
			}
			dt := maxScaledDiff(got["timesteps"], want.Timesteps)
			ds := 0.0
			if name == "ddim" {
				if _, has := got["sigmas"]; has {
					t.Errorf("ddim printed sigmas: %s", stdout)
				}
			} else {
				ds = maxScaledDiff(got["sigmas"], want.Sigmas)
			}
			t.Logf("%-16s %s steps: timesteps max error %.3g, sigmas %.3g", cliName, steps, dt, ds)
			if dt > 1e-5 || ds > 1e-5 {
				t.Errorf("%s %s: timesteps error %.3g, sigmas error %.3g", cliName, steps, dt, ds)
			}
			n++
		}
	}
	if n != 12 {
		t.Errorf("checked %d golden schedules, want 12", n)
	}
	// The A1111 variant against the k-diffusion records.
	for steps, byName := range g.KDiff {
		for name, want := range byName {
			code, stdout, stderr := runCLI("schedule", "--variant", "a1111", "--sampler", goldenToCLI[name], "--steps", steps)
			if code != 0 {
				t.Fatalf("a1111 %s %s: exit %d: %s", name, steps, code, stderr)
			}
			var got map[string][]float64
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatal(err)
			}
			if d := maxScaledDiff(got["sigmas"], want.Sigmas); d > 1e-5 {
				t.Errorf("a1111 %s %s: sigmas error %.3g", name, steps, d)
			}
		}
	}
}

func TestScheduleA1111Names(t *testing.T) {
	_, a, _ := runCLI("schedule", "--sampler", "DPM++ 2M", "--scheduler", "Karras", "--steps", "28")
	_, b, _ := runCLI("schedule", "--sampler", "dpmpp_2m_karras", "--steps", "28")
	if a == "" || a != b {
		t.Errorf("\"DPM++ 2M\" + Karras printed %q, dpmpp_2m_karras %q", a, b)
	}
}

func TestScheduleErrors(t *testing.T) {
	cases := []struct {
		args    []string
		mention string
	}{
		{[]string{"--sampler", "heun", "--steps", "20"}, "dpmpp_2m_karras"},
		{[]string{"--sampler", "euler", "--steps", "0"}, "out of range"},
		{[]string{"--sampler", "euler", "--steps", "-3"}, "out of range"},
		{[]string{"--sampler", "euler", "--steps", "1001"}, "out of range"},
		{[]string{"--sampler", "euler", "--steps", "99999999999999999999"}, "steps"},
		{[]string{"--sampler", "euler", "--steps", "ten"}, "steps"},
		{[]string{"--sampler", "euler"}, "out of range"},
		{[]string{"--steps", "20"}, "--sampler is required"},
		{[]string{"--sampler", "euler", "--steps", "20", "extra"}, "unexpected"},
		{[]string{"--sampler", "euler", "--steps", "20", "--scheduler", "beta"}, "scheduler"},
		{[]string{"--sampler", "ddim", "--steps", "20", "--scheduler", "karras"}, "DDIM"},
		{[]string{"--sampler", "euler", "--steps", "20", "--variant", "comfy"}, "variant"},
		{[]string{"--sampler", "dpmpp_2m", "--steps", "1000"}, "steps"},
	}
	for _, c := range cases {
		code, stdout, stderr := runCLI(append([]string{"schedule"}, c.args...)...)
		if code == 0 {
			t.Errorf("%v: exit 0, stdout %q", c.args, stdout)
			continue
		}
		if stdout != "" {
			t.Errorf("%v: printed %q on failure", c.args, stdout)
		}
		if !strings.Contains(stderr, c.mention) {
			t.Errorf("%v: stderr %q does not mention %q", c.args, stderr, c.mention)
		}
	}
	// Every valid step count at the edges works.
	for _, steps := range []int{1, 1000} {
		if code, _, stderr := runCLI("schedule", "--sampler", "euler", "--steps", fmt.Sprint(steps)); code != 0 {
			t.Errorf("euler %d steps: %s", steps, stderr)
		}
	}
}
