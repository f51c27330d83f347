package teal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"
)

// ConfigError is one problem in a config file: where it is, the value found there and what
// would be valid.
type ConfigError struct {
	File  string // the config file as the user named it
	Key   string // key path, like run.command[1] or health.healthy_after; "" for the whole file
	Value string // the value as written in the file; "" when there is none
	Msg   string // what is wrong and what would be valid
}

// Error formats the problem as `teal.yaml: release.keep_old: "soon": not a duration (like 30s, 10m)`.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
	}
	if e.Value != "" {
		b.WriteString(": ")
		b.WriteString(strconv.Quote(e.Value))
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrInvalid, so that errors.Is(err, ErrInvalid) holds for every config problem.
func (e *ConfigError) Unwrap() error { return ErrInvalid }

// ConfigErrors is every problem found in a config file, in file order.
type ConfigErrors []*ConfigError

// Error joins the problems with newlines.
func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each problem, for errors.Is and errors.As.
func (es ConfigErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// LoadConfig reads the config file at path with ${VAR} expanded from the process environment.
// It sets Path to the file's absolute path and makes DataDir and AdminTokenFile absolute,
// relative to the file's directory; AdminTokenFile defaults to DataDir/admin.token.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(bytes.NewReader(data), path, os.LookupEnv)
	if err != nil {
		return Config{}, err
	}
	return resolvePaths(cfg, path)
}

// resolvePaths sets Path and makes DataDir and AdminTokenFile absolute, for LoadConfig.
func resolvePaths(cfg Config, path string) (Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, fmt.Errorf("resolve config path %s: %w", path, err)
	}
	cfg.Path = abs
	dir := filepath.Dir(abs)
	cfg.DataDir = absFrom(dir, cfg.DataDir)
	if cfg.AdminTokenFile == "" {
		cfg.AdminTokenFile = filepath.Join(cfg.DataDir, "admin.token")
	} else {
		cfg.AdminTokenFile = absFrom(dir, cfg.AdminTokenFile)
	}
	if cfg.TokensFile != "" {
		cfg.TokensFile = absFrom(dir, cfg.TokensFile)
	}
	if k := cfg.Kubernetes.Kubeconfig; k != "" && !strings.HasPrefix(k, "~/") {
		cfg.Kubernetes.Kubeconfig = absFrom(dir, k)
	}
	return cfg, nil
}

// absFrom makes p absolute relative to dir.
func absFrom(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// ParseConfig reads a teal.yaml from r, starting from DefaultConfig(). file names the source in
// error messages ("" means teal.yaml). ${VAR} in values is expanded with lookupEnv (nil: no
// variable is set) and $$ is a literal $. The config is validated; the error, if any, is a
// ConfigErrors listing every problem found, parsing and validation alike. Relative paths are
// left as written: LoadConfig resolves them. A key set to null (or left empty) keeps its default.
func ParseConfig(r io.Reader, file string, lookupEnv func(string) (string, bool)) (Config, error) {
	if file == "" {
		file = "teal.yaml"
	}
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("read %s: %w", file, err)
	}
	root, msg := parseYAML(data)
	if msg != "" {
		// Nothing below a syntax error can be trusted, so validation would only add noise.
		return Config{}, ConfigErrors{{File: file, Msg: msg}}
	}

	cfg := DefaultConfig()
	d := newDecoder(file, lookupEnv, &cfg, &cfg.DNS)
	if root != nil {
		d.mapping(root, "", "")
	}
	unused := cfg.providerDefaults(func(k string) bool { _, ok := d.keys[k]; return ok })
	problems := cfg.validate(file)
	for _, k := range unused {
		problems = append(problems, unusedKeyError(file, k))
	}
	dv := &validator{file: file}
	cfg.DNS.validate(dv, &cfg)
	problems = append(problems, dv.errs...)
	for _, e := range problems {
		if d.failed(e.Key) {
			// The key already has an error and kept its default; a second opinion on it
			// would mislead.
			continue
		}
		ki, ok := d.keys[e.Key]
		if ok && ki.scalar {
			e.Value = ki.shown()
			e.Msg += ki.note()
		}
		d.add(d.line(e.Key), e)
	}
	if len(d.errs) == 0 {
		return cfg, nil
	}
	// Errors are reported in file order; those about keys not in the file (app missing)
	// come first.
	slices.SortStableFunc(d.errs, func(a, b lineError) int { return a.line - b.line })
	errs := make(ConfigErrors, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e.err
	}
	return Config{}, errs
}

