package settings

import "testing"

// BenchmarkLoad reads both files, as the app does at start.
func BenchmarkLoad(b *testing.B) {
	dir := b.TempDir()
	if err := full().Save(dir); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSave writes both files atomically (two fsyncs of file and
// folder each), as the app does when a setting changes.
func BenchmarkSave(b *testing.B) {
	dir := b.TempDir()
	s := full()
	for b.Loop() {
		if err := s.Save(dir); err != nil {
			b.Fatal(err)
		}
	}
}
