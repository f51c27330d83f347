package main

// The CI examples (examples/jenkins/Jenkinsfile, examples/github/release.yml) and docs/ci.md
// are copied by users as they are, so these tests keep them true: every teal command they show
// must parse in the real command tree, and their shell steps are run, as Jenkins and GitHub
// run them, against a real API server with the real CLI as their teal.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"teal.dev/teal"
)

// The example files, from this package's directory.
const (
	jenkinsfilePath = "../../examples/jenkins/Jenkinsfile"
	workflowPath    = "../../examples/github/release.yml"
	ciDocPath       = "../../docs/ci.md"
)

// tealCommands returns the arguments of every teal command line in code: each `teal` word at
// a word boundary followed by a blank, up to the end of its shell command. Comment lines
// (#, //, /*, *) and trailing comments (" #", " //") are not code.
func tealCommands(code string) [][]string {
	var cmds [][]string
	for _, line := range strings.Split(code, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "//") ||
			strings.HasPrefix(trimmed, "/*") || strings.HasPrefix(trimmed, "*") {
			continue
		}
		for _, marker := range []string{" #", "\t#", " //"} {
			if i := strings.Index(line, marker); i >= 0 {
				line = line[:i]
			}
		}
		for i := 0; i < len(line); {
			j := strings.Index(line[i:], "teal")
			if j < 0 {
				break
			}
			at := i + j
			i = at + len("teal")
			if at > 0 && isWordByte(line[at-1]) {
				continue
			}
			if i >= len(line) || (line[i] != ' ' && line[i] != '\t') {
				continue
			}
			if args := splitCommand(line[i:]); len(args) > 0 {
				cmds = append(cmds, args)
			}
		}
	}
	return cmds
}

// isWordByte reports whether b may be part of a name around `teal` (TEAL_TOKEN, teal-token,
// teal.yaml, $teal), so that the word is not the command.
func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '_' || b == '-' || b == '.' || b == '$'
}

// splitCommand splits s into the words of one shell command, dropping double quotes, and
// stops where the command ends: an operator (| ; & ) < > `), a comment, a single quote (the
// end of the Groovy or jq string the command sits in), or an unmatched double quote (the end
// of an echoed message).
func splitCommand(s string) []string {
	var (
		args []string
		word strings.Builder
		have bool
	)
	flush := func() {
		if have {
			args = append(args, word.String())
		}
		word.Reset()
		have = false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case strings.IndexByte("|;&)<>`'", c) >= 0:
			flush()
			return args
		case c == '#' && !have:
			return args
		case c == '"':
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 {
				flush()
				return args
			}
			word.WriteString(s[i+1 : i+1+end])
			have = true
			i += end + 1
		default:
			word.WriteByte(c)
			have = true
		}
	}
	flush()
	return args
}

// placeholder matches a documentation placeholder given as a flag's value: N, PATH, V.
var placeholder = regexp.MustCompile(`^[A-Z][A-Z_]*$`)

