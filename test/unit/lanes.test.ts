// mapInLanes: results in the items' order whatever order they finish in, never more than the
// limit in flight, and after a failure nothing new started and the first failure reported.

import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, it } from 'node:test'
import { mapInLanes } from '../../src/lanes.js'

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
