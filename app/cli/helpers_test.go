package cli

import (
	"flag"
	"net"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pixery/pixery/app/settings"
	"github.com/pixery/pixery/engine/api"
)

func TestLoRAFlag(t *testing.T) {
	cases := []struct {
		in   string
		want api.LoRA
		err  string
	}{
		{"detail:0.8", api.LoRA{Name: "detail", Scale: 0.8}, ""},
		{"detail", api.LoRA{Name: "detail", Scale: 1}, ""},
		{"style:v2:-1.5", api.LoRA{Name: "style:v2", Scale: -1.5}, ""},
		{" spaced : 0.5", api.LoRA{Name: "spaced", Scale: 0.5}, ""},
		{"x:11", api.LoRA{}, "outside ±10"},
		{"x:", api.LoRA{}, "want NAME:WEIGHT"},
		{":1", api.LoRA{}, "name is empty"},
	}
	for _, c := range cases {
		var l loraFlags
		err := l.Set(c.in)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
		case err != nil || len(l) != 1 || l[0] != c.want:
			t.Errorf("%q: %+v, %v; want %+v", c.in, l, err, c.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string][2]int{"832x1216": {832, 1216}, " 64X64 ": {64, 64}, "2048x2048": {2048, 2048}, "4096x1024": {4096, 1024}} {
		w, h, err := parseSize(in)
		if err != nil || w != want[0] || h != want[1] {
			t.Errorf("%q: %d %d %v", in, w, h, err)
		}
	}
	for _, in := range []string{"", "832", "832x", "x832", "-64x64", "832x1217", "4104x64", "2056x2048", "1e3x64"} {
		if _, _, err := parseSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestInterleave(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("limit", 0, "")
	fs.String("model", "", "")
	fs.Bool("v", false, "")
	got := interleave(fs, []string{"red", "--limit", "5", "-hair", "-v", "--model=x", "eyes", "--", "--limit"})
	want := []string{"--limit", "5", "-v", "--model=x", "--", "red", "-hair", "eyes", "--limit"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestWrapAndExcerpt(t *testing.T) {
	text := "Start every prompt with the full score string (score_9 alone has a much weaker effect). Don't use danbooru quality tags: supercalifragilisticexpialidocious-and-longer-than-a-line-word here."
	out := wrap(text, 40, "  ")
	lines := strings.Split(out, "\n")
	if len(lines) < 4 {
		t.Fatalf("not wrapped: %q", out)
	}
	for i, l := range lines {
		body := l
		if i > 0 {
			if !strings.HasPrefix(l, "  ") {
				t.Errorf("line %d not indented: %q", i, l)
			}
			body = l[2:]
		}
		if utf8.RuneCountInString(body) > 40 && strings.Contains(body, " ") {
			t.Errorf("line %d longer than 40: %q", i, body)
		}
	}
	if strings.Join(strings.Fields(out), " ") != text {
		t.Errorf("words changed: %q", out)
	}
	if e := excerpt("a  b\nc", 60); e != "a b c" {
		t.Errorf("excerpt %q", e)
	}
	if e := excerpt(strings.Repeat("ß", 100), 10); utf8.RuneCountInString(e) != 10 || !strings.HasSuffix(e, "…") {
		t.Errorf("excerpt %q", e)
	}
}

func TestModelsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := t.TempDir()
	if err := settings.Defaults().Save(cfg); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := pixery(t, "", "models", "--config", cfg, "--server", "http://"+addr)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "list models on http://"+addr) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
