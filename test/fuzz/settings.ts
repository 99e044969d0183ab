// Shared by the fuzz suites: a fixed seed, so that a failure in CI replays the same inputs, and a
// small run count, so that each property takes a few seconds. CUSTOMS_FUZZ_RUNS multiplies the
// counts for a longer run by hand; CUSTOMS_FUZZ_SEED tries other inputs.
//   CUSTOMS_FUZZ_RUNS=50 node scripts/run-tests.mjs fuzz/

import type { Parameters } from 'fast-check'

const SEED = Number(process.env.CUSTOMS_FUZZ_SEED ?? 20_261_129)
const FACTOR = Math.max(1, Number(process.env.CUSTOMS_FUZZ_RUNS ?? 1) || 1)

/** fast-check parameters: `runs` inputs (times CUSTOMS_FUZZ_RUNS), the fixed seed, no time limit hit in CI. */
export function fuzz<T>(runs: number): Parameters<T> {
  // interruptAfterTimeLimit bounds a property whose inputs turn out slow: it stops, not fails.
  return { seed: SEED, numRuns: runs * FACTOR, interruptAfterTimeLimit: 20_000 * FACTOR, markInterruptAsFailure: false }
}

/** Runs `fn` and returns what it threw, or undefined. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn()
    return undefined
  } catch (err) {
    return err
  }
}
