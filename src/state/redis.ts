// The Redis state store: for production and for more than one replica. Calls fail fast with
// STATE_UNAVAILABLE while Redis is away (fail closed, never hang), and the client reconnects by
// itself when Redis comes back. Keys come from keys.ts; the contract is store.ts.

import { createHash, randomUUID } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import { CustomsError } from '../errors.js'
import type { Digest } from '../oci/digest.js'
import { SCHEMA_VERSION, stateKeys, type StateKeys } from './keys.js'
import {
  QUARANTINE_CLIENTS_LIMIT,
  QUARANTINE_HISTORY_LIMIT,
  QUARANTINE_REFERENCES_LIMIT,
  EXPIRY_ACTOR,
  TAG_HISTORY_LIMIT,
  decodeQuarantineCursor,
  encodeQuarantineCursor,
  type BlobLink,
  type Detention,
  type ExpiredRelease,
  type ManifestLinks,
  type ManifestRecord,
  type QuarantineClearance,
  type QuarantineClient,
  type QuarantinePage,
  type QuarantinePurge,
  type QuarantineQuery,
  type QuarantineReevaluation,
  type QuarantineRecord,
  type QuarantineRelease,
  type QuarantineRevocation,
  type QuarantineState,
  type RepoKey,
  type ScanPage,
  type ScanQuery,
  type StateStore,
  type TagMove,
  type TagRecord,
} from './store.js'

// Records are stored as JSON strings, not hashes: each is always read and written whole, a
// verdict nests an array of reasons, and JSON round-trips the exact shape memory.ts returns.

export interface RedisStateStoreOptions {
  readonly url: string
  readonly prefix: string
  /** An existing client (tests): the store neither configures it nor quits it on close(). */
  readonly client?: Redis
  /** How long one command may take before it fails with STATE_UNAVAILABLE (default 1000). */
  readonly commandTimeoutMs?: number
  /** How long connect() waits for the first connection (default 5000). */
  readonly connectTimeoutMs?: number
  /** Told of connection errors, for logging; the client keeps reconnecting regardless. */
  readonly onConnectionError?: (err: Error) => void
}

/** The data under the prefix is of another schema version: migrate, or use another prefix. */
export class StateSchemaError extends CustomsError<'STATE_UNAVAILABLE'> {
  constructor(
    readonly found: string,
    readonly expected: string
  ) {
    super(
      'STATE_UNAVAILABLE',
      `redis state schema is version ${found} but this Customs reads version ${expected}; ` +
        'migrate the data or configure another state.redis.prefix',
      { detail: { found, expected } }
    )
    this.name = 'StateSchemaError'
  }
}

/** A Lua script run by EVALSHA, falling back to EVAL once Redis has forgotten it (a restart). */
export class Script {
  readonly #sha: string
  constructor(readonly source: string) {
    this.#sha = createHash('sha1').update(source).digest('hex')
  }

  async run(client: Redis, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await client.evalsha(this.#sha, keys.length, ...keys, ...args)
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err
      return client.eval(this.source, keys.length, ...keys, ...args)
    }
  }
}

// Compare and move in one step, so two replicas moving a tag at once each see the other's write:
// a read-then-write from here could record the same `from` twice and lose a move.
// KEYS: tag, history. ARGV: record JSON, new digest, JSON of `to`, JSON of `at`, history limit.
const SET_TAG = new Script(`
local current = redis.call('GET', KEYS[1])
local previous = false
if current then previous = cjson.decode(current).digest end
redis.call('SET', KEYS[1], ARGV[1])
if previous == ARGV[2] then return {0, ''} end
local from = 'null'
if previous then from = cjson.encode(previous) end
local move = '{"from":' .. from .. ',"to":' .. ARGV[3] .. ',"at":' .. ARGV[4] .. '}'
redis.call('LPUSH', KEYS[2], move)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
return {1, previous or ''}
`)

// Only the holder's token may extend or drop a lock; one that expired and was retaken is not ours.
const RENEW_LOCK = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)
const RELEASE_LOCK = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Lua, put before the quarantine scripts that use it: a record's bounded `history` with `entry`
// first (newest first), as every quarantine action keeps it.
const WITH_HISTORY = `
local function withHistory(history, entry, max)
  local out = {entry}
  if type(history) == 'table' then
    for _, h in ipairs(history) do
      if #out < max then table.insert(out, h) end
    end
  end
  return out
end`

