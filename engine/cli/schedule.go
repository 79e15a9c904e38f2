package cli

import (
	"flag"
	"fmt"
	"io"

	"github.com/pixery/pixery/engine/sampler"
)

func init() {
	Register(&Command{
		Name:    "schedule",
		Summary: "print a sampler's timesteps and sigmas as JSON",
		Run:     runSchedule,
	})
}

// scheduleOutput is what schedule prints. Sigmas is left out for DDIM,
// whose scheduler has none (the golden file omits it too), rather than
// printed as an empty list that could be mistaken for a schedule.
type scheduleOutput struct {
	Timesteps []float64 `json:"timesteps"`
	Sigmas    []float64 `json:"sigmas,omitempty"`
}

// runSchedule implements
//
//	pixery-engine schedule --sampler NAME --steps N [--scheduler S] [--variant V]
//
// printing {"timesteps":[...],"sigmas":[...]}: the timesteps the model
// receives and the scheduler's sigmas including the final 0. The default
// variant is diffusers (its schedulers' timesteps and sigmas attributes);
// --variant a1111 prints A1111/k-diffusion's instead.
func runSchedule(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("schedule", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("sampler", "", "sampler: "+joinNames()+", or an A1111 name such as \"DPM++ 2M\"")
	steps := fs.Int("steps", 0, fmt.Sprintf("number of steps, 1..%d", sampler.MaxSteps))
	sched := fs.String("scheduler", "", "A1111 schedule type: Automatic, Uniform or Karras")
	variant := fs.String("variant", "diffusers", "reference to reproduce: diffusers or a1111")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	if *name == "" {
		return fmt.Errorf("%w: --sampler is required (%s)", ErrUsage, joinNames())
	}
	if *steps <= 0 || *steps > sampler.MaxSteps {
		return fmt.Errorf("%w: --steps %d out of range (1..%d)", ErrUsage, *steps, sampler.MaxSteps)
	}
	spec, err := sampler.Lookup(*name, *sched)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	v, err := sampler.ParseVariant(*variant)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	s, err := sampler.New(spec, *steps, sampler.Options{Variant: v})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return WriteJSON(stdout, scheduleOutput{Timesteps: s.Timesteps(), Sigmas: s.Sigmas()})
}

func joinNames() string {
	out := ""
	for i, n := range sampler.Names() {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}
