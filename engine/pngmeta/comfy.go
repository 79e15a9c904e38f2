package pngmeta

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Comfy is what a ComfyUI image says about how it was made, read from the
// sampler node and the text-encoder nodes feeding it.
type Comfy struct {
	Prompt         string
	NegativePrompt string
	Seed           int64
	Steps          int
	CFG            float64
	Sampler        string
	Scheduler      string
	Denoise        float64
	// Model is the checkpoint loader's ckpt_name, when there is one.
	Model  string
	Width  int
	Height int
	// Source is KeyComfyPrompt or KeyComfyWorkflow: the chunk it came from.
	Source string
}

// maxComfyDepth bounds how many nodes one look-up visits: real graphs pass
// a prompt or a seed through a handful of nodes.
const maxComfyDepth = 16

// ParseComfy extracts the generation settings from ComfyUI's chunks. prompt
// is the API-format graph ({"id": {"class_type", "inputs"}}), workflow the
// editor's ({"nodes": [...], "links": [...]}); either may be empty, and
// prompt is preferred since it is what ran. It fails when neither parses or
// neither holds a KSampler-like node.
func ParseComfy(prompt, workflow string) (*Comfy, error) {
	var errs []error
	if prompt != "" {
		c, err := parseComfyPrompt(prompt)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("comfy prompt: %w", err))
	}
	if workflow != "" {
		c, err := parseComfyWorkflow(workflow)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("comfy workflow: %w", err))
	}
	if len(errs) == 0 {
		return nil, errors.New("comfy: no prompt or workflow chunk")
	}
	return nil, errors.Join(errs...)
}

// --- API format ---

type apiNode struct {
	ClassType string                     `json:"class_type"`
	Inputs    map[string]json.RawMessage `json:"inputs"`
}

func parseComfyPrompt(s string) (*Comfy, error) {
	var graph map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &graph); err != nil {
		return nil, err
	}
	nodes := map[string]*apiNode{}
	for id, raw := range graph {
		var n apiNode
		// Entries that are not nodes (some front ends add extra keys) are skipped.
		if json.Unmarshal(raw, &n) == nil && n.ClassType != "" {
			nodes[id] = &n
		}
	}
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sortNodeIDs(ids)
	var samplerID string
	for _, id := range ids {
		if isSamplerClass(nodes[id].ClassType) {
			samplerID = id
			break
		}
	}
	if samplerID == "" {
		return nil, errors.New("no KSampler node")
	}
	g := apiGraph{nodes}
	ks := nodes[samplerID]
	c := &Comfy{Source: KeyComfyPrompt, Denoise: 1}
	seedKey := "seed"
	if _, ok := ks.Inputs["noise_seed"]; ok {
		seedKey = "noise_seed"
	}
	if lit, ok := g.literal(ks, seedKey, map[*apiNode]bool{}); ok {
		c.Seed = seedValue(lit)
	}
	if v, ok := g.number(ks, "steps"); ok {
		c.Steps = clampInt(v)
	}
	if v, ok := g.number(ks, "cfg"); ok {
		c.CFG = v
	}
	if v, ok := g.number(ks, "denoise"); ok {
		c.Denoise = v
	}
	c.Sampler, _ = g.text(ks, "sampler_name", map[*apiNode]bool{})
	c.Scheduler, _ = g.text(ks, "scheduler", map[*apiNode]bool{})
	c.Prompt = g.promptText(ks, "positive", map[*apiNode]bool{})
	c.NegativePrompt = g.promptText(ks, "negative", map[*apiNode]bool{})
	for _, id := range ids {
		n := nodes[id]
		switch n.ClassType {
		case "CheckpointLoaderSimple", "CheckpointLoader":
			if c.Model == "" {
				c.Model, _ = g.text(n, "ckpt_name", map[*apiNode]bool{})
			}
		case "EmptyLatentImage", "EmptySD3LatentImage":
			if c.Width == 0 {
				w, _ := g.number(n, "width")
				h, _ := g.number(n, "height")
				c.Width, c.Height = clampInt(w), clampInt(h)
			}
		}
	}
	return c, nil
}

type apiGraph struct{ nodes map[string]*apiNode }

// link reads an input that is a link: [node id, output slot].
func (g apiGraph) link(raw json.RawMessage) (*apiNode, bool) {
	var l []json.RawMessage
	if json.Unmarshal(raw, &l) != nil || len(l) != 2 {
		return nil, false
	}
	var id string
	if json.Unmarshal(l[0], &id) != nil {
		var n json.Number
		if json.Unmarshal(l[0], &n) != nil {
			return nil, false
		}
		id = n.String()
	}
	n, ok := g.nodes[id]
	return n, ok
}

// valueInputs are the inputs of primitive and utility nodes that carry the
// value another node's linked input receives.
var valueInputs = []string{"value", "seed", "noise_seed", "int", "float", "string", "text", "Text"}