// checkCommand says whether args (after `teal`) is a command line the real CLI accepts: an
// existing, visible, runnable command; flags it has (its own or inherited), with values of
// their type; its arguments; its required flags. It runs nothing.
func checkCommand(args []string) error {
	g := &globals{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	root := newRootCmd(g)
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if cmd == root {
		return fmt.Errorf("no command: want one of teal's subcommands")
	}
	if cmd.Hidden {
		return fmt.Errorf("%s is a hidden command", cmd.CommandPath())
	}
	if !cmd.Runnable() {
		return fmt.Errorf("%s needs a subcommand", cmd.CommandPath())
	}
	if err := cmd.ParseFlags(withPlaceholderValues(cmd, rest)); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	return nil
}

// withPlaceholderValues replaces a placeholder given as a flag's value (`-n N`) by the flag's
// default, so that the docs may name values the way the CLI's usage does.
func withPlaceholderValues(cmd *cobra.Command, args []string) []string {
	fs := cmd.Flags()
	fs.AddFlagSet(cmd.InheritedFlags())
	// valueFlag returns the default of the flag tok names, if that flag takes a value.
	valueFlag := func(tok string) (def string, ok bool) {
		f := fs.Lookup(strings.TrimPrefix(tok, "--"))
		if !strings.HasPrefix(tok, "--") {
			f = nil
			if len(tok) == 2 && tok[0] == '-' {
				f = fs.ShorthandLookup(tok[1:])
			}
		}
		if f == nil || f.NoOptDefVal != "" {
			return "", false
		}
		return f.DefValue, true
	}
	out := append([]string(nil), args...)
	for i, tok := range out {
		if name, val, ok := strings.Cut(tok, "="); ok && strings.HasPrefix(name, "-") {
			if def, ok := valueFlag(name); ok && placeholder.MatchString(val) {
				out[i] = name + "=" + def
			}
			continue
		}
		if def, ok := valueFlag(tok); ok && i+1 < len(out) && placeholder.MatchString(out[i+1]) {
			out[i+1] = def
		}
	}
	return out
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"flags and a quoted argument", ` deploy "$VERSION" --wait --timeout 30m`, []string{"deploy", "$VERSION", "--wait", "--timeout", "30m"}},
		{"ends at a pipe", ` status --json | jq -r .release.error`, []string{"status", "--json"}},
		{"ends at a command substitution", ` status --json)`, []string{"status", "--json"}},
		{"ends at a single quote", ` artifact push build --version "$VERSION"'`, []string{"artifact", "push", "build", "--version", "$VERSION"}},
		{"ends at an unmatched double quote", ` status --watch"`, []string{"status", "--watch"}},
		{"ends at a comment", ` promote --wait # then wait`, []string{"promote", "--wait"}},
		{"keeps a # inside a word", ` history -n 1 x#y`, []string{"history", "-n", "1", "x#y"}},
		{"ends at &&", ` abort && echo done`, []string{"abort"}},
		{"nothing", ` `, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitCommand(tt.in)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("splitCommand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestTealCommands(t *testing.T) {
	tests := []struct {
		name string
		code string
		want [][]string
	}{
		{"a Jenkins sh step", `sh 'teal artifact push build --version "$VERSION"'`, [][]string{{"artifact", "push", "build", "--version", "$VERSION"}}},
		{"inside $()", `reason=$(teal status --json | jq -r '.release.error')`, [][]string{{"status", "--json"}}},
		{"two on a line", `teal history -n 1 && teal status`, [][]string{{"history", "-n", "1"}, {"status"}}},
		{"in an echoed message", `echo "follow it with teal status --watch"`, [][]string{{"status", "--watch"}}},
		{"comment lines", "# teal abort ends it\n// teal promote\n * teal status", nil},
		{"a trailing comment", `make dist  # then teal deploy`, nil},
		{"names that contain teal", `TEAL_TOKEN=x teal-token http://teal.example:7070 $teal -c teal.yaml steal it`, nil},
		{"teal alone", "teal\nteal:", nil},
		{"a path to teal", `/usr/local/bin/teal version`, [][]string{{"version"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tealCommands(tt.code)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("tealCommands(%q) = %q, want %q", tt.code, got, tt.want)
			}
		})
	}
}

func TestCheckCommand(t *testing.T) {
	tests := []struct {
		name string
		args string
		err  string // "" = valid
	}{
		{"deploy and wait", `deploy $VERSION --wait --timeout 30m`, ""},
		{"push", `artifact push build --version $VERSION`, ""},
		{"persistent flags first", `--server http://x:7070 -c teal.yaml status --json`, ""},
		{"shorthand", `history -n 1`, ""},
		{"placeholder value", `history --json -n N`, ""},
		{"placeholder after =", `deploy V --timeout=D`, ""},
		{"nested", `config check`, ""},
		{"unknown command", `frobnicate`, `unknown command "frobnicate"`},
		{"unknown flag", `promote --force`, "unknown flag: --force"},
		{"unknown shorthand", `status -x`, "unknown shorthand flag: 'x'"},
		{"flag of another command", `deploy v2 --force`, "unknown flag: --force"},
		{"bad duration", `deploy v2 --wait --timeout 30x`, "invalid argument"},
		{"bad number", `history -n many`, "invalid argument"},
		{"missing argument", `deploy --wait`, "accepts 1 arg(s), received 0"},
		{"extra argument", `promote now`, `unknown command "now"`},
		{"missing required flag", `artifact push build`, `required flag(s) "version" not set`},
		{"group only", `artifact`, "needs a subcommand"},
		{"hidden", `sample-app`, "hidden command"},
		{"nothing", `--json`, "no command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkCommand(strings.Fields(tt.args))
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("checkCommand(%s) = %v, want nil", tt.args, err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("checkCommand(%s) = %v, want an error with %q", tt.args, err, tt.err)
			}
		})
	}
}

// FuzzTealCommands checks that any text extracts without panicking, into commands that have
// words and whose words are not empty.
func FuzzTealCommands(f *testing.F) {
	for _, s := range []string{
		`sh 'teal deploy "$VERSION" --wait --timeout 30m'`,
		`x=$(teal status --json | jq -r '.release | .error // "none"')`,
		"teal \"unterminated\nteal history -n 1 # c",
		"teal \"\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		for _, cmd := range tealCommands(code) {
			if len(cmd) == 0 {
				t.Fatalf("tealCommands(%q) returned an empty command", code)
			}
		}
	})
}

