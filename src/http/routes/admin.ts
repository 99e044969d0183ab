// The admin API, read-only part, under /admin/v1/: quarantine records of refused pulls and the
// policy set in force. Every route needs an admin bearer token (middleware/admin-auth.ts) of at
// least the role it names; bad query parameters are 400s, rendered by the one OCI error renderer.

import { Hono } from 'hono'
import { CustomsError } from '../../errors.js'
import { isDigest } from '../../oci/digest.js'
import type { PolicyEngine } from '../../policy/engine.js'
import type { ReloadResult } from '../../policy/reload.js'
import { decodeQuarantineCursor, type StateStore } from '../../state/store.js'
import type { Env } from '../context.js'
import { adminAuth, requireRole, type AdminToken } from '../middleware/admin-auth.js'

/** What the admin routes read. */
export interface AdminDeps {
  readonly tokens: readonly AdminToken[]
  readonly state: StateStore
  readonly policies: PolicyEngine
  /** The policy folder in force, when policies come from files. */
  readonly policyDir: string | undefined
  /** The recent policy reload attempts, oldest first. */
  readonly policyReloads: () => ReadonlyArray<ReloadResult & { readonly at: string }>
}

/** The page size of GET /admin/v1/quarantine when no `limit` is given, and its maximum. */
export const QUARANTINE_PAGE_DEFAULT = 50
export const QUARANTINE_PAGE_MAX = 500

/** Upstream names as config allows them (schema.ts `upstreamName`). */
const UPSTREAM = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/
/** OCI repository names (distribution spec), bounded. */
const REPOSITORY = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/

/** The routes under /admin/v1/, to be mounted at the root. */
export function adminRoutes(deps: AdminDeps): Hono<Env> {
  const app = new Hono<Env>()
  app.use('/admin/*', adminAuth(deps.tokens))

  app.get('/admin/v1/quarantine', requireRole('viewer'), async (c) => {
    const upstream = upstreamParam(c.req.query('upstream'))
    const limit = limitParam(c.req.query('limit'))
    const after = c.req.query('after')
    if (after !== undefined && decodeQuarantineCursor(after) === null) {
      const message = 'after must be the next cursor of a previous page'
      throw new CustomsError('PAGINATION_NUMBER_INVALID', message)
    }
    const page = await deps.state.listQuarantine({
      limit,
      ...(upstream !== undefined ? { upstream } : {}),
      ...(after !== undefined ? { after } : {}),
    })
    return c.json(page)
  })

  app.get('/admin/v1/quarantine/:upstream/:digest', requireRole('viewer'), async (c) => {
    const upstream = upstreamParam(c.req.param('upstream'))
    const digest = c.req.param('digest')
    if (!isDigest(digest)) {
      throw new CustomsError('DIGEST_INVALID', `${digest.slice(0, 80)} is not a digest`)
    }
    const repository = c.req.query('repository')
    if (repository === undefined || repository.length > 255 || !REPOSITORY.test(repository)) {
      const message = 'repository must be given as a query parameter and be a repository name'
      throw new CustomsError('NAME_INVALID', message)
    }
    const repo = { upstream: upstream as string, repository }
    const record = await deps.state.getQuarantine(repo, digest)
    if (record === null) {
      const message = `no pull of ${repo.upstream}/${repository}@${digest} was refused`
      throw new CustomsError('MANIFEST_UNKNOWN', message)
    }
    return c.json(record)
  })

  app.get('/admin/v1/policy', requireRole('viewer'), (c) => {
    const set = deps.policies.current()
    return c.json({
      revision: set.revision,
      policies: set.policies.length,
      exceptions: set.exceptions.length,
      unmatched: set.unmatched,
      ...(deps.policyDir !== undefined ? { path: deps.policyDir } : {}),
      reloads: deps.policyReloads(),
    })
  })

  return app
}

function upstreamParam(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  if (!UPSTREAM.test(value)) {
    throw new CustomsError('NAME_INVALID', 'upstream must be an upstream name such as docker.io')
  }
  return value
}

function limitParam(value: string | undefined): number {
  if (value === undefined) return QUARANTINE_PAGE_DEFAULT
  const limit = /^\d{1,4}$/.test(value) ? Number(value) : NaN
  if (!(limit >= 1 && limit <= QUARANTINE_PAGE_MAX)) {
    const message = `limit must be a whole number from 1 to ${QUARANTINE_PAGE_MAX}`
    throw new CustomsError('PAGINATION_NUMBER_INVALID', message)
  }
  return limit
}
