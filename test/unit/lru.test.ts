// The bounded least-recently-used list the fallback state, TLS sessions and console sessions share.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Lru } from '../../src/lru.js'

describe('Lru', () => {
  it('drops the least recently used past its limit; a read or a write makes an entry the newest', () => {
    const lru = new Lru<number>(2)
    lru.set('a', 1)
    lru.set('b', 2)
    assert.equal(lru.get('a'), 1)
    lru.set('c', 3)
    assert.equal(lru.get('b'), undefined, 'the least recently used stayed')
    lru.set('a', 4)
    lru.set('d', 5)
    assert.deepEqual([lru.get('a'), lru.get('c'), lru.get('d'), lru.size], [4, undefined, 5, 2])
    lru.delete('a')
    assert.equal(lru.size, 1)
  })

  it('refuses a limit below one', () => {
    for (const limit of [0, -1, 1.5, Number.NaN]) assert.throws(() => new Lru(limit), RangeError)
  })
})
