package haproxy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"teal.dev/teal"
)

// serversState is show servers state as HAProxy 2.6 answers it: blue1 ready, green1 draining,
// green2 in maintenance as declared (disabled).
const serversState = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 shop 1 blue1 127.0.0.1 2 4 256 1 2 1 0 0 8 0 0 0 - 18091 - 0 0 - - 0
3 shop 4 green1 ::1 2 12 1 1 0 6 3 4 6 0 0 0 - 18092 - 0 0 - - 0
3 shop 5 green2 127.0.0.1 0 5 1 1 8 1 0 0 14 0 0 0 - 1 - 0 0 - - 0
`

func TestParseServersState(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []ServerState
		wantErr string
	}{
		{name: "haproxy 2.6", in: serversState, want: []ServerState{
			{Backend: "shop", ID: 1, Name: "blue1", Addr: "127.0.0.1", Port: 18091, Op: OpRunning, Admin: AdminConfigMaint, Weight: 256},
			{Backend: "shop", ID: 4, Name: "green1", Addr: "::1", Port: 18092, Op: OpRunning, Admin: AdminConfigMaint | AdminForcedDrain, Weight: 1},
			{Backend: "shop", ID: 5, Name: "green2", Addr: "127.0.0.1", Port: 1, Op: OpStopped, Admin: AdminConfigMaint | AdminForcedMaint, Weight: 1},
		}},
		{name: "no servers", in: "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n", want: nil},
		{name: "columns by name", in: "1\n# srv_port srv_name srv_addr srv_op_state srv_admin_state srv_uweight be_name srv_id\n80 blue1 10.0.0.1 2 0 10 web 7\n",
			want: []ServerState{{Backend: "web", ID: 7, Name: "blue1", Addr: "10.0.0.1", Port: 80, Op: OpRunning, Weight: 10}}},
		{name: "an error answer", in: "Can't find backend.", wantErr: "want a version line 1"},
		{name: "missing column", in: "1\n# be_id be_name srv_id srv_name\n", wantErr: "no column srv_addr"},
		{name: "short line", in: "1\n# be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\nshop 1 blue1\n", wantErr: "has 3 fields"},
		{name: "not a number", in: "1\n# be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\nshop 1 blue1 ::1 up 0 1 80\n", wantErr: `srv_op_state "up" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseServersState(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseServersState error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseServersState: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseServersState = %d servers %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("server %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestAdminState_Name(t *testing.T) {
	tests := []struct {
		admin AdminState
		want  string
	}{
		{0, StateReady},
		{AdminConfigMaint, StateReady}, // declared disabled, then set ready: the marker stays
		{AdminConfigMaint | AdminForcedMaint, StateMaint},
		{AdminConfigMaint | AdminForcedDrain, StateDrain},
		{AdminInheritedDrain, StateDrain},
		{AdminResolveMaint | AdminForcedDrain, StateMaint},
		{AdminInheritedMaint, StateMaint},
	}
	for _, tt := range tests {
		if got := tt.admin.Name(); got != tt.want {
			t.Errorf("AdminState(0x%02x).Name() = %s, want %s", int(tt.admin), got, tt.want)
		}
	}
}

// showStat is show stat shop 6 -1 of HAProxy 2.6, cut to a few columns.
const showStat = `# pxname,svname,qcur,scur,stot,econ,eresp,status,weight,hrsp_5xx,req_tot,algo,
shop,blue1,0,3,120,1,2,UP,256,4,100,,
shop,green1,1,0,0,0,0,DRAIN,0,0,0,,
shop,BACKEND,0,3,120,1,2,UP,256,10,110,roundrobin,
`

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Stat
		wantErr string
	}{
		{name: "servers and backend", in: showStat, want: []Stat{
			{Proxy: "shop", Name: "blue1", Status: "UP", Scur: 3, ReqTot: 100, Econ: 1, Eresp: 2, Hrsp5xx: 4, Weight: 256},
			{Proxy: "shop", Name: "green1", Status: "DRAIN", Qcur: 1},
			{Proxy: "shop", Name: "BACKEND", Status: "UP", Algo: "roundrobin", Scur: 3, ReqTot: 110, Econ: 1, Eresp: 2, Hrsp5xx: 10, Weight: 256},
		}},
		{name: "missing columns read as zero", in: "# pxname,svname\nshop,blue1\n", want: []Stat{{Proxy: "shop", Name: "blue1"}}},
		{name: "short row", in: "# pxname,svname,scur\nshop\n", want: []Stat{{Proxy: "shop"}}},
		{name: "header only", in: "# pxname,svname,scur,\n", want: nil},
		{name: "an error answer", in: "No such proxy.", wantErr: "want a CSV header"},
		{name: "no svname", in: "# pxname,scur\nshop,1\n", wantErr: "no column svname"},
		{name: "not a number", in: "# pxname,svname,scur\nshop,blue1,many\n", wantErr: `scur "many" is not a number`},
		{name: "empty header", in: "# ", wantErr: "no header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseStat error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseStat: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseStat = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("row %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestSocketAddr(t *testing.T) {
	tests := []struct {
		in, network, addr string
		bad               bool
	}{
		{in: "/run/haproxy/admin.sock", network: "unix", addr: "/run/haproxy/admin.sock"},
		{in: "unix@/run/haproxy/admin.sock", network: "unix", addr: "/run/haproxy/admin.sock"},
		{in: "admin.sock", network: "unix", addr: "admin.sock"},
		{in: "./admin.sock", network: "unix", addr: "./admin.sock"},
		{in: "ipv4@127.0.0.1:9999", network: "tcp4", addr: "127.0.0.1:9999"},
		{in: "ipv6@[::1]:9999", network: "tcp6", addr: "[::1]:9999"},
		{in: "127.0.0.1:9999", network: "tcp", addr: "127.0.0.1:9999"},
		{in: "lb.internal:9999", network: "tcp", addr: "lb.internal:9999"},
		{in: "", bad: true},
		{in: "ipv4@", bad: true},
		{in: "ipv4@127.0.0.1", bad: true},
		{in: "ipv6@::1", bad: true},
		{in: "unix@", bad: true},
		{in: "/run/a\nb", bad: true},
	}
	for _, tt := range tests {
		network, addr, err := SocketAddr(tt.in)
		if tt.bad {
			if err == nil || !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), "haproxy.socket") {
				t.Errorf("SocketAddr(%q) = %s %s, %v; want an ErrInvalid naming haproxy.socket", tt.in, network, addr, err)
			}
			continue
		}
		if err != nil || network != tt.network || addr != tt.addr {
			t.Errorf("SocketAddr(%q) = %q %q, %v; want %q %q", tt.in, network, addr, err, tt.network, tt.addr)
		}
	}
}

