#!/usr/bin/env bash
# Issue 11's table (bench/gpu_ab_tc.sh) only where the lent machine is an H200, the card its targets name; on any
# other card it prints the card and stops, so that a call that finds an H100 costs only the machine's start.
# Pack as bench/gpu_ab_tc.sh says, and cp this file into .gpu/ too.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader)
echo "card: $card"
case "$card" in *H200*) exec bash .gpu/gpu_ab_tc.sh ;; *) exit 3 ;; esac
