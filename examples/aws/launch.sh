#!/usr/bin/env bash
# launch.sh COLOR VERSION ARTIFACT INSTANCES — teal's run.launch on AWS, with the AWS CLI.
#
# Starts INSTANCES EC2 instances of the version's AMI (ARTIFACT is a file holding the AMI id),
# spread over SUBNET_IDS and tagged teal:app, teal:color and teal:version; waits until they
# run; registers them in the colour's target group and waits until its load balancer has them
# in service; then prints them on stdout as teal wants them:
#
#   [{"addr":"10.0.1.23:8080","id":"i-0abc"},{"addr":"10.0.2.41:8080","id":"i-0def"}]
#
# stdout carries only that JSON: everything else goes to stderr, which teal keeps in
# data_dir/logs/hook-COLOR.log. Any failure exits non-zero; teal then runs terminate.sh,
# which finds whatever was created by its tags.
#
# Environment (run.env in teal.yaml): AWS_DEFAULT_REGION, SUBNET_IDS (comma-separated),
# SECURITY_GROUP_ID, TARGET_GROUP_ARN_BLUE, TARGET_GROUP_ARN_GREEN, INSTANCE_TYPE (= t3.small),
# APP_PORT (= 8080), INSTANCE_PROFILE (optional). teal sets TEAL_APP and, when a database is
# configured, DATABASE_URL.
set -euo pipefail

color=$1 version=$2 artifact=$3 count=$4
app=${TEAL_APP:?set by teal}
: "${SUBNET_IDS:?}" "${SECURITY_GROUP_ID:?}"
instance_type=${INSTANCE_TYPE:-t3.small}
port=${APP_PORT:-8080}
case $color in
blue) tg=${TARGET_GROUP_ARN_BLUE:?} ;;
green) tg=${TARGET_GROUP_ARN_GREEN:?} ;;
*) echo "colour $color: want blue or green" >&2; exit 2 ;;
esac

exec 3>&1 1>&2 # fd 3 is stdout, kept for the JSON; anything else printed goes to the log

ami=$(tr -d '[:space:]' <"$artifact")
if [[ $ami != ami-* ]]; then
	echo "artifact $artifact holds '$ami', not an AMI id: push a file holding the id (ami-...)" >&2
	exit 1
fi

# An interrupted earlier attempt (teal restarted meanwhile) may have left instances of this
# colour and version: start over.
"$(dirname "$0")/terminate.sh" "$color" "$version"

# The instance reads its colour and version from its user data; its secrets (DATABASE_URL)
# are better fetched from SSM Parameter Store than put here, where DescribeInstanceAttribute
# shows them.
user_data=$(printf '#!/bin/sh\ncat >/etc/default/%s <<EOT\nTEAL_COLOR=%s\nTEAL_VERSION=%s\nPORT=%s\nEOT\n' \
	"$app" "$color" "$version" "$port")
tags=$(printf '[{"ResourceType":"instance","Tags":[{"Key":"Name","Value":"%s-%s-%s"},{"Key":"teal:app","Value":"%s"},{"Key":"teal:color","Value":"%s"},{"Key":"teal:version","Value":"%s"}]}]' \
	"$app" "$color" "$version" "$app" "$color" "$version")

IFS=, read -r -a subnets <<<"$SUBNET_IDS"
ids=()
for ((i = 0; i < count; i++)); do
	subnet=${subnets[i % ${#subnets[@]}]} # one AZ after the other
	id=$(aws ec2 run-instances \
		--image-id "$ami" \
		--instance-type "$instance_type" \
		--subnet-id "$subnet" \
		--security-group-ids "$SECURITY_GROUP_ID" \
		${INSTANCE_PROFILE:+--iam-instance-profile "Name=$INSTANCE_PROFILE"} \
		--user-data "$user_data" \
		--tag-specifications "$tags" \
		--query 'Instances[0].InstanceId' --output text)
	echo "started $id in $subnet from $ami"
	ids+=("$id")
done

aws ec2 wait instance-running --instance-ids "${ids[@]}"
echo "running: ${ids[*]}"

targets=()
for id in "${ids[@]}"; do targets+=("Id=$id,Port=$port"); done
aws elbv2 register-targets --target-group-arn "$tg" --targets "${targets[@]}"
# The ALB must have them in service before teal may point the record at it.
aws elbv2 wait target-in-service --target-group-arn "$tg" --targets "${targets[@]}"
echo "in service in $tg"

json=
while read -r id ip; do
	json+="${json:+,}{\"addr\":\"$ip:$port\",\"id\":\"$id\"}"
done < <(aws ec2 describe-instances --instance-ids "${ids[@]}" \
	--query 'Reservations[].Instances[].[InstanceId,PrivateIpAddress]' --output text)
echo "[$json]" >&3
