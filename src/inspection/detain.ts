// Closing the blob gate of content that is no longer admitted. A detained digest a person
// released is recorded admitted (its links open) with the reasons it was detained for; once the
// release is revoked or expires, the record must say detained again and its blobs be refused.

import type { Digest } from '../oci/digest.js'
import type { RepoKey, StateStore } from '../state/store.js'

/**
 * Detains a manifest that stands only by a release (its verdict carries `detainedFor`), with the
 * reasons it was detained for, and drops the links of the blobs no other admitted manifest of the
 * repository references. Content the policies admit on their own is left alone. For the revoke
 * route, a release-expiry job, and the pull path when it meets an expired release.
 */
export async function detainUnreleased(
  state: StateStore,
  repo: RepoKey,
  digest: Digest,
  at = Date.now()
): Promise<{ detained: boolean; unlinked: Digest[] }> {
  const record = await state.getManifest(repo, digest)
  const detainedFor = record?.verdict.detainedFor
  if (record === null || detainedFor === undefined || record.verdict.outcome === 'detained') {
    return { detained: false, unlinked: [] }
  }
  const { unlinked } = await state.detainManifest(repo, {
    ...record,
    verdict: { outcome: 'detained', reasons: detainedFor, revision: record.verdict.revision, decidedAt: at },
  })
  return { detained: true, unlinked }
}
