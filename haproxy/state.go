package haproxy

import (
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
)

// OpState is a server's operational state in show servers state (srv_op_state).
type OpState int

// Operational states, as HAProxy numbers them (enum srv_state).
const (
	OpStopped  OpState = 0 // DOWN: in maintenance, or failing its health check
	OpStarting OpState = 1 // coming up (slowstart)
	OpRunning  OpState = 2 // UP: may take traffic
	OpStopping OpState = 3 // going down (failing checks, still serving)
)

func (o OpState) String() string {
	switch o {
	case OpStopped:
		return "DOWN"
	case OpStarting:
		return "starting"
	case OpRunning:
		return "UP"
	case OpStopping:
		return "stopping"
	}
	return fmt.Sprintf("op state %d", int(o))
}

// AdminState is a server's administrative flags in show servers state (srv_admin_state).
type AdminState int

// Administrative flags, as HAProxy numbers them (enum srv_admin).
const (
	AdminForcedMaint    AdminState = 0x01 // set server … state maint
	AdminInheritedMaint AdminState = 0x02 // tracks a server in maintenance
	AdminConfigMaint    AdminState = 0x04 // declared "disabled" in haproxy.cfg (a marker once ready)
	AdminForcedDrain    AdminState = 0x08 // set server … state drain
	AdminInheritedDrain AdminState = 0x10 // tracks a draining server
	AdminResolveMaint   AdminState = 0x20 // its name did not resolve
	AdminHostnameMaint  AdminState = 0x40 // its FQDN was set from the CLI

	// adminMaint and adminDrain are HAProxy's masks SRV_ADMF_MAINT and SRV_ADMF_DRAIN.
	adminMaint = AdminForcedMaint | AdminInheritedMaint | AdminResolveMaint
	adminDrain = AdminForcedDrain | AdminInheritedDrain
)

// Admin states as set server … state names them.
const (
	StateReady = "ready"
	StateDrain = "drain"
	StateMaint = "maint"
)

// Name returns ready, drain or maint: what set server … state would have set.
func (a AdminState) Name() string {
	switch {
	case a&adminMaint != 0:
		return StateMaint
	case a&adminDrain != 0:
		return StateDrain
	}
	return StateReady
}

// ServerState is one server as show servers state reports it.
type ServerState struct {
	Backend string
	ID      int
	Name    string
	Addr    string // the IP address, as HAProxy prints it
	Port    int
	Op      OpState
	Admin   AdminState
	Weight  int // srv_uweight: what set server … weight set
}

func (s ServerState) String() string {
	return fmt.Sprintf("%s (%s port %d, %s, %s, weight %d)", s.Name, s.Addr, s.Port, s.Admin.Name(), s.Op, s.Weight)
}

// ParseServersState parses the answer to show servers state: a version line ("1"), a header
// line naming the columns ("# be_id be_name …"), then one line of space-separated fields per
// server. Columns are found by name, so that versions adding columns still parse.
func ParseServersState(text string) ([]ServerState, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[0]) != "1" || !strings.HasPrefix(lines[1], "#") {
		return nil, fmt.Errorf("show servers state: want a version line 1 and a # header, got %q", firstLine(text))
	}
	cols := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[1], "#")) {
		cols[name] = i
	}
	need := []string{"be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_uweight", "srv_port"}
	for _, n := range need {
		if _, ok := cols[n]; !ok {
			return nil, fmt.Errorf("show servers state: no column %s in the header %q", n, lines[1])
		}
	}
	var out []ServerState
	for i, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < len(cols) {
			return nil, fmt.Errorf("show servers state: line %d has %d fields, the header names %d: %q", i+3, len(f), len(cols), line)
		}
		var s ServerState
		var err error
		num := func(col string) int {
			if err != nil {
				return 0
			}
			var n int
			n, err = strconv.Atoi(f[cols[col]])
			if err != nil {
				err = fmt.Errorf("show servers state: line %d: %s %q is not a number", i+3, col, f[cols[col]])
			}
			return n
		}
		s.Backend, s.Name, s.Addr = f[cols["be_name"]], f[cols["srv_name"]], f[cols["srv_addr"]]
		s.ID = num("srv_id")
		s.Port = num("srv_port")
		s.Op = OpState(num("srv_op_state"))
		s.Admin = AdminState(num("srv_admin_state"))
		s.Weight = num("srv_uweight")
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Stat is one row of show stat: a frontend, a backend or a server, with the columns teal reads.
// Counters count since HAProxy started; a reload starts them again from zero.
type Stat struct {
	Proxy   string // pxname
	Name    string // svname: the server's name, BACKEND or FRONTEND
	Status  string // UP, DOWN, MAINT, DRAIN, no check, …
	Algo    string // the backend's balance algorithm (BACKEND rows)
	Scur    int64  // sessions open now
	Qcur    int64  // requests queued for the server now
	ReqTot  int64  // HTTP requests the server answered
	Econ    int64  // requests that could not connect to the server
	Eresp   int64  // responses broken off by the server (or refused by HAProxy)
	Hrsp5xx int64  // 5xx answers of the server
	Weight  int64  // effective weight
}

// ParseStat parses the CSV answer of show stat. The header ("# pxname,svname,…") names the
// columns; a column missing from it reads as zero, and an empty field (not applicable to the
// row's kind) as zero too.
func ParseStat(text string) ([]Stat, error) {
	if !strings.HasPrefix(text, "# ") {
		return nil, fmt.Errorf("show stat: want a CSV header starting with \"# \", got %q", firstLine(text))
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(text, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("show stat: no header")
	}
	cols := map[string]int{}
	for i, name := range rows[0] {
		cols[name] = i
	}
	for _, n := range []string{"pxname", "svname"} {
		if _, ok := cols[n]; !ok {
			return nil, fmt.Errorf("show stat: no column %s in the header", n)
		}
	}
	var out []Stat
	for i, row := range rows[1:] {
		field := func(col string) string {
			j, ok := cols[col]
			if !ok || j >= len(row) {
				return ""
			}
			return row[j]
		}
		var err error
		num := func(col string) int64 {
			v := field(col)
			if v == "" || err != nil {
				return 0
			}
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil {
				err = fmt.Errorf("show stat: row %d: %s %q is not a number", i+2, col, v)
			}
			return n
		}
		s := Stat{
			Proxy: field("pxname"), Name: field("svname"), Status: field("status"), Algo: field("algo"),
			Scur: num("scur"), Qcur: num("qcur"), ReqTot: num("req_tot"), Econ: num("econ"),
			Eresp: num("eresp"), Hrsp5xx: num("hrsp_5xx"), Weight: num("weight"),
		}
		if err != nil {
			return nil, err
		}
		if s.Proxy == "" && s.Name == "" {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// firstLine returns text up to its first newline, at most 200 bytes: what an error quotes.
func firstLine(text string) string {
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	return text
}
