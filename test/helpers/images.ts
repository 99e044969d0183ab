// Synthetic images for tests: deterministic blobs and tar layers, manifests and indexes with their
// exact bytes and locally computed digests, and a small registry client that pushes and pulls them.

import { createCipheriv, createHash } from 'node:crypto'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { gunzipSync, gzipSync } from 'node:zlib'
import type { Credentials } from './registry.js'

// ---------------------------------------------------------------------------------------------
// Media types (spelled out here so the helpers do not depend on src/, which they help test).

/** The media types the helpers produce. */
export const MediaTypes = Object.freeze({
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER: 'application/vnd.oci.image.layer.v1.tar',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OCI_EMPTY: 'application/vnd.oci.empty.v1+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const)

/** Every manifest type, for Accept headers (distribution 2.8 rewrites to schema1 without it). */
export const MANIFEST_ACCEPT = [
  MediaTypes.OCI_INDEX,
  MediaTypes.OCI_MANIFEST,
  MediaTypes.DOCKER_LIST,
  MediaTypes.DOCKER_MANIFEST,
] as const

/** `oci` for OCI image-spec types, `docker` for Docker schema2 types. */
export type ImageFlavor = 'oci' | 'docker'

/** `sha256:<hex>` of the bytes. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

// ---------------------------------------------------------------------------------------------
// Bytes

/**
 * Fills `target` with deterministic pseudo-random bytes derived from `seed` (an AES-256-CTR
 * keystream: several hundred MiB per second, so 200 MiB takes well under a second).
 */
export function fillRandom(target: Buffer, seed: string | number): Buffer {
  const key = createHash('sha256').update(`customs-test-random:${String(seed)}`).digest()
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  const chunk = 4 * 1024 * 1024
  const zeros = Buffer.alloc(Math.min(chunk, target.length))
  for (let offset = 0; offset < target.length; offset += chunk) {
    const length = Math.min(chunk, target.length - offset)
    cipher.update(zeros.subarray(0, length)).copy(target, offset)
  }
  return target
}

/** `size` deterministic pseudo-random bytes: the same (size, seed) always gives the same bytes. */
export function randomBlob(size: number, seed: string | number): Buffer {
  return fillRandom(Buffer.allocUnsafe(size), seed)
}

/** A layer before it is placed in a manifest. */
export interface LayerSpec {
  bytes: Buffer
  /**
   * Default: OCI `...tar+gzip` if the bytes start with the gzip magic, else `...tar`; Docker
   * `...tar.gzip` always (Docker has no uncompressed type; containerd sniffs the compression).
   */
  mediaType?: string
  /** Digest of the uncompressed tar, for the config's `rootfs.diff_ids`. Computed when absent. */
  diffId?: string
  annotations?: Record<string, string>
}

/** A file for {@link tarLayer}. */
export interface TarFile {
  /** Relative path, `/`-separated, at most 100 bytes. Parent directories are added. */
  path: string
  content: Buffer | string
  /** Default 0o644. */
  mode?: number
}

const TAR_BLOCK = 512
/** 2024-01-01T00:00:00Z: a fixed mtime keeps layers byte-for-byte reproducible. */
const TAR_MTIME = 1704067200

function tarHeader(name: string, size: number, type: '0' | '5', mode: number): Buffer {
  const header = Buffer.alloc(TAR_BLOCK)
  if (Buffer.byteLength(name) > 100) throw new RangeError(`tar path too long: ${name}`)
  const octal = (value: number, width: number): string =>
    `${value.toString(8).padStart(width - 1, '0')}\0`
  header.write(name, 0, 100, 'utf8')
  header.write(octal(mode, 8), 100, 8, 'ascii')
  header.write(octal(0, 8), 108, 8, 'ascii')
  header.write(octal(0, 8), 116, 8, 'ascii')
  header.write(octal(size, 12), 124, 12, 'ascii')
  header.write(octal(TAR_MTIME, 12), 136, 12, 'ascii')
  header.write('        ', 148, 8, 'ascii')
  header.write(type, 156, 1, 'ascii')
  header.write('ustar\0', 257, 6, 'ascii')
  header.write('00', 263, 2, 'ascii')
  header.write('root', 265, 32, 'ascii')
  header.write('root', 297, 32, 'ascii')
  let sum = 0
  for (const byte of header) sum += byte
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii')
  return header
}

/**
 * A real tar layer (containerd unpacks it) holding `files`, gzip-compressed unless
 * `gzip: false`. Byte-for-byte reproducible. Returns the spec with `diffId` filled in.
 */
export function tarLayer(files: readonly TarFile[], options: { gzip?: boolean } = {}): LayerSpec {
  const parts: Buffer[] = []
  const dirs = new Set<string>()
  for (const file of files) {
    const segments = file.path.replace(/^\/+/, '').split('/')
    for (let i = 1; i < segments.length; i++) {
      const dir = `${segments.slice(0, i).join('/')}/`
      if (dirs.has(dir)) continue
      dirs.add(dir)
      parts.push(tarHeader(dir, 0, '5', 0o755))
    }
    const content = typeof file.content === 'string' ? Buffer.from(file.content) : file.content
    parts.push(tarHeader(segments.join('/'), content.length, '0', file.mode ?? 0o644), content)
    const pad = (TAR_BLOCK - (content.length % TAR_BLOCK)) % TAR_BLOCK
    parts.push(Buffer.alloc(pad))
  }
  parts.push(Buffer.alloc(2 * TAR_BLOCK))
  const tar = Buffer.concat(parts)
  const diffId = sha256Digest(tar)
  return options.gzip === false ? { bytes: tar, diffId } : { bytes: gzipSync(tar), diffId }
}

/** The smallest size {@link randomTarLayer} can produce. */
export const MIN_RANDOM_TAR_SIZE = 3 * TAR_BLOCK

/**
 * An uncompressed tar of exactly `size` bytes (at least {@link MIN_RANDOM_TAR_SIZE}) holding one
 * file of pseudo-random content, built in a single buffer (no second copy for large layers). The
 * archive ends with zero blocks up to `size`, which tar readers and containerd accept.
 */
export function randomTarLayer(size: number, seed: string | number): LayerSpec {
  if (!Number.isInteger(size) || size < MIN_RANDOM_TAR_SIZE) {
    throw new RangeError(`a random tar layer needs ${MIN_RANDOM_TAR_SIZE}+ bytes, got ${size}`)
  }
  const contentSize = Math.floor((size - MIN_RANDOM_TAR_SIZE) / TAR_BLOCK) * TAR_BLOCK
  const bytes = Buffer.alloc(size)
  const name = `random-${createHash('sha256').update(String(seed)).digest('hex').slice(0, 16)}.bin`
  tarHeader(name, contentSize, '0', 0o644).copy(bytes, 0)
  fillRandom(bytes.subarray(TAR_BLOCK, TAR_BLOCK + contentSize), seed)
  return { bytes, diffId: sha256Digest(bytes) }
}

// ---------------------------------------------------------------------------------------------
// Manifests

/** An OCI descriptor. */
export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
  annotations?: Record<string, string>
  artifactType?: string
}

/** An image platform, as in an index entry. */
export interface Platform {
  os: string
  architecture: string
  variant?: string
}

/** The image config's runtime part (`config` in the image config JSON). */
export interface ContainerConfigInput {
  User?: string
  Labels?: Record<string, string>
  Env?: string[]
  Cmd?: string[]
  Entrypoint?: string[]
  WorkingDir?: string
  [key: string]: unknown
}

/** Overrides for the generated image config JSON; anything not listed is copied as given. */
export interface ImageConfigInput {
  /** Default `2024-01-01T00:00:00Z`. */
  created?: string
  /** Default `amd64`. */
  architecture?: string
  /** Default `linux`. */
  os?: string
  variant?: string
  /** Merged over the defaults (an Env with PATH). */
  config?: ContainerConfigInput
  [key: string]: unknown
}

/** A layer or a size: a number becomes {@link randomTarLayer}(size) seeded from the image seed. */
export type LayerInput = Buffer | number | LayerSpec

/** Options for {@link buildImage}. */
export interface BuildImageOptions {
  mediaType: ImageFlavor
  /** Default: one 4 KiB random tar layer. Raw Buffers are used as-is (containerd cannot unpack). */
  layers?: readonly LayerInput[]
  config?: ImageConfigInput
  /** Seed for numeric layers. Default: random, so two images never share layers by accident. */
  seed?: string
  /** Use these bytes as the config blob instead of generating an image config (artifacts). */
  configBytes?: Buffer
  /** Config media type; default the flavor's image config type. */
  configMediaType?: string
  /** OCI only: `artifactType`, `subject` and `annotations` fields of the manifest. */
  artifactType?: string
  subject?: Descriptor
  annotations?: Record<string, string>
  /** Indent the manifest JSON by 3 spaces, like docker does (to test byte preservation). */
  pretty?: boolean
}

/** A blob placed in a manifest, with its bytes. */
export interface BuiltLayer {
  mediaType: string
  digest: string
  size: number
  bytes: Buffer
  diffId: string
}

/** A built image manifest: exact bytes and locally computed digests. */
export interface BuiltImage {
  kind: 'image'
  mediaType: string
  /** The exact manifest bytes that will be pushed. */
  manifest: Buffer
  manifestDigest: string
  config: Buffer
  configDigest: string
  configMediaType: string
  layers: BuiltLayer[]
  /** From the config's os/architecture/variant. */
  platform: Platform
  /** A descriptor of this manifest (for an index entry or a `subject`). */
  descriptor: Descriptor
}

/** A child of {@link buildIndex}: an image, with a platform to override the image's own. */
export interface IndexChild {
  image: BuiltImage
  platform?: Platform
  annotations?: Record<string, string>
}

/** Options for {@link buildIndex}. */
export interface BuildIndexOptions {
  /** OCI only. */
  annotations?: Record<string, string>
  artifactType?: string
  subject?: Descriptor
  /** Extra entries that are not images built here (e.g. attestations the caller pushes). */
  extraManifests?: readonly Descriptor[]
  pretty?: boolean
}

/** A built index or manifest list. */
export interface BuiltIndex {
  kind: 'index'
  mediaType: string
  manifest: Buffer
  manifestDigest: string
  children: BuiltImage[]
  descriptor: Descriptor
}

function encodeJson(value: unknown, pretty: boolean | undefined): Buffer {
  return Buffer.from(pretty === true ? JSON.stringify(value, null, 3) : JSON.stringify(value))
}

function isGzip(bytes: Buffer): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b
}

