package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeJobRequestDefaults(t *testing.T) {
	r, err := DecodeJobRequest(strings.NewReader(`{"prompt": "a cat"}`))
	if err != nil {
		t.Fatal(err)
	}
	// Left out: zero (the model's default), and a random seed.
	if want := (JobRequest{Prompt: "a cat", Seed: -1}); !reflect.DeepEqual(*r, want) {
		t.Errorf("got %+v, want %+v", *r, want)
	}
	r, err = DecodeJobRequest(strings.NewReader(`{"model": "pony", "prompt": "x", "negative_prompt": "y", "width": 832,
		"height": 1216, "steps": 25, "cfg": 7, "sampler": "Euler a", "scheduler": "Karras", "seed": 0, "batch": 2,
		"rng": "comfy", "clip_skip": 2, "loras": [{"name": "a"}, {"name": "b", "scale": -0.5}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := JobRequest{Model: "pony", Prompt: "x", NegativePrompt: "y", Width: 832, Height: 1216, Steps: 25, CFG: 7,
		Sampler: "Euler a", Scheduler: "Karras", Seed: 0, Batch: 2, RNG: RNGComfy, ClipSkip: 2,
		LoRAs: []LoRA{{"a", 1}, {"b", -0.5}}}
	if !reflect.DeepEqual(*r, want) {
		t.Errorf("got %+v\nwant %+v", *r, want)
	}
	// The Go client's encoding reads back the same.
	b, _ := json.Marshal(&want)
	r2, err := DecodeJobRequest(bytes.NewReader(b))
	if err != nil || !reflect.DeepEqual(*r2, want) {
		t.Errorf("round trip: %+v, %v", r2, err)
	}
}

func TestDecodeImageBase64(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 3, 2))
	img.Set(1, 1, color.RGBA{200, 10, 10, 255})
	var p, j bytes.Buffer
	png.Encode(&p, img)
	jpeg.Encode(&j, img, nil)
	// A 1x1 lossless WebP.
	webp, _ := base64.StdEncoding.DecodeString("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
	for _, tc := range []struct {
		name, in string
		format   string
	}{
		{"png std", base64.StdEncoding.EncodeToString(p.Bytes()), "png"},
		{"png raw", base64.RawStdEncoding.EncodeToString(p.Bytes()), "png"},
		{"jpeg url-safe", base64.URLEncoding.EncodeToString(j.Bytes()), "jpeg"},
		{"data url", "data:image/png;base64," + base64.StdEncoding.EncodeToString(p.Bytes()), "png"},
		{"webp", base64.StdEncoding.EncodeToString(webp), "webp"},
	} {
		b, err := DecodeImageBase64(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if f, err := CheckImage(b); err != nil || f != tc.format {
			t.Errorf("%s: format %q, %v", tc.name, f, err)
		}
	}
	for _, bad := range []string{"", "data:image/png;base64", "@@@@", base64.StdEncoding.EncodeToString([]byte("plain text")),
		base64.StdEncoding.EncodeToString(p.Bytes()[:30])} {
		if _, err := DecodeImageBase64(bad); err == nil {
			t.Errorf("%.30q accepted", bad)
		}
	}
}

func TestEventJSON(t *testing.T) {
	for _, tc := range []struct {
		ev   Event
		want string
	}{
		{Event{ID: 1, Type: EventQueued, Position: 0}, `{"id":1,"position":0,"type":"queued"}`},
		{Event{ID: 2, Type: EventLoading, Model: "pony"}, `{"id":2,"model":"pony","type":"loading"}`},
		{Event{ID: 3, Type: EventStep, Step: 1, Steps: 28, Preview: []byte{0xff, 0xd8}}, `{"i":1,"id":3,"n":28,"preview":"/9g=","type":"step"}`},
		{Event{ID: 4, Type: EventImage, Index: 0, URL: "/v1/jobs/x/images/0", Seed: 0}, `{"id":4,"index":0,"seed":0,"type":"image","url":"/v1/jobs/x/images/0"}`},
		{Event{ID: 5, Type: EventDone}, `{"id":5,"type":"done"}`},
		{Event{ID: 6, Type: EventError, Message: "CUDA out of memory"}, `{"id":6,"message":"CUDA out of memory","type":"error"}`},
	} {
		b, err := json.Marshal(tc.ev)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.ev.Type, b, err, tc.want)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, tc.ev) {
			t.Errorf("%s: read back %+v, %v", tc.ev.Type, back, err)
		}
	}
}

func TestReadSSE(t *testing.T) {
	stream := "retry: 1000\n\n: keep-alive\n\nid: 1\nevent: queued\ndata: {\"a\":1}\n\n" +
		"id: 2\r\nevent: step\r\ndata: line one\r\ndata:line two\r\n\r\n" +
		"data: no id\n\n"
	var got []SSEMessage
	if err := ReadSSE(strings.NewReader(stream), func(m SSEMessage) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []SSEMessage{{"1", "queued", `{"a":1}`}, {"2", "step", "line one\nline two"}, {"", "", "no id"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	stop := errors.New("stop here")
	n := 0
	if err := ReadSSE(strings.NewReader(stream), func(SSEMessage) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("callback error: %v after %d", err, n)
	}
	// A line beyond the bound is an error, not unbounded memory.
	long := "data: " + strings.Repeat("x", maxSSELine+1) + "\n\n"
	if err := ReadSSE(strings.NewReader(long), func(SSEMessage) error { return nil }); err == nil {
		t.Error("over-long line accepted")
	}
}

func TestNewClientBadURL(t *testing.T) {
	for _, u := range []string{"127.0.0.1:8000", "ftp://host", "http://", "::bad"} {
		if _, err := NewClient(u, "").Health(t.Context()); err == nil || !strings.Contains(err.Error(), "base URL") {
			t.Errorf("NewClient(%q): %v", u, err)
		}
	}
}
