// The console's HTTP-level guarantees, without a browser: security headers on every page, the
// session cookie's flags, sign-in through the admin API, CSRF and Origin checks on every POST, a
// viewer's release refused by the API itself, the two-step release, escaping of hostile text
// from an upstream (a label, an annotation) and from a person (a release reason), and a record
// the policies cleared again, listed and shown as such.

import assert from 'node:assert/strict'
import { mkdir, rm, stat, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startCustoms, upstreamConfig, type CustomsHandle } from '../helpers/customs.js'
import { ociImage } from '../helpers/fake-upstream.js'
import { makeTempDir } from '../helpers/processes.js'
import { parseConfig } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { bootstrapConsoleToken } from '../../src/console/bootstrap.js'
import { createLogger } from '../../src/observability/logger.js'
import { loadPolicies } from '../../src/policy/load.js'
import { sha256hex, startWithPolicy, type PolicyCustoms } from '../helpers/admin.js'

const VIEWER = 'viewer-token-0123456789'
const APPROVER = 'approver-token-0123456789'
const HOSTILE = '<script>alert("label")</script>'
const HOSTILE_NOTE = '<img src=x onerror=alert(1)>'
const POLICY = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: reviewed-only }
spec:
  mode: enforce
  match: [{ repository: "acme/**" }]
  rules:
    labels: { "org.example.review": "approved" }
