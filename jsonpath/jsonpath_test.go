package jsonpath

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const doc = `{
	"ok": true,
	"n": 3,
	"big": 9007199254740993,
	"name": "shop",
	"nothing": null,
	"items": [{"id": 7}, {"id": 8, "tags": ["a", "b"]}],
	"key with space": "spaced",
	"it's": 1,
	"a": {"b": {"c": "deep"}},
	"ünï": "unicode",
	"x-y_z9": "dashed"
}`

func decode(t testing.TB, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		path    string
		wantErr string // a part of the error
	}{
		{"", "column 1: want $ at the start"},
		{"ok", "column 1: want $ at the start"},
		{"$ok", `column 2: want "." or "["`},
		{"$.", `column 3: want a key after "."`},
		{"$.a.", `column 5: want a key after "."`},
		{"$..a", "column 2: recursive descent (..) is not supported"},
		{"$.*", "column 3: wildcards are not supported"},
		{"$[*]", "column 3: wildcards are not supported"},
		{"$.items[?(@.id==7)]", "column 9: filters and expressions are not supported"},
		{"$.items[0:2]", "column 10: slices are not supported"},
		{"$[", `column 3: want an index or a quoted key after "["`},
		{"$[]", `column 3: want an index or a quoted key after "["`},
		{"$[a]", `column 3: want an index or a quoted key after "["`},
		{"$[1", `column 4: want digits and "]"`},
		{"$[1x]", `column 4: want digits and "]"`},
		{"$[-]", `index "-" is not a number`},
		{"$[99999999999999999999]", "is not a number that fits"},
		{`$["a]`, `unterminated quoted key (want a closing ")`},
		{`$['a"]`, `unterminated quoted key (want a closing ')`},
		{`$["a"`, `column 6: want "]" after the quoted key`},
		{`$["a"x]`, `column 6: want "]" after the quoted key`},
		{`$["\q"]`, "bad quoted key"},
		{"$[\"a\tb\"]", "bad quoted key"},
		{"$ .a", `column 2: want "." or "["`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p, err := Parse(tt.path)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error containing %q", tt.path, p.segs, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), supported) {
				t.Fatalf("Parse(%q) error = %q, want it to contain %q and the supported forms", tt.path, err, tt.wantErr)
			}
		})
	}
}