func TestWeight(t *testing.T) {
	tests := []struct{ share, n, want int }{
		{100, 1, 256},
		{100, 2, 128},
		{100, 3, 85},
		{90, 1, 230},
		{10, 1, 26},
		{10, 3, 9},
		{1, 8, 1}, // 0.32 rounds to 0: a colour with a share keeps at least 1
		{50, 2, 64},
		{0, 2, 0},
		{100, 0, 0},
	}
	for _, tt := range tests {
		if got := Weight(tt.share, tt.n); got != tt.want {
			t.Errorf("Weight(%d, %d) = %d, want %d", tt.share, tt.n, got, tt.want)
		}
	}
}

func TestSlotOf(t *testing.T) {
	tests := []struct {
		name string
		c    teal.Color
		n    int
		ok   bool
	}{
		{"blue1", teal.Blue, 1, true},
		{"green12", teal.Green, 12, true},
		{"blue", "", 0, false},
		{"blue0", "", 0, false},
		{"blue-1", "", 0, false},
		{"bluex1", "", 0, false},
		{"maintenance", "", 0, false},
		{"BLUE1", "", 0, false},
	}
	for _, tt := range tests {
		c, n, ok := slotOf(tt.name)
		if c != tt.c || n != tt.n || ok != tt.ok {
			t.Errorf("slotOf(%q) = %q %d %v, want %q %d %v", tt.name, c, n, ok, tt.c, tt.n, tt.ok)
		}
	}
}

