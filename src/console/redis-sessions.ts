// Console sessions in Redis, for Redis state: one string key per session (keys.ts), holding the
// JSON StoredSession and expiring by itself at the session's lifetime, so every replica finds,
// refreshes and ends the same sessions and Redis never holds one past its end. Calls fail with
// STATE_UNAVAILABLE while Redis is away; the console then refuses rather than guesses.

import type { Redis } from 'ioredis'
import { CustomsError } from '../errors.js'
import { ADMIN_ROLES } from '../config/schema.js'
import type { StateKeys } from '../state/keys.js'
import { Script } from '../state/redis.js'
import type { SessionBackend, StoredSession } from './session.js'

// Rewrites the record with the time to live it has left, and only if it is still there: a SET
// from here after a GET could bring back a session another replica just ended. (PTTL rather than
// SET KEEPTTL, which older Redis versions lack.) KEYS: session. ARGV: record JSON.
const TOUCH = new Script(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
return 1
`)

export interface RedisSessionBackendOptions {
  readonly client: Redis
  readonly keys: Pick<StateKeys, 'consoleSession'>
  readonly now?: () => number
}

export class RedisSessionBackend implements SessionBackend {
  readonly #client: Redis
  readonly #keys: Pick<StateKeys, 'consoleSession'>
  readonly #now: () => number

  constructor(options: RedisSessionBackendOptions) {
    this.#client = options.client
    this.#keys = options.keys
    this.#now = options.now ?? Date.now
  }

  async put(key: string, record: StoredSession, expiresAt: number): Promise<void> {
    const ttl = Math.max(1, Math.ceil(expiresAt - this.#now()))
    await this.#call('put', () => this.#client.set(this.#keys.consoleSession(key), JSON.stringify(record), 'PX', ttl))
  }

  async get(key: string): Promise<StoredSession | undefined> {
    const raw = await this.#call('get', () => this.#client.get(this.#keys.consoleSession(key)))
    return raw === null ? undefined : parseRecord(raw)
  }

  async touch(key: string, record: StoredSession): Promise<void> {
    await this.#call('touch', () => TOUCH.run(this.#client, [this.#keys.consoleSession(key)], [JSON.stringify(record)]))
  }

  async delete(key: string): Promise<void> {
    await this.#call('delete', () => this.#client.del(this.#keys.consoleSession(key)))
  }

  async #call<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err)
      throw new CustomsError('STATE_UNAVAILABLE', `redis console session ${op} failed: ${reason}`, { cause: err })
    }
  }
}

/** The record, or undefined for anything that is not one: such a key is treated as no session. */
function parseRecord(raw: string): StoredSession | undefined {
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const r = value as Record<string, unknown>
  if (
    typeof r.sealed !== 'string' ||
    typeof r.name !== 'string' ||
    typeof r.role !== 'string' ||
    !(ADMIN_ROLES as readonly string[]).includes(r.role) ||
    typeof r.created !== 'number' ||
    typeof r.lastUsed !== 'number'
  ) {
    return undefined
  }
  return { sealed: r.sealed, name: r.name, role: r.role as StoredSession['role'], created: r.created, lastUsed: r.lastUsed }
}
