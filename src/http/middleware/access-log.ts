// One JSON line per request: upstream, repository, reference, digest, cache result, status, bytes,
// duration, the mTLS client's certificate CN, and the access.clients name it authenticated as. A streamed blob answer is logged when its stream
// ends, with the bytes really sent.

import { randomUUID } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'
import type { Logger } from '../../observability/logger.js'
import type { Metrics } from '../../observability/metrics.js'
import { clientIdentity } from '../../tls/identity.js'
import type { Env } from '../context.js'

export function accessLog(logger: Logger, metrics: Metrics): MiddlewareHandler<Env> {
  return async function accessLogger(c, next) {
    const started = performance.now()
    c.set('access', {})
    // Read while the connection is surely open; undefined without a verified client certificate.
    const client = clientIdentity(c.env)
    let deferred = false
    let finish: ((bytes: number, aborted: boolean) => void) | undefined
    let early: [number, boolean] | undefined
    c.set('deferAccessLog', () => {
      deferred = true
      return (bytes, aborted) => (finish !== undefined ? finish(bytes, aborted) : (early = [bytes, aborted]))
    })
    await next()
    // No response header is added here: setting one on a finished response makes hono rebuild
    // it, which cost most of the warm manifest path's throughput. The id is in the log line.
    const route = routeKind(c.req.path)
    const write = (bytes: number | undefined, aborted: boolean) => {
      const seconds = (performance.now() - started) / 1000
      const status = c.get('sentStatus') ?? c.res.status
      metrics.countRequest(route, c.req.method, status)
      metrics.requestDuration.observe({ route }, seconds)
      if (bytes !== undefined && route === 'blob') metrics.bytesServed.inc(bytes)
      const level = status >= 500 ? 'warn' : 'info'
      // Its fields are gathered only for a line that is written: at log.level warn (the bench's)
      // pino drops it, after every request had built and spread them.
      if (!logger.isLevelEnabled(level)) return
      logger[level](
        {
          // The client's id, else one of ours: made only for a line that is written.
          requestId: c.req.header('x-request-id')?.slice(0, 64) ?? randomUUID(),
          method: c.req.method,
          path: c.req.path.slice(0, 512),
          status,
          ...(client !== undefined ? { client } : {}),
          ...(c.get('pullClient') !== undefined ? { user: c.get('pullClient') } : {}),
          ...c.get('access'),
          ...(bytes !== undefined ? { bytes } : {}),
          ...(aborted ? { aborted } : {}),
          ...(c.get('errorCode') ? { error: c.get('errorCode') } : {}),
          durationMs: Math.round(seconds * 1000),
          userAgent: c.req.header('user-agent')?.slice(0, 200),
        },
        'request'
      )
    }
    if (deferred && (c.get('sentStatus') ?? c.res.status) < 300) {
      if (early !== undefined) write(...early)
      else finish = write
    } else {
      write(undefined, false)
    }
  }
}

function routeKind(path: string): string {
  if (/\/manifests\/[^/]+$/.test(path)) return 'manifest'
  if (/\/blobs\/[^/]+$/.test(path)) return 'blob'
  if (path.endsWith('/tags/list')) return 'tags'
  if (/\/referrers\/[^/]+$/.test(path)) return 'referrers'
  if (path.startsWith('/v2')) return 'base'
  if (path.startsWith('/admin/')) return 'admin'
  return 'other'
}