func TestInferShares(t *testing.T) {
	srv := func(name string, admin AdminState, w int) ServerState {
		return ServerState{Name: name, Admin: admin, Weight: w}
	}
	tests := []struct {
		name   string
		states []ServerState
		want   [2]int
	}{
		{"nothing ready", []ServerState{srv("blue1", AdminForcedMaint, 1), srv("green1", AdminForcedDrain, 256)}, [2]int{0, 0}},
		{"blue live", []ServerState{srv("blue1", 0, 128), srv("blue2", AdminConfigMaint, 128), srv("green1", AdminForcedDrain, 256)}, [2]int{100, 0}},
		{"90/10", []ServerState{srv("blue1", 0, 230), srv("green1", 0, 26)}, [2]int{90, 10}},
		{"other servers do not count", []ServerState{srv("green1", 0, 256), srv("sorry", 0, 256)}, [2]int{0, 100}},
	}
	for _, tt := range tests {
		if got := inferShares(tt.states); got != tt.want {
			t.Errorf("%s: inferShares = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMismatch(t *testing.T) {
	at := netip.MustParseAddrPort("127.0.0.1:8081")
	ready := want{name: "blue1", addr: at, state: StateReady, weight: 128}
	tests := []struct {
		name string
		w    want
		s    ServerState
		want string
	}{
		{"as wanted", ready, ServerState{Addr: "127.0.0.1", Port: 8081, Admin: AdminConfigMaint, Weight: 128}, ""},
		{"drained by someone", ready, ServerState{Addr: "127.0.0.1", Port: 8081, Admin: AdminForcedDrain, Weight: 128}, "drain (admin state 0x08)"},
		{"other weight", ready, ServerState{Addr: "127.0.0.1", Port: 8081, Weight: 1}, "weight 1"},
		{"other port", ready, ServerState{Addr: "127.0.0.1", Port: 8082, Weight: 128}, "at 127.0.0.1 port 8082"},
		{"drain ignores weight", want{name: "green1", addr: at, state: StateDrain}, ServerState{Addr: "127.0.0.1", Port: 8081, Admin: AdminForcedDrain, Weight: 7}, ""},
		{"maint ignores the address", want{name: "green1", state: StateMaint}, ServerState{Addr: "127.0.0.1", Port: 1, Admin: AdminForcedMaint}, ""},
		{"maint, found ready", want{name: "green1", state: StateMaint}, ServerState{Addr: "127.0.0.1", Port: 1}, "ready (admin state 0x00)"},
	}
	for _, tt := range tests {
		if got := mismatch(tt.w, tt.s); got != tt.want {
			t.Errorf("%s: mismatch = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestAddrChanged(t *testing.T) {
	tests := []struct {
		ans  string
		want bool
	}{
		{"IP changed from '127.0.0.1' to '::1', port changed from '0' to '80' by 'stats socket command'", true},
		{"IP changed from '127.0.0.1' to '127.0.0.2', no need to change the port by 'stats socket command'", true},
		{"no need to change the addr, port changed from '1' to '18091' by 'stats socket command'", true},
		{"no need to change the addr, no need to change the port by 'stats socket command'", true},
		{"Invalid addr 'x' by 'stats socket command'", false},
		{"No such server.", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := addrChanged(tt.ans); got != tt.want {
			t.Errorf("addrChanged(%q) = %v, want %v", tt.ans, got, tt.want)
		}
	}
}

func FuzzParseServersState(f *testing.F) {
	f.Add(serversState)
	f.Add("1\n# be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\nshop 1 blue1 ::1 2 0 1 80\n")
	f.Add("Can't find backend.")
	f.Fuzz(func(t *testing.T, in string) {
		states, err := ParseServersState(in)
		if err != nil && states != nil {
			t.Fatalf("ParseServersState returned servers and an error: %v", err)
		}
		for _, s := range states {
			_ = s.String()
			if s.Name == "" {
				t.Fatalf("ParseServersState returned a server without a name from %q", in)
			}
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add(showStat)
	f.Add("# pxname,svname\nshop,blue1\n")
	f.Add("No such proxy.")
	f.Fuzz(func(t *testing.T, in string) {
		rows, err := ParseStat(in)
		if err != nil && rows != nil {
			t.Fatalf("ParseStat returned rows and an error: %v", err)
		}
	})
}
