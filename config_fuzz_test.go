package teal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseConfig checks that no input makes ParseConfig panic, that every failure is a
// ConfigErrors naming the file, and that every config it accepts stays valid.
func FuzzParseConfig(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	for _, s := range []string{
		"",
		"app: shop\nlisten: ${LISTEN}\n",
		"app: ${APP}\nrun: {env: {A: '$$${APP}$'}}\n",
		"app: shop\nrun: {command: ['{artifact}', '{port', '${X']}\n",
		"a: &a [*a]\n",
		"base: &b {instances: 1}\nrun:\n  <<: *b\n",
		"app: shop\napp: shop\n",
		"? [a]\n: 1\n",
		"- 1\n- 2\n",
		"app: shop\n---\napp: x\n",
		"app: shop\ndatabase: {mode: clone, production: '${PROD}'}\n",
		"app: shop\ndatabase: {production: 'postgres://u:pw@db:99999/x', preproduction: 'host=db password=pw port=x'}\n",
		"app: shop\ndatabase: {name_template: '{app}_{colour}', max_lag: 16MiB, freeze_timeout: 6m, reverse_sync: yes}\n",
		"app: shop\ndatabase:\n  mode: snapshot\n  engine: mysql\n  migrations: '{artifact}/m'\n  verify: none\n  keep_old_database: 0s\n  clone_strategy: dump\n",
	} {
		f.Add(s)
	}
	lookup := configEnv(map[string]string{"APP": "shop", "LISTEN": "127.0.0.1:0", "EMPTY": "", "PROD": "postgres://teal:pw@127.0.0.1:5432/shop"})
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := ParseConfig(strings.NewReader(src), "teal.yaml", lookup)
		if err == nil {
			// What ParseConfig accepts, Validate accepts too, and normalising is idempotent.
			again := cfg
			if verr := again.Validate(); verr != nil {
				t.Fatalf("ParseConfig accepted %q but Validate says:\n%v", src, verr)
			}
			if again.Run.StopSignal != cfg.Run.StopSignal || again.Preview != cfg.Preview {
				t.Fatalf("Validate changed an accepted config: %+v to %+v", cfg, again)
			}
			return
		}
		var errs ConfigErrors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("ParseConfig(%q) error is %T %v, want a non-empty ConfigErrors", src, err, err)
		}
		for _, e := range errs {
			if e.File != "teal.yaml" || e.Msg == "" {
				t.Fatalf("ParseConfig(%q): error %#v lacks its file or message", src, e)
			}
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("errors.Is(%v, ErrInvalid) = false, want true", err)
		}
	})
}
