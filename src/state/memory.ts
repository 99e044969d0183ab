// The in-process state store: the quick-start default. One process only, nothing survives a
// restart; the Redis store is for production and for more than one replica.

import { randomUUID } from 'node:crypto'
import type { Digest } from '../oci/digest.js'
import {
  QUARANTINE_CLIENTS_LIMIT,
  QUARANTINE_HISTORY_LIMIT,
  QUARANTINE_REFERENCES_LIMIT,
  EXPIRY_ACTOR,
  TAG_HISTORY_LIMIT,
  decodeQuarantineCursor,
  encodeQuarantineCursor,
  sameClient,
  type BlobLink,
  type Detention,
  type ExpiredRelease,
  type ManifestLinks,
  type ManifestRecord,
  type QuarantineAction,
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

function repoId(repo: RepoKey): string {
  return `${repo.upstream}\u0000${repo.repository}`
}

function setOf<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let set = map.get(key)
  if (set === undefined) map.set(key, (set = new Set()))
  return set
}

/**
 * A page of a map keyed `upstream \0 repository \0 last`, in key order after the cursor (the
 * last key of the previous page, base64url), so that changes between pages lose no old entry.
 */
function scanPage<V, T>(
  map: Map<string, V>,
  query: ScanQuery,
  make: (repo: RepoKey, last: string, value: V) => T
): ScanPage<T> {
  const after = query.after === undefined ? undefined : Buffer.from(query.after, 'base64url').toString('utf8')
  const ids = [...map.keys()].filter((id) => after === undefined || id > after).sort()
  const page = ids.slice(0, Math.max(1, Math.floor(query.limit)))
  const entries = page.map((id) => {
    const [upstream, repository, last] = id.split('\u0000') as [string, string, string]
    return make({ upstream, repository }, last, map.get(id) as V)
  })
  const lastId = page.at(-1)
  if (lastId === undefined || ids.length <= page.length) return { entries }
  return { entries, next: Buffer.from(lastId, 'utf8').toString('base64url') }
}

interface Lock {
  token: string
  expiresAt: number
}

export class MemoryStateStore implements StateStore {
  readonly #tags = new Map<string, TagRecord>()
  readonly #history = new Map<string, TagMove[]>()
  readonly #manifests = new Map<string, ManifestRecord>()
  readonly #blobs = new Map<string, BlobLink>()
  readonly #parents = new Map<string, Digest>()
  readonly #locks = new Map<string, Lock>()
  readonly #quarantine = new Map<string, QuarantineRecord>()
  /** repo id + manifest digest -> the blobs it references. */
  readonly #manifestBlobs = new Map<string, Set<Digest>>()
  /** repo id + blob digest -> the admitted manifests referencing it. */
  readonly #blobRefs = new Map<string, Set<Digest>>()
  /** digest -> ids of the repositories holding it (linked blob or admitted manifest). */
  readonly #holders = new Map<string, Set<string>>()

  async ping(): Promise<void> {}

  async getTag(repo: RepoKey, tag: string): Promise<TagRecord | null> {
    return this.#tags.get(`${repoId(repo)}\u0000${tag}`) ?? null
  }

  async setTag(repo: RepoKey, tag: string, record: TagRecord): Promise<{ previous: Digest | null }> {
    const key = `${repoId(repo)}\u0000${tag}`
    const current = this.#tags.get(key)
    this.#tags.set(key, { ...record })
    if (current?.digest === record.digest) return { previous: null }
    const history = this.#history.get(key) ?? []
    history.unshift({ from: current?.digest ?? null, to: record.digest, at: record.checkedAt })
    history.length = Math.min(history.length, TAG_HISTORY_LIMIT)
    this.#history.set(key, history)
    return { previous: current?.digest ?? null }
  }

