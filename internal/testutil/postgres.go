// Package testutil starts the real things tests need: throwaway PostgreSQL clusters on free
// ports. Nothing here touches a server the machine already runs.
package testutil

import (
	"context"
	"os"
	"testing"

	"teal.dev/teal/internal/pgcluster"
)

// Cluster is a throwaway PostgreSQL cluster: initdb into a temporary directory, started on a
// free loopback port with trust authentication and wal_level=logical, stopped and removed when
// the test ends.
type Cluster struct {
	*pgcluster.Cluster
}

// ClusterOptions tune a cluster; the zero value is a good default.
type ClusterOptions struct {
	// Settings are extra `-c name=value` server settings.
	Settings map[string]string
}

// StartCluster starts a new cluster for t.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	// Not t.TempDir: when root runs the tests, the postgres user must reach the directory.
	dir, err := os.MkdirTemp("", "teal-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c, err := pgcluster.Start(context.Background(), dir, pgcluster.Options{Settings: o.Settings})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Logf("%v", err)
		}
	})
	return &Cluster{c}
}

// Psql runs SQL with psql against db and returns its output; it fails the test on error.
func (c *Cluster) Psql(t testing.TB, db, sql string) string {
	t.Helper()
	out, err := c.Cluster.Psql(context.Background(), db, sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
