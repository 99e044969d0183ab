#!/usr/bin/env -S node --max-semi-space-size=8 --no-memory-reducer
// The installed `customs` command: runs the compiled entry point (npm ci builds it via `prepare`),
// with the node flags of the image's ENTRYPOINT (a smaller young generation, no memory reducer:
// docs/operating.md).
import '../dist/main.js'
