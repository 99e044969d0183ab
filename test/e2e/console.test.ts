// The console in a real browser: Debian's Chromium driven by playwright-core, against a Customs
// with real Redis state and a real upstream (docker-registry) holding signed images whose labels
// no policy accepts, one of them carrying a <script> in a label. A viewer sees the detained image,
// its reasons, signer and attestation, and has no way to release it; an approver releases it with
// a reason and an expiry, skopeo then pulls it through Customs, the approver revokes, and the pull
// is refused again; the decisions page finds both verdicts by repository and the other image by
// digest, and the health page shows the upstream's circuit and the cache figures. Screenshots of
// the main pages go to test-artifacts/console/ (one is copied to docs/console.png by hand).

import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { skopeoCopy } from '../helpers/clients.js'
import { signedAttLayer, signedSigLayer, DEFAULT_IDENTITY } from '../helpers/cosign.js'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { buildImage, pushImage, type BuiltImage } from '../helpers/images.js'
import { createTestPki } from '../helpers/pki.js'
import { CommandError, makeTempDir, removeTempDir } from '../helpers/processes.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { pushLegacyAttestation, pushLegacySignature } from '../helpers/signed-images.js'
import { sha256hex } from '../helpers/admin.js'

const HOOK_TIMEOUT = 180_000
const SLOW = { timeout: 120_000 }
const VIEWER = 'console-viewer-token-0123456789'
const APPROVER = 'console-approver-token-0123456789'
const HOSTILE_LABEL = '<script>window.__pwned = 1</script>'
const SLSA = 'https://slsa.dev/provenance/v1'
const BUILDER = 'https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0.0'
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'console')
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

let redis: RedisServer
let registry: RegistryHandle
let customs: CustomsHandle
let work: string
let browser: Browser
let app: BuiltImage
let tool: BuiltImage

/** Chromium as this closed network needs it: no background connections, no sandbox, no GPU. */
function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}

/** A new browser profile signed in with `token`; every dialog is recorded, none expected. */
async function signedIn(token: string): Promise<{ context: BrowserContext; page: Page; dialogs: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  const dialogs: string[] = []
  page.on('dialog', (d) => {
    dialogs.push(d.message())
    void d.dismiss()
  })
  await page.goto(`${customs.url}/console/`)
  assert.equal(new URL(page.url()).pathname, '/console/sign-in')
  await page.fill('input[name=token]', token)
  await page.click('button[type=submit]')
  await page.waitForURL(`${customs.url}/console/quarantine`)
  return { context, page, dialogs }
}

const detailUrl = (image: BuiltImage, repository: string): string =>
  `${customs.url}/console/quarantine/docker.io/${encodeURIComponent(image.manifestDigest)}?repository=${encodeURIComponent(repository)}`

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
}

/** skopeo pulls acme/app:v1 through Customs; the digest it got, or the refusal. */
async function pull(): Promise<string> {
  const dest = join(work, `pull-${Date.now()}-${Math.random().toString(36).slice(2)}`)
  const result = await skopeoCopy(`${customs.host}/acme/app:v1`, dest)
  return result.digest
}

async function pullRefused(): Promise<string> {
  const err = await pull().then(
    () => assert.fail('the pull was served'),
    (e: unknown) => e
  )
  assert.ok(err instanceof CommandError, String(err))
  return err.message
}

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true })
  work = await makeTempDir('console-e2e-')
  redis = await startRedisServer()
  registry = await startRegistry()
  const pki = createTestPki()
  const root = await pki.writeTrustedRoot(join(work, 'trusted_root.json'))
  app = buildImage({
    mediaType: 'oci',
    config: { config: { User: '1000', Labels: { 'org.example.review': HOSTILE_LABEL } } },
  })
  tool = buildImage({ mediaType: 'oci', config: { config: { Labels: { 'org.example.review': 'pending' } } } })
  await pushImage(registry, 'acme/app', 'v1', app)
  await pushImage(registry, 'acme/tool', '2.0', tool)
  await pushLegacySignature(registry, 'acme/app', app.manifestDigest, [signedSigLayer({ pki, imageDigest: app.manifestDigest }).layer])
  const provenance = { runDetails: { builder: { id: BUILDER } } }
  const att = signedAttLayer({ pki, imageDigest: app.manifestDigest, predicateType: SLSA, predicate: provenance })
  await pushLegacyAttestation(registry, 'acme/app', app.manifestDigest, [att.layer])
  const policyDir = join(work, 'policies')
  await mkdir(policyDir)
  await writeFile(join(policyDir, 'reviewed.yaml'), POLICY)
  customs = await startCustoms({
    config: `
upstreams: [{ name: docker.io, url: "${registry.url}", default: true, retries: { max: 0 } }]
state: { backend: redis, redis: { url: "${redis.url}", prefix: console-e2e } }
trust:
  roots:
    - { name: test, trustedRoot: "${root}", tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 1 }
policy: { path: "${policyDir}", watch: false }
console: { enabled: true }
admin:
  tokens:
    - { name: vera-viewer, sha256: "${sha256hex(VIEWER)}", role: viewer }
    - { name: abe-approver, sha256: "${sha256hex(APPROVER)}", role: approver }
`,
  })
  // Both images are refused once, by a real client, so that they are in quarantine.
  await pullRefused()
  const res = await fetch(`${customs.url}/v2/acme/tool/manifests/2.0`, { headers: { Accept: tool.mediaType } })
  assert.equal(res.status, 403)
  await res.body?.cancel()
  browser = await launch()
}, { timeout: HOOK_TIMEOUT })