// Read, merge and write a quarantine record and both its index entries in one step, so that two
// replicas refusing the same digest at once both count. cjson encodes an empty array as {}:
// normalize() on the way out of Redis turns those back into arrays.
// KEYS: record, index, upstream index. ARGV: upstream, repository, digest, reference, reasons
// JSON, client JSON or '', at, references limit, clients limit, revision or '', history limit.
// Returns 1 when it made the record, the state it left when it found it `cleared` or `purged`
// (detained again, with a `detained` history entry), else 0.
const RECORD_DETENTION = new Script(`${WITH_HISTORY}
local at = tonumber(ARGV[7])
local raw = redis.call('GET', KEYS[1])
local rec
if raw then
  rec = cjson.decode(raw)
else
  rec = {upstream = ARGV[1], repository = ARGV[2], digest = ARGV[3], state = 'detained',
    firstSeen = at, lastSeen = at, refused = 0, references = {}, clients = {}}
end
local previous = nil
if rec.state == 'purged' or rec.state == 'cleared' then previous = rec.state end
rec.refused = rec.refused + 1
if previous then
  rec.state = 'detained'
  local entry = {action = 'detained', by = 'customs', at = at, reasons = cjson.decode(ARGV[5])}
  if ARGV[10] ~= '' then entry.revision = ARGV[10] end
  rec.history = withHistory(rec.history, entry, tonumber(ARGV[11]))
end
if at < rec.firstSeen then rec.firstSeen = at end
if at > rec.lastSeen then rec.lastSeen = at end
rec.reasons = cjson.decode(ARGV[5])
local refs = {ARGV[4]}
for _, r in ipairs(rec.references) do
  if r ~= ARGV[4] and #refs < tonumber(ARGV[8]) then table.insert(refs, r) end
end
rec.references = refs
if ARGV[6] ~= '' then
  local client = cjson.decode(ARGV[6])
  local clients = {client}
  for _, c in ipairs(rec.clients) do
    local same = c.address == client.address and c.userAgent == client.userAgent and c.identity == client.identity
    if not same and #clients < tonumber(ARGV[9]) then table.insert(clients, c) end
  end
  rec.clients = clients
end
redis.call('SET', KEYS[1], cjson.encode(rec))
redis.call('ZADD', KEYS[2], rec.lastSeen, KEYS[1])
redis.call('ZADD', KEYS[3], rec.lastSeen, KEYS[1])
if not raw then return 1 elseif previous then return previous else return 0 end
`)

// Release or revoke in one read-modify-write of the record, so that a concurrent refusal (which
// rewrites the whole record) loses neither the count nor the release. Returns 0 without a record,
// for a release of a `cleared` one, and for a revoke of one holding no release in force at `at`
// (checked here, so that a clearance, expiry or other revoke in between is seen).
// The release-expiry index follows in the same step: the expiry job finds releases only there.
// KEYS: record, release-expiry index. ARGV: 'release', 'revoke' or 'purge', by, at, reason or '',
// expires or '', history limit.
const QUARANTINE_ACTION = new Script(`${WITH_HISTORY}
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
if ARGV[1] == 'release' and rec.state == 'cleared' then return 0 end
if ARGV[1] == 'revoke' then
  local release = rec.release
  if rec.state ~= 'released' or type(release) ~= 'table' or release.expires <= tonumber(ARGV[3]) then return 0 end
end
local entry = {action = ARGV[1], by = ARGV[2], at = tonumber(ARGV[3])}
if ARGV[1] == 'release' then
  entry.reason = ARGV[4]
  entry.expires = tonumber(ARGV[5])
  rec.state = 'released'
  rec.release = {by = ARGV[2], reason = ARGV[4], expires = tonumber(ARGV[5]), at = tonumber(ARGV[3])}
  redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), KEYS[1])
elseif ARGV[1] == 'purge' then
  entry.reason = ARGV[4]
  rec.state = 'purged'
  rec.release = nil
  redis.call('ZREM', KEYS[2], KEYS[1])
else
  rec.state = 'detained'
  rec.release = nil
  redis.call('ZREM', KEYS[2], KEYS[1])
end
rec.history = withHistory(rec.history, entry, tonumber(ARGV[6]))
redis.call('SET', KEYS[1], cjson.encode(rec))
return 1
`)

