package teal

import (
	"reflect"
	"testing"
)

func TestParseConfig_Fleet(t *testing.T) {
	cfg := mustParseConfig(t, `app: shop
provider: exec
router: haproxy
run:
  launch: ["./launch.sh", "{color}", "{version}", "{artifact}", "{instances}"]
  terminate: ["./terminate.sh", "{color}"]
haproxy:
  socket: /run/haproxy/admin.sock
  backend: shop
`, nil)
	if !reflect.DeepEqual(cfg.Run.Launch, []string{"./launch.sh", "{color}", "{version}", "{artifact}", "{instances}"}) ||
		!reflect.DeepEqual(cfg.Run.Terminate, []string{"./terminate.sh", "{color}"}) {
		t.Errorf("run.launch %q, run.terminate %q", cfg.Run.Launch, cfg.Run.Terminate)
	}
	if cfg.HAProxy != (HAProxyConfig{Socket: "/run/haproxy/admin.sock", Backend: "shop"}) {
		t.Errorf("haproxy = %+v", cfg.HAProxy)
	}
}

func TestParseConfig_FleetErrors(t *testing.T) {
	checkOneConfigError(t, []configErrorCase{
		{"exec without terminate", "provider: exec\nrun: {launch: [./l]}", "run.terminate", "required with provider: exec"},
		{"exec without launch", "provider: exec\nrun: {terminate: [./t]}", "run.launch", "required with provider: exec"},
		{"launch with local", "run: {launch: [./l]}", "run.launch", "only used with provider: exec"},
		{"launch placeholder", "provider: exec\nrun: {launch: [./l, '{port}'], terminate: [./t]}", "run.launch[1]", "unknown placeholder {port}"},
		{"haproxy without socket", "router: haproxy\nhaproxy: {backend: shop}", "haproxy.socket", "required with router: haproxy"},
		{"haproxy without backend", "router: haproxy\nhaproxy: {socket: /x.sock}", "haproxy.backend", "required with router: haproxy"},
		{"haproxy section unused", "haproxy: {socket: /x.sock}", "haproxy", "only used with router: haproxy"},
		{"shadow behind haproxy", "router: haproxy\nhaproxy: {socket: /x.sock, backend: b}\nverify: {shadow: {percent: 5}}", "verify.shadow", "needs router: builtin"},
	})
}
