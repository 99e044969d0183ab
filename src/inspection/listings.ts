// Read-only listings proxied from the upstream: tags/list with pagination, and the referrers API
// with the tag-schema fallback for registries that do not implement it (PROTOCOL §1.5, §1.7).

import { CustomsError } from '../errors.js'
import type { Digest } from '../oci/digest.js'
import { MediaType } from '../oci/media-types.js'
import { MAX_MANIFEST_BYTES, parseManifest, type Descriptor } from '../oci/manifest.js'
import { isTag, referrersTag } from '../oci/reference.js'
import type { RepoKey } from '../state/store.js'
import { readBoundedJson, readBounded } from '../upstream/auth.js'
import { statusError } from '../upstream/client.js'
import type { UpstreamPool } from '../upstream/pool.js'

export interface TagPage {
  readonly tags: string[]
  /** The `last` to ask for the next page, when the upstream said there is one. */
  readonly next?: { n?: number; last: string }
}

export interface ReferrersAnswer {
  readonly index: { schemaVersion: 2; mediaType: string; manifests: Descriptor[] }
  readonly filtered: boolean
}

export const MAX_PAGE = 10_000

export class Listings {
  readonly #upstreams: UpstreamPool

  constructor(upstreams: UpstreamPool) {
    this.#upstreams = upstreams
  }

  async tags(repo: RepoKey, n: number | undefined, last: string | undefined): Promise<TagPage> {
    const query = new URLSearchParams()
    if (n !== undefined) query.set('n', String(n))
    if (last !== undefined) query.set('last', last)
    const qs = query.size > 0 ? `?${query}` : ''
    const res = await this.#upstreams.get(repo.upstream).send({
      method: 'GET',
      path: `/v2/${repo.repository}/tags/list${qs}`,
      repository: repo.repository,
      accept: MediaType.JSON,
    })
    if (!res.ok) throw await statusError(res, repo.upstream, `${repo.repository} tags`, 'NAME_UNKNOWN')
    const link = res.headers.get('link')
    const body = await readBoundedJson(res, MAX_MANIFEST_BYTES, `${repo.upstream} tags list`)
    const tags = body.tags ?? []
    if (!Array.isArray(tags) || !tags.every((t): t is string => typeof t === 'string' && isTag(t))) {
      throw new CustomsError('UPSTREAM_INVALID', `${repo.upstream} answered a tags list that is not a list of tags`)
    }
    const next = parseNextLink(link)
    return { tags, ...(next ? { next } : {}) }
  }

  async referrers(repo: RepoKey, digest: Digest, artifactType: string | undefined): Promise<ReferrersAnswer> {
    const client = this.#upstreams.get(repo.upstream)
    const qs = artifactType !== undefined ? `?${new URLSearchParams({ artifactType })}` : ''
    const res = await client.send({
      method: 'GET',
      path: `/v2/${repo.repository}/referrers/${digest}${qs}`,
      repository: repo.repository,
      accept: MediaType.OCI_INDEX,
    })
    let manifests: Descriptor[]
    if (res.status === 404) {
      await res.discard()
      manifests = await this.#fallback(repo, digest)
    } else if (res.ok) {
      manifests = indexEntries(await readBounded(res, MAX_MANIFEST_BYTES, `${repo.upstream} referrers`), repo.upstream)
    } else {
      throw await statusError(res, repo.upstream, `referrers of ${digest}`, 'MANIFEST_UNKNOWN')
    }
    // Clients must filter themselves too, whatever the upstream claims to have applied.
    const filtered = artifactType !== undefined
    const entries = filtered ? manifests.filter((d) => d.artifactType === artifactType) : manifests
    return { index: { schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: entries }, filtered }
  }

  /** The referrers tag schema: an index at tag `sha256-<hex>`, or no referrers. */
  async #fallback(repo: RepoKey, digest: Digest): Promise<Descriptor[]> {
    const res = await this.#upstreams.get(repo.upstream).send({
      method: 'GET',
      path: `/v2/${repo.repository}/manifests/${referrersTag(digest)}`,
      repository: repo.repository,
      accept: MediaType.OCI_INDEX,
    })
    if (res.status === 404) {
      await res.discard()
      return []
    }
    if (!res.ok) throw await statusError(res, repo.upstream, `referrers of ${digest}`, 'MANIFEST_UNKNOWN')
    if ((res.headers.get('content-type') ?? '').split(';')[0]?.trim() !== MediaType.OCI_INDEX) {
      await res.discard()
      return []
    }
    return indexEntries(await readBounded(res, MAX_MANIFEST_BYTES, `${repo.upstream} referrers tag`), repo.upstream)
  }
}

function indexEntries(bytes: Buffer, upstream: string): Descriptor[] {
  try {
    const index = parseManifest(bytes, MediaType.OCI_INDEX)
    return index.kind === 'index' ? [...index.manifests] : []
  } catch (err) {
    throw new CustomsError('UPSTREAM_INVALID', `${upstream} answered a referrers list that is not an OCI index`, { cause: err })
  }
}

/** `</v2/x/tags/list?n=2&last=b>; rel="next"` -> {n: 2, last: 'b'}. */
function parseNextLink(link: string | null): TagPage['next'] | undefined {
  if (link === null) return undefined
  const m = /<([^>]*)>\s*;\s*rel="?next"?/i.exec(link)
  if (m === null) return undefined
  let url: URL
  try {
    url = new URL(m[1] as string, 'http://upstream.invalid')
  } catch {
    return undefined
  }
  const last = url.searchParams.get('last')
  if (last === null || !isTag(last)) return undefined
  const n = Number(url.searchParams.get('n'))
  return { last, ...(Number.isSafeInteger(n) && n > 0 ? { n } : {}) }
}

