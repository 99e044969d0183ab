// PolicyReloader: a reload asked while another is loading runs after it, so the set in force is
// what the folder held when the last reload was asked, never an older reading.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { EMPTY_POLICY_SET, PolicyEngine } from '../../../src/policy/engine.js'
import { PolicyReloader } from '../../../src/policy/reload.js'
import type { PolicySet } from '../../../src/policy/types.js'
import { createLogger } from '../../../src/observability/logger.js'

const set = (revision: string): PolicySet => ({ ...EMPTY_POLICY_SET, revision })

describe('PolicyReloader', () => {
  it('runs a reload asked during a load after it, and the later reading is the one in force', async () => {
    let folder = 'r1'
    let finishFirst!: () => void
    const firstRead = new Promise<void>((resolve) => (finishFirst = resolve))
    let loads = 0
    const engine = new PolicyEngine(set('r0'))
    const reloader = new PolicyReloader(
      engine,
      async () => {
        loads++
        const read = folder
        // The first load read the folder, then takes its time validating.
        if (loads === 1) await firstRead
        return set(read)
      },
      createLogger({ level: 'silent' })
    )
    const first = reloader.reload()
    // The operator changes the folder and sends SIGHUP while the first load is still running.
    await new Promise((resolve) => setImmediate(resolve))
    folder = 'r2'
    const second = reloader.reload()
    finishFirst()
    assert.deepEqual(await first, { ok: true, revision: 'r1' })
    assert.deepEqual(await second, { ok: true, revision: 'r2' })
    assert.equal(loads, 2)
    assert.equal(engine.current().revision, 'r2')
  })
})
