// The security team's web console under /console/: server-rendered pages over the admin API.
// It holds no state of its own beyond sign-in sessions (session.ts: in this process, or in Redis
// for Redis state so that every replica shares them) and changes nothing itself: every read and
// every release or revocation is an admin API call made with the signed-in person's token
// (api.ts), so the API's roles, validation, logs and events apply unchanged.
//
// Browser-facing guarantees: the token stays server-side (the cookie holds a random session id,
// HttpOnly, SameSite=Strict, Secure under TLS); every POST must come from this origin and carry
// the session's CSRF token; the Content-Security-Policy allows no script at all, and no style or
// form target from elsewhere; every value is escaped by the JSX renderer.

import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { CustomsError } from '../errors.js'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { secureHeaders } from 'hono/secure-headers'
import type { Child } from 'hono/jsx'
import { z } from 'zod'
import type { Logger } from '../observability/logger.js'
import { ADMIN_BODY_MAX_BYTES, boundedText } from '../http/routes/admin-common.js'
import {
  ConsoleApi,
  recordPath,
  withQuery,
  type AdminFetch,
  type CacheStatus,
  type DecisionPage,
  type ManifestFacts,
  type PolicyStatus,
  type QuarantinePage,
  type QuarantineRecord,
  type UpstreamStatus,
  type WhoAmI,
} from './api.js'
import { SessionStore, sameToken, type Session } from './session.js'
import { CONSOLE_CSS } from './styles.js'
import { DecisionsPage, VERDICTS, type DecisionFilters } from './views/decisions.js'
import { HealthPage } from './views/health.js'
import { Page, documentOf, type Section } from './views/layout.js'
import { PolicyPage, Problem, SignIn } from './views/misc.js'
import {
  AGES,
  ConfirmAction,
  EXPIRIES,
  QuarantineDetail,
  QuarantineList,
  STATES,
  type QuarantineFilters,
} from './views/quarantine.js'

export interface ConsoleDeps {
  /** The app's own admin routes, called in process. */
  readonly admin: AdminFetch
  /** The configured upstream names, for the filter. */
  readonly upstreams: readonly string[]
  /** Customs serves HTTPS: the cookie is then Secure (and __Host- prefixed). */
  readonly secure: boolean
  readonly logger: Logger
  /** Where sign-in sessions live (session.ts); in this process unless given. */
  readonly sessions?: SessionStore
}

type ConsoleEnv = {
  Variables: {
    session: Session
    api: ConsoleApi
    form: URLSearchParams
  }
}

/** How many quarantine records one list page reads from the API at most, and shows at most. */
export const QUARANTINE_SCAN_MAX = 2000
export const QUARANTINE_SHOW_MAX = 200
/** Decisions per page. */
export const DECISIONS_PAGE = 100
const API_PAGE = 500

/** The sections with pages, in the menu's order. */
const SECTIONS = ['quarantine', 'decisions', 'health', 'policy'] as const

const UPSTREAM = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/
const REPOSITORY = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/
const DIGEST = /^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$/

const FiltersQuery = z.strictObject({
  upstream: z.union([z.literal(''), z.string().regex(UPSTREAM, 'is not an upstream name')]).optional(),
  repository: z.string().max(255).regex(/^[a-z0-9._/-]*$/, 'may hold only a-z, 0-9, ., _, / and -').optional(),
  policy: z.string().max(253).regex(/^[A-Za-z0-9._-]*$/, 'may hold only letters, digits, ., _ and -').optional(),
  state: z.union([z.literal(''), z.enum(STATES)]).optional(),
  age: z.union([z.literal(''), z.enum(Object.keys(AGES) as [string, ...string[]])]).optional(),
  done: z.string().optional(),
})

const DecisionsQuery = z.strictObject({
  upstream: z.union([z.literal(''), z.string().regex(UPSTREAM, 'is not an upstream name')]).optional(),
  repository: z.union([z.literal(''), z.string().max(255).regex(REPOSITORY, 'is not a repository name')]).optional(),
  digest: z.union([z.literal(''), z.string().regex(DIGEST, 'is not a digest such as sha256:…')]).optional(),
  verdict: z.union([z.literal(''), z.enum(VERDICTS)]).optional(),
  before: z.string().regex(/^[1-9]\d{0,14}$/, 'is not a page cursor').optional(),
})

