// A StateStore wrapper that keeps Customs serving what it recently saw cleared while the state
// store (Redis) is away, and denies the rest (DESIGN "fail closed").
//
// Why a wrapper in state/ rather than checks in the pull path: the pull path already treats every
// state call as the truth and fails closed on STATE_UNAVAILABLE; this keeps that so. The wrapper
// only answers the three reads a pull of known content makes (tag, manifest record, blob link)
// from a bounded memory of what the real store answered or accepted, and only when the real store
// throws STATE_UNAVAILABLE. Every write, lock and quarantine call goes to the real store and fails
// as it fails: a quarantine write that fails is logged by the pull path and the pull still denied.
//
// Only a manifest whose own verdict is cleared is remembered: a detained one, or one cleared only
// by a person's release (detainedFor), is never answered from memory, so memory can only repeat an
// admission the real store made, never invent one. A newer answer from the real store (a record
// detained under a new revision, a link gone) replaces or removes what is remembered. Blob links
// are remembered as the store answered them: one opened by a release that lapses during the
// outage stays open here until Redis answers again (the manifest itself is refused meanwhile).
// Entries have no age limit: the memory only speaks while the store is away.

import { isCustomsError } from '../errors.js'
import type { Digest } from '../oci/digest.js'
import type {
  BlobLink,
  Detention,
  ExpiredRelease,
  ManifestLinks,
  ManifestRecord,
  QuarantineClearance,
  QuarantinePage,
  QuarantinePurge,
  QuarantineQuery,
  QuarantineReevaluation,
  QuarantineRecord,
  QuarantineRelease,
  QuarantineRevocation,
  QuarantineState,
  RepoKey,
  ScanPage,
  ScanQuery,
  StateStore,
  TagMove,
  TagRecord,
} from './store.js'
import { Lru } from '../lru.js'

/** How many entries each of the three memories keeps (least recently used dropped first). */
export const FALLBACK_ENTRIES = 10_000

function key(repo: RepoKey, what: string): string {
  return `${repo.upstream}\u0000${repo.repository}\u0000${what}`
}

/** Cleared on its own: not detained, and not standing only by a release. */
function clearedOnItsOwn(record: ManifestRecord): boolean {
  return record.verdict.outcome !== 'detained' && record.verdict.detainedFor === undefined
}

export interface FallbackOptions {
  readonly entries?: number
  /** Called each time an answer comes from memory because the store is unavailable. */
  readonly onFallback?: (op: 'getTag' | 'getManifest' | 'getBlobLink', found: boolean) => void
}

export class FallbackStateStore implements StateStore {
  readonly #inner: StateStore
  readonly #options: FallbackOptions
  readonly #tags: Lru<TagRecord>
  readonly #manifests: Lru<ManifestRecord>
  readonly #links: Lru<BlobLink>

  constructor(inner: StateStore, options: FallbackOptions = {}) {
    this.#inner = inner
    this.#options = options
    const entries = options.entries ?? FALLBACK_ENTRIES
    this.#tags = new Lru(entries)
    this.#manifests = new Lru(entries)
    this.#links = new Lru(entries)
  }

  /** The wrapped store's Redis connection, which the audit log writes through. */
  get redis(): StateStore['redis'] {
    return this.#inner.redis
  }

