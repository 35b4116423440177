#!/usr/bin/env bash
# The paper's protocol on svhn; flags as scripts/reproduce.sh (--dry-run prints the commands).
exec bash "$(dirname "$0")/reproduce.sh" svhn "$@"
