package jobs

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/pixery/pixery/app/enginetest"
	"github.com/pixery/pixery/app/gallery"
	"github.com/pixery/pixery/engine/api"
)

// BenchmarkJob measures one 1-step tiny job through the queue (submit,
// events, fetch, save into the gallery, state file) against the same job
// through the bare engine client (submit, events, fetch): the difference is
// what the queue adds.
func BenchmarkJob(b *testing.B) {
	srv := enginetest.Start(b, enginetest.ModelsDir(b, "tiny"))
	ctx := context.Background()
	req := api.JobRequest{Model: "tiny", Prompt: "1girl, red dress", Steps: 1, Seed: 1}
	// Load the model before timing.
	if sub, err := srv.Engine.Submit(ctx, &req); err != nil {
		b.Fatal(err)
	} else if err := srv.Engine.Events(ctx, sub.ID, func(api.Event) error { return nil }); err != nil {
		b.Fatal(err)
	}

	b.Run("queue", func(b *testing.B) {
		store, err := gallery.Open(b.TempDir(), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		q, err := New(Config{Engine: srv.Engine, Store: store, StateFile: filepath.Join(b.TempDir(), "jobs.json")})
		if err != nil {
			b.Fatal(err)
		}
		defer q.Close()
		for b.Loop() {
			id, err := q.Submit(ctx, &req)
			if err != nil {
				b.Fatal(err)
			}
			if j, err := q.Wait(ctx, id); err != nil || len(j.Images) != 1 {
				b.Fatalf("%+v %v", j, err)
			}
			q.Remove(id)
		}
	})
	b.Run("client", func(b *testing.B) {
		for b.Loop() {
			sub, err := srv.Engine.Submit(ctx, &req)
			if err != nil {
				b.Fatal(err)
			}
			if err := srv.Engine.Events(ctx, sub.ID, func(api.Event) error { return nil }); err != nil {
				b.Fatal(err)
			}
			if _, err := srv.Engine.Image(ctx, sub.ID, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
