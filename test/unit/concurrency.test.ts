// src/concurrency.ts. oneAtATime: the runs of a reload never overlap, start in the order asked,
// and a failed run does not stop the next (every SIGHUP reload and the policy reload use it).
// mapInLanes: results in the items' order whatever order they finish in, never more than the
// limit in flight, and after a failure nothing new started and the first failure reported.

import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { mapInLanes, oneAtATime } from '../../src/concurrency.js'

describe('oneAtATime', () => {
  it('starts each run after the previous one settled, in the order asked, each with its own result', async () => {
    const events: string[] = []
    let n = 0
    let release!: () => void
    const first = new Promise<void>((resolve) => (release = resolve))
    const run = oneAtATime(async () => {
      const i = ++n
      events.push(`start ${i}`)
      if (i === 1) await first
      events.push(`end ${i}`)
      return i
    })
    const results = [run(), run(), run()]
    await new Promise((resolve) => setImmediate(resolve))
    // The second and third wait for the first, which has not finished.
    assert.deepEqual(events, ['start 1'])
    release()
    assert.deepEqual(await Promise.all(results), [1, 2, 3])
    assert.deepEqual(events, ['start 1', 'end 1', 'start 2', 'end 2', 'start 3', 'end 3'])
  })

  it('runs the next after a run that failed, and hands each caller its own outcome', async () => {
    let n = 0
    const run = oneAtATime(async () => {
      n++
      if (n === 1) throw new Error('the files were half-copied')
      return n
    })
    const failed = run()
    const next = run()
    await assert.rejects(failed, /half-copied/)
    assert.equal(await next, 2)
  })
})

describe('mapInLanes', () => {
  it('answers in the items’ order with at most `limit` in flight', async () => {
    let inFlight = 0
    let most = 0
    const items = [30, 5, 20, 1, 10, 2, 15, 3]
    const results = await mapInLanes(items, 3, async (ms) => {
      most = Math.max(most, ++inFlight)
      await sleep(ms)
      inFlight--
      return ms * 2
    })
    assert.deepEqual(results, items.map((ms) => ms * 2))
    assert.equal(most, 3)
  })

  it('handles no items, and a limit above the count or below one', async () => {
    assert.deepEqual(await mapInLanes([], 4, async () => 1), [])
    assert.deepEqual(await mapInLanes([1, 2], 10, async (n) => n + 1), [2, 3])
    assert.deepEqual(await mapInLanes([1, 2], 0, async (n) => n + 1), [2, 3])
  })

  it('starts nothing after a failure, lets the started settle, and rejects with the first failure', async () => {
    const started: number[] = []
    const settled: number[] = []
    const failing = mapInLanes([1, 2, 3, 4, 5, 6], 2, async (n) => {
      started.push(n)
      await sleep(n === 1 ? 1 : 20)
      settled.push(n)
      if (n === 1) throw new Error('one failed')
      if (n === 2) throw new Error('two failed later')
      return n
    })
    await assert.rejects(failing, /^Error: one failed$/)
    assert.deepEqual(started, [1, 2])
    assert.deepEqual(settled.sort(), [1, 2])
  })
})
