// `npm run soak [-- --minutes 15] [-- --images 300] [-- --clients 32]`: mixed traffic from many
// concurrent clients against Customs (its own process) with a real docker-registry upstream
// holding a few hundred small images, some of which an enforcing policy denies. Reports every
// answer by status, latency percentiles, and Customs' RSS and open file descriptors over time.
// A benchmark, not a timed test: test/integration/soak.test.ts runs a short version in CI and
// asserts only that nothing but the expected answers came back and that descriptors stayed flat.

import { readdir, mkdir, writeFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { buildImage, pushImage, type BuiltImage } from '../test/helpers/images.js'
import { startCustomsProcess } from '../test/helpers/customs-process.js'
import { makeTempDir, removeTempDir } from '../test/helpers/processes.js'
import { startRegistry } from '../test/helpers/registry.js'
import { procStatusKiB } from './services.js'

export interface SoakOptions {
  readonly durationMs: number
  readonly images: number
  readonly clients: number
  /** How often RSS and descriptors are sampled. */
  readonly sampleMs: number
  /** Progress lines (one per sample) go here when given. */
  readonly log?: (line: string) => void
}

export interface SoakSample {
  /** Seconds since the traffic started. */
  readonly at: number
  readonly rssKiB: number
  readonly fds: number
  readonly requests: number
}

export interface SoakResult {
  readonly requests: number
  readonly seconds: number
  /** Answers by kind and status, e.g. `manifest 200`, `blob 200`, `manifest 403`. */
  readonly statuses: Record<string, number>
  /** Answers that were neither a 200 nor the expected 403 of a denied image (and transport errors). */
  readonly unexpected: number
  /** The first few unexpected answers, for the report. */
  readonly examples: string[]
  /** Latency in ms by kind: p50, p90, p99, max. */
  readonly latency: Record<string, { p50: number; p90: number; p99: number; max: number; count: number }>
  readonly samples: SoakSample[]
}

const DENIED_EVERY = 10
const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'
const NON_ROOT = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: soak-non-root }
spec:
  mode: enforce
  match: [{ repository: "soak/root*" }]
  rules:
    nonRoot: true
`

interface Target {
  readonly repository: string
  readonly tag: string
  readonly image: BuiltImage
  readonly denied: boolean
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const log = options.log ?? (() => {})
  const work = await makeTempDir('soak-')
  const registry = await startRegistry()
  let customs: Awaited<ReturnType<typeof startCustomsProcess>> | undefined
  try {
    // A few hundred small images over 20 repositories; every tenth runs as root and is denied.
    const targets: Target[] = []
    for (let i = 0; i < options.images; i++) {
      const denied = i % DENIED_EVERY === 0
      const image = buildImage({
        mediaType: 'oci',
        layers: [2048 + (i % 7) * 1024],
        seed: `soak-${i}`,
        config: denied ? {} : { config: { User: '1000' } },
      })
      const repository = denied ? `soak/root${i % 3}` : `soak/app${i % 20}`
      await pushImage(registry, repository, `v${i}`, image)
      targets.push({ repository, tag: `v${i}`, image, denied })
    }
    log(`pushed ${targets.length} images to ${registry.url}`)
    await mkdir(join(work, 'policies'))
    await writeFile(join(work, 'policies', 'non-root.yaml'), NON_ROOT)
    customs = await startCustomsProcess(
      `storage: { path: ${join(work, 'storage')} }
policy: { path: "${join(work, 'policies')}", watch: false }
upstreams:
  - name: docker.io
    url: ${registry.url}
    default: true
