// The services of the pull benchmark: Customs from the built dist as its own process (optionally
// with a trust section), nginx as the physical reference, the registry's access log as the upstream
// request counter, and RSS sampling.

import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, waitForHttp } from '../test/helpers/ports.js'
import {
  isolatedEnv,
  spawnService,
  tailFile,
  whileRunning,
  type ServiceProcess,
} from '../test/helpers/processes.js'

/** The repository root. */
export const ROOT = resolve(import.meta.dirname, '..')

/** A started HTTP service. */
export interface Service {
  readonly url: string
  readonly process: ServiceProcess
  /** Graceful stop (SIGTERM), then SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>
}

/**
 * Launches a service on a free port and waits until `probePath` answers HTTP. Another process may
 * take the port between freePort() and the bind: retried twice. `extraLogs` are log files whose
 * tails explain a failed start.
 */
async function startOnFreePort(
  what: string,
  launch: (port: number) => Promise<ServiceProcess>,
  probePath: string,
  extraLogs: readonly string[] = []
): Promise<Service> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const proc = await launch(port)
    const url = `http://127.0.0.1:${port}`
    try {
      await whileRunning(proc, waitForHttp(`${url}${probePath}`, 60_000))
      return {
        url,
        process: proc,
        async stop(timeoutMs = 10_000) {
          await proc.stop(timeoutMs)
        },
      }
    } catch (error) {
      await proc.kill()
      const tails = [proc.tail(), ...extraLogs.map((file) => tailFile(file))].join('\n')
      if (attempt < 3 && /address already in use/i.test(tails)) continue
      const message = error instanceof Error ? error.message : String(error)
      const tail = message.includes('log tail:') ? '' : `\n${what} log tail:\n${proc.tail()}`
      const extra = extraLogs
        .map((file) => [file, tailFile(file)] as const)
        .filter(([, text]) => text !== '')
        .map(([file, text]) => `\n${file}:\n${text}`)
        .join('')
      throw new Error(`${what} did not start: ${message}${tail}${extra}`)
    }
  }
}

/**
 * The node flags Customs is started with, as deploy/Dockerfile's ENTRYPOINT, `npm start` and
 * bin/customs.js start it: the bench measures the process as it is deployed.
 * --max-semi-space-size=8 halves V8's young generation (32 to 16 MiB resident): measured on the
 * bench's manifest phase, scavenges took about the same CPU per request (1.4-1.5 us of ~70 us)
 * and peak RSS fell by 11-16 MiB.
 * --no-memory-reducer: V8's memory reducer runs memory-reducing mark-compacts once a heap has been
 * quiet for about 8 s, and afterwards every warm manifest GET cost 45-54 us of main-thread CPU
 * instead of 35-40 (19.6-20.9k against 26-29k requests per second, one process waiting 12 s or
 * not before wrk, several runs), for as long as was measured. That was the bench's "slow mode":
 * its manifest phase starts after quiet spells. The heap it would give back is a few MiB.
 */
export const CUSTOMS_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8', '--no-memory-reducer']

/** Options for {@link startCustoms}. */
export interface CustomsOptions {
  /** Its own temp dir: config, log, storage. */
  dir: string
  /** The upstream registry's URL, configured as the default upstream `docker.io`. */
  upstreamUrl: string
  /** When set, the process runs with `--cpu-prof --cpu-prof-dir <profileDir>`. */
  profileDir?: string
  /** When set, the `trust:` section: one trusted root and named public keys. */
  trust?: CustomsTrust
  /** Extra node flags (`--trace-gc`, say) for experiments, after {@link CUSTOMS_NODE_FLAGS}. */
  nodeArgs?: readonly string[]
}

/** A `trust:` section with one test root (no tlog or CT log, one timestamp) and keys. */
export interface CustomsTrust {
  /** A trusted_root.json. */
  trustedRoot: string
  keys: ReadonlyArray<{ name: string; pem: string }>
}

