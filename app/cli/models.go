package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pixery/pixery/engine/api"
	enginecli "github.com/pixery/pixery/engine/cli"
)

func init() {
	Commands.Register(&enginecli.Command{
		Name:    "models",
		Summary: "the engine's models: state, defaults, prompt guide, negative prompt",
		Run:     runModels,
	})
}

// requestTimeout bounds a plain request to the engine (not a job's stream):
// a remote engine behind a dead tunnel must not hang a command.
const requestTimeout = 60 * time.Second

func runModels(args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("models", "[--config DIR] [--server URL | --local]", stderr)
	var ef engineFlags
	ef.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: models takes no arguments", enginecli.ErrUsage)
	}
	_, eng, err := ef.open(stderr)
	if err != nil {
		return err
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	ms, err := eng.Models(ctx)
	if err != nil {
		return fmt.Errorf("list models on %s: %w", eng.Describe(), err)
	}
	if len(ms) == 0 {
		fmt.Fprintf(stdout, "%s has no models.\n", eng.Describe())
		return nil
	}
	printModels(stdout, ms)
	return nil
}

// printModels writes one row per model (columns aligned over all rows),
// each followed by its prompt guide and negative prompt, indented.
func printModels(w io.Writer, ms []api.Model) {
	rows := [][]string{{"ID", "NAME", "STATE", "DEFAULTS"}}
	for _, m := range ms {
		rows = append(rows, []string{m.ID, m.DisplayName, modelState(m), modelDefaults(m.Defaults)})
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	row := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	row(rows[0])
	for i, m := range ms {
		row(rows[i+1])
		g := m.PromptGuide
		field := func(label, value string) {
			if strings.TrimSpace(value) != "" {
				fmt.Fprintf(w, "    %-13s %s\n", label+":", wrap(oneLine(value), guideWidth, strings.Repeat(" ", 18)))
			}
		}
		field("quality tags", strings.Join(g.QualityTags, ", "))
		field("style", g.Style)
		field("prefix", g.Prefix)
		field("notes", g.Notes)
		field("example", g.Example)
		field("negative", m.NegativePrompt)
		if m.Error != "" {
			field("error", m.Error)
		}
		if i < len(ms)-1 {
			fmt.Fprintln(w)
		}
	}
}

func modelState(m api.Model) string {
	s := strings.ReplaceAll(string(m.State), "_", " ")
	if m.State == api.ModelDownloading {
		s = fmt.Sprintf("downloading %.0f%%", 100*m.Progress)
	}
	if m.Discovered {
		s += " (no registry entry)"
	}
	return s
}

func modelDefaults(d api.ModelDefaults) string {
	var parts []string
	if d.Width > 0 && d.Height > 0 {
		parts = append(parts, fmt.Sprintf("%dx%d", d.Width, d.Height))
	}
	if d.Steps > 0 {
		parts = append(parts, fmt.Sprintf("%d steps", d.Steps))
	}
	if d.CFG > 0 {
		parts = append(parts, fmt.Sprintf("CFG %g", d.CFG))
	}
	if d.Sampler != "" {
		s := d.Sampler
		if d.Scheduler != "" {
			s += " " + d.Scheduler
		}
		parts = append(parts, s)
	}
	if d.ClipSkip > 1 {
		parts = append(parts, fmt.Sprintf("clip skip %d", d.ClipSkip))
	}
	return strings.Join(parts, ", ")
}

// oneLine folds line breaks so that a guide field stays one indented line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// guideWidth is where guide text wraps: long notes stay readable in an
// 80-column terminal with room for the indent.
const guideWidth = 78 - 18

// wrap breaks s at spaces into lines of at most width runes (a longer word
// gets its own line), continuing lines with indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(s) {
		l := len([]rune(word))
		if i > 0 {
			if n+1+l > width {
				b.WriteString("\n" + indent)
				n = 0
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		b.WriteString(word)
		n += l
	}
	return b.String()
}