// markdownCode returns the code of a Markdown page that shows commands: the fenced blocks,
// except those marked text or json (output), and the inline code spans that start with
// "teal ".
func markdownCode(src string) string {
	var b strings.Builder
	in, skip := false, false
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if !in {
				lang := strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))
				skip = lang == "text" || lang == "json"
			}
			in = !in
			continue
		}
		switch {
		case in && !skip:
			b.WriteString(line + "\n")
		case !in:
			for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
				if strings.HasPrefix(m[1], "teal ") {
					b.WriteString(m[1] + "\n")
				}
			}
		}
	}
	return b.String()
}

var inlineCode = regexp.MustCompile("`([^`]+)`")

// jenkinsStage returns the text of stage name in a Jenkinsfile, up to the next stage.
func jenkinsStage(t *testing.T, src, name string) string {
	t.Helper()
	start := strings.Index(src, "stage('"+name+"')")
	if start < 0 {
		t.Fatalf("%s: no stage('%s')", jenkinsfilePath, name)
	}
	rest := src[start+1:]
	if end := strings.Index(rest, "stage('"); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

// jenkinsShScript matches an sh step's script: in single quotes, in triple single quotes, or
// as sh(script: …).
var jenkinsShScript = regexp.MustCompile(`(?s)\bsh\s*(?:\(\s*script:\s*)?(?:'''(.*?)'''|'([^'\n]*)')`)

// jenkinsScripts returns the sh scripts of text, in order.
func jenkinsScripts(t *testing.T, text string) []string {
	t.Helper()
	var out []string
	for _, m := range jenkinsShScript.FindAllStringSubmatch(text, -1) {
		s := m[1] + m[2]
		// Groovy unescapes backslashes even in single-quoted strings: the shell would not get
		// what the file shows.
		if strings.Contains(s, `\`) {
			t.Fatalf("%s: an sh script has a backslash, which Groovy would unescape:\n%s", jenkinsfilePath, s)
		}
		out = append(out, s)
	}
	return out
}

// workflow is the part of a GitHub Actions workflow the tests read. Decoding with known
// fields only catches misspelt keys.
type workflow struct {
	Name        string            `yaml:"name"`
	On          yaml.Node         `yaml:"on"`
	Concurrency yaml.Node         `yaml:"concurrency"`
	Permissions map[string]string `yaml:"permissions"`
	Env         map[string]string `yaml:"env"`
	Jobs        map[string]struct {
		RunsOn         yaml.Node         `yaml:"runs-on"`
		Needs          yaml.Node         `yaml:"needs"`
		If             string            `yaml:"if"`
		Environment    yaml.Node         `yaml:"environment"`
		TimeoutMinutes int               `yaml:"timeout-minutes"`
		Outputs        map[string]string `yaml:"outputs"`
		Env            map[string]string `yaml:"env"`
		Steps          []workflowStep    `yaml:"steps"`
	} `yaml:"jobs"`
}

type workflowStep struct {
	ID   string            `yaml:"id"`
	Name string            `yaml:"name"`
	Uses string            `yaml:"uses"`
	With map[string]string `yaml:"with"`
	Run  string            `yaml:"run"`
	Env  map[string]string `yaml:"env"`
}

func readWorkflow(t *testing.T) *workflow {
	t.Helper()
	src, err := os.ReadFile(workflowPath)
	if err != nil {
		t.Fatalf("read the workflow: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var w workflow
	if err := dec.Decode(&w); err != nil {
		t.Fatalf("%s: %v", workflowPath, err)
	}
	return &w
}

// workflowRun returns the run script of step id in job.
func workflowRun(t *testing.T, w *workflow, job, id string) string {
	t.Helper()
	for _, s := range w.Jobs[job].Steps {
		if s.ID == id {
			return s.Run
		}
	}
	t.Fatalf("%s: job %s has no step with id %s", workflowPath, job, id)
	return ""
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

// TestExamples_CommandsExist checks every teal command line of the examples and of docs/ci.md
// against the real command tree, and that each shows the commands its story needs (so that a
// broken extraction cannot pass by finding nothing).
func TestExamples_CommandsExist(t *testing.T) {
	var jenkinsCode []string
	jf := readFile(t, jenkinsfilePath)
	jenkinsCode = append(jenkinsCode, jenkinsScripts(t, jf)...)
	var workflowCode []string
	for _, job := range readWorkflow(t).Jobs {
		for _, s := range job.Steps {
			workflowCode = append(workflowCode, s.Run)
		}
	}
	files := []struct {
		path string
		code string
		want []string // each a command with flags that must be among the file's commands
	}{
		{jenkinsfilePath, strings.Join(jenkinsCode, "\n"), []string{"artifact push --version", "deploy --wait --timeout", "status --json", "abort", "promote --wait", "history -n"}},
		{workflowPath, strings.Join(workflowCode, "\n"), []string{"artifact push --version", "deploy --wait --timeout", "status --json", "abort", "promote --wait", "history -n"}},
		{ciDocPath, markdownCode(readFile(t, ciDocPath)), []string{"artifact push --version", "deploy --wait --timeout", "deploy --json", "status --json", "history --json -n", "promote --wait", "abort"}},
	}
	for _, f := range files {
		t.Run(filepath.Base(f.path), func(t *testing.T) {
			cmds := tealCommands(f.code)
			t.Logf("%d teal commands", len(cmds))
			seen := map[string]bool{}
			for _, args := range cmds {
				if err := checkCommand(args); err != nil {
					t.Errorf("%s: teal %s: %v", f.path, strings.Join(args, " "), err)
				}
				seen[commandShape(args)] = true
			}
			for _, want := range f.want {
				found := false
				for shape := range seen {
					if hasShape(shape, want) {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: no `teal %s` among its %d commands %v", f.path, want, len(cmds), keys(seen))
				}
			}
		})
	}
}

// commandShape is a command line's command path and flags, without values: "deploy --wait".
func commandShape(args []string) string {
	g := &globals{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	cmd, rest, err := newRootCmd(g).Find(args)
	if err != nil {
		return strings.Join(args, " ")
	}
	shape := strings.TrimPrefix(cmd.CommandPath(), "teal ")
	for _, a := range rest {
		if strings.HasPrefix(a, "-") {
			name, _, _ := strings.Cut(a, "=")
			shape += " " + name
		}
	}
	return shape
}

// hasShape reports whether shape is want's command with at least want's flags.
func hasShape(shape, want string) bool {
	words := strings.Fields(want)
	i := 0
	for i < len(words) && !strings.HasPrefix(words[i], "-") {
		i++
	}
	name := strings.Join(words[:i], " ")
	if shape != name && !strings.HasPrefix(shape, name+" -") {
		return false
	}
	have := strings.Fields(shape)
	for _, flag := range words[i:] {
		found := false
		for _, h := range have {
			found = found || h == flag
		}
		if !found {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCIDoc_ExitCodes checks that docs/ci.md's table has a row for every exit code.
func TestCIDoc_ExitCodes(t *testing.T) {
	doc := readFile(t, ciDocPath)
	for _, code := range []int{exitOK, exitFailed, exitUsage, exitConflict, exitUnreachable, exitTimeout} {
		if !strings.Contains(doc, fmt.Sprintf("\n| %d | ", code)) {
			t.Errorf("%s: the exit code table has no row for %d", ciDocPath, code)
		}
	}
}

// TestWorkflow_Shape checks the GitHub workflow beyond being YAML: jobs that run somewhere,
// steps that either run or use, the gate on the job that promotes, and run scripts that take
// their values from the environment only.
func TestWorkflow_Shape(t *testing.T) {
	w := readWorkflow(t)
	if len(w.Jobs) == 0 {
		t.Fatalf("%s: no jobs", workflowPath)
	}
	if w.On.Kind == 0 {
		t.Fatalf("%s: no on: triggers", workflowPath)
	}
	var deployJob, promoteJob, abortJob string
	for name, job := range w.Jobs {
		if job.RunsOn.Kind == 0 {
			t.Errorf("job %s: no runs-on", name)
		}
		if len(job.Steps) == 0 {
			t.Errorf("job %s: no steps", name)
		}
		for i, s := range job.Steps {
			if (s.Run == "") == (s.Uses == "") {
				t.Errorf("job %s, step %d: want exactly one of run and uses", name, i)
			}
			if strings.Contains(s.Run, "${{") {
				t.Errorf("job %s, step %d: ${{ }} inside run: (pass it through env: instead)", name, i)
			}
			for _, args := range tealCommands(s.Run) {
				switch commandShape(args) {
				case "deploy --wait --timeout":
					deployJob = name
				case "promote --wait":
					promoteJob = name
				case "abort":
					if !strings.Contains(s.Run, "teal deploy") {
						abortJob = name
					}
				}
			}
		}
	}
	if deployJob == "" || promoteJob == "" || abortJob == "" {
		t.Fatalf("jobs that deploy, promote and abort: %q, %q, %q; want all three", deployJob, promoteJob, abortJob)
	}
	if deployJob == promoteJob {
		t.Fatalf("job %s both deploys and promotes: the gate must stand between them", deployJob)
	}
	var env struct {
		Name string `yaml:"name"`
	}
	pj := w.Jobs[promoteJob]
	switch pj.Environment.Kind {
	case yaml.ScalarNode:
		env.Name = pj.Environment.Value
	case yaml.MappingNode:
		if err := pj.Environment.Decode(&env); err != nil {
			t.Fatalf("job %s: environment: %v", promoteJob, err)
		}
	}
	if env.Name == "" {
		t.Fatalf("job %s promotes without an environment: nobody approves it", promoteJob)
	}
	var needs []string
	if err := pj.Needs.Decode(&needs); err != nil || !contains(needs, deployJob) {
		t.Fatalf("job %s needs %v (%v); want %s among them", promoteJob, needs, err, deployJob)
	}
	aj := w.Jobs[abortJob]
	if aj.Environment.Kind != 0 {
		t.Fatalf("job %s has an environment: it would wait for an approval itself", abortJob)
	}
	if !strings.Contains(aj.If, "always()") {
		t.Fatalf("job %s runs if %q; want always() in it, to run after a rejection or a cancel", abortJob, aj.If)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestExamples_TealHelperProcess is the teal command of the example scripts: the scripts run
// this test binary through a shim on their PATH, which calls it with the CLI's arguments
// after "--". In a normal test run it does nothing.
func TestExamples_TealHelperProcess(t *testing.T) {
	if os.Getenv("TEAL_EXAMPLES_HELPER") != "1" {
		return
	}
	for i, a := range os.Args {
		if a == "--" {
			os.Exit(run(context.Background(), os.Args[i+1:], os.Stdout, os.Stderr))
		}
	}
	fmt.Fprintln(os.Stderr, "teal helper: no -- before the arguments")
	os.Exit(2)
}

// shell is how a CI system runs a script: Jenkins' sh step runs `sh -xe`, GitHub's run:
// `bash --noprofile --norc -eo pipefail`.
type shell []string

var (
	jenkinsShell = shell{"sh", "-xe", "-c"}
	githubShell  = shell{"bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"}
)

// scriptEnv is a directory to run example scripts in, with teal on their PATH.
type scriptEnv struct {
	dir string
	env []string
}

func newScriptEnv(t *testing.T, e *cliEnv, version string) *scriptEnv {
	t.Helper()
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatal("the examples need jq (make test installs it: apt-get install jq)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary: %v", err)
	}
	if strings.Contains(self, "'") {
		t.Fatalf("the test binary's path %q has a quote", self)
	}
	bin := t.TempDir()
	shim := fmt.Sprintf("#!/bin/sh\nexec '%s' -test.run='^TestExamples_TealHelperProcess$' -- \"$@\"\n", self)
	if err := os.WriteFile(filepath.Join(bin, "teal"), []byte(shim), 0o755); err != nil {
		t.Fatalf("write the teal shim: %v", err)
	}
	dir := t.TempDir()
	// The artifact both ways the examples find it: build/ (Jenkins' stash) and artifact.tar
	// (GitHub's upload).
	app := []byte("#!/bin/sh\nexec sleep 1000\n")
	if err := os.MkdirAll(filepath.Join(dir, "build"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "build", "app"), app, 0o755); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "./app", Mode: 0o755, Size: int64(len(app)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(app); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "artifact.tar"), tb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &scriptEnv{dir: dir, env: []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + dir,
		"TEAL_EXAMPLES_HELPER=1",
		// A -race binary sleeps a second at exit by default; teal runs a dozen times a case.
		"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
		"TEAL_SERVER=" + e.http.URL,
		"TEAL_TOKEN=" + cliTestToken,
		"VERSION=" + version,
	}}
}

// run runs scripts one after the other with sh, stopping at the first that fails, as a CI
// system runs a stage's steps; it returns the last exit code and the whole log.
func (s *scriptEnv) run(t *testing.T, sh shell, scripts ...string) (int, string) {
	t.Helper()
	var log bytes.Buffer
	for _, script := range scripts {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, sh[0], append(sh[1:], script)...)
		cmd.Dir, cmd.Env = s.dir, s.env
		cmd.Stdout, cmd.Stderr = &log, &log
		err := cmd.Run()
		cancel()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return ee.ExitCode(), log.String()
		case err != nil:
			t.Fatalf("run %s: %v", sh[0], err)
		}
	}
	return 0, log.String()
}

// exampleScripts are the shell steps of one part of the examples, for each CI system.
type exampleScripts struct {
	name    string
	sh      shell
	scripts []string
}

// preproductionScripts are the steps that push and deploy.
func preproductionScripts(t *testing.T) []exampleScripts {
	t.Helper()
	w := readWorkflow(t)
	return []exampleScripts{
		{"jenkins", jenkinsShell, jenkinsScripts(t, jenkinsStage(t, readFile(t, jenkinsfilePath), "Pre-production"))},
		{"github", githubShell, []string{workflowRun(t, w, "preproduction", "push"), workflowRun(t, w, "preproduction", "deploy")}},
	}
}

// productionScripts are the steps that promote.
func productionScripts(t *testing.T) []exampleScripts {
	t.Helper()
	return []exampleScripts{
		{"jenkins", jenkinsShell, jenkinsScripts(t, jenkinsStage(t, readFile(t, jenkinsfilePath), "Production"))},
		{"github", githubShell, []string{workflowRun(t, readWorkflow(t), "production", "promote")}},
	}
}

// abortScripts are the steps that end a release nobody approved.
func abortScripts(t *testing.T) []exampleScripts {
	t.Helper()
	return []exampleScripts{
		{"jenkins", jenkinsShell, jenkinsScripts(t, jenkinsStage(t, readFile(t, jenkinsfilePath), "Go / no-go"))},
		{"github", githubShell, []string{workflowRun(t, readWorkflow(t), "abort", "abort")}},
	}
}

// exampleCase is one situation the examples' scripts must handle.
type exampleCase struct {
	name    string
	version string // $VERSION
	ctl     func() *fakeController
	// edit changes the scripts before they run, e.g. a shorter --timeout.
	edit func(t *testing.T, script string) string
	code int
	out  []string
	// check looks at the controller after the scripts ran.
	check func(t *testing.T, ctl *fakeController)
}

func runExampleCases(t *testing.T, parts []exampleScripts, cases []exampleCase) {
	for _, p := range parts {
		if len(p.scripts) == 0 {
			t.Fatalf("%s: no scripts found", p.name)
		}
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				ctl := tc.ctl()
				e := newCLIEnv(t, ctl)
				s := newScriptEnv(t, e, tc.version)
				scripts := append([]string(nil), p.scripts...)
				if tc.edit != nil {
					for i := range scripts {
						scripts[i] = tc.edit(t, scripts[i])
					}
				}
				code, log := s.run(t, p.sh, scripts...)
				if code != tc.code {
					t.Fatalf("exit = %d, want %d; log:\n%s", code, tc.code, log)
				}
				for _, want := range tc.out {
					if !strings.Contains(log, want) {
						t.Fatalf("log lacks %q:\n%s", want, log)
					}
				}
				if tc.check != nil {
					tc.check(t, ctl)
				}
			})
		}
	}
}

// atGate is a controller whose release of version waits at the gate.
func atGate(version string) func() *fakeController {
	return func() *fakeController {
		st, rel := statusFixture()
		rel.Version = version
		return &fakeController{status: st, rel: rel}
	}
}

// promoteTo returns a promote that opens the gate and ends the release with outcome.
func promoteTo(o teal.Outcome, msg string) func(f *fakeController) (*teal.Release, error) {
	return func(f *fakeController) (*teal.Release, error) {
		f.mu.Lock()
		now := time.Now().UTC()
		f.rel.Promoted = &now
		out := copyRelease(f.rel)
		f.mu.Unlock()
		go f.update(func(r *teal.Release) {
			r.Steps[2] = testStep("gate", teal.StepDone, time.Second, "")
			r.Steps = append(r.Steps, testStep("switch", teal.StepDone, 3*time.Millisecond, ""))
			r.Phase = teal.PhaseReleased
			end(r, o, msg)
		})
		return out, nil
	}
}

func outcomeOf(ctl *fakeController) teal.Outcome {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if ctl.rel == nil || ctl.rel.Outcome == nil {
		return ""
	}
	return *ctl.rel.Outcome
}

func promoted(ctl *fakeController) bool {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	return len(ctl.actors) > 0
}

// TestExamples_Preproduction runs the push and deploy steps for each exit code they handle.
func TestExamples_Preproduction(t *testing.T) {
	runExampleCases(t, preproductionScripts(t), []exampleCase{
		{
			name:    "reaches the gate",
			version: "v2",
			ctl:     func() *fakeController { return &fakeController{status: teal.Status{App: "shop"}, onDeploy: playToGate} },
			code:    0,
			out:     []string{"v2  sha256:", "✓ health  0.3s", "release #7: v2 awaits release on green"},
		},
		{
			name:    "fails: the reason from teal status --json",
			version: "v2",
			ctl: func() *fakeController {
				return &fakeController{status: teal.Status{App: "shop"}, onDeploy: func(f *fakeController) {
					f.update(func(r *teal.Release) {
						r.Steps = append(r.Steps, testStep("health", teal.StepFailed, 400*time.Millisecond, "green/0: connection refused"))
						end(r, teal.OutcomeFailed, "health: green/0: connection refused")
					})
				}}
			},
			code: 1,
			out:  []string{"Release of v2 failed in pre-production: health: green/0: connection refused"},
		},
		{
			name:    "another release in progress",
			version: "v3",
			ctl: func() *fakeController {
				st, rel := statusFixture()
				return &fakeController{status: st, rel: rel,
					deployErr: teal.Errorf(teal.ErrConflict, "wait for it, or end it with teal promote or teal abort", "release #7 of v2 is in progress (awaiting-release)")}
			},
			code: 1,
			out:  []string{"Another release is in progress", "#7 v2 → green  awaiting-release  by cli:alice"},
			check: func(t *testing.T, ctl *fakeController) {
				if o := outcomeOf(ctl); o != "" {
					t.Fatalf("the other release's outcome = %q, want it left alone", o)
				}
			},
		},
		{
			name:    "times out: aborts",
			version: "v2",
			ctl:     func() *fakeController { return &fakeController{status: teal.Status{App: "shop"}} },
			edit: func(t *testing.T, script string) string {
				if !strings.Contains(script, "teal deploy") {
					return script
				}
				if !strings.Contains(script, "--timeout 30m") {
					t.Fatalf("the deploy step has no --timeout 30m:\n%s", script)
				}
				return strings.Replace(script, "--timeout 30m", "--timeout 1s", 1)
			},
			code: 1,
			out:  []string{"timed out after 1s", "Timed out waiting for v2; aborting it", "release #7 of v2 aborted"},
			check: func(t *testing.T, ctl *fakeController) {
				if o := outcomeOf(ctl); o != teal.OutcomeAborted {
					t.Fatalf("outcome = %q, want %q", o, teal.OutcomeAborted)
				}
			},
		},
	})
}

// TestExamples_Production runs the promote step for each situation it handles.
func TestExamples_Production(t *testing.T) {
	withPromote := func(version string, p func(f *fakeController) (*teal.Release, error)) func() *fakeController {
		return func() *fakeController {
			ctl := atGate(version)()
			ctl.promote = p
			return ctl
		}
	}
	runExampleCases(t, productionScripts(t), []exampleCase{
		{
			name:    "released",
			version: "v2",
			ctl:     withPromote("v2", promoteTo(teal.OutcomeReleased, "")),
			code:    0,
			out:     []string{"release #7: v2 promoted", "release #7: v2 is released on green"},
		},
		{
			name:    "rolled back after the switch",
			version: "v2",
			ctl:     withPromote("v2", promoteTo(teal.OutcomeRolledBack, "post_check: 7.5% of requests failed, over 1%")),
			code:    1,
			out:     []string{"post_check: 7.5% of requests failed", "was rolled back", "rolled-back"},
		},
		{
			name:    "refused by the release window",
			version: "v2",
			ctl: withPromote("v2", func(*fakeController) (*teal.Release, error) {
				return nil, teal.Errorf(teal.ErrRefused, "promote inside the window, or teal abort", "release.window: promotions are allowed mon-fri 09:00-17:00 Europe/Berlin")
			}),
			code: 1,
			out:  []string{"teal: release.window: promotions are allowed mon-fri 09:00-17:00", "refused (release.window)", "awaiting-release"},
		},
		{
			name:    "already released from the dashboard",
			version: "v2",
			ctl: func() *fakeController {
				ctl := atGate("v2")()
				ctl.rel.Phase = teal.PhaseReleased
				end(ctl.rel, teal.OutcomeReleased, "")
				return ctl
			},
			code: 0,
			out:  []string{"v2 is already released"},
			check: func(t *testing.T, ctl *fakeController) {
				if promoted(ctl) {
					t.Fatalf("promoted again: actors %v", ctl.actors)
				}
			},
		},
		{
			name:    "another release at the gate",
			version: "v3",
			ctl:     withPromote("v2", promoteTo(teal.OutcomeReleased, "")),
			code:    1,
			out:     []string{"v3 is not waiting at the gate (other: v2): nothing promoted"},
			check: func(t *testing.T, ctl *fakeController) {
				if promoted(ctl) {
					t.Fatalf("promoted another build's release: actors %v", ctl.actors)
				}
			},
		},
	})
}

// TestExamples_Abort runs the step that ends a release nobody approved.
func TestExamples_Abort(t *testing.T) {
	runExampleCases(t, abortScripts(t), []exampleCase{
		{
			name:    "ours at the gate",
			version: "v2",
			ctl:     atGate("v2"),
			code:    0,
			out:     []string{"release #7 of v2 aborted"},
			check: func(t *testing.T, ctl *fakeController) {
				if o := outcomeOf(ctl); o != teal.OutcomeAborted {
					t.Fatalf("outcome = %q, want %q", o, teal.OutcomeAborted)
				}
			},
		},
		{
			name:    "another build's",
			version: "v3",
			ctl:     atGate("v2"),
			code:    0,
			out:     []string{"v3 is not waiting at the gate (other: v2): nothing to abort"},
			check: func(t *testing.T, ctl *fakeController) {
				if o := outcomeOf(ctl); o != "" {
					t.Fatalf("outcome = %q, want the other release left alone", o)
				}
			},
		},
	})
}