const ReleaseForm = z.object({
  repository: z.string().max(255).regex(REPOSITORY, 'must be a repository name'),
  reason: z.string().trim().min(1, 'a reason is required').max(1024, 'the reason is longer than 1024 characters'),
  expires: z.enum(Object.keys(EXPIRIES) as [string, ...string[]], 'choose how long the release lasts'),
  confirm: z.literal('yes').optional(),
})
const RevokeForm = z.object({
  repository: z.string().max(255).regex(REPOSITORY, 'must be a repository name'),
  confirm: z.literal('yes').optional(),
})

/** What a redirect after an action says; chosen from this list, never echoed from the URL. */
const DONE: Record<string, string> = {
  released: 'Released. Pulls of this digest are served until the release expires or is revoked.',
  revoked: 'The release is revoked. Pulls of this digest are refused again.',
}

export function consoleRoutes(deps: ConsoleDeps): Hono<ConsoleEnv> {
  const sessions = deps.sessions ?? new SessionStore()
  const cookieName = deps.secure ? '__Host-customs_console' : 'customs_console'
  const cookiePath = deps.secure ? '/' : '/console'
  const app = new Hono<ConsoleEnv>()

  app.use(
    '/console/*',
    secureHeaders({
      contentSecurityPolicy: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        objectSrc: ["'none'"],
      },
      xFrameOptions: 'DENY',
      referrerPolicy: 'same-origin',
      strictTransportSecurity: deps.secure ? 'max-age=15552000' : false,
    })
  )
  app.use('/console/*', async (c, next) => {
    await next()
    if (!c.req.path.startsWith('/console/static/')) c.res.headers.set('Cache-Control', 'no-store')
  })
  app.use('/console', async (c, next) => {
    await next()
    c.res.headers.set('Cache-Control', 'no-store')
  })

  app.get('/console/static/console.css', (c) => {
    c.header('Cache-Control', 'public, max-age=300')
    return c.body(CONSOLE_CSS, 200, { 'Content-Type': 'text/css; charset=utf-8' })
  })

  // Every POST: from this origin, with a bounded form body.
  app.post('/console/*', sameOrigin(), readForm())

  app.get('/console/sign-in', async (c) => {
    if ((await sessions.get(getCookie(c, cookieName))) !== undefined) return c.redirect('/console/quarantine', 303)
    return page(c, 'Sign in', 'none', undefined, <SignIn />)
  })

  app.post('/console/sign-in', async (c) => {
    const token = c.get('form').get('token')?.trim() ?? ''
    if (token === '' || token.length > 512 || !/^[\x21-\x7e]+$/.test(token)) {
      return page(c, 'Sign in', 'none', undefined, <SignIn error="Enter an admin token." />, 400)
    }
    const who = await new ConsoleApi(deps.admin, token).get<WhoAmI>('/admin/v1/whoami')
    if (!who.ok) {
      const message = who.status === 401 ? 'That token is not accepted.' : who.message
      return page(c, 'Sign in', 'none', undefined, <SignIn error={message} />, who.status === 401 ? 401 : 502)
    }
    // A fresh id at every sign-in; the session the browser held before, if any, ends here.
    const previous = getCookie(c, cookieName)
    if (previous !== undefined) await sessions.delete(previous)
    const session = await sessions.create({ token, name: who.data.name, role: who.data.role })
    setCookie(c, cookieName, session.id, {
      httpOnly: true,
      sameSite: 'Strict',
      secure: deps.secure,
      path: cookiePath,
    })
    deps.logger.info({ console: 'sign-in', by: session.name, role: session.role }, 'console sign-in')
    return c.redirect('/console/quarantine', 303)
  })

  // Everything below needs a session.
  app.use('/console/*', async (c, next) => {
    const session = await sessions.get(getCookie(c, cookieName))
    if (session === undefined) {
      deleteCookie(c, cookieName, { path: cookiePath, secure: deps.secure })
      return c.redirect('/console/sign-in', 303)
    }
    if (c.req.method === 'POST') {
      const presented = c.get('form').get('_csrf') ?? ''
      if (!sameToken(presented, session.csrf)) {
        const body = <Problem title="Refused" message="This form has expired or did not come from this console. Reload the page and try again." />
        return page(c, 'Refused', 'none', session, body, 403)
      }
    }
    c.set('session', session)
    c.set('api', new ConsoleApi(deps.admin, session.token))
    await next()
  })

  app.get('/console', (c) => c.redirect('/console/quarantine', 303))
  app.get('/console/', (c) => c.redirect('/console/quarantine', 303))

  app.post('/console/sign-out', async (c) => {
    await sessions.delete(c.get('session').id)
    deleteCookie(c, cookieName, { path: cookiePath, secure: deps.secure })
    return c.redirect('/console/sign-in', 303)
  })

  app.get('/console/quarantine', async (c) => {
    const session = c.get('session')
    const parsed = FiltersQuery.safeParse(c.req.query())
    const filters: QuarantineFilters = parsed.success ? withoutEmpty(parsed.data) : {}
    const error = parsed.success ? undefined : `Filters not applied: ${problems(parsed.error)}`
    const scan = await scanQuarantine(c.get('api'), filters.upstream)
    if (!scan.ok) return apiProblem(c, session, scan)
    const now = Date.now()
    const matched = scan.records.filter((r) => matches(r, filters, now))
    const byState: Record<string, number> = {}
    for (const r of matched) byState[r.state] = (byState[r.state] ?? 0) + 1
    const shown = matched.slice(0, QUARANTINE_SHOW_MAX)
    const body = (
      <QuarantineList
        records={shown}
        filters={filters}
        upstreams={deps.upstreams}
        counts={{ scanned: scan.records.length, matched: matched.length, byState }}
        truncated={scan.truncated}
        shown={shown.length}
        now={now}
        {...(error !== undefined ? { error } : {})}
      />
    )
    return page(c, 'Quarantine', 'quarantine', session, body, parsed.success ? 200 : 400)
  })

  app.get('/console/quarantine/:upstream/:digest', async (c) => {
    const session = c.get('session')
    const key = recordKey(c.req.param('upstream'), c.req.param('digest'), c.req.query('repository'))
    if (typeof key === 'string') return problem(c, session, 'Not found', key, 400)
    const api = c.get('api')
    const record = await api.get<QuarantineRecord>(recordPath('quarantine', key.upstream, key.digest), { repository: key.repository })
    if (!record.ok) return apiProblem(c, session, record)
    const manifest = await api.get<ManifestFacts>(recordPath('manifests', key.upstream, key.digest), { repository: key.repository })
    const done = c.req.query('done')
    const flash = done !== undefined && DONE[done] !== undefined ? { kind: 'ok' as const, text: DONE[done] as string } : undefined
    const body = (
      <QuarantineDetail
        record={record.data}
        session={session}
        now={Date.now()}
        {...(manifest.ok ? { manifest: manifest.data } : { manifestError: `No inspection record: ${manifest.message}` })}
        {...(flash !== undefined ? { flash } : {})}
      />
    )
    return page(c, `${record.data.repository}`, 'quarantine', session, body)
  })

  // Release and revoke share one flow: check the key and the form against the record, ask for
  // confirmation once, then call the admin API and come back to the detail page.
  const quarantineAction = <F extends { confirm?: 'yes' | undefined }>(
    action: 'release' | 'revoke',
    schema: z.ZodType<F>,
    prepare: (form: F, record: QuarantineRecord, session: Session) => { confirm: Child; body: Record<string, unknown> }
  ) => {
    const refused = action === 'release' ? 'Not released' : 'Not revoked'
    app.post(`/console/quarantine/:upstream/:digest/${action}`, async (c) => {
      const session = c.get('session')
      const key = recordKey(c.req.param('upstream'), c.req.param('digest'), c.get('form').get('repository') ?? undefined)
      if (typeof key === 'string') return problem(c, session, refused, key, 400)
      const form = schema.safeParse(Object.fromEntries(c.get('form')))
      const api = c.get('api')
      const path = recordPath('quarantine', key.upstream, key.digest)
      const record = await api.get<QuarantineRecord>(path, { repository: key.repository })
      if (!record.ok) return apiProblem(c, session, record)
      if (!form.success) {
        return detailWith(c, session, record.data, { kind: 'error', text: `${refused}: ${problems(form.error)}` }, 400)
      }
      const { confirm, body } = prepare(form.data, record.data, session)
      if (form.data.confirm !== 'yes') {
        return page(c, action === 'release' ? 'Release?' : 'Revoke?', 'quarantine', session, confirm)
      }
      const result = await api.post<QuarantineRecord>(`${path}/${action}`, { repository: key.repository, ...body })
      if (!result.ok) {
        return detailWith(c, session, record.data, { kind: 'error', text: `${refused}: ${result.message}` }, result.status)
      }
      return c.redirect(`${detailHref(key)}&done=${action === 'release' ? 'released' : 'revoked'}`, 303)
    })
  }

  quarantineAction('release', ReleaseForm, (form, record, session) => {
    const duration = (EXPIRIES[form.expires] as { ms: number }).ms
    return {
      confirm: (
        <ConfirmAction
          record={record}
          session={session}
          action="release"
          reason={form.reason}
          expires={form.expires}
          until={Date.now() + duration}
        />
      ),
      body: { reason: form.reason, expires: new Date(Date.now() + duration).toISOString() },
    }
  })

  quarantineAction('revoke', RevokeForm, (_form, record, session) => ({
    confirm: <ConfirmAction record={record} session={session} action="revoke" />,
    body: {},
  }))

  app.get('/console/policy', async (c) => {
    const session = c.get('session')
    const policy = await c.get('api').get<PolicyStatus>('/admin/v1/policy')
    if (!policy.ok) return apiProblem(c, session, policy)
    return page(c, 'Policy', 'policy', session, <PolicyPage policy={policy.data} />)
  })

  app.get('/console/decisions', async (c) => {
    const session = c.get('session')
    const parsed = DecisionsQuery.safeParse(c.req.query())
    const filters: DecisionFilters = parsed.success ? withoutEmpty(parsed.data) : {}
    const upstreams = deps.upstreams
    if (!parsed.success) {
      const body = <DecisionsPage decisions={[]} filters={{}} upstreams={upstreams} error={`Not searched: ${problems(parsed.error)}`} />
      return page(c, 'Decisions', 'decisions', session, body, 400)
    }
    const before = parsed.data.before
    const result = await c.get('api').get<DecisionPage>('/admin/v1/decisions', { ...filters, limit: String(DECISIONS_PAGE), before })
    if (!result.ok) return apiProblem(c, session, result)
    const next = result.data.next
    const older = next !== undefined ? withQuery('/console/decisions', { ...filters, before: next }) : undefined
    const body = (
      <DecisionsPage decisions={result.data.decisions} filters={filters} upstreams={upstreams} {...(older !== undefined ? { older } : {})} />
    )
    return page(c, 'Decisions', 'decisions', session, body)
  })

  app.get('/console/health', async (c) => {
    const session = c.get('session')
    const api = c.get('api')
    const [cache, upstreams] = await Promise.all([
      api.get<CacheStatus>('/admin/v1/cache'),
      api.get<{ upstreams: UpstreamStatus[] }>('/admin/v1/upstreams'),
    ])
    const body = (
      <HealthPage
        {...(cache.ok ? { cache: cache.data } : { cacheError: cache.message })}
        {...(upstreams.ok ? { upstreams: upstreams.data.upstreams } : { upstreamsError: upstreams.message })}
      />
    )
    return page(c, 'Health', 'health', session, body)
  })

  app.all('/console/*', (c) => problem(c, c.get('session'), 'Not found', 'There is no such page in the console.', 404))

  app.onError((err, c) => {
    deps.logger.error({ err: err.message, path: c.req.path.slice(0, 512) }, 'console page failed')
    const session = c.get('session') as Session | undefined
    if (err instanceof CustomsError && err.code === 'STATE_UNAVAILABLE') {
      // Redis away: sessions and records cannot be read. Said as such, and as passing, so that a
      // person in the middle of an incident does not take it for a bug in the page.
      c.header('Retry-After', '5')
      const message = "Customs cannot reach its state store (Redis), where sign-in sessions and quarantine records are kept. Try again in a moment; the error is in Customs' log."
      return page(c, 'Unavailable', 'none', session, <Problem title="The state store is unavailable" message={message} />, 503)
    }
    const body = <Problem title="Something went wrong" message="The page could not be rendered; the error is in Customs' log." />
    return page(c, 'Error', 'none', session, body, 500)
  })

  /** The detail page again, with a message, after a refused or failed action. */
  async function detailWith(
    c: Context<ConsoleEnv>,
    session: Session,
    record: QuarantineRecord,
    flash: { kind: 'ok' | 'error'; text: string },
    status: number
  ): Promise<Response> {
    const manifest = await c
      .get('api')
      .get<ManifestFacts>(recordPath('manifests', record.upstream, record.digest), { repository: record.repository })
    const body = (
      <QuarantineDetail
        record={record}
        session={session}
        now={Date.now()}
        flash={flash}
        {...(manifest.ok ? { manifest: manifest.data } : {})}
      />
    )
    return page(c, record.repository, 'quarantine', session, body, status)
  }

  return app
}