`
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

let env: PolicyCustoms
let customs: CustomsHandle
let work: string
const image = ociImage([Buffer.from('a console layer')], {
  architecture: 'amd64',
  os: 'linux',
  config: { Labels: { 'org.example.review': HOSTILE, 'org.example.note': HOSTILE_NOTE } },
})
const detail = (): string => `/console/quarantine/docker.io/${image.digest}?repository=acme/app`
const base = `/console/quarantine/docker.io/${image.digest}`

/** A browser-like client: keeps the session cookie, sends this origin on POSTs. */
class Browser {
  cookie: string | undefined
  constructor(readonly origin: string) {}

  async get(path: string): Promise<Response> {
    return fetch(`${customs.url}${path}`, { redirect: 'manual', headers: this.cookie ? { cookie: this.cookie } : {} })
  }

  async post(path: string, form: Record<string, string>, options: { origin?: string | null } = {}): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' }
    if (this.cookie !== undefined) headers.cookie = this.cookie
    const origin = options.origin === undefined ? this.origin : options.origin
    if (origin !== null) headers.origin = origin
    return fetch(`${customs.url}${path}`, { method: 'POST', redirect: 'manual', headers, body: new URLSearchParams(form).toString() })
  }

  async signIn(token: string): Promise<Response> {
    const res = await this.post('/console/sign-in', { token })
    const set = res.headers.get('set-cookie')
    if (set !== null) this.cookie = set.split(';')[0]
    return res
  }

  /** The CSRF token of the current session, read from a page's form. */
  async csrf(): Promise<string> {
    const html = await (await this.get(detail())).text()
    const match = /name="_csrf" value="([^"]+)"/.exec(html)
    assert.ok(match !== null, 'a page with a CSRF field')
    return match[1] as string
  }
}

async function recordState(): Promise<{ state: string; history?: Array<{ action: string; by: string; reason?: string }> }> {
  const res = await fetch(`${customs.url}/admin/v1/quarantine/docker.io/${image.digest}?repository=acme/app`, {
    headers: { authorization: `Bearer ${VIEWER}` },
  })
  assert.equal(res.status, 200)
  return (await res.json()) as { state: string }
}

before(async () => {
  work = await makeTempDir('console-')
  env = await startWithPolicy({
    images: [['acme/app', image]],
    policy: POLICY,
    tokens: [
      { name: 'vera-viewer', secret: VIEWER, role: 'viewer' },
      { name: 'abe-approver', secret: APPROVER, role: 'approver' },
    ],
    config: 'console: { enabled: true }',
  })
  customs = env.customs
  const res = await fetch(`${customs.url}/v2/acme/app/manifests/v1`, { headers: { Accept: image.mediaType } })
  assert.equal(res.status, 403)
  await res.body?.cancel()
})

after(async () => {
  await env.stop()
  await rm(work, { recursive: true, force: true })
})

describe('console headers', () => {
  for (const path of ['/console/sign-in', '/console/quarantine', '/console/static/console.css']) {
    it(`sends the CSP and hardening headers on ${path}`, async () => {
      const res = await new Browser(customs.url).get(path)
      assert.equal(res.headers.get('content-security-policy'), CSP)
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
      assert.equal(res.headers.get('x-frame-options'), 'DENY')
      assert.equal(res.headers.get('referrer-policy'), 'same-origin')
      await res.body?.cancel()
    })
  }

  it('sends no page without a session: a redirect to sign in, and no store', async () => {
    const res = await new Browser(customs.url).get('/console/quarantine')
    assert.equal(res.status, 303)
    assert.equal(res.headers.get('location'), '/console/sign-in')
    assert.equal(res.headers.get('cache-control'), 'no-store')
  })

  it('sends /console to sign-in first, then to the quarantine; an unknown page is a 404 page', async () => {
    const browser = new Browser(customs.url)
    const first = await browser.get('/console')
    assert.equal(first.status, 303)
    assert.equal(first.headers.get('location'), '/console/sign-in')
    await browser.signIn(VIEWER)
    const again = await browser.get('/console')
    assert.equal(again.headers.get('location'), '/console/quarantine')
    const missing = await browser.get('/console/nothing-here')
    assert.equal(missing.status, 404)
    assert.match(missing.headers.get('content-type') ?? '', /^text\/html/)
    assert.equal(missing.headers.get('content-security-policy'), CSP)
    await missing.body?.cancel()
  })

  it('refuses a detail page for a name or digest that is not one, before asking the API', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const bad = await browser.get(`/console/quarantine/docker.io/sha256:abc?repository=acme/app`)
    assert.equal(bad.status, 400)
    assert.match(await bad.text(), /not a digest/)
    const noRepo = await browser.get(`/console/quarantine/docker.io/${image.digest}?repository=${encodeURIComponent('<x>')}`)
    assert.equal(noRepo.status, 400)
    assert.ok(!(await noRepo.text()).includes('<x>'))
  })

  it('serves no inline script or style on its pages', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(APPROVER)
    const html = await (await browser.get(detail())).text()
    assert.doesNotMatch(html, /<script/i)
    assert.doesNotMatch(html, /\sstyle=/i)
    assert.doesNotMatch(html, /<[^>]*\son[a-z]+=/i)
  })
})

describe('sign-in', () => {
  it('sets an HttpOnly, SameSite=Strict cookie scoped to /console that is not the token', async () => {
    const browser = new Browser(customs.url)
    const res = await browser.signIn(VIEWER)
    assert.equal(res.status, 303)
    assert.equal(res.headers.get('location'), '/console/quarantine')
    const cookie = res.headers.get('set-cookie') ?? ''
    assert.match(cookie, /^customs_console=[A-Za-z0-9_-]{43};/)
    assert.match(cookie, /; HttpOnly/)
    assert.match(cookie, /; SameSite=Strict/)
    assert.match(cookie, /; Path=\/console/)
    assert.doesNotMatch(cookie, /; Secure/)
    assert.ok(!cookie.includes(VIEWER))
    const page = await browser.get('/console/quarantine')
    assert.equal(page.status, 200)
    assert.match(await page.text(), /vera-viewer \(viewer\)/)
  })

  it('refuses a token the admin API does not accept, and sets no cookie', async () => {
    const res = await new Browser(customs.url).signIn('not-a-token')
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('set-cookie'), null)
    assert.match(await res.text(), /not accepted/)
  })

  it('refuses a sign-in posted from another origin or without one', async () => {
    for (const origin of ['http://evil.example', null]) {
      const res = await new Browser(customs.url).post('/console/sign-in', { token: VIEWER }, { origin })
      assert.equal(res.status, 403)
      assert.equal(res.headers.get('set-cookie'), null)
      await res.body?.cancel()
    }
  })

  it('ends the session on sign-out', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const csrf = await browser.csrf()
    const out = await browser.post('/console/sign-out', { _csrf: csrf })
    assert.equal(out.status, 303)
    const res = await browser.get('/console/quarantine')
    assert.equal(res.status, 303)
    assert.equal(res.headers.get('location'), '/console/sign-in')
  })
})

describe('a viewer', () => {
  it('sees the detained image and its reasons, and no release button', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const res = await browser.get(detail())
    assert.equal(res.status, 200)
    const html = await res.text()
    assert.match(html, /reviewed-only/)
    assert.match(html, /class="badge detained"/)
    assert.doesNotMatch(html, /\/release"/)
  })

  it('is refused by the admin API when posting a release anyway, and nothing changes', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const csrf = await browser.csrf()
    const res = await browser.post(`${base}/release`, {
      _csrf: csrf,
      repository: 'acme/app',
      reason: 'viewer tries',
      expires: '1d',
      confirm: 'yes',
    })
    assert.equal(res.status, 403)
    assert.match(await res.text(), /needs the approver role/)
    assert.equal((await recordState()).state, 'detained')
  })
})

describe('an approver', () => {
  it('is refused without the CSRF token, with a wrong one, and from another origin', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(APPROVER)
    const csrf = await browser.csrf()
    const form = { repository: 'acme/app', reason: 'r', expires: '1d', confirm: 'yes' }
    const cases: Array<[Record<string, string>, string | null | undefined]> = [
      [form, undefined],
      [{ ...form, _csrf: 'A'.repeat(43) }, undefined],
      [{ ...form, _csrf: csrf }, 'http://evil.example'],
      [{ ...form, _csrf: csrf }, null],
    ]
    for (const [body, origin] of cases) {
      const res = await browser.post(`${base}/release`, body, { origin })
      assert.equal(res.status, 403)
      await res.body?.cancel()
    }
    assert.equal((await recordState()).state, 'detained')
  })

  it('is told what is missing: a reason, and an expiry from the list', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(APPROVER)
    const csrf = await browser.csrf()
    const missing = await browser.post(`${base}/release`, { _csrf: csrf, repository: 'acme/app', reason: '  ', expires: '1d' })
    assert.equal(missing.status, 400)
    assert.match(await missing.text(), /a reason is required/)
    const forever = await browser.post(`${base}/release`, { _csrf: csrf, repository: 'acme/app', reason: 'x', expires: 'forever' })
    assert.equal(forever.status, 400)
    assert.match(await forever.text(), /choose how long the release lasts/)
    assert.equal((await recordState()).state, 'detained')
  })

  it('releases only after confirming, with the reason recorded under their name', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(APPROVER)
    const csrf = await browser.csrf()
    const form = { _csrf: csrf, repository: 'acme/app', reason: `reviewed by hand ${HOSTILE_NOTE}`, expires: '7d' }
    const confirm = await browser.post(`${base}/release`, form)
    assert.equal(confirm.status, 200)
    const confirmHtml = await confirm.text()
    assert.match(confirmHtml, /Release this image\?/)
    assert.ok(!confirmHtml.includes(HOSTILE_NOTE))
    assert.equal((await recordState()).state, 'detained')

    const done = await browser.post(`${base}/release`, { ...form, confirm: 'yes' })
    assert.equal(done.status, 303)
    assert.equal(done.headers.get('location'), `${base.replace(':', '%3A')}?repository=acme%2Fapp&done=released`)
    const record = await recordState()
    assert.equal(record.state, 'released')
    assert.equal(record.history?.[0]?.by, 'abe-approver')
    assert.equal(record.history?.[0]?.reason, `reviewed by hand ${HOSTILE_NOTE}`)

    const revoke = await browser.post(`${base}/revoke`, { _csrf: csrf, repository: 'acme/app', confirm: 'yes' })
    assert.equal(revoke.status, 303)
    assert.equal((await recordState()).state, 'detained')
  })
})

describe('hostile text', () => {
  it('renders labels and reasons from upstream, and a reason a person typed, as text', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    for (const path of [detail(), '/console/quarantine']) {
      const html = await (await browser.get(path)).text()
      assert.ok(!html.includes('<script>alert'), `no live script on ${path}`)
      assert.ok(!html.includes('<img src=x'), `no live img on ${path}`)
      assert.match(html, /&lt;script&gt;alert\(/)
    }
    const html = await (await browser.get(detail())).text()
    assert.match(html, /&lt;script&gt;alert\(&quot;label&quot;\)&lt;\/script&gt;/)
    assert.match(html, /&lt;img src=x onerror=alert\(1\)&gt;/)
  })

  it('refuses filters that are not names, and says so', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const res = await browser.get(`/console/quarantine?repository=${encodeURIComponent('<b>x</b>')}&state=gone`)
    assert.equal(res.status, 400)
    const html = await res.text()
    assert.match(html, /Filters not applied/)
    assert.ok(!html.includes('<b>x</b>'))
  })

  it('filters by policy and state, and counts', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const hit = await (await browser.get('/console/quarantine?policy=reviewed-only&state=detained')).text()
    assert.match(hit, /<b>1<\/b> matching/)
    const miss = await (await browser.get('/console/quarantine?policy=other-policy')).text()
    assert.match(miss, /<b>0<\/b> matching/)
  })
})

describe('decisions', () => {
  it('lists the refused pull, found by repository and by digest, with its reason as text', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    for (const query of ['repository=acme/app', `digest=${encodeURIComponent(image.digest)}`, 'verdict=detained']) {
      const res = await browser.get(`/console/decisions?${query}`)
      assert.equal(res.status, 200)
      const html = await res.text()
      assert.match(html, /<span class="badge detained">detained<\/span>/, query)
      assert.match(html, /docker\.io\/acme\/app/)
      assert.ok(!html.includes('<script>alert'), 'no live script')
      assert.match(html, /&lt;script&gt;alert\(/)
    }
    const none = await (await browser.get('/console/decisions?repository=acme/other')).text()
    assert.match(none, /No decision matches/)
  })

  it('refuses a search that is not a name, digest or verdict, and says so', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const res = await browser.get(`/console/decisions?digest=sha256:abc&verdict=${encodeURIComponent('<i>x</i>')}`)
    assert.equal(res.status, 400)
    const html = await res.text()
    assert.match(html, /Not searched: digest is not a digest/)
    assert.ok(!html.includes('<i>x</i>'))
  })
})

describe('health', () => {
  it('shows each upstream with its circuit state and the cache figures, from the admin API', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const res = await browser.get('/console/health')
    assert.equal(res.status, 200)
    const html = await res.text()
    assert.match(html, /<td>docker\.io \(default\)<div class="mono muted">http:\/\/127\.0\.0\.1:\d+\/<\/div><\/td>/)
    assert.match(html, /<span class="badge closed">closed<\/span>/)
    assert.match(html, /hit ratio/)
    // The image config was fetched to inspect it: one blob, its size against the 50 GiB default.
    assert.match(html, /<b>\d+ B \/ 50\.0 GiB<\/b> in 1 blob\(s\)/)
  })
})

describe('when the policies clear the image again', () => {
  let revision: string
  before(async () => {
    // No policy at all clears every image; put in force without a reload (no re-evaluation), so
    // that the pull's inspection resolves the record.
    const empty = join(work, 'no-policies')
    await mkdir(empty)
    const set = await loadPolicies(empty, customs.services.policyLoadOptions)
    customs.services.policies.replace(set)
    const res = await fetch(`${customs.url}/v2/acme/app/manifests/v1`, { headers: { Accept: image.mediaType } })
    assert.equal(res.status, 200)
    await res.body?.cancel()
    revision = set.revision
  })

  it('lists it under the cleared state, and counts it there', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(VIEWER)
    const html = await (await browser.get('/console/quarantine?state=cleared')).text()
    assert.match(html, /<b>1<\/b> matching/)
    assert.match(html, /<b>1<\/b> cleared/)
    assert.match(html, /<span class="badge cleared">cleared<\/span>/)
    const detained = await (await browser.get('/console/quarantine?state=detained')).text()
    assert.match(detained, /<b>0<\/b> matching/)
  })

  it('shows it served, cleared by customs at the revision, and offers an approver no release', async () => {
    const browser = new Browser(customs.url)
    await browser.signIn(APPROVER)
    const html = await (await browser.get(detail())).text()
    assert.match(html, /class="badge cleared"/)
    assert.match(html, /The policies in force clear this image: it is served\./)
    assert.match(html, new RegExp(`<td>cleared</td><td>customs</td><td>at revision \\S+:${revision}</td>`))
    assert.doesNotMatch(html, /\/release"/)
    assert.equal((await recordState()).state, 'cleared')
  })
})

describe('over TLS', () => {
  let secure: CustomsHandle
  before(async () => {
    // The TLS files are read only by main.ts; the console sees that Customs serves HTTPS.
    secure = await startCustoms({
      config: `${upstreamConfig('docker.io', env.upstream.url)}
