package teal

import (
	"strings"
	"testing"
)

func TestParseConfig_Database(t *testing.T) {
	tests := []struct {
		name string
		src  string
		vars map[string]string
		want func(*DatabaseConfig) // applied to the defaults
	}{
		{"absent", "", nil, func(*DatabaseConfig) {}},
		{"clone with a URL", "database: {mode: clone, production: 'postgres://teal:pw@db:5432/shop'}", nil, func(d *DatabaseConfig) {
			d.Mode, d.Production = "clone", "postgres://teal:pw@db:5432/shop"
		}},
		{"clone with key=value pairs", "database: {mode: clone, production: 'host=db port=5432 dbname=shop user=teal'}", nil, func(d *DatabaseConfig) {
			d.Mode, d.Production = "clone", "host=db port=5432 dbname=shop user=teal"
		}},
		{"from the environment", "database:\n  mode: clone\n  production: ${PROD}\n  preproduction: ${PRE}\n",
			map[string]string{"PROD": "postgres://db/shop", "PRE": "postgres://pre:5433/postgres"}, func(d *DatabaseConfig) {
				d.Mode, d.Production, d.Preproduction = "clone", "postgres://db/shop", "postgres://pre:5433/postgres"
			}},
		{"preproduction names no database", "database: {mode: clone, production: 'postgres://db/shop', preproduction: 'postgres://pre'}", nil, func(d *DatabaseConfig) {
			d.Mode, d.Production, d.Preproduction = "clone", "postgres://db/shop", "postgres://pre"
		}},
		{"mode none validates but needs no production", "database: {mode: none, verify: none, max_lag: 1GB}", nil, func(d *DatabaseConfig) {
			d.Verify, d.MaxLag = "none", 1<<30
		}},
		{"template and plain migrations path", "database: {name_template: 'x_{version}_{color}', migrations: db/migrations}", nil, func(d *DatabaseConfig) {
			d.NameTemplate, d.Migrations = "x_{version}_{color}", "db/migrations"
		}},
		{"max_lag plain bytes", "database: {max_lag: 1048576}", nil, func(d *DatabaseConfig) { d.MaxLag = 1 << 20 }},
		{"max_lag kB and space", "database: {max_lag: 512 kB}", nil, func(d *DatabaseConfig) { d.MaxLag = 512 << 10 }},
		{"freeze_timeout at its bound", "database: {freeze_timeout: 5m}", nil, func(d *DatabaseConfig) { d.FreezeTimeout = MaxFreezeTimeout }},
		{"reverse_sync False", "database: {reverse_sync: False}", nil, func(d *DatabaseConfig) { d.ReverseSync = false }},
		{"reverse_sync quoted true", "database: {reverse_sync: 'true'}", nil, func(*DatabaseConfig) {}},
		{"keep_old_database zero", "database: {keep_old_database: 0s}", nil, func(d *DatabaseConfig) { d.KeepOldDatabase = 0 }},
		{"clone_strategy subscription", "database: {clone_strategy: subscription}", nil, func(d *DatabaseConfig) { d.CloneStrategy = "subscription" }},
		{"nulls keep defaults", "database:\n  mode:\n  max_lag: ~\n", nil, func(*DatabaseConfig) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParseConfig(t, "app: shop\n"+tt.src+"\n", tt.vars)
			want := DefaultConfig().Database
			tt.want(&want)
			if cfg.Database != want {
				t.Fatalf("Database =\n%+v\nwant\n%+v", cfg.Database, want)
			}
		})
	}
}

