#!/usr/bin/env bash
# terraform/launch.sh COLOR VERSION ARTIFACT INSTANCES — teal's run.launch on AWS, with
# Terraform: applies main.tf in the colour's workspace, waits until the colour's load balancer
# has the instances in service, and prints `terraform output -json instances` — already the
# JSON teal wants — on stdout. Everything else goes to stderr (teal's hook log).
#
# terraform apply is idempotent: run again after an interruption it converges on the same
# instances. The workspace is chosen with TF_WORKSPACE, not `workspace select`, so that both
# colours' hooks can run in this directory at once.
set -euo pipefail

color=$1 version=$2 artifact=$3 count=$4
cd "$(dirname "$0")"
exec 3>&1 1>&2 # fd 3 is stdout, kept for the JSON

ami=$(tr -d '[:space:]' <"$artifact")
if [[ $ami != ami-* ]]; then
	echo "artifact $artifact holds '$ami', not an AMI id: push a file holding the id (ami-...)" >&2
	exit 1
fi

export TF_IN_AUTOMATION=1 TF_INPUT=0
unset TF_WORKSPACE
if ! terraform workspace list | tr -d ' *' | grep -x "$color" >/dev/null; then
	terraform workspace new "$color"
fi
export TF_WORKSPACE=$color

terraform apply -auto-approve -input=false \
	-var "app=${TEAL_APP:?set by teal}" -var "color=$color" -var "release=$version" \
	-var "ami_id=$ami" -var "instances=$count"

# The ALB must have them in service before teal may point the record at it.
read -r -a targets <<<"$(terraform output -raw targets)"
aws elbv2 wait target-in-service --target-group-arn "$(terraform output -raw target_group_arn)" \
	--targets "${targets[@]}"

terraform output -json instances >&3
