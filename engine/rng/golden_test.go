package rng

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sync"
	"testing"
)

const (
	goldenDir  = "../../testdata/golden/rng/"
	smallSize  = 1 * 4 * 16 * 24
	bigSize    = 2 * 4 * 128 * 96
	imageSize  = 4 * 16 * 24
	goldenENSD = 31337
)

type goldenSeed struct {
	Seed            json.Number `json:"seed"`
	TorchSmallSHA   string      `json:"torch_cpu_small_sha256"`
	TorchBigSHA     string      `json:"torch_cpu_big_sha256"`
	PhiloxSmallSHA  string      `json:"a1111_philox_small_sha256"`
	PhiloxBigSHA    string      `json:"a1111_philox_big_sha256"`
	TorchBigFirst8  []float64   `json:"torch_cpu_big_first8"`
	PhiloxBigFirst8 []float64   `json:"a1111_philox_big_first8"`
}

type goldenRNG struct {
	Seeds   []goldenSeed     `json:"seeds"`
	Tensors map[string][]int `json:"tensors"`
}

var (
	loadOnce sync.Once
	gJSON    *goldenRNG
	gTensors map[string][]float32
	loadErr  error
)

// readSafetensors reads every F32 tensor of a safetensors file.
func readSafetensors(path string) (map[string][]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 8 {
		return nil, fmt.Errorf("%s: too short", path)
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return nil, fmt.Errorf("%s: header length %d beyond file", path, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	data := b[8+n:]
	out := map[string][]float32{}
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			Dtype   string   `json:"dtype"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("%s: tensor %s: %w", path, name, err)
		}
		if t.Dtype != "F32" || t.Offsets[0] < 0 || t.Offsets[1] > int64(len(data)) || t.Offsets[0] > t.Offsets[1] || (t.Offsets[1]-t.Offsets[0])%4 != 0 {
			return nil, fmt.Errorf("%s: tensor %s: bad dtype %s or offsets %v", path, name, t.Dtype, t.Offsets)
		}
		raw := data[t.Offsets[0]:t.Offsets[1]]
		v := make([]float32, len(raw)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		out[name] = v
	}
	return out, nil
}

func load(t *testing.T) (*goldenRNG, map[string][]float32) {
	t.Helper()
	loadOnce.Do(func() {
		b, err := os.ReadFile(goldenDir + "rng.json")
		if err != nil {
			loadErr = err
			return
		}
		var g goldenRNG
		if err := json.Unmarshal(b, &g); err != nil {
			loadErr = fmt.Errorf("rng.json: %w", err)
			return
		}
		gJSON = &g
		gTensors, loadErr = readSafetensors(goldenDir + "rng.safetensors")
	})
	if loadErr != nil {
		t.Fatalf("load golden: %v", loadErr)
	}
	return gJSON, gTensors
}

func tensor(t *testing.T, tensors map[string][]float32, name string, n int) []float32 {
	t.Helper()
	v, ok := tensors[name]
	if !ok {
		t.Fatalf("golden tensor %s missing", name)
	}
	if len(v) != n {
		t.Fatalf("golden tensor %s has %d values, want %d", name, len(v), n)
	}
	return v
}

func sha(v []float32) string {
	h := sha256.New()
	var b [4]byte
	for _, x := range v {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(x))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// compare counts values that are not bit-identical and the largest
// difference.
func compare(got, want []float32) (mismatches int, maxAbs float64) {
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			mismatches++
			maxAbs = math.Max(maxAbs, math.Abs(float64(got[i])-float64(want[i])))
		}
	}
	return
}

func expectExact(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	mis, maxAbs := compare(got, want)
	t.Logf("%s: %d values, %d not bit-identical, max abs diff %.3g", what, len(want), mis, maxAbs)
	if mis != 0 {
		t.Errorf("%s: %d of %d values differ (max %.3g)", what, mis, len(want), maxAbs)
	}
}

func TestGoldenTorchCPU(t *testing.T) {
	g, tensors := load(t)
	if len(g.Seeds) < 7 {
		t.Fatalf("golden has %d seeds", len(g.Seeds))
	}
	for _, s := range g.Seeds {
		seed, err := parseSeed(s.Seed)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(s.Seed.String(), func(t *testing.T) {
			small := make([]float32, smallSize)
			NewTorchCPU(seed).Randn(small)
			expectExact(t, "small", small, tensor(t, tensors, "torch_cpu/seed_"+s.Seed.String()+"/small", smallSize))
			if got := sha(small); got != s.TorchSmallSHA {
				t.Errorf("small sha256 %s, want %s", got, s.TorchSmallSHA)
			}
			big := make([]float32, bigSize)
			NewTorchCPU(seed).Randn(big)
			if got := sha(big); got != s.TorchBigSHA {
				t.Errorf("big sha256 %s, want %s", got, s.TorchBigSHA)
			}
			name := "torch_cpu/seed_" + s.Seed.String()
			if _, ok := tensors[name+"/big_first64"]; ok {
				expectExact(t, "big first 64", big[:64], tensor(t, tensors, name+"/big_first64", 64))
				expectExact(t, "big last 64", big[bigSize-64:], tensor(t, tensors, name+"/big_last64", 64))
			}
			for i, w := range s.TorchBigFirst8 {
				if float64(big[i]) != w {
					t.Errorf("big[%d] = %v, want %v", i, big[i], w)
				}
			}
		})
	}
	// 2^64-1 is stored as tensors only; it must equal 2^32-1's noise.
	big := make([]float32, bigSize)
	NewTorchCPU(math.MaxUint64).Randn(big)
	expectExact(t, "seed 2^64-1 big last 64", big[bigSize-64:], tensor(t, tensors, "torch_cpu/seed_18446744073709551615/big_last64", 64))
}

func TestGoldenTorchCPUShapes(t *testing.T) {
	_, tensors := load(t)
	for _, n := range []int{7, 15, 16, 17} {
		got := make([]float32, n)
		NewTorchCPU(42).Randn(got)
		expectExact(t, fmt.Sprintf("seed 42 shape %d", n), got, tensor(t, tensors, fmt.Sprintf("torch_cpu/seed_42/shape_%d", n), n))
	}
}

func TestGoldenPhilox(t *testing.T) {
	g, tensors := load(t)
	seeds := map[string]bool{}
	for _, s := range g.Seeds {
		seeds[s.Seed.String()] = true
		seed, err := parseSeed(s.Seed)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(s.Seed.String(), func(t *testing.T) {
			small := make([]float32, smallSize)
			NewPhilox(seed).Randn(small)
			expectExact(t, "small", small, tensor(t, tensors, "a1111_philox/seed_"+s.Seed.String()+"/small", smallSize))
			if got := sha(small); got != s.PhiloxSmallSHA {
				t.Errorf("small sha256 %s, want %s", got, s.PhiloxSmallSHA)
			}
			big := make([]float32, bigSize)
			NewPhilox(seed).Randn(big)
			if got := sha(big); got != s.PhiloxBigSHA {
				t.Errorf("big sha256 %s, want %s", got, s.PhiloxBigSHA)
			}
			name := "a1111_philox/seed_" + s.Seed.String()
			expectExact(t, "big first 64", big[:64], tensor(t, tensors, name+"/big_first64", 64))
			expectExact(t, "big last 64", big[bigSize-64:], tensor(t, tensors, name+"/big_last64", 64))
		})
	}
	// Seed 2^64-1 is only in the tensors.
	small := make([]float32, smallSize)
	NewPhilox(math.MaxUint64).Randn(small)
	expectExact(t, "seed 2^64-1 small", small, tensor(t, tensors, "a1111_philox/seed_18446744073709551615/small", smallSize))
}

func parseSeed(n json.Number) (uint64, error) {
	var s uint64
	if _, err := fmt.Sscan(n.String(), &s); err != nil {
		return 0, fmt.Errorf("seed %s: %w", n, err)
	}
	return s, nil
}

// TestGoldenTools checks the per-tool noise sequences: A1111's per-image
// generators and step draws (with and without ENSD) and ComfyUI's batch.
func TestGoldenTools(t *testing.T) {
	_, tensors := load(t)
	for _, c := range []struct {
		kind   Kind
		prefix string
	}{{A1111, "a1111_nv"}, {A1111CPU, "a1111_cpu"}} {
		t.Run(string(c.kind), func(t *testing.T) {
			n, err := New(Options{Kind: c.kind, Seed: 42, Batch: 1, Size: imageSize})
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]float32, imageSize)
			if err := n.Initial(buf); err != nil {
				t.Fatal(err)
			}
			expectExact(t, "draw0 (initial)", buf, tensor(t, tensors, c.prefix+"/seed_42/draw0", imageSize))
			for k := 1; k <= 3; k++ {
				if err := n.Noise(k-1, buf); err != nil {
					t.Fatal(err)
				}
				expectExact(t, fmt.Sprintf("draw%d (step %d)", k, k-1), buf, tensor(t, tensors, fmt.Sprintf("%s/seed_42/draw%d", c.prefix, k), imageSize))
			}

			n, err = New(Options{Kind: c.kind, Seed: 42, Batch: 1, Size: imageSize, ENSD: goldenENSD})
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Initial(buf); err != nil {
				t.Fatal(err)
			}
			expectExact(t, "initial with ENSD", buf, tensor(t, tensors, c.prefix+"/seed_42/draw0", imageSize))
			for k := range 3 {
				if err := n.Noise(k, buf); err != nil {
					t.Fatal(err)
				}
				expectExact(t, fmt.Sprintf("ENSD step %d", k), buf, tensor(t, tensors, fmt.Sprintf("%s/seed_42_ensd_31337/step_noise%d", c.prefix, k), imageSize))
			}
		})
	}
	for _, c := range []struct {
		kind Kind
		name string
	}{{A1111, "a1111_nv/batch2_seed_42/initial_noise"}, {Comfy, "torch_cpu/batch2_seed_42/initial_noise"}} {
		n, err := New(Options{Kind: c.kind, Seed: 42, Batch: 2, Size: imageSize})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]float32, 2*imageSize)
		if err := n.Initial(buf); err != nil {
			t.Fatal(err)
		}
		expectExact(t, c.name, buf, tensor(t, tensors, c.name, 2*imageSize))
	}
}
