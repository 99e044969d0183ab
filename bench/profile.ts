// Summarises a V8 .cpuprofile (from node --cpu-prof): self time per function and per category,
// for the whole profile or for time windows (benchmark phases) on the shared monotonic clock.

import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}

interface ProfileNode {
  id: number
  callFrame: CallFrame
}

interface CpuProfile {
  nodes: ProfileNode[]
  /** Microseconds on the monotonic clock (CLOCK_MONOTONIC, as process.hrtime on Linux). */
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

/** Named spans of time, [start, end) in microseconds of the monotonic clock. */
export interface Window {
  name: string
  spans: Array<[number, number]>
}

/** The monotonic clock in microseconds, as V8 stamps profile samples. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

async function readProfile(file: string): Promise<CpuProfile> {
  return JSON.parse(await readFile(file, 'utf8')) as CpuProfile
}

/** Whether the profile's clock matches ours: it started between the spawn and the readiness. */
function clockAligned(profile: CpuProfile, spawnUs: number, readyUs: number): boolean {
  return profile.startTime >= spawnUs - 1_000_000 && profile.startTime <= readyUs + 1_000_000
}

/** `hono/dist/context.js`, `dist/cache/fill.js` (Customs), `node:internal/...`. */
function shortUrl(url: string): string {
  const modules = url.lastIndexOf('/node_modules/')
  if (modules >= 0) return url.slice(modules + '/node_modules/'.length)
  const dist = url.indexOf('/dist/')
  if (dist >= 0) return url.slice(dist + 1)
  return url
}

/** Customs code, a dependency (by package), Node internals, or V8's own buckets. */
function category(frame: CallFrame): string {
  const { url, functionName } = frame
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  if (url.includes('/node_modules/')) {
    const rest = url.slice(url.lastIndexOf('/node_modules/') + '/node_modules/'.length)
    const parts = rest.split('/')
    return parts[0]?.startsWith('@') === true ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? rest)
  }
  if (url.includes('/dist/')) return 'customs'
  if (url.startsWith('node:')) {
    const internal = /^node:internal\/(deps\/)?([^/]+)/.exec(url)
    return internal === null ? url : `node:${internal[2] ?? ''}`
  }
  return url
}

/** Self time per function and category within one window. */
interface WindowSummary {
  name: string
  totalMs: number
  /** [category, ms], largest first, `(idle)` included. */
  categories: Array<[string, number]>
  /** [function at file:line, category, ms], largest first, `(idle)` excluded. */
  functions: Array<[string, string, number]>
}

/** Attributes each sample's interval to its node's function, within each window. */
function summarise(profile: CpuProfile, windows: readonly Window[]): WindowSummary[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const summaries = windows.map((w) => ({
    window: w,
    categories: new Map<string, number>(),
    functions: new Map<string, { category: string; us: number }>(),
    totalUs: 0,
  }))
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0
    t += delta
    const next = profile.timeDeltas[i + 1] ?? 0
    const node = byId.get(profile.samples[i] ?? -1)
    if (node === undefined) continue
    const frame = node.callFrame
    const cat = category(frame)
    const where = `${shortUrl(frame.url)}:${frame.lineNumber + 1}`
    const name = `${frame.functionName || '(anonymous)'} ${where}`
    for (const s of summaries) {
      if (!s.window.spans.some(([start, end]) => t >= start && t < end)) continue
      s.totalUs += next
      s.categories.set(cat, (s.categories.get(cat) ?? 0) + next)
      if (cat === '(idle)') continue
      const entry = s.functions.get(name) ?? { category: cat, us: 0 }
      entry.us += next
      s.functions.set(name, entry)
    }
  }
  return summaries.map((s) => ({
    name: s.window.name,
    totalMs: s.totalUs / 1000,
    categories: [...s.categories]
      .map(([c, us]): [string, number] => [c, us / 1000])
      .sort((a, b) => b[1] - a[1]),
    functions: [...s.functions]
      .map(([f, e]): [string, string, number] => [f, e.category, e.us / 1000])
      .sort((a, b) => b[2] - a[2]),
  }))
}

/** Text lines: per window, the categories and the `top` functions by self time. */
function formatSummaries(summaries: readonly WindowSummary[], top = 12): string[] {
  const lines: string[] = []
  for (const s of summaries) {
    const pct = (ms: number): string => `${((100 * ms) / Math.max(s.totalMs, 1e-9)).toFixed(1)}%`
    lines.push(`  ${s.name}: ${(s.totalMs / 1000).toFixed(2)} s sampled`)
    const cats = s.categories.slice(0, 10).map(([c, ms]) => `${c} ${pct(ms)}`)
    lines.push(`    by category: ${cats.join(', ')}`)
    for (const [fn, , ms] of s.functions.slice(0, top)) {
      lines.push(`    ${ms.toFixed(0).padStart(7)} ms ${pct(ms).padStart(6)}  ${fn}`)
    }
  }
  return lines
}

/**
 * Prints the self-time summary of the .cpuprofile Customs wrote into `dir`: per window when the
 * profile's clock matches ours (it started between `spawnUs` and `readyUs`), and for the whole run.
 */
export async function printProfile(
  dir: string,
  windows: readonly Window[],
  spawnUs: number,
  readyUs: number
): Promise<void> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'))
  if (files[0] === undefined) {
    console.log('\nprofile: Customs wrote no .cpuprofile (did it exit cleanly?)')
    return
  }
  const file = join(dir, files[0])
  const profile = await readProfile(file)
  if (process.env.CUSTOMS_KEEP_TMP === '1') console.log(`\nprofile kept: ${file}`)
  const whole: Window = { name: 'whole run', spans: [[profile.startTime, profile.endTime + 1]] }
  const aligned = clockAligned(profile, spawnUs, readyUs)
  const how = aligned ? 'by phase' : 'whole run only: the profile clock did not match'
  console.log(`\nCustoms CPU profile, self time (${how}):`)
  const summaries = summarise(profile, aligned ? [...windows, whole] : [whole])
  for (const line of formatSummaries(summaries)) console.log(line)
}