func (g apiGraph) number(n *apiNode, key string) (float64, bool) {
	lit, ok := g.literal(n, key, map[*apiNode]bool{})
	if !ok {
		return 0, false
	}
	f, err := lit.Float64()
	return f, err == nil
}

// literal returns the number an input holds or is linked to, as written.
// Each node is visited once per query, so that a graph with cycles or
// diamonds costs time linear in its size.
func (g apiGraph) literal(n *apiNode, key string, seen map[*apiNode]bool) (json.Number, bool) {
	raw, ok := n.Inputs[key]
	if !ok || len(seen) > maxComfyDepth {
		return "", false
	}
	if lit, ok := numberLiteral(raw); ok {
		return lit, true
	}
	if src, ok := g.link(raw); ok && !seen[src] {
		seen[src] = true
		for _, k := range valueInputs {
			if v, ok := g.literal(src, k, seen); ok {
				return v, true
			}
		}
	}
	return "", false
}

// numberLiteral accepts a JSON number, not a string holding one.
func numberLiteral(raw json.RawMessage) (json.Number, bool) {
	var lit json.Number
	if len(raw) == 0 || raw[0] == '"' || json.Unmarshal(raw, &lit) != nil {
		return "", false
	}
	return lit, true
}

// seedValue reads a seed exactly: ComfyUI seeds run to 2^64-1, past what a
// float64 holds; those above 2^63-1 keep their bits as an int64.
func seedValue(lit json.Number) int64 {
	if v, err := strconv.ParseInt(lit.String(), 10, 64); err == nil {
		return v
	}
	if v, err := strconv.ParseUint(lit.String(), 10, 64); err == nil {
		return int64(v)
	}
	f, _ := lit.Float64()
	return clampInt64(f)
}