function resolveLayer(input: LayerInput, index: number, seed: string): LayerSpec {
  if (typeof input === 'number') return randomTarLayer(input, `${seed}/layer-${index}`)
  if (Buffer.isBuffer(input)) return { bytes: input }
  return input
}

/**
 * Builds an image manifest (OCI or Docker schema2) with its config and layers, all in memory.
 * Returns the exact manifest bytes and sha256 digests computed locally.
 */
export function buildImage(options: BuildImageOptions): BuiltImage {
  const oci = options.mediaType === 'oci'
  const seed = options.seed ?? `${Date.now()}-${Math.random()}`
  const inputs = options.layers ?? [4096]
  const layers: BuiltLayer[] = inputs.map((input, i) => {
    const spec = resolveLayer(input, i, seed)
    const gzip = isGzip(spec.bytes)
    const mediaType =
      spec.mediaType ??
      (oci ? (gzip ? MediaTypes.OCI_LAYER_GZIP : MediaTypes.OCI_LAYER) : MediaTypes.DOCKER_LAYER)
    const diffId = spec.diffId ?? sha256Digest(gzip ? gunzipSync(spec.bytes) : spec.bytes)
    const { bytes } = spec
    return { mediaType, digest: sha256Digest(bytes), size: bytes.length, bytes, diffId }
  })
  const input = options.config ?? {}
  const configJson = {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    ...input,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...input.config,
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({
      created: '2024-01-01T00:00:00Z',
      created_by: `customs test layer ${i}`,
    })),
  }
  const config = options.configBytes ?? Buffer.from(JSON.stringify(configJson))
  const configMediaType =
    options.configMediaType ?? (oci ? MediaTypes.OCI_CONFIG : MediaTypes.DOCKER_CONFIG)
  const configDigest = sha256Digest(config)
  const mediaType = oci ? MediaTypes.OCI_MANIFEST : MediaTypes.DOCKER_MANIFEST
  const body: Record<string, unknown> = { schemaVersion: 2, mediaType }
  if (oci && options.artifactType !== undefined) body.artifactType = options.artifactType
  body.config = { mediaType: configMediaType, digest: configDigest, size: config.length }
  body.layers = layers.map((l, i) => {
    const annotations = layerAnnotations(inputs[i])
    const descriptor: Descriptor = { mediaType: l.mediaType, digest: l.digest, size: l.size }
    return annotations === undefined ? descriptor : { ...descriptor, annotations }
  })
  if (oci && options.subject !== undefined) body.subject = options.subject
  if (oci && options.annotations !== undefined) body.annotations = options.annotations
  const manifest = encodeJson(body, options.pretty)
  const manifestDigest = sha256Digest(manifest)
  const platform: Platform = {
    os: String(configJson.os),
    architecture: String(configJson.architecture),
    ...(typeof input.variant === 'string' ? { variant: input.variant } : {}),
  }
  return {
    kind: 'image',
    mediaType,
    manifest,
    manifestDigest,
    config,
    configDigest,
    configMediaType,
    layers,
    platform,
    descriptor: { mediaType, digest: manifestDigest, size: manifest.length },
  }
}