// Record a manifest and move its blob links in one step, so that no reader sees the verdict
// without the links or the other way round, and two manifests sharing a layer cannot both drop
// out of its referencer set while each still sees the other in it.
// KEYS: manifest, manifest-blobs, holders of the manifest; then per blob: link, blob-refs,
// holders; then per child (admit only): parent.
// ARGV: 'admit' or 'detain', record JSON, manifest digest, holder member, blob count, then per
// blob: digest, link JSON ('' to detain); then child count.
const RECORD_MANIFEST = new Script(`
local admit = ARGV[1] == 'admit'
local m = ARGV[3]
local member = ARGV[4]
local n = tonumber(ARGV[5])
redis.call('SET', KEYS[1], ARGV[2])
local unlinked = {}
for i = 1, n do
  local link, refs, holders = KEYS[1 + 3 * i], KEYS[2 + 3 * i], KEYS[3 + 3 * i]
  local digest, json = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  redis.call('SADD', KEYS[2], digest)
  if admit then
    redis.call('SET', link, json)
    redis.call('SADD', refs, m)
    redis.call('SADD', holders, member)
  else
    redis.call('SREM', refs, m)
    if redis.call('SCARD', refs) == 0 then
      if redis.call('DEL', link) == 1 then table.insert(unlinked, digest) end
      redis.call('SREM', holders, member)
    end
  end
end
if admit then
  redis.call('SADD', KEYS[3], member)
  local children = tonumber(ARGV[6 + 2 * n])
  for j = 1, children do redis.call('SET', KEYS[3 + 3 * n + j], m) end
else
  redis.call('SREM', KEYS[3], member)
end
return unlinked
`)

// A re-evaluation detained cleared content: create or update the record as \`revoked\` in one step.
// KEYS: record, index, upstream index, release-expiry index. ARGV: upstream, repository, digest,
// reasons JSON, revision, at, history limit.
const MARK_REVOKED = new Script(`${WITH_HISTORY}
local at = tonumber(ARGV[6])
local raw = redis.call('GET', KEYS[1])
local rec
if raw then
  rec = cjson.decode(raw)
else
  rec = {upstream = ARGV[1], repository = ARGV[2], digest = ARGV[3],
    firstSeen = at, lastSeen = at, refused = 0, references = {}, clients = {}}
end
rec.state = 'revoked'
rec.release = nil
redis.call('ZREM', KEYS[4], KEYS[1])
rec.reasons = cjson.decode(ARGV[4])
rec.history = withHistory(rec.history, {action = 'revoked', by = 'customs', at = at, revision = ARGV[5]}, tonumber(ARGV[7]))
redis.call('SET', KEYS[1], cjson.encode(rec))
redis.call('ZADD', KEYS[2], rec.lastSeen, KEYS[1])
redis.call('ZADD', KEYS[3], rec.lastSeen, KEYS[1])
if raw then return 0 else return 1 end
`)

// The policies clear a digest again: its record, if any and not `cleared` already, says so.
// KEYS: record, release-expiry index. ARGV: revision, at, history limit, the states it may end
// as ',a,b,' or '' for any.
// Returns the state the record left, or false when nothing changed.
const MARK_CLEARED = new Script(`${WITH_HISTORY}
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local rec = cjson.decode(raw)
if rec.state == 'cleared' then return false end
if ARGV[4] ~= '' and not string.find(ARGV[4], ',' .. rec.state .. ',', 1, true) then return false end
local previous = rec.state
rec.state = 'cleared'
rec.release = nil
redis.call('ZREM', KEYS[2], KEYS[1])
rec.history = withHistory(rec.history, {action = 'cleared', by = 'customs', at = tonumber(ARGV[2]), revision = ARGV[1]}, tonumber(ARGV[3]))
redis.call('SET', KEYS[1], cjson.encode(rec))
return previous
`)

// Claims one due expiry and detains the record again, in one step. The index entry is the claim:
// whoever removes it moves the record, so two replicas running the job at once move it once. A
// record whose release was revoked, or renewed to a later expiry, is left as it is.
// KEYS: record, release-expiry index. ARGV: now, actor, history limit.
// Returns the JSON of {upstream, repository, digest, release}, or false when not claimed.
const EXPIRE_RELEASE = new Script(`${WITH_HISTORY}
if not redis.call('ZSCORE', KEYS[2], KEYS[1]) then return false end
local now = tonumber(ARGV[1])
local raw = redis.call('GET', KEYS[1])
if not raw then
  redis.call('ZREM', KEYS[2], KEYS[1])
  return false
end
local rec = cjson.decode(raw)
local release = rec.release
if rec.state ~= 'released' or type(release) ~= 'table' then
  redis.call('ZREM', KEYS[2], KEYS[1])
  return false
end
if release.expires > now then
  redis.call('ZADD', KEYS[2], release.expires, KEYS[1])
  return false
end
rec.state = 'detained'
rec.release = nil
rec.history = withHistory(rec.history, {action = 'expire', by = ARGV[2], at = now, expires = release.expires}, tonumber(ARGV[3]))
redis.call('SET', KEYS[1], cjson.encode(rec))
redis.call('ZREM', KEYS[2], KEYS[1])
return cjson.encode({upstream = rec.upstream, repository = rec.repository, digest = rec.digest, release = release})
`)

