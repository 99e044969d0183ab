// The admin routes of re-evaluation: start one and watch its progress, the dry run of a policy
// set (`customs policy diff`), and the purge of a detained manifest. Mounted by adminRoutes,
// behind its one admin token check; each route names the role it needs.

import { Hono } from 'hono'
import { z } from 'zod'
import { decisionCandidates } from '../../audit/decisions.js'
import type { EventBus } from '../../audit/events.js'
import type { AuditStore } from '../../audit/store.js'
import type { BlobStore } from '../../cache/blob-store.js'
import type { ManifestMemory } from '../../cache/manifest-memory.js'
import { CustomsError } from '../../errors.js'
import { purgeDetained } from '../../inspection/purge.js'
import type { Reevaluator } from '../../inspection/reevaluate.js'
import type { Logger } from '../../observability/logger.js'
import { diffPolicies } from '../../policy/diff.js'
import type { PolicyEngine } from '../../policy/engine.js'
import { MAX_POLICY_FILE_BYTES, PolicyError, formatPolicyIssue, parsePolicyDocuments, type PolicyLoadOptions } from '../../policy/load.js'
import type { StateStore } from '../../state/store.js'
import type { Env } from '../context.js'
import { requireRole } from '../middleware/admin-auth.js'
import { effective, invalidBody, jsonBody, noRecord, recordParams, repository } from './admin-common.js'

export interface ReevaluationRouteDeps {
  readonly state: StateStore
  readonly store: BlobStore
  readonly memory: ManifestMemory
  readonly policies: PolicyEngine
  readonly policyLoadOptions: PolicyLoadOptions
  readonly reevaluator: Reevaluator
  readonly logger: Logger
  readonly events: EventBus
  /** The audit log's store: the decisions of the last `days` are judged beside the inventory. */
  readonly audit: AuditStore
}

/** The largest policy diff request: a policy folder's worth of text, in JSON. */
export const DIFF_BODY_MAX_BYTES = 4 * 1024 * 1024
/** The days of decisions a diff looks at unless told otherwise. */
export const DIFF_DAYS_DEFAULT = 7
/** The most policy files one diff request carries. */
export const DIFF_FILES_MAX = 200

const PurgeBody = z.strictObject({ repository, reason: z.string().trim().min(1).max(1024) })
const PATH = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*\.ya?ml$/
const DiffBody = z.strictObject({
  documents: z
    .array(
      z.strictObject({
        path: z.string().max(255).regex(PATH, 'must be a relative .yaml or .yml path'),
        text: z.string().max(MAX_POLICY_FILE_BYTES),
      })
    )
    .max(DIFF_FILES_MAX),
  /** How many days of decisions (pulls by tag included) are judged beside the cache inventory. */
  days: z.number().int().min(0).max(90).default(DIFF_DAYS_DEFAULT),
})

export function reevaluationRoutes(deps: ReevaluationRouteDeps): Hono<Env> {
  const app = new Hono<Env>()

  app.post('/admin/v1/reevaluations', requireRole('admin'), async (c) => {
    const by = c.get('admin').name
    const started = deps.reevaluator.start(by)
    deps.logger.info({ action: 'reevaluate', by, started }, 'admin action')
    deps.events.emit({ type: 'admin', actor: by, action: 'reevaluate', detail: { started } })
    // Not started: one runs here already; another walk is queued after it.
    return c.json({ started, queued: !started, ...deps.reevaluator.current() }, 202)
  })

  app.get('/admin/v1/reevaluations/current', requireRole('viewer'), (c) => c.json(deps.reevaluator.current()))

  app.post('/admin/v1/policy/diff', requireRole('admin'), async (c) => {
    const body = DiffBody.safeParse(await jsonBody(c, DIFF_BODY_MAX_BYTES))
    if (!body.success) throw invalidBody(body.error)
    let candidate
    try {
      candidate = parsePolicyDocuments(body.data.documents, deps.policyLoadOptions)
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err
      const issues = err.issues.slice(0, 100).map((i) => formatPolicyIssue(i))
      throw new CustomsError('REQUEST_INVALID', `invalid policies: ${issues.join('; ')}`, { detail: { issues } })
    }
    const since = Date.now() - body.data.days * 86_400_000
    const decisions = body.data.days > 0 ? decisionCandidates(deps.audit, since) : undefined
    const diff = await diffPolicies(deps.state, deps.policies.current(), candidate, decisions)
    return c.json({ ...diff, decisionsSince: new Date(since).toISOString() })
  })

  app.post('/admin/v1/quarantine/:upstream/:digest/purge', requireRole('admin'), async (c) => {
    const { upstream, digest } = recordParams(c.req.param('upstream'), c.req.param('digest'))
    const body = PurgeBody.safeParse(await jsonBody(c))
    if (!body.success) throw invalidBody(body.error)
    const repo = { upstream, repository: body.data.repository }
    const by = c.get('admin').name
    const reason = body.data.reason
    const { found, removed } = await purgeDetained(deps, repo, digest, { by, reason, at: Date.now() })
    if (!found) throw noRecord(repo, digest)
    deps.logger.info({ action: 'purge', by, upstream, repository: repo.repository, digest, reason, removed: removed.length }, 'admin action')
    deps.events.emit({ type: 'purge', actor: by, action: 'purge', upstream, repository: repo.repository, digest, reasons: [reason], detail: { removed } })
    const record = await deps.state.getQuarantine(repo, digest)
    if (record === null) throw noRecord(repo, digest)
    return c.json({ ...effective(record, Date.now()), removed })
  })

  return app
}
