package tags

import "strings"

// Span is the fragment being typed at the cursor and the part of the prompt
// a chosen suggestion replaces. Offsets count runes (as text widgets count
// cursor columns), not bytes.
type Span struct {
	// Text is the fragment from its start to the cursor, leading spaces
	// left out: what to pass to Complete.
	Text string
	// Start and End delimit the text a suggestion replaces; End is at or
	// after the cursor (the rest of a word the cursor is inside).
	Start, End int
}

// isBoundary reports whether r ends a tag in a prompt. Parentheses and
// brackets are A1111's emphasis syntax, '|' its alternation, '{' '}' dynamic
// prompts; a backslash before one of them makes it part of the tag.
func isBoundary(r rune) bool {
	switch r {
	case ',', '\n', '\r', '|', '(', ')', '[', ']', '{', '}', '>':
		return true
	}
	return false
}

// CurrentWord finds the fragment being typed at cursor (a rune offset into
// text, clamped to it): the text after the last comma, newline or opening
// emphasis before the cursor, from a '<' on when one begins it (a LoRA being
// typed). The replacement range extends past the cursor over the rest of the
// tag, stopping before a ':' (a weight such as (tag:1.2) is kept) unless the
// fragment is a <…> whose '>' is then included.
func CurrentWord(text string, cursor int) Span {
	rs := []rune(text)
	cursor = max(0, min(cursor, len(rs)))
	escaped := func(i int) bool {
		n := 0
		for j := i - 1; j >= 0 && rs[j] == '\\'; j-- {
			n++
		}
		return n%2 == 1
	}
	start := cursor
	angle := false
	for start > 0 {
		r := rs[start-1]
		if isBoundary(r) && !escaped(start-1) {
			break
		}
		start--
		if r == '<' {
			angle = true
			break
		}
	}
	for start < cursor && (rs[start] == ' ' || rs[start] == '\t') {
		start++
	}
	end := cursor
	for end < len(rs) {
		r := rs[end]
		if r == '<' || (isBoundary(r) && !escaped(end)) {
			if angle && r == '>' {
				end++
			}
			break
		}
		if r == ':' && !angle {
			break
		}
		end++
	}
	// Trailing spaces before the next comma stay where they are.
	for end > cursor && (rs[end-1] == ' ' || rs[end-1] == '\t') {
		end--
	}
	return Span{Text: string(rs[start:cursor]), Start: start, End: end}
}

// Replace puts insert in place of span in text, as tagcomplete inserts a
// completion: followed by ", " when the tag ends the line, or moving past a
// comma that already follows. It returns the new text and the cursor (a rune
// offset) after the insertion.
func Replace(text string, span Span, insert string) (string, int) {
	rs := []rune(text)
	start := max(0, min(span.Start, len(rs)))
	end := max(start, min(span.End, len(rs)))
	after := rs[end:]
	var b strings.Builder
	b.WriteString(string(rs[:start]))
	b.WriteString(insert)
	cursor := start + len([]rune(insert))
	rest := strings.TrimLeft(string(after), " \t")
	switch {
	case rest == "" || rest[0] == '\n' || rest[0] == '\r':
		b.WriteString(", ")
		cursor += 2
		b.WriteString(rest)
	case rest[0] == ',':
		// Step over the comma and one space that follow.
		b.WriteString(string(after))
		skip := len([]rune(string(after))) - len([]rune(rest)) + 1
		if len(rest) > 1 && rest[1] == ' ' {
			skip++
		}
		cursor += skip
	default:
		b.WriteString(string(after))
	}
	return b.String(), cursor
}
