package deploy_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/remote/deploy"
	"github.com/pixery/pixery/remote/sshdtest"
)

// Model files the user has locally go into the models folder, nested
// names included, before the registry; a second deploy sends nothing.
func TestDeployModelFiles(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	v1 := sshdtest.StandInEngine(t, "v1")
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "my-model.safetensors")
	lora := filepath.Join(dir, "style.safetensors")
	if err := os.WriteFile(ckpt, randBytes(t, 3<<20+17), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lora, randBytes(t, 70_000), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, regDir := registryFS()
	var order []string
	res, err := e.host.Deploy(ctx, deploy.Options{Engine: v1, Registry: reg, RegistryDir: regDir, SkipSetup: true,
		ModelFiles:    []deploy.ModelFile{{Path: ckpt}, {Path: lora, Name: "loras/style.safetensors"}},
		HealthTimeout: 20 * time.Second,
		Progress: func(p deploy.Progress) {
			if p.Step == "verify" {
				order = append(order, filepath.Base(p.File))
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "pixery-engine,my-model.safetensors,style.safetensors,noobai.toml,pony.toml" {
		t.Errorf("upload order %s", got)
	}
	if got := strings.Join(res.ModelFiles, ","); got != "my-model.safetensors,loras/style.safetensors" {
		t.Errorf("result model files %s", got)
	}
	for local, remote := range map[string]string{ckpt: "my-model.safetensors", lora: "loras/style.safetensors"} {
		want, _ := os.ReadFile(local)
		p := filepath.Join(e.layout.Models(), filepath.FromSlash(remote))
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s on the host: %d bytes, %v", remote, len(got), err)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v", remote, st.Mode())
		}
	}
	sent := 0
	_, err = e.host.Deploy(ctx, deploy.Options{Engine: v1, SkipSetup: true, ModelFiles: []deploy.ModelFile{{Path: ckpt}},
		HealthTimeout: 20 * time.Second, Progress: func(p deploy.Progress) {
			if p.Step == "upload" && p.Done > p.Resumed {
				sent++
			}
		}})
	if err != nil || sent != 0 {
		t.Fatalf("second deploy: %d uploads sent data, %v", sent, err)
	}
}

// Bad model files stop the deploy before anything reaches the host.
func TestBadModelFiles(t *testing.T) {
	e := setup(t, sshdtest.Options{})
	ctx := context.Background()
	v1 := sshdtest.StandInEngine(t, "v1")
	dir := t.TempDir()
	a := filepath.Join(dir, "a.safetensors")
	if err := os.WriteFile(a, []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	toml := filepath.Join(dir, "pony.toml")
	if err := os.WriteFile(toml, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg, regDir := registryFS()
	for _, tc := range []struct {
		name  string
		files []deploy.ModelFile
		want  string
	}{
		{"outside the folder", []deploy.ModelFile{{Path: a, Name: "../a.safetensors"}}, "inside the models folder"},
		{"sneaky", []deploy.ModelFile{{Path: a, Name: "loras/../../a"}}, "inside the models folder"},
		{"absolute", []deploy.ModelFile{{Path: a, Name: "/etc/a"}}, "inside the models folder"},
		{"the folder itself", []deploy.ModelFile{{Path: a, Name: "loras/.."}}, "inside the models folder"},
		{"missing", []deploy.ModelFile{{Path: filepath.Join(dir, "nope")}}, "no such file"},
		{"a folder", []deploy.ModelFile{{Path: dir, Name: "x"}}, "not a regular file"},
		{"twice", []deploy.ModelFile{{Path: a}, {Path: toml, Name: "./a.safetensors"}}, "both go to a.safetensors"},
		{"a registry file", []deploy.ModelFile{{Path: toml}}, "pony.toml would be a registry file"},
		{"a registry file, renamed", []deploy.ModelFile{{Path: a, Name: "x.TOML"}}, "x.TOML would be a registry file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.host.Deploy(ctx, deploy.Options{Engine: v1, Registry: reg, RegistryDir: regDir, ModelFiles: tc.files, SkipSetup: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if _, serr := os.Stat(e.layout.Root); serr == nil {
				t.Fatal("something reached the host before the check failed")
			}
		})
	}
}
