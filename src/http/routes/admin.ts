// The admin API under /admin/v1/: quarantine records of refused pulls, the policy set in force,
// and releases (a person's exception for one detained digest, until it expires) and their
// revocation. Every route needs an admin bearer token (middleware/admin-auth.ts) of at least the
// role it names; bad parameters and bodies are 400s, rendered by the one OCI error renderer.

import { Hono } from 'hono'
import type { EventBus } from '../../audit/events.js'
import type { AuditStore } from '../../audit/store.js'
import { z } from 'zod'
import { CustomsError } from '../../errors.js'
import type { Logger } from '../../observability/logger.js'
import { isDigest, type Digest } from '../../oci/digest.js'
import type { PolicyEngine } from '../../policy/engine.js'
import type { ReloadResult } from '../../policy/reload.js'
import {
  decodeQuarantineCursor,
  effectiveState,
  type QuarantineRecord,
  type RepoKey,
  type StateStore,
} from '../../state/store.js'
import { detainUnreleased } from '../../inspection/detain.js'
import type { Env } from '../context.js'
import { adminAuth, requireRole, type AdminToken } from '../middleware/admin-auth.js'
import { adminAuditRoutes } from './admin-audit.js'
import {
  REPOSITORY,
  effective,
  invalidBody,
  jsonBody,
  limitParam,
  noRecord,
  recordParams,
  repository,
  upstreamParam,
} from './admin-common.js'
import { registerAdminOpsRoutes, type AdminOpsDeps } from './admin-ops.js'
import { reevaluationRoutes, type ReevaluationRouteDeps } from './reevaluation.js'

/** What the admin routes read. */
export interface AdminDeps {
  readonly tokens: readonly AdminToken[]
  readonly state: StateStore
  readonly policies: PolicyEngine
  /** The policy folder in force, when policies come from files. */
  readonly policyDir: string | undefined
  /** The recent policy reload attempts, oldest first. */
  readonly policyReloads: () => ReadonlyArray<ReloadResult & { readonly at: string }>
  /** Where each admin action (release, revoke) is logged with its actor. */
  readonly logger: Logger
  /** Where each admin action is announced (audit log, webhooks). */
  readonly events: EventBus
  /** The audit log's store, read by /admin/v1/decisions and /admin/v1/audit. */
  readonly audit: AuditStore
  /** Upstream health, the cache and eviction (admin-ops.ts). */
  readonly ops: Omit<AdminOpsDeps, 'logger' | 'events'>
  /** Re-evaluation, the policy dry run and purge (reevaluation.ts). */
  readonly reevaluation: Omit<ReevaluationRouteDeps, 'state' | 'policies' | 'logger' | 'events' | 'audit'>
}

/** How far ahead a release may expire, and how soon at the least. */
export const RELEASE_MAX_MS = 90 * 24 * 60 * 60 * 1000
export const RELEASE_MIN_MS = 1000


const ReleaseBody = z.strictObject({
  repository,
  reason: z.string().trim().min(1).max(1024),
  expires: z.iso.datetime({ offset: true }),
})
const RevokeBody = z.strictObject({ repository })