function layerAnnotations(input: LayerInput | undefined): Record<string, string> | undefined {
  if (input === undefined || typeof input === 'number' || Buffer.isBuffer(input)) return undefined
  return input.annotations
}

/**
 * Builds an OCI index or Docker manifest list over already built images; each entry gets the
 * image's platform unless overridden. The children are pushed by {@link pushIndex}.
 */
export function buildIndex(
  children: readonly (BuiltImage | IndexChild)[],
  mediaType: ImageFlavor,
  options: BuildIndexOptions = {}
): BuiltIndex {
  const oci = mediaType === 'oci'
  const entries = children.map((c): IndexChild => ('kind' in c ? { image: c } : c))
  const manifests: Descriptor[] = entries.map((entry) => ({
    mediaType: entry.image.mediaType,
    digest: entry.image.manifestDigest,
    size: entry.image.manifest.length,
    platform: entry.platform ?? entry.image.platform,
    ...(entry.annotations ? { annotations: entry.annotations } : {}),
  }))
  manifests.push(...(options.extraManifests ?? []))
  const indexType = oci ? MediaTypes.OCI_INDEX : MediaTypes.DOCKER_LIST
  const body: Record<string, unknown> = { schemaVersion: 2, mediaType: indexType }
  if (oci && options.artifactType !== undefined) body.artifactType = options.artifactType
  body.manifests = manifests
  if (oci && options.subject !== undefined) body.subject = options.subject
  if (oci && options.annotations !== undefined) body.annotations = options.annotations
  const manifest = encodeJson(body, options.pretty)
  const manifestDigest = sha256Digest(manifest)
  return {
    kind: 'index',
    mediaType: indexType,
    manifest,
    manifestDigest,
    children: entries.map((e) => e.image),
    descriptor: { mediaType: indexType, digest: manifestDigest, size: manifest.length },
  }
}

