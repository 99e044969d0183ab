// What the pull benchmark prints: the command and machine, then the results table with ratios and
// target verdicts (pipe-separated, so it pastes into Markdown as is), then the details; then the
// signature-verification table and its details; then the policy-evaluation table.

import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os'
import { relative } from 'node:path'
import { run } from '../test/helpers/processes.js'
import { CORES, type PullCpu } from './cpu.js'
import type { ConcurrentPulls, Pull, WrkResult } from './clients.js'
import type { PolicyResults } from './policies.js'
import type { RssReport, UpstreamGets } from './services.js'
import type { FirstPull, SignatureResults } from './signatures.js'

export const MiB = 1024 * 1024

/** The run's settings. */
export interface Settings {
  quick: boolean
  big: number
  /** The blob of the one pull before the cold ones, which brings Customs to a running state. */
  warmup: number
  /** Cold pulls, each of a blob of its own; the median is judged. */
  coldRuns: number
  /** Bytes written to a scratch file and removed before each cold pair (see touchMemory). */
  pretouch: number
  mid: number
  clients: number
  warmRuns: number
  wrkSeconds: number
  wrkConnections: number
  /** Signed images (and as many unsigned ones) of the signature phase. */
  signedImages: number
  /** Timed repeat GETs of each kind, and untimed ones before them. */
  repeats: number
  repeatWarmup: number
  /** Generated policies of the policy phase, and the timed evaluations against them. */
  policies: number
  evaluations: number
  evaluationWarmup: number
}

/** One cold pair: nginx's first read of a blob, then Customs' first pull of it. */
export interface ColdPull {
  customs: Pull
  nginx: Pull
  upstream: UpstreamGets
  /** Seconds the memory touch before the pair took (see touchMemory in pull.ts). */
  pretouch: number
  /** The CPU each pull cost, from its start until curl exited. */
  cpu: { customs: PullCpu; nginx: PullCpu }
}

/** Everything measured, Customs and nginx side by side. */
export interface Results {
  direct: Pull
  /** The pull of a blob of its own before the cold pulls (Customs, then nginx). */
  warmup: { customs: Pull; nginx: Pull }
  cold: ColdPull[]
  warm: { customs: Pull[]; nginx: Pull[]; upstreamWholeRun: UpstreamGets }
  concurrent: { customs: ConcurrentPulls; nginx: ConcurrentPulls; upstream: UpstreamGets }
  rps: { customs: WrkResult; nginx: WrkResult }
  rss: RssReport
  nginxHwmKiB: number
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const lower = sorted[mid - 1] ?? 0
  const upper = sorted[mid] ?? 0
  return sorted.length % 2 === 1 ? upper : (lower + upper) / 2
}

/** `1.234 s (162 MiB/s)` for `bytes` moved in `seconds`. */
function timeAndRate(seconds: number, bytes: number): string {
  return `${seconds.toFixed(3)} s (${(bytes / MiB / seconds).toFixed(0)} MiB/s)`
}

function ratio(value: number): string {
  return `${value >= 10 ? value.toFixed(1) : value.toFixed(2)}x`
}

function verdict(pass: boolean): 'PASS' | 'FAIL' {
  return pass ? 'PASS' : 'FAIL'
}

function fetches(gets: UpstreamGets): string {
  return `${gets.count} (${(gets.bytes / MiB).toFixed(1)} MiB sent)`
}

function histogram(values: readonly string[]): string {
  const counts = new Map<string, number>()
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1)
  return [...counts].map(([v, n]) => `${n} ${v}`).join(', ')
}

const loads = (): string => loadavg().map((l) => l.toFixed(2)).join(' ')

/** One line of the results table; '' cells stay empty. */
interface Row {
  id: string
  measurement: string
  customs: string
  nginx: string
  ratio: string
  target: string
  result: string
}

