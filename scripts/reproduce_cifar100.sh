#!/usr/bin/env bash
# The paper's protocol on cifar100; flags as scripts/reproduce.sh (--dry-run prints the commands).
exec bash "$(dirname "$0")/reproduce.sh" cifar100 "$@"
