package testutil

import "testing"

func TestStartCluster_LogicalAndReachable(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	if got := c.Psql(t, "postgres", "SHOW wal_level"); got != "logical" {
		t.Fatalf("wal_level = %q, want logical", got)
	}
	c.Psql(t, "postgres", "CREATE DATABASE shop")
	if got := c.Psql(t, "shop", "SELECT current_database()"); got != "shop" {
		t.Fatalf("current_database() = %q, want shop", got)
	}
}

func TestStartCluster_TwoAtOnce(t *testing.T) {
	a := StartCluster(t, ClusterOptions{})
	b := StartCluster(t, ClusterOptions{Settings: map[string]string{"max_connections": "30"}})
	if a.Port == b.Port {
		t.Fatalf("both clusters on port %d", a.Port)
	}
	if got := b.Psql(t, "postgres", "SHOW max_connections"); got != "30" {
		t.Fatalf("max_connections = %q, want 30", got)
	}
}