// parseYAML returns the root node of the single document in data, nil for an empty file, or
// a message saying why data is not valid YAML.
func parseYAML(data []byte) (root *yaml.Node, msg string) {
	defer func() {
		// The YAML library parses untrusted input; a bug in it must become a config error,
		// not take down the server or the CLI.
		if r := recover(); r != nil {
			root, msg = nil, fmt.Sprintf("not valid YAML (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ""
		}
		return nil, strings.TrimPrefix(err.Error(), "yaml: ")
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, strings.TrimPrefix(err.Error(), "yaml: ")
	default:
		return nil, fmt.Sprintf("line %d: a second YAML document; the file holds one config", next.Line)
	}
	if len(doc.Content) == 0 {
		return nil, ""
	}
	return doc.Content[0], ""
}

// field is one key of a mapping and how to decode its value.
type field struct {
	key    string
	decode func(n *yaml.Node, path string)
}

// secrecy says how much of a value error messages may show.
type secrecy int

const (
	// plainValue values are shown as written and, when the environment changed them, expanded.
	plainValue secrecy = iota
	// secretValue values (run.env) are shown as written, never expanded: a secret is
	// normally written as ${VAR}, and its expansion is what must not leak.
	secretValue
	// dsnValue values (database.production, database.preproduction) are shown as written with
	// every password masked, never expanded: people do write passwords inline in DSNs.
	dsnValue
	// hiddenValue values (dns.rfc2136.tsig_secret) are never shown, not even as written: the
	// value is the secret itself, not a reference to it.
	hiddenValue
)

// keyInfo is what the decoder saw at one key path.
type keyInfo struct {
	line     int
	scalar   bool   // raw and expanded are set
	raw      string // the value as written
	expanded string // the value after ${VAR} expansion
	secrecy  secrecy
}

// shown is the value as error messages may show it.
func (k keyInfo) shown() string {
	switch k.secrecy {
	case dsnValue:
		return RedactDSN(k.raw)
	case hiddenValue:
		return ""
	}
	return k.raw
}

// note tells where a value came from when the environment changed it.
func (k keyInfo) note() string {
	if !k.scalar || k.secrecy != plainValue || k.raw == k.expanded {
		return ""
	}
	return fmt.Sprintf(" (expanded to %q)", k.expanded)
}

// lineError is an error with the line it was found on, for sorting.
type lineError struct {
	line int
	err  *ConfigError
}

// decoder walks the YAML tree against the schema, filling a Config and collecting every
// problem instead of stopping at the first.
type decoder struct {
	file   string
	lookup func(string) (string, bool)
	schema map[string][]field // section ("" for the top level) → its keys, in spec order
	keys   map[string]keyInfo // key path → what was found there
	errs   []lineError
	bad    map[string]bool // key paths with a decoding error
}

func newDecoder(file string, lookup func(string) (string, bool), c *Config, dc *DNSConfig) *decoder {
	d := &decoder{file: file, lookup: lookup, keys: make(map[string]keyInfo), bad: make(map[string]bool)}
	section := func(name string) func(*yaml.Node, string) {
		return func(n *yaml.Node, path string) { d.mapping(n, path, name) }
	}
	d.schema = map[string][]field{
		"": {
			{"app", d.str(&c.App)},
			{"provider", d.str(&c.Provider)},
			{"router", d.str(&c.Router)},
			{"data_dir", d.str(&c.DataDir)},
			{"listen", d.str(&c.Listen)},
			{"preview", d.str(&c.Preview)},
			{"admin", d.str(&c.Admin)},
			{"admin_token_file", d.str(&c.AdminTokenFile)},
			{"run", section("run")},
			{"health", section("health")},
			{"release", section("release")},
			{"database", section("database")},
			{"dns", section("dns")},
		},
		"run": {
			{"command", d.list(&c.Run.Command)},
			{"dir", d.str(&c.Run.Dir)},
			{"env", d.env(&c.Run.Env)},
			{"instances", d.integer(&c.Run.Instances)},
			{"stop_signal", d.str(&c.Run.StopSignal)},
			{"stop_timeout", d.duration(&c.Run.StopTimeout)},
			{"restart", d.str(&c.Run.Restart)},
		},
		"health": {
			{"path", d.str(&c.Health.Path)},
			{"interval", d.duration(&c.Health.Interval)},
			{"timeout", d.duration(&c.Health.Timeout)},
			{"healthy_after", d.integer(&c.Health.HealthyAfter)},
			{"unhealthy_after", d.integer(&c.Health.UnhealthyAfter)},
			{"deadline", d.duration(&c.Health.Deadline)},
		},
		"release": {
			{"approval", d.str(&c.Release.Approval)},
			{"auto_after", d.duration(&c.Release.AutoAfter)},
			{"strategy", d.str(&c.Release.Strategy)},
			{"drain_timeout", d.duration(&c.Release.DrainTimeout)},
			{"keep_old", d.duration(&c.Release.KeepOld)},
		},
		"database": {
			{"mode", d.str(&c.Database.Mode)},
			{"engine", d.str(&c.Database.Engine)},
			{"production", d.dsn(&c.Database.Production)},
			{"preproduction", d.dsn(&c.Database.Preproduction)},
			{"name_template", d.str(&c.Database.NameTemplate)},
			{"migrations", d.str(&c.Database.Migrations)},
			{"verify", d.str(&c.Database.Verify)},
			{"max_lag", d.byteSize(&c.Database.MaxLag)},
			{"freeze_timeout", d.duration(&c.Database.FreezeTimeout)},
			{"reverse_sync", d.boolean(&c.Database.ReverseSync)},
			{"keep_old_database", d.duration(&c.Database.KeepOldDatabase)},
			{"clone_strategy", d.str(&c.Database.CloneStrategy)},
		},
		"dns": {
			{"provider", d.str(&dc.Provider)},
			{"zone", d.str(&dc.Zone)},
			{"record", d.str(&dc.Record)},
			{"ttl", d.duration(&dc.TTL)},
			{"targets", d.targets(&dc.Targets)},
			{"weighted", d.boolean(&dc.Weighted)},
			{"builtin", section("dns.builtin")},
			{"rfc2136", section("dns.rfc2136")},
			{"route53", section("dns.route53")},
			{"confirm", d.boolean(&dc.Confirm)},
			{"confirm_timeout", d.duration(&dc.ConfirmTimeout)},
			{"quiet", d.duration(&dc.Quiet)},
			{"rest_ttl", d.duration(&dc.RestTTL)},
		},
		"dns.builtin": {
			{"listen", d.str(&dc.Builtin.Listen)},
		},
		"dns.rfc2136": {
			{"server", d.str(&dc.RFC2136.Server)},
			{"tsig_name", d.str(&dc.RFC2136.TSIGName)},
			{"tsig_secret", d.hidden(&dc.RFC2136.TSIGSecret)},
			{"tsig_algorithm", d.str(&dc.RFC2136.TSIGAlgorithm)},
		},
		"dns.route53": {
			{"hosted_zone_id", d.str(&dc.Route53.HostedZoneID)},
			{"region", d.str(&dc.Route53.Region)},
			{"endpoint", d.str(&dc.Route53.Endpoint)},
		},
	}
	d.gateSchema(c, section)
	d.trafficSchema(c, section)
	d.fleetSchema(c, section)
	d.kubeSchema(c, section)
	return d
}

// sectionOrder lists the schema's sections in file order, for stable suggestions.
func sectionOrder() []string {
	return []string{"", "run", "health", "release", "release.analysis", "release.window", "database", "dns", "dns.builtin", "dns.rfc2136", "dns.route53", "verify", "verify.smoke[]", "verify.smoke[].expect", "verify.shadow", "notify", "sessions", "haproxy", "kubernetes"}
}

// add records e, found on line.
func (d *decoder) add(line int, e *ConfigError) {
	d.errs = append(d.errs, lineError{line: line, err: e})
}

// errorAt records a decoding problem with the value at node n: the key at path keeps its
// default.
func (d *decoder) errorAt(n *yaml.Node, path, value, msg string) {
	d.bad[path] = true
	d.add(n.Line, &ConfigError{File: d.file, Key: path, Value: value, Msg: msg})
}

// keyError records a problem with a key itself (duplicate, empty, not a name); the values of
// the mapping's other keys are still decoded and validated.
func (d *decoder) keyError(n *yaml.Node, path, msg string) {
	d.add(n.Line, &ConfigError{File: d.file, Key: path, Msg: msg})
}

// badValue records that the scalar at path, already seen by scalar, is not valid.
func (d *decoder) badValue(n *yaml.Node, path, msg string) {
	ki := d.keys[path]
	d.errorAt(n, path, ki.shown(), msg+ki.note())
}

// line is the line of the key at path or, for a key not in the file (a required key left
// out), of the nearest section around it that is, so the error sorts next to that section.
func (d *decoder) line(path string) int {
	for {
		if ki, ok := d.keys[path]; ok {
			return ki.line
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// failed reports whether a decoding error concerns key, a key inside it or a key it is inside.
func (d *decoder) failed(key string) bool {
	for p := range d.bad {
		if related(p, key) {
			return true
		}
	}
	return false
}

// related reports whether key paths a and b are equal or one contains the other; the root
// path "" contains every key.
func related(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	if !strings.HasPrefix(b, a) {
		return false
	}
	return a == "" || len(a) == len(b) || b[len(a)] == '.' || b[len(a)] == '['
}

// mapping decodes a mapping node against the keys of section, refusing unknown keys,
// duplicates and the keys of capabilities that are not built yet.
func (d *decoder) mapping(n *yaml.Node, path, section string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	fields := d.schema[section]
	if n.Kind != yaml.MappingNode {
		d.errorAt(n, path, scalarText(n), fmt.Sprintf("want a mapping of keys (%s), got %s", strings.Join(keysOf(fields), ", "), kindName(n)))
		return
	}
	first := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := resolve(n.Content[i]), n.Content[i+1]
		key, ok := d.key(kn, path, first)
		if !ok {
			continue
		}
		p := joinKey(path, key)
		d.keys[p] = keyInfo{line: kn.Line}
		if f, ok := findField(fields, key); ok {
			f.decode(vn, p)
			continue
		}
		d.keyError(kn, p, d.unknown(section, key))
	}
}

// key checks the key node of a mapping pair and returns its name. first maps the keys seen
// so far in this mapping to their lines, to catch duplicates.
func (d *decoder) key(kn *yaml.Node, path string, first map[string]int) (string, bool) {
	if kn.Kind != yaml.ScalarNode {
		d.keyError(kn, path, "keys must be plain names, got "+kindName(kn))
		return "", false
	}
	key := kn.Value
	p := joinKey(path, key)
	switch {
	case kn.Tag == "!!merge":
		d.keyError(kn, p, "merge keys (<<) are not supported; write the keys out")
		return "", false
	case key == "":
		d.keyError(kn, path, "empty key")
		return "", false
	}
	if line, dup := first[key]; dup {
		d.keyError(kn, p, fmt.Sprintf("duplicate key (first set on line %d)", line))
		return "", false
	}
	first[key] = kn.Line
	return key, true
}

// unknown explains an unknown key of section: the near miss it probably is, the section it
// belongs to, or else every valid key.
func (d *decoder) unknown(section, key string) string {
	keys := keysOf(d.schema[section])
	if s := suggest(key, keys); s != "" {
		return fmt.Sprintf("unknown key; did you mean %s?", s)
	}
	for _, other := range sectionOrder() {
		if other == section || strings.Contains(other, "[]") {
			continue
		}
		if slices.Contains(keysOf(d.schema[other]), key) {
			return fmt.Sprintf("unknown key here; did you mean %s?", joinKey(other, key))
		}
	}
	where := "valid keys"
	if section != "" {
		where = "valid keys in " + section
	}
	return fmt.Sprintf("unknown key; %s: %s", where, strings.Join(keys, ", "))
}

// str decodes a string value.
func (d *decoder) str(dst *string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if s, ok := d.scalar(n, path, "a string", plainValue); ok {
			*dst = s
		}
	}
}

// dsn decodes a database connection string, a secret: errors show it with its password
// masked, and never expanded.
func (d *decoder) dsn(dst *string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if s, ok := d.scalar(n, path, "a connection string, like postgres://user:password@host:5432/shop", dsnValue); ok {
			*dst = s
		}
	}
}

// hidden decodes a secret written in the file itself: errors never show it.
func (d *decoder) hidden(dst *string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if s, ok := d.scalar(n, path, "a string", hiddenValue); ok {
			*dst = s
		}
	}
}