// TestParseConfig_DatabasePasswords checks that no error about a DSN shows its password,
// whatever is wrong with it and wherever it was written.
func TestParseConfig_DatabasePasswords(t *testing.T) {
	const pw = "hunter2"
	vars := map[string]string{
		"BAD_URL": "postgres://shop:" + pw + "@db:99999/shop",
		"NO_DB":   "postgres://shop:" + pw + "@db:5432",
		"KV":      "host=db password=" + pw + " port=x",
	}
	tests := []struct {
		name string
		src  string
		key  string
		want string // in the message
	}{
		{"inline URL", "production: 'postgres://shop:" + pw + "@db:99999/shop'", "production", `"postgres://shop:xxxxx@db:99999/shop": not a PostgreSQL connection string (invalid port)`},
		{"inline URL without a database", "production: 'postgres://shop:" + pw + "@db:5432'", "production", "names no database"},
		{"URL from the environment", "production: ${BAD_URL}", "production", `"${BAD_URL}": not a PostgreSQL`},
		{"no database, from the environment", "production: ${NO_DB}", "production", `"${NO_DB}": names no database`},
		{"key=value from the environment", "preproduction: ${KV}", "preproduction", `"${KV}": not a PostgreSQL`},
		{"key=value", "preproduction: 'host=db password=" + pw + " port=x'", "preproduction", `password=xxxxx port=x`},
		{"key=value quoted", `preproduction: "host=db password='` + pw + ` x' port=x"`, "preproduction", `password='xxxxx' port=x`},
		{"key=value spaced", "preproduction: 'host=db password = " + pw + " port=x'", "preproduction", "invalid port"},
		{"password with / and @", "production: 'postgres://shop:" + pw + "/x@y@db:99999/shop'", "production", "postgres://shop:xxxxx@db:99999/shop"},
		{"password in the query", "production: 'postgres://shop@db:99999/shop?password=" + pw + "'", "production", "?password=xxxxx"},
		{"sslpassword", "production: 'postgres://shop@db/shop?sslmode=bogus&sslpassword=" + pw + "'", "production", "sslpassword=xxxxx"},
		{"bad URL syntax", "production: 'postgres://sh op:" + pw + "@db/shop'", "production", "failed to parse as URL"},
		{"unset variable", "production: 'postgres://shop:" + pw + "@db/${NOPE}'", "production", "environment variable NOPE is not set"},
		{"a list", "production: ['postgres://shop:" + pw + "@db/shop']", "production", "want a connection string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseConfigErrors(t, "app: shop\ndatabase:\n  "+tt.src+"\n", vars)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			if want := "database." + tt.key; errs[0].Key != want {
				t.Fatalf("Key = %q, want %q (%v)", errs[0].Key, want, errs[0])
			}
			msg := errs[0].Error()
			if strings.Contains(msg, pw) {
				t.Fatalf("error = %q, shows the password", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("error = %q, want it to contain %q", msg, tt.want)
			}
		})
	}
	t.Run("Validate", func(t *testing.T) {
		c := DefaultConfig()
		c.App = "shop"
		c.Database.Mode = "clone"
		c.Database.Production = "postgres://shop:" + pw + "@db:99999/shop"
		c.Database.Preproduction = "host=db password=" + pw + " port=x"
		err := c.Validate()
		if err == nil || strings.Contains(err.Error(), pw) {
			t.Fatalf("Validate() = %v, want errors without the password", err)
		}
		if got := strings.Count(err.Error(), "not a PostgreSQL connection string"); got != 2 {
			t.Fatalf("Validate() = %v, want 2 connection string errors", err)
		}
	})
}

