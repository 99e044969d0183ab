// The operations part of the admin API: the health of each upstream, the cache's size and hit
// counts, the inventory of cached blobs, and eviction. Registered on the admin app after its
// token check (admin.ts), so every route here sees `c.get('admin')`. Figures are this process's:
// with several replicas, each answers for itself (the cache folder and state are shared).

import type { Hono } from 'hono'
import { z } from 'zod'
import type { EventBus } from '../../audit/events.js'
import type { BlobStore } from '../../cache/blob-store.js'
import { CustomsError } from '../../errors.js'
import type { Logger } from '../../observability/logger.js'
import type { Metrics } from '../../observability/metrics.js'
import { isDigest, type Digest } from '../../oci/digest.js'
import type { UpstreamPool } from '../../upstream/pool.js'
import type { Env } from '../context.js'
import { requireRole } from '../middleware/admin-auth.js'
import { invalidBody, jsonBody } from './admin-common.js'

/** What the operations routes read. */
export interface AdminOpsDeps {
  readonly upstreams: UpstreamPool
  readonly cache: BlobStore
  readonly storage: { readonly path: string; readonly maxSize: number }
  readonly metrics: Metrics
  readonly logger: Logger
  readonly events: EventBus
}

/** The page size of GET /admin/v1/cache/blobs when no `limit` is given, and its maximum. */
export const BLOB_PAGE_DEFAULT = 100
export const BLOB_PAGE_MAX = 1000

const digest = z.string().max(200).refine(isDigest, 'must be a sha256 or sha512 digest')
// One blob, or every blob: nothing in between, and nothing else in the body.
const EvictBody = z.union([z.strictObject({ digest }), z.strictObject({ all: z.literal(true) })])

export function registerAdminOpsRoutes(app: Hono<Env>, deps: AdminOpsDeps): void {
  app.get('/admin/v1/upstreams', requireRole('viewer'), (c) =>
    c.json({ upstreams: deps.upstreams.all().map((u) => u.health()) })
  )

  app.get('/admin/v1/cache', requireRole('viewer'), async (c) => {
    const { metrics } = deps
    const lookups = { hit: 0, miss: 0, join: 0 }
    for (const v of (await metrics.cache.get()).values) {
      const result = v.labels.result
      if (result === 'hit' || result === 'miss' || result === 'join') lookups[result] += v.value
    }
    const total = lookups.hit + lookups.miss + lookups.join
    const evictions = { limit: 0, admin: 0 }
    for (const v of (await metrics.evictions.get()).values) {
      if (v.labels.cause === 'limit' || v.labels.cause === 'admin') evictions[v.labels.cause] += v.value
    }
    return c.json({
      path: deps.storage.path,
      maxSize: deps.storage.maxSize,
      bytes: deps.cache.totalBytes,
      blobs: deps.cache.blobCount,
      hits: lookups.hit,
      misses: lookups.miss,
      joins: lookups.join,
      // Lookups answered without an upstream fetch of their own (hits and joins of a fill).
      hitRatio: total === 0 ? null : (lookups.hit + lookups.join) / total,
      bytesServed: await sum(metrics.bytesServed),
      bytesFetched: await sum(metrics.bytesFetched),
      evictions,
    })
  })

  app.get('/admin/v1/cache/blobs', requireRole('viewer'), (c) => {
    const limit = blobLimit(c.req.query('limit'))
    const after = c.req.query('after')
    if (after !== undefined && !isDigest(after)) {
      throw new CustomsError('PAGINATION_NUMBER_INVALID', 'after must be the next digest of a previous page')
    }
    return c.json(deps.cache.inventory(limit, after))
  })

  app.post('/admin/v1/cache/evict', requireRole('admin'), async (c) => {
    const body = EvictBody.safeParse(await jsonBody(c))
    if (!body.success) throw invalidBody(body.error)
    const target = 'digest' in body.data ? [body.data.digest as Digest] : undefined
    const result = await deps.cache.evict(target)
    const by = c.get('admin').name
    const summary = { removed: result.removed.length, bytes: result.bytes, busy: result.busy.length, absent: result.absent.length }
    deps.logger.info({ action: 'evict', by, ...(target ? { digest: target[0] } : { all: true }), ...summary }, 'admin action')
    deps.events.emit({
      type: 'admin',
      actor: by,
      action: 'evict',
      ...(target ? { digest: target[0] } : {}),
      detail: { scope: target ? 'digest' : 'all', ...summary },
    })
    return c.json(result)
  })
}

async function sum(metric: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> {
  return (await metric.get()).values.reduce((total, v) => total + v.value, 0)
}

function blobLimit(value: string | undefined): number {
  if (value === undefined) return BLOB_PAGE_DEFAULT
  const limit = /^\d{1,4}$/.test(value) ? Number(value) : NaN
  if (!(limit >= 1 && limit <= BLOB_PAGE_MAX)) {
    throw new CustomsError('PAGINATION_NUMBER_INVALID', `limit must be a whole number from 1 to ${BLOB_PAGE_MAX}`)
  }
  return limit
}
