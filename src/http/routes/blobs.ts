// GET/HEAD /v2/<name>/blobs/<digest>: gated by a cleared manifest, served from the cache or from
// the fill in progress, with single Range support (206).

import type { Context } from 'hono'
import type { Digest } from '../../oci/digest.js'
import { API_VERSION_VALUE, Header, MediaType } from '../../oci/media-types.js'
import { rangeStream } from '../../cache/reader.js'
import type { BlobService } from '../../inspection/blobs.js'
import type { Route } from '../../upstream/routing.js'
import type { Env } from '../context.js'
import { parseRange } from '../range.js'

export async function blobHandler(c: Context<Env>, blobs: BlobService, route: Route, digest: Digest): Promise<Response> {
  const access = c.get('access')
  access.digest = digest
  const headers: Record<string, string> = {
    'Content-Type': MediaType.OCTET_STREAM,
    [Header.CONTENT_DIGEST]: digest,
    [Header.API_VERSION]: API_VERSION_VALUE,
    'Accept-Ranges': 'bytes',
    ETag: `"${digest}"`,
    'Cache-Control': 'max-age=31536000, immutable',
  }
  if (route.namespace !== undefined) headers[Header.OCI_NAMESPACE] = route.namespace
  const stale = blobs.staleness(route)
  if (stale !== undefined) headers[Header.CUSTOMS_STALE] = stale

  if (c.req.method === 'HEAD') {
    // The size comes from the cleared manifest that references the blob: no upstream request.
    const size = await blobs.size(route, digest)
    parseRange(c.req.header('range'), size)
    return new Response(null, { status: 200, headers: { ...headers, 'Content-Length': String(size) } })
  }

  const size = await blobs.size(route, digest)
  // A bad range is refused before anything is fetched.
  const range = parseRange(c.req.header('range'), size)
  const { source, result } = await blobs.open(route, digest)
  access.cache = result
  headers[Header.CUSTOMS_CACHE] = result
  const start = range?.start ?? 0
  const end = range?.end ?? size - 1
  headers['Content-Length'] = String(end - start + 1)
  if (range !== undefined) headers['Content-Range'] = `bytes ${start}-${end}/${size}`

  let sent = 0
  let finished = false
  const finish = c.get('deferAccessLog')()
  const signal = c.req.raw.signal
  const done = (aborted: boolean) => {
    if (finished) return
    finished = true
    finish(sent, aborted)
  }
  signal.addEventListener('abort', () => done(true), { once: true })
  const outgoing = (c.env as { outgoing?: { destroy(err?: Error): void } } | undefined)?.outgoing
  const body = rangeStream(source, start, end, {
    signal,
    onBytes: (n) => {
      sent += n
      if (sent === end - start + 1) done(false)
    },
    // Short of its last byte, the response is cut: the client sees a failed transfer, never a
    // complete one. The fill already logged why.
    ...(outgoing !== undefined ? { abort: () => (done(true), outgoing.destroy()) } : {}),
  })
  if (end < start) done(false)
  return new Response(body, { status: range === undefined ? 200 : 206, headers })
}
