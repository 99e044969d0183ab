// Repository names, tags and references: the grammar of the distribution spec (PROTOCOL §1.2),
// checked before anything is looked up or fetched.

import { CustomsError } from '../errors.js'
import { isDigest, parseDigest, type Digest } from './digest.js'

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const NAME_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`)
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/
/** Clients cap `host[:port]/name` at 255 characters; a name alone cannot be longer either. */
export const MAX_NAME_LENGTH = 255

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME_RE.test(name)
}

export function assertRepositoryName(name: string): string {
  if (!isRepositoryName(name)) {
    throw new CustomsError('NAME_INVALID', `invalid repository name ${JSON.stringify(name.slice(0, 300))}`)
  }
  return name
}

export function isTag(value: string): boolean {
  return TAG_RE.test(value)
}

/** A manifest reference: a tag, or a digest. */
export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest }

/** Parses the `<reference>` of `/v2/<name>/manifests/<reference>`. */
export function parseReference(value: string): Reference {
  if (value.includes(':')) return { kind: 'digest', digest: parseDigest(value) }
  if (isTag(value)) return { kind: 'tag', tag: value }
  throw new CustomsError('TAG_INVALID', `invalid tag ${JSON.stringify(value.slice(0, 200))}`)
}

export function formatReference(ref: Reference): string {
  return ref.kind === 'tag' ? ref.tag : ref.digest
}

/** The referrers tag schema fallback: `sha256-<hex>` for a subject digest (PROTOCOL §1.7). */
export function referrersTag(digest: Digest): string {
  const [alg = '', hex = ''] = digest.split(':')
  return `${alg.slice(0, 32)}-${hex.slice(0, 64)}`.replace(/[^a-zA-Z0-9._-]/g, '-')
}

export { isDigest }
