// How signature discovery reads artifacts: through the same inspected, cached manifest and blob
// paths clients use, so each artifact is digest-checked, cached and served downstream too.

import { isCustomsError } from '../errors.js'
import type { Digest } from '../oci/digest.js'
import { parseReference } from '../oci/reference.js'
import type { ArtifactReader } from '../verify/discover.js'
import { MAX_SIGNATURE_BLOB } from '../verify/discover.js'
import type { BlobService } from './blobs.js'
import type { Listings } from './listings.js'
import type { ManifestService } from './manifests.js'

export function artifactReader(manifests: ManifestService, blobs: BlobService, listings: Listings): ArtifactReader {
  return {
    async manifest(repo, reference) {
      try {
        const answer = await manifests.get({ repo, reference: parseReference(reference), method: 'GET', accept: null, artifact: true })
        return { digest: answer.digest, bytes: answer.bytes ?? Buffer.alloc(0), mediaType: answer.mediaType }
      } catch (err) {
        if (isCustomsError(err, 'MANIFEST_UNKNOWN')) return null
        throw err
      }
    },
    async blob(repo, digest: Digest, size: number) {
      if (size > MAX_SIGNATURE_BLOB) throw new Error(`blob ${digest} is over the signature size limit`)
      return blobs.readVerified(repo, digest, MAX_SIGNATURE_BLOB)
    },
    async referrers(repo, digest) {
      return [...(await listings.referrers(repo, digest, undefined)).index.manifests]
    },
  }
}
