// GET /v2/<name>/tags/list and /v2/<name>/referrers/<digest>, proxied from the upstream.

import type { Context } from 'hono'
import { CustomsError } from '../../errors.js'
import type { Digest } from '../../oci/digest.js'
import { API_VERSION_VALUE, Header, MediaType } from '../../oci/media-types.js'
import { isTag } from '../../oci/reference.js'
import { MAX_PAGE, type Listings } from '../../inspection/listings.js'
import type { Route } from '../../upstream/routing.js'
import type { Env } from '../context.js'

export async function tagsHandler(c: Context<Env>, listings: Listings, route: Route, clientName: string): Promise<Response> {
  const nParam = c.req.query('n')
  const last = c.req.query('last')
  let n: number | undefined
  if (nParam !== undefined) {
    n = /^\d{1,6}$/.test(nParam) ? Number(nParam) : NaN
    if (!Number.isSafeInteger(n) || n > MAX_PAGE) {
      throw new CustomsError('PAGINATION_NUMBER_INVALID', `n must be an integer from 0 to ${MAX_PAGE}`)
    }
  }
  if (last !== undefined && !isTag(last)) throw new CustomsError('TAG_INVALID', 'last must be a tag')
  const headers: Record<string, string> = { 'Content-Type': MediaType.JSON, [Header.API_VERSION]: API_VERSION_VALUE }
  if (n === 0) return c.body(JSON.stringify({ name: clientName, tags: [] }), 200, headers)
  const page = await listings.tags(route, n, last)
  // Some upstreams ignore n; the client still gets at most n.
  const tags = n !== undefined ? page.tags.slice(0, n) : page.tags
  const next = page.next ?? (n !== undefined && page.tags.length > n ? { n, last: tags[tags.length - 1] as string } : undefined)
  if (next !== undefined) {
    const q = new URLSearchParams()
    if (next.n !== undefined) q.set('n', String(next.n))
    q.set('last', next.last)
    if (route.namespace !== undefined) q.set('ns', route.namespace)
    headers.Link = `</v2/${clientName}/tags/list?${q}>; rel="next"`
  }
  return c.body(JSON.stringify({ name: clientName, tags }), 200, headers)
}

export async function referrersHandler(c: Context<Env>, listings: Listings, route: Route, digest: Digest): Promise<Response> {
  const artifactType = c.req.query('artifactType')
  const { index, filtered } = await listings.referrers(route, digest, artifactType)
  const headers: Record<string, string> = { 'Content-Type': MediaType.OCI_INDEX, [Header.API_VERSION]: API_VERSION_VALUE }
  if (filtered) headers[Header.OCI_FILTERS_APPLIED] = 'artifactType'
  return c.body(JSON.stringify(index), 200, headers)
}
