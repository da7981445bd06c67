#!/bin/sh
# FILL_CMD for a pre-filled store: "append N tokens sampled uniformly from $TOKEN_SOURCE to OUT".
#   TOKEN_SOURCE=all-tokens.txt FILL_CMD=bench/sample_tokens.sh  (called as: $FILL_CMD N OUT)
set -eu
shuf -n "$1" "$TOKEN_SOURCE" >>"$2"
