package teal

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// HAProxyConfig is router: haproxy — a running HAProxy driven through its Runtime API.
type HAProxyConfig struct {
	// Socket is the Runtime API: a unix socket path (/run/haproxy/admin.sock) or
	// ipv4@host:port / host:port for a TCP stats socket. Required with router: haproxy.
	Socket string `yaml:"socket"`
	// Backend is the HAProxy backend whose servers teal fills: servers named {color}{n}
	// (blue1, blue2, …, green1, …), pre-declared in haproxy.cfg. Required.
	Backend string `yaml:"backend"`
}

// fleetSchema adds the keys of the exec provider and the HAProxy router.
func (d *decoder) fleetSchema(c *Config, section func(string) func(*yaml.Node, string)) {
	d.schema[""] = append(d.schema[""], field{"haproxy", section("haproxy")})
	d.schema["run"] = append(d.schema["run"],
		field{"launch", d.list(&c.Run.Launch)},
		field{"terminate", d.list(&c.Run.Terminate)},
	)
	d.schema["haproxy"] = []field{
		{"socket", d.str(&c.HAProxy.Socket)},
		{"backend", d.str(&c.HAProxy.Backend)},
	}
}

// launchPlaceholders are those of run.launch and run.terminate.
func launchPlaceholders() []string {
	return []string{"color", "version", "digest", "artifact", "instances", "app"}
}

// validateFleet checks provider: exec's hooks and router: haproxy's section.
func (c *Config) validateFleet(v *validator) {
	r := &c.Run
	if c.Provider == "exec" {
		if len(r.Launch) == 0 || r.Launch[0] == "" {
			v.add("run.launch", "", `required with provider: exec: the command that creates a colour's instances and prints their addresses as JSON, like ["./launch.sh", "{color}", "{version}", "{artifact}"]`)
		}
		if len(r.Terminate) == 0 || r.Terminate[0] == "" {
			v.add("run.terminate", "", `required with provider: exec: the command that removes a colour's instances, like ["./terminate.sh", "{color}", "{version}"]`)
		}
	} else {
		if r.Launch != nil {
			v.add("run.launch", "", "only used with provider: exec; remove it or set provider: exec")
		}
		if r.Terminate != nil {
			v.add("run.terminate", "", "only used with provider: exec; remove it or set provider: exec")
		}
	}
	for i, a := range r.Launch {
		checkPlaceholders(v, fmt.Sprintf("run.launch[%d]", i), a, a, launchPlaceholders()...)
	}
	for i, a := range r.Terminate {
		checkPlaceholders(v, fmt.Sprintf("run.terminate[%d]", i), a, a, launchPlaceholders()...)
	}

	h := c.HAProxy
	if c.Router == "haproxy" {
		if h.Socket == "" {
			v.add("haproxy.socket", "", "required with router: haproxy: the Runtime API socket, like /run/haproxy/admin.sock (stats socket ... level admin in haproxy.cfg)")
		}
		if h.Backend == "" {
			v.add("haproxy.backend", "", "required with router: haproxy: the backend whose servers blue1…, green1… teal fills")
		} else if strings.ContainsAny(h.Backend, " \t/") {
			v.add("haproxy.backend", h.Backend, "not a backend name (no spaces or /)")
		}
		if c.Verify.Shadow.Enabled() {
			v.add("verify.shadow", "", "needs router: builtin: the built-in router mirrors the requests it forwards, and behind HAProxy it forwards none")
		}
	} else if h.Socket != "" || h.Backend != "" {
		v.add("haproxy", "", "only used with router: haproxy; remove it or set router: haproxy")
	}
}