func TestPath_Lookup(t *testing.T) {
	tests := []struct {
		path string
		want string // the value found, as JSON; "" when not found
		why  string // the reason when not found
	}{
		{"$", "", ""}, // the whole document; checked below
		{"$.ok", "true", ""},
		{"$.n", "3", ""},
		{"$.nothing", "null", ""},
		{"$.items[0].id", "7", ""},
		{"$.items[-1].id", "8", ""},
		{"$.items[-2].id", "7", ""},
		{"$.items[1].tags[-1]", `"b"`, ""},
		{"$.a.b.c", `"deep"`, ""},
		{`$["a"]['b']["c"]`, `"deep"`, ""},
		{`$["key with space"]`, `"spaced"`, ""},
		{`$['it\'s']`, "1", ""},
		{`$["it's"]`, "1", ""},
		{`$["\u006b\u0065y with space"]`, `"spaced"`, ""},
		{"$.ünï", `"unicode"`, ""},
		{"$.x-y_z9", `"dashed"`, ""},
		{"$.items[2]", "", "$.items[2]: index 2 out of range (length 2)"},
		{"$.items[-3].id", "", "$.items[-3]: index -3 out of range (length 2)"},
		{"$.items.id", "", "$.items.id: not an object (got array)"},
		{"$.ok[0]", "", "$.ok[0]: not an array (got boolean)"},
		{"$.nothing.x", "", "$.nothing.x: not an object (got null)"},
		{"$.name.x", "", "$.name.x: not an object (got string)"},
		{"$.a.b.zz", "", `$.a.b.zz: no key "zz"`},
		{"$.missing.b", "", `$.missing: no key "missing"`},
		{"$[0]", "", "$[0]: not an array (got object)"},
	}
	d := decode(t, doc)
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p, err := Parse(tt.path)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.path, err)
			}
			if got := p.String(); got != tt.path {
				t.Fatalf("String() = %q, want %q", got, tt.path)
			}
			v, ok, why := p.Lookup(d)
			if tt.path == "$" {
				if !reflect.DeepEqual(v, d) || !ok {
					t.Fatalf("Lookup($) = %v, %v, want the document", v, ok)
				}
				return
			}
			if tt.want == "" {
				if ok || why != tt.why {
					t.Fatalf("Lookup = %v, %v, %q, want not found, %q", v, ok, why, tt.why)
				}
				return
			}
			if !ok {
				t.Fatalf("Lookup = not found (%s), want %s", why, tt.want)
			}
			if eq, err := Equal(v, json.RawMessage(tt.want)); err != nil || !eq {
				t.Fatalf("Lookup = %#v, want %s (Equal: %v, %v)", v, tt.want, eq, err)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		found string // as JSON, decoded with UseNumber
		want  string
		equal bool
	}{
		{"3", "3", true},
		{"3", "3.0", true},
		{"3.0", "3", true},
		{"3", "3e0", true},
		{"300", "3e2", true},
		{"0.1", "1e-1", true},
		{"-0", "0", true},
		{"3", "4", false},
		{"3", `"3"`, false},
		{`"3"`, "3", false},
		{"9007199254740993", "9007199254740992", false}, // equal as float64, not as numbers
		{"true", "true", true},
		{"true", "false", false},
		{"true", "1", false},
		{"null", "null", true},
		{"null", "false", false},
		{"null", `""`, false},
		{`"x"`, `"x"`, true},
		{`"x"`, ` "x" `, true},
		{`"x"`, `"X"`, false},
		{`{"a": 1, "b": [1, 2]}`, `{"b": [1.0, 2], "a": 1}`, true},
		{`{"a": 1}`, `{"a": 1, "b": 2}`, false},
		{`{"a": 1, "b": 2}`, `{"a": 1, "c": 2}`, false},
		{`{"a": 1}`, `[1]`, false},
		{`[1, 2]`, `[2, 1]`, false},
		{`[1, 2]`, `[1, 2, 3]`, false},
		{`[]`, `[]`, true},
		{`[]`, `{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.found+"="+tt.want, func(t *testing.T) {
			got, err := Equal(decode(t, tt.found), json.RawMessage(tt.want))
			if err != nil {
				t.Fatalf("Equal: %v", err)
			}
			if got != tt.equal {
				t.Fatalf("Equal(%s, %s) = %v, want %v", tt.found, tt.want, got, tt.equal)
			}
		})
	}
}

func TestEqual_Float64(t *testing.T) {
	// A document decoded without UseNumber holds float64s; they compare by value too.
	if got, err := Equal(float64(3), json.RawMessage("3.0")); err != nil || !got {
		t.Fatalf("Equal(3.0, 3.0) = %v, %v, want true", got, err)
	}
}

func TestEqual_BadWant(t *testing.T) {
	for _, want := range []string{"", "tru", "1 2", `"x`, "{"} {
		if _, err := Equal(true, json.RawMessage(want)); err == nil || !strings.Contains(err.Error(), "expected value") {
			t.Fatalf("Equal(true, %q) error = %v, want one naming the expected value", want, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"$", "$.a", "$.items[0].id", `$["key with space"]`, `$['k']`,
		"$.list[-1]", `$['it\'s']["\u00e9"]`, "$..a", "$[*]", "$[1:2]", `$["\`} {
		f.Add(s)
	}
	d := decode(f, doc)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			if !strings.Contains(err.Error(), "column ") {
				t.Fatalf("Parse(%q) error %q names no column", s, err)
			}
			return
		}
		p2, err := Parse(p.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, p.String(), err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("Parse(String()) = %+v, want %+v", p2, p)
		}
		p.Lookup(d) // must not panic
	})
}
