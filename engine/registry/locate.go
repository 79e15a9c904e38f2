package registry

import (
	"regexp"
	"strconv"
	"strings"
)

// keyLine finds the line (1-based) where a dotted key such as
// "defaults.cfg" is set or its table opened, so that problems found after
// decoding (unknown keys, bad values) point at a line like syntax errors do.
// The TOML decoder keeps key positions private, hence this small scanner. It
// understands table headers, dotted and quoted keys and skips multi-line
// strings; it returns 0 when it cannot tell.
func keyLine(src, key string) int {
	table := ""
	inMulti := ""
	for i, line := range strings.Split(src, "\n") {
		if inMulti != "" {
			if strings.Count(line, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		if strings.HasPrefix(t, "[") {
			name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(stripComment(t), "["), "["), "]")
			name = strings.TrimSuffix(name, "]")
			table = normalizeKey(name)
			if table == key {
				return i + 1
			}
			continue
		}
		eq := strings.IndexByte(t, '=')
		if eq < 0 {
			continue
		}
		full := normalizeKey(t[:eq])
		if table != "" {
			full = table + "." + full
		}
		if full == key || strings.HasPrefix(full, key+".") {
			return i + 1
		}
		value := t[eq+1:]
		for _, q := range []string{`"""`, `'''`} {
			if strings.Count(value, q)%2 == 1 {
				inMulti = q
				break
			}
		}
	}
	return 0
}

// normalizeKey turns ` a . "b" ` into `a.b`.
func normalizeKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') && p[len(p)-1] == p[0] {
			p = p[1 : len(p)-1]
		}
		parts[i] = p
	}
	return strings.Join(parts, ".")
}

func stripComment(s string) string {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// lineCol converts a byte offset into a 1-based line and column.
func lineCol(src string, offset int) (line, col int) {
	if offset < 0 || offset > len(src) {
		return 0, 0
	}
	before := src[:offset]
	line = strings.Count(before, "\n") + 1
	col = offset - strings.LastIndexByte(before, '\n')
	return line, col
}

// The decoder reports type mismatches as plain errors of the form
//
//	toml: line 3 (last key "defaults.cfg"): incompatible types: TOML value has type string; destination has type float
var (
	typeErrRE  = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: (.*)$`)
	mismatchRE = regexp.MustCompile(`TOML value has type ([\w\[\]{}.]+); destination has type (\w+)`)
)

// decodeErrorProblem turns a decoder error that is not a ParseError into a
// Problem with the line it names and a message a user can act on.
func decodeErrorProblem(file string, err error) Problem {
	p := Problem{File: file, Severity: Error, Message: err.Error()}
	m := typeErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return p
	}
	p.Line, _ = strconv.Atoi(m[1])
	key, msg := m[2], m[3]
	if mm := mismatchRE.FindStringSubmatch(msg); mm != nil {
		msg = "wrong type: got " + tomlTypeName(mm[1]) + ", want " + goTypeName(mm[2])
	}
	if key != "" {
		msg = key + ": " + msg
	}
	p.Message = msg
	return p
}

func tomlTypeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a float"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case strings.HasPrefix(t, "map"):
		return "a table"
	}
	return t
}

func goTypeName(t string) string {
	switch t {
	case "string":
		return "a string"
	case "integer":
		return "an integer"
	case "float":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "a table"
	}
	return t
}
