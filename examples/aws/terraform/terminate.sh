#!/usr/bin/env bash
# terraform/terminate.sh COLOR VERSION — teal's run.terminate on AWS, with Terraform: destroys
# what main.tf created in the colour's workspace. Idempotent, as teal requires: destroying an
# empty workspace, or one that does not exist, succeeds.
set -euo pipefail

color=$1 version=$2
cd "$(dirname "$0")"

export TF_IN_AUTOMATION=1 TF_INPUT=0
unset TF_WORKSPACE
if ! terraform workspace list | tr -d ' *' | grep -x "$color" >/dev/null; then
	echo "no workspace $color: nothing to destroy"
	exit 0
fi
export TF_WORKSPACE=$color

# Destroying needs no image: any AMI id will do for the required variable.
terraform destroy -auto-approve -input=false \
	-var "app=${TEAL_APP:?set by teal}" -var "color=$color" -var "release=$version" \
	-var "ami_id=ami-00000000000000000"
