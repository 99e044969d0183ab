// Console sessions: a signed-in person's admin token kept in this process, found by a random id
// that is all the browser holds (in an HttpOnly cookie), so no script in the page can read the
// token. Bounded in number and lifetime. Sessions are per process: behind a load balancer with
// several replicas a person signs in again on each replica unless the balancer is sticky.

import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { AdminRole } from '../config/schema.js'

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
  lastUsed: number
}

export interface SessionLimits {
  /** The most sessions kept; the least recently used goes when a new one would exceed it. */
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

export class SessionStore {
  // A Map keeps insertion order: re-inserting on use makes the first entry the least recently used.
  readonly #sessions = new Map<string, Session>()
  readonly #limits: SessionLimits
  readonly #now: () => number

  constructor(limits: SessionLimits = SESSION_LIMITS, now: () => number = Date.now) {
    this.#limits = limits
    this.#now = now
  }

  get size(): number {
    return this.#sessions.size
  }

  create(fields: { token: string; name: string; role: AdminRole }): Session {
    const now = this.#now()
    while (this.#sessions.size >= this.#limits.max) {
      const oldest = this.#sessions.keys().next().value as string
      this.#sessions.delete(oldest)
    }
    const session: Session = { id: randomToken(), csrf: randomToken(), created: now, lastUsed: now, ...fields }
    this.#sessions.set(session.id, session)
    return session
  }

  /** The live session with this id, marked used; undefined when unknown, expired or idle too long. */
  get(id: string | undefined): Session | undefined {
    if (id === undefined || !TOKEN_PATTERN.test(id)) return undefined
    const session = this.#sessions.get(id)
    if (session === undefined) return undefined
    const now = this.#now()
    if (now - session.created >= this.#limits.lifetimeMs || now - session.lastUsed >= this.#limits.idleMs) {
      this.#sessions.delete(id)
      return undefined
    }
    session.lastUsed = now
    this.#sessions.delete(id)
    this.#sessions.set(id, session)
    return session
  }

  delete(id: string): void {
    this.#sessions.delete(id)
  }
}
