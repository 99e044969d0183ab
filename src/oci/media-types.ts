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
  /** Set on an answer served from what was verified before while the upstream fails (a stale tag mapping, an open circuit). */
  CUSTOMS_STALE: 'Customs-Stale',
  /** hit, miss or fill: where the bytes of a blob came from. */
  CUSTOMS_CACHE: 'Customs-Cache',
  CUSTOMS_VERDICT: 'Customs-Verdict',
} as const)

export const API_VERSION_VALUE = 'registry/2.0'

/**
 * Answers of acceptsMediaType by media type, then Accept header: every manifest answer asks, and
 * clients send a handful of distinct headers, so parsing each request's again is wasted. Bounded,
 * and emptied when full: a client sending ever new headers only makes them refill.
 */
const acceptAnswers = new Map<string, Map<string, boolean>>()
const MEDIA_TYPES_REMEMBERED = 64
const ACCEPT_REMEMBERED = 256
/** Longer headers are parsed every time rather than kept. */
const ACCEPT_REMEMBERED_LENGTH = 1024

/**
 * Whether a client's Accept header admits a manifest of this media type (RFC 9110 §12.5.1): the
 * most specific matching range decides, so a wildcard with `x;q=0` still excludes x. No Accept
 * header admits everything. Parameters other than q are ignored.
 */
export function acceptsMediaType(accept: string | null | undefined, mediaType: string): boolean {
  if (accept === null || accept === undefined || accept.trim() === '') return true
  if (accept.length > ACCEPT_REMEMBERED_LENGTH) return admits(accept, mediaType)
  let answers = acceptAnswers.get(mediaType)
  if (answers === undefined) {
    if (acceptAnswers.size >= MEDIA_TYPES_REMEMBERED) acceptAnswers.clear()
    acceptAnswers.set(mediaType, (answers = new Map()))
  }
  let answer = answers.get(accept)
  if (answer === undefined) {
    answer = admits(accept, mediaType)
    if (answers.size >= ACCEPT_REMEMBERED) answers.clear()
    answers.set(accept, answer)
  }
  return answer
}

function admits(accept: string, mediaType: string): boolean {
  const wanted = mediaType.toLowerCase()
  const slash = wanted.indexOf('/')
  const typeWildcard = `${wanted.slice(0, slash)}/*`
  // Specificity: 2 exact, 1 a type wildcard, 0 the full wildcard; the highest seen wins.
  let best = -1
  let admitted = false
  for (const part of accept.slice(0, 8192).split(',')) {
    const [rawType = '', ...params] = part.split(';')
    const type = rawType.trim().toLowerCase()
    const specificity = type === wanted ? 2 : type === typeWildcard ? 1 : type === '*/*' ? 0 : -1
    if (specificity < best || specificity === -1) continue
    const q = params.map((p) => /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p)).find((m) => m !== null)
    const weight = q === undefined || q === null ? 1 : Number(q[1])
    const ok = Number.isFinite(weight) && weight > 0
    // Within one specificity, any admitting entry admits.
    admitted = specificity > best ? ok : admitted || ok
    best = specificity
  }
  return admitted
}
