// Media types and header names of the registry protocol: the only place they are spelled out.

export const MediaType = Object.freeze({
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_SCHEMA1: 'application/vnd.docker.distribution.manifest.v1+json',
  DOCKER_SCHEMA1_SIGNED: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  OCI_EMPTY: 'application/vnd.oci.empty.v1+json',
  OCTET_STREAM: 'application/octet-stream',
  JSON: 'application/json',
} as const)

/** Manifest types Customs accepts from an upstream and serves, in our preference order. */
export const MANIFEST_TYPES: readonly string[] = Object.freeze([
  MediaType.OCI_INDEX,
  MediaType.OCI_MANIFEST,
  MediaType.DOCKER_LIST,
  MediaType.DOCKER_MANIFEST,
])

export const INDEX_TYPES: ReadonlySet<string> = new Set([MediaType.OCI_INDEX, MediaType.DOCKER_LIST])
export const IMAGE_MANIFEST_TYPES: ReadonlySet<string> = new Set([
  MediaType.OCI_MANIFEST,
  MediaType.DOCKER_MANIFEST,
])

/**
 * The Accept header sent upstream for every manifest request. It must list every type we accept:
 * distribution 2.8 converts a schema2 manifest to a freshly signed schema1 one when the Docker v2
 * type is missing, and that body never hashes to its digest (PROTOCOL §10).
 */
export const UPSTREAM_MANIFEST_ACCEPT = MANIFEST_TYPES.join(', ')

export const Header = Object.freeze({
  CONTENT_DIGEST: 'Docker-Content-Digest',
  API_VERSION: 'Docker-Distribution-API-Version',
  OCI_NAMESPACE: 'OCI-Namespace',
  OCI_FILTERS_APPLIED: 'OCI-Filters-Applied',
  WWW_AUTHENTICATE: 'WWW-Authenticate',
  RETRY_AFTER: 'Retry-After',
  RATELIMIT_LIMIT: 'ratelimit-limit',
  RATELIMIT_REMAINING: 'ratelimit-remaining',
  /** Set on a manifest answer served from a stale tag mapping because the upstream failed. */
  CUSTOMS_STALE: 'Customs-Stale',
  /** hit, miss or fill: where the bytes of a blob came from. */
  CUSTOMS_CACHE: 'Customs-Cache',
  CUSTOMS_VERDICT: 'Customs-Verdict',
} as const)

export const API_VERSION_VALUE = 'registry/2.0'

/**
 * Whether a client's Accept header admits a manifest of this media type. No Accept header, or a
 * wildcard, admits everything; parameters and q-values are ignored except q=0, which excludes.
 */
export function acceptsMediaType(accept: string | null | undefined, mediaType: string): boolean {
  if (accept === null || accept === undefined || accept.trim() === '') return true
  for (const part of accept.split(',')) {
    const [rawType = '', ...params] = part.split(';')
    const type = rawType.trim().toLowerCase()
    const excluded = params.some((p) => /^\s*q\s*=\s*0(?:\.0*)?\s*$/.test(p))
    if (excluded) continue
    if (type === '*/*' || type === 'application/*' || type === mediaType) return true
  }
  return false
}