/** The referrers fallback tag for a subject digest: `sha256-<hex>` (PROTOCOL §1.7). */
export function referrersTagFor(digest: string): string {
  return digest.replace(':', '-')
}

// ---------------------------------------------------------------------------------------------
// Registry client

/** Where to push or pull: a RegistryHandle fits, or `{ url }` alone to be anonymous. */
export interface RegistryTarget {
  /** `http://127.0.0.1:PORT`, or https (the default CA store unless `tls` says otherwise). */
  url: string
  credentials?: Credentials
  /** For https: the CA to trust, and a client certificate for a registry that requires one. */
  tls?: { ca?: string; cert?: string; key?: string }
}

/** A raw HTTP answer. */
export interface RegistryResponse {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

const REQUEST_TIMEOUT_MS = 120_000

function send(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body?: Buffer,
  tls: RegistryTarget['tls'] = {}
): Promise<RegistryResponse> {
  const secure = url.protocol === 'https:'
  const request = secure ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const allHeaders = { ...headers }
    if (body !== undefined) allHeaders['content-length'] = String(body.length)
    const req = request(url, { method, headers: allHeaders, agent: false, ...(secure ? tls : {}) }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.once('error', reject)
      res.once('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })
      )
    })
    req.setTimeout(REQUEST_TIMEOUT_MS, () =>
      req.destroy(new Error(`${method} ${url.href} timed out after ${REQUEST_TIMEOUT_MS} ms`))
    )
    req.once('error', reject)
    // node:http writes the Buffer as-is (no copy), unlike fetch, which copies typed-array bodies:
    // that matters for 200 MiB layers.
    req.end(body)
  })
}