// targets decodes dns.targets, a mapping of blue and green to a value each. The entries that
// are valid are kept, so that one bad entry is reported once, not again as "required".
func (d *decoder) targets(dst *map[Color]string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorAt(n, path, scalarText(n), "want a mapping like { blue: 127.0.0.2, green: 127.0.0.3 }, got "+kindName(n))
			return
		}
		out := make(map[Color]string, 2)
		first := make(map[string]int)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := resolve(n.Content[i]), n.Content[i+1]
			key, ok := d.key(kn, path, first)
			if !ok {
				continue
			}
			p := joinKey(path, key)
			d.keys[p] = keyInfo{line: kn.Line}
			c := Color(key)
			if !c.Valid() {
				msg := "unknown colour; want blue and green"
				if s := suggest(key, []string{"blue", "green"}); s != "" {
					msg = fmt.Sprintf("unknown colour; did you mean %s?", s)
				}
				d.keyError(kn, p, msg)
				continue
			}
			if s, ok := d.scalar(vn, p, "an address or a host name", plainValue); ok {
				out[c] = s
			}
		}
		*dst = out
	}
}

// boolean decodes true or false.
func (d *decoder) boolean(dst *bool) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "true or false", plainValue)
		if !ok {
			return
		}
		switch s {
		case "true", "True", "TRUE":
			*dst = true
		case "false", "False", "FALSE":
			*dst = false
		default:
			d.badValue(n, path, "want true or false")
		}
	}
}

