// Package jsonpath is the small JSONPath subset of teal's smoke checks: a path names one value
// in a JSON document, and Equal compares that value with the expected JSON text.
//
// Supported: $ (the document), .key, ["key"] and ['key'] (any key, with JSON escapes), [0]
// and [-1] (array index, negative from the end). Wildcards, filters, slices and recursive
// descent are rejected: a smoke check names exactly one value.
package jsonpath

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// supported is told with every parse error, so the user sees what would be valid.
const supported = `supported: $, .key, ["key"], ['key'], [0], [-1]`

// Path is a parsed JSON path. The zero value is not valid; use Parse.
type Path struct {
	raw  string
	segs []segment
}

// segment is one step of a path: an object key or an array index.
type segment struct {
	key     string
	index   int
	isIndex bool
	end     int // byte offset in raw just after this segment, for naming the path so far
}

// Parse reads a path like $.items[0].id. The error names the column (from 1) and what is
// valid there.
func Parse(s string) (*Path, error) {
	p := &Path{raw: s}
	if !strings.HasPrefix(s, "$") {
		return nil, parseError(s, 0, "want $ at the start")
	}
	for i := 1; i < len(s); {
		switch s[i] {
		case '.':
			if i+1 < len(s) && s[i+1] == '.' {
				return nil, parseError(s, i, "recursive descent (..) is not supported")
			}
			j := i + 1
			for j < len(s) {
				r, n := utf8.DecodeRuneInString(s[j:])
				if r != '_' && r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
					break
				}
				j += n
			}
			if j == i+1 {
				if j < len(s) && s[j] == '*' {
					return nil, parseError(s, j, "wildcards are not supported")
				}
				return nil, parseError(s, j, `want a key after "." (letters, digits, _ and -; quote others as ["key"])`)
			}
			p.segs = append(p.segs, segment{key: s[i+1 : j], end: j})
			i = j
		case '[':
			seg, err := parseBracket(s, i)
			if err != nil {
				return nil, err
			}
			p.segs = append(p.segs, seg)
			i = seg.end
		default:
			return nil, parseError(s, i, `want "." or "["`)
		}
	}
	return p, nil
}

// parseBracket reads [0], [-1], ["key"] or ['key'] starting at s[i] == '['.
func parseBracket(s string, i int) (segment, error) {
	j := i + 1
	if j >= len(s) {
		return segment{}, parseError(s, j, `want an index or a quoted key after "["`)
	}
	switch c := s[j]; {
	case c == '"' || c == '\'':
		key, n, err := unquote(s[j:])
		if err != nil {
			return segment{}, parseError(s, j, err.Error())
		}
		j += n
		if j >= len(s) || s[j] != ']' {
			return segment{}, parseError(s, j, `want "]" after the quoted key`)
		}
		return segment{key: key, end: j + 1}, nil
	case c == '-' || c >= '0' && c <= '9':
		k := j + 1
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k >= len(s) || s[k] != ']' {
			if k < len(s) && s[k] == ':' {
				return segment{}, parseError(s, k, "slices are not supported")
			}
			return segment{}, parseError(s, k, `want digits and "]" in an index like [0] or [-1]`)
		}
		n, err := strconv.Atoi(s[j:k])
		if err != nil {
			return segment{}, parseError(s, j, fmt.Sprintf("index %q is not a number that fits an int", s[j:k]))
		}
		return segment{index: n, isIndex: true, end: k + 1}, nil
	case c == '*':
		return segment{}, parseError(s, j, "wildcards are not supported")
	case c == '?' || c == '(':
		return segment{}, parseError(s, j, "filters and expressions are not supported")
	default:
		return segment{}, parseError(s, j, `want an index or a quoted key after "["`)
	}
}

// unquote reads the quoted key at the start of s (quote " or ') with JSON's escapes, plus \'
// inside single quotes, and returns it and the bytes it took.
func unquote(s string) (string, int, error) {
	q := s[0]
	var b strings.Builder // the key as a JSON string literal, for encoding/json to decode
	b.WriteByte('"')
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == q:
			b.WriteByte('"')
			var key string
			if err := json.Unmarshal([]byte(b.String()), &key); err != nil {
				return "", 0, fmt.Errorf("bad quoted key: %v", strings.TrimPrefix(err.Error(), "json: "))
			}
			return key, i + 1, nil
		case c == '\\' && i+1 < len(s):
			i++
			if s[i] == '\'' {
				b.WriteByte('\'')
			} else {
				b.WriteByte('\\')
				b.WriteByte(s[i])
			}
		case c == '"': // only inside single quotes
			b.WriteString(`\"`)
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated quoted key (want a closing %c)", q)
}

func parseError(s string, at int, msg string) error {
	return fmt.Errorf("json path %q: column %d: %s (%s)", s, at+1, msg, supported)
}

// String returns the path as it was written.
func (p *Path) String() string { return p.raw }

// Lookup finds the path's value in doc, a JSON document decoded into any (objects as
// map[string]any, arrays as []any, numbers as json.Number or float64). When there is nothing
// there, ok is false and reason says why, naming the path up to the step that failed, like
// `$.items[3]: index 3 out of range (length 2)`.
func (p *Path) Lookup(doc any) (v any, ok bool, reason string) {
	v = doc
	for _, seg := range p.segs {
		at := p.raw[:seg.end]
		if seg.isIndex {
			arr, isArr := v.([]any)
			if !isArr {
				return nil, false, fmt.Sprintf("%s: not an array (got %s)", at, kind(v))
			}
			i := seg.index
			if i < 0 {
				i += len(arr)
			}
			if i < 0 || i >= len(arr) {
				return nil, false, fmt.Sprintf("%s: index %d out of range (length %d)", at, seg.index, len(arr))
			}
			v = arr[i]
			continue
		}
		obj, isObj := v.(map[string]any)
		if !isObj {
			return nil, false, fmt.Sprintf("%s: not an object (got %s)", at, kind(v))
		}
		if v, ok = obj[seg.key]; !ok {
			return nil, false, fmt.Sprintf("%s: no key %q", at, seg.key)
		}
	}
	return v, true, ""
}

// kind names the JSON type of a decoded value, for reasons.
func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// Equal reports whether found (a value from Lookup) equals want, given as JSON text. Numbers
// compare by value (3 == 3.0 == 3e0), at 256-bit precision; objects compare key by key, arrays
// element by element. The error is for want that is not one JSON value.
func Equal(found any, want json.RawMessage) (bool, error) {
	dec := json.NewDecoder(bytes.NewReader(want))
	dec.UseNumber()
	var w any
	if err := dec.Decode(&w); err != nil {
		return false, fmt.Errorf("expected value %q is not JSON: %w", want, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("expected value %q has more after the JSON value", want)
	}
	return equal(found, w), nil
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			if bv, ok := b[k]; !ok || !equal(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equal(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number, float64:
		x, y := number(a), number(b)
		return x != nil && y != nil && x.Cmp(y) == 0
	default: // string, bool, nil
		return a == b
	}
}

// number returns v as a big.Float, or nil if it is not a number. Big floats keep integers
// beyond 2^53 apart, which float64 would not.
func number(v any) *big.Float {
	switch v := v.(type) {
	case json.Number:
		f, _, err := big.ParseFloat(string(v), 10, 256, big.ToNearestEven)
		if err != nil {
			return nil
		}
		return f
	case float64:
		return new(big.Float).SetPrec(256).SetFloat64(v)
	}
	return nil
}
