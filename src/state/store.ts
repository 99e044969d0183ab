// The state interface: tag resolutions, manifest records with their verdicts, the blob gate's
// links, and fill locks. Two implementations (memory.ts, redis.ts) pass one conformance suite
// (test/conformance/state.test.ts). Everything is keyed by (upstream, repository, ...): never by a
// bare name, or docker.io/x/y and ghcr.io/x/y would collide.

import type { Digest } from '../oci/digest.js'
import type { VerificationFacts } from '../verify/facts.js'
import type { ImageFacts } from '../inspection/facts.js'

/** Where a repository lives: the configured upstream's name and the repository on it. */
export interface RepoKey {
  readonly upstream: string
  readonly repository: string
}

export type VerdictOutcome = 'cleared' | 'cleared-with-warnings' | 'detained'

export interface Verdict {
  readonly outcome: VerdictOutcome
  /** Why: one entry per check that failed or warned; empty when simply cleared. */
  readonly reasons: readonly string[]
  /** The policy/trust revision the verdict was reached under; a new revision invalidates it. */
  readonly revision: string
  /** Milliseconds since the epoch. */
  readonly decidedAt: number
}

/** What Customs knows of one manifest (image, index or artifact) in one repository. */
export interface ManifestRecord {
  readonly digest: Digest
  readonly mediaType: string
  readonly size: number
  readonly verdict: Verdict
  /** The signatures and attestations found and verified for it (absent for artifacts). */
  readonly facts?: VerificationFacts
  /** What policies saw of the image: config facts, platforms, sizes. */
  readonly image?: ImageFacts
}

/** A tag's resolution, recorded only after its digest was cleared. */
export interface TagRecord {
  readonly digest: Digest
  /** When the upstream last confirmed this mapping (ms since the epoch). */
  readonly checkedAt: number
}

/** One change of a tag's digest, kept in the tag's history. */
export interface TagMove {
  readonly from: Digest | null
  readonly to: Digest
  readonly at: number
}

export interface BlobLink {
  readonly digest: Digest
  readonly size: number
}

/** What recordManifest writes besides the record itself, in the same transaction. */
export interface ManifestLinks {
  /** The blobs the manifest references (config and layers): the blob gate opens for these. */
  readonly blobs: readonly BlobLink[]
  /** For an index: its child manifests, each of which is recorded with this digest as parent. */
  readonly children: readonly Digest[]
}

export interface StateStore {
  /** Resolves when the backing store answers; throws STATE_UNAVAILABLE otherwise (for /readyz). */
  ping(): Promise<void>

  getTag(repo: RepoKey, tag: string): Promise<TagRecord | null>
  /**
   * Records tag -> digest. When the digest differs from the recorded one the move is appended to the
   * tag's history (bounded) and the previous digest returned; otherwise only checkedAt is updated.
   */
  setTag(repo: RepoKey, tag: string, record: TagRecord): Promise<{ previous: Digest | null }>
  /** The most recent moves of a tag, newest first. */
  tagHistory(repo: RepoKey, tag: string, limit: number): Promise<TagMove[]>

  getManifest(repo: RepoKey, digest: Digest): Promise<ManifestRecord | null>
  /**
   * Records a manifest and its verdict; when cleared, also links its blobs and children, all in one
   * transaction so that no reader sees the links without the verdict or the other way round.
   */
  recordManifest(repo: RepoKey, record: ManifestRecord, links: ManifestLinks): Promise<void>
  /** The size of a blob if a cleared manifest in this repository references it. */
  getBlobLink(repo: RepoKey, digest: Digest): Promise<BlobLink | null>
  /** The index that listed this manifest, if any. */
  getParent(repo: RepoKey, digest: Digest): Promise<Digest | null>

  /** Takes a named lock for ttlMs; returns a token, or null when another holder has it. */
  acquireLock(name: string, ttlMs: number): Promise<string | null>
  /** Extends a lock still held under this token; false when it was lost. */
  renewLock(name: string, token: string, ttlMs: number): Promise<boolean>
  /** Releases a lock if still held under this token. */
  releaseLock(name: string, token: string): Promise<void>
  /** Whether a lock is currently held by anyone. */
  isLocked(name: string): Promise<boolean>

  close(): Promise<void>
}

/** How many moves a tag's history keeps. */
export const TAG_HISTORY_LIMIT = 50