  async tagHistory(repo: RepoKey, tag: string, limit: number): Promise<TagMove[]> {
    return (this.#history.get(`${repoId(repo)}\u0000${tag}`) ?? []).slice(0, limit)
  }

  async getManifest(repo: RepoKey, digest: Digest): Promise<ManifestRecord | null> {
    return this.#manifests.get(`${repoId(repo)}\u0000${digest}`) ?? null
  }

  async recordManifest(repo: RepoKey, record: ManifestRecord, links: ManifestLinks): Promise<void> {
    if (record.verdict.outcome === 'detained') {
      this.#detain(repo, record, links.blobs.map((b) => b.digest))
      return
    }
    const id = repoId(repo)
    const m = record.digest
    this.#manifests.set(`${id}\u0000${m}`, structuredClone(record))
    const known = this.#manifestBlobs.get(`${id}\u0000${m}`) ?? new Set<Digest>()
    for (const blob of links.blobs) {
      known.add(blob.digest)
      this.#blobs.set(`${id}\u0000${blob.digest}`, { ...blob })
      setOf(this.#blobRefs, `${id}\u0000${blob.digest}`).add(m)
      setOf(this.#holders, blob.digest).add(id)
    }
    this.#manifestBlobs.set(`${id}\u0000${m}`, known)
    setOf(this.#holders, m).add(id)
    for (const child of links.children) this.#parents.set(`${id}\u0000${child}`, m)
  }

  async detainManifest(repo: RepoKey, record: ManifestRecord): Promise<{ unlinked: Digest[] }> {
    if (record.verdict.outcome !== 'detained') throw new Error('detainManifest takes a detained verdict')
    return { unlinked: this.#detain(repo, record, []) }
  }

  /** Records a detained verdict and closes the gate for the blobs no admitted manifest holds. */
  #detain(repo: RepoKey, record: ManifestRecord, blobs: readonly Digest[]): Digest[] {
    const id = repoId(repo)
    const m = record.digest
    this.#manifests.set(`${id}\u0000${m}`, structuredClone(record))
    const known = this.#manifestBlobs.get(`${id}\u0000${m}`) ?? new Set<Digest>()
    for (const b of blobs) known.add(b)
    this.#manifestBlobs.set(`${id}\u0000${m}`, known)
    const unlinked: Digest[] = []
    for (const b of known) {
      const refs = this.#blobRefs.get(`${id}\u0000${b}`)
      refs?.delete(m)
      if (refs !== undefined && refs.size > 0) continue
      this.#blobRefs.delete(`${id}\u0000${b}`)
      if (this.#blobs.delete(`${id}\u0000${b}`)) unlinked.push(b)
      this.#holders.get(b)?.delete(id)
    }
    this.#holders.get(m)?.delete(id)
    return unlinked
  }

  async manifestBlobs(repo: RepoKey, digest: Digest): Promise<Digest[]> {
    return [...(this.#manifestBlobs.get(`${repoId(repo)}\u0000${digest}`) ?? [])]
  }

  async unheld(digests: readonly Digest[]): Promise<Digest[]> {
    return digests.filter((d) => (this.#holders.get(d)?.size ?? 0) === 0)
  }

  async listManifests(query: ScanQuery): Promise<ScanPage<{ repo: RepoKey; record: ManifestRecord }>> {
    return scanPage(this.#manifests, query, (repo, _digest, record) => ({ repo, record: structuredClone(record) }))
  }

  async listTags(query: ScanQuery): Promise<ScanPage<{ repo: RepoKey; tag: string; record: TagRecord }>> {
    return scanPage(this.#tags, query, (repo, tag, record) => ({ repo, tag, record: { ...record } }))
  }

  async getBlobLink(repo: RepoKey, digest: Digest): Promise<BlobLink | null> {
    return this.#blobs.get(`${repoId(repo)}\u0000${digest}`) ?? null
  }

  async getParent(repo: RepoKey, digest: Digest): Promise<Digest | null> {
    return this.#parents.get(`${repoId(repo)}\u0000${digest}`) ?? null
  }

  async recordDetention(repo: RepoKey, digest: Digest, detention: Detention): Promise<{ created: boolean; previous: QuarantineState | null }> {
    const id = `${repoId(repo)}\u0000${digest}`
    const current = this.#quarantine.get(id)
    const { at, reference, revision } = detention
    const client: QuarantineClient | undefined =
      detention.client === undefined ? undefined : { ...detention.client }
    // A purged or cleared digest refused again is detained again; revoked and released stay.
    const previous = current?.state === 'purged' || current?.state === 'cleared' ? current.state : null
    const action: QuarantineAction = {
      action: 'detained',
      by: 'customs',
      at,
      reasons: [...detention.reasons],
      ...(revision !== undefined ? { revision } : {}),
    }
    this.#quarantine.set(id, {
      // A release and its history outlive further refusals (of an expired release, say).
      ...current,
      upstream: repo.upstream,
      repository: repo.repository,
      digest,
      state: current === undefined || previous !== null ? 'detained' : current.state,
      ...(previous !== null ? { history: withHistory(current?.history, action) } : {}),
      references: [reference, ...(current?.references ?? []).filter((r) => r !== reference)].slice(
        0,
        QUARANTINE_REFERENCES_LIMIT
      ),
      reasons: [...detention.reasons],
      firstSeen: Math.min(current?.firstSeen ?? at, at),
      lastSeen: Math.max(current?.lastSeen ?? at, at),
      refused: (current?.refused ?? 0) + 1,
      clients:
        client === undefined
          ? (current?.clients ?? [])
          : [client, ...(current?.clients ?? []).filter((c) => !sameClient(c, client))].slice(
              0,
              QUARANTINE_CLIENTS_LIMIT
            ),
    })
    return { created: current === undefined, previous }
  }

  async getQuarantine(repo: RepoKey, digest: Digest): Promise<QuarantineRecord | null> {
    const record = this.#quarantine.get(`${repoId(repo)}\u0000${digest}`)
    return record === undefined ? null : structuredClone(record)
  }

  async releaseQuarantine(
    repo: RepoKey,
    digest: Digest,
    release: QuarantineRelease
  ): Promise<boolean> {
    const { by, reason, expires, at } = release
    if (this.#quarantine.get(`${repoId(repo)}\u0000${digest}`)?.state === 'cleared') return false
    return this.#act(repo, digest, { action: 'release', by, at, reason, expires }, (record) => ({
      ...record,
      state: 'released',
      release: { by, reason, expires, at },
    }))
  }

  async revokeRelease(
    repo: RepoKey,
    digest: Digest,
    revocation: QuarantineRevocation
  ): Promise<boolean> {
    const { by, at } = revocation
    const current = this.#quarantine.get(`${repoId(repo)}\u0000${digest}`)
    if (current?.state !== 'released' || current.release === undefined || current.release.expires <= at) return false
    return this.#act(repo, digest, { action: 'revoke', by, at }, ({ release: _, ...record }) => ({
      ...record,
      state: 'detained',
    }))
  }

  async markRevoked(
    repo: RepoKey,
    digest: Digest,
    revocation: QuarantineReevaluation
  ): Promise<{ created: boolean }> {
    const id = `${repoId(repo)}\u0000${digest}`
    const { at, revision } = revocation
    const created = !this.#quarantine.has(id)
    if (created) {
      this.#quarantine.set(id, {
        upstream: repo.upstream,
        repository: repo.repository,
        digest,
        state: 'revoked',
        references: [],
        reasons: [],
        firstSeen: at,
        lastSeen: at,
        refused: 0,
        clients: [],
      })
    }
    const action: QuarantineAction = { action: 'revoked', by: 'customs', at, revision }
    this.#act(repo, digest, action, ({ release: _, ...record }) => ({
      ...record,
      state: 'revoked',
      reasons: [...revocation.reasons],
    }))
    return { created }
  }

  async purgeQuarantine(repo: RepoKey, digest: Digest, purge: QuarantinePurge): Promise<boolean> {
    const { by, reason, at } = purge
    return this.#act(repo, digest, { action: 'purge', by, at, reason }, ({ release: _, ...record }) => ({
      ...record,
      state: 'purged',
    }))
  }

  async markCleared(
    repo: RepoKey,
    digest: Digest,
    clearance: QuarantineClearance
  ): Promise<{ previous: QuarantineState | null }> {
    const current = this.#quarantine.get(`${repoId(repo)}\u0000${digest}`)
    if (current === undefined || current.state === 'cleared') return { previous: null }
    if (clearance.from !== undefined && !clearance.from.includes(current.state)) return { previous: null }
    const { at, revision } = clearance
    this.#act(repo, digest, { action: 'cleared', by: 'customs', at, revision }, ({ release: _, ...record }) => ({
      ...record,
      state: 'cleared',
    }))
    return { previous: current.state }
  }

  async expireReleases(now: number, limit: number): Promise<ExpiredRelease[]> {
    // Synchronous from the scan to the last write: nothing else runs in between, which is what
    // makes each expiry claimed once in one process. The quick start has few records: no index.
    const due = [...this.#quarantine.entries()]
      .flatMap(([id, r]) => (r.state === 'released' && r.release !== undefined && r.release.expires <= now ? [{ id, r, release: r.release }] : []))
      .sort((a, b) => a.release.expires - b.release.expires)
      .slice(0, Math.max(0, Math.floor(limit)))
    return due.map(({ id, r, release }) => {
      const action: QuarantineAction = { action: 'expire', by: EXPIRY_ACTOR, at: now, expires: release.expires }
      const { release: _, ...rest } = r
      this.#quarantine.set(id, { ...rest, state: 'detained', history: withHistory(r.history, action) })
      return { upstream: r.upstream, repository: r.repository, digest: r.digest, release: { ...release } }
    })
  }

  /** Applies `change` to an existing record and puts `action` first in its bounded history. */
  #act(
    repo: RepoKey,
    digest: Digest,
    action: QuarantineAction,
    change: (record: QuarantineRecord) => QuarantineRecord
  ): boolean {
    const id = `${repoId(repo)}\u0000${digest}`
    const current = this.#quarantine.get(id)
    if (current === undefined) return false
    this.#quarantine.set(id, { ...change(current), history: withHistory(current.history, action) })
    return true
  }

  async countQuarantine(): Promise<number> {
    return this.#quarantine.size
  }

  async listQuarantine(query: QuarantineQuery): Promise<QuarantinePage> {
    const cursor = query.after === undefined ? null : decodeQuarantineCursor(query.after)
    // Ordered like the Redis index: lastSeen descending, ties by id descending.
    const entries = [...this.#quarantine.entries()]
      .filter(([, r]) => query.upstream === undefined || r.upstream === query.upstream)
      .sort(([ia, a], [ib, b]) => b.lastSeen - a.lastSeen || (ia < ib ? 1 : ia > ib ? -1 : 0))
      .filter(
        ([id, r]) =>
          cursor === null ||
          r.lastSeen < cursor.lastSeen ||
          (r.lastSeen === cursor.lastSeen && id < cursor.id)
      )
    const page = entries.slice(0, Math.max(0, query.limit))
    const last = page.at(-1)
    const records = page.map(([, r]) => structuredClone(r))
    if (last === undefined || entries.length <= page.length) return { records }
    return { records, next: encodeQuarantineCursor({ lastSeen: last[1].lastSeen, id: last[0] }) }
  }

  async acquireLock(name: string, ttlMs: number): Promise<string | null> {
    const now = Date.now()
    const held = this.#locks.get(name)
    if (held !== undefined && held.expiresAt > now) return null
    const token = randomUUID()
    this.#locks.set(name, { token, expiresAt: now + ttlMs })
    return token
  }

  async renewLock(name: string, token: string, ttlMs: number): Promise<boolean> {
    const held = this.#locks.get(name)
    if (held === undefined || held.token !== token || held.expiresAt <= Date.now()) return false
    held.expiresAt = Date.now() + ttlMs
    return true
  }

  async releaseLock(name: string, token: string): Promise<void> {
    if (this.#locks.get(name)?.token === token) this.#locks.delete(name)
  }

  async isLocked(name: string): Promise<boolean> {
    const held = this.#locks.get(name)
    return held !== undefined && held.expiresAt > Date.now()
  }

  async close(): Promise<void> {}
}

/** A quarantine record's bounded history with `action` first (newest first), as redis.ts keeps it. */
function withHistory(history: readonly QuarantineAction[] | undefined, action: QuarantineAction): QuarantineAction[] {
  return [action, ...(history ?? [])].slice(0, QUARANTINE_HISTORY_LIMIT)
}
