// Console sessions are bounded in number (the least recently used goes first), end a fixed time
// after sign-in however active, end after an idle time, and are found only by a well-formed id.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SessionStore, sameToken } from '../../../src/console/session.js'

const limits = { max: 3, lifetimeMs: 10_000, idleMs: 4_000 }
const person = { token: 't', name: 'ann', role: 'viewer' as const }

describe('SessionStore', () => {
  it('keeps at most max sessions, dropping the least recently used', () => {
    let now = 0
    const store = new SessionStore(limits, () => now)
    const [a, b, c] = [store.create(person), store.create(person), store.create(person)]
    now = 1
    assert.ok(store.get(a.id) !== undefined)
    const d = store.create(person)
    assert.equal(store.size, 3)
    assert.equal(store.get(b.id), undefined)
    for (const s of [a, c, d]) assert.ok(store.get(s.id) !== undefined)
  })

  it('ends a session after its lifetime even while it is used', () => {
    let now = 0
    const store = new SessionStore(limits, () => now)
    const s = store.create(person)
    for (now = 3_000; now < 10_000; now += 3_000) assert.ok(store.get(s.id) !== undefined)
    now = 10_000
    assert.equal(store.get(s.id), undefined)
    assert.equal(store.size, 0)
  })

  it('ends a session left idle', () => {
    let now = 0
    const store = new SessionStore(limits, () => now)
    const s = store.create(person)
    now = 4_000
    assert.equal(store.get(s.id), undefined)
  })

  it('gives random ids and CSRF tokens, and finds nothing by a malformed id', () => {
    const store = new SessionStore(limits)
    const s = store.create(person)
    assert.match(s.id, /^[A-Za-z0-9_-]{43}$/)
    assert.match(s.csrf, /^[A-Za-z0-9_-]{43}$/)
    assert.notEqual(s.id, s.csrf)
    assert.equal(store.get(undefined), undefined)
    assert.equal(store.get(`${s.id}x`), undefined)
    assert.equal(store.get(''), undefined)
  })

  it('compares tokens whatever their lengths', () => {
    assert.equal(sameToken('abc', 'abc'), true)
    assert.equal(sameToken('abc', 'abd'), false)
    assert.equal(sameToken('abc', 'abcd'), false)
    assert.equal(sameToken('', ''), true)
  })
})
