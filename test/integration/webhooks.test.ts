// Webhooks against a receiver started by the test: what is posted (body, headers, a signature a
// receiver can verify), retries on 5xx and 429 until accepted, giving up after maxAttempts, no retry
// on other 4xx, the bounded queue, the event filter, and a pull that completes while the receiver
// still holds the first delivery.

import assert from 'node:assert/strict'
import { createHmac, timingSafeEqual } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, afterEach, describe, it } from 'node:test'
import { EventBus, type CustomsEvent, type EventType } from '../../src/audit/events.js'
import { parseConfig } from '../../src/config/load.js'
import type { WebhookConfig } from '../../src/config/schema.js'
import { Notifier } from '../../src/notify/webhooks.js'
import { digestOf } from '../../src/oci/digest.js'
import { createLogger } from '../../src/observability/logger.js'
import { Metrics } from '../../src/observability/metrics.js'
import { startCustoms, upstreamConfig, type CustomsHandle } from '../helpers/customs.js'
import { buildImage, pushImage, randomBlob } from '../helpers/images.js'
import { makeTempDir } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { logLines } from '../helpers/logs.js'

const SECRET = 'receiver-shared-secret-0123456789'

interface Received {
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

type Answer = (req: IncomingMessage, res: ServerResponse, received: Received) => void

/** A receiver that records every POST and answers with the next scripted answer (else 204). */
interface Receiver {
  readonly url: string
  readonly received: Received[]
  /** Answers for the next requests, in order. */
  readonly answers: Answer[]
  /** Resolves when `n` requests have arrived. */
  waitFor(n: number): Promise<void>
  close(): Promise<void>
}

const status =
  (code: number, headers: Record<string, string> = {}): Answer =>
  (_req, res) => {
    res.writeHead(code, headers).end()
  }

async function startReceiver(): Promise<Receiver> {
  const received: Received[] = []
  const answers: Answer[] = []
  const waiters: Array<{ n: number; resolve: () => void }> = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const entry = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      received.push(entry)
      for (const w of waiters.filter((w) => received.length >= w.n)) w.resolve()
      const answer = answers.shift() ?? status(204)
      answer(req, res, entry)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/hooks/customs`,
    received,
    answers,
    waitFor: (n) =>
      received.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve })),
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** How a receiver checks a delivery, as docs/configuration.md shows it. */
function verify(secret: string, header: string, body: string, nowSeconds: number): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]))
  const t = Number(parts.t)
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > 300 || parts.v1 === undefined) return false
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest()
  const given = Buffer.from(parts.v1, 'hex')
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/** A webhook's configuration as the loader makes it (defaults applied), with `extra` YAML. */
function hook(url: string, extra = ''): WebhookConfig {
  const parsed = parseConfig(
    `notifications:\n  webhooks:\n    - name: sec\n      url: "${url}"\n      secret: ${SECRET}\n      backoff: 5ms\n      maxBackoff: 50ms\n${extra
      .split('\n')
      .map((l) => `      ${l}`)
      .join('\n')}\n`,
    { env: {} }
  )
  return parsed.notifications.webhooks[0] as unknown as WebhookConfig
}

const logger = createLogger({ level: 'silent' })
const event = (type: EventType, n = 0): Omit<CustomsEvent, 'time'> => ({
  type,
  upstream: 'docker.io',
  repository: 'acme/app',
  digest: `sha256:${String(n).padStart(64, '0')}`,
})

async function deliveries(metrics: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const v of (await metrics.webhookDeliveries.get()).values) out[String(v.labels.outcome)] = v.value
  return out
}

describe('webhooks', () => {
  let receiver: Receiver
  let notifier: Notifier | undefined
  afterEach(async () => {
    await notifier?.close(0)
    notifier = undefined
    await receiver?.close()
  })

  /** A bus with a notifier for one webhook at the receiver; its log lines are kept. */
  async function setup(extra = ''): Promise<{ bus: EventBus; metrics: Metrics; logs: Array<Record<string, unknown>> }> {
    receiver = await startReceiver()
    const bus = new EventBus(logger)
    const metrics = new Metrics()
    const { destination, lines: logs } = logLines()
    const hookLogger = createLogger({ level: 'info', destination })
    notifier = new Notifier([hook(receiver.url, extra)], { metrics, logger: hookLogger })
    notifier.subscribe(bus)
    return { bus, metrics, logs }
  }

  it('posts the event as signed JSON that the receiver can verify', async () => {
    const { bus, metrics } = await setup()
    bus.emit({ ...event('detention'), reasons: ['unsigned'], verdict: 'detained' })
    await receiver.waitFor(1)
    const [got] = receiver.received as [Received]
    assert.equal(got.headers['content-type'], 'application/json')
    assert.equal(got.headers['customs-event'], 'detention')
    const body = JSON.parse(got.body) as { id: string; event: CustomsEvent }
    assert.equal(got.headers['customs-delivery'], body.id)
    assert.match(body.id, /^[0-9a-f-]{36}$/)
    assert.equal(body.event.type, 'detention')
    assert.deepEqual(body.event.reasons, ['unsigned'])
    assert.equal(body.event.digest, event('detention').digest)
    const signature = String(got.headers['customs-signature'])
    assert.match(signature, /^t=\d+,v1=[0-9a-f]{64}$/)
    assert.equal(verify(SECRET, signature, got.body, Math.floor(Date.now() / 1000)), true)
    assert.equal(verify('another-secret', signature, got.body, Math.floor(Date.now() / 1000)), false)
    assert.equal(verify(SECRET, signature, got.body.replace('unsigned', 'signed'), Math.floor(Date.now() / 1000)), false)
    await notifier?.close(1000)
    assert.deepEqual(await deliveries(metrics), { delivered: 1 })
  })

  it('posts only the event types configured, the default being quarantine changes', async () => {
    const { bus } = await setup()
    for (const type of ['decision', 'reevaluation', 'admin', 'release', 'tag-move'] as const) bus.emit(event(type))
    await notifier?.close(5000)
    assert.deepEqual(
      receiver.received.map((r) => r.headers['customs-event']),
      ['release', 'tag-move']
    )
  })

  it('posts only the events listed in `events`', async () => {
    const { bus } = await setup('events: [release-expired]')
    for (const type of ['detention', 'release-expired', 'release'] as const) bus.emit(event(type))
    await notifier?.close(5000)
    assert.deepEqual(
      receiver.received.map((r) => r.headers['customs-event']),
      ['release-expired']
    )
  })

  it('retries after a 500 and a 429 with Retry-After, then succeeds with the same delivery id', async () => {
    const { bus, metrics } = await setup()
    receiver.answers.push(status(500), status(429, { 'retry-after': '0' }))
    bus.emit(event('release'))
    await receiver.waitFor(3)
    await notifier?.close(5000)
    assert.equal(receiver.received.length, 3)
    const ids = receiver.received.map((r) => r.headers['customs-delivery'])
    assert.equal(new Set(ids).size, 1)
    for (const r of receiver.received) {
      assert.equal(verify(SECRET, String(r.headers['customs-signature']), r.body, Math.floor(Date.now() / 1000)), true)
    }
    assert.deepEqual(await deliveries(metrics), { delivered: 1 })
  })

  it('gives up after maxAttempts, logs it and counts it failed', async () => {
    const { bus, metrics, logs } = await setup('maxAttempts: 3')
    receiver.answers.push(status(503), status(503), status(503), status(503))
    bus.emit(event('revoke'))
    bus.emit(event('release'))
    await receiver.waitFor(5)
    await notifier?.close(5000)
    // Three refused attempts at the first event; the second's first attempt gets the last 503.
    assert.deepEqual(
      receiver.received.map((r) => r.headers['customs-event']),
      ['revoke', 'revoke', 'revoke', 'release', 'release']
    )
    assert.deepEqual(await deliveries(metrics), { failed: 1, delivered: 1 })
    const gaveUp = logs.find((l) => l.msg === 'webhook delivery failed; giving up')
    assert.equal(gaveUp?.webhook, 'sec')
    assert.equal(gaveUp?.attempts, 3)
    assert.equal(gaveUp?.err, 'HTTP 503')
    // Neither the secret nor the signature reaches the logs.
    assert.equal(JSON.stringify(logs).includes(SECRET), false)
  })

  it('does not retry a 4xx other than 408 and 429', async () => {
    const { bus, metrics } = await setup()
    receiver.answers.push(status(400), status(404))
    bus.emit(event('release', 1))
    bus.emit(event('release', 2))
    bus.emit(event('release', 3))
    await notifier?.close(5000)
    assert.equal(receiver.received.length, 3)
    assert.deepEqual(await deliveries(metrics), { rejected: 2, delivered: 1 })
  })

  it('retries a receiver that does not answer within the timeout', async () => {
    const { bus, metrics } = await setup('timeout: 200ms')
    receiver.answers.push(() => undefined) // never answers
    bus.emit(event('release'))
    await receiver.waitFor(2)
    await notifier?.close(5000)
    assert.deepEqual(await deliveries(metrics), { delivered: 1 })
  })

  it('keeps at most queueSize events waiting, dropping the oldest', async () => {
    const { bus, metrics } = await setup('queueSize: 2')
    let hold: (() => void) | undefined
    receiver.answers.push((_req, res) => {
      hold = () => res.writeHead(204).end()
    })
    bus.emit(event('release', 1))
    await receiver.waitFor(1) // the first is in flight, out of the queue
    for (const n of [2, 3, 4, 5]) bus.emit(event('release', n))
    assert.deepEqual(await deliveries(metrics), { dropped: 2 })
    hold?.()
    await receiver.waitFor(3)
    await notifier?.close(5000)
    const digests = receiver.received.map((r) => (JSON.parse(r.body) as { event: CustomsEvent }).event.digest)
    assert.deepEqual(digests, [1, 4, 5].map((n) => event('release', n).digest))
    assert.deepEqual(await deliveries(metrics), { dropped: 2, delivered: 3 })
  })

  it('drops what is left when closing takes longer than the drain time', async () => {
    const { bus, metrics } = await setup()
    receiver.answers.push(() => undefined) // holds the first delivery
    bus.emit(event('release', 1))
    bus.emit(event('release', 2))
    await receiver.waitFor(1)
    await notifier?.close(50)
    assert.deepEqual(await deliveries(metrics), { dropped: 2 })
  })
})

describe('webhooks and pulls', () => {
  let registry: RegistryHandle
  let customs: CustomsHandle | undefined
  let receiver: Receiver
  let work: string
  after(async () => {
    await customs?.stop()
    await receiver?.close()
    await registry?.stop()
    if (work !== undefined) await rm(work, { recursive: true, force: true })
  })

  it('answers a pull, allowed and denied, while the receiver still holds the first delivery', async () => {
    registry = await startRegistry()
    receiver = await startReceiver()
    work = await makeTempDir('webhooks-')
    const policies = join(work, 'policies')
    await mkdir(policies)
    await writeFile(
      join(policies, 'deny.yaml'),
      `apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: no-bad }
spec:
  mode: enforce
  match: [{ repository: "acme/bad" }]
  rules: { tags: { deny: ["*"] } }
`
    )
    const released: Array<() => void> = []
    // Every delivery is held until the end of the test.
    for (let i = 0; i < 10; i++) {
      receiver.answers.push((_req, res) => released.push(() => res.writeHead(204).end()))
    }
    customs = await startCustoms({
      config: `${upstreamConfig('docker.io', registry.url)}
policy: { path: "${policies}", watch: false }
notifications:
  drainTimeout: 100ms
  webhooks:
    - { name: sec, url: "${receiver.url}", secret: ${SECRET}, events: [decision, detention] }
`,
    })
    const good = buildImage({ mediaType: 'oci', layers: [randomBlob(1024, 'webhook-good')] })
    const bad = buildImage({ mediaType: 'oci', layers: [randomBlob(1024, 'webhook-bad')] })
    await pushImage(registry, 'acme/good', 'v1', good)
    await pushImage(registry, 'acme/bad', 'v1', bad)

    const first = await fetch(`${customs.url}/v2/acme/good/manifests/v1`, { headers: { Accept: good.mediaType } })
    assert.equal(first.status, 200)
    await first.arrayBuffer()
    await receiver.waitFor(1)
    const denied = await fetch(`${customs.url}/v2/acme/bad/manifests/v1`, { headers: { Accept: bad.mediaType } })
    assert.equal(denied.status, 403)
    await denied.arrayBuffer()
    const again = await fetch(`${customs.url}/v2/acme/good/manifests/v1`, { headers: { Accept: good.mediaType } })
    assert.equal(again.status, 200)
    await again.arrayBuffer()
    // Every pull was answered while the receiver held the first delivery unanswered.
    assert.equal(receiver.received.length, 1)
    assert.equal(released.length, 1)
    receiver.answers.length = 0
    for (const r of released) r()
    await receiver.waitFor(4)
    assert.deepEqual(
      receiver.received.map((r) => r.headers['customs-event']),
      ['decision', 'decision', 'detention', 'decision']
    )
  })
})

describe('webhooks and release expiry', () => {
  let customs: CustomsHandle | undefined
  let receiver: Receiver
  after(async () => {
    await customs?.stop()
    await receiver?.close()
  })

  it('tells the receiver when the running job detains an expired release again', async () => {
    receiver = await startReceiver()
    customs = await startCustoms({
      config: `${upstreamConfig('docker.io', 'http://127.0.0.1:9')}
quarantine: { expiryInterval: 100ms }
notifications:
  webhooks:
    - { name: sec, url: "${receiver.url}", secret: ${SECRET}, events: [release-expired] }
`,
    })
    const repo = { upstream: 'docker.io', repository: 'acme/expiring' }
    const digest = digestOf(Buffer.from('an expiring image'))
    const state = customs.services.state
    await state.recordDetention(repo, digest, { reference: 'v1', reasons: ['unsigned'], at: Date.now() })
    await state.releaseQuarantine(repo, digest, { by: 'alice', reason: 'one hour', expires: Date.now() + 300, at: Date.now() })
    await receiver.waitFor(1)
    const [got] = receiver.received as [Received]
    assert.equal(got.headers['customs-event'], 'release-expired')
    assert.equal(verify(SECRET, String(got.headers['customs-signature']), got.body, Math.floor(Date.now() / 1000)), true)
    const body = JSON.parse(got.body) as { event: CustomsEvent }
    assert.equal(body.event.digest, digest)
    assert.equal(body.event.repository, 'acme/expiring')
    assert.deepEqual(body.event.reasons, ['one hour'])
    const record = await state.getQuarantine(repo, digest)
    assert.equal(record?.state, 'detained')
    assert.equal(record?.history?.[0]?.action, 'expire')
  })
})