/** The YAML lines of `trust` (JSON strings are YAML double-quoted scalars). */
function trustYaml(trust: CustomsTrust): string[] {
  const root = `name: bench, trustedRoot: ${JSON.stringify(trust.trustedRoot)}`
  const thresholds = 'tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 1'
  return [
    'trust:',
    '  roots:',
    `    - { ${root}, ${thresholds} }`,
    '  keys:',
    ...trust.keys.map((k) => `    - { name: ${k.name}, pem: ${JSON.stringify(k.pem)} }`),
  ]
}

/**
 * Starts `node FLAGS dist/main.js serve --config FILE` (the built entry point, no tsx) with storage in
 * `dir`, state in memory, one default upstream, log level warn and the optional `trust` section;
 * waits for /healthz.
 */
export function startCustoms(options: CustomsOptions): Promise<Service> {
  const { dir, upstreamUrl, profileDir, trust, nodeArgs = [] } = options
  const launch = async (port: number): Promise<ServiceProcess> => {
    const configFile = join(dir, 'customs.yaml')
    const config = [
      `listen: { host: 127.0.0.1, port: ${port} }`,
      'log: { level: warn }',
      `storage: { path: ${JSON.stringify(join(dir, 'storage'))} }`,
      'state: { backend: memory }',
      'upstreams:',
      '  - name: docker.io',
      `    url: ${upstreamUrl}`,
      '    default: true',
      ...(trust === undefined ? [] : trustYaml(trust)),
      '',
    ].join('\n')
    await writeFile(configFile, config)
    const profile = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]
    return spawnService({
      name: 'customs',
      command: process.execPath,
      args: [...CUSTOMS_NODE_FLAGS, ...nodeArgs, ...profile, join(ROOT, 'dist/main.js'), 'serve', '--config', configFile],
      dir,
      // The bench runs under tsx; Customs must not inherit loader options from NODE_OPTIONS.
      env: isolatedEnv({ NODE_OPTIONS: '' }),
    })
  }
  return startOnFreePort('customs', launch, '/healthz')
}

/**
 * Starts nginx in the foreground (`daemon off; master_process off; worker_processes 1;`) serving
 * `root` with `sendfile on` and otherwise default settings; its error log, access log, pid file
 * and temp paths are in `dir`.
 */
export function startNginx(dir: string, root: string): Promise<Service> {
  const errorLog = join(dir, 'error.log')
  const launch = async (port: number): Promise<ServiceProcess> => {
    const temp = join(dir, 'temp')
    await mkdir(temp, { recursive: true })
    const configFile = join(dir, 'nginx.conf')
    const config = `daemon off;
master_process off;
worker_processes 1;
error_log ${errorLog} warn;
pid ${join(dir, 'nginx.pid')};
events {}
http {
  access_log ${join(dir, 'access.log')};
  client_body_temp_path ${join(temp, 'client_body')};
  proxy_temp_path ${join(temp, 'proxy')};
  fastcgi_temp_path ${join(temp, 'fastcgi')};
  uwsgi_temp_path ${join(temp, 'uwsgi')};
  scgi_temp_path ${join(temp, 'scgi')};
  sendfile on;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`
    await writeFile(configFile, config)
    return spawnService({
      name: 'nginx',
      command: 'nginx',
      args: ['-p', dir, '-e', errorLog, '-c', configFile],
      dir,
    })
  }
  return startOnFreePort('nginx', launch, '/', [errorLog])
}

/** GETs of one blob that reached the registry, from its access log. */
export interface UpstreamGets {
  /** Requests, whatever their status. */
  count: number
  /** Response bytes the registry logged for them. */
  bytes: number
}

// Combined log format: host ident user [time] "METHOD PATH PROTO" status bytes "referer" "agent"
const ACCESS_LINE = /^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"/

/**
 * Counts the GETs of `/v2/<repo>/blobs/<digest>` in the registry's access log that did not come
 * from curl (the bench's own registry-direct pulls): that is, the fetches Customs made. The log
 * is written by the registry itself, so counting it costs the measured transfer nothing.
 */
