package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pixery/pixery/app/gallery"
	enginecli "github.com/pixery/pixery/engine/cli"
)

func init() {
	Commands.Register(&enginecli.Command{
		Name:    "gallery",
		Summary: "search the gallery's prompts, sync its index, import images",
		Run:     runGallery,
	})
}

func gallerySubcommands() []subcommand {
	return []subcommand{
		{"search", "TEXT... [--model M] [--limit N] [--config DIR]", "images whose prompt has every word: path, model, seed, size, prompt", gallerySearch},
		{"sync", "[--config DIR]", "bring the index up to date with the files", gallerySync},
		{"import", "PATH... [--config DIR]", "copy PNG images (files or folders) into the gallery and index them", galleryImport},
	}
}

func runGallery(args []string, stdout, stderr io.Writer) error {
	return runSubcommand("gallery", gallerySubcommands(), args, stdout, stderr)
}

// openGalleryFromFlags loads the settings named by the flags and opens the
// gallery they point at.
func openGalleryFromFlags(af *appFlags, stderr io.Writer) (*gallery.Store, error) {
	s, _, err := af.load(stderr)
	if err != nil {
		return nil, err
	}
	if s.GalleryDir == "" {
		return nil, errors.New("no gallery folder is set in the settings")
	}
	return openGallery(s)
}

func gallerySearch(args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("gallery search", "TEXT... [--model M] [--limit N]", stderr)
	var af appFlags
	af.register(fs)
	model := fs.String("model", "", "only images made with this model")
	limit := fs.Int("limit", 20, "at most this many results, newest first (0: all)")
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if *limit < 0 {
		return fmt.Errorf("%w: --limit %d: want 0 or more", enginecli.ErrUsage, *limit)
	}
	g, err := openGalleryFromFlags(&af, stderr)
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, stop := runContext()
	defer stop()
	// Files added by other programs (or another pixery) since the last run
	// are found too; a sync of an unchanged folder is one directory walk.
	if _, err := g.Sync(ctx); err != nil {
		return fmt.Errorf("sync gallery %s: %w", g.Dir(), err)
	}
	text := strings.Join(fs.Args(), " ")
	q := gallery.Query{Text: text, Model: *model, Limit: *limit}
	if text != "" {
		q.Order = gallery.Relevance
	}
	items, err := g.Search(ctx, q)
	if err != nil {
		return fmt.Errorf("search %q: %w", text, err)
	}
	if len(items) == 0 {
		fmt.Fprintf(stderr, "no images match in %s\n", g.Dir())
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, it := range items {
		seed := "-"
		if it.HasSeed {
			seed = fmt.Sprint(it.Seed)
		}
		model := it.Model
		if model == "" {
			model = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%dx%d\t%s\n", it.Path, model, seed, it.Width, it.Height, excerpt(it.Prompt, 60))
	}
	return tw.Flush()
}

func gallerySync(args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("gallery sync", "[--config DIR]", stderr)
	var af appFlags
	af.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: gallery sync takes no arguments", enginecli.ErrUsage)
	}
	g, err := openGalleryFromFlags(&af, stderr)
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, stop := runContext()
	defer stop()
	r, err := g.Sync(ctx)
	if err != nil {
		return fmt.Errorf("sync gallery %s: %w", g.Dir(), err)
	}
	fmt.Fprintf(stdout, "%s: %d added, %d updated, %d removed, %d unchanged\n", g.Dir(), len(r.Added), len(r.Updated), len(r.Removed), r.Unchanged)
	printProblems(stderr, r.Problems)
	return nil
}

func galleryImport(args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("gallery import", "PATH... [--config DIR]", stderr)
	var af appFlags
	af.register(fs)
	if err := parse(fs, interleave(fs, args)); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: gallery import PATH... (PNG files or folders)", enginecli.ErrUsage)
	}
	g, err := openGalleryFromFlags(&af, stderr)
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, stop := runContext()
	defer stop()
	r, err := g.Import(ctx, fs.Args()...)
	for _, it := range r.Items {
		fmt.Fprintln(stdout, it.Path)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	printProblems(stderr, r.Problems)
	failed := 0
	for _, p := range r.Problems {
		if !p.Indexed {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files not imported", failed, failed+len(r.Items))
	}
	return nil
}

func printProblems(w io.Writer, ps []gallery.Problem) {
	for _, p := range ps {
		if p.Indexed {
			fmt.Fprintf(w, "note: %s: %s (indexed anyway)\n", p.ID, p.Err)
		} else {
			fmt.Fprintf(w, "problem: %s: %s\n", p.ID, p.Err)
		}
	}
}

// excerpt is s on one line, cut to n runes with an ellipsis.
func excerpt(s string, n int) string {
	s = oneLine(s)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimRight(string(r[:n-1]), " ,") + "…"
}

// interleave moves the flags among args in front of the positional
// arguments, so "search red hair --limit 5" works as people type it (the
// flag package stops at the first positional argument). A word starting
// with '-' that is not a flag of fs stays a positional argument: "-dog"
// excludes a word in a search. "--" ends the flags as usual.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if len(a) < 2 || a[0] != '-' || f == nil {
			if len(a) > 1 && a[0] == '-' && (name == "h" || name == "help") {
				flags = append(flags, a)
				continue
			}
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); hasValue || (ok && b.IsBoolFlag()) {
			continue
		}
		if i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(append(flags, "--"), pos...)
}