interface TokenResponse {
  token?: string
  access_token?: string
}

interface Challenge {
  scheme: string
  params: Record<string, string>
}

/** Parses `WWW-Authenticate: Bearer realm="…",…` (RFC 7235: quoted values may hold commas). */
function parseChallenge(header: string | undefined): Challenge | undefined {
  if (header === undefined) return undefined
  const match = /^(\w+)\s*(.*)$/s.exec(header.trim())
  if (match === null) return undefined
  const params: Record<string, string> = {}
  const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g
  for (const m of (match[2] ?? '').matchAll(re)) {
    const key = m[1]
    if (key === undefined) continue
    params[key.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '')
  }
  return { scheme: (match[1] ?? '').toLowerCase(), params }
}

function basicAuth(credentials: Credentials): string {
  const pair = `${credentials.username}:${credentials.password}`
  return `Basic ${Buffer.from(pair).toString('base64')}`
}

/**
 * A registry conversation: answers a Bearer (or Basic) challenge once per repository and reuses the
 * token. Uses the target's credentials for the token request when it has any.
 */
class Session {
  private readonly authorization = new Map<string, string>()

  constructor(readonly target: RegistryTarget) {}

  async request(
    repo: string,
    method: string,
    pathOrUrl: string,
    headers: Record<string, string> = {},
    body?: Buffer
  ): Promise<RegistryResponse> {
    const url = new URL(pathOrUrl, this.target.url)
    const withAuth = (): Record<string, string> => {
      const auth = this.authorization.get(repo)
      return auth === undefined ? headers : { ...headers, authorization: auth }
    }
    const first = await send(url, method, withAuth(), body, this.target.tls)
    if (first.status !== 401) return first
    const challenge = parseChallenge(headerValue(first.headers, 'www-authenticate'))
    if (challenge === undefined) return first
    if (challenge.scheme === 'basic') {
      if (this.target.credentials === undefined) return first
      this.authorization.set(repo, basicAuth(this.target.credentials))
    } else if (challenge.scheme === 'bearer') {
      const token = await this.fetchToken(challenge)
      this.authorization.set(repo, `Bearer ${token}`)
    } else {
      return first
    }
    return send(url, method, withAuth(), body, this.target.tls)
  }