type RecordKey = { upstream: string; digest: string; repository: string }

/** The record's key from the URL and form, or why it is not one. */
function recordKey(upstream: string, digest: string, repository: string | undefined): RecordKey | string {
  if (!UPSTREAM.test(upstream)) return 'That is not an upstream name.'
  if (!DIGEST.test(digest)) return 'That is not a digest.'
  if (repository === undefined || repository.length > 255 || !REPOSITORY.test(repository)) {
    return 'That is not a repository name.'
  }
  return { upstream, digest, repository }
}

function detailHref(key: RecordKey): string {
  return `/console/quarantine/${encodeURIComponent(key.upstream)}/${encodeURIComponent(key.digest)}?repository=${encodeURIComponent(key.repository)}`
}

function page(
  c: Context<ConsoleEnv>,
  title: string,
  section: Section,
  session: Session | undefined,
  body: Child,
  status = 200
): Response {
  const html = (
    <Page title={title} section={section} sections={SECTIONS} {...(session !== undefined ? { session } : {})}>
      {body}
    </Page>
  )
  return c.html(documentOf(html), status as 200)
}

function problem(c: Context<ConsoleEnv>, session: Session | undefined, title: string, message: string, status: number): Response {
  return page(c, title, 'none', session, <Problem title={title} message={message} back="/console/quarantine" />, status)
}

