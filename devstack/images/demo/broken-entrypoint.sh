#!/bin/sh
# PID 1 of hostyard/demo:broken: a start-up migration that fails before the
# server starts, the way a real app stops on an incompatible schema.
echo "demo: running migrations"
echo "migration failed: schema version 3 expected" >&2
exit 1
