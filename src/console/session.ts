// Console sessions: a signed-in person's admin token kept server-side, found by a random id that
// is all the browser holds (in an HttpOnly cookie), so no script in the page can read the token.
// Bounded in lifetime (and, in process, in number).
//
// Where they live is a SessionBackend: a Map in this process for in-process state, or Redis for
// Redis state, so that every replica behind one load balancer finds, refreshes and ends the same
// sessions. Either way a backend never sees a session id or a token: records are keyed by the
// SHA-256 of the id, and the admin token and CSRF token are sealed (AES-256-GCM) under a key
// derived from the id. A dump of Redis therefore hands out neither live sessions nor admin tokens;
// only the browser holding the cookie can open its own record.

import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import type { AdminRole } from '../config/schema.js'
import type { StateStore } from '../state/store.js'
import { Lru } from '../lru.js'

export interface Session {
  readonly id: string
  /** The admin token the person signed in with; every admin API call presents it. */
  readonly token: string
  /** The token's holder and role, as the admin API named them at sign-in. */
  readonly name: string
  readonly role: AdminRole
  /** The per-session token every form carries and every POST is checked against. */
  readonly csrf: string
  readonly created: number
  readonly lastUsed: number
}

export interface SessionLimits {
  /** The most sessions kept in process; the least recently used goes when a new one would exceed it. */
  readonly max: number
  /** A session ends this long after sign-in, however active. */
  readonly lifetimeMs: number
  /** A session ends after this long unused. */
  readonly idleMs: number
}

export const SESSION_LIMITS: SessionLimits = Object.freeze({
  max: 1000,
  lifetimeMs: 8 * 60 * 60 * 1000,
  idleMs: 60 * 60 * 1000,
})

/** How often within the idle limit a session in use is marked used in its backend, at most. */
const TOUCHES_PER_IDLE = 60

/** What a backend keeps of a session: nothing in it lets a reader act as the person. */
export interface StoredSession {
  /** The admin token and CSRF token, sealed under a key only the session id gives. */
  readonly sealed: string
  readonly name: string
  readonly role: AdminRole
  readonly created: number
  readonly lastUsed: number
}

/**
 * Where sessions are kept, by the hash of their id. Two implementations (MemorySessionBackend
 * below, redis-sessions.ts) pass one conformance suite (test/conformance/console-sessions.test.ts).
 */
export interface SessionBackend {
  /** Keeps the record until `expiresAt` (ms since the epoch), when it is gone by itself. */
  put(key: string, record: StoredSession, expiresAt: number): Promise<void>
  /** The record, or undefined when there is none or it expired. */
  get(key: string): Promise<StoredSession | undefined>
  /**
   * Replaces the record only while it is still there, keeping its expiry: a refresh that races a
   * sign-out on another replica must not bring the session back.
   */
  touch(key: string, record: StoredSession): Promise<void>
  delete(key: string): Promise<void>
}

/** A session id or CSRF token: 32 random bytes, base64url. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/

function randomToken(): string {
  return randomBytes(32).toString('base64url')
}

/** Equal strings in time that depends only on their length. */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** The backend's key for a session id: its SHA-256, so the id itself is stored nowhere. */
export function sessionKey(id: string): string {
  return createHash('sha256').update(id).digest('hex')
}

const SEAL_INFO = 'customs console session seal v1'

function sealKey(id: string): Buffer {
  return Buffer.from(hkdfSync('sha256', id, '', SEAL_INFO, 32))
}

// The record's key is the additional data, so a sealed value moved to another record's key (by
// someone who can write to Redis) does not open there.
function seal(id: string, key: string, secrets: { token: string; csrf: string }): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', sealKey(id), iv)
  cipher.setAAD(Buffer.from(key))
  const body = Buffer.concat([cipher.update(JSON.stringify(secrets), 'utf8'), cipher.final()])
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')
}

function unseal(id: string, key: string, sealed: string): { token: string; csrf: string } | undefined {
  try {
    const raw = Buffer.from(sealed, 'base64url')
    if (raw.length < 29) return undefined
    const decipher = createDecipheriv('aes-256-gcm', sealKey(id), raw.subarray(0, 12))
    decipher.setAAD(Buffer.from(key))
    decipher.setAuthTag(raw.subarray(12, 28))
    const text = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')
    const secrets = JSON.parse(text) as { token?: unknown; csrf?: unknown }
    if (typeof secrets.token !== 'string' || typeof secrets.csrf !== 'string') return undefined
    return { token: secrets.token, csrf: secrets.csrf }
  } catch {
    return undefined
  }
}

