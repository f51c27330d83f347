package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"strings"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

// client returns an API client of the server, found (spec/cli.md) from --server, then
// $TEAL_SERVER, then the config's admin address; its token from --token, then $TEAL_TOKEN,
// then the config's admin_token_file. The config is read only when it is needed.
func (g *globals) client() (*api.Client, error) {
	server := firstOf(g.server, g.getenv("TEAL_SERVER"))
	token := firstOf(g.token, g.getenv("TEAL_TOKEN"))
	if server == "" || token == "" {
		cfg, err := g.loadConfig()
		if err != nil {
			return nil, &usageError{err: err, hint: "run teal where teal.yaml is, pass -c PATH, or give --server and --token"}
		}
		if server == "" {
			server = adminURL(cfg.Admin)
		}
		if token == "" {
			b, err := os.ReadFile(cfg.AdminTokenFile)
			if err != nil {
				hint := "pass --token or set $TEAL_TOKEN"
				if errors.Is(err, fs.ErrNotExist) {
					hint = "teal server creates it when it first starts; or pass --token or set $TEAL_TOKEN"
				}
				return nil, &exitError{code: exitUnreachable, err: fmt.Errorf("read admin token: %w", err), hint: hint}
			}
			token = strings.TrimSpace(string(b))
		}
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	c := api.NewClient(server, token)
	c.Actor = "cli:" + username(g.getenv)
	return c, nil
}

// loadConfig reads the config named by -c.
func (g *globals) loadConfig() (teal.Config, error) {
	return teal.LoadConfig(g.configPath)
}

// adminURL turns the config's admin listen address into a URL a client can dial: a wildcard
// host (":7070", "0.0.0.0:7070") is reached on the loopback.
func adminURL(admin string) string {
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "http://" + admin
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// username names the person running the CLI, for the actor recorded with what they do.
func username(getenv func(string) string) string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