function clientOptions(options: RedisStateStoreOptions): RedisOptions {
  return {
    lazyConnect: false,
    // Fail fast instead of queueing while disconnected: a pull waiting on state must get a 503
    // now, not a hang. maxRetriesPerRequest 0 rejects in-flight commands when the socket drops,
    // and without the resend a command we already reported as failed is not applied later.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs ?? 1000,
    connectTimeout: 2000,
    // Reconnect forever with capped backoff: Customs must recover from a Redis restart unaided.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times - 1, 5), 2000),
  }
}

export class RedisStateStore implements StateStore {
  readonly #client: Redis
  readonly #keys: StateKeys
  readonly #owned: boolean
  readonly #pingTimeoutMs: number
  readonly #options: RedisStateStoreOptions
  #schemaError: StateSchemaError | null = null
  readonly #onError = (err: Error): void => this.#options.onConnectionError?.(err)
  readonly #onReady = (): void => {
    // A Redis restarted without persistence has lost the schema key: write it again.
    this.#checkSchema().catch((err: unknown) => this.#options.onConnectionError?.(err instanceof Error ? err : new Error(String(err))))
  }

  private constructor(options: RedisStateStoreOptions) {
    this.#options = options
    this.#keys = stateKeys(options.prefix) // first: a bad prefix must not leave a client behind
    this.#owned = options.client === undefined
    this.#client = options.client ?? new Redis(options.url, clientOptions(options))
    this.#pingTimeoutMs = options.commandTimeoutMs ?? 1000
    this.#client.on('error', this.#onError)
  }

  /** Connects, then checks or writes the schema version; throws STATE_UNAVAILABLE if it cannot. */
  static async connect(options: RedisStateStoreOptions): Promise<RedisStateStore> {
    const store = new RedisStateStore(options)
    try {
      await waitReady(store.#client, options.connectTimeoutMs ?? 5000)
      await store.#call('schema check', () => store.#checkSchema())
    } catch (err) {
      await store.close()
      throw unavailable('connect', err)
    }
    store.#client.on('ready', store.#onReady)
    return store
  }

  /**
   * Returns at once and connects in the background, so that a process started while Redis is
   * down comes up not ready (every call STATE_UNAVAILABLE, /readyz 503) instead of exiting, and
   * becomes ready when Redis answers. The schema version is checked on every (re)connection.
   */
  static open(options: RedisStateStoreOptions): RedisStateStore {
    const store = new RedisStateStore(options)
    store.#client.on('ready', store.#onReady)
    return store
  }

  async #checkSchema(): Promise<void> {
    const key = this.#keys.schemaVersionKey
    const expected = String(SCHEMA_VERSION)
    await this.#client.set(key, expected, 'NX')
    const found = await this.#client.get(key)
    this.#schemaError = found === expected ? null : new StateSchemaError(String(found), expected)
    if (this.#schemaError !== null) throw this.#schemaError
  }

  async #call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.#schemaError !== null) throw this.#schemaError
    try {
      return await fn()
    } catch (err) {
      throw unavailable(op, err)
    }
  }

  /** The connection and prefix, for the audit stream (src/audit/redis-store.ts) to share. */
  get redis(): { client: Redis; prefix: string } {
    return { client: this.#client, prefix: this.#options.prefix }
  }

  async ping(): Promise<void> {
    await this.#call('ping', () => withTimeout(this.#client.ping(), this.#pingTimeoutMs))
  }

  async getTag(repo: RepoKey, tag: string): Promise<TagRecord | null> {
    return this.#call('getTag', async () =>
      parse<TagRecord>(await this.#client.get(this.#keys.tag(repo, tag)))
    )
  }

  async setTag(
    repo: RepoKey,
    tag: string,
    record: TagRecord
  ): Promise<{ previous: Digest | null }> {
    return this.#call('setTag', async () => {
      const keys = [this.#keys.tag(repo, tag), this.#keys.tagHistory(repo, tag)]
      const json = JSON.stringify({ digest: record.digest, checkedAt: record.checkedAt })
      const to = JSON.stringify(record.digest)
      const at = JSON.stringify(record.checkedAt)
      const args = [json, record.digest, to, at, TAG_HISTORY_LIMIT]
      const reply = (await SET_TAG.run(this.#client, keys, args)) as [number, string]
      return { previous: reply[1] === '' ? null : (reply[1] as Digest) }
    })
  }

  async tagHistory(repo: RepoKey, tag: string, limit: number): Promise<TagMove[]> {
    if (limit <= 0) return []
    return this.#call('tagHistory', async () => {
      const entries = await this.#client.lrange(this.#keys.tagHistory(repo, tag), 0, limit - 1)
      return entries.map((entry) => JSON.parse(entry) as TagMove)
    })
  }

  async getManifest(repo: RepoKey, digest: Digest): Promise<ManifestRecord | null> {
    return this.#call('getManifest', async () =>
      parse<ManifestRecord>(await this.#client.get(this.#keys.manifest(repo, digest)))
    )
  }

  async recordManifest(repo: RepoKey, record: ManifestRecord, links: ManifestLinks): Promise<void> {
    await this.#call('recordManifest', async () => {
      if (record.verdict.outcome !== 'detained') {
        await this.#record(repo, record, 'admit', links.blobs, links.children)
        return
      }
      // A manifest recorded detained closes the gate of the blobs it alone held.
      const known = await this.#client.smembers(this.#keys.manifestBlobs(repo, record.digest))
      const blobs = new Set<string>([...known, ...links.blobs.map((b) => b.digest)])
      await this.#record(repo, record, 'detain', [...blobs].map((digest) => ({ digest: digest as Digest, size: 0 })), [])
    })
  }

  async detainManifest(repo: RepoKey, record: ManifestRecord): Promise<{ unlinked: Digest[] }> {
    if (record.verdict.outcome !== 'detained') throw new Error('detainManifest takes a detained verdict')
    return this.#call('detainManifest', async () => {
      // The set is written once per (repository, digest): the same bytes reference the same blobs.
      const known = await this.#client.smembers(this.#keys.manifestBlobs(repo, record.digest))
      const blobs = known.map((digest) => ({ digest: digest as Digest, size: 0 }))
      return { unlinked: await this.#record(repo, record, 'detain', blobs, []) }
    })
  }

  async #record(
    repo: RepoKey,
    record: ManifestRecord,
    mode: 'admit' | 'detain',
    blobs: readonly BlobLink[],
    children: readonly Digest[]
  ): Promise<Digest[]> {
    const m = record.digest
    const keys = [this.#keys.manifest(repo, m), this.#keys.manifestBlobs(repo, m), this.#keys.holders(m)]
    const args: (string | number)[] = [mode, JSON.stringify(record), m, this.#keys.holderMember(repo), blobs.length]
    for (const blob of blobs) {
      keys.push(this.#keys.blob(repo, blob.digest), this.#keys.blobRefs(repo, blob.digest), this.#keys.holders(blob.digest))
      const link: BlobLink = { digest: blob.digest, size: blob.size }
      args.push(blob.digest, mode === 'admit' ? JSON.stringify(link) : '')
    }
    args.push(children.length)
    for (const child of children) keys.push(this.#keys.parent(repo, child))
    return (await RECORD_MANIFEST.run(this.#client, keys, args)) as Digest[]
  }

  async manifestBlobs(repo: RepoKey, digest: Digest): Promise<Digest[]> {
    const key = this.#keys.manifestBlobs(repo, digest)
    return this.#call('manifestBlobs', async () => (await this.#client.smembers(key)) as Digest[])
  }

  async unheld(digests: readonly Digest[]): Promise<Digest[]> {
    if (digests.length === 0) return []
    return this.#call('unheld', async () => {
      const tx = this.#client.pipeline()
      for (const digest of digests) tx.scard(this.#keys.holders(digest))
      const results = (await tx.exec()) ?? []
      return digests.filter((_, i) => {
        const [err, count] = results[i] ?? [new Error('no reply'), null]
        if (err) throw err
        return count === 0
      })
    })
  }

  async listManifests(query: ScanQuery): Promise<ScanPage<{ repo: RepoKey; record: ManifestRecord }>> {
    return this.#call('listManifests', async () => {
      const { keys, next } = await this.#scan(this.#keys.manifestPattern(), query)
      const values = keys.length === 0 ? [] : await this.#client.mget(...keys)
      const entries = keys.flatMap((key, i) => {
        const where = this.#keys.parseManifest(key)
        const json = values[i]
        if (where === null || json === null || json === undefined) return []
        return [{ repo: where.repo, record: JSON.parse(json) as ManifestRecord }]
      })
      return next === undefined ? { entries } : { entries, next }
    })
  }

  async listTags(query: ScanQuery): Promise<ScanPage<{ repo: RepoKey; tag: string; record: TagRecord }>> {
    return this.#call('listTags', async () => {
      const { keys, next } = await this.#scan(this.#keys.tagPattern(), query)
      const values = keys.length === 0 ? [] : await this.#client.mget(...keys)
      const entries = keys.flatMap((key, i) => {
        const where = this.#keys.parseTag(key)
        const json = values[i]
        if (where === null || json === null || json === undefined) return []
        return [{ repo: where.repo, tag: where.tag, record: JSON.parse(json) as TagRecord }]
      })
      return next === undefined ? { entries } : { entries, next }
    })
  }

  /** One SCAN step; the cursor is Redis's own, `0` meaning the walk is over. */
  async #scan(pattern: string, query: ScanQuery): Promise<{ keys: string[]; next?: string }> {
    const cursor = query.after ?? '0'
    if (!/^\d{1,20}$/.test(cursor)) throw new Error('invalid scan cursor')
    const count = Math.max(1, Math.floor(query.limit))
    const [next, keys] = await this.#client.scan(cursor, 'MATCH', pattern, 'COUNT', count)
    return next === '0' ? { keys } : { keys, next }
  }

  async getBlobLink(repo: RepoKey, digest: Digest): Promise<BlobLink | null> {
    return this.#call('getBlobLink', async () =>
      parse<BlobLink>(await this.#client.get(this.#keys.blob(repo, digest)))
    )
  }

  async getParent(repo: RepoKey, digest: Digest): Promise<Digest | null> {
    const key = this.#keys.parent(repo, digest)
    return this.#call('getParent', async () => (await this.#client.get(key)) as Digest | null)
  }

  async recordDetention(repo: RepoKey, digest: Digest, detention: Detention): Promise<{ created: boolean; previous: QuarantineState | null }> {
    const keys = [
      this.#keys.quarantine(repo, digest),
      this.#keys.quarantineIndex(),
      this.#keys.quarantineUpstreamIndex(repo.upstream),
    ]
    const client = detention.client === undefined ? '' : JSON.stringify(pickClient(detention.client))
    const args = [
      repo.upstream,
      repo.repository,
      digest,
      detention.reference,
      JSON.stringify(detention.reasons),
      client,
      Math.round(detention.at),
      QUARANTINE_REFERENCES_LIMIT,
      QUARANTINE_CLIENTS_LIMIT,
      detention.revision ?? '',
      QUARANTINE_HISTORY_LIMIT,
    ]
    const reply = await this.#call('recordDetention', () => RECORD_DETENTION.run(this.#client, keys, args))
    return { created: reply === 1, previous: typeof reply === 'string' ? (reply as QuarantineState) : null }
  }

  async getQuarantine(repo: RepoKey, digest: Digest): Promise<QuarantineRecord | null> {
    const key = this.#keys.quarantine(repo, digest)
    return this.#call('getQuarantine', async () => {
      const json = await this.#client.get(key)
      return json === null ? null : normalize(JSON.parse(json) as QuarantineRecord)
    })
  }

  async releaseQuarantine(
    repo: RepoKey,
    digest: Digest,
    release: QuarantineRelease
  ): Promise<boolean> {
    const { by, reason, expires, at } = release
    const limit = QUARANTINE_HISTORY_LIMIT
    const args = ['release', by, Math.round(at), reason, Math.round(expires), limit]
    return this.#act('releaseQuarantine', repo, digest, args)
  }

  async revokeRelease(
    repo: RepoKey,
    digest: Digest,
    revocation: QuarantineRevocation
  ): Promise<boolean> {
    const at = Math.round(revocation.at)
    const args = ['revoke', revocation.by, at, '', '', QUARANTINE_HISTORY_LIMIT]
    return this.#act('revokeRelease', repo, digest, args)
  }

  async markRevoked(
    repo: RepoKey,
    digest: Digest,
    revocation: QuarantineReevaluation
  ): Promise<{ created: boolean }> {
    const keys = [
      this.#keys.quarantine(repo, digest),
      this.#keys.quarantineIndex(),
      this.#keys.quarantineUpstreamIndex(repo.upstream),
      this.#keys.releaseExpiry(),
    ]
    const args = [
      repo.upstream,
      repo.repository,
      digest,
      JSON.stringify(revocation.reasons),
      revocation.revision,
      Math.round(revocation.at),
      QUARANTINE_HISTORY_LIMIT,
    ]
    const created = await this.#call('markRevoked', () => MARK_REVOKED.run(this.#client, keys, args))
    return { created: created === 1 }
  }

  async purgeQuarantine(repo: RepoKey, digest: Digest, purge: QuarantinePurge): Promise<boolean> {
    const args = ['purge', purge.by, Math.round(purge.at), purge.reason, '', QUARANTINE_HISTORY_LIMIT]
    return this.#act('purgeQuarantine', repo, digest, args)
  }

  async markCleared(
    repo: RepoKey,
    digest: Digest,
    clearance: QuarantineClearance
  ): Promise<{ previous: QuarantineState | null }> {
    const keys = [this.#keys.quarantine(repo, digest), this.#keys.releaseExpiry()]
    const from = clearance.from === undefined ? '' : `,${clearance.from.join(',')},`
    const args = [clearance.revision, Math.round(clearance.at), QUARANTINE_HISTORY_LIMIT, from]
    const reply = await this.#call('markCleared', () => MARK_CLEARED.run(this.#client, keys, args))
    return { previous: typeof reply === 'string' ? (reply as QuarantineState) : null }
  }

  async #act(
    op: string,
    repo: RepoKey,
    digest: Digest,
    args: (string | number)[]
  ): Promise<boolean> {
    const keys = [this.#keys.quarantine(repo, digest), this.#keys.releaseExpiry()]
    return this.#call(op, async () => {
      return (await QUARANTINE_ACTION.run(this.#client, keys, args)) === 1
    })
  }

  async expireReleases(now: number, limit: number): Promise<ExpiredRelease[]> {
    const count = Math.max(0, Math.floor(limit))
    if (count === 0) return []
    const index = this.#keys.releaseExpiry()
    const at = Math.round(now)
    return this.#call('expireReleases', async () => {
      const due = await this.#client.zrangebyscore(index, '-inf', at, 'LIMIT', 0, count)
      const expired: ExpiredRelease[] = []
      for (const key of due) {
        const args = [at, EXPIRY_ACTOR, QUARANTINE_HISTORY_LIMIT]
        const reply = await EXPIRE_RELEASE.run(this.#client, [key, index], args)
        if (typeof reply === 'string') expired.push(JSON.parse(reply) as ExpiredRelease)
      }
      return expired
    })
  }

  async countQuarantine(): Promise<number> {
    return this.#call('countQuarantine', () => this.#client.zcard(this.#keys.quarantineIndex()))
  }

  async listQuarantine(query: QuarantineQuery): Promise<QuarantinePage> {
    const limit = Math.max(0, Math.floor(query.limit))
    if (limit === 0) return { records: [] }
    const index =
      query.upstream === undefined
        ? this.#keys.quarantineIndex()
        : this.#keys.quarantineUpstreamIndex(query.upstream)
    const cursor = query.after === undefined ? null : decodeQuarantineCursor(query.after)
    return this.#call('listQuarantine', async () => {
      // One more than asked, to know whether there is a next page. Members of equal score come
      // in descending order from ZREVRANGEBYSCORE, which is the order the cursor assumes.
      let entries: Array<[string, number]> = []
      let max = '+inf'
      if (cursor !== null) {
        const ties = pairs(
          await this.#client.zrangebyscore(index, cursor.lastSeen, cursor.lastSeen, 'WITHSCORES')
        )
        entries = ties.filter(([member]) => member < cursor.id).reverse().slice(0, limit + 1)
        max = `(${cursor.lastSeen}`
      }
      if (entries.length <= limit) {
        const more = limit + 1 - entries.length
        const rest = await this.#client.zrevrangebyscore(index, max, '-inf', 'WITHSCORES', 'LIMIT', 0, more)
        entries = entries.concat(pairs(rest))
      }
      const page = entries.slice(0, limit)
      if (page.length === 0) return { records: [] }
      const values = await this.#client.mget(...page.map(([member]) => member))
      const records = values.flatMap((json) =>
        json === null ? [] : [normalize(JSON.parse(json) as QuarantineRecord)]
      )
      const last = page.at(-1)
      if (last === undefined || entries.length <= limit) return { records }
      return { records, next: encodeQuarantineCursor({ lastSeen: last[1], id: last[0] }) }
    })
  }

  async acquireLock(name: string, ttlMs: number): Promise<string | null> {
    return this.#call('acquireLock', async () => {
      const token = randomUUID()
      const ok = await this.#client.set(this.#keys.lock(name), token, 'PX', ms(ttlMs), 'NX')
      return ok === 'OK' ? token : null
    })
  }

  async renewLock(name: string, token: string, ttlMs: number): Promise<boolean> {
    const key = this.#keys.lock(name)
    return this.#call('renewLock', async () => {
      return (await RENEW_LOCK.run(this.#client, [key], [token, ms(ttlMs)])) === 1
    })
  }

  async releaseLock(name: string, token: string): Promise<void> {
    await this.#call('releaseLock', () =>
      RELEASE_LOCK.run(this.#client, [this.#keys.lock(name)], [token])
    )
  }

  async isLocked(name: string): Promise<boolean> {
    const key = this.#keys.lock(name)
    return this.#call('isLocked', async () => (await this.#client.exists(key)) === 1)
  }

  async close(): Promise<void> {
    this.#client.off('ready', this.#onReady)
    if (!this.#owned) return
    if (this.#client.status !== 'end') {
      // QUIT lets replies in flight arrive; when there is no connection it cannot be sent, and
      // disconnect() is what stops the reconnect loop.
      await this.#client.quit().catch(() => this.#client.disconnect())
    }
    this.#client.off('error', this.#onError)
  }
}