after(async () => {
  await browser?.close()
  await customs?.stop()
  await registry?.stop()
  await redis?.stop()
  if (work !== undefined) await removeTempDir(work)
}, { timeout: HOOK_TIMEOUT })

describe('a viewer', () => {
  it('sees both detained images in the list, with counts', SLOW, async () => {
    const { context, page } = await signedIn(VIEWER)
    try {
      await assert.doesNotReject(page.locator('[data-testid=who]', { hasText: 'vera-viewer (viewer)' }).waitFor())
      const rows = page.locator('[data-testid=quarantine] tbody tr')
      assert.equal(await rows.count(), 2)
      assert.match(await page.locator('[data-testid=counts]').innerText(), /2\s+matching[\s\S]*2\s+detained/)
      await shot(page, 'quarantine')
      await page.selectOption('select[name=upstream]', 'docker.io')
      await page.fill('input[name=repository]', 'tool')
      await page.click('form.filters button[type=submit]')
      await page.waitForURL(/repository=tool/)
      assert.equal(await rows.count(), 1)
      assert.match(await rows.first().innerText(), /acme\/tool/)
    } finally {
      await context.close()
    }
  })

  it('sees why the image is detained, who signed it and its provenance, and the label as text', SLOW, async () => {
    const { context, page, dialogs } = await signedIn(VIEWER)
    try {
      await page.goto(detailUrl(app, 'acme/app'))
      const reasons = await page.locator('[data-testid=reasons] tbody').innerText()
      assert.match(reasons, /reviewed-only\s+labels\s+label org\.example\.review=/)
      const signatures = await page.locator('[data-testid=signatures] tbody').innerText()
      assert.ok(signatures.includes(DEFAULT_IDENTITY.san.uri), signatures)
      assert.ok(signatures.includes(DEFAULT_IDENTITY.issuer), signatures)
      const attestations = await page.locator('[data-testid=attestations] tbody').innerText()
      assert.ok(attestations.includes(SLSA) && attestations.includes(`builder ${BUILDER}`), attestations)
      assert.match(await page.locator('[data-testid=references]').innerText(), /^v1$/)
      assert.match(await page.locator('[data-testid=clients]').innerText(), /skopeo/i)
      // The label is shown as the text it is, and never ran.
      assert.ok((await page.locator('[data-testid=labels]').innerText()).includes(HOSTILE_LABEL))
      assert.ok(reasons.includes('<script>window.__pwned = 1<'), reasons)
      assert.equal(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned), undefined)
      assert.deepEqual(dialogs, [])
      // No release or revoke for a viewer.
      assert.equal(await page.locator('[data-testid=actions]').count(), 0)
      assert.equal(await page.locator('form[action$="/release"]').count(), 0)
      await shot(page, 'detail-viewer')
    } finally {
      await context.close()
    }
  })

  it('is refused by the API when posting a release from the signed-in browser anyway', SLOW, async () => {
    const { context, page } = await signedIn(VIEWER)
    try {
      await page.goto(detailUrl(app, 'acme/app'))
      const csrf = await page.locator('input[name=_csrf]').first().getAttribute('value')
      const path = `/console/quarantine/docker.io/${encodeURIComponent(app.manifestDigest)}/release`
      const res = await context.request.post(`${customs.url}${path}`, {
        form: { _csrf: csrf ?? '', repository: 'acme/app', reason: 'let me', expires: '1d', confirm: 'yes' },
        headers: { origin: customs.url },
        maxRedirects: 0,
      })
      assert.equal(res.status(), 403)
      assert.match(await res.text(), /needs the approver role; vera-viewer has viewer/)
      await page.reload()
      assert.equal(await page.locator('h1 .badge').innerText(), 'detained')
    } finally {
      await context.close()
    }
  })
})

