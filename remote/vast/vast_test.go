package vast_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pixery/pixery/remote/vast"
	"github.com/pixery/pixery/remote/vast/vastfake"
)

const testKey = "test-key-5f1d9c2be0a7"

var fastRetry = vast.Retry{Attempts: 6, Base: 2 * time.Millisecond, Max: 20 * time.Millisecond}

func newPair(t *testing.T) (*vastfake.Server, *vast.Client) {
	t.Helper()
	f := vastfake.New(testKey)
	t.Cleanup(f.Close)
	c := vast.New(f.URL, testKey)
	c.Retry, c.DestroyRetry = fastRetry, fastRetry
	return f, c
}

func lastBody(t *testing.T, f *vastfake.Server, method, pathPrefix string) map[string]any {
	t.Helper()
	reqs := f.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Method == method && strings.HasPrefix(reqs[i].Path, pathPrefix) {
			var m map[string]any
			if err := json.Unmarshal(reqs[i].Body, &m); err != nil {
				t.Fatalf("request body of %s %s is not JSON: %v", method, reqs[i].Path, err)
			}
			return m
		}
	}
	t.Fatalf("no %s %s* request", method, pathPrefix)
	return nil
}

func TestSearchOffers(t *testing.T) {
	f, c := newPair(t)
	q := vast.NewOfferQuery()
	q.GPUName = "RTX_4090" // the CLI spelling is accepted
	q.MaxPrice = 0.5
	offers, err := c.SearchOffers(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) < 2 {
		t.Fatalf("got %d offers, want the two matching fixtures", len(offers))
	}
	for i, o := range offers {
		if o.GPUName != "RTX 4090" || o.DPHTotal >= 0.5 || o.DiskSpace < 50 || o.Reliability < 0.98 || o.DirectPortCount < 1 {
			t.Errorf("offer %d breaks the query: %+v", o.ID, o)
		}
		if i > 0 && offers[i-1].DPHTotal > o.DPHTotal {
			t.Errorf("not cheapest first: %v before %v", offers[i-1].DPHTotal, o.DPHTotal)
		}
	}
	// The body is the §13.2 shape.
	body := lastBody(t, f, "POST", "/api/v0/bundles")
	want := map[string]string{
		"verified": `{"eq":true}`, "external": `{"eq":false}`, "rentable": `{"eq":true}`, "rented": `{"eq":false}`,
		"gpu_name": `{"eq":"RTX 4090"}`, "num_gpus": `{"eq":1}`, "disk_space": `{"gte":50}`, "dph_total": `{"lt":0.5}`,
		"direct_port_count": `{"gte":1}`, "order": `[["dph_total","asc"]]`, "type": `"on-demand"`, "limit": "20",
		"allocated_storage": "50", "reliability": `{"gte":0.98}`,
	}
	for k, w := range want {
		got, _ := json.Marshal(body[k])
		if string(got) != w {
			t.Errorf("body[%s] = %s, want %s", k, got, w)
		}
	}
	// Descending order by a field works too, and the limit applies.
	q = vast.NewOfferQuery()
	q.Order, q.Descending, q.Limit, q.MinReliability = "dph", true, 2, 0
	offers, err = c.SearchOffers(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(offers) != 2 || offers[0].DPHTotal < offers[1].DPHTotal {
		t.Fatalf("descending with limit 2: %+v", offers)
	}
}

func TestAuthFailureNeverShowsKey(t *testing.T) {
	f := vastfake.New(testKey)
	defer f.Close()
	wrong := "wrong-key-0b9a77d2"
	c := vast.New(f.URL, wrong)
	c.Retry = fastRetry
	_, err := c.SearchOffers(context.Background(), vast.NewOfferQuery())
	if !errors.Is(err, vast.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(c.String(), wrong) {
		t.Fatalf("key leaked: %v / %v", err, c)
	}
	if !strings.Contains(err.Error(), "Invalid user key") {
		t.Errorf("error %q lacks the server's message", err)
	}
	// The key goes only in the Authorization header, never in the URL.
	for _, r := range f.Requests() {
		if strings.Contains(r.Query.Encode(), wrong) {
			t.Fatalf("key in the query of %s", r.Path)
		}
		if r.Auth != "Bearer "+wrong {
			t.Fatalf("Authorization = %q", r.Auth)
		}
	}
}

func TestCreateBodyAndWalk(t *testing.T) {
	f, c := newPair(t)
	f.SetSSHTarget("127.0.0.1", 40222)
	ctx := context.Background()
	id, err := c.CreateInstance(ctx, 24817533, vast.NewCreateRequest("pixery-7f3c", 50))
	if err != nil {
		t.Fatal(err)
	}
	body := lastBody(t, f, "PUT", "/api/v0/asks/24817533")
	if body["image"] != vast.DefaultImage || body["disk"] != 50.0 || body["label"] != "pixery-7f3c" ||
		body["client_id"] != "me" || body["runtype"] != vast.DefaultRuntype || body["price"] != nil {
		t.Errorf("create body %v", body)
	}
	if env, _ := body["env"].(map[string]any); env["-p 8000:8000"] != "1" {
		t.Errorf("env %v lacks the -p 8000:8000 mapping", body["env"])
	}
	if on, _ := body["onstart"].(string); !strings.Contains(on, "touch ~/.no_auto_tmux") {
		t.Errorf("onstart %q", on)
	}
	// The offer is rented now: it no longer shows in a search.
	offers, err := c.SearchOffers(ctx, vast.OfferQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range offers {
		if o.ID == 24817533 {
			t.Fatal("rented offer still listed")
		}
	}
	var seen []string
	for i := 0; i < 3; i++ {
		in, err := c.ShowInstance(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, in.ActualStatus)
		ph, why := in.Phase()
		if i < 2 && ph != vast.Starting {
			t.Fatalf("poll %d: phase %v (%s)", i, ph, why)
		}
		if i == 2 {
			if ph != vast.Running {
				t.Fatalf("third poll: %v", ph)
			}
			h, p, ok := in.SSHAddress()
			if !ok || h != "127.0.0.1" || p != 40222 {
				t.Fatalf("ssh address %q %d %v (public_ipaddr %q)", h, p, ok, in.PublicIPAddr)
			}
			if in.DPHTotal <= 0 || in.Started().IsZero() {
				t.Errorf("price %v start %v", in.DPHTotal, in.Started())
			}
		}
	}
	if strings.Join(seen, ",") != ",loading,running" {
		t.Fatalf("walk %q, want null → loading → running", seen)
	}
}

func TestCreateFailures(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		fail    vastfake.CreateFailure
		is      error
		created bool
	}{
		{"offer gone 404", vastfake.CreateOfferGone404, vast.ErrOfferGone, false},
		{"offer gone 410", vastfake.CreateOfferGone410, vast.ErrOfferGone, false},
		{"bad args", vastfake.CreateBadArgs, nil, false},
		{"insufficient credit", vastfake.CreateInsufficientCredit, nil, false},
		{"bid quirk", vastfake.CreateBidQuirk, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newPair(t)
			f.FailCreate(tc.fail)
			id, err := c.CreateInstance(ctx, 24817533, vast.NewCreateRequest("pixery-x", 50))
			if err == nil {
				t.Fatal("create succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err %v is not %v", err, tc.is)
			}
			if tc.is == nil && errors.Is(err, vast.ErrOfferGone) {
				t.Fatalf("err %v wrongly reads as offer gone", err)
			}
			if got := id != 0; got != tc.created {
				t.Fatalf("id %d, created=%v want %v", id, got, tc.created)
			}
			if tc.created {
				if alive := f.Alive(); len(alive) != 1 || alive[0] != id {
					t.Fatalf("fake has %v, want the quirk's instance %d", alive, id)
				}
				in, err := c.ShowInstance(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if ph, _ := in.Phase(); ph != vast.Failed {
					t.Fatalf("quirk instance phase %v", ph)
				}
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
	t.Run("unknown offer", func(t *testing.T) {
		_, c := newPair(t)
		_, err := c.CreateInstance(ctx, 1, vast.NewCreateRequest("pixery-x", 50))
		if !errors.Is(err, vast.ErrOfferGone) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestFailureWalks(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		walk vastfake.Walk
		want string // substring of the reason
	}{
		{vastfake.WalkExited, "exited"},
		{vastfake.WalkOCIError, "OCI runtime create failed"},
		{vastfake.WalkStopped, "stopped"},
		{vastfake.WalkOffline, "offline"},
	} {
		f, c := newPair(t)
		f.SetWalk(tc.walk)
		id, err := c.CreateInstance(ctx, 24817533, vast.NewCreateRequest("pixery-x", 50))
		if err != nil {
			t.Fatal(err)
		}
		failed := false
		for i := 0; i < 4 && !failed; i++ {
			in, err := c.ShowInstance(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			ph, why := in.Phase()
			if ph == vast.Running {
				t.Fatalf("walk %v reached running", tc.walk)
			}
			if ph == vast.Failed {
				failed = true
				if !strings.Contains(why, tc.want) {
					t.Errorf("walk %v: reason %q lacks %q", tc.walk, why, tc.want)
				}
			}
		}
		if !failed {
			t.Errorf("walk %v never failed", tc.walk)
		}
	}
	f, c := newPair(t)
	f.SetWalk(vastfake.WalkStuckLoading)
	id, _ := c.CreateInstance(ctx, 24817533, vast.NewCreateRequest("pixery-x", 50))
	for i := 0; i < 6; i++ {
		in, err := c.ShowInstance(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ph, _ := in.Phase(); ph != vast.Starting {
			t.Fatalf("stuck walk left starting at poll %d", i)
		}
	}
}

func TestDestroy(t *testing.T) {
	ctx := context.Background()
	for _, mode404 := range []bool{false, true} {
		f, c := newPair(t)
		f.ShowDestroyedAs404(mode404)
		id, err := c.CreateInstance(ctx, 24817533, vast.NewCreateRequest("pixery-x", 50))
		if err != nil {
			t.Fatal(err)
		}
		f.RateLimit("destroy", 3)
		if err := c.DestroyInstance(ctx, id); err != nil {
			t.Fatalf("destroy through three 429s: %v", err)
		}
		if !f.Destroyed(id) {
			t.Fatal("fake still has the instance")
		}
		n := 0
		for _, r := range f.Requests() {
			if r.Method == "DELETE" {
				n++
				if string(r.Body) != "{}" {
					t.Errorf("DELETE body %q, want {}", r.Body)
				}
			}
		}
		if n != 4 {
			t.Errorf("%d DELETE requests, want 4 (three 429s and the success)", n)
		}
		// Already gone is success.
		if err := c.DestroyInstance(ctx, id); err != nil {
			t.Fatalf("second destroy: %v", err)
		}
		if _, err := c.ShowInstance(ctx, id); !errors.Is(err, vast.ErrNotFound) {
			t.Fatalf("show after destroy (404 mode %v): %v", mode404, err)
		}
	}
}

func TestRateLimitBackoff(t *testing.T) {
	ctx := context.Background()
	f, c := newPair(t)
	c.Retry = vast.Retry{Attempts: 4, Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	f.RateLimit("search", 3)
	start := time.Now()
	if _, err := c.SearchOffers(ctx, vast.NewOfferQuery()); err != nil {
		t.Fatalf("search through three 429s: %v", err)
	}
	// Waits 20, 40, 80 ms, each -25 % at worst: at least 105 ms.
	if el := time.Since(start); el < 105*time.Millisecond {
		t.Errorf("retried after %v: no backoff", el)
	}
	f.RateLimit("search", 10)
	_, err := c.SearchOffers(ctx, vast.NewOfferQuery())
	if !errors.Is(err, vast.ErrRateLimited) || !strings.Contains(err.Error(), "API requests too frequent") {
		t.Fatalf("err %v, want ErrRateLimited with the server's text", err)
	}
	// create retries 429 too (it is the one error that proves nothing was rented).
	f.RateLimit("search", 0)
	f.RateLimit("create", 2)
	if _, err := c.CreateInstance(ctx, 24817533, vast.NewCreateRequest("pixery-x", 50)); err != nil {
		t.Fatalf("create through two 429s: %v", err)
	}
}

func TestListInstancesPaged(t *testing.T) {
	f, c := newPair(t)
	var want []int64
	for i := 0; i < 30; i++ {
		label := "other"
		if i%3 == 0 {
			label = "pixery-a1"
		}
		id := f.AddInstance(label)
		if label == "pixery-a1" {
			want = append(want, id)
		}
	}
	all, err := c.ListInstances(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 30 {
		t.Fatalf("listed %d of 30 instances across pages", len(all))
	}
	some, err := c.ListInstances(context.Background(), map[string]any{"label": map[string]any{"eq": "pixery-a1"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, in := range some {
		got = append(got, in.ID)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	if len(got) != len(want) {
		t.Fatalf("label filter: %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("label filter: %v, want %v", got, want)
		}
	}
}

func TestSSHKeys(t *testing.T) {
	f, c := newPair(t)
	ctx := context.Background()
	line := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx pixery-test"
	if err := c.AddSSHKey(ctx, line+"\n"); err != nil {
		t.Fatal(err)
	}
	keys, err := c.ListSSHKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Text() != line {
		t.Fatalf("keys %+v", keys)
	}
	dir := t.TempDir()
	ak := filepath.Join(dir, "authorized_keys")
	f.SetAuthorizedKeysFile(ak)
	id, err := c.CreateInstance(ctx, 24817533, vast.NewCreateRequest("pixery-x", 50))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(ak)
	if !strings.Contains(string(b), line) {
		t.Fatalf("account key not authorised on the new instance: %q", b)
	}
	other := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther attached"
	if err := c.AttachSSHKey(ctx, id, other); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(ak)
	if !strings.Contains(string(b), other) {
		t.Fatalf("attached key missing: %q", b)
	}
	if u, err := c.CurrentUser(ctx); err != nil || u.Credit <= 0 {
		t.Fatalf("user %+v %v", u, err)
	}
}

func TestLoadAPIKey(t *testing.T) {
	home := t.TempDir()
	cfg := filepath.Join(home, "cfg")
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("VAST_API_KEY", "")
	if _, _, err := vast.LoadAPIKey(); !errors.Is(err, vast.ErrNoKey) {
		t.Fatalf("no key anywhere: %v", err)
	}
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(home, ".vast_api_key"), "legacy\n")
	check := func(wantKey, wantSrc string) {
		t.Helper()
		k, src, err := vast.LoadAPIKey()
		if err != nil || k != wantKey || !strings.HasSuffix(src, wantSrc) {
			t.Fatalf("got %q from %q (%v), want %q from %s", k, src, err, wantKey, wantSrc)
		}
	}
	check("legacy", ".vast_api_key")
	write(filepath.Join(cfg, "vastai", "vast_api_key"), "  filekey \n")
	check("filekey", "vastai/vast_api_key")
	write(filepath.Join(cfg, "vastai", "vast_tfa_key"), "tfakey")
	check("tfakey", "vast_tfa_key")
	t.Setenv("VAST_API_KEY", "envkey")
	check("envkey", "VAST_API_KEY")
}
