// The per-upstream circuit breaker: opening after consecutive failures, refusing while open, the
// single half-open probe after the cooldown, and the state changes it reports.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CircuitBreaker } from '../../../src/upstream/breaker.js'
import type { BreakerState } from '../../../src/upstream/breaker.js'

interface Rig {
  breaker: CircuitBreaker
  changes: BreakerState[]
  advance: (ms: number) => void
}

function rig(failures = 3, cooldown = 1000): Rig {
  let now = 1_000_000
  const changes: BreakerState[] = []
  const breaker = new CircuitBreaker({
    failures,
    cooldown,
    now: () => now,
    onChange: (s) => changes.push(s),
  })
  return { breaker, changes, advance: (ms) => void (now += ms) }
}

function fail(breaker: CircuitBreaker, n: number): void {
  for (let i = 0; i < n; i++) breaker.failure()
}

describe('CircuitBreaker', () => {
  describe('when new', () => {
    it('returns closed and lets every request through', () => {
      const { breaker, changes } = rig()
      assert.equal(breaker.state, 'closed')
      for (let i = 0; i < 10; i++) assert.equal(breaker.tryAcquire(), true)
      assert.deepEqual(changes, [])
    })
  })

  describe('when failures stay under the threshold', () => {
    it('returns closed', () => {
      const { breaker, changes } = rig(3)
      fail(breaker, 2)
      assert.equal(breaker.state, 'closed')
      assert.equal(breaker.tryAcquire(), true)
      assert.deepEqual(changes, [])
    })
  })

  describe('when a success comes between failures', () => {
    it('returns closed: the count is of consecutive failures only', () => {
      const { breaker } = rig(3)
      fail(breaker, 2)
      breaker.success()
      fail(breaker, 2)
      assert.equal(breaker.state, 'closed')
      breaker.failure()
      assert.equal(breaker.state, 'open')
    })
  })

  describe('when N consecutive failures happen', () => {
    it('returns open, refuses requests and reports the change once', () => {
      const { breaker, changes } = rig(3)
      fail(breaker, 3)
      assert.equal(breaker.state, 'open')
      assert.equal(breaker.tryAcquire(), false)
      assert.equal(breaker.tryAcquire(), false)
      assert.deepEqual(changes, ['open'])
    })

    it('returns open after a threshold of one at the first failure', () => {
      const { breaker } = rig(1)
      breaker.failure()
      assert.equal(breaker.state, 'open')
    })

    it('does not report open again for further failures while open', () => {
      const { breaker, changes } = rig(2)
      fail(breaker, 5)
      assert.deepEqual(changes, ['open'])
    })
  })

  describe('when open', () => {
    it('returns the time left of the cooldown from retryAfterMs', () => {
      const { breaker, advance } = rig(1, 1000)
      breaker.failure()
      assert.equal(breaker.retryAfterMs(), 1000)
      advance(400)
      assert.equal(breaker.retryAfterMs(), 600)
      advance(10_000)
      assert.equal(breaker.retryAfterMs(), 0)
    })

    it('still refuses just before the cooldown ends', () => {
      const { breaker, advance } = rig(1, 1000)
      breaker.failure()
      advance(999)
      assert.equal(breaker.tryAcquire(), false)
      assert.equal(breaker.state, 'open')
    })

    it('restarts the cooldown on a failure reported while open', () => {
      const { breaker, advance } = rig(1, 1000)
      breaker.failure()
      advance(900)
      breaker.failure()
      advance(500)
      assert.equal(breaker.state, 'open')
      assert.equal(breaker.retryAfterMs(), 500)
    })
  })

  describe('when the cooldown has passed', () => {
    it('returns half-open and lets exactly one probe through', () => {
      const { breaker, changes, advance } = rig(2, 1000)
      fail(breaker, 2)
      advance(1000)
      assert.equal(breaker.state, 'half-open')
      assert.equal(breaker.tryAcquire(), true)
      assert.equal(breaker.tryAcquire(), false)
      assert.equal(breaker.tryAcquire(), false)
      assert.deepEqual(changes, ['open', 'half-open'])
    })

    it('moves to half-open on tryAcquire without reading state first', () => {
      const { breaker, advance } = rig(1, 1000)
      breaker.failure()
      advance(1000)
      assert.equal(breaker.tryAcquire(), true)
      assert.equal(breaker.state, 'half-open')
      assert.equal(breaker.tryAcquire(), false)
    })

    it('closes when the probe succeeds, and lets everything through again', () => {
      const { breaker, changes, advance } = rig(2, 1000)
      fail(breaker, 2)
      advance(1000)
      assert.equal(breaker.tryAcquire(), true)
      breaker.success()
      assert.equal(breaker.state, 'closed')
      for (let i = 0; i < 5; i++) assert.equal(breaker.tryAcquire(), true)
      assert.deepEqual(changes, ['open', 'half-open', 'closed'])
    })

    it('needs N fresh failures to open again after the probe closed it', () => {
      const { breaker, advance } = rig(3, 1000)
      fail(breaker, 3)
      advance(1000)
      breaker.tryAcquire()
      breaker.success()
      fail(breaker, 2)
      assert.equal(breaker.state, 'closed')
      breaker.failure()
      assert.equal(breaker.state, 'open')
    })

    it('re-opens at once when the probe fails, for a whole new cooldown', () => {
      const { breaker, changes, advance } = rig(3, 1000)
      fail(breaker, 3)
      advance(1500)
      assert.equal(breaker.tryAcquire(), true)
      breaker.failure()
      assert.equal(breaker.state, 'open')
      assert.equal(breaker.tryAcquire(), false)
      assert.equal(breaker.retryAfterMs(), 1000)
      advance(999)
      assert.equal(breaker.tryAcquire(), false)
      advance(1)
      assert.equal(breaker.tryAcquire(), true)
      assert.deepEqual(changes, ['open', 'half-open', 'open', 'half-open'])
    })
  })

  describe('when no clock is injected', () => {
    it('returns closed and opens on real time', () => {
      const breaker = new CircuitBreaker({ failures: 1, cooldown: 60_000 })
      breaker.failure()
      assert.equal(breaker.state, 'open')
      assert.ok(breaker.retryAfterMs() > 59_000)
    })
  })
})

describe('CircuitBreaker.since', () => {
  it('is the creation time while closed, the opening time while open, and the end of the cooldown once half-open', () => {
    const { breaker, advance } = rig(1, 1000)
    assert.equal(breaker.since, 1_000_000)
    advance(500)
    breaker.failure()
    assert.equal(breaker.since, 1_000_500)
    // Nobody looks until well after the cooldown: half-open still dates from its end.
    advance(5000)
    assert.equal(breaker.state, 'half-open')
    assert.equal(breaker.since, 1_001_500)
    advance(200)
    breaker.success()
    assert.equal(breaker.since, 1_005_700)
  })
})