/** A Markdown table: the header, a rule, the rows; columns padded to their widest cell. */
function renderColumns(
  header: readonly string[],
  rows: ReadonlyArray<readonly string[]>
): string[] {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  const line = (r: readonly string[]): string =>
    `| ${widths.map((w, i) => (r[i] ?? '').padEnd(w)).join(' | ')} |`
  const rule = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`
  return [line(header), rule, ...rows.map(line)]
}

function renderTable(rows: readonly Row[]): string[] {
  const header = ['#', 'measurement', 'Customs', 'nginx', 'Customs/nginx', 'target', 'result']
  const keys = ['id', 'measurement', 'customs', 'nginx', 'ratio', 'target', 'result'] as const
  return renderColumns(header, rows.map((r) => keys.map((k) => r[k])))
}

async function versions(): Promise<string> {
  const first = async (command: string, args: string[]): Promise<string> => {
    const r = await run(command, args, { allowFailure: true, timeoutMs: 10_000 }).catch(() => null)
    return `${r?.stdout ?? ''}${r?.stderr ?? ''}`.trim().split('\n')[0] ?? '?'
  }
  const list = await Promise.all([
    first('nginx', ['-v']),
    first('curl', ['--version']).then((v) => v.split(' ').slice(0, 2).join(' ')),
    first('wrk', ['-v']),
    first('docker-registry', ['--version']),
  ])
  return list.map((v) => v.replace(/\s+Copyright.*$/, '').replace(/\s*Usage:.*$/, '')).join('; ')
}

function commandLine(root: string): string {
  const args = process.argv.slice(2).join(' ')
  const direct = [process.argv0, ...process.execArgv, relative(root, process.argv[1] ?? '')]
  const npm = `npm run bench${args === '' ? '' : ` -- ${args}`}`
  const node = `${direct.join(' ')}${args === '' ? '' : ` ${args}`}`
  return process.env.npm_lifecycle_event === 'bench' ? `${npm}   (${node})` : node
}

/** The command, the machine, the tools and the settings. */
export async function printHeader(settings: Settings, root: string, profile: boolean) {
  const cpu = cpus()[0]?.model ?? '?'
  const memory = `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`
  console.log(`command: ${commandLine(root)}`)
  console.log(`machine: nproc ${availableParallelism()}, ${cpu}, ${memory}, Linux ${release()}`)
  console.log(`node ${process.version}; ${await versions()}`)
  console.log(`load average at start: ${loads()}`)
  const { big, mid, clients, wrkSeconds } = settings
  const sizes = `blobs ${big / MiB} MiB and ${mid / MiB} MiB, ${clients} clients`
  const signatures = `${settings.signedImages} signed images, ${settings.repeats} repeats`
  const policies = `${settings.policies} policies x ${settings.evaluations} evaluations`
  const mode = settings.quick ? 'quick' : 'full'
  console.log(`mode: ${mode} (${sizes}, wrk ${wrkSeconds} s, ${signatures}, ${policies})`)
  if (profile) console.log('profile: on (Customs runs with --cpu-prof: slower)')
}

/** The table, the targets met, and the details behind them. */
export function printResults(r: Results, s: Settings): void {
  const size = (bytes: number): string => `${bytes / MiB} MiB`
  const warmC = median(r.warm.customs.map((p) => p.seconds))
  const warmN = median(r.warm.nginx.map((p) => p.seconds))
  const coldC = median(r.cold.map((p) => p.customs.seconds))
  const coldN = median(r.cold.map((p) => p.nginx.seconds))
  const coldRatio = coldC / coldN
  const coldGets = r.cold.map((p) => p.upstream)
  const coldFetches: UpstreamGets = {
    count: coldGets.reduce((sum, g) => sum + g.count, 0),
    bytes: coldGets.reduce((sum, g) => sum + g.bytes, 0),
  }
  const warmRatio = warmC / warmN
  const manyRatio = r.concurrent.customs.wallSeconds / r.concurrent.nginx.wallSeconds
  const rpsRatio = r.rps.customs.rps / r.rps.nginx.rps
  const peakMB = (Math.max(r.rss.peakRssKiB, r.rss.hwmKiB) * 1024) / 1e6
  const wrkCommand = `wrk -t1 -c${s.wrkConnections} -d${s.wrkSeconds}s`
  const rows: Row[] = [
    {
      id: '1',
      measurement: `cold pull, ${size(s.big)} blob, ${r.cold.length === 1 ? 'one blob' : `median of ${r.cold.length} blobs`} (curl time_total)`,
      customs: timeAndRate(coldC, s.big),
      nginx: timeAndRate(coldN, s.big),
      ratio: ratio(coldRatio),
      target: '<= 1.6x',
      result: verdict(coldRatio <= 1.6),
    },
    {
      id: '',
      measurement: `  upstream GETs of those blobs (registry access log)`,
      customs: fetches(coldFetches),
      nginx: '',
      ratio: '',
      target: `exactly 1 each`,
      result: verdict(coldGets.every((g) => g.count === 1)),
    },
    {
      id: '',
      measurement: '  for reference: curl straight from the registry',
      customs: timeAndRate(r.direct.seconds, s.big),
      nginx: '',
      ratio: `${ratio(r.direct.seconds / coldN)} (registry/nginx)`,
      target: '',
      result: '',
    },
    {
      id: '2',
      measurement: `warm pull, ${size(s.big)}, median of ${s.warmRuns}`,
      customs: timeAndRate(warmC, s.big),
      nginx: timeAndRate(warmN, s.big),
      ratio: ratio(warmRatio),
      target: '<= 1.3x',
      result: verdict(warmRatio <= 1.3),
    },
    {
      id: '3',
      measurement: `${s.clients} concurrent pulls, uncached ${size(s.mid)} (wall)`,
      customs: timeAndRate(r.concurrent.customs.wallSeconds, s.mid * s.clients),
      nginx: timeAndRate(r.concurrent.nginx.wallSeconds, s.mid * s.clients),
      ratio: ratio(manyRatio),
      target: '<= 1.4x',
      result: verdict(manyRatio <= 1.4),
    },
    {
      id: '',
      measurement: '  upstream GETs of that blob (registry access log)',
      customs: fetches(r.concurrent.upstream),
      nginx: '',
      ratio: '',
      target: 'exactly 1',
      result: verdict(r.concurrent.upstream.count === 1),
    },
    {
      id: '4',
      measurement: `warm manifest by tag, ${wrkCommand} (req/s)`,
      customs: r.rps.customs.rps.toFixed(0),
      nginx: r.rps.nginx.rps.toFixed(0),
      ratio: ratio(rpsRatio),
      target: '>= 0.2x',
      result: verdict(rpsRatio >= 0.2),
    },
    {
      id: '5',
      measurement: 'peak RSS (max of VmRSS every 200 ms, VmHWM)',
      customs: `${peakMB.toFixed(1)} MB`,
      nginx: `${((r.nginxHwmKiB * 1024) / 1e6).toFixed(1)} MB`,
      ratio: '',
      target: '< 200 MB',
      result: verdict(peakMB < 200),
    },
  ]
  console.log('')
  for (const line of renderTable(rows)) console.log(line)
  const judged = rows.filter((row) => row.result !== '')
  const passed = judged.filter((row) => row.result === 'PASS').length
  console.log(`\ntargets met: ${passed}/${judged.length} (time ratios: lower is better)`)
  console.log(
    'nginx serves its copy from the page cache (just written): the physical floor. Every body ' +
      `was size-checked; the cold ones and client 0 of each ${s.clients} were sha256-checked.`
  )

  console.log('\ndetails:')
  const secs = (pulls: Pull[]): string => pulls.map((p) => p.seconds.toFixed(3)).join(' ')
  const pairs = r.cold.map((p) => `${p.customs.seconds.toFixed(3)}/${p.nginx.seconds.toFixed(3)}`).join(' ')
  const touches = r.cold.map((p) => p.pretouch.toFixed(3)).join(' ')
  console.log(`  cold pairs, Customs/nginx (s): ${pairs}; memory touch before each (${s.pretouch / MiB} MiB written and removed): ${touches} s`)
  console.log(
    `  before them, one cold pull of a ${s.warmup / MiB} MiB blob of its own, not counted (Customs starts its hash worker ` +
      `and optimizes the fill's code on its first large fill): Customs ${r.warmup.customs.seconds.toFixed(3)} s, nginx ${r.warmup.nginx.seconds.toFixed(3)} s`
  )
  for (const line of coldCpuLines(r.cold)) console.log(`  ${line}`)
  console.log(`  warm Customs runs (s): ${secs(r.warm.customs)}   nginx: ${secs(r.warm.nginx)}`)
  const warmCaches = [...new Set(r.warm.customs.map((p) => p.cache))].join('/')
  const concurrentCaches = histogram(r.concurrent.customs.pulls.map((p) => p.cache || '?'))
  console.log(
    `  Customs-Cache: cold ${[...new Set(r.cold.map((p) => p.customs.cache))].join('/')}, warm ${warmCaches}; ` +
      `${s.clients} concurrent: ${concurrentCaches}`
  )
  const slowest = (pulls: Pull[]): string => Math.max(...pulls.map((p) => p.seconds)).toFixed(3)
  console.log(
    `  ${s.clients} concurrent, slowest client time_total (s): ` +
      `Customs ${slowest(r.concurrent.customs.pulls)}, nginx ${slowest(r.concurrent.nginx.pulls)}`
  )
  const bigGets = r.warm.upstreamWholeRun.count
  console.log(`  upstream GETs of the ${size(s.big)} blob, whole run: ${bigGets}`)
  for (const [who, w] of [['Customs', r.rps.customs], ['nginx', r.rps.nginx]] as const) {
    const errors = w.socketErrors === undefined ? '' : `, socket errors: ${w.socketErrors}`
    const latency = `latency avg ${w.latencyAvg} max ${w.latencyMax}`
    console.log(`  wrk ${who}: ${w.requests} requests, ${latency}${errors}`)
  }
  const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`
  console.log(
    `  Customs RSS: ${r.rss.samples} samples, peak VmRSS ${mib(r.rss.peakRssKiB)}, ` +
      `VmHWM ${mib(r.rss.hwmKiB)}`
  )
  const phases = r.rss.phases.map(([phase, kib]) => `${phase} ${mib(kib)}`).join(', ')
  console.log(`  Customs peak VmRSS by phase: ${phases}`)
  console.log(`  load average at end: ${loads()}`)
}

/** Nearest-rank percentile `p` (0-100) of `values`. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(rank, 1)) - 1] ?? NaN
}

function mean(values: readonly number[]): number {
  return values.reduce((sum, v) => sum + v, 0) / Math.max(values.length, 1)
}

const ms = (value: number): string => `${value >= 10 ? value.toFixed(1) : value.toFixed(2)} ms`

/** `mean 0.31 ms, p50 0.29 ms, p99 0.62 ms` */
function latencies(values: readonly number[]): string {
  const p = (q: number): string => ms(percentile(values, q))
  return `mean ${ms(mean(values))}, p50 ${p(50)}, p99 ${p(99)}`
}

/** `median 12.3 ms, max 45.6 ms (bench/signed-1)` */
function firstPulls(pulls: readonly FirstPull[]): string {
  const slowest = pulls.reduce<FirstPull | undefined>(
    (a, b) => (a !== undefined && a.ms >= b.ms ? a : b),
    undefined
  )
  const where = slowest === undefined ? '' : ` (${slowest.repo})`
  return `median ${ms(median(pulls.map((p) => p.ms)))}, max ${ms(slowest?.ms ?? NaN)}${where}`
}

/** `7 each (140 in all)`, or `median 7 (6-9, 140 in all)` when they differ. */
function upstreamPerPull(pulls: readonly FirstPull[]): string {
  const counts = pulls.map((p) => p.upstream)
  const [low, high] = [Math.min(...counts), Math.max(...counts)]
  const total = counts.reduce((sum, n) => sum + n, 0)
  if (low === high) return `${low} each (${total} in all)`
  return `median ${median(counts)} (${low}-${high}, ${total} in all)`
}

/** The signature-verification table, its targets and details. */
export function printSignatureResults(r: SignatureResults, s: Settings): void {
  const n = r.first.signed.length
  const signedMean = mean(r.repeats.signed)
  const header = ['#', 'measurement', 'Customs', 'target', 'result']
  const rows: string[][] = [
    [
      '6',
      `first GET by tag, ${n} never-seen signed images (keyed P-256 .sig)`,
      firstPulls(r.first.signed),
      '',
      '',
    ],
    [
      '',
      '  upstream requests per first GET (registry access log)',
      upstreamPerPull(r.first.signed),
      '',
      '',
    ],
    [
      '',
      `  for reference: ${r.first.unsigned.length} never-seen unsigned images`,
      firstPulls(r.first.unsigned),
      '',
      '',
    ],
    ['', '  upstream requests per first GET, unsigned', upstreamPerPull(r.first.unsigned), '', ''],
    [
      '7',
      `${s.repeats} sequential repeat GETs by digest, cleared signed images`,
      latencies(r.repeats.signed),
      '',
      '',
    ],
    ['', '  same, cleared unsigned images', latencies(r.repeats.unsigned), '', ''],
    ['', '  same, GET /v2/ (the floor)', latencies(r.repeats.floor), '', ''],
    [
      '8',
      'repeat adds no upstream request (access log, whole repeat window)',
      String(r.upstreamDuringRepeats),
      'exactly 0',
      verdict(r.upstreamDuringRepeats === 0),
    ],
    [
      '',
      'repeat costs < 1 ms of Customs time per manifest request',
      `<= ${ms(signedMean)} (mean of 7)`,
      '< 1 ms',
      verdict(signedMean < 1),
    ],
  ]
  console.log('\nsignature verification (trust: one test root, one keyed P-256 key):\n')
  for (const line of renderColumns(header, rows)) console.log(line)
  const judged = rows.filter((row) => row[4] !== '')
  const passed = judged.filter((row) => row[4] === 'PASS').length
  console.log(`\ntargets met: ${passed}/${judged.length}`)
  console.log(
    'Every manifest answer was 200 with the pushed digest in Docker-Content-Digest and in the ' +
      'body, every /v2/ answer 200. ' +
      'Latencies are per request as the bench process (node:http, one kept-alive connection) ' +
      'sees them, client and loopback included: the mean of 7 is an upper bound of Customs time.'
  )
  console.log('\ndetails:')
  console.log('  first GETs alternate signed and unsigned, which goes first alternating too')
  for (const pull of [r.first.signed[0], r.first.unsigned[0]]) {
    if (pull === undefined) continue
    console.log(`  upstream requests of ${pull.repo}'s first GET: ${pull.requests.join(', ')}`)
  }
  const list = (pulls: readonly FirstPull[]): string => pulls.map((p) => p.ms.toFixed(1)).join(' ')
  console.log(`  first GET signed (ms, in order): ${list(r.first.signed)}`)
  console.log(`  first GET unsigned (ms, in order): ${list(r.first.unsigned)}`)
  console.log(
    `  repeats: ${s.repeats} of each kind interleaved one request at a time (signed, unsigned, ` +
      `/v2/), cycling over the ${n} images of each kind, after ${r.warmup} untimed rounds`
  )
  const delta = signedMean - mean(r.repeats.unsigned)
  const sign = delta >= 0 ? '+' : '-'
  console.log(`  signed minus unsigned, mean: ${sign}${Math.abs(delta * 1000).toFixed(0)} us`)
  const max = (values: readonly number[]): string => ms(Math.max(...values))
  console.log(
    `  repeat max: signed ${max(r.repeats.signed)}, unsigned ${max(r.repeats.unsigned)}, ` +
      `/v2/ ${max(r.repeats.floor)}`
  )
}

