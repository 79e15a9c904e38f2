package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// execPixery runs pixery-engine with args and returns its exit code and
// output streams.
func execPixery(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// decodeOneLine checks that stdout is one line of JSON and decodes it.
func decodeOneLine(t *testing.T, stdout string, v any) {
	t.Helper()
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("want one line of JSON, got %q", stdout)
	}
	if err := json.Unmarshal([]byte(stdout), v); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
}

type tokenizerGoldenCase struct {
	Name   string `json:"name"`
	Prompt string `json:"prompt"`
	IDs    []int  `json:"ids"`
	Input1 []int  `json:"input_ids_tokenizer1"`
	Input2 []int  `json:"input_ids_tokenizer2"`
}

func loadTokenizerGolden(t *testing.T) []tokenizerGoldenCase {
	t.Helper()
	b, err := os.ReadFile("../../testdata/golden/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []tokenizerGoldenCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) != 61 {
		t.Fatalf("%d tokenizer cases, want 61", len(g.Cases))
	}
	return g.Cases
}

func TestTokenizeGolden(t *testing.T) {
	for _, c := range loadTokenizerGolden(t) {
		for _, v := range []struct {
			flags []string
			want  []int
		}{
			{nil, c.Input1},
			{[]string{"--encoder", "1"}, c.Input1},
			{[]string{"--encoder=2"}, c.Input2},
			{[]string{"--no-pad"}, c.IDs},
			{[]string{"--encoder", "2", "--no-pad"}, c.IDs},
		} {
			args := append(append([]string{"tokenize"}, v.flags...), "--", c.Prompt)
			code, stdout, stderr := execPixery(args...)
			if code != 0 {
				t.Fatalf("%s %v: exit %d: %s", c.Name, v.flags, code, stderr)
			}
			var got struct {
				IDs []int `json:"ids"`
			}
			decodeOneLine(t, stdout, &got)
			if got.IDs == nil || !slices.Equal(got.IDs, v.want) {
				t.Errorf("%s %v:\n got %v\nwant %v", c.Name, v.flags, got.IDs, v.want)
			}
		}
	}
}

func TestTokenizeJoinsArguments(t *testing.T) {
	_, a, _ := execPixery("tokenize", "--no-pad", "1girl,", "solo")
	_, b, _ := execPixery("tokenize", "--no-pad", "1girl, solo")
	if a != b || a == "" {
		t.Errorf("split arguments give %q, joined %q", a, b)
	}
}

// TestPromptCommandsBadInput covers usage errors (exit 2) and bad text
// (exit 1) for the three text commands; each must explain itself on stderr
// and print nothing on stdout.
func TestPromptCommandsBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"tokenize"}, 2, "missing TEXT"},
		{[]string{"tokenize", "--encoder", "3", "x"}, 2, "--encoder 3"},
		{[]string{"tokenize", "--bogus", "x"}, 2, "bogus"},
		{[]string{"tokenize", "bad \xff"}, 1, "UTF-8"},
		{[]string{"parse-prompt"}, 2, "missing TEXT"},
		{[]string{"parse-prompt", "(a:1.2.3)"}, 1, "invalid weight"},
		{[]string{"parse-prompt", strings.Repeat("(", 100000) + "x"}, 1, "+Inf"},
		{[]string{"parse-prompt", "\xc3"}, 1, "UTF-8"},
		{[]string{"chunk-prompt"}, 2, "missing TEXT"},
		{[]string{"chunk-prompt", "--encoder", "0", "x"}, 2, "--encoder 0"},
		{[]string{"chunk-prompt", "a \x80"}, 1, "UTF-8"},
		{[]string{"chunk-prompt", "a <lora:>"}, 1, "<lora:>"},
		{[]string{"chunk-prompt", strings.Repeat("BREAK ", 10000)}, 1, "chunks"},
	} {
		code, stdout, stderr := execPixery(c.args...)
		name := strings.Join(c.args, " ")
		if len(name) > 60 {
			name = name[:60]
		}
		if code != c.code || stdout != "" || !strings.Contains(stderr, c.msg) {
			t.Errorf("%q: exit %d (want %d), stdout %q, stderr %q (want it to mention %q)", name, code, c.code, stdout, stderr, c.msg)
		}
	}
}

func TestPromptCommandsEmptyText(t *testing.T) {
	code, stdout, stderr := execPixery("tokenize", "--no-pad", "")
	if code != 0 || stdout != "{\"ids\":[]}\n" {
		t.Errorf("tokenize --no-pad \"\": exit %d, %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = execPixery("chunk-prompt", "")
	var got struct {
		Chunks []struct{ IDs []int } `json:"chunks"`
	}
	if code != 0 {
		t.Fatalf("chunk-prompt \"\": exit %d: %s", code, stderr)
	}
	decodeOneLine(t, stdout, &got)
	if len(got.Chunks) != 1 || len(got.Chunks[0].IDs) != 77 {
		t.Errorf("chunk-prompt \"\": %v", got)
	}
}
