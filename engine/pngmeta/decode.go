package pngmeta

import (
	"encoding/json"
	"fmt"
	"io"
)

// Metadata is what a PNG says about its making.
type Metadata struct {
	// Text holds every text chunk in file order.
	Text []TextChunk
	// Parameters is the raw A1111 infotext ("" when absent) and A1111 its
	// parsed form (nil when absent).
	Parameters string
	A1111      *Parameters
	// Recipe is pixery's recipe, nil when the image has none.
	Recipe *Recipe
	// Comfy holds what ComfyUI's chunks say, nil when there are none.
	Comfy *Comfy
	// Problems lists chunks that were present but could not be understood
	// (a recipe that is not JSON, infotext with a malformed field, a ComfyUI
	// graph without a sampler). The rest of Metadata is still filled.
	Problems []error
}

// Get returns the text of the first chunk with the keyword.
func (m *Metadata) Get(keyword string) (string, bool) {
	for _, c := range m.Text {
		if c.Keyword == keyword {
			return c.Text, true
		}
	}
	return "", false
}

// Decode reads a PNG's text chunks and interprets the ones pixery, A1111,
// Forge and ComfyUI write. It fails only when the PNG itself is malformed;
// a chunk whose content cannot be understood is reported in Problems.
func Decode(r io.Reader) (*Metadata, error) {
	chunks, err := ReadText(r)
	if err != nil {
		return nil, err
	}
	m := &Metadata{Text: chunks}
	if s, ok := m.Get(KeyParameters); ok {
		m.Parameters = s
		p, err := ParseParameters(s)
		m.A1111 = p
		if err != nil {
			m.Problems = append(m.Problems, fmt.Errorf("%s chunk: %w", KeyParameters, err))
		}
	}
	if s, ok := m.Get(KeyRecipe); ok {
		var rc Recipe
		if err := json.Unmarshal([]byte(s), &rc); err != nil {
			m.Problems = append(m.Problems, fmt.Errorf("%s chunk: %w", KeyRecipe, err))
		} else {
			m.Recipe = &rc
		}
	}
	prompt, hasPrompt := m.Get(KeyComfyPrompt)
	wf, hasWF := m.Get(KeyComfyWorkflow)
	if hasPrompt || hasWF {
		c, err := ParseComfy(prompt, wf)
		if err != nil {
			m.Problems = append(m.Problems, err)
		} else {
			m.Comfy = c
		}
	}
	return m, nil
}
