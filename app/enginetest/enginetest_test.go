package enginetest

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/pixery/pixery/app/engine"
	"github.com/pixery/pixery/engine/api"
)

func TestModelsAndAuth(t *testing.T) {
	dir := ModelsDirWith(t, Model{ID: "tiny"}, Model{ID: "tall", Steps: 4, Width: 128, Height: 192, CFG: 6.5, Negative: "blurry", QualityTags: []string{"score_9"}})
	s := Start(t, dir)
	ctx := context.Background()
	ms, err := s.Engine.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]api.Model{}
	for _, m := range ms {
		got[m.ID] = m
	}
	tiny, tall := got["tiny"], got["tall"]
	if tiny.State != api.ModelOnDisk || tiny.Defaults.Steps != 3 || tiny.Defaults.Width != 192 || tiny.Defaults.Height != 128 ||
		tiny.Defaults.CFG != 5 || tiny.Defaults.Sampler != "euler_a" || tiny.NegativePrompt != "lowres" ||
		len(tiny.PromptGuide.QualityTags) != 2 || tiny.PromptGuide.QualityTags[1] != "best quality" || tiny.PromptGuide.Style != "danbooru" {
		t.Errorf("tiny: %+v", tiny)
	}
	if tall.State != api.ModelOnDisk || tall.Defaults.Steps != 4 || tall.Defaults.Width != 128 || tall.Defaults.Height != 192 ||
		tall.Defaults.CFG != 6.5 || tall.NegativePrompt != "blurry" || len(tall.PromptGuide.QualityTags) != 1 {
		t.Errorf("tall: %+v", tall)
	}

	// Without the token, and with a wrong one, the engine refuses.
	for _, token := range []string{"", "wrong"} {
		_, err := engine.Remote(s.URL, token).Health(ctx)
		var se *api.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: %v", token, err)
		}
	}
}

func TestStopRestart(t *testing.T) {
	s := Start(t, ModelsDir(t, "tiny"))
	ctx := context.Background()
	if _, err := s.Engine.Health(ctx); err != nil {
		t.Fatal(err)
	}
	sub, err := s.Engine.Submit(ctx, &api.JobRequest{Model: "tiny", Prompt: "1girl", Seed: 5, Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := s.Engine.Health(ctx); err == nil {
		t.Fatal("health answered while stopped")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	// The job went on while the listener was down; its events and image
	// are there once it is back.
	var last api.EventType
	if err := s.Engine.Events(ctx, sub.ID, func(e api.Event) error { last = e.Type; return nil }); err != nil {
		t.Fatal(err)
	}
	if last != api.EventDone {
		t.Fatalf("last event %q", last)
	}
	if _, err := s.Engine.Image(ctx, sub.ID, 0); err != nil {
		t.Fatal(err)
	}
}
