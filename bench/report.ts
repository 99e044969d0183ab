// What the pull benchmark prints: the command and machine, then the results table with ratios and
// target verdicts (pipe-separated, so it pastes into Markdown as is), then the details.

import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os'
import { relative } from 'node:path'
import { run } from '../test/helpers/processes.js'
import type { ConcurrentPulls, Pull, WrkResult } from './clients.js'
import type { RssReport, UpstreamGets } from './services.js'

export const MiB = 1024 * 1024

/** The run's settings. */
export interface Settings {
  quick: boolean
  big: number
  mid: number
  clients: number
  warmRuns: number
  wrkSeconds: number
  wrkConnections: number
}

/** Everything measured, Customs and nginx side by side. */
export interface Results {
  direct: Pull
  cold: { customs: Pull; nginx: Pull; upstream: UpstreamGets }
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

function renderTable(rows: readonly Row[]): string[] {
  const header: Row = {
    id: '#',
    measurement: 'measurement',
    customs: 'Customs',
    nginx: 'nginx',
    ratio: 'Customs/nginx',
    target: 'target',
    result: 'result',
  }
  const keys = ['id', 'measurement', 'customs', 'nginx', 'ratio', 'target', 'result'] as const
  const all = [header, ...rows]
  const widths = keys.map((k) => Math.max(...all.map((r) => r[k].length)))
  const line = (r: Row): string =>
    `| ${keys.map((k, i) => r[k].padEnd(widths[i] ?? 0)).join(' | ')} |`
  const rule = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`
  return [line(header), rule, ...rows.map(line)]
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
  console.log(`mode: ${settings.quick ? 'quick' : 'full'} (${sizes}, wrk ${wrkSeconds} s)`)
  if (profile) console.log('profile: on (Customs runs with --cpu-prof: slower)')
}

/** The table, the targets met, and the details behind them. */
export function printResults(r: Results, s: Settings): void {
  const size = (bytes: number): string => `${bytes / MiB} MiB`
  const warmC = median(r.warm.customs.map((p) => p.seconds))
  const warmN = median(r.warm.nginx.map((p) => p.seconds))
  const coldRatio = r.cold.customs.seconds / r.cold.nginx.seconds
  const warmRatio = warmC / warmN
  const manyRatio = r.concurrent.customs.wallSeconds / r.concurrent.nginx.wallSeconds
  const rpsRatio = r.rps.customs.rps / r.rps.nginx.rps
  const peakMB = (Math.max(r.rss.peakRssKiB, r.rss.hwmKiB) * 1024) / 1e6
  const wrkCommand = `wrk -t1 -c${s.wrkConnections} -d${s.wrkSeconds}s`
  const rows: Row[] = [
    {
      id: '1',
      measurement: `cold pull, ${size(s.big)} blob (curl time_total)`,
      customs: timeAndRate(r.cold.customs.seconds, s.big),
      nginx: timeAndRate(r.cold.nginx.seconds, s.big),
      ratio: ratio(coldRatio),
      target: '<= 1.6x',
      result: verdict(coldRatio <= 1.6),
    },
    {
      id: '',
      measurement: '  upstream GETs of that blob (registry access log)',
      customs: fetches(r.cold.upstream),
      nginx: '',
      ratio: '',
      target: 'exactly 1',
      result: verdict(r.cold.upstream.count === 1),
    },
    {
      id: '',
      measurement: '  for reference: curl straight from the registry',
      customs: timeAndRate(r.direct.seconds, s.big),
      nginx: '',
      ratio: `${ratio(r.direct.seconds / r.cold.nginx.seconds)} (registry/nginx)`,
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
      `was size-checked; both cold ones and client 0 of each ${s.clients} were sha256-checked.`
  )

  console.log('\ndetails:')
  const secs = (pulls: Pull[]): string => pulls.map((p) => p.seconds.toFixed(3)).join(' ')
  console.log(`  warm Customs runs (s): ${secs(r.warm.customs)}   nginx: ${secs(r.warm.nginx)}`)
  const warmCaches = [...new Set(r.warm.customs.map((p) => p.cache))].join('/')
  const concurrentCaches = histogram(r.concurrent.customs.pulls.map((p) => p.cache || '?'))
  console.log(
    `  Customs-Cache: cold ${r.cold.customs.cache}, warm ${warmCaches}; ` +
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
