package sampler

import (
	"fmt"
	"strings"
)

// Algorithm is a sampler's integration rule.
type Algorithm int

// The supported algorithms.
const (
	Euler          Algorithm = iota // Euler's method on the probability-flow ODE
	EulerAncestral                  // Euler ancestral ("Euler a"), eta 1
	DPMPP2M                         // DPM-Solver++(2M), second-order multistep
	DDIM                            // DDIM, eta 0
)

// Schedule is how a sampler spaces its noise levels.
type Schedule int

// The supported schedules.
const (
	// ScheduleUniform is the reference's own spacing: diffusers' "leading"
	// timesteps, or k-diffusion's get_sigmas (A1111's "Uniform"), or for DDIM
	// the evenly spaced timesteps.
	ScheduleUniform Schedule = iota
	// ScheduleKarras is Karras et al.'s rho = 7 spacing of sigmas.
	ScheduleKarras
)

// Spec names a sampler: an algorithm and the spacing of its noise levels.
type Spec struct {
	Algorithm Algorithm
	Schedule  Schedule
}

// specNames is the canonical name of every supported Spec.
var specNames = []struct {
	spec Spec
	name string
	// a1111 is A1111's display name and schedule type label.
	a1111, a1111Schedule string
}{
	{Spec{Euler, ScheduleUniform}, "euler", "Euler", "Uniform"},
	{Spec{EulerAncestral, ScheduleUniform}, "euler_a", "Euler a", "Uniform"},
	{Spec{DPMPP2M, ScheduleUniform}, "dpmpp_2m", "DPM++ 2M", "Uniform"},
	{Spec{DPMPP2M, ScheduleKarras}, "dpmpp_2m_karras", "DPM++ 2M", "Karras"},
	{Spec{DDIM, ScheduleUniform}, "ddim", "DDIM", "Uniform"},
	{Spec{Euler, ScheduleKarras}, "euler_karras", "Euler", "Karras"},
	{Spec{EulerAncestral, ScheduleKarras}, "euler_a_karras", "Euler a", "Karras"},
}

// All lists every supported Spec, in a stable order.
func All() []Spec {
	out := make([]Spec, len(specNames))
	for i, s := range specNames {
		out[i] = s.spec
	}
	return out
}

// Names lists the canonical names of All, in the same order.
func Names() []string {
	out := make([]string, len(specNames))
	for i, s := range specNames {
		out[i] = s.name
	}
	return out
}

// Name is the canonical pixery name, e.g. "dpmpp_2m_karras".
func (s Spec) Name() string {
	for _, n := range specNames {
		if n.spec == s {
			return n.name
		}
	}
	return fmt.Sprintf("Spec(%d,%d)", s.Algorithm, s.Schedule)
}

// String returns Name.
func (s Spec) String() string { return s.Name() }

// A1111 returns the names A1111 (1.9 and later) shows for this sampler: the
// sampler ("DPM++ 2M") and the schedule type ("Karras", "Uniform").
func (s Spec) A1111() (sampler, schedule string) {
	for _, n := range specNames {
		if n.spec == s {
			return n.a1111, n.a1111Schedule
		}
	}
	return "", ""
}

// Ancestral reports whether the sampler adds fresh noise at each step and so
// needs a NoiseSource.
func (s Spec) Ancestral() bool { return s.Algorithm == EulerAncestral }

func (s Spec) valid() bool {
	for _, n := range specNames {
		if n.spec == s {
			return true
		}
	}
	return false
}

// samplerAlias is one accepted spelling of a sampler name.
type samplerAlias struct {
	alg Algorithm
	// karras is set when the name itself says Karras.
	karras bool
	// automatic is the schedule "Automatic" (or no scheduler) means. For
	// A1111's display names it is A1111's per-sampler default: since A1111
	// 1.9 "DPM++ 2M" defaults to Karras. pixery's own names mean exactly
	// what they say.
	automatic Schedule
}

var samplerAliases = map[string]samplerAlias{
	// pixery names (the diffusers schedulers' choices).
	"euler":           {alg: Euler},
	"euler_a":         {alg: EulerAncestral},
	"euler_ancestral": {alg: EulerAncestral},
	"dpmpp_2m":        {alg: DPMPP2M},
	"dpmpp_2m_karras": {alg: DPMPP2M, karras: true},
	"ddim":            {alg: DDIM},
	"euler_karras":    {alg: Euler, karras: true},
	"euler_a_karras":  {alg: EulerAncestral, karras: true},
	// A1111 display names and aliases (k_*), lowercased. Names ending in
	// " Karras" are A1111's pre-1.9 combined names.
	"euler a":           {alg: EulerAncestral},
	"k_euler_a":         {alg: EulerAncestral},
	"k_euler_ancestral": {alg: EulerAncestral},
	"euler a karras":    {alg: EulerAncestral, karras: true},
	"k_euler":           {alg: Euler},
	"euler karras":      {alg: Euler, karras: true},
	"dpm++ 2m":          {alg: DPMPP2M, automatic: ScheduleKarras},
	"k_dpmpp_2m":        {alg: DPMPP2M, automatic: ScheduleKarras},
	"dpm++ 2m karras":   {alg: DPMPP2M, karras: true},
	"k_dpmpp_2m_ka":     {alg: DPMPP2M, karras: true},
}

var schedulerNames = map[string]func(a samplerAlias) Schedule{
	"":          func(a samplerAlias) Schedule { return a.automatic },
	"automatic": func(a samplerAlias) Schedule { return a.automatic },
	"uniform":   func(samplerAlias) Schedule { return ScheduleUniform },
	"karras":    func(samplerAlias) Schedule { return ScheduleKarras },
}

// Lookup resolves a sampler name and an A1111-style scheduler ("schedule
// type") to a Spec. Both are case-insensitive and trimmed.
//
// name is a pixery name (euler, euler_a, dpmpp_2m, dpmpp_2m_karras, ddim,
// euler_karras, euler_a_karras) or an A1111 name ("Euler a", "Euler",
// "DPM++ 2M", "DPM++ 2M Karras", "DDIM", k_* aliases). scheduler is "",
// "Automatic", "Uniform" or "Karras". A Karras in the name wins over the
// scheduler, as in A1111. "Automatic" (or "") keeps a pixery name as it is
// and gives an A1111 name A1111's default: Karras for "DPM++ 2M" (A1111 1.9
// and later), Uniform for the others.
func Lookup(name, scheduler string) (Spec, error) {
	key := strings.ToLower(strings.Join(strings.Fields(name), " "))
	alias, ok := samplerAliases[key]
	if !ok {
		return Spec{}, fmt.Errorf("unknown sampler %q (valid: %s; or A1111's Euler a, Euler, DPM++ 2M, DPM++ 2M Karras, DDIM)",
			name, strings.Join(Names(), ", "))
	}
	sched, ok := schedulerNames[strings.ToLower(strings.TrimSpace(scheduler))]
	if !ok {
		return Spec{}, fmt.Errorf("unknown scheduler %q (valid: Automatic, Uniform, Karras)", scheduler)
	}
	spec := Spec{Algorithm: alias.alg, Schedule: sched(alias)}
	if alias.karras {
		spec.Schedule = ScheduleKarras
	}
	if !spec.valid() {
		return Spec{}, fmt.Errorf("sampler %q does not support the %q schedule (DDIM has only Uniform)", name, scheduler)
	}
	return spec, nil
}
