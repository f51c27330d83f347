package hook

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"teal.dev/teal"
)

// examples/aws is documented, not run against AWS here. These tests keep it true: its
// teal.yaml is a valid config, its scripts are valid bash, and they work through this
// Provider against stand-ins for the aws and terraform commands.

const exampleDir = "../examples/aws"

// exampleEnv is what the example's teal.yaml reads from the environment.
var exampleEnv = map[string]string{
	"TEAL_PRIVATE_IP":        "10.0.0.10",
	"AWS_REGION":             "eu-west-1",
	"SUBNET_IDS":             "subnet-a,subnet-b",
	"SECURITY_GROUP_ID":      "sg-1",
	"TARGET_GROUP_ARN_BLUE":  "arn:tg/blue",
	"TARGET_GROUP_ARN_GREEN": "arn:tg/green",
	"BLUE_ALB_DNS_NAME":      "shop-blue-1.eu-west-1.elb.amazonaws.com",
	"GREEN_ALB_DNS_NAME":     "shop-green-2.eu-west-1.elb.amazonaws.com",
	"HOSTED_ZONE_ID":         "Z123",
}

func exampleConfig(t *testing.T, env map[string]string) (teal.Config, error) {
	t.Helper()
	f, err := os.Open(filepath.Join(exampleDir, "teal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return teal.ParseConfig(f, "examples/aws/teal.yaml", func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
}

func TestExampleAWS_Config(t *testing.T) {
	cfg, err := exampleConfig(t, exampleEnv)
	if err != nil {
		t.Fatalf("examples/aws/teal.yaml: %v", err)
	}
	if cfg.Provider != "exec" || cfg.DNS.Provider != "route53" || cfg.DNS.Route53.HostedZoneID != "Z123" {
		t.Fatalf("provider %q, dns %q zone %q; want exec, route53, Z123", cfg.Provider, cfg.DNS.Provider, cfg.DNS.Route53.HostedZoneID)
	}
	if want := []string{"./launch.sh", "{color}", "{version}", "{artifact}", "{instances}"}; !slices.Equal(cfg.Run.Launch, want) {
		t.Fatalf("run.launch = %q, want %q", cfg.Run.Launch, want)
	}
	if want := []string{"./terminate.sh", "{color}", "{version}"}; !slices.Equal(cfg.Run.Terminate, want) {
		t.Fatalf("run.terminate = %q, want %q", cfg.Run.Terminate, want)
	}
	// Its header says teal refuses to start without its variables.
	env := make(map[string]string)
	for k, v := range exampleEnv {
		if k != "SUBNET_IDS" {
			env[k] = v
		}
	}
	if _, err := exampleConfig(t, env); err == nil || !strings.Contains(err.Error(), "SUBNET_IDS") {
		t.Fatalf("examples/aws/teal.yaml without SUBNET_IDS = %v, want an error naming it", err)
	}
}

func TestExampleAWS_ScriptsAreValidBash(t *testing.T) {
	var scripts []string
	err := filepath.WalkDir(exampleDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".sh") {
			scripts = append(scripts, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) != 4 {
		t.Fatalf("scripts = %q, want launch.sh and terminate.sh, and the same under terraform/", scripts)
	}
	for _, s := range scripts {
		fi, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&0o111 != 0o111 {
			t.Errorf("%s is %s, want it executable: teal runs it directly", s, fi.Mode())
		}
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
	}
}

// fakeAWS stands in for the AWS CLI: it records each call in $FAKE_STATE/calls and answers
// the calls of the example's hooks, keeping instances as "id ip color version" lines.
const fakeAWS = `#!/usr/bin/env bash
set -euo pipefail
s=$FAKE_STATE
echo "aws $*" >>"$s/calls"
touch "$s/instances"
flag() { local f=$1; shift; while (($#)); do if [[ $1 == "$f" ]]; then echo "$2"; return; fi; shift; done; }
case "$1 $2" in
"ec2 run-instances")
	n=$(($(cat "$s/n" 2>/dev/null || echo 0) + 1))
	echo "$n" >"$s/n"
	tags=$(flag --tag-specifications "$@")
	color=$(grep -o '"teal:color","Value":"[a-z]*"' <<<"$tags" | cut -d'"' -f6)
	version=$(grep -o '"teal:version","Value":"[^"]*"' <<<"$tags" | cut -d'"' -f6)
	printf 'i-%06d 10.0.%d.%d %s %s\n' "$n" "$n" "$n" "$color" "$version" >>"$s/instances"
	printf 'i-%06d\n' "$n" ;;
"ec2 describe-instances")
	if ids=$(flag --instance-ids "$@"); [[ -n $ids ]]; then
		shift 2
		while (($#)); do
			[[ $1 == --* ]] || { id=$1; awk -v id="$id" '$1 == id { print $1 "\t" $2 }' "$s/instances"; }
			shift
		done
	else
		color=$(printf '%s\n' "$@" | sed -n 's/^Name=tag:teal:color,Values=//p')
		version=$(printf '%s\n' "$@" | sed -n 's/^Name=tag:teal:version,Values=//p')
		awk -v c="$color" -v v="$version" '$3 == c && $4 == v { printf "%s\t", $1 }' "$s/instances"
		echo
	fi ;;
"ec2 terminate-instances")
	shift 2
	for id in "$@"; do if [[ $id == i-* ]]; then sed -i "/^$id /d" "$s/instances"; fi; done ;;
"ec2 wait" | "elbv2 register-targets" | "elbv2 deregister-targets" | "elbv2 wait") ;;
*) echo "fake aws: unexpected call: $*" >&2; exit 1 ;;
esac
`

func TestExampleAWS_CLIHooks(t *testing.T) {
	fake := fakeTools(t, map[string]string{"aws": fakeAWS})
	cfg, err := exampleConfig(t, exampleEnv)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs(exampleDir)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProvider(cfg.App, cfg.Run, dir, t.TempDir())
	ctx := context.Background()
	req := teal.LaunchRequest{Color: teal.Blue, Version: "v42", Artifact: amiFile(t, "ami-0123456789abcdef0\n")}

	insts, err := p.Launch(ctx, req)
	if err != nil {
		t.Fatalf("Launch: %v\ncalls:\n%s", err, readFile(t, filepath.Join(fake, "calls")))
	}
	want := []teal.Instance{
		{Color: teal.Blue, Index: 0, Addr: "10.0.1.1:8080", Identity: "i-000001"},
		{Color: teal.Blue, Index: 1, Addr: "10.0.2.2:8080", Identity: "i-000002"},
	}
	for i := range insts {
		insts[i].Started = want[i].Started
	}
	if !slices.Equal(insts, want) {
		t.Fatalf("Launch = %+v, want %+v", insts, want)
	}
	calls := readFile(t, filepath.Join(fake, "calls"))
	for _, c := range []string{
		"aws ec2 describe-instances --filters Name=tag:teal:app,Values=shop Name=tag:teal:color,Values=blue Name=tag:teal:version,Values=v42", // leftovers first
		"aws ec2 run-instances --image-id ami-0123456789abcdef0 --instance-type t3.small --subnet-id subnet-a --security-group-ids sg-1 ",
		"--subnet-id subnet-b ",
		`{"Key":"teal:app","Value":"shop"},{"Key":"teal:color","Value":"blue"},{"Key":"teal:version","Value":"v42"}`,
		"aws ec2 wait instance-running --instance-ids i-000001 i-000002",
		"aws elbv2 register-targets --target-group-arn arn:tg/blue --targets Id=i-000001,Port=8080 Id=i-000002,Port=8080",
		"aws elbv2 wait target-in-service --target-group-arn arn:tg/blue",
	} {
		if !strings.Contains(calls, c) {
			t.Fatalf("launch.sh made no call with %q; calls:\n%s", c, calls)
		}
	}

	if err := p.Stop(ctx, teal.Blue); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	calls = readFile(t, filepath.Join(fake, "calls"))
	for _, c := range []string{
		"aws elbv2 deregister-targets --target-group-arn arn:tg/blue --targets Id=i-000001 Id=i-000002",
		"aws ec2 terminate-instances --instance-ids i-000001 i-000002",
		"aws ec2 wait instance-terminated --instance-ids i-000001 i-000002",
	} {
		if !strings.Contains(calls, c) {
			t.Fatalf("terminate.sh made no call with %q; calls:\n%s", c, calls)
		}
	}
	if left := readFile(t, filepath.Join(fake, "instances")); left != "" {
		t.Fatalf("instances left after Stop:\n%s", left)
	}

	req.Artifact = amiFile(t, "v42\n")
	if _, err := p.Launch(ctx, req); err == nil || !strings.Contains(err.Error(), "holds 'v42', not an AMI id") {
		t.Fatalf("Launch with an artifact that is not an AMI id = %v, want an error saying so", err)
	}
}

// fakeTerraform stands in for terraform: workspaces are files under $FAKE_STATE/ws, apply
// records its workspace and variables, output answers from them.
const fakeTerraform = `#!/usr/bin/env bash
set -euo pipefail
s=$FAKE_STATE
echo "terraform $* (TF_WORKSPACE=${TF_WORKSPACE:-})" >>"$s/calls"
mkdir -p "$s/ws"
case "$1" in
workspace)
	[[ -z ${TF_WORKSPACE:-} ]] || { echo "TF_WORKSPACE is set" >&2; exit 1; }
	case "$2" in
	list) echo "* default"; for w in "$s"/ws/*; do [[ -e $w ]] && echo "  $(basename "$w")"; done ;;
	new) touch "$s/ws/$3" ;;
	esac ;;
apply)
	[[ -e $s/ws/$TF_WORKSPACE ]] || { echo "no workspace $TF_WORKSPACE" >&2; exit 1; }
	echo "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." ;;
output)
	case "$3" in
	targets) echo -n "Id=i-0a,Port=8080 Id=i-0b,Port=8080" ;;
	target_group_arn) echo -n "arn:tg/$TF_WORKSPACE" ;;
	instances) echo '[{"addr":"10.0.1.5:8080","id":"i-0a"},{"addr":"10.0.2.6:8080","id":"i-0b"}]' ;;
	esac ;;
destroy) echo "Destroy complete! Resources: 4 destroyed." ;;
*) echo "fake terraform: unexpected call: $*" >&2; exit 1 ;;
esac
`

func TestExampleAWS_TerraformHooks(t *testing.T) {
	fake := fakeTools(t, map[string]string{"aws": fakeAWS, "terraform": fakeTerraform})
	cfg, err := exampleConfig(t, exampleEnv)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs(exampleDir)
	if err != nil {
		t.Fatal(err)
	}
	// As README.md says for the Terraform variant.
	run := cfg.Run
	run.Launch = []string{"./terraform/launch.sh", "{color}", "{version}", "{artifact}", "{instances}"}
	run.Terminate = []string{"./terraform/terminate.sh", "{color}", "{version}"}
	p := NewProvider(cfg.App, run, dir, t.TempDir())
	ctx := context.Background()
	req := teal.LaunchRequest{Color: teal.Green, Version: "v7", Artifact: amiFile(t, "ami-0fedcba\n")}

	// terminate of a colour without a workspace has nothing to do.
	if _, err := p.Adopt(ctx, req, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx, teal.Green); err != nil {
		t.Fatalf("Stop without a workspace: %v", err)
	}
	insts, err := p.Launch(ctx, req)
	if err != nil {
		t.Fatalf("Launch: %v\ncalls:\n%s", err, readFile(t, filepath.Join(fake, "calls")))
	}
	if len(insts) != 2 || insts[0].Addr != "10.0.1.5:8080" || insts[1].Identity != "i-0b" {
		t.Fatalf("Launch = %+v, want terraform's output", insts)
	}
	if err := p.Stop(ctx, teal.Green); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	calls := readFile(t, filepath.Join(fake, "calls"))
	for _, c := range []string{
		"terraform workspace new green (TF_WORKSPACE=)",
		"terraform apply -auto-approve -input=false -var app=shop -var color=green -var release=v7 -var ami_id=ami-0fedcba -var instances=2 (TF_WORKSPACE=green)",
		"aws elbv2 wait target-in-service --target-group-arn arn:tg/green --targets Id=i-0a,Port=8080 Id=i-0b,Port=8080",
		"terraform destroy -auto-approve -input=false -var app=shop -var color=green -var release=v7 -var ami_id=ami-00000000000000000 (TF_WORKSPACE=green)",
	} {
		if !strings.Contains(calls, c) {
			t.Fatalf("the terraform hooks made no call %q; calls:\n%s", c, calls)
		}
	}
	if n := strings.Count(calls, "terraform destroy"); n != 1 {
		t.Fatalf("terraform destroy ran %d times, want once (not for the colour without a workspace):\n%s", n, calls)
	}
}

// fakeTools puts the scripts, by command name, first in PATH and returns the directory
// where they keep their state.
func fakeTools(t *testing.T, tools map[string]string) string {
	t.Helper()
	bin, state := t.TempDir(), t.TempDir()
	for name, script := range tools {
		writeFile(t, filepath.Join(bin, name), script, 0o755)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_STATE", state)
	return state
}

// amiFile writes an artifact: a file holding an AMI id.
func amiFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ami.txt")
	writeFile(t, path, content, 0o444)
	return path
}
