// The TLS session cache for wire.ts connections: its bound and recency order, which connections
// share a key, which are never cached, and what a connection's socket may store. Resumption over
// real TLS connections is tested in wire.test.ts.

import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { createSecureContext, type TLSSocket } from 'node:tls'
import { describe, it } from 'node:test'
import { TlsSessions } from '../../../src/upstream/tls-sessions.js'

const session = (n: number) => Buffer.from(`session ${n}`)

/** Stands in for a TLS socket: only its events and `authorized` are read. */
function fakeSocket(authorized: boolean): EventEmitter & { authorized: boolean } {
  return Object.assign(new EventEmitter(), { authorized })
}

describe('TlsSessions', () => {
  describe('when more hosts come than it holds', () => {
    it('drops the least recently used and never holds more than its capacity', () => {
      const sessions = new TlsSessions(3)
      const keys = ['a', 'b', 'c', 'd', 'e'].map((host) => sessions.key(host, 443, {}) as string)
      for (const [i, key] of keys.slice(0, 3).entries()) sessions.set(key, session(i))
      // Using `a` makes `b` the oldest.
      assert.deepEqual(sessions.get(keys[0] as string), session(0))
      sessions.set(keys[3] as string, session(3))
      assert.equal(sessions.size, 3)
      assert.equal(sessions.get(keys[1] as string), undefined)
      assert.deepEqual(sessions.get(keys[0] as string), session(0))
      sessions.set(keys[4] as string, session(4))
      assert.equal(sessions.size, 3)
      assert.equal(sessions.get(keys[2] as string), undefined)
      assert.deepEqual(
        keys.map((key) => sessions.get(key)?.toString()),
        ['session 0', undefined, undefined, 'session 3', 'session 4']
      )
    })

    it('keeps one session per key, the newest', () => {
      const sessions = new TlsSessions(2)
      const key = sessions.key('cdn.example', 443, {}) as string
      sessions.set(key, session(1))
      sessions.set(key, session(2))
      assert.equal(sessions.size, 1)
      assert.deepEqual(sessions.get(key), session(2))
    })
  })

  describe('key', () => {
    it('tells apart hosts, ports, server names and trusted CAs', () => {
      const sessions = new TlsSessions(8)
      const keys = [
        sessions.key('cdn.example', 443, {}),
        sessions.key('cdn2.example', 443, {}),
        sessions.key('cdn.example', 8443, {}),
        sessions.key('cdn.example', 443, { servername: 'other.example' }),
        sessions.key('cdn.example', 443, { ca: 'one CA' }),
        sessions.key('cdn.example', 443, { ca: ['one CA', 'another CA'] }),
      ]
      assert.ok(keys.every((key) => key !== undefined))
      assert.equal(new Set(keys).size, keys.length)
      assert.equal(sessions.key('cdn.example', 443, { ca: Buffer.from('one CA') }), keys[4])
    })

    it('tells apart client certificates, and none', () => {
      const sessions = new TlsSessions(8)
      const keys = [
        sessions.key('registry.internal', 443, { ca: 'one CA' }),
        sessions.key('registry.internal', 443, { ca: 'one CA', cert: 'client A', key: 'key A' }),
        sessions.key('registry.internal', 443, { ca: 'one CA', cert: 'client B', key: 'key B' }),
      ]
      assert.ok(keys.every((key) => key !== undefined))
      assert.equal(new Set(keys).size, keys.length)
    })

    it('tells secure contexts apart by the context, whatever else the options say', () => {
      const sessions = new TlsSessions(8)
      const [one, other] = [createSecureContext({}), createSecureContext({})]
      const keyOne = sessions.key('registry.internal', 443, { secureContext: one })
      assert.ok(keyOne !== undefined)
      assert.equal(sessions.key('registry.internal', 443, { secureContext: one }), keyOne)
      // node ignores `ca` beside a context: so must the key.
      assert.equal(sessions.key('registry.internal', 443, { secureContext: one, ca: 'one CA' }), keyOne)
      assert.notEqual(sessions.key('registry.internal', 443, { secureContext: other }), keyOne)
      assert.notEqual(sessions.key('registry.internal', 443, {}), keyOne)
    })

    it('caches nothing for a connection that lets an unauthorized server through or checks identity its own way', () => {
      const sessions = new TlsSessions(8)
      assert.equal(sessions.key('cdn.example', 443, { rejectUnauthorized: false }), undefined)
      assert.equal(sessions.key('cdn.example', 443, { checkServerIdentity: () => undefined }), undefined)
      assert.equal(sessions.key('cdn.example', 443, { session: session(0) }), undefined)
      assert.equal(sessions.key('cdn.example', 443, { pfx: Buffer.from('a bundle the key cannot read') }), undefined)
      assert.equal(sessions.resumption('cdn.example', 443, { rejectUnauthorized: false }), undefined)
    })
  })

  describe('resumption', () => {
    it('offers the kept session and keeps the newest one an authorized socket is sent', () => {
      const sessions = new TlsSessions(4)
      const first = sessions.resumption('cdn.example', 443, {})
      assert.deepEqual(first?.options, {})
      const socket = fakeSocket(true)
      first?.watch(socket as unknown as TLSSocket)
      socket.emit('secureConnect')
      socket.emit('session', session(1))
      socket.emit('session', session(2))
      assert.deepEqual(sessions.resumption('cdn.example', 443, {})?.options, { session: session(2) })
    })

    it('keeps nothing from a socket that is not authorized', () => {
      const sessions = new TlsSessions(4)
      const socket = fakeSocket(false)
      sessions.resumption('cdn.example', 443, {})?.watch(socket as unknown as TLSSocket)
      socket.emit('secureConnect')
      socket.emit('session', session(1))
      assert.equal(sessions.size, 0)
    })

    it('forgets the session when a handshake fails, not when an established connection does', () => {
      const sessions = new TlsSessions(4)
      const key = sessions.key('cdn.example', 443, {}) as string
      sessions.set(key, session(1))
      const established = fakeSocket(true)
      sessions.resumption('cdn.example', 443, {})?.watch(established as unknown as TLSSocket)
      established.emit('secureConnect')
      established.emit('error', new Error('reset mid-body'))
      assert.deepEqual(sessions.get(key), session(1))
      const refused = fakeSocket(false)
      sessions.resumption('cdn.example', 443, {})?.watch(refused as unknown as TLSSocket)
      refused.emit('error', new Error('self-signed certificate'))
      assert.equal(sessions.get(key), undefined)
    })
  })

  it('refuses a capacity under one', () => {
    assert.throws(() => new TlsSessions(0), RangeError)
  })
})
