package engine_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/app/enginetest"
	"github.com/pixery/pixery/engine/api"
	"github.com/pixery/pixery/engine/pngmeta"
)

// TestLocal runs the engine in-process on the tiny checkpoint and drives a
// job through it, as the app's local mode does.
func TestLocal(t *testing.T) {
	var logs strings.Builder
	e, err := engine.Local(engine.LocalConfig{
		ModelsDir: enginetest.ModelsDir(t, "tiny"),
		Provider:  "cpu",
		Threads:   2,
		Logf:      func(f string, a ...any) { logs.WriteString(f + "\n") },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if got := e.Describe(); got != "local · CPU" {
		t.Errorf("Describe() = %q", got)
	}
	h, err := e.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Provider != "CPU" || h.Version != api.Version {
		t.Errorf("health %+v", h)
	}
	if n := engine.Notice(h); !strings.Contains(n, "CPU") || !strings.Contains(n, "minutes") {
		t.Errorf("Notice = %q", n)
	}
	ms, err := e.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ms {
		found = found || (m.ID == "tiny" && m.State == api.ModelOnDisk && m.Defaults.Steps == 3)
	}
	if !found {
		t.Fatalf("models %+v", ms)
	}

	sub, err := e.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl, red dress", Steps: 1, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	var types []api.EventType
	if err := e.Events(ctx, sub.ID, func(ev api.Event) error { types = append(types, ev.Type); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(types) == 0 || types[len(types)-1] != api.EventDone {
		t.Fatalf("events %v", types)
	}
	raw, err := e.Image(ctx, sub.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil || img.Bounds().Dx() != 192 || img.Bounds().Dy() != 128 {
		t.Fatalf("image: %v", err)
	}
	md, err := pngmeta.Decode(bytes.NewReader(raw))
	if err != nil || md.Recipe == nil || md.Recipe.Seed != 42 || md.Recipe.Model != "tiny" || md.Recipe.Steps != 1 {
		t.Fatalf("metadata %+v: %v", md, err)
	}

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Health(ctx); err == nil {
		t.Error("health answered after Close")
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNotice(t *testing.T) {
	for _, tc := range []struct {
		h    *api.Health
		want bool
	}{
		{nil, false},
		{&api.Health{Provider: "CPU"}, true},
		{&api.Health{Provider: "cpu"}, true},
		{&api.Health{Provider: "CUDA"}, false},
		{&api.Health{Provider: "CoreML"}, false},
	} {
		if got := engine.Notice(tc.h); (got != "") != tc.want {
			t.Errorf("Notice(%+v) = %q", tc.h, got)
		}
	}
}

// TestLocalBadModelsDir: a models folder that cannot be one is a clear
// error naming it, not a half-started engine.
func TestLocalBadModelsDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "models")
	if err := os.WriteFile(file, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, ""} {
		e, err := engine.Local(engine.LocalConfig{ModelsDir: dir, Provider: "cpu"})
		if err == nil {
			e.Close()
			t.Errorf("Local(%q) started", dir)
			continue
		}
		if !strings.Contains(err.Error(), "local engine") || (dir != "" && !strings.Contains(err.Error(), dir)) {
			t.Errorf("Local(%q): %v", dir, err)
		}
	}
}
