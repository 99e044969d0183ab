// GET/HEAD /v2/<name>/blobs/<digest>: gated by a cleared manifest, served from the cache or from
// the fill in progress, with single Range support (206).

import type { ServerResponse } from 'node:http'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Context } from 'hono'
import { CustomsError } from '../../errors.js'
import type { Digest } from '../../oci/digest.js'
import { API_VERSION_VALUE, Header, MediaType } from '../../oci/media-types.js'
import { rangeChunks, rangeStream } from '../../cache/reader.js'
import type { BlobService } from '../../inspection/blobs.js'
import type { Route } from '../../upstream/routing.js'
import type { Env } from '../context.js'
import { errorResponse } from '../oci-error.js'
import { parseRange } from '../range.js'
import { sendRange } from '../send-range.js'

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

  const status = range === undefined ? 200 : 206
  const finish = c.get('deferAccessLog')()
  const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing
  if (outgoing !== undefined) {
    // Straight to the socket. hono is told the answer is sent and sees a placeholder whose status
    // is 200: the access log reads the real one from `sentStatus`.
    c.set('sentStatus', status)
    let failure: CustomsError | undefined
    const renderError = (err: unknown) => errorResponse((failure = asBlobError(err)), 'GET')
    void sendRange(outgoing, status, headers, (signal) => rangeChunks(source, start, end, signal), { renderError }).then(
      ({ sent, aborted, errorStatus }) => {
        if (errorStatus !== undefined && failure !== undefined) {
          c.set('sentStatus', errorStatus)
          c.set('errorCode', failure.code)
        }
        finish(sent, aborted)
      }
    )
    return RESPONSE_ALREADY_SENT
  }

  // Without node's response (app.request() in process): a web stream.
  let sent = 0
  let finished = false
  const signal = c.req.raw.signal
  const done = (aborted: boolean) => {
    if (finished) return
    finished = true
    finish(sent, aborted)
  }
  signal.addEventListener('abort', () => done(true), { once: true })
  const body = rangeStream(source, start, end, {
    signal,
    onBytes: (n) => {
      sent += n
      if (sent === end - start + 1) done(false)
    },
  })
  if (end < start) done(false)
  return new Response(body, { status, headers })
}

/** A failed fill's error as the client sees it (the fill's own errors are typed already). */
function asBlobError(err: unknown): CustomsError {
  return err instanceof CustomsError ? err : new CustomsError('UPSTREAM_UNAVAILABLE', 'the blob could not be read', { cause: err })
}
