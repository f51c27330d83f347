package sessions

import (
	"fmt"
	"os"
	"testing"

	"teal.dev/teal/internal/testutil"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run runs the tests against a throwaway Redis server (testutil.StartRedis).
func run(m *testing.M) int {
	addr, stop, err := testutil.StartRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	redisAddr = addr
	return m.Run()
}