  private async fetchToken(challenge: Challenge): Promise<string> {
    const realm = challenge.params.realm
    if (realm === undefined) throw new Error('Bearer challenge without realm')
    const url = new URL(realm)
    const service = challenge.params.service
    if (service !== undefined) url.searchParams.set('service', service)
    for (const scope of (challenge.params.scope ?? '').split(' ').filter((s) => s !== '')) {
      url.searchParams.append('scope', scope)
    }
    const headers: Record<string, string> = {}
    const credentials = this.target.credentials
    if (credentials !== undefined) headers.authorization = basicAuth(credentials)
    const res = await send(url, 'GET', headers)
    if (res.status !== 200) {
      const body = res.body.toString('utf8')
      throw new Error(`token request to ${url.href} answered ${res.status}: ${body}`)
    }
    const parsed = JSON.parse(res.body.toString('utf8')) as TokenResponse
    const token = parsed.token ?? parsed.access_token
    if (token === undefined) throw new Error(`token response without token from ${url.href}`)
    return token
  }
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

function failure(what: string, res: RegistryResponse): Error {
  return new Error(`${what}: HTTP ${res.status} ${res.body.toString('utf8').slice(0, 500)}`)
}

/**
 * Pushes one blob with a monolithic upload (POST `/blobs/uploads/`, then PUT `?digest=`), unless
 * the registry already has it. Returns the locally computed digest.
 */
export async function pushBlob(
  target: RegistryTarget,
  repo: string,
  bytes: Buffer
): Promise<string> {
  return pushBlobWith(new Session(target), repo, bytes)
}

async function pushBlobWith(
  session: Session,
  repo: string,
  bytes: Buffer,
  digest = sha256Digest(bytes)
): Promise<string> {
  const head = await session.request(repo, 'HEAD', `/v2/${repo}/blobs/${digest}`)
  if (head.status === 200) return digest
  const start = await session.request(repo, 'POST', `/v2/${repo}/blobs/uploads/`, {
    'content-length': '0',
  })
  const location = headerValue(start.headers, 'location')
  if (start.status !== 202 || location === undefined) {
    throw failure(`starting upload of ${digest} to ${repo}`, start)
  }
  const url = new URL(location, session.target.url)
  url.searchParams.set('digest', digest)
  const put = await session.request(
    repo,
    'PUT',
    url.href,
    { 'content-type': 'application/octet-stream' },
    bytes
  )
  if (put.status !== 201) throw failure(`uploading blob ${digest} to ${repo}`, put)
  return digest
}

/** What a manifest push stored. */
export interface PushedManifest {
  repo: string
  /** The tag pushed, if any. */
  tag: string | undefined
  /** Locally computed digest, checked against the registry's Docker-Content-Digest. */
  digest: string
  mediaType: string
  size: number
}

async function putManifest(
  session: Session,
  repo: string,
  ref: string,
  bytes: Buffer,
  mediaType: string
): Promise<string> {
  const digest = sha256Digest(bytes)
  const path = `/v2/${repo}/manifests/${ref}`
  const res = await session.request(repo, 'PUT', path, { 'content-type': mediaType }, bytes)
  if (res.status !== 201) throw failure(`pushing manifest ${repo}:${ref}`, res)
  const stored = headerValue(res.headers, 'docker-content-digest')
  if (stored !== undefined && stored !== digest) {
    throw new Error(`registry stored ${repo}:${ref} as ${stored}, but the bytes hash to ${digest}`)
  }
  return digest
}

/**
 * Pushes manifest bytes exactly as given, by tag or digest (`ref`), for hand-made manifests:
 * artifacts with a `subject`, referrers fallback indexes under `sha256-<hex>`. The blobs they
 * reference must already be there. Returns the local digest.
 */
export async function pushManifestBytes(
  target: RegistryTarget,
  repo: string,
  ref: string,
  bytes: Buffer,
  mediaType: string
): Promise<string> {
  return putManifest(new Session(target), repo, ref, bytes, mediaType)
}

async function pushImageWith(
  session: Session,
  repo: string,
  tag: string | undefined,
  image: BuiltImage
): Promise<PushedManifest> {
  await pushBlobWith(session, repo, image.config, image.configDigest)
  for (const layer of image.layers) await pushBlobWith(session, repo, layer.bytes, layer.digest)
  const ref = tag ?? image.manifestDigest
  const digest = await putManifest(session, repo, ref, image.manifest, image.mediaType)
  return { repo, tag, digest, mediaType: image.mediaType, size: image.manifest.length }
}

/**
 * Pushes an image's config and layers (skipping blobs the registry has), then the manifest by
 * `tag`, or by digest when `tag` is undefined. Answers Bearer challenges with the target's
 * credentials. Returns the locally computed manifest digest and what was pushed.
 */
export async function pushImage(
  target: RegistryTarget,
  repo: string,
  tag: string | undefined,
  image: BuiltImage
): Promise<PushedManifest> {
  return pushImageWith(new Session(target), repo, tag, image)
}

/**
 * Pushes every child image by digest, then the index by `tag` (or by digest when undefined).
 * Entries added with `extraManifests` must be pushed by the caller first.
 */
export async function pushIndex(
  target: RegistryTarget,
  repo: string,
  tag: string | undefined,
  index: BuiltIndex
): Promise<PushedManifest> {
  const session = new Session(target)
  for (const child of index.children) await pushImageWith(session, repo, undefined, child)
  const ref = tag ?? index.manifestDigest
  const digest = await putManifest(session, repo, ref, index.manifest, index.mediaType)
  return { repo, tag, digest, mediaType: index.mediaType, size: index.manifest.length }
}

/** A fetched manifest. */
export interface FetchedManifest {
  status: number
  /** Content-Type of the answer. */
  mediaType: string | undefined
  /** The Docker-Content-Digest header. */
  headerDigest: string | undefined
  /** sha256 of the body (empty body for HEAD). */
  digest: string
  bytes: Buffer
  headers: IncomingHttpHeaders
}

/**
 * GETs (or HEADs) a manifest by tag or digest, answering auth challenges with the target's
 * credentials (pass `{ url }` alone to pull anonymously). Does not throw on 4xx: check `status`.
 * `accept` defaults to every manifest type.
 */
export async function fetchManifest(
  target: RegistryTarget,
  repo: string,
  ref: string,
  options: { accept?: readonly string[]; method?: 'GET' | 'HEAD' } = {}
): Promise<FetchedManifest> {
  const accept = (options.accept ?? MANIFEST_ACCEPT).join(', ')
  const path = `/v2/${repo}/manifests/${ref}`
  const res = await new Session(target).request(repo, options.method ?? 'GET', path, { accept })
  return {
    status: res.status,
    mediaType: headerValue(res.headers, 'content-type'),
    headerDigest: headerValue(res.headers, 'docker-content-digest'),
    digest: sha256Digest(res.body),
    bytes: res.body,
    headers: res.headers,
  }
}

/** GETs a blob into memory (auth as {@link fetchManifest}); does not throw on 4xx. */
export async function fetchBlob(
  target: RegistryTarget,
  repo: string,
  digest: string
): Promise<RegistryResponse> {
  return new Session(target).request(repo, 'GET', `/v2/${repo}/blobs/${digest}`)
}

/** DELETEs a manifest by digest (the test registry has deletes enabled); returns the status. */
export async function deleteManifest(
  target: RegistryTarget,
  repo: string,
  digest: string
): Promise<number> {
  const res = await new Session(target).request(repo, 'DELETE', `/v2/${repo}/manifests/${digest}`)
  return res.status
}

/**
 * Any request to the registry with challenge handling, for cases the helpers above do not cover
 * (tags/list, referrers, odd methods). `path` is absolute (`/v2/...`) or a full URL.
 */
export async function registryRequest(
  target: RegistryTarget,
  repo: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: Buffer
): Promise<RegistryResponse> {
  return new Session(target).request(repo, method, path, headers, body)
}