const us = (value: number): string => `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} µs`

/** The policy-evaluation table, its target and details. */
export function printPolicyResults(r: PolicyResults): void {
  const p = (q: number): string => us(percentile(r.samples, q))
  const max = r.samples.reduce((a, b) => Math.max(a, b), 0)
  const header = ['#', 'measurement', 'in process', 'target', 'result']
  const rows: string[][] = [
    [
      '9',
      `evaluate one manifest's facts against ${r.policies} policies (mean of ${r.evaluations})`,
      us(r.meanUs),
      '< 1 ms',
      verdict(r.meanUs < 1000),
    ],
    ['', '  per evaluation: p50, p99, max', `${p(50)}, ${p(99)}, ${us(max)}`, '', ''],
    ['', `  for reference: loading the ${r.policies} policies (YAML)`, ms(r.loadMs), '', ''],
  ]
  console.log('\npolicy evaluation (policy/evaluate.ts in the bench process, no services):\n')
  for (const line of renderColumns(header, rows)) console.log(line)
  const passed = rows.filter((row) => row[4] === 'PASS').length
  console.log(`\ntargets met: ${passed}/1`)
  console.log('\ndetails:')
  const k = r.kinds
  console.log(
    `  the set: ${r.policies} policies, all matching docker.io/bench/app:v1.2.3; ` +
      `${k.keyless} with keyless authorities, ${k.tagScoped} tag-scoped, ${k.cel} with CEL, ` +
      `${k.attestations} requiring provenance, ${k.audit} in audit mode`
  )
  console.log(
    `  every evaluation: ${r.outcome}, ${r.rules} rule outcomes; ` +
      `${r.warmup} untimed evaluations first, each timed one with performance.now()`
  )
}

