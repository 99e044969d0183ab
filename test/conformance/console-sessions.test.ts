// One suite for console sessions (src/console/session.ts), run against every SessionBackend: the
// in-process Map and Redis on a real redis-server, a fresh key prefix per test. `peer` is a second
// SessionStore over the same data, as another replica would hold (the same backend in process).
// Then, for Redis, what a reader of the raw keys learns: neither the session id nor the token.

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { RedisSessionBackend } from '../../src/console/redis-sessions.js'
import {
  MemorySessionBackend,
  SessionStore,
  sessionKey,
  type SessionBackend,
  type SessionLimits,
  type StoredSession,
} from '../../src/console/session.js'
import { stateKeys } from '../../src/state/keys.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'

const limits: SessionLimits = { max: 100, lifetimeMs: 60_000, idleMs: 20_000 }
const person = { token: 'admin-token-of-ann', name: 'ann', role: 'approver' as const }

function record(lastUsed: number): StoredSession {
  return { sealed: 'c2VhbGVk', name: 'ann', role: 'viewer', created: 1_000, lastUsed }
}

interface Backends {
  open(now: () => number): Promise<SessionBackend>
  close(): Promise<void>
}

function checkSessions(backends: () => Backends): void {
  let b: Backends
  // A clock the test moves; it starts at real time so Redis TTLs (real time) agree with it.
  let now = 0
  const clock = (): number => now
  beforeEach(() => {
    b = backends()
    now = Date.now()
  })
  afterEach(async () => {
    await b.close()
  })

  describe('backend', () => {
    it('answers what was put, and nothing for an unknown key', async () => {
      const backend = await b.open(clock)
      await backend.put('k1', record(1_000), now + 60_000)
      assert.deepEqual(await backend.get('k1'), record(1_000))
      assert.equal(await backend.get('k2'), undefined)
    })

    it('forgets a record once deleted, and deleting twice resolves', async () => {
      const backend = await b.open(clock)
      await backend.put('k1', record(1_000), now + 60_000)
      await backend.delete('k1')
      assert.equal(await backend.get('k1'), undefined)
      await backend.delete('k1')
    })

    it('touch replaces a live record and never brings back a deleted one', async () => {
      const backend = await b.open(clock)
      await backend.put('k1', record(1_000), now + 60_000)
      await backend.touch('k1', record(2_000))
      assert.deepEqual(await backend.get('k1'), record(2_000))
      await backend.delete('k1')
      await backend.touch('k1', record(3_000))
      assert.equal(await backend.get('k1'), undefined)
    })

    it('drops a record at its expiry, touched or not', async () => {
      const backend = await b.open(clock)
      await backend.put('k1', record(1_000), Date.now() + 150)
      await backend.touch('k1', record(2_000))
      await sleep(300)
      now = Date.now()
      assert.equal(await backend.get('k1'), undefined)
    })
  })

  describe('sessions', () => {
    let store: SessionStore
    let peer: SessionStore
    beforeEach(async () => {
      const backend = await b.open(clock)
      store = new SessionStore(backend, limits, clock)
      peer = new SessionStore(await b.open(clock), limits, clock)
    })

    it('finds a session from the other replica, with its token, role and CSRF token', async () => {
      const s = await store.create(person)
      const found = await peer.get(s.id)
      assert.ok(found !== undefined)
      assert.equal(found.token, person.token)
      assert.equal(found.name, 'ann')
      assert.equal(found.role, 'approver')
      assert.equal(found.csrf, s.csrf)
      assert.equal(found.created, s.created)
    })

    it('ends a session everywhere when either replica signs it out', async () => {
      const s = await store.create(person)
      assert.ok((await peer.get(s.id)) !== undefined)
      await peer.delete(s.id)
      assert.equal(await store.get(s.id), undefined)
      assert.equal(await peer.get(s.id), undefined)
    })

    it('keeps a session used on either replica alive past the idle time', async () => {
      const s = await store.create(person)
      now += 15_000
      assert.ok((await peer.get(s.id)) !== undefined)
      now += 15_000
      assert.ok((await store.get(s.id)) !== undefined)
    })

    it('ends a session left idle, whichever replica last used it', async () => {
      const s = await store.create(person)
      now += 5_000
      assert.ok((await peer.get(s.id)) !== undefined)
      now += 20_000
      assert.equal(await store.get(s.id), undefined)
      now -= 10_000
      assert.equal(await peer.get(s.id), undefined, 'the idle replica removed it for everyone')
    })

    it('ends a session at its lifetime even while it is used', async () => {
      const s = await store.create(person)
      for (let i = 0; i < 5; i++) {
        now += 11_000
        assert.ok((await (i % 2 === 0 ? peer : store).get(s.id)) !== undefined)
      }
      now += 5_000
      assert.equal(await peer.get(s.id), undefined)
    })

    it('gives every sign-in its own id and CSRF token', async () => {
      const [a, c] = [await store.create(person), await store.create(person)]
      assert.notEqual(a.id, c.id)
      assert.notEqual(a.csrf, c.csrf)
      await store.delete(a.id)
      assert.ok((await peer.get(c.id)) !== undefined)
    })

    it('finds nothing by a malformed or unknown id', async () => {
      const s = await store.create(person)
      assert.equal(await peer.get(undefined), undefined)
      assert.equal(await peer.get(''), undefined)
      assert.equal(await peer.get(`${s.id}x`), undefined)
      assert.equal(await peer.get(`${s.id.slice(0, -1)}${s.id.endsWith('A') ? 'B' : 'A'}`), undefined)
    })
  })
}

