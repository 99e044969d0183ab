// The audit log through the admin API, newest first, paged with a `before` cursor:
//   GET /admin/v1/decisions  (viewer)  verdicts on pulls, filtered by upstream, repository,
//                                      digest, verdict and since
//   GET /admin/v1/audit      (admin)   the raw chained entries of every type, filtered by type
// Mounted inside adminRoutes, behind its token check; bad parameters are 400s in the OCI format.

import { Hono, type Context } from 'hono'
import { z } from 'zod'
import { EVENT_TYPES, type EventType } from '../../audit/events.js'
import type { AuditEntry } from '../../audit/chain.js'
import type { AuditStore } from '../../audit/store.js'
import { CustomsError } from '../../errors.js'
import { isDigest } from '../../oci/digest.js'
import type { VerdictOutcome } from '../../state/store.js'
import type { Env } from '../context.js'
import { requireRole } from '../middleware/admin-auth.js'
import { REPOSITORY, limitParam, upstreamParam } from './admin-common.js'

const VERDICTS: readonly VerdictOutcome[] = ['cleared', 'cleared-with-warnings', 'detained']
const since = z.iso.datetime({ offset: true })

export function adminAuditRoutes(audit: AuditStore): Hono<Env> {
  const app = new Hono<Env>()

  app.get('/admin/v1/decisions', requireRole('viewer'), async (c) => {
    const upstream = upstreamParam(c.req.query('upstream'))
    const repository = repositoryParam(c.req.query('repository'))
    const digest = digestParam(c.req.query('digest'))
    const verdict = verdictParam(c.req.query('verdict'))
    const page = await audit.list({
      ...paging(c),
      match: ({ event }) =>
        event.type === 'decision' &&
        (upstream === undefined || event.upstream === upstream) &&
        (repository === undefined || event.repository === repository) &&
        (digest === undefined || event.digest === digest) &&
        (verdict === undefined || event.verdict === verdict),
    })
    const decisions = page.entries.map((e) => ({ seq: e.seq, ...e.event }))
    return c.json({ decisions, ...next(page.next) })
  })

  app.get('/admin/v1/audit', requireRole('admin'), async (c) => {
    const type = typeParam(c.req.query('type'))
    const page = await audit.list({
      ...paging(c),
      ...(type !== undefined ? { match: (e: AuditEntry) => e.event.type === type } : {}),
    })
    return c.json({ entries: page.entries, ...next(page.next) })
  })

  return app
}

/** limit, before and since, shared by both routes. */
function paging(c: Context<Env>): { limit: number; before?: number; since?: number } {
  const limit = limitParam(c.req.query('limit'))
  const before = c.req.query('before')
  if (before !== undefined && !/^[1-9]\d{0,14}$/.test(before)) {
    throw new CustomsError('PAGINATION_NUMBER_INVALID', 'before must be the next cursor of a previous page')
  }
  const from = c.req.query('since')
  if (from !== undefined && !since.safeParse(from).success) {
    throw new CustomsError('REQUEST_INVALID', 'since must be an ISO 8601 time with a zone, such as 2026-01-31T12:00:00Z')
  }
  return {
    limit,
    ...(before !== undefined ? { before: Number(before) } : {}),
    ...(from !== undefined ? { since: Date.parse(from) } : {}),
  }
}

function next(seq: number | undefined): { next?: string } {
  return seq === undefined ? {} : { next: String(seq) }
}

function repositoryParam(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (value.length > 255 || !REPOSITORY.test(value)) {
    throw new CustomsError('NAME_INVALID', 'repository must be a repository name such as library/alpine')
  }
  return value
}

function digestParam(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (!isDigest(value)) throw new CustomsError('DIGEST_INVALID', `${value.slice(0, 80)} is not a digest`)
  return value
}

function verdictParam(value: string | undefined): VerdictOutcome | undefined {
  if (value === undefined) return undefined
  if (!(VERDICTS as readonly string[]).includes(value)) {
    throw new CustomsError('REQUEST_INVALID', `verdict must be one of ${VERDICTS.join(', ')}`)
  }
  return value as VerdictOutcome
}

function typeParam(value: string | undefined): EventType | undefined {
  if (value === undefined) return undefined
  if (!(EVENT_TYPES as readonly string[]).includes(value)) {
    throw new CustomsError('REQUEST_INVALID', `type must be one of ${EVENT_TYPES.join(', ')}`)
  }
  return value as EventType
}
