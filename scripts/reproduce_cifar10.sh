#!/usr/bin/env bash
# The paper's protocol on cifar10; flags as scripts/reproduce.sh (--dry-run prints the commands).
exec bash "$(dirname "$0")/reproduce.sh" cifar10 "$@"
