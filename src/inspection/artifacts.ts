// Telling signature, attestation and other supply-chain artifacts from images: artifacts are not
// themselves searched for signatures (that would recurse, and cost upstream quota for nothing).

import type { Manifest } from '../oci/manifest.js'

const ARTIFACT_LAYER_TYPES = new Set([
  'application/vnd.dev.cosign.simplesigning.v1+json',
  'application/vnd.dsse.envelope.v1+json',
  'application/vnd.dev.sigstore.bundle.v0.3+json',
  'application/vnd.in-toto+json',
  'application/jose+json',
  'application/cose',
])

export function isSignatureArtifact(manifest: Manifest): boolean {
  if (manifest.subject !== undefined || manifest.artifactType !== undefined) return true
  if (manifest.kind === 'index') return false
  if (manifest.layers.length === 0) return false
  return manifest.layers.every((l) => ARTIFACT_LAYER_TYPES.has(l.mediaType) || l.mediaType.startsWith('application/vnd.dev.sigstore.bundle'))
}