func (g apiGraph) text(n *apiNode, key string, seen map[*apiNode]bool) (string, bool) {
	raw, ok := n.Inputs[key]
	if !ok || len(seen) > maxComfyDepth {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	if src, ok := g.link(raw); ok && !seen[src] {
		seen[src] = true
		for _, k := range valueInputs {
			if v, ok := g.text(src, k, seen); ok {
				return v, true
			}
		}
	}
	return "", false
}

// promptText follows a conditioning input back to the text encoder feeding
// it, through conditioning nodes in between (the first conditioning input
// of each).
func (g apiGraph) promptText(n *apiNode, key string, seen map[*apiNode]bool) string {
	raw, ok := n.Inputs[key]
	if !ok || len(seen) > maxComfyDepth {
		return ""
	}
	src, ok := g.link(raw)
	if !ok || seen[src] {
		return ""
	}
	seen[src] = true
	switch src.ClassType {
	case "CLIPTextEncode":
		s, _ := g.text(src, "text", map[*apiNode]bool{})
		return s
	case "CLIPTextEncodeSDXL":
		tg, _ := g.text(src, "text_g", map[*apiNode]bool{})
		tl, _ := g.text(src, "text_l", map[*apiNode]bool{})
		if tl == "" || tl == tg {
			return tg
		}
		if tg == "" {
			return tl
		}
		return tg + "\n" + tl
	}
	for _, k := range []string{"conditioning", "conditioning_1", "conditioning_to", "positive", "cond"} {
		if _, ok := src.Inputs[k]; ok {
			if s := g.promptText(src, k, seen); s != "" {
				return s
			}
		}
	}
	return ""
}

// --- editor (workflow) format ---

type wfNode struct {
	ID      json.RawMessage   `json:"id"`
	Type    string            `json:"type"`
	Inputs  []wfInput         `json:"inputs"`
	Widgets []json.RawMessage `json:"widgets_values"`
}

type wfInput struct {
	Name string          `json:"name"`
	Link json.RawMessage `json:"link"`
}

type workflow struct {
	Nodes []wfNode            `json:"nodes"`
	Links [][]json.RawMessage `json:"links"`
}

func parseComfyWorkflow(s string) (*Comfy, error) {
	var wf workflow
	// Widget values of nodes other than the few read here may be anything;
	// json.RawMessage keeps them unparsed.
	if err := json.Unmarshal([]byte(s), &wf); err != nil {
		return nil, err
	}
	byID := map[string]*wfNode{}
	for i := range wf.Nodes {
		byID[idKey(wf.Nodes[i].ID)] = &wf.Nodes[i]
	}
	// link id -> origin node id
	origin := map[string]string{}
	for _, l := range wf.Links {
		if len(l) < 2 {
			continue
		}
		origin[idKey(l[0])] = idKey(l[1])
	}
	w := wfGraph{byID, origin}
	var ks *wfNode
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sortNodeIDs(ids)
	for _, id := range ids {
		if isSamplerClass(byID[id].Type) {
			ks = byID[id]
			break
		}
	}
	if ks == nil {
		return nil, errors.New("no KSampler node")
	}
	c := &Comfy{Source: KeyComfyWorkflow, Denoise: 1}
	wv := ks.Widgets
	num := func(i int) (float64, bool) {
		if i < 0 || i >= len(wv) {
			return 0, false
		}
		var f float64
		return f, json.Unmarshal(wv[i], &f) == nil
	}
	str := func(i int) string {
		if i < 0 || i >= len(wv) {
			return ""
		}
		var s string
		json.Unmarshal(wv[i], &s)
		return s
	}
	// KSampler: seed, [control_after_generate], steps, cfg, sampler, scheduler, denoise.
	// KSamplerAdvanced: add_noise, noise_seed, [control], steps, cfg, sampler, scheduler, start, end, leftover.
	base := 0
	if ks.Type == "KSamplerAdvanced" {
		base = 1
	}
	if base < len(wv) {
		if lit, ok := numberLiteral(wv[base]); ok {
			c.Seed = seedValue(lit)
		}
	}
	i := base + 1
	if _, isNum := num(i); !isNum && str(i) != "" {
		i++ // the "control after generate" widget
	}
	if v, ok := num(i); ok {
		c.Steps = clampInt(v)
	}
	if v, ok := num(i + 1); ok {
		c.CFG = v
	}
	c.Sampler = str(i + 2)
	c.Scheduler = str(i + 3)
	if ks.Type != "KSamplerAdvanced" {
		if v, ok := num(i + 4); ok {
			c.Denoise = v
		}
	}
	c.Prompt = w.promptText(ks, "positive", map[*wfNode]bool{})
	c.NegativePrompt = w.promptText(ks, "negative", map[*wfNode]bool{})
	for _, id := range ids {
		n := byID[id]
		switch n.Type {
		case "CheckpointLoaderSimple", "CheckpointLoader":
			if c.Model == "" && len(n.Widgets) > 0 {
				json.Unmarshal(n.Widgets[0], &c.Model)
			}
		case "EmptyLatentImage":
			if c.Width == 0 && len(n.Widgets) >= 2 {
				var w, h float64
				json.Unmarshal(n.Widgets[0], &w)
				json.Unmarshal(n.Widgets[1], &h)
				c.Width, c.Height = clampInt(w), clampInt(h)
			}
		}
	}
	return c, nil
}

type wfGraph struct {
	nodes  map[string]*wfNode
	origin map[string]string
}

func (w wfGraph) source(n *wfNode, input string) *wfNode {
	for _, in := range n.Inputs {
		if in.Name == input && len(in.Link) > 0 && string(in.Link) != "null" {
			return w.nodes[w.origin[idKey(in.Link)]]
		}
	}
	return nil
}

func (w wfGraph) promptText(n *wfNode, input string, seen map[*wfNode]bool) string {
	if len(seen) > maxComfyDepth {
		return ""
	}
	src := w.source(n, input)
	if src == nil || seen[src] {
		return ""
	}
	seen[src] = true
	switch src.Type {
	case "CLIPTextEncode":
		// The text may come from a linked primitive instead of the widget.
		if p := w.source(src, "text"); p != nil && len(p.Widgets) > 0 {
			var s string
			if json.Unmarshal(p.Widgets[0], &s) == nil {
				return s
			}
		}
		if len(src.Widgets) > 0 {
			var s string
			json.Unmarshal(src.Widgets[0], &s)
			return s
		}
		return ""
	}
	for _, k := range []string{"conditioning", "conditioning_1", "conditioning_to", "positive", "cond"} {
		if s := w.promptText(src, k, seen); s != "" {
			return s
		}
	}
	return ""
}

// idKey turns a node or link id, a number or a string in JSON, into a map key.
func idKey(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if lit, ok := numberLiteral(raw); ok {
		return lit.String()
	}
	return string(raw)
}

func isSamplerClass(t string) bool {
	switch t {
	case "KSampler", "KSamplerAdvanced", "KSampler (Efficient)", "KSamplerAdvanced (Efficient)":
		return true
	}
	return false
}

// sortNodeIDs orders node ids numerically where they are numbers, so that
// the first sampler found is the graph's first, not a map's random pick.
func sortNodeIDs(ids []string) {
	sort.Slice(ids, func(i, j int) bool {
		a, ea := strconv.ParseFloat(ids[i], 64)
		b, eb := strconv.ParseFloat(ids[j], 64)
		if ea == nil && eb == nil && a != b {
			return a < b
		}
		if (ea == nil) != (eb == nil) {
			return ea == nil
		}
		return ids[i] < ids[j]
	})
}

func clampInt(f float64) int {
	if f != f || f < math.MinInt32 || f > math.MaxInt32 {
		return 0
	}
	return int(f)
}

func clampInt64(f float64) int64 {
	if f != f || f < -(1<<63) || f >= 1<<63 {
		return 0
	}
	return int64(f)
}
