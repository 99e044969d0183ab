// The OCI pull API under /v2/: parses each path from the right (names contain '/'), routes the
// name to an upstream, and dispatches to the manifest, blob and listing handlers. Every push or
// delete answers 405 UNSUPPORTED: Customs is a read-only mirror.

import { Hono, type Context } from 'hono'
import { CustomsError } from '../../errors.js'
import { API_VERSION_VALUE, Header } from '../../oci/media-types.js'
import { parseDigest } from '../../oci/digest.js'
import { parseReference } from '../../oci/reference.js'
import type { Route, UpstreamRouter } from '../../upstream/routing.js'
import type { Env } from '../context.js'
import { blobHandler } from './blobs.js'
import { manifestHandler } from './manifests.js'
import { referrersHandler, tagsHandler } from './listings.js'
import type { ManifestService } from '../../inspection/manifests.js'
import type { BlobService } from '../../inspection/blobs.js'
import type { Listings } from '../../inspection/listings.js'

const RE_MANIFEST = /^\/v2\/(.+)\/manifests\/([^/]+)$/
const RE_BLOB = /^\/v2\/(.+)\/blobs\/([^/]+)$/
const RE_UPLOAD = /^\/v2\/(.+)\/blobs\/uploads(\/.*)?$/
const RE_TAGS = /^\/v2\/(.+)\/tags\/list$/
const RE_REFERRERS = /^\/v2\/(.+)\/referrers\/([^/]+)$/
const READ_METHODS = new Set(['GET', 'HEAD'])

export interface V2Deps {
  readonly router: UpstreamRouter
  readonly manifests: ManifestService
  readonly blobs: BlobService
  readonly listings: Listings
}

export function v2Routes(deps: V2Deps): Hono<Env> {
  const app = new Hono<Env>()

  app.all('/v2', (c) => base(c))
  app.all('/v2/', (c) => base(c))
  app.all('/v2/*', async function registryApi(c) {
    const path = checkedPath(c)
    const method = c.req.method
    const ns = c.req.query('ns')

    if (RE_UPLOAD.test(path)) throw unsupported(method)
    let m = RE_MANIFEST.exec(path)
    if (m !== null) {
      if (!READ_METHODS.has(method)) throw unsupported(method)
      const route = routeOf(deps.router, m[1] as string, ns, c)
      return manifestHandler(c, deps.manifests, route, parseReference(m[2] as string))
    }
    m = RE_BLOB.exec(path)
    if (m !== null) {
      if (!READ_METHODS.has(method)) throw unsupported(method)
      const route = routeOf(deps.router, m[1] as string, ns, c)
      return blobHandler(c, deps.blobs, route, parseDigest(m[2] as string))
    }
    m = RE_TAGS.exec(path)
    if (m !== null) {
      if (!READ_METHODS.has(method)) throw unsupported(method)
      return tagsHandler(c, deps.listings, routeOf(deps.router, m[1] as string, ns, c), m[1] as string)
    }
    m = RE_REFERRERS.exec(path)
    if (m !== null) {
      if (!READ_METHODS.has(method)) throw unsupported(method)
      const route = routeOf(deps.router, m[1] as string, ns, c)
      return referrersHandler(c, deps.listings, route, parseDigest(m[2] as string))
    }
    if (path === '/v2/_catalog') throw new CustomsError('UNSUPPORTED', 'the catalog is not served by a mirror', { headers: { Allow: '' } })
    throw new CustomsError('NAME_UNKNOWN', 'no such registry API endpoint')
  })
  return app
}

/**
 * GET /v2/: 200 without a challenge, so Docker never sends Hub credentials to us (PROTOCOL §2.1),
 * unless `access.anonymous` is false: the pull-auth middleware then answers the Basic challenge
 * before this runs, which is how clients discover they must authenticate.
 */
function base(c: Context<Env>): Response {
  if (!READ_METHODS.has(c.req.method)) throw unsupported(c.req.method)
  const headers = { 'Content-Type': 'application/json', [Header.API_VERSION]: API_VERSION_VALUE }
  return c.req.method === 'HEAD' ? c.body(null, 200, headers) : c.body('{}', 200, headers)
}

function unsupported(method: string): CustomsError {
  return new CustomsError('UNSUPPORTED', `${method} is not supported: Customs is a read-only mirror`, {
    headers: { Allow: 'GET, HEAD' },
  })
}

function routeOf(router: UpstreamRouter, name: string, ns: string | undefined, c: Context<Env>): Route {
  const route = router.route(name, ns)
  const access = c.get('access')
  access.upstream = route.upstream
  access.repository = route.repository
  return route
}

/**
 * The request path as the client sent it. URL parsing would silently resolve `..`, `%2e%2e` and
 * `//`, so the raw request target is checked first: no name, tag or digest contains `%`, `\`, or
 * empty and dot segments, and a path that does is refused rather than reinterpreted.
 */
function checkedPath(c: Context<Env>): string {
  const incoming = (c.env as { incoming?: { url?: string } } | undefined)?.incoming
  const raw = incoming?.url ?? new URL(c.req.url).pathname
  const rawPath = (raw.startsWith('/') ? raw : new URL(raw).pathname).split('?')[0] as string
  if (rawPath.length > 2048 || /%|\\|\/\/|\/\.{1,2}(\/|$)/.test(rawPath)) {
    throw new CustomsError('NAME_INVALID', 'invalid path: encoded characters, empty or dot segments are not allowed')
  }
  return rawPath
}