// byteSize decodes a size in bytes, like 16MB.
func (d *decoder) byteSize(dst *ByteSize) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "a size, like 16MB", plainValue)
		if !ok {
			return
		}
		v, err := ParseByteSize(s)
		if err != nil {
			d.badValue(n, path, err.Error())
			return
		}
		*dst = v
	}
}

// integer decodes a whole number.
func (d *decoder) integer(dst *int) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "a whole number, like 2", plainValue)
		if !ok {
			return
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			msg := "not a whole number (like 2)"
			if errors.Is(err, strconv.ErrRange) {
				msg = "out of range"
			}
			d.badValue(n, path, msg)
			return
		}
		*dst = v
	}
}

// duration decodes a Go duration.
func (d *decoder) duration(dst *time.Duration) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "a duration, like 30s", plainValue)
		if !ok {
			return
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			msg := "not a duration (like 30s, 10m)"
			if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
				msg = "not a duration: add a unit (like 30s, 10m)"
			}
			d.badValue(n, path, msg)
			return
		}
		*dst = v
	}
}

// list decodes a list of strings; it is set only if every element is valid.
func (d *decoder) list(dst *[]string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorAt(n, path, scalarText(n), `want a list, like ["./app", "--port", "{port}"], got `+kindName(n))
			return
		}
		out := make([]string, 0, len(n.Content))
		ok := true
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			e = resolve(e)
			if isNull(e) {
				out = append(out, "")
				continue
			}
			s, good := d.scalar(e, p, "a string", plainValue)
			ok = ok && good
			out = append(out, s)
		}
		if ok {
			*dst = out
		}
	}
}

// env decodes a mapping of environment variables; it is set only if every entry is valid.
// Values are secrets: errors show them as written, never expanded.
func (d *decoder) env(dst *map[string]string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		n = resolve(n)
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorAt(n, path, scalarText(n), "want a mapping of NAME: value, got "+kindName(n))
			return
		}
		out := make(map[string]string, len(n.Content)/2)
		first := make(map[string]int)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := resolve(n.Content[i]), resolve(n.Content[i+1])
			key, good := d.key(kn, path, first)
			if !good {
				ok = false
				continue
			}
			p := joinKey(path, key)
			d.keys[p] = keyInfo{line: kn.Line}
			if isNull(vn) {
				out[key] = ""
				continue
			}
			s, good := d.scalar(vn, p, "a string", secretValue)
			ok = ok && good
			out[key] = s
		}
		if ok {
			*dst = out
		}
	}
}

