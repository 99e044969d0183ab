// Parsing image manifests and indexes received from an upstream. Pure: bytes in, a checked
// structure out, or MANIFEST_INVALID with the reason. The bytes themselves are never re-serialised.

import { CustomsError } from '../errors.js'
import { isDigest, type Digest } from './digest.js'
import { INDEX_TYPES, MANIFEST_TYPES, MediaType } from './media-types.js'

/** distribution's and containerd's manifest limit (PROTOCOL §1.9). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

export interface Descriptor {
  readonly mediaType: string
  readonly digest: Digest
  readonly size: number
  readonly platform?: Platform
  readonly annotations?: Readonly<Record<string, string>>
  readonly artifactType?: string
  readonly urls?: readonly string[]
}

export interface Platform {
  readonly os: string
  readonly architecture: string
  readonly variant?: string
}

interface ManifestBase {
  readonly mediaType: string
  readonly annotations: Readonly<Record<string, string>>
  readonly subject?: Descriptor
  readonly artifactType?: string
}

export interface ImageManifest extends ManifestBase {
  readonly kind: 'image'
  readonly config: Descriptor
  readonly layers: readonly Descriptor[]
}

export interface ImageIndex extends ManifestBase {
  readonly kind: 'index'
  readonly manifests: readonly Descriptor[]
}

export type Manifest = ImageManifest | ImageIndex

function invalid(message: string): CustomsError {
  return new CustomsError('MANIFEST_INVALID', `manifest invalid: ${message}`)
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function stringMap(value: unknown, where: string): Record<string, string> {
  if (value === undefined || value === null) return {}
  if (!isObject(value)) throw invalid(`${where} must be an object of strings`)
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalid(`${where}.${k} must be a string`)
  }
  return value as Record<string, string>
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`)
  const { mediaType, digest, size, platform, annotations, artifactType, urls } = value
  if (typeof mediaType !== 'string' || mediaType === '') throw invalid(`${where}.mediaType is missing`)
  if (typeof digest !== 'string' || !isDigest(digest)) {
    throw invalid(`${where}.digest is not a sha256/sha512 digest`)
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`)
  }
  const descriptor: {
    -readonly [K in keyof Descriptor]: Descriptor[K]
  } = { mediaType, digest, size }
  if (platform !== undefined) {
    if (!isObject(platform) || typeof platform.os !== 'string' || typeof platform.architecture !== 'string') {
      throw invalid(`${where}.platform needs os and architecture`)
    }
    descriptor.platform = {
      os: platform.os,
      architecture: platform.architecture,
      ...(typeof platform.variant === 'string' ? { variant: platform.variant } : {}),
    }
  }
  if (annotations !== undefined) descriptor.annotations = stringMap(annotations, `${where}.annotations`)
  if (typeof artifactType === 'string') descriptor.artifactType = artifactType
  if (urls !== undefined) {
    if (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string')) {
      throw invalid(`${where}.urls must be a list of strings`)
    }
    descriptor.urls = urls as string[]
  }
  return descriptor
}

/**
 * Parses manifest bytes. `contentType` is the media type the upstream declared; it must agree with
 * the body's own `mediaType` when the body has one, and must be a type Customs serves.
 */
export function parseManifest(bytes: Uint8Array, contentType: string): Manifest {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw invalid(`${bytes.byteLength} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`)
  }
  let body: unknown
  try {
    body = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
  } catch {
    throw invalid('not JSON')
  }
  if (!isObject(body)) throw invalid('not a JSON object')
  if (body.schemaVersion === 1 || contentType === MediaType.DOCKER_SCHEMA1_SIGNED || contentType === MediaType.DOCKER_SCHEMA1) {
    throw invalid('Docker schema 1 manifests are not supported')
  }
  if (body.schemaVersion !== 2) throw invalid('schemaVersion must be 2')
  const declared = typeof body.mediaType === 'string' ? body.mediaType : undefined
  const mediaType = declared ?? contentType
  if (declared !== undefined && declared !== contentType) {
    throw invalid(`Content-Type ${contentType} disagrees with the body's mediaType ${declared}`)
  }
  if (!MANIFEST_TYPES.includes(mediaType)) throw invalid(`unsupported media type ${mediaType}`)

  const base = {
    mediaType,
    annotations: stringMap(body.annotations, 'annotations'),
    ...(body.subject !== undefined ? { subject: parseDescriptor(body.subject, 'subject') } : {}),
    ...(typeof body.artifactType === 'string' ? { artifactType: body.artifactType } : {}),
  }
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(body.manifests)) throw invalid('an index needs a manifests list')
    const manifests = body.manifests.map((d, i) => parseDescriptor(d, `manifests[${i}]`))
    return { kind: 'index', ...base, manifests }
  }
  if (!Array.isArray(body.layers)) throw invalid('an image manifest needs a layers list')
  const config = parseDescriptor(body.config, 'config')
  const layers = body.layers.map((d, i) => parseDescriptor(d, `layers[${i}]`))
  return { kind: 'image', ...base, config, layers }
}

/** The blobs an image manifest references: its config and its layers. */
export function referencedBlobs(manifest: ImageManifest): Descriptor[] {
  return [manifest.config, ...manifest.layers]
}
