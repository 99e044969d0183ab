// oneAtATime: the runs of a reload never overlap, start in the order asked, and a failed run
// does not stop the next (src/serial.ts; used by every SIGHUP reload and the policy reload).

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { oneAtATime } from '../../src/serial.js'

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
