// The blob gate and the cache behind it (DESIGN steps 5-6): a blob is served only when a cleared
// manifest in the same (upstream, repository) references it; a miss is fetched once and streamed
// to every waiting client while it is hashed and written.

import { CustomsError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import { digestOf, type Digest } from '../oci/digest.js'
import { rangeStream } from '../cache/reader.js'
import { MediaType } from '../oci/media-types.js'
import type { BlobStore, CacheResult } from '../cache/blob-store.js'
import type { ByteSource } from '../cache/reader.js'
import type { RepoKey, StateStore } from '../state/store.js'
import { statusError } from '../upstream/client.js'
import type { UpstreamPool } from '../upstream/pool.js'
import type { BodyStream } from '../upstream/body.js'

/** Blobs from this size on are fetched on a connection of their own (upstream/wire.ts). */
const BULK_BLOB = 1024 * 1024

export interface BlobAnswer {
  readonly size: number
  /** Where the bytes come from; absent for HEAD. */
  readonly source?: ByteSource
  readonly result?: CacheResult
}

export class BlobService {
  readonly #deps: { upstreams: UpstreamPool; state: StateStore; blobs: BlobStore; metrics: Metrics }

  constructor(deps: { upstreams: UpstreamPool; state: StateStore; blobs: BlobStore; metrics: Metrics }) {
    this.#deps = deps
  }

  /** The size of a gated blob, or BLOB_UNKNOWN when no cleared manifest here references it. */
  async size(repo: RepoKey, digest: Digest): Promise<number> {
    const link = await this.#deps.state.getBlobLink(repo, digest)
    if (link === null) {
      throw new CustomsError(
        'BLOB_UNKNOWN',
        `blob ${digest} is not referenced by a cleared manifest in ${repo.upstream}/${repo.repository}; pull a manifest first`
      )
    }
    return link.size
  }

  /** Why a blob answer for this repository is stale (its upstream failing now), or undefined. */
  staleness(repo: RepoKey): string | undefined {
    return this.#deps.upstreams.staleness(repo.upstream)
  }

  async open(repo: RepoKey, digest: Digest): Promise<Required<BlobAnswer>> {
    const size = await this.size(repo, digest)
    const { source, result } = await this.#deps.blobs.getOrFill(digest, size, (signal) => this.#fetch(repo, digest, size, signal))
    this.#deps.metrics.cache.inc({ kind: 'blob', result })
    return { size, source, result }
  }

  /**
   * Reads a small gated blob whole (signature payloads, bundles), through the cache, refusing
   * more than `max` bytes and bytes that do not hash to `digest`.
   */
  async readVerified(repo: RepoKey, digest: Digest, max: number): Promise<Buffer> {
    const size = await this.size(repo, digest)
    if (size > max) throw new CustomsError('UPSTREAM_INVALID', `blob ${digest} is ${size} bytes, over the ${max}-byte limit`)
    const { source } = await this.open(repo, digest)
    return readAll(source, size, digest)
  }

  /**
   * Reads a blob a manifest under inspection references (its config), through the cache but
   * before the gate opens: the manifest is not cleared yet. Bounded, and verified by digest.
   */
  async readForInspection(repo: RepoKey, digest: Digest, size: number, max: number): Promise<Buffer> {
    if (size > max) throw new CustomsError('MANIFEST_INVALID', `blob ${digest} is ${size} bytes, over the ${max}-byte limit`)
    const { source } = await this.#deps.blobs.getOrFill(digest, size, (signal) => this.#fetch(repo, digest, size, signal))
    return readAll(source, size, digest)
  }

  async #fetch(repo: RepoKey, digest: Digest, size: number, signal: AbortSignal): Promise<BodyStream> {
    const client = this.#deps.upstreams.get(repo.upstream)
    const res = await client.send({
      method: 'GET',
      path: `/v2/${repo.repository}/blobs/${digest}`,
      repository: repo.repository,
      accept: MediaType.OCTET_STREAM,
      signal,
      // A small blob stays on the kept-alive connections: a new connection (and TLS handshake)
      // would cost it more than the copies it saves.
      bulk: size >= BULK_BLOB,
    })
    if (res.status !== 200) throw await statusError(res, repo.upstream, `blob ${digest}`, 'BLOB_UNKNOWN')
    const declared = res.headers.get('content-length')
    if (declared !== null && Number(declared) !== size) {
      await res.discard()
      throw new CustomsError('UPSTREAM_INVALID', `${repo.upstream} declared ${declared.slice(0, 20)} bytes for ${digest}, whose manifest says ${size}`)
    }
    const body = res.bodyStream()
    if (body === null) {
      throw new CustomsError('UPSTREAM_INVALID', `${repo.upstream} answered blob ${digest} without a body`)
    }
    this.#deps.metrics.bytesFetched.inc({ upstream: repo.upstream }, size)
    return body
  }
}

/** Reads a whole (small) source and checks it hashes to `digest`. */
async function readAll(source: ByteSource, size: number, digest: Digest): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  const reader = rangeStream(source, 0, size - 1).getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    chunks.push(value)
  }
  const bytes = Buffer.concat(chunks)
  if (digestOf(bytes, digest) !== digest) throw new CustomsError('DIGEST_INVALID', `blob ${digest} does not match its digest`)
  return bytes
}
