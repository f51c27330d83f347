package migrate

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// colType is a column type reduced to what the widening rules compare: a canonical name
// ("int4", "varchar"), its modifiers (length, precision and scale), and whether it is an array.
type colType struct {
	name  string
	mods  []int32
	array bool
}

// aliases maps the parser's and format_type's type names to one canonical name.
var aliases = map[string]string{
	"smallint": "int2", "int2": "int2",
	"integer": "int4", "int": "int4", "int4": "int4",
	"bigint": "int8", "int8": "int8",
	"real": "float4", "float4": "float4",
	"double precision": "float8", "float8": "float8", "float": "float8",
	"numeric": "numeric", "decimal": "numeric",
	"varchar": "varchar", "character varying": "varchar",
	"bpchar": "bpchar", "char": "bpchar", "character": "bpchar",
	"bool": "bool", "boolean": "bool",
	"timestamp": "timestamp", "timestamp without time zone": "timestamp",
	"timestamptz": "timestamptz", "timestamp with time zone": "timestamptz",
	"time": "time", "time without time zone": "time",
	"timetz": "timetz", "time with time zone": "timetz",
}

// typeOf reduces a parsed type name.
func typeOf(tn *pg_query.TypeName) colType {
	if tn == nil {
		return colType{}
	}
	var names []string
	for _, n := range tn.Names {
		names = append(names, n.GetString_().GetSval())
	}
	if len(names) > 1 && names[0] == "pg_catalog" {
		names = names[1:]
	}
	name := strings.Join(names, ".")
	if a, ok := aliases[name]; ok {
		name = a
	}
	t := colType{name: name, array: len(tn.ArrayBounds) > 0}
	for _, m := range tn.Typmods {
		if k := m.GetAConst(); k != nil && k.GetIval() != nil {
			t.mods = append(t.mods, k.GetIval().Ival)
		} else {
			t.mods = append(t.mods, -1) // not a plain number: compared as different
		}
	}
	return t
}

// parseTypeString reduces a type as format_type writes it ("character varying(20)"), with the
// same parser, so both sides of a comparison are read alike.
func parseTypeString(s string) (colType, bool) {
	tree, err := pg_query.Parse("SELECT NULL::" + s)
	if err != nil || len(tree.Stmts) != 1 {
		return colType{}, false
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 {
		return colType{}, false
	}
	cast := sel.TargetList[0].GetResTarget().GetVal().GetTypeCast()
	if cast == nil {
		return colType{}, false
	}
	return typeOf(cast.TypeName), true
}

// String writes the type back, for messages: varchar(20), int8[].
func (t colType) String() string {
	s := t.name
	if len(t.mods) > 0 {
		parts := make([]string, len(t.mods))
		for i, m := range t.mods {
			parts[i] = fmt.Sprint(m)
		}
		s += "(" + strings.Join(parts, ",") + ")"
	}
	if t.array {
		s += "[]"
	}
	return s
}

// typeChange is how a column type change relates the new type to the old.
type typeChange int

const (
	sameType     typeChange = iota
	widening                // every old value fits the new type
	narrowing               // the same family, but some old values may not fit
	incompatible            // another family
)

// intDigits is how many decimal digits an integer type needs.
var intDigits = map[string]int32{"int2": 5, "int4": 10, "int8": 19}

// intRank orders the integer types by width.
var intRank = map[string]int{"int2": 1, "int4": 2, "int8": 3}

// stringType reports whether name is one of the character string types.
func stringType(name string) bool { return name == "varchar" || name == "bpchar" || name == "text" }

// compareTypes says how changing a column from one type to another affects values arriving
// from a database where it still has the old type.
func compareTypes(from, to colType) typeChange {
	if from.array != to.array {
		return incompatible
	}
	if from.name == to.name && equalMods(from.mods, to.mods) {
		return sameType
	}
	_, fromInt := intRank[from.name]
	_, toInt := intRank[to.name]
	numeric := func(n string) bool { _, i := intRank[n]; return i || n == "numeric" || n == "float4" || n == "float8" }
	switch {
	case fromInt && toInt:
		if intRank[to.name] > intRank[from.name] {
			return widening
		}
		return narrowing
	case fromInt && to.name == "numeric":
		if len(to.mods) == 0 {
			return widening
		}
		p, s := precision(to.mods)
		if p-s >= intDigits[from.name] {
			return widening
		}
		return narrowing
	case from.name == "numeric" && to.name == "numeric":
		if len(to.mods) == 0 {
			return widening
		}
		if len(from.mods) == 0 {
			return narrowing
		}
		p1, s1 := precision(from.mods)
		p2, s2 := precision(to.mods)
		if p2-s2 >= p1-s1 && s2 >= s1 {
			return widening
		}
		return narrowing
	case from.name == "float4" && to.name == "float8":
		return widening
	case numeric(from.name) && numeric(to.name):
		return narrowing
	case stringType(from.name) && stringType(to.name):
		return compareStrings(from, to)
	default:
		return incompatible
	}
}

// compareStrings compares two character string types.
func compareStrings(from, to colType) typeChange {
	unbounded := func(t colType) bool { return t.name == "text" || (t.name == "varchar" && len(t.mods) == 0) }
	switch {
	case from.name == "bpchar" && to.name == "bpchar":
		if len(from.mods) == 1 && len(to.mods) == 1 && to.mods[0] >= from.mods[0] {
			return widening
		}
		return narrowing
	case from.name == "bpchar" || to.name == "bpchar":
		return narrowing // blank-padding semantics differ
	case unbounded(to):
		return widening
	case unbounded(from):
		return narrowing
	case to.mods[0] >= from.mods[0]:
		return widening
	default:
		return narrowing
	}
}

// precision returns a numeric's precision and scale (scale 0 when not given).
func precision(mods []int32) (p, s int32) {
	p = mods[0]
	if len(mods) > 1 {
		s = mods[1]
	}
	return p, s
}

func equalMods(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
