// Digests: validation, the Digest brand, and hashing helpers. Only sha256 and sha512 are accepted:
// they are the registered algorithms, and anything else could not be checked (PROTOCOL §1.2).

import { createHash, type Hash } from 'node:crypto'
import { CustomsError } from '../errors.js'

declare const digestBrand: unique symbol
/** A validated `sha256:<64 hex>` or `sha512:<128 hex>` string. */
export type Digest = string & { readonly [digestBrand]: true }

export type DigestAlgorithm = 'sha256' | 'sha512'

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/
/** The image-spec's general digest grammar, for telling "malformed" from "unsupported". */
const GENERIC_DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

export function isDigest(value: string): value is Digest {
  return DIGEST_RE.test(value)
}

/** Validates a digest taken from a client or an upstream; throws DIGEST_INVALID. */
export function parseDigest(value: string): Digest {
  if (isDigest(value)) return value
  const reason = GENERIC_DIGEST_RE.test(value)
    ? 'only sha256 and sha512 digests of lowercase hex are accepted'
    : 'not a digest'
  throw new CustomsError('DIGEST_INVALID', `invalid digest ${JSON.stringify(value.slice(0, 200))}: ${reason}`)
}

export function digestAlgorithm(digest: Digest): DigestAlgorithm {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256'
}

export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(':') + 1)
}

export function createDigester(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm)
}

/** The digest of a buffer, in the algorithm of `like` (sha256 by default). */
export function digestOf(bytes: Uint8Array, like?: Digest): Digest {
  const algorithm = like === undefined ? 'sha256' : digestAlgorithm(like)
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest
}