// scalar returns the ${VAR}-expanded text of a scalar node, recording it at path with how
// secret it is. It returns false, recording an error, if n is a list or mapping or expansion
// fails, and false without an error if n is null: the key keeps its default.
func (d *decoder) scalar(n *yaml.Node, path, want string, sec secrecy) (string, bool) {
	n = resolve(n)
	if isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorAt(n, path, "", fmt.Sprintf("want %s, got %s", want, kindName(n)))
		return "", false
	}
	s, problems := expand(n.Value, d.lookup)
	ki := d.keys[path]
	if ki.line == 0 {
		ki.line = n.Line
	}
	ki.scalar, ki.raw, ki.expanded, ki.secrecy = true, n.Value, s, sec
	d.keys[path] = ki
	for _, p := range problems {
		d.errorAt(n, path, ki.shown(), p)
	}
	return s, len(problems) == 0
}

// expand replaces ${NAME} with the value lookup gives and $$ with $. Any other $ stays as it
// is, so that values like "$.ok" or "$HOME" need no escaping. It returns a problem for each
// variable that is not set or not well formed.
func expand(s string, lookup func(string) (string, bool)) (string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	var problems []string
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				problems = append(problems, "unterminated ${ (write $$ for a literal $)")
				b.WriteString(s[i:])
				i = len(s)
				continue
			}
			name := s[i+2 : i+2+end]
			i += end + 3
			if !validEnvName(name) {
				problems = append(problems, fmt.Sprintf("${%s}: not a variable name (letters, digits and _; write $$ for a literal $)", name))
				continue
			}
			v, ok := lookup(name)
			if !ok {
				problems = append(problems, fmt.Sprintf("environment variable %s is not set", name))
				continue
			}
			b.WriteString(v)
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), problems
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	// Anchors cannot refer to themselves, so the chain is short; the bound is a guard only.
	for i := 0; i < 100 && n != nil && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent, null or empty ("key:" with nothing after it).
func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// kindName names the kind of node n for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	default:
		return "something else"
	}
}

// scalarText is n's text if it is a scalar, for error messages.
func scalarText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

func findField(fields []field, key string) (field, bool) {
	for _, f := range fields {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

func keysOf(fields []field) []string {
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	return keys
}

// joinKey appends key to a key path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the candidate key probably meant by a mistyped key: the closest within two
// edits, or else one that the key is a prefix of or starts with; "" if none is close.
func suggest(key string, candidates []string) string {
	k := strings.ToLower(key)
	best, bestDist := "", 3
	for _, c := range candidates {
		// A distance as long as the key itself means nothing was matched at all ("ab" → "app").
		if dist := levenshtein(k, c); dist < bestDist && dist < len(k) {
			best, bestDist = c, dist
		}
	}
	if best != "" {
		return best
	}
	for _, c := range candidates {
		if (len(k) >= 3 && strings.HasPrefix(c, k)) || (len(c) >= 3 && strings.HasPrefix(k, c)) {
			return c
		}
	}
	return ""
}

// levenshtein is the edit distance between a and b, in bytes.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// InstanceEnvReserved returns the environment variables teal sets in every instance, which
// run.env may not set. DATABASE_URL is reserved whatever database.mode says, so that turning
// the database step on never clashes with an app's own setting.
func (c Config) InstanceEnvReserved() []string {
	return []string{"PORT", "TEAL_APP", "TEAL_COLOR", "TEAL_VERSION", "TEAL_INSTANCE", "DATABASE_URL"}
}

// Validate checks every field and returns a ConfigErrors with one error per problem. It also
// normalises two fields in place: run.stop_signal loses any SIG prefix and is upper-cased, and
// preview "none" becomes "". Errors name c.Path, or teal.yaml when Path is not set.
func (c *Config) Validate() error {
	file := c.Path
	if file == "" {
		file = "teal.yaml"
	}
	if errs := c.validate(file); len(errs) > 0 {
		return errs
	}
	return nil
}

// validator collects field-level problems.
type validator struct {
	file string
	errs ConfigErrors
}

func (v *validator) add(key, value, msg string) {
	v.errs = append(v.errs, &ConfigError{File: v.file, Key: key, Value: value, Msg: msg})
}

// positive checks that a duration is over zero; nonNegative that it is at least zero.
func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, d.String(), "want a duration over 0, like 30s")
	}
}

func (v *validator) nonNegative(key string, d time.Duration) {
	if d < 0 {
		v.add(key, d.String(), "want a duration of 0 or more, like 30s")
	}
}