function unavailable(op: string, err: unknown): CustomsError {
  if (err instanceof CustomsError) return err
  const reason = err instanceof Error ? err.message : String(err)
  const message = `redis state ${op} failed: ${reason}`
  return new CustomsError('STATE_UNAVAILABLE', message, { cause: err })
}

/** [member, score] pairs from a WITHSCORES reply. */
function pairs(reply: string[]): Array<[string, number]> {
  const out: Array<[string, number]> = []
  for (let i = 0; i + 1 < reply.length; i += 2) out.push([reply[i] as string, Number(reply[i + 1])])
  return out
}

/** Only the known fields, without undefined ones (cjson cannot encode them anyway). */
function pickClient(client: QuarantineClient): QuarantineClient {
  return {
    ...(client.address !== undefined ? { address: client.address } : {}),
    ...(client.userAgent !== undefined ? { userAgent: client.userAgent } : {}),
    ...(client.identity !== undefined ? { identity: client.identity } : {}),
  }
}

/** Lua's cjson writes an empty array as {}: turn the record's arrays back into arrays. */
function normalize(record: QuarantineRecord): QuarantineRecord {
  const list = <T>(value: readonly T[] | undefined): T[] => (Array.isArray(value) ? [...value] : [])
  return {
    ...record,
    references: list(record.references),
    reasons: list(record.reasons),
    clients: list(record.clients),
    ...(record.history !== undefined
      ? { history: record.history.map((h) => (h.reasons !== undefined ? { ...h, reasons: list(h.reasons) } : h)) }
      : {}),
  }
}

function parse<T>(json: string | null): T | null {
  return json === null ? null : (JSON.parse(json) as T)
}

/** PX takes a positive whole number of milliseconds. */
function ms(value: number): number {
  return Math.max(1, Math.ceil(value))
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function waitReady(client: Redis, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  return new Promise((resolve, reject) => {
    let last: unknown
    const onError = (err: Error): void => void (last = err)
    const finish = (err?: Error): void => {
      clearTimeout(timer)
      client.off('ready', onReady).off('error', onError).off('end', onEnd)
      if (err === undefined) resolve()
      else reject(err)
    }
    const onReady = (): void => finish()
    const onEnd = (): void => finish(new Error('connection closed', { cause: last }))
    const timer = setTimeout(() => {
      const reason = last instanceof Error ? `: ${last.message}` : ''
      finish(new Error(`no connection within ${timeoutMs} ms${reason}`, { cause: last }))
    }, timeoutMs)
    client.on('ready', onReady).on('error', onError).on('end', onEnd)
  })
}