func TestRedactDSN(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{"URL", "postgres://shop:pw@db:5432/shop", "postgres://shop:xxxxx@db:5432/shop"},
		{"URL without password", "postgres://shop@db:5432/shop", "postgres://shop@db:5432/shop"},
		{"URL without user", "postgresql://db/shop?sslmode=disable", "postgresql://db/shop?sslmode=disable"},
		{"URL empty password", "postgres://shop:@db/shop", "postgres://shop:@db/shop"},
		{"URL password with @ and /", "postgres://shop:a@b/c@db/shop", "postgres://shop:xxxxx@db/shop"},
		{"query password", "postgres://db/shop?user=u&password=pw&sslmode=disable", "postgres://db/shop?user=u&password=xxxxx&sslmode=disable"},
		{"key=value", "host=db password=pw dbname=shop", "host=db password=xxxxx dbname=shop"},
		{"key=value quoted with escapes", `host=db password='p\'w x' dbname=shop`, `host=db password='xxxxx' dbname=shop`},
		{"key=value spaced", "password = pw host=db", "password = xxxxx host=db"},
		{"key=value upper case", "PASSWORD=pw", "PASSWORD=xxxxx"},
		{"sslpassword", "host=db sslpassword=pw", "host=db sslpassword=xxxxx"},
		// libpq skips spaces after =, so the password is the next word.
		{"space after =", "host=db password= dbname=shop", "host=db password= xxxxx"},
		{"empty value at the end", "host=db password=", "host=db password="},
		{"unterminated quote", "password='pw", "password='xxxxx"},
		{"a variable", "${PROD_DATABASE_URL}", "${PROD_DATABASE_URL}"},
		{"nothing", "", ""},
		{"invalid UTF-8", "\xb6\xb6 PassWord=pw x", "\xb6\xb6 PassWord=xxxxx x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactDSN(tt.dsn); got != tt.want {
				t.Fatalf("RedactDSN(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  string
	}{
		{"16MB", 16 << 20, ""},
		{"512kB", 512 << 10, ""},
		{"512KB", 512 << 10, ""},
		{"1GB", 1 << 30, ""},
		{"2TB", 2 << 40, ""},
		{"1048576", 1 << 20, ""},
		{"100B", 100, ""},
		{"0", 0, ""},
		{"16 MB", 16 << 20, ""},
		{"8388607TB", 8388607 << 40, ""},
		{"8388608TB", 0, "out of range"},
		{"99999999999999999999", 0, "out of range"},
		{"", 0, "not a size"},
		{"MB", 0, "not a size"},
		{"-1", 0, "not a size"},
		{"1.5GB", 0, "whole number"},
		{"16MiB", 0, `unit "MiB"`},
		{"16mb", 0, "case-sensitive"},
		{"16 M B", 0, `unit "M B"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseByteSize(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestByteSize_String(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{DefaultMaxLag, "16MB"},
		{512 << 10, "512kB"},
		{1 << 30, "1GB"},
		{3 << 40, "3TB"},
		{1536 << 20, "1536MB"},
		{1000, "1000B"},
		{1025, "1025B"},
		{0, "0B"},
		{-2048, "-2kB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Fatalf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
			}
		})
	}
}

// FuzzParseByteSize checks that every size parsed is not negative and prints back to itself.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"16MB", "512kB", "1GB", "1048576", "0", "16 MB", "1.5GB", "-1", "8388608TB", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, b)
		}
		again, err := ParseByteSize(b.String())
		if err != nil || again != b {
			t.Fatalf("ParseByteSize(%q) = %d, but its String %q reads back as %d, %v", s, b, b.String(), again, err)
		}
	})
}

// FuzzDSNPassword checks that a password put anywhere a DSN holds one never shows in the
// error a bad DSN gets.
func FuzzDSNPassword(f *testing.F) {
	for _, s := range [][2]string{
		{"postgres://shop:", "@db:99999/shop"},
		{"postgres://shop:", "@db/shop?sslmode=bogus"},
		{"postgres://shop@db/shop?password=", "&port=x"},
		{"host=db port=x password=", " dbname=shop"},
		{"host=db port=x password='", "' dbname=shop"},
		{"postgres://sh op:", "@db/x"},
		{"\xb6\xb6pAssword", "0"}, // invalid UTF-8 before the key
	} {
		f.Add(s[0], s[1])
	}
	const pw = "Zq9hunter2"
	f.Fuzz(func(t *testing.T, before, after string) {
		if strings.Contains(before+after, pw[:4]) {
			return
		}
		dsn := before + pw + after
		covered := false
		for _, sp := range passwordSpans(dsn) {
			covered = covered || (sp[0] <= len(before) && len(before)+len(pw) <= sp[1])
		}
		if !covered {
			return // not where a DSN holds a password
		}
		c := DefaultConfig()
		c.App = "shop"
		c.Database.Production = dsn
		c.Database.Preproduction = dsn
		err := c.Validate()
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Fatalf("Validate with DSN %q: %v; shows the password", dsn, err)
		}
	})
}

func TestParseConfig_DatabaseErrorOrder(t *testing.T) {
	// A required key that is missing is reported on its section's line, among the section's
	// other problems.
	errs := parseConfigErrors(t, "app: shop\ndatabase:\n  verify: x\n  mode: clone\nrelease: {keep_old: -1s}\n", nil)
	var keys []string
	for _, e := range errs {
		keys = append(keys, e.Key)
	}
	want := "database.production database.verify release.keep_old"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("error keys = %s, want %s", got, want)
	}
}