func (c *Config) validate(file string) ConfigErrors {
	v := &validator{file: file}
	switch {
	case c.App == "":
		v.add("app", "", "required: the app's name, like shop (a lowercase letter, then up to 40 lowercase letters, digits or -)")
	case !validAppName(c.App):
		v.add("app", c.App, "want a lowercase letter, then up to 40 lowercase letters, digits or - (like shop)")
	}
	switch c.Provider {
	case "local", "exec", "kubernetes":
	default:
		v.add("provider", c.Provider, "want local, exec or kubernetes")
	}
	switch c.Router {
	case "builtin", "haproxy", "none":
	default:
		v.add("router", c.Router, "want builtin, haproxy or none (none: provider kubernetes, whose Service is the router)")
	}
	if c.DataDir == "" {
		v.add("data_dir", "", "empty; leave it out for "+DefaultDataDir)
	}
	c.validateAddrs(v)
	c.validateRun(v)

	if !strings.HasPrefix(c.Health.Path, "/") {
		v.add("health.path", c.Health.Path, "want a path starting with /, like /healthz")
	}
	v.positive("health.interval", c.Health.Interval)
	v.positive("health.timeout", c.Health.Timeout)
	if c.Health.HealthyAfter < 1 {
		v.add("health.healthy_after", strconv.Itoa(c.Health.HealthyAfter), "want 1 or more consecutive passes")
	}
	if c.Health.UnhealthyAfter < 1 {
		v.add("health.unhealthy_after", strconv.Itoa(c.Health.UnhealthyAfter), "want 1 or more consecutive failures")
	}
	v.positive("health.deadline", c.Health.Deadline)

	switch c.Release.Approval {
	case "manual", "auto":
	default:
		v.add("release.approval", c.Release.Approval, "want manual or auto")
	}
	switch {
	case c.Release.AutoAfter < 0:
		v.nonNegative("release.auto_after", c.Release.AutoAfter)
	case c.Release.AutoAfter > 0 && c.Release.Approval == "manual":
		v.add("release.auto_after", c.Release.AutoAfter.String(), "only used with approval: auto; remove it or set release.approval: auto")
	}
	switch c.Release.Strategy {
	case "switch", "weighted":
	default:
		v.add("release.strategy", c.Release.Strategy, "want switch or weighted")
	}
	v.nonNegative("release.drain_timeout", c.Release.DrainTimeout)
	v.nonNegative("release.keep_old", c.Release.KeepOld)
	c.validateDatabase(v)
	c.validateGate(v)
	c.validateTraffic(v)
	c.validateFleet(v)
	c.validateKube(v)
	return v.errs
}

// MaxFreezeTimeout bounds database.freeze_timeout: writes are refused for up to that long
// during a switchover, and a longer freeze is an outage, not a switchover.
const MaxFreezeTimeout = 5 * time.Minute

// validateDatabase checks the database section. Its keys are checked whatever the mode, so that
// a section written while the mode is none is right when the mode changes.
func (c *Config) validateDatabase(v *validator) {
	db := &c.Database
	mode := db.Mode
	switch mode {
	case "none", "clone", "shared", "snapshot":
	default:
		v.add("database.mode", mode, "want clone, snapshot, shared or none")
	}
	if db.Engine != "postgres" {
		v.add("database.engine", db.Engine, "want postgres (the only engine for now)")
	}
	switch {
	case db.Production == "" && (mode == "clone" || mode == "snapshot" || mode == "shared"):
		v.add("database.production", "", fmt.Sprintf("required with mode %s: the live database's connection string, like ${PROD_DATABASE_URL} or postgres://user:password@host:5432/shop", mode))
	case db.Production != "":
		if msg := dsnProblem(db.Production, true); msg != "" {
			v.add("database.production", RedactDSN(db.Production), msg)
		}
	}
	if db.Preproduction != "" {
		if msg := dsnProblem(db.Preproduction, false); msg != "" {
			v.add("database.preproduction", RedactDSN(db.Preproduction), msg)
		}
	}

	tmpl := db.NameTemplate
	if tmpl == "" {
		v.add("database.name_template", "", "empty; leave it out for "+DefaultNameTemplate)
	} else {
		var missing []string
		for _, p := range []string{"{color}", "{version}"} {
			if !strings.Contains(tmpl, p) {
				missing = append(missing, p)
			}
		}
		switch len(missing) {
		case 1:
			what := "both colours' copies"
			if missing[0] == "{version}" {
				what = "the copies of two versions released to one colour"
			}
			v.add("database.name_template", tmpl, fmt.Sprintf("must contain %s, else %s would get the same database name; like %s", missing[0], what, DefaultNameTemplate))
		case 2:
			v.add("database.name_template", tmpl, "must contain {color} and {version}, else the copies of two colours or two versions would get the same database name; like "+DefaultNameTemplate)
		}
		checkPlaceholders(v, "database.name_template", tmpl, tmpl, "app", "color", "version")
	}
	if db.Migrations == "" {
		v.add("database.migrations", "", "empty; leave it out for "+DefaultMigrations)
	} else {
		checkPlaceholders(v, "database.migrations", db.Migrations, db.Migrations, "artifact")
	}
	switch db.Verify {
	case "rowcounts", "checksums", "none":
	default:
		v.add("database.verify", db.Verify, "want rowcounts, checksums or none")
	}
	if db.MaxLag <= 0 {
		v.add("database.max_lag", db.MaxLag.String(), "want a size over 0, like 16MB")
	}
	switch {
	case db.FreezeTimeout <= 0:
		v.positive("database.freeze_timeout", db.FreezeTimeout)
	case db.FreezeTimeout > MaxFreezeTimeout:
		v.add("database.freeze_timeout", db.FreezeTimeout.String(), fmt.Sprintf("over %s: writes are refused for up to this long during a switchover; want a short bound, like 10s", MaxFreezeTimeout))
	}
	v.nonNegative("database.keep_old_database", db.KeepOldDatabase)
	switch db.CloneStrategy {
	case "auto", "subscription", "dump":
	default:
		v.add("database.clone_strategy", db.CloneStrategy, "want auto, subscription or dump")
	}
}

