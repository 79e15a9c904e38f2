package setup

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// benchArchive is a release archive with 64 MB of incompressible
// libraries, so that the figures bound the cost of unpacking and hashing
// (real libraries compress about 2.5:1, which only makes gzip faster).
func benchArchive(b *testing.B) ([]byte, int64) {
	entries, files := ortEntries(top12, 40)
	var size int64
	for i := range entries {
		for name := range files {
			if entries[i].name == top12+"/lib/"+name {
				entries[i].body = payload(16<<20, uint64(i))
				size += int64(len(entries[i].body))
			}
		}
	}
	return makeTgz(b, entries), size
}

// BenchmarkInstallLibraries fetches the archive from a local server,
// unpacks it into staging, syncs and installs: the setup's own cost on top
// of the network.
func BenchmarkInstallLibraries(b *testing.B) {
	tgz, size := benchArchive(b)
	srv := newArchiveServer(b)
	srv.put(archivePath, tgz)
	dir := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		opt := Options{LibDir: filepath.Join(dir, "lib"), Version: testVersion, ArchiveURL: srv.URL + "/v{version}/{archive}",
			SkipModels: true, Force: true}
		if _, err := Run(context.Background(), opt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRerunCheck is a re-run that finds the libraries in place: it
// re-hashes every installed file against the marker.
func BenchmarkRerunCheck(b *testing.B) {
	tgz, size := benchArchive(b)
	srv := newArchiveServer(b)
	srv.put(archivePath, tgz)
	var log bytes.Buffer
	opt := Options{LibDir: filepath.Join(b.TempDir(), "lib"), Version: testVersion, ArchiveURL: srv.URL + "/v{version}/{archive}",
		SkipModels: true, Log: &log}
	if _, err := Run(context.Background(), opt); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Run(context.Background(), opt)
		if err != nil || res.Libraries.Installed {
			b.Fatalf("%v %+v", err, res.Libraries)
		}
	}
	b.StopTimer()
	if srv.count(archivePath) != 1 {
		b.Fatalf("re-runs fetched the archive")
	}
}
