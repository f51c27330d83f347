package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles writes name → content into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoad_Files(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"0002_index.sql": "-- +goose Up\n-- +goose NO TRANSACTION\nCREATE INDEX CONCURRENTLY i ON a (id);\n",
		"0001_create.sql": `-- the first one
-- +goose Up
-- +goose StatementBegin
CREATE TABLE a (id int PRIMARY KEY);
CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END; $$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE a;
`,
		"0010_drop.sql": "-- +goose Up\n" + AfterCutoverMark + "\nCREATE UNIQUE INDEX u ON old (x);\n",
		"README.md":     "not a migration",
	})
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	migs, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(migs) != 3 {
		t.Fatalf("migrations = %d, want 3", len(migs))
	}
	first, second, third := migs[0], migs[1], migs[2]
	if first.Version != 1 || first.Name != "0001_create.sql" || first.Path != filepath.Join(dir, "0001_create.sql") {
		t.Fatalf("first = %d %q %q", first.Version, first.Name, first.Path)
	}
	if len(first.SHA256) != 64 || first.NoTransaction {
		t.Fatalf("first sha256 = %q, no transaction = %v", first.SHA256, first.NoTransaction)
	}
	if len(first.Statements) != 2 || strings.Contains(first.Up, "DROP TABLE") {
		t.Fatalf("first statements = %d, up = %q: want 2 and no Down section", len(first.Statements), first.Up)
	}
	if first.Label != Safe {
		t.Fatalf("first label = %q, want %q", first.Label, Safe)
	}
	if !second.NoTransaction || second.Version != 2 {
		t.Fatalf("second = version %d, no transaction %v", second.Version, second.NoTransaction)
	}
	if !third.AfterCutover || third.Label != Contract || third.Statements[0].Label != Contract {
		t.Fatalf("third: after cutover %v, label %q, statement %q", third.AfterCutover, third.Label, third.Statements[0].Label)
	}
	if !strings.Contains(third.Statements[0].Reason, "breaks replication") {
		t.Fatalf("third reason = %q, want the classifier's own verdict kept", third.Statements[0].Reason)
	}
}

func TestLoad_MissingDir(t *testing.T) {
	migs, err := Load(filepath.Join(t.TempDir(), "nope"))
	if err != nil || migs != nil {
		t.Fatalf("Load(missing) = %v, %v; want nil, nil", migs, err)
	}
}

func TestLoad_Errors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{"bad name", map[string]string{"create.sql": "-- +goose Up\nSELECT 1;"}, []string{"create.sql", "NNNN_name.sql"}},
		{"version zero", map[string]string{"0_x.sql": "-- +goose Up\nSELECT 1;"}, []string{"0_x.sql", "version"}},
		{"duplicate version", map[string]string{"001_a.sql": "-- +goose Up\nSELECT 1;", "1_b.sql": "-- +goose Up\nSELECT 1;"}, []string{"001_a.sql", "1_b.sql", "duplicate version 1"}},
		{"no up", map[string]string{"0001_a.sql": "SELECT 1;"}, []string{"0001_a.sql", "before '-- +goose Up'"}},
		{"empty file", map[string]string{"0001_a.sql": ""}, []string{"0001_a.sql", "no '-- +goose Up'"}},
		{"down first", map[string]string{"0001_a.sql": "-- +goose Down\nSELECT 1;\n-- +goose Up\nSELECT 2;"}, []string{"0001_a.sql", "Down"}},
		{"two ups", map[string]string{"0001_a.sql": "-- +goose Up\nSELECT 1;\n-- +goose Up\n"}, []string{"0001_a.sql", "duplicate"}},
		{"unclosed block", map[string]string{"0001_a.sql": "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;"}, []string{"0001_a.sql", "StatementEnd"}},
		{"unknown annotation", map[string]string{"0001_a.sql": "-- +goose Up\n-- +goose Sideways\n"}, []string{"0001_a.sql", "Sideways"}},
		{"envsub", map[string]string{"0001_a.sql": "-- +goose Up\n-- +goose ENVSUB ON\n"}, []string{"0001_a.sql", "not supported"}},
		{"bad sql", map[string]string{"0001_a.sql": "-- +goose Up\nSELECT 1;\nCREAT TABLE x ();\n"}, []string{"0001_a.sql", "statement 2", "line 3", "CREAT TABLE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"-- +goose Up\nCREATE TABLE a (id int PRIMARY KEY);\n-- +goose Down\nDROP TABLE a;\n",
		"-- +goose Up\n-- +goose NO TRANSACTION\nCREATE INDEX CONCURRENTLY i ON a (id);",
		"-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n-- +goose StatementEnd\n",
		"-- +goose Up\n" + AfterCutoverMark + "\nALTER TABLE a DROP COLUMN b;",
		"-- +goose Down\n",
		"",
	} {
		f.Add("0001_x.sql", s)
	}
	f.Add("x.sql", "-- +goose Up\n")
	f.Fuzz(func(t *testing.T, name, content string) {
		m, err := parseFile(name, []byte(content))
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error %q does not name the file %q", err, name)
			}
			return
		}
		if m.Version < 1 || m.Name != name || len(m.SHA256) != 64 {
			t.Fatalf("parsed %q: version %d, name %q, sha256 %q", name, m.Version, m.Name, m.SHA256)
		}
		worst := Safe
		for _, s := range m.Statements {
			if s.Label.rank() > worst.rank() {
				worst = s.Label
			}
		}
		if m.Label != worst {
			t.Fatalf("label %q, most severe statement %q", m.Label, worst)
		}
		if m.AfterCutover && len(m.Statements) > 0 && m.Label != Contract {
			t.Fatalf("marked after cutover, label %q", m.Label)
		}
	})
}
