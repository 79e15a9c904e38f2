package remote_test

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pixery/pixery/remote"
	"github.com/pixery/pixery/remote/sshdtest"
	"github.com/pixery/pixery/remote/sshx"
	"github.com/pixery/pixery/remote/vast"
	"github.com/pixery/pixery/remote/vast/vastfake"
)

func TestInstanceStatus(t *testing.T) {
	home := sshdtest.Home(t)
	fake := vastfake.New(apiKey)
	t.Cleanup(fake.Close)
	id := fake.AddInstance("pixery-0a0b0c0d")
	stateFile := filepath.Join(home, "state.json")
	created := time.Now().Add(-time.Hour).UTC()
	if err := remote.SaveState(stateFile, &remote.State{Version: 1, Current: "vast-x", Targets: []remote.Target{
		{Name: "vast-x", Kind: remote.KindVast, InstanceID: id, Label: "pixery-0a0b0c0d", GPU: "RTX 4090", DPH: 0.1, CreatedAt: created},
		{Name: "ssh-me@box:22", Kind: remote.KindSSH, User: "me", Host: "box", Port: 22, CreatedAt: created},
	}}); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Hour)
	retry := vast.Retry{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond}
	m, err := remote.New(remote.Config{StateFile: stateFile, VastURL: fake.URL, VastKey: apiKey, VastRetry: &retry,
		SSH: sshx.Options{KnownHostsFile: filepath.Join(home, "known_hosts")}, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The fake's instance walks null → loading → running one step per poll.
	var st *remote.Status
	for range 5 {
		if st, err = m.InstanceStatus(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	if st.Instance == nil || st.Instance.ActualStatus != "running" || st.InstanceErr != nil {
		t.Fatalf("status %+v", st)
	}
	// Price from Vast (the first default offer), not the remembered 0.1.
	if st.DPH != vastfake.DefaultOffers()[0].DPHTotal {
		t.Errorf("DPH %v", st.DPH)
	}
	if want := later.Sub(st.Instance.Started()); st.Uptime != want || st.Uptime < 2*time.Hour {
		t.Errorf("uptime %v, want %v", st.Uptime, want)
	}
	if want := st.DPH * st.Uptime.Hours(); math.Abs(st.Cost-want) > 1e-9 {
		t.Errorf("cost %v, want %v", st.Cost, want)
	}
	if st.SSHErr != nil || st.EngineRunning || st.Health != nil {
		t.Errorf("InstanceStatus touched SSH: %+v", st)
	}
	vastRequests := 0
	for _, r := range fake.Requests() {
		if r.Method == "GET" {
			vastRequests++
		}
	}

	// A plain SSH host has no instance and costs nothing here.
	st, err = m.InstanceStatus(ctx, "ssh-me@box:22")
	if err != nil || st.Instance != nil || st.InstanceErr != nil || st.Cost != 0 || st.Target.Kind != remote.KindSSH {
		t.Fatalf("ssh host: %+v %v", st, err)
	}
	if n := len(fake.Requests()); n != vastRequests {
		t.Errorf("an SSH host's status called Vast (%d requests, was %d)", n, vastRequests)
	}

	// Destroyed behind pixery's back: the error says so.
	if err := vast.New(fake.URL, apiKey).DestroyInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	st, err = m.InstanceStatus(ctx, "")
	if err != nil || st.Instance != nil || !errors.Is(st.InstanceErr, vast.ErrNotFound) {
		t.Fatalf("after destroy: %+v %v", st, err)
	}
	if _, err := m.InstanceStatus(ctx, "nope"); err == nil {
		t.Fatal("unknown target accepted")
	}
}

func TestFindEngineBinary(t *testing.T) {
	empty, wrong, good := t.TempDir(), t.TempDir(), t.TempDir()
	// A shell script named like the engine is not an engine.
	if err := os.WriteFile(filepath.Join(wrong, "pixery-engine-linux-amd64"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(sshdtest.StandInEngine(t, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(good, "pixery-engine"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()

	if _, err := remote.FindEngineBinary(empty, wrong); !errors.Is(err, remote.ErrNoEngineBinary) {
		t.Fatalf("found an engine in %s and %s: %v", empty, wrong, err)
	}
	p, err := remote.FindEngineBinary(empty, wrong, good)
	if err != nil || p != filepath.Join(good, "pixery-engine") {
		t.Fatalf("FindEngineBinary = %q, %v", p, err)
	}
	// With no folders it looks next to the running program (the test
	// binary, which has no engine beside it).
	if _, err := remote.FindEngineBinary(); !errors.Is(err, remote.ErrNoEngineBinary) {
		t.Fatalf("next to the test binary: %v", err)
	}
}