/** An admin API refusal shown as a page, with the API's status (403 for a role it lacks). */
function apiProblem(
  c: Context<ConsoleEnv>,
  session: Session,
  result: { status: number; code: string; message: string }
): Response {
  const title = result.status === 404 ? 'Not found' : result.status === 403 ? 'Not allowed' : 'The admin API refused'
  return problem(c, session, title, result.message, result.status >= 400 && result.status < 600 ? result.status : 502)
}

/** Reads quarantine pages from the API until the end or QUARANTINE_SCAN_MAX records. */
async function scanQuarantine(
  api: ConsoleApi,
  upstream: string | undefined
): Promise<{ ok: true; records: QuarantineRecord[]; truncated: boolean } | { ok: false; status: number; code: string; message: string }> {
  const records: QuarantineRecord[] = []
  let after: string | undefined
  for (;;) {
    const page = await api.get<QuarantinePage>('/admin/v1/quarantine', { limit: String(API_PAGE), upstream, after })
    if (!page.ok) return page
    records.push(...page.data.records)
    after = page.data.next
    if (after === undefined) return { ok: true, records, truncated: false }
    if (records.length >= QUARANTINE_SCAN_MAX) return { ok: true, records, truncated: true }
  }
}

function matches(r: QuarantineRecord, f: QuarantineFilters, now: number): boolean {
  if (f.repository !== undefined && !r.repository.includes(f.repository)) return false
  if (f.state !== undefined && r.state !== f.state) return false
  if (f.policy !== undefined && !r.reasons.some((reason) => reason.startsWith(`policy '${f.policy}' `))) return false
  const age = f.age !== undefined ? AGES[f.age] : undefined
  if (age !== undefined && now - r.lastSeen > age.ms) return false
  return true
}