`,
      { name: 'customs-soak', logLevel: 'warn' }
    )
    const pid = customs.process.pid
    const base = customs.url
    const agent = new Agent({ keepAlive: true, maxSockets: options.clients })
    const statuses: Record<string, number> = {}
    const latencies: Record<string, number[]> = { manifest: [], blob: [] }
    const examples: string[] = []
    let unexpected = 0
    let requests = 0
    const note = (kind: string, status: number | string, ms: number, expected: boolean, path: string): void => {
      requests++
      const key = `${kind} ${status}`
      statuses[key] = (statuses[key] ?? 0) + 1
      latencies[kind]?.push(ms)
      if (!expected) {
        unexpected++
        if (examples.length < 10) examples.push(`${key} ${path}`)
      }
    }

    const started = performance.now()
    const deadline = started + options.durationMs
    const samples: SoakSample[] = []
    const sample = async (): Promise<void> => {
      const fds = (await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])).length
      samples.push({ at: Math.round((performance.now() - started) / 1000), rssKiB: procStatusKiB(pid, 'VmRSS') ?? 0, fds, requests })
      const s = samples[samples.length - 1] as SoakSample
      log(`t=${s.at}s requests=${s.requests} rss=${(s.rssKiB / 1024).toFixed(1)}MiB fds=${s.fds} unexpected=${unexpected}`)
    }
    await sample()
    const sampler = setInterval(() => void sample(), options.sampleMs)

    let seed = 0x50a4
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff
      return seed / 0x80000000
    }
    const client = async (): Promise<void> => {
      while (performance.now() < deadline) {
        const target = targets[Math.floor(random() * targets.length)] as Target
        const manifestPath = `/v2/${target.repository}/manifests/${target.tag}`
        const m = await get(agent, base + manifestPath, { Accept: MANIFEST_ACCEPT })
        const cleared = m.status === 200
        note('manifest', m.status, m.ms, target.denied ? m.status === 403 : cleared, manifestPath)
        if (!cleared) continue
        const blobs = [target.image.configDigest, ...target.image.layers.map((l) => l.digest)]
        const digest = blobs[Math.floor(random() * blobs.length)] as string
        const blobPath = `/v2/${target.repository}/blobs/${digest}`
        const b = await get(agent, base + blobPath, {})
        note('blob', b.status, b.ms, b.status === 200, blobPath)
      }
    }
    await Promise.all(Array.from({ length: options.clients }, () => client()))
    clearInterval(sampler)
    await sample()
    agent.destroy()
    const seconds = (performance.now() - started) / 1000
    const latency: SoakResult['latency'] = {}
    for (const [kind, values] of Object.entries(latencies)) {
      values.sort((a, b) => a - b)
      const at = (q: number): number => round(values[Math.min(values.length - 1, Math.floor(q * values.length))] ?? 0)
      latency[kind] = { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: round(values[values.length - 1] ?? 0), count: values.length }
    }
    return { requests, seconds, statuses, unexpected, examples, latency, samples }
  } finally {
    await customs?.stop()
    await registry.stop()
    await removeTempDir(work)
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100
}

/** One GET over the shared keep-alive agent; a transport error is answered as status 'error'. */
function get(agent: Agent, url: string, headers: Record<string, string>): Promise<{ status: number | string; ms: number }> {
  return new Promise((resolve) => {
    const started = performance.now()
    const req = request(url, { agent, headers }, (res) => {
      res.resume()
      res.once('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }))
      res.once('error', () => resolve({ status: 'error', ms: performance.now() - started }))
    })
    req.setTimeout(60_000, () => req.destroy(new Error('timed out')))
    req.once('error', () => resolve({ status: 'error', ms: performance.now() - started }))
    req.end()
  })
}

/** Every `every`-th sample and the last one: a table that fits on a screen. */
export function formatSoak(result: SoakResult, options: SoakOptions): string {
  const lines: string[] = []
  lines.push(`soak: ${options.clients} clients, ${options.images} images, ${result.seconds.toFixed(0)} s, ${result.requests} requests (${(result.requests / result.seconds).toFixed(0)} req/s)`)
  lines.push(`answers: ${Object.entries(result.statuses).map(([k, v]) => `${k}: ${v}`).join(', ')}; unexpected: ${result.unexpected}`)
  for (const example of result.examples) lines.push(`  unexpected: ${example}`)
  for (const [kind, l] of Object.entries(result.latency)) {
    lines.push(`latency ${kind} (${l.count}): p50 ${l.p50} ms, p90 ${l.p90} ms, p99 ${l.p99} ms, max ${l.max} ms`)
  }
  lines.push('   t (s) | requests | RSS (MiB) | fds')
  const every = Math.max(1, Math.ceil(result.samples.length / 16))
  result.samples.forEach((s, i) => {
    if (i % every === 0 || i === result.samples.length - 1) {
      lines.push(`${String(s.at).padStart(8)} | ${String(s.requests).padStart(8)} | ${(s.rssKiB / 1024).toFixed(1).padStart(9)} | ${s.fds}`)
    }
  })
  return lines.join('\n')
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '1' },
      images: { type: 'string', default: '300' },
      clients: { type: 'string', default: '32' },
    },
  })
  const minutes = Math.min(60, Math.max(0.1, Number(values.minutes)))
  const options: SoakOptions = {
    durationMs: minutes * 60_000,
    images: Math.min(2000, Math.max(10, Number(values.images))),
    clients: Math.min(512, Math.max(1, Number(values.clients))),
    sampleMs: Math.max(1000, Math.floor((minutes * 60_000) / 60)),
    log: (line) => console.log(line),
  }
  const result = await runSoak(options)
  console.log(formatSoak(result, options))
  process.exitCode = result.unexpected === 0 ? 0 : 1
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
