#!/usr/bin/env bash
# terminate.sh COLOR VERSION — teal's run.terminate on AWS, with the AWS CLI.
#
# Removes the colour's instances of that version, found by their tags (teal:app, teal:color,
# teal:version): takes them out of the colour's target group, terminates them and waits until
# they are gone. Idempotent, as teal requires: when nothing is left it succeeds, so teal can
# run it again after a failure, and launch.sh runs it first to clear an interrupted attempt.
#
# Environment: as launch.sh (AWS_DEFAULT_REGION, TARGET_GROUP_ARN_BLUE, TARGET_GROUP_ARN_GREEN).
set -euo pipefail

color=$1 version=$2
app=${TEAL_APP:?set by teal}
case $color in
blue) tg=${TARGET_GROUP_ARN_BLUE:?} ;;
green) tg=${TARGET_GROUP_ARN_GREEN:?} ;;
*) echo "colour $color: want blue or green" >&2; exit 2 ;;
esac

ids=$(aws ec2 describe-instances \
	--filters "Name=tag:teal:app,Values=$app" "Name=tag:teal:color,Values=$color" \
	"Name=tag:teal:version,Values=$version" \
	"Name=instance-state-name,Values=pending,running,stopping,stopped" \
	--query 'Reservations[].Instances[].InstanceId' --output text)
read -r -d '' -a ids <<<"$ids" || true # tabs or newlines between ids, whatever the CLI prints
if ((${#ids[@]} == 0)); then
	echo "no instances of $app $color $version left"
	exit 0
fi

targets=()
for id in "${ids[@]}"; do targets+=("Id=$id"); done
# Terminating an instance takes it out of its target groups anyway; deregistering first stops
# new requests at once. An instance that never got registered is no reason to stop here.
aws elbv2 deregister-targets --target-group-arn "$tg" --targets "${targets[@]}" ||
	echo "deregister from $tg failed; terminating anyway"
aws ec2 terminate-instances --instance-ids "${ids[@]}" --output text >/dev/null
aws ec2 wait instance-terminated --instance-ids "${ids[@]}"
echo "terminated ${ids[*]}"
