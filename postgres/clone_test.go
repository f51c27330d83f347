package postgres

import (
	"slices"
	"strings"
	"testing"

	"teal.dev/teal"
)

func TestCloneStrategy(t *testing.T) {
	tests := []struct {
		strategy string
		size     int64
		want     string
		ok       bool
	}{
		{"", 10 << 20, StrategySubscription, true},
		{StrategyAuto, DumpThreshold, StrategySubscription, true},
		{StrategyAuto, DumpThreshold + 1, StrategyDump, true},
		{StrategySubscription, 5 << 30, StrategySubscription, true},
		{StrategyDump, 1, StrategyDump, true},
		{"rsync", 1, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.strategy, func(t *testing.T) {
			got, err := cloneStrategy(tt.strategy, tt.size)
			if got != tt.want || (err == nil) != tt.ok {
				t.Fatalf("cloneStrategy(%q, %d) = %q, %v; want %q, ok %v", tt.strategy, tt.size, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestDatabase_ToolEnv(t *testing.T) {
	tests := []struct {
		name, dsn string
		want      []string
	}{
		{"password in the environment", "postgres://admin:s3cret@db.example:6432/shop?sslmode=disable",
			[]string{"PGHOST=db.example", "PGPORT=6432", "PGUSER=admin", "PGPASSWORD=s3cret", "PGSSLMODE=disable"}},
		{"TLS settings from the DSN", "postgres://admin@db.example/shop?sslmode=verify-full",
			[]string{"PGSSLMODE=verify-full"}},
		{"key=value DSN", "host=db.example user=admin dbname=shop sslmode=require",
			[]string{"PGHOST=db.example", "PGSSLMODE=require"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDatabase("shop", teal.DatabaseConfig{Production: tt.dsn, NameTemplate: teal.DefaultNameTemplate}, t.TempDir())
			if err := d.Open(t.Context()); err != nil {
				t.Fatal(err)
			}
			env := d.toolEnv(d.prod)
			for _, w := range tt.want {
				if !slices.Contains(env, w) {
					t.Errorf("toolEnv = %q, want %q in it", env, w)
				}
			}
		})
	}
}

func TestLibpqQuote(t *testing.T) {
	tests := map[string]string{
		"shop":       `dbname='shop'`,
		"it's":       `dbname='it\'s'`,
		`back\slash`: `dbname='back\\slash'`,
		"a b=c":      `dbname='a b=c'`,
	}
	for in, want := range tests {
		if got := libpqQuote("dbname", in); got != want {
			t.Errorf("libpqQuote(%q) = %s, want %s", in, got, want)
		}
		if strings.Count(want, "'")-strings.Count(want, `\'`) != 2 {
			t.Fatalf("test case %q is not a single quoted value", want)
		}
	}
}
