package syncio

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Lines written concurrently arrive whole: each Write runs alone.
func TestConcurrentWrites(t *testing.T) {
	const goroutines, lines = 8, 200
	var buf Buffer
	w := NewWriter(&buf)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(w, "goroutine %d line %d %s\n", g, i, strings.Repeat("x", 100))
			}
		}()
	}
	// Read while writing, as a test watching a command's output does.
	for range 10 {
		_ = buf.String()
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(got) != goroutines*lines {
		t.Fatalf("%d lines, want %d", len(got), goroutines*lines)
	}
	seen := map[string]bool{}
	for _, l := range got {
		var g, i int
		var xs string
		if n, err := fmt.Sscanf(l, "goroutine %d line %d %s", &g, &i, &xs); n != 3 || err != nil || xs != strings.Repeat("x", 100) {
			t.Fatalf("torn line %q", l)
		}
		seen[l] = true
	}
	if len(seen) != goroutines*lines {
		t.Errorf("%d distinct lines, want %d", len(seen), goroutines*lines)
	}
}
