package tokenizer

import (
	"errors"
	"slices"
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks, for any pair of strings: no panic; an error exactly for
// invalid UTF-8; ids in range; a cold tokenizer agrees with a warm one; the
// 77-id framing; and that a space separates tokenization completely
// (Encode(a+" "+b) = Encode(a)+Encode(b)), which holds because cleaning,
// lowercasing and the pre-tokenizer all work within words.
func FuzzEncode(f *testing.F) {
	for _, c := range loadGolden(f).Cases {
		f.Add(c.Prompt, "x")
	}
	f.Add("ΑΣ'", "İ")
	f.Add("'ſ <|ſtartoftext|>", "<|endoftext|>")
	f.Add("a\u0345b", "\xff")
	warm, err := Default()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ids, err := warm.Encode(a)
		if !utf8.ValidString(a) {
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("Encode(%q): err = %v, want ErrInvalidUTF8", a, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%q): %v", a, err)
		}
		for _, id := range ids {
			if id < 0 || id >= VocabSize {
				t.Fatalf("Encode(%q): id %d out of range", a, id)
			}
		}
		cold, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := cold.Encode(a); !slices.Equal(again, ids) {
			t.Fatalf("Encode(%q): cold %v, warm %v", a, again, ids)
		}
		for _, pad := range []int{PadEncoder1, PadEncoder2} {
			out, err := warm.EncodeForEncoder(a, pad)
			if err != nil {
				t.Fatal(err)
			}
			if out != Wrap(ids, pad) {
				t.Fatalf("EncodeForEncoder(%q, %d) = %v, want Wrap of %v", a, pad, out, ids)
			}
		}
		if !utf8.ValidString(b) {
			return
		}
		idsB, err := warm.Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		joined, err := warm.Encode(a + " " + b)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(joined, append(slices.Clone(ids), idsB...)) {
			t.Fatalf("Encode(%q + \" \" + %q) = %v, want %v + %v", a, b, joined, ids, idsB)
		}
	})
}
