// Purging a detained manifest: a person removes its cached bytes, and those of its blobs that no
// admitted manifest (in any repository) references, so that nothing of it stays on disk. The
// quarantine record says `purged`; a later pull of it is inspected and detained again.

import type { BlobStore } from '../cache/blob-store.js'
import type { ManifestMemory } from '../cache/manifest-memory.js'
import type { Digest } from '../oci/digest.js'
import type { QuarantinePurge, RepoKey, StateStore } from '../state/store.js'

export interface PurgeDeps {
  readonly state: StateStore
  readonly store: BlobStore
  readonly memory: ManifestMemory
}

export interface PurgeResult {
  /** False when there is no quarantine record of this digest here. */
  readonly found: boolean
  /** The digests whose cached bytes were removed. */
  readonly removed: Digest[]
}

/**
 * Detains the manifest if something admitted it (a release, say), drops its links, removes the
 * bytes nobody holds, then records the purge. Bytes go before the record says `purged`: a crash
 * in between leaves a detained manifest without bytes, which a purge again finishes.
 */
export async function purgeDetained(deps: PurgeDeps, repo: RepoKey, digest: Digest, purge: QuarantinePurge): Promise<PurgeResult> {
  const { state } = deps
  if ((await state.getQuarantine(repo, digest)) === null) return { found: false, removed: [] }
  const record = await state.getManifest(repo, digest)
  if (record !== null && record.verdict.outcome !== 'detained') {
    const reasons = record.verdict.detainedFor ?? [`purged by ${purge.by}: ${purge.reason}`]
    await state.detainManifest(repo, {
      ...record,
      verdict: { outcome: 'detained', reasons, revision: record.verdict.revision, decidedAt: purge.at },
    })
  }
  const candidates = [digest, ...(await state.manifestBlobs(repo, digest))]
  const removed: Digest[] = []
  for (const unheld of await state.unheld(candidates)) {
    if (await deps.store.remove(unheld)) removed.push(unheld)
  }
  deps.memory.delete(digest)
  const found = await state.purgeQuarantine(repo, digest, purge)
  return { found, removed }
}
