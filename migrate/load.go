package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// AfterCutoverMark is the comment line that holds a whole migration file back until the old
// colour is gone, whatever its statements are: the way to ship a change the classifier calls
// "breaks replication" (a UNIQUE index on an existing table, say) once nothing replicates
// into the database any more.
const AfterCutoverMark = "-- teal:after-cutover"

// fileName is NNNN_name.sql: a positive version, an underscore, a name.
var fileName = regexp.MustCompile(`^([0-9]+)_([^/\\]+)\.sql$`)

// Load reads the migrations of dir, in version order. Files are NNNN_name.sql with goose
// annotations (-- +goose Up, -- +goose Down, StatementBegin/StatementEnd, NO TRANSACTION); other
// files are ignored. A missing directory means no migrations. Each file's Up section is split
// into statements with the PostgreSQL parser and classified on its own (Plan classifies the
// pending files again, as one set, against the database's schema).
func Load(dir string) ([]Migration, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var migs []Migration
	byVersion := make(map[int64]string)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		m, err := parseFile(e.Name(), data)
		if err != nil {
			return nil, err
		}
		m.Path = path
		if other, ok := byVersion[m.Version]; ok {
			return nil, fmt.Errorf("migrations %s and %s: duplicate version %d", other, m.Name, m.Version)
		}
		byVersion[m.Version] = m.Name
		migs = append(migs, m)
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].Version < migs[j].Version })
	return migs, nil
}

// parseFile parses one migration file's name and content; errors name the file.
func parseFile(name string, data []byte) (Migration, error) {
	match := fileName.FindStringSubmatch(name)
	if match == nil {
		return Migration{}, fmt.Errorf("migration %s: name is not NNNN_name.sql", name)
	}
	version, err := strconv.ParseInt(match[1], 10, 64)
	if err != nil || version < 1 {
		return Migration{}, fmt.Errorf("migration %s: version %q is not a number from 1 up", name, match[1])
	}
	sum := sha256.Sum256(data)
	m := Migration{Version: version, Name: name, SHA256: hex.EncodeToString(sum[:])}
	up, noTx, after, err := sections(string(data))
	if err != nil {
		return Migration{}, fmt.Errorf("migration %s: %w", name, err)
	}
	m.Up, m.NoTransaction, m.AfterCutover = up, noTx, after
	stmts, err := Classify(up)
	if err != nil {
		return Migration{}, fmt.Errorf("migration %s: %w", name, err)
	}
	m.setStatements(stmts)
	return m, nil
}

// sections extracts the Up section of a goose-annotated file (annotation lines removed, line
// numbers kept so that parser errors point at the right line), whether it is marked NO
// TRANSACTION, and whether it carries AfterCutoverMark. Annotations follow goose: case-insensitive,
// Up first and once, Down after it, StatementBegin/StatementEnd paired. Statements are split by
// the PostgreSQL parser, so StatementBegin/End are accepted but not needed.
func sections(text string) (up string, noTx, afterCutover bool, err error) {
	const (
		start = iota
		inUp
		inDown
	)
	state, inBlock := start, false
	var b strings.Builder
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.EqualFold(trimmed, AfterCutoverMark) {
			afterCutover = true
		}
		cmd, isAnnotation := annotation(trimmed)
		switch {
		case !isAnnotation && state == start:
			if trimmed != "" && !strings.HasPrefix(trimmed, "--") {
				return "", false, false, fmt.Errorf("line %d: SQL before '-- +goose Up'", i+1)
			}
		case !isAnnotation && state == inUp:
			b.WriteString(line)
		case !isAnnotation:
			// the Down section: teal never migrates down
		default:
			switch strings.ToLower(cmd) {
			case "up":
				if state != start {
					return "", false, false, fmt.Errorf("line %d: duplicate '-- +goose Up'", i+1)
				}
				state = inUp
			case "down":
				if state != inUp {
					return "", false, false, fmt.Errorf("line %d: '-- +goose Down' before '-- +goose Up' or twice", i+1)
				}
				if inBlock {
					return "", false, false, fmt.Errorf("line %d: '-- +goose Down' inside StatementBegin/StatementEnd", i+1)
				}
				state = inDown
			case "statementbegin":
				if state == start {
					return "", false, false, fmt.Errorf("line %d: '-- +goose StatementBegin' before '-- +goose Up'", i+1)
				}
				if inBlock {
					return "", false, false, fmt.Errorf("line %d: nested '-- +goose StatementBegin'", i+1)
				}
				inBlock = true
			case "statementend":
				if !inBlock {
					return "", false, false, fmt.Errorf("line %d: '-- +goose StatementEnd' without StatementBegin", i+1)
				}
				inBlock = false
			case "no transaction":
				noTx = true
			case "envsub on", "envsub off":
				return "", false, false, fmt.Errorf("line %d: '-- +goose %s' is not supported: a migration runs the SQL that was reviewed", i+1, cmd)
			default:
				return "", false, false, fmt.Errorf("line %d: unknown annotation '-- +goose %s'", i+1, cmd)
			}
		}
		if state != inDown {
			b.WriteByte('\n') // lines before and inside Up keep their numbers, for parser errors
		}
	}
	if state == start {
		return "", false, false, errors.New("no '-- +goose Up' section")
	}
	if inBlock {
		return "", false, false, errors.New("'-- +goose StatementBegin' without StatementEnd")
	}
	return strings.TrimRight(b.String(), "\n"), noTx, afterCutover, nil
}

// annotation returns the command of a "-- +goose CMD" line.
func annotation(trimmed string) (string, bool) {
	rest, ok := strings.CutPrefix(trimmed, "--")
	if !ok {
		return "", false
	}
	rest, ok = strings.CutPrefix(strings.TrimSpace(rest), "+goose")
	if !ok {
		return "", false
	}
	return strings.Join(strings.Fields(rest), " "), true
}
