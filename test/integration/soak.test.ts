// The short soak (bench/soak.ts): 40 s of mixed traffic from 16 clients over 100 images through
// Customs with a real docker-registry upstream. Asserts only what does not depend on the machine's
// speed: every answer is a 200 or the expected 403 of a denied image, and open file descriptors do
// not grow. The figures (latency, RSS) are printed, not asserted; `npm run soak` is the benchmark.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { formatSoak, runSoak, type SoakOptions } from '../../bench/soak.js'

describe('a short soak of mixed traffic', () => {
  it('answers only 200s and expected denials, with file descriptors flat', async () => {
    const options: SoakOptions = { durationMs: 40_000, images: 100, clients: 16, sampleMs: 2000 }
    const result = await runSoak(options)
    console.log(formatSoak(result, options))
    assert.equal(result.unexpected, 0, result.examples.join('\n'))
    assert.ok((result.statuses['manifest 403'] ?? 0) > 0, 'denied images were asked for, and denied')
    assert.ok((result.statuses['blob 200'] ?? 0) > 0)
    // Descriptors after warm-up against the end: a leak of one per request would be thousands.
    const warm = result.samples[Math.floor(result.samples.length / 4)]
    const last = result.samples[result.samples.length - 1]
    assert.ok(warm !== undefined && last !== undefined)
    assert.ok(last.fds - warm.fds <= 20, `descriptors grew from ${warm.fds} to ${last.fds}`)
  })
})