describe('an approver', () => {
  let context: BrowserContext
  let page: Page
  before(async () => {
    ;({ context, page } = await signedIn(APPROVER))
  }, { timeout: HOOK_TIMEOUT })
  after(async () => {
    await context?.close()
  })

  it('cannot release without a reason: the browser asks for one and nothing is sent', SLOW, async () => {
    await page.goto(detailUrl(app, 'acme/app'))
    await page.selectOption('select[name=expires]', '1d')
    await page.click('button:has-text("Release…")')
    assert.equal(await page.locator('h1').first().innerText(), 'docker.io/acme/app detained')
    assert.equal(await page.locator('textarea[name=reason]').evaluate((e) => (e as { validity: { valueMissing: boolean } }).validity.valueMissing), true)
  })

  it('releases with a reason and an expiry after confirming, and skopeo then pulls the image', SLOW, async () => {
    await page.goto(detailUrl(app, 'acme/app'))
    await page.fill('textarea[name=reason]', 'Label check is wrong for this build; ticket SEC-42')
    await page.selectOption('select[name=expires]', '1d')
    await shot(page, 'detail-approver')
    await page.click('button:has-text("Release…")')
    await page.locator('h1', { hasText: 'Release this image?' }).waitFor()
    assert.equal(await page.locator('[data-testid=confirm-reason]').innerText(), 'Label check is wrong for this build; ticket SEC-42')
    await shot(page, 'confirm-release')
    await page.click('button:has-text("Yes, release it")')
    await page.waitForURL(/done=released/)
    assert.equal(await page.locator('h1 .badge').innerText(), 'released')
    assert.match(await page.locator('[data-testid=release]').innerText(), /^abe-approver, .* until .*: Label check is wrong/)
    await shot(page, 'released')
    assert.equal(await pull(), app.manifestDigest)
  })

  it('revokes after confirming, and the pull is refused again', SLOW, async () => {
    await page.goto(detailUrl(app, 'acme/app'))
    await page.click('button:has-text("Revoke the release…")')
    await page.locator('h1', { hasText: 'Revoke this release?' }).waitFor()
    await page.click('button:has-text("Yes, revoke it")')
    await page.waitForURL(/done=revoked/)
    assert.equal(await page.locator('h1 .badge').innerText(), 'detained')
    const history = await page.locator('[data-testid=history] tbody').innerText()
    assert.match(history, /revoke\s+abe-approver[\s\S]*release\s+abe-approver\s+Label check is wrong/)
    assert.match(await pullRefused(), /denied|reviewed-only|403/i)
    await page.reload()
    assert.ok(Number(await page.locator('dt:has-text("Pulls refused") + dd').innerText()) >= 2)
  })

  it('shows the policy revision in force', SLOW, async () => {
    await page.goto(`${customs.url}/console/policy`)
    const revision = await page.locator('[data-testid=revision]').innerText()
    assert.equal(revision, customs.services.policies.current().revision)
    await shot(page, 'policy')
  })
})

describe('decisions and health', () => {
  let context: BrowserContext
  let page: Page
  before(async () => {
    ;({ context, page } = await signedIn(VIEWER))
  }, { timeout: HOOK_TIMEOUT })
  after(async () => {
    await context?.close()
  })

  it('finds the decisions on acme/app by repository and by digest: refused, served while released', SLOW, async () => {
    await page.goto(`${customs.url}/console/decisions`)
    await page.fill('input[name=repository]', 'acme/app')
    await page.click('form.filters button[type=submit]')
    await page.waitForURL(/repository=acme%2Fapp/)
    const rows = await page.locator('[data-testid=decisions] tbody').innerText()
    assert.match(rows, /detained/)
    assert.match(rows, /cleared-with-warnings/)
    assert.doesNotMatch(rows, /acme\/tool/)
    await shot(page, 'decisions')
    await page.goto(`${customs.url}/console/decisions?digest=${encodeURIComponent(tool.manifestDigest)}`)
    const toolRows = await page.locator('[data-testid=decisions] tbody').innerText()
    assert.match(toolRows, /acme\/tool/)
    assert.doesNotMatch(toolRows, /acme\/app/)
  })

  it('shows the cache figures and the upstream with its circuit closed', SLOW, async () => {
    await page.goto(`${customs.url}/console/health`)
    const upstreams = await page.locator('[data-testid=upstreams] tbody').innerText()
    assert.match(upstreams, /docker\.io/)
    assert.match(upstreams, /closed/)
    assert.match(await page.locator('[data-testid=cache]').innerText(), /hit ratio[\s\S]*served/)
    await shot(page, 'health')
  })
})