export class SessionStore {
  readonly #backend: SessionBackend
  readonly #limits: SessionLimits
  readonly #now: () => number

  constructor(backend?: SessionBackend, limits: SessionLimits = SESSION_LIMITS, now: () => number = Date.now) {
    this.#limits = limits
    this.#now = now
    this.#backend = backend ?? new MemorySessionBackend(limits.max, now)
  }

  async create(fields: { token: string; name: string; role: AdminRole }): Promise<Session> {
    const now = this.#now()
    const id = randomToken()
    const csrf = randomToken()
    const key = sessionKey(id)
    const record: StoredSession = { sealed: seal(id, key, { token: fields.token, csrf }), name: fields.name, role: fields.role, created: now, lastUsed: now }
    await this.#backend.put(key, record, now + this.#limits.lifetimeMs)
    return { id, csrf, created: now, lastUsed: now, ...fields }
  }

  /** The live session with this id, marked used; undefined when unknown, expired or idle too long. */
  async get(id: string | undefined): Promise<Session | undefined> {
    if (id === undefined || !TOKEN_PATTERN.test(id)) return undefined
    const key = sessionKey(id)
    const record = await this.#backend.get(key)
    if (record === undefined) return undefined
    const now = this.#now()
    if (now - record.created >= this.#limits.lifetimeMs || now - record.lastUsed >= this.#limits.idleMs) {
      await this.#backend.delete(key)
      return undefined
    }
    const secrets = unseal(id, key, record.sealed)
    if (secrets === undefined) return undefined
    // A page is one backend read, not a read and a write: use is recorded once the recorded use is
    // older than a sixtieth of the idle limit (a minute at the default hour). The session may then
    // end up to that much before a full idle period, never after it.
    let lastUsed = record.lastUsed
    if (now - record.lastUsed >= this.#limits.idleMs / TOUCHES_PER_IDLE) {
      // Another replica may have marked it used later; time only moves lastUsed forward.
      lastUsed = Math.max(now, record.lastUsed)
      await this.#backend.touch(key, { ...record, lastUsed })
    }
    return { id, token: secrets.token, csrf: secrets.csrf, name: record.name, role: record.role, created: record.created, lastUsed }
  }

  /** Ends the session on every replica sharing the backend. */
  async delete(id: string): Promise<void> {
    if (!TOKEN_PATTERN.test(id)) return
    await this.#backend.delete(sessionKey(id))
  }
}

/** Sessions in this process, bounded in number: the least recently used is dropped first. */
export class MemorySessionBackend implements SessionBackend {
  readonly #entries: Lru<{ record: StoredSession; expiresAt: number }>
  readonly #now: () => number

  constructor(max: number = SESSION_LIMITS.max, now: () => number = Date.now) {
    this.#entries = new Lru(max)
    this.#now = now
  }

  get size(): number {
    return this.#entries.size
  }

  async put(key: string, record: StoredSession, expiresAt: number): Promise<void> {
    this.#entries.set(key, { record, expiresAt })
  }

  async get(key: string): Promise<StoredSession | undefined> {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (this.#now() >= entry.expiresAt) {
      this.#entries.delete(key)
      return undefined
    }
    return entry.record
  }

  async touch(key: string, record: StoredSession): Promise<void> {
    const entry = this.#entries.get(key)
    if (entry !== undefined) this.#entries.set(key, { record, expiresAt: entry.expiresAt })
  }

  async delete(key: string): Promise<void> {
    this.#entries.delete(key)
  }
}

/** The sessions that go with `state`: Redis state keeps them in its Redis, for every replica. */
export async function sessionStoreFor(state: StateStore, limits: SessionLimits = SESSION_LIMITS): Promise<SessionStore> {
  const redis = state.redis
  if (redis === undefined) return new SessionStore(new MemorySessionBackend(limits.max), limits)
  // Loaded only for Redis state: ioredis stays out of in-process installs.
  const [{ RedisSessionBackend }, { stateKeys }] = await Promise.all([import('./redis-sessions.js'), import('../state/keys.js')])
  return new SessionStore(new RedisSessionBackend({ client: redis.client, keys: stateKeys(redis.prefix) }), limits)
}