// dsnProblem says what is wrong with a PostgreSQL connection string (a postgres:// URL or
// key=value pairs), or returns "". needDatabase asks for a database name in it. The message
// never contains the string's password.
func dsnProblem(s string, needDatabase bool) string {
	const want = "want a URL like postgres://user:password@host:5432/shop or key=value pairs like host=db dbname=shop"
	cfg, err := pgx.ParseConfig(s)
	if err != nil {
		reason := err.Error()
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) {
			// Error() quotes the connection string with its password masked as well as pgx
			// can; a copy without the string keeps only the reason.
			bare := *pe
			bare.ConnString = ""
			reason = strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
		}
		if quotesPassword(reason, s) {
			// A parser's reason may quote any part of its input (net/url quotes the piece
			// it stumbled on): rather no reason than a password in a log.
			return "not a PostgreSQL connection string; " + want
		}
		return "not a PostgreSQL connection string (" + reason + "); " + want
	}
	if needDatabase && cfg.Database == "" {
		return "names no database; want the live database, like postgres://user:password@host:5432/shop"
	}
	return ""
}

// quotesPassword reports whether msg holds any four bytes in a row (all of it, if shorter) of
// a password of dsn, as written or percent-decoded.
func quotesPassword(msg, dsn string) bool {
	for _, sp := range passwordSpans(dsn) {
		pw := dsn[sp[0]:sp[1]]
		forms := []string{pw}
		if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
			forms = append(forms, dec)
		}
		for _, f := range forms {
			n := min(4, len(f))
			for i := 0; i+n <= len(f); i++ {
				if strings.Contains(msg, f[i:i+n]) {
					return true
				}
			}
		}
	}
	return false
}

// redactedMark replaces a password.
const redactedMark = "xxxxx"

// RedactDSN returns a PostgreSQL connection string fit for messages and logs: every password
// in it (the URL's user information, password= and sslpassword= pairs, also in a URL's query)
// is replaced by xxxxx, and the rest is left as it is. It works on strings that do not parse,
// which are the ones error messages quote, at the cost of masking too much in odd cases.
func RedactDSN(s string) string {
	spans := passwordSpans(s)
	for i := len(spans) - 1; i >= 0; i-- {
		s = s[:spans[i][0]] + redactedMark + s[spans[i][1]:]
	}
	return s
}