console: { enabled: true }
tls: { cert: server.crt, key: server.key }
admin:
  tokens:
    - { name: vera-viewer, sha256: "${sha256hex(VIEWER)}", role: viewer }
`,
    })
  })
  after(async () => {
    await secure.stop()
  })

  it('marks the session cookie Secure with the __Host- prefix', async () => {
    const res = await fetch(`${secure.url}/console/sign-in`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: secure.url },
      body: `token=${VIEWER}`,
    })
    assert.equal(res.status, 303)
    const cookie = res.headers.get('set-cookie') ?? ''
    assert.match(cookie, /^__Host-customs_console=/)
    assert.match(cookie, /; Secure/)
    assert.match(cookie, /; Path=\/;/)
  })
})

describe('without the console', () => {
  it('answers 404 under /console/', async () => {
    const plain = await startCustoms({ config: upstreamConfig('docker.io', env.upstream.url) })
    try {
      const res = await fetch(`${plain.url}/console/sign-in`)
      assert.equal(res.status, 404)
      await res.body?.cancel()
    } finally {
      await plain.stop()
    }
  })
})

describe('the quick start token', () => {
  const config = (storage: string, extra = ''): Config =>
    ({ ...(parseConfig(`console: { enabled: true }\n${extra}`, { env: {} }) as Config), storage: { ...(parseConfig('', { env: {} }) as Config).storage, path: storage } })
  const logger = createLogger({ level: 'silent' })

  it('is made once, mode 0600, and only its hash joins the admin tokens', async () => {
    const storage = join(work, 'quick')
    const first = await bootstrapConsoleToken(config(storage), logger)
    assert.ok(first !== undefined && first.created !== undefined)
    assert.equal((await stat(first.file)).mode & 0o777, 0o600)
    assert.equal((await readFile(first.file, 'utf8')).trim(), first.created)
    assert.deepEqual(first.config.admin.tokens, [{ name: 'console-bootstrap', sha256: sha256hex(first.created), role: 'admin' }])
    const again = await bootstrapConsoleToken(config(storage), logger)
    assert.equal(again?.created, undefined)
    assert.deepEqual(again?.config.admin.tokens, first.config.admin.tokens)
  })

  it('refuses a token file that holds something else, or far too much, naming the file and the fix', async () => {
    for (const [name, text] of [['garbled', 'not a token\n'], ['huge', 'x'.repeat(1024 * 1024)]] as const) {
      const storage = join(work, `token-${name}`)
      await mkdir(storage, { recursive: true })
      await writeFile(join(storage, 'console-admin-token'), text)
      await assert.rejects(bootstrapConsoleToken(config(storage), logger), {
        message: `${join(storage, 'console-admin-token')} does not hold a console token; delete it to have a new one made`,
      })
    }
  })

  it('is not made when admin.tokens are configured or the console is off', async () => {
    const storage = join(work, 'configured')
    const tokens = `admin: { tokens: [{ name: a, sha256: "${sha256hex('x')}", role: viewer }] }`
    assert.equal(await bootstrapConsoleToken(config(storage, tokens), logger), undefined)
    const off = { ...config(storage), console: { enabled: false } }
    assert.equal(await bootstrapConsoleToken(off, logger), undefined)
    await assert.rejects(stat(join(storage, 'console-admin-token')), { code: 'ENOENT' })
  })
})
