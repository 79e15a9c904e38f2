package sampler

import (
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	cases := []struct {
		name, scheduler string
		want            string
	}{
		{"euler", "", "euler"},
		{"EULER", "Automatic", "euler"},
		{"Euler", "Karras", "euler_karras"},
		{"euler_karras", "", "euler_karras"},
		{"Euler a", "", "euler_a"},
		{"euler A", "automatic", "euler_a"},
		{"k_euler_a", "", "euler_a"},
		{"euler_ancestral", "", "euler_a"},
		{"Euler a", "Karras", "euler_a_karras"},
		{"dpmpp_2m", "", "dpmpp_2m"},
		{"dpmpp_2m", "Karras", "dpmpp_2m_karras"},
		{"dpmpp_2m_karras", "", "dpmpp_2m_karras"},
		// A1111 1.9+: "DPM++ 2M" with Automatic is Karras.
		{"DPM++ 2M", "", "dpmpp_2m_karras"},
		{"DPM++ 2M", "Automatic", "dpmpp_2m_karras"},
		{"DPM++ 2M", "Uniform", "dpmpp_2m"},
		{"dpm++  2m", "uniform", "dpmpp_2m"},
		{"DPM++ 2M Karras", "", "dpmpp_2m_karras"},
		{"DPM++ 2M Karras", "Uniform", "dpmpp_2m_karras"}, // the name wins, as in A1111
		{"  DDIM ", "", "ddim"},
		{"ddim", "Uniform", "ddim"},
	}
	for _, c := range cases {
		got, err := Lookup(c.name, c.scheduler)
		if err != nil {
			t.Errorf("Lookup(%q, %q): %v", c.name, c.scheduler, err)
			continue
		}
		if got.Name() != c.want {
			t.Errorf("Lookup(%q, %q) = %s, want %s", c.name, c.scheduler, got.Name(), c.want)
		}
	}
}

func TestLookupErrors(t *testing.T) {
	cases := []struct {
		name, scheduler string
		mention         string
	}{
		{"heun", "", "euler_a"}, // lists the valid names
		{"", "", "dpmpp_2m_karras"},
		{"euler\x00", "", "unknown sampler"},
		{"euler", "exponential", "Karras"},
		{"ddim", "karras", "DDIM"},
		{strings.Repeat("x", 1<<20), "", "unknown sampler"},
	}
	for _, c := range cases {
		_, err := Lookup(c.name, c.scheduler)
		if err == nil {
			t.Errorf("Lookup(%.20q, %q) accepted", c.name, c.scheduler)
			continue
		}
		if !strings.Contains(err.Error(), c.mention) {
			t.Errorf("Lookup(%.20q, %q): error %q does not mention %q", c.name, c.scheduler, err, c.mention)
		}
	}
}

func TestSpecNames(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range All() {
		n := s.Name()
		if seen[n] {
			t.Errorf("duplicate name %s", n)
		}
		seen[n] = true
		back, err := Lookup(n, "")
		if err != nil || back != s {
			t.Errorf("Lookup(%s) = %v, %v", n, back, err)
		}
		a, sched := s.A1111()
		back, err = Lookup(a, sched)
		if err != nil || back != s {
			t.Errorf("Lookup(A1111 %q, %q) = %v, %v; want %v", a, sched, back, err, s)
		}
	}
	for _, n := range []string{"euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "euler_karras"} {
		if !seen[n] {
			t.Errorf("name %s missing", n)
		}
	}
	if v, err := ParseVariant("a1111"); err != nil || v != A1111 {
		t.Errorf("ParseVariant(a1111) = %v, %v", v, err)
	}
	if _, err := ParseVariant("comfy"); err == nil {
		t.Error("ParseVariant(comfy) accepted")
	}
}