// passwordSpans returns the byte ranges [start, end) of the passwords in a connection
// string, in order and not overlapping.
func passwordSpans(s string) [][2]int {
	var spans [][2]int
	// A URL's user information: from the first colon after the scheme to the last @, the
	// way net/url reads it, but without stopping at a / (a password may hold one).
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 && colon+1 < at {
				spans = append(spans, [2]int{i + 3 + colon + 1, i + 3 + at})
			}
		}
	}
	// password=value pairs, key=value style (value bare or in single quotes with \ escapes)
	// or in a URL's query (value up to &).
	// Lower-cased byte by byte: strings.ToLower may change the length of invalid UTF-8, and
	// the indexes must stay those of s.
	lowered := []byte(s)
	for i, c := range lowered {
		if 'A' <= c && c <= 'Z' {
			lowered[i] = c + 'a' - 'A'
		}
	}
	lower := string(lowered)
	for from := 0; ; {
		k := strings.Index(lower[from:], "password")
		if k < 0 {
			break
		}
		j := from + k + len("password")
		from = j
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		if j == len(s) || s[j] != '=' {
			continue
		}
		j++
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		start, end := j, j
		if j < len(s) && s[j] == '\'' {
			start = j + 1
			for end = start; end < len(s) && s[end] != '\''; end++ {
				if s[end] == '\\' && end+1 < len(s) {
					end++
				}
			}
		} else {
			for end < len(s) && !strings.ContainsRune(" \t\n\r&", rune(s[end])) {
				end++
			}
		}
		end = min(end, len(s))
		if end > start {
			spans = append(spans, [2]int{start, end})
		}
		from = max(from, end)
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	merged := spans[:0]
	for _, sp := range spans {
		if n := len(merged); n > 0 && sp[0] <= merged[n-1][1] {
			merged[n-1][1] = max(merged[n-1][1], sp[1])
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// validateAddrs checks listen, preview and admin, and that no two of them would bind the same
// port. Port 0 (a free port, picked at start) never clashes.
func (c *Config) validateAddrs(v *validator) {
	if c.Preview == "none" {
		c.Preview = ""
	}
	type addr struct{ key, host, port string }
	var ok []addr
	for _, a := range []struct{ key, value string }{{"listen", c.Listen}, {"preview", c.Preview}, {"admin", c.Admin}} {
		if a.key == "preview" && a.value == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a.value)
		if err != nil {
			v.add(a.key, a.value, "want host:port, like 127.0.0.1:8080")
			continue
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			v.add(a.key, a.value, "want a port number 1..65535 (0 picks a free port)")
			continue
		}
		if port == "0" {
			continue
		}
		for _, o := range ok {
			if o.port == port && (o.host == host || wildcardHost(o.host) || wildcardHost(host)) {
				v.add(a.key, a.value, fmt.Sprintf("same port as %s (%s); each needs its own", o.key, net.JoinHostPort(o.host, o.port)))
			}
		}
		ok = append(ok, addr{a.key, host, port})
	}
}

// wildcardHost reports whether a listen host means every interface.
func wildcardHost(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }

func (c *Config) validateRun(v *validator) {
	r := &c.Run
	if len(r.Command) == 0 {
		v.add("run.command", "", `empty: want the argv of one instance, like ["{artifact}", "--port", "{port}"]`)
	} else if r.Command[0] == "" {
		v.add("run.command[0]", "", "empty: want the program to run, like {artifact}")
	}
	for i, arg := range r.Command {
		checkPlaceholders(v, fmt.Sprintf("run.command[%d]", i), arg, arg, runPlaceholders()...)
	}
	if r.Dir == "" {
		v.add("run.dir", "", "empty; leave it out for the artifact's directory ({artifact_dir})")
	} else {
		checkPlaceholders(v, "run.dir", r.Dir, r.Dir, runPlaceholders()...)
	}
	reserved := c.InstanceEnvReserved()
	names := make([]string, 0, len(r.Env))
	for name := range r.Env {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case !validEnvName(name):
			v.add("run.env", name, "not a variable name: want letters, digits and _, not starting with a digit")
		case slices.Contains(reserved, name):
			v.add("run.env", name, fmt.Sprintf("set by teal in every instance; reserved: %s", strings.Join(reserved, ", ")))
		}
		// Values may be secrets: the message names the placeholder, never the value.
		checkPlaceholders(v, "run.env."+name, r.Env[name], "", runPlaceholders()...)
	}
	if r.Instances < 1 || r.Instances > 64 {
		v.add("run.instances", strconv.Itoa(r.Instances), "want 1..64 instances per colour")
	}
	sig := strings.TrimPrefix(strings.ToUpper(r.StopSignal), "SIG")
	switch sig {
	case "TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2":
		r.StopSignal = sig
	default:
		v.add("run.stop_signal", r.StopSignal, "want TERM, INT, QUIT, HUP, KILL, USR1 or USR2")
	}
	v.positive("run.stop_timeout", r.StopTimeout)
	switch r.Restart {
	case "on-failure", "never":
	default:
		v.add("run.restart", r.Restart, "want on-failure or never")
	}
}

// runPlaceholders are the placeholders of run.command, run.dir and run.env.
func runPlaceholders() []string {
	return []string{"artifact", "artifact_dir", "port", "color", "version", "instance"}
}

// checkPlaceholders reports every {name} in s that is not one of allowed, showing value in the
// error. Braces around anything but a name ({1..3}, JSON) are not placeholders, nor is
// ${NAME}: that is left for the program or its shell.
func checkPlaceholders(v *validator, key, s, value string, allowed ...string) {
	// Only the innermost {…} before each } can be a placeholder: one pass, however the braces
	// nest.
	for rest := s; ; {
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return
		}
		start := strings.LastIndexByte(rest[:end], '{')
		if start >= 0 && (start == 0 || rest[start-1] != '$') {
			if name := rest[start+1 : end]; validEnvName(name) && !slices.Contains(allowed, name) {
				v.add(key, value, fmt.Sprintf("unknown placeholder {%s}; want %s", name, placeholderList(allowed)))
			}
		}
		rest = rest[end+1:]
	}
}

// placeholderList writes names as "{a}, {b} or {c}".
func placeholderList(names []string) string {
	ph := make([]string, len(names))
	for i, n := range names {
		ph[i] = "{" + n + "}"
	}
	if len(ph) == 1 {
		return ph[0]
	}
	return strings.Join(ph[:len(ph)-1], ", ") + " or " + ph[len(ph)-1]
}

// ParseByteSize parses a size in bytes as teal.yaml writes it: a whole number, optionally
// followed by a unit B, kB (or KB), MB, GB or TB, which are powers of 1024 as in PostgreSQL's
// settings: "16MB", "512kB", "1GB", "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	after := strings.TrimLeft(s, "0123456789")
	num, unit := s[:len(s)-len(after)], strings.TrimLeft(after, " ")
	if num == "" || strings.HasPrefix(unit, ".") {
		return 0, errors.New("not a size: want a whole number and a unit, like 16MB, 512kB or 1GB")
	}
	var mult int64
	switch unit {
	case "", "B":
		mult = 1
	case "kB", "KB":
		mult = 1 << 10
	case "MB":
		mult = 1 << 20
	case "GB":
		mult = 1 << 30
	case "TB":
		mult = 1 << 40
	default:
		for _, u := range []string{"kB", "MB", "GB", "TB"} {
			if strings.EqualFold(unit, u) {
				return 0, fmt.Errorf("unit %q: want %s (units are case-sensitive)", unit, u)
			}
		}
		return 0, fmt.Errorf("unit %q: want B, kB, MB, GB or TB (powers of 1024), like 16MB", unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, errors.New("out of range")
	}
	return ByteSize(n * mult), nil
}

// String formats b in the largest unit that divides it, so that ParseByteSize reads it back:
// 16MB, 512kB, 1000B.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		size ByteSize
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}} {
		if b != 0 && b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// validAppName reports whether s matches [a-z][a-z0-9-]{0,40}.
func validAppName(s string) bool {
	if len(s) == 0 || len(s) > 41 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s[1:]) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// validEnvName reports whether s is a portable environment variable name: [A-Za-z_][A-Za-z0-9_]*.
func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}