export function countUpstreamGets(logFile: string, repo: string, digest: string): UpstreamGets {
  const path = `/v2/${repo}/blobs/${digest}`
  let count = 0
  let bytes = 0
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    const m = ACCESS_LINE.exec(line)
    if (m === null || m[1] !== 'GET' || m[5]?.startsWith('curl/') === true) continue
    if (m[2] !== path && m[2]?.startsWith(`${path}?`) !== true) continue
    count++
    bytes += m[4] === '-' || m[4] === undefined ? 0 : Number(m[4])
  }
  return { count, bytes }
}

/** One request in the registry's access log. */
export interface UpstreamRequest {
  method: string
  path: string
  status: number
}

/** The requests in the registry's access log under `pathPrefix`, in the order it logged them. */
export function upstreamRequests(logFile: string, pathPrefix = ''): UpstreamRequest[] {
  const requests: UpstreamRequest[] = []
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    const m = ACCESS_LINE.exec(line)
    if (m?.[1] === undefined || m[2]?.startsWith(pathPrefix) !== true) continue
    requests.push({ method: m[1], path: m[2], status: Number(m[3]) })
  }
  return requests
}

/** How many requests the registry logged under `pathPrefix`, whatever the method or client. */
export function countUpstreamRequests(logFile: string, pathPrefix = ''): number {
  return upstreamRequests(logFile, pathPrefix).length
}

/**
 * The request count once the access log has been still for `quietMs` (at most 5 s): the registry
 * logs a request after its response, a moment after Customs may already have answered.
 */
export async function settledUpstreamRequests(logFile: string, quietMs = 500): Promise<number> {
  const deadline = Date.now() + 5000
  let count = countUpstreamRequests(logFile)
  for (;;) {
    await sleep(quietMs)
    const now = countUpstreamRequests(logFile)
    if (now === count || Date.now() > deadline) return now
    count = now
  }
}

/**
 * The registry logs a request when its response is complete, which can be a moment after Customs'
 * client got its last byte: waits up to 5 s for a first GET, then 500 ms more for any late one.
 */
export async function settledUpstreamGets(
  logFile: string,
  repo: string,
  digest: string
): Promise<UpstreamGets> {
  const deadline = Date.now() + 5000
  while (countUpstreamGets(logFile, repo, digest).count === 0 && Date.now() < deadline) {
    await sleep(50)
  }
  await sleep(500)
  return countUpstreamGets(logFile, repo, digest)
}

/** A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), in KiB; undefined once the pid is gone. */
export function procStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
    return m?.[1] === undefined ? undefined : Number(m[1])
  } catch {
    return undefined
  }
}

/** Samples a process's VmRSS every `intervalMs` and keeps the peak, overall and per phase. */
export class RssSampler {
  #timer: NodeJS.Timeout | undefined
  #peakKiB = 0
  #samples = 0
  #phase = 'setup'
  readonly #phasePeaks = new Map<string, number>()

  constructor(
    readonly pid: number,
    readonly intervalMs = 200
  ) {}

  start(): void {
    this.sample()
    this.#timer = setInterval(() => this.sample(), this.intervalMs)
  }

  /** Samples now, then attributes the following samples to `name`. */
  phase(name: string): void {
    this.sample()
    this.#phase = name
    this.sample()
  }

  sample(): void {
    const rss = procStatusKiB(this.pid, 'VmRSS')
    if (rss === undefined) return
    this.#samples++
    this.#peakKiB = Math.max(this.#peakKiB, rss)
    this.#phasePeaks.set(this.#phase, Math.max(this.#phasePeaks.get(this.#phase) ?? 0, rss))
  }

  /** Stops sampling; returns the peak sampled VmRSS (overall, by phase) and VmHWM, in KiB. */
  stop(): RssReport {
    this.sample()
    clearInterval(this.#timer)
    const hwmKiB = procStatusKiB(this.pid, 'VmHWM') ?? 0
    return {
      peakRssKiB: this.#peakKiB,
      hwmKiB,
      samples: this.#samples,
      phases: [...this.#phasePeaks],
    }
  }
}

/** What {@link RssSampler.stop} reports, in KiB. */
export interface RssReport {
  peakRssKiB: number
  hwmKiB: number
  samples: number
  /** [phase, peak VmRSS] in phase order. */
  phases: Array<[string, number]>
}
