#!/bin/sh
# Publishes the SSH host key of each running instance tagged KEY=VALUE as the SSM parameter
# /pulumi-backlog/host-keys/<instance-id>, read from the instance's console output, where cloud-init
# prints the keys it generated at first boot between "-----BEGIN SSH HOST KEY KEYS-----" and
# "-----END SSH HOST KEY KEYS-----". The console output comes from EC2's API (the hypervisor), not
# from the network path to the instance, which is what makes it a trustworthy source for pinning.
#
# Usage: ./publish-host-keys.sh Role web [/pulumi-backlog/host-keys/]
# Needs: the AWS CLI with ec2:DescribeInstances, ec2:GetConsoleOutput and ssm:PutParameter.
# Note: the console output can take a few minutes to appear after a launch; --latest needs a Nitro
# instance (drop it on older types). Check each key once, e.g. against `ssh-keyscan` from a
# machine you trust in the VPC, before relying on it.
set -eu
key=${1:?tag key}; value=${2:?tag value}; prefix=${3:-/pulumi-backlog/host-keys/}
ids=$(aws ec2 describe-instances \
  --filters "Name=tag:$key,Values=$value" Name=instance-state-name,Values=running \
  --query 'Reservations[].Instances[].InstanceId' --output text)
for id in $ids; do
  hostkey=$(aws ec2 get-console-output --instance-id "$id" --latest --output text \
    | tr -d '\r' \
    | sed -n '/-----BEGIN SSH HOST KEY KEYS-----/,/-----END SSH HOST KEY KEYS-----/p' \
    | grep -o 'ssh-ed25519 [A-Za-z0-9+/=]*' | head -n 1 || true)
  if [ -z "$hostkey" ]; then
    echo "$id: no ed25519 key in the console output yet; try again in a few minutes" >&2
    continue
  fi
  aws ssm put-parameter --name "$prefix$id" --type String --value "$hostkey" --overwrite > /dev/null
  echo "$id: $hostkey"
done