/** The routes under /admin/v1/, to be mounted at the root. */
export function adminRoutes(deps: AdminDeps): Hono<Env> {
  const app = new Hono<Env>()
  app.use('/admin/*', adminAuth(deps.tokens))
  app.route('/', adminAuditRoutes(deps.audit))
  const { state, policies, logger, events, audit } = deps
  app.route('/', reevaluationRoutes({ ...deps.reevaluation, state, policies, logger, events, audit }))

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
    const now = Date.now()
    return c.json({ ...page, records: page.records.map((r) => effective(r, now)) })
  })

  app.get('/admin/v1/quarantine/:upstream/:digest', requireRole('viewer'), async (c) => {
    const upstream = upstreamParam(c.req.param('upstream'))
    const digest = c.req.param('digest')
    if (!isDigest(digest)) {
      throw new CustomsError('DIGEST_INVALID', `${digest.slice(0, 80)} is not a digest`)
    }
    const repository = repositoryQuery(c.req.query('repository'))
    const repo = { upstream: upstream as string, repository }
    const record = await deps.state.getQuarantine(repo, digest)
    if (record === null) throw noRecord(repo, digest)
    return c.json(effective(record, Date.now()))
  })

  app.post('/admin/v1/quarantine/:upstream/:digest/release', requireRole('approver'), async (c) => {
    const { upstream, digest } = recordParams(c.req.param('upstream'), c.req.param('digest'))
    const body = ReleaseBody.safeParse(await jsonBody(c))
    if (!body.success) throw invalidBody(body.error)
    const at = Date.now()
    const expires = Date.parse(body.data.expires)
    if (!(expires - at >= RELEASE_MIN_MS && expires - at <= RELEASE_MAX_MS)) {
      const message = 'expires must be at least 1 second and at most 90 days in the future'
      throw new CustomsError('REQUEST_INVALID', message)
    }
    const repo = { upstream, repository: body.data.repository }
    const by = c.get('admin').name
    const reason = body.data.reason
    const released = await deps.state.releaseQuarantine(repo, digest, { by, reason, expires, at })
    if (!released) throw await notReleasable(deps.state, repo, digest)
    const fields = { action: 'release', by, upstream, repository: repo.repository, digest, reason }
    deps.logger.info({ ...fields, expires: new Date(expires).toISOString() }, 'admin action')
    deps.events.emit({
      type: 'release',
      actor: by,
      action: 'release',
      upstream,
      repository: repo.repository,
      digest,
      reasons: [reason],
      detail: { expires: new Date(expires).toISOString() },
    })
    return c.json(effective(await current(deps.state, repo, digest), Date.now()))
  })

  app.post('/admin/v1/quarantine/:upstream/:digest/revoke', requireRole('approver'), async (c) => {
    const { upstream, digest } = recordParams(c.req.param('upstream'), c.req.param('digest'))
    const body = RevokeBody.safeParse(await jsonBody(c))
    if (!body.success) throw invalidBody(body.error)
    const repo = { upstream, repository: body.data.repository }
    const by = c.get('admin').name
    const at = Date.now()
    const revoked = await deps.state.revokeRelease(repo, digest, { by, at })
    // Refused with nothing changed, so neither the blob gate nor the events move either.
    if (!revoked) throw await notRevocable(deps.state, repo, digest, at)
    // The release opened the gate of its blobs: close it now, not at the digest's next pull.
    await detainUnreleased(deps.state, repo, digest)
    deps.logger.info(
      { action: 'revoke', by, upstream, repository: repo.repository, digest },
      'admin action'
    )
    deps.events.emit({ type: 'revoke', actor: by, action: 'revoke', upstream, repository: repo.repository, digest })
    return c.json(effective(await current(deps.state, repo, digest), Date.now()))
  })

  // Who the presented token is: the console signs a person in with it and shows what the role
  // allows (the routes still check the role on every request).
  app.get('/admin/v1/whoami', requireRole('viewer'), (c) => {
    const admin = c.get('admin')
    return c.json({ name: admin.name, role: admin.role })
  })

  // What Customs recorded of a manifest it inspected: the verdict, the signatures and attestations
  // found (who signed, which identity, which predicate) and the image facts policies saw.
  app.get('/admin/v1/manifests/:upstream/:digest', requireRole('viewer'), async (c) => {
    const { upstream, digest } = recordParams(c.req.param('upstream'), c.req.param('digest'))
    const repository = repositoryQuery(c.req.query('repository'))
    const record = await deps.state.getManifest({ upstream, repository }, digest)
    if (record === null) {
      const message = `no manifest ${upstream}/${repository}@${digest} was inspected`
      throw new CustomsError('MANIFEST_UNKNOWN', message)
    }
    return c.json({
      digest: record.digest,
      mediaType: record.mediaType,
      size: record.size,
      verdict: record.verdict,
      ...(record.facts !== undefined ? { facts: record.facts } : {}),
      ...(record.image !== undefined ? { image: record.image } : {}),
    })
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

  registerAdminOpsRoutes(app, { ...deps.ops, logger: deps.logger, events: deps.events })

  return app
}

function repositoryQuery(repository: string | undefined): string {
  if (repository === undefined || repository.length > 255 || !REPOSITORY.test(repository)) {
    const message = 'repository must be given as a query parameter and be a repository name'
    throw new CustomsError('NAME_INVALID', message)
  }
  return repository
}

/** Why the store refused a release: no record, or one the policies clear (nothing to release). */
async function notReleasable(state: StateStore, repo: RepoKey, digest: Digest): Promise<CustomsError> {
  const record = await state.getQuarantine(repo, digest)
  if (record === null) return noRecord(repo, digest)
  const message = `${repo.upstream}/${repo.repository}@${digest} is cleared by the policies in force: there is no detention to release`
  return new CustomsError('REQUEST_INVALID', message)
}

/**
 * Why the store refused a revoke: no record, or no release in force to revoke (never released,
 * revoked already, expired, or a state a release does not apply to).
 */
async function notRevocable(state: StateStore, repo: RepoKey, digest: Digest, at: number): Promise<CustomsError> {
  const record = await state.getQuarantine(repo, digest)
  if (record === null) return noRecord(repo, digest)
  const release = record.release
  const why =
    release !== undefined && release.expires <= at
      ? `its release expired at ${new Date(release.expires).toISOString()}`
      : `it is ${effectiveState(record, at)}`
  const message = `${repo.upstream}/${repo.repository}@${digest} holds no release to revoke: ${why}`
  return new CustomsError('REQUEST_INVALID', message, { detail: { state: effectiveState(record, at) } })
}

async function current(
  state: StateStore,
  repo: RepoKey,
  digest: Digest
): Promise<QuarantineRecord> {
  const record = await state.getQuarantine(repo, digest)
  if (record === null) throw noRecord(repo, digest)
  return record
}
