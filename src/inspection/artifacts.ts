// Telling signature and attestation artifacts from images. Such artifacts are served (downstream
// verifiers need them) without being judged by policies or searched for signatures themselves;
// so the test must not be foolable: it looks only at what a runtime could run. A manifest whose
// every layer is a signature, envelope or statement type cannot be run as a container, whatever
// its `subject` or `artifactType` fields claim.

import type { Manifest } from '../oci/manifest.js'

const ARTIFACT_LAYER_TYPES = new Set([
  'application/vnd.dev.cosign.simplesigning.v1+json',
  'application/vnd.dsse.envelope.v1+json',
  'application/vnd.in-toto+json',
  'application/jose+json',
  'application/cose',
])

function isArtifactLayer(mediaType: string): boolean {
  return ARTIFACT_LAYER_TYPES.has(mediaType) || mediaType.startsWith('application/vnd.dev.sigstore.bundle')
}

/** An image manifest with at least one layer, all of signature/attestation types. */
export function isSignatureArtifact(manifest: Manifest): boolean {
  if (manifest.kind === 'index') return false
  return manifest.layers.length > 0 && manifest.layers.every((l) => isArtifactLayer(l.mediaType))
}