  /** How many entries are remembered, for tests and metrics. */
  get remembered(): { tags: number; manifests: number; links: number } {
    return { tags: this.#tags.size, manifests: this.#manifests.size, links: this.#links.size }
  }

  ping(): Promise<void> {
    return this.#inner.ping()
  }

  async getTag(repo: RepoKey, tag: string): Promise<TagRecord | null> {
    const k = key(repo, tag)
    try {
      const record = await this.#inner.getTag(repo, tag)
      if (record === null) this.#tags.delete(k)
      else this.#tags.set(k, record)
      return record
    } catch (err) {
      return this.#fallback('getTag', err, this.#tags.get(k))
    }
  }

  async setTag(repo: RepoKey, tag: string, record: TagRecord): Promise<{ previous: Digest | null }> {
    const result = await this.#inner.setTag(repo, tag, record)
    this.#tags.set(key(repo, tag), record)
    return result
  }

  tagHistory(repo: RepoKey, tag: string, limit: number): Promise<TagMove[]> {
    return this.#inner.tagHistory(repo, tag, limit)
  }

  async getManifest(repo: RepoKey, digest: Digest): Promise<ManifestRecord | null> {
    const k = key(repo, digest)
    try {
      const record = await this.#inner.getManifest(repo, digest)
      if (record !== null && clearedOnItsOwn(record)) this.#manifests.set(k, record)
      else this.#manifests.delete(k)
      return record
    } catch (err) {
      return this.#fallback('getManifest', err, this.#manifests.get(k))
    }
  }

  async recordManifest(repo: RepoKey, record: ManifestRecord, links: ManifestLinks): Promise<void> {
    await this.#inner.recordManifest(repo, record, links)
    const k = key(repo, record.digest)
    if (!clearedOnItsOwn(record)) {
      this.#manifests.delete(k)
      return
    }
    this.#manifests.set(k, record)
    for (const link of links.blobs) this.#links.set(key(repo, link.digest), link)
  }

  async detainManifest(repo: RepoKey, record: ManifestRecord): Promise<{ unlinked: Digest[] }> {
    // Forgotten before the store is asked: a re-evaluation that detains must never be undone here.
    this.#manifests.delete(key(repo, record.digest))
    const result = await this.#inner.detainManifest(repo, record)
    for (const digest of result.unlinked) this.#links.delete(key(repo, digest))
    return result
  }

  manifestBlobs(repo: RepoKey, digest: Digest): Promise<Digest[]> {
    return this.#inner.manifestBlobs(repo, digest)
  }

  unheld(digests: readonly Digest[]): Promise<Digest[]> {
    return this.#inner.unheld(digests)
  }

  listManifests(query: ScanQuery): Promise<ScanPage<{ repo: RepoKey; record: ManifestRecord }>> {
    return this.#inner.listManifests(query)
  }

  listTags(query: ScanQuery): Promise<ScanPage<{ repo: RepoKey; tag: string; record: TagRecord }>> {
    return this.#inner.listTags(query)
  }

  async getBlobLink(repo: RepoKey, digest: Digest): Promise<BlobLink | null> {
    const k = key(repo, digest)
    try {
      const link = await this.#inner.getBlobLink(repo, digest)
      if (link === null) this.#links.delete(k)
      else this.#links.set(k, link)
      return link
    } catch (err) {
      return this.#fallback('getBlobLink', err, this.#links.get(k))
    }
  }

  getParent(repo: RepoKey, digest: Digest): Promise<Digest | null> {
    return this.#inner.getParent(repo, digest)
  }

  recordDetention(repo: RepoKey, digest: Digest, detention: Detention): Promise<{ created: boolean; previous: QuarantineState | null }> {
    return this.#inner.recordDetention(repo, digest, detention)
  }

  getQuarantine(repo: RepoKey, digest: Digest): Promise<QuarantineRecord | null> {
    return this.#inner.getQuarantine(repo, digest)
  }

  listQuarantine(query: QuarantineQuery): Promise<QuarantinePage> {
    return this.#inner.listQuarantine(query)
  }

  countQuarantine(): Promise<number> {
    return this.#inner.countQuarantine()
  }

  expireReleases(now: number, limit: number): Promise<ExpiredRelease[]> {
    return this.#inner.expireReleases(now, limit)
  }

  releaseQuarantine(repo: RepoKey, digest: Digest, release: QuarantineRelease): Promise<boolean> {
    return this.#inner.releaseQuarantine(repo, digest, release)
  }

  revokeRelease(repo: RepoKey, digest: Digest, revocation: QuarantineRevocation): Promise<boolean> {
    return this.#inner.revokeRelease(repo, digest, revocation)
  }

  markRevoked(repo: RepoKey, digest: Digest, revocation: QuarantineReevaluation): Promise<{ created: boolean }> {
    return this.#inner.markRevoked(repo, digest, revocation)
  }

  purgeQuarantine(repo: RepoKey, digest: Digest, purge: QuarantinePurge): Promise<boolean> {
    return this.#inner.purgeQuarantine(repo, digest, purge)
  }

  markCleared(repo: RepoKey, digest: Digest, clearance: QuarantineClearance): Promise<{ previous: QuarantineState | null }> {
    return this.#inner.markCleared(repo, digest, clearance)
  }

  acquireLock(name: string, ttlMs: number): Promise<string | null> {
    return this.#inner.acquireLock(name, ttlMs)
  }

  renewLock(name: string, token: string, ttlMs: number): Promise<boolean> {
    return this.#inner.renewLock(name, token, ttlMs)
  }

  releaseLock(name: string, token: string): Promise<void> {
    return this.#inner.releaseLock(name, token)
  }

  isLocked(name: string): Promise<boolean> {
    return this.#inner.isLocked(name)
  }

  close(): Promise<void> {
    return this.#inner.close()
  }

  /** The remembered answer when the store is unavailable and one is remembered; else the error. */
  #fallback<T>(op: 'getTag' | 'getManifest' | 'getBlobLink', err: unknown, remembered: T | undefined): T {
    if (!isCustomsError(err, 'STATE_UNAVAILABLE')) throw err
    this.#options.onFallback?.(op, remembered !== undefined)
    if (remembered === undefined) throw err
    return remembered
  }
}