/**
 * What each cold pull cost in CPU, and the least wall time that cost allows on this machine's
 * cores: a pull through Customs pays for curl, the registry and Customs' own threads at once.
 */
function coldCpuLines(pairs: readonly ColdPull[]): string[] {
  const ms = (n: number): string => n.toFixed(0)
  const lines = [`cold pairs, CPU ms (schedstat per thread; curl in 10 ms ticks), ${CORES} cores:`]
  for (const [i, { cpu, customs, nginx }] of pairs.entries()) {
    const c = cpu.customs
    const t = c.customs
    const floor = c.total / CORES / 1000
    lines.push(
      `  ${i + 1}. Customs pull: curl ${ms(c.client)} + registry ${ms(c.server)} + Customs ${t === undefined ? '?' : `${ms(t.main)} main, ${ms(t.hasher)} hash worker, ${ms(t.rest)} other threads`}` +
        ` = ${ms(c.total)}; spread over ${CORES} cores at least ${floor.toFixed(3)} s (${(floor / nginx.seconds).toFixed(2)}x nginx), took ${customs.seconds.toFixed(3)} s` +
        ` | nginx pull: curl ${ms(cpu.nginx.client)} + nginx ${ms(cpu.nginx.server)} = ${ms(cpu.nginx.total)}` +
        ` | the bench process meanwhile: ${ms(c.bench)} and ${ms(cpu.nginx.bench)}`
    )
  }
  return lines
}