describe('console sessions conformance', () => {
  describe('MemorySessionBackend', () => {
    checkSessions(() => {
      let shared: MemorySessionBackend | undefined
      return {
        open: async (now) => (shared ??= new MemorySessionBackend(limits.max, now)),
        close: async () => {},
      }
    })
  })

  describe('RedisSessionBackend', () => {
    let server: RedisServer
    before(async () => {
      server = await startRedisServer()
    })
    after(async () => {
      if (!server.external) await server.stop()
    })
    checkSessions(() => {
      const prefix = `t-${randomUUID()}`
      const clients: Redis[] = []
      return {
        open: async (now) => {
          const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
          await client.connect()
          clients.push(client)
          return new RedisSessionBackend({ client, keys: stateKeys(prefix), now })
        },
        close: async () => {
          await Promise.all(clients.map((c) => c.quit()))
        },
      }
    })

    describe('what Redis holds', () => {
      let client: Redis
      let prefix: string
      beforeEach(async () => {
        prefix = `t-${randomUUID()}`
        client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
        await client.connect()
      })
      afterEach(async () => {
        await client.quit()
      })

      it('keys a session by its id hash, expiring at its lifetime, holding neither id nor tokens', async () => {
        const store = new SessionStore(new RedisSessionBackend({ client, keys: stateKeys(prefix) }), limits)
        const s = await store.create(person)
        assert.ok((await store.get(s.id)) !== undefined)
        const keys = await client.keys(`${prefix}:*`)
        assert.deepEqual(keys, [stateKeys(prefix).consoleSession(sessionKey(s.id))])
        const key = keys[0] as string
        const ttl = await client.pttl(key)
        assert.ok(ttl > 0 && ttl <= limits.lifetimeMs, `ttl ${ttl}`)
        const raw = (await client.get(key)) as string
        for (const secret of [s.id, s.csrf, person.token]) {
          assert.ok(!key.includes(secret) && !raw.includes(secret), 'a secret is readable in Redis')
        }
        assert.ok(!raw.includes(Buffer.from(person.token).toString('base64url')))
      })

      it('refuses a sealed record moved under another session key', async () => {
        const store = new SessionStore(new RedisSessionBackend({ client, keys: stateKeys(prefix) }), limits)
        const victim = await store.create(person)
        const attacker = await store.create({ token: 'viewer-token', name: 'eve', role: 'viewer' })
        const keys = stateKeys(prefix)
        const stolen = JSON.parse((await client.get(keys.consoleSession(sessionKey(victim.id)))) as string) as StoredSession
        const own = JSON.parse((await client.get(keys.consoleSession(sessionKey(attacker.id)))) as string) as StoredSession
        await client.set(keys.consoleSession(sessionKey(attacker.id)), JSON.stringify({ ...own, sealed: stolen.sealed }), 'KEEPTTL')
        assert.equal(await store.get(attacker.id), undefined)
      })
    })
  })
})
