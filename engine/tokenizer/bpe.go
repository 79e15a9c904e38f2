package tokenizer

import "math"

// naiveLimit is the word length (in bytes) up to which bpe uses the direct
// transcription of the reference loop, which is quadratic but the fastest for
// the short words prompts are made of. Longer words take the heap path, which
// is O(n log n) and gives the same result.
const naiveLimit = 32

// bpe returns the symbol ids of one pre-token (raw UTF-8 bytes; each byte is a
// symbol and the last one carries "</w>"). len(tok) must be at least 1.
func (v *vocab) bpe(tok string) []int32 {
	syms := make([]int32, len(tok))
	for i := 0; i < len(tok); i++ {
		syms[i] = v.byteSym[tok[i]]
	}
	syms[len(tok)-1] = v.byteEnd[tok[len(tok)-1]]
	if len(syms) <= naiveLimit {
		return v.mergeNaive(syms)
	}
	return v.mergeHeap(syms)
}

// mergeNaive follows the reference: find the adjacent pair with the lowest
// merge rank, merge all its occurrences left to right, repeat.
func (v *vocab) mergeNaive(word []int32) []int32 {
	for len(word) > 1 {
		best := merge{rank: math.MaxInt32}
		var first, second int32
		for i := 0; i+1 < len(word); i++ {
			if m, ok := v.merges[pairKey(word[i], word[i+1])]; ok && m.rank < best.rank {
				best, first, second = m, word[i], word[i+1]
			}
		}
		if best.rank == math.MaxInt32 {
			break
		}
		out := word[:0]
		for i := 0; i < len(word); i++ {
			if i+1 < len(word) && word[i] == first && word[i+1] == second {
				out = append(out, best.id)
				i++
			} else {
				out = append(out, word[i])
			}
		}
		word = out
	}
	return word
}

// mergeHeap gives the same result as mergeNaive in O(n log n): the symbols are
// a linked list and candidate pairs sit in a heap ordered by (rank, position).
// To keep the reference's order exactly, all occurrences of the lowest-rank
// pair are merged before any pair created by those merges is considered, even
// a pair of lower rank.
func (v *vocab) mergeHeap(syms []int32) []int32 {
	n := len(syms)
	next := make([]int32, n)
	prev := make([]int32, n)
	for i := range syms {
		next[i] = int32(i + 1)
		prev[i] = int32(i - 1)
	}
	next[n-1] = -1
	alive := make([]bool, n)
	for i := range alive {
		alive[i] = true
	}
	h := &pairHeap{}
	for i := 0; i+1 < n; i++ {
		if m, ok := v.merges[pairKey(syms[i], syms[i+1])]; ok {
			h.items = append(h.items, candidate{rank: m.rank, pos: int32(i)})
		}
	}
	h.init()
	var round, pending []candidate
	for h.len() > 0 {
		rank := h.items[0].rank
		round = round[:0]
		for h.len() > 0 && h.items[0].rank == rank {
			round = append(round, h.pop())
		}
		pending = pending[:0]
		for _, c := range round {
			i := c.pos
			j := next[i]
			if !alive[i] || j < 0 {
				continue
			}
			m, ok := v.merges[pairKey(syms[i], syms[j])]
			if !ok || m.rank != rank {
				continue // stale: one side has changed since it was queued
			}
			syms[i] = m.id
			alive[j] = false
			next[i] = next[j]
			if k := next[j]; k >= 0 {
				prev[k] = i
			}
			if p := prev[i]; p >= 0 {
				if m, ok := v.merges[pairKey(syms[p], syms[i])]; ok {
					pending = append(pending, candidate{rank: m.rank, pos: p})
				}
			}
			if k := next[i]; k >= 0 {
				if m, ok := v.merges[pairKey(syms[i], syms[k])]; ok {
					pending = append(pending, candidate{rank: m.rank, pos: i})
				}
			}
		}
		for _, c := range pending {
			h.push(c)
		}
	}
	out := make([]int32, 0, n)
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, syms[i])
	}
	return out
}

type candidate struct {
	rank, pos int32
}

func (a candidate) less(b candidate) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// pairHeap is a binary min-heap of candidates, typed to avoid the boxing of
// container/heap on this hot path.
type pairHeap struct{ items []candidate }

func (h *pairHeap) len() int { return len(h.items) }

func (h *pairHeap) init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *pairHeap) push(c candidate) {
	h.items = append(h.items, c)
	i := len(h.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.items[i].less(h.items[p]) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *pairHeap) pop() candidate {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	h.down(0)
	return top
}

func (h *pairHeap) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.items[r].less(h.items[l]) {
			m = r
		}
		if !h.items[m].less(h.items[i]) {
			return
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}
