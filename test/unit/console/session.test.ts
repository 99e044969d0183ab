// In process, console sessions are bounded in number (the least recently used goes first) and
// found only by a well-formed id. Lifetime, idle expiry, sign-out and what a backend holds are
// checked against every backend in test/conformance/console-sessions.test.ts.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemorySessionBackend, SessionStore, sameToken, sessionKey, type SessionBackend } from '../../../src/console/session.js'

const limits = { max: 3, lifetimeMs: 10_000, idleMs: 4_000 }
const person = { token: 't', name: 'ann', role: 'viewer' as const }

describe('SessionStore in process', () => {
  it('keeps at most max sessions, dropping the least recently used', async () => {
    let now = 0
    const backend = new MemorySessionBackend(limits.max, () => now)
    const store = new SessionStore(backend, limits, () => now)
    const [a, b, c] = [await store.create(person), await store.create(person), await store.create(person)]
    now = 1
    assert.ok((await store.get(a.id)) !== undefined)
    const d = await store.create(person)
    assert.equal(backend.size, 3)
    assert.equal(await store.get(b.id), undefined)
    for (const s of [a, c, d]) assert.ok((await store.get(s.id)) !== undefined)
  })

  it('records use in the backend at most once per sixtieth of the idle limit, and keeps the session alive', async () => {
    let now = 0
    let touches = 0
    const backend = new MemorySessionBackend(limits.max, () => now)
    const counting: SessionBackend = {
      put: (key, record, expiresAt) => backend.put(key, record, expiresAt),
      get: (key) => backend.get(key),
      touch: (key, record) => {
        touches++
        return backend.touch(key, record)
      },
      delete: (key) => backend.delete(key),
    }
    const store = new SessionStore(counting, limits, () => now)
    const s = await store.create(person)
    // idleMs 4000: a touch once the recorded use is at least 66.7 ms old.
    for (now = 10; now <= 60; now += 10) assert.ok((await store.get(s.id)) !== undefined)
    assert.equal(touches, 0, 'pages within the window cost no write')
    now = 70
    assert.equal((await store.get(s.id))?.lastUsed, 70)
    assert.equal(touches, 1)
    // Used every 3 s, it outlives the 4 s idle limit many times over.
    for (now = 3_070; now < 9_000; now += 3_000) assert.ok((await store.get(s.id)) !== undefined)
    now += 3_999
    assert.equal(await store.get(s.id), undefined)
  })

  it('drops an ended session from memory', async () => {
    let now = 0
    const backend = new MemorySessionBackend(limits.max, () => now)
    const store = new SessionStore(backend, limits, () => now)
    const s = await store.create(person)
    now = 10_000
    assert.equal(await store.get(s.id), undefined)
    assert.equal(backend.size, 0)
  })

  it('gives random ids and CSRF tokens, and finds nothing by a malformed id', async () => {
    const store = new SessionStore(undefined, limits)
    const s = await store.create(person)
    assert.match(s.id, /^[A-Za-z0-9_-]{43}$/)
    assert.match(s.csrf, /^[A-Za-z0-9_-]{43}$/)
    assert.notEqual(s.id, s.csrf)
    assert.equal(await store.get(undefined), undefined)
    assert.equal(await store.get(`${s.id}x`), undefined)
    assert.equal(await store.get(''), undefined)
  })

  it('keys a session by the SHA-256 of its id, never the id', () => {
    const key = sessionKey('a'.repeat(43))
    assert.match(key, /^[a-f0-9]{64}$/)
    assert.notEqual(key, sessionKey('b'.repeat(43)))
  })

  it('compares tokens whatever their lengths', () => {
    assert.equal(sameToken('abc', 'abc'), true)
    assert.equal(sameToken('abc', 'abd'), false)
    assert.equal(sameToken('abc', 'abcd'), false)
    assert.equal(sameToken('', ''), true)
  })
})
