#!/usr/bin/env node
// The installed `customs` command: runs the compiled entry point (npm ci builds it via `prepare`).
import '../dist/main.js'