/** The filters that were given, without the empty ones and without paging or messages. */
function withoutEmpty(query: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '' && k !== 'done' && k !== 'before') out[k] = v
  return out
}

function problems(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length > 0 ? `${i.path.join('.')} ${i.message}` : i.message)).join('; ')
}

/** Refuses a POST whose Origin is missing or another site's: forms are posted only from here. */
function sameOrigin(): MiddlewareHandler<ConsoleEnv> {
  return async function consoleOrigin(c, next) {
    const origin = c.req.header('origin')
    const host = c.req.header('host')
    let ok = false
    if (origin !== undefined && host !== undefined) {
      try {
        ok = new URL(origin).host === host
      } catch {
        ok = false
      }
    }
    if (!ok) {
      return c.html(documentOf(<Page title="Refused" section="none"><Problem title="Refused" message="This request did not come from the console's own pages." /></Page>), 403)
    }
    await next()
  }
}

/** Reads an url-encoded form of at most ADMIN_BODY_MAX_BYTES into c.var.form. */
function readForm(): MiddlewareHandler<ConsoleEnv> {
  return async function consoleForm(c, next) {
    const type = c.req.header('content-type')?.split(';')[0]?.trim().toLowerCase()
    let text: string | undefined
    if (type === 'application/x-www-form-urlencoded') {
      text = await boundedText(c.req.raw, ADMIN_BODY_MAX_BYTES).catch(() => undefined)
    }
    if (text === undefined) {
      const body = <Problem title="Refused" message="The form could not be read (too large, or not a form)." />
      return c.html(documentOf(<Page title="Refused" section="none">{body}</Page>), 400)
    }
    c.set('form', new URLSearchParams(text))
    await next()
  }
}
