// Clients of the pull benchmark: curl child processes for blob pulls (the same client cost on both
// sides), wrk for requests per second, a keep-alive node:http client for per-request latency, and
// checks that every measured download was right.

import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { Agent, request as httpRequest } from 'node:http'
import { performance } from 'node:perf_hooks'
import { isolatedEnv, run } from '../test/helpers/processes.js'

/** The Accept header of the manifest requests (containerd's, less the Docker types). */
export const MANIFEST_ACCEPT =
  'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'

/** One curl download. */
export interface Pull {
  /** curl's `time_total`. */
  seconds: number
  bytes: number
  status: number
  /** The `Customs-Cache` response header ('' from nginx). */
  cache: string
}

/** Options for {@link curlGet}. */
export interface CurlOptions {
  /** Where the body goes; default /dev/null. */
  output?: string
  headers?: readonly string[]
  timeoutMs?: number
}

function curlArgs(url: string, options: CurlOptions): string[] {
  const headers = (options.headers ?? []).flatMap((h) => ['-H', h])
  const format = '%{time_total} %{size_download} %{http_code} %header{customs-cache}'
  const args = ['-s', '-S', '--noproxy', '*', '-o', options.output ?? '/dev/null', '-w', format]
  return [...args, ...headers, url]
}

function parsePull(stdout: string): Pull {
  const [seconds, bytes, status, cache] = stdout.trim().split(/\s+/)
  return {
    seconds: Number(seconds),
    bytes: Number(bytes),
    status: Number(status),
    cache: cache ?? '',
  }
}

/** GETs `url` with curl, no proxy, body to `output`; fails on any transport error. */
export async function curlGet(url: string, options: CurlOptions = {}): Promise<Pull> {
  const result = await run('curl', curlArgs(url, options), {
    timeoutMs: options.timeoutMs ?? 600_000,
  })
  return parsePull(result.stdout)
}

/** Throws unless the pull answered 200 with exactly `size` bytes. */
export function expectComplete(pull: Pull, size: number, what: string): Pull {
  if (pull.status !== 200 || pull.bytes !== size || !Number.isFinite(pull.seconds)) {
    throw new Error(
      `${what}: wrong download: HTTP ${pull.status}, ${pull.bytes} of ${size} bytes ` +
        `(a benchmark of failed downloads measures nothing)`
    )
  }
  return pull
}

/** Several curl downloads started at once. */
export interface ConcurrentPulls {
  /** From the release of the start barrier until the last curl exited. */
  wallSeconds: number
  pulls: Pull[]
}

/** A shell that says it is ready, waits for a line on stdin, then becomes curl. */
const BARRIER = 'echo ready; read _; exec "$@"'
const READY = 'ready\n'

/**
 * Runs `clients` curl processes against `url` at the same moment: each is spawned behind a
 * barrier (a shell waiting on its stdin), and all are released together once every one is ready,
 * so spawning 32 processes is not part of the measured wall time. Client 0 writes its body to
 * `firstOutput` (for a digest check), the others to /dev/null. Every download must be complete.
 */
export async function concurrentPulls(
  url: string,
  clients: number,
  size: number,
  firstOutput: string,
  what: string
): Promise<ConcurrentPulls> {
  const children: ChildProcess[] = []
  try {
    const runs = Array.from({ length: clients }, (_, i) => {
      const args = curlArgs(url, i === 0 ? { output: firstOutput } : {})
      const child = spawn('sh', ['-c', BARRIER, 'sh', 'curl', ...args], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: isolatedEnv(),
      })
      children.push(child)
      return barrierRun(child)
    })
    await withTimeout(Promise.all(runs.map((r) => r.ready)), 60_000, `${what}: curl start`)
    const started = performance.now()
    for (const child of children) child.stdin?.end('\n')
    const outputs = await withTimeout(Promise.all(runs.map((r) => r.done)), 600_000, what)
    const wallSeconds = (performance.now() - started) / 1000
    const pulls = outputs.map((out, i) => {
      if (out.code !== 0) {
        throw new Error(`${what}, client ${i}: curl exited ${out.code}: ${out.err}`)
      }
      return expectComplete(parsePull(out.stdout), size, `${what}, client ${i}`)
    })
    return { wallSeconds, pulls }
  } finally {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }
}

interface BarrierRun {
  /** Resolves when the shell printed `ready`; rejects if it exits first. */
  ready: Promise<void>
  done: Promise<{ code: number | null; stdout: string; err: string }>
}

function barrierRun(child: ChildProcess): BarrierRun {
  let out = ''
  let err = ''
  let onReady: () => void = () => {}
  let onEarlyExit: (error: Error) => void = () => {}
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve
    onEarlyExit = reject
  })
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8')
    if (out.startsWith(READY)) onReady()
  })
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')))
  const done = new Promise<{ code: number | null; stdout: string; err: string }>((resolve) => {
    child.once('error', (error) => (err += error.message))
    child.once('close', (code) => {
      onEarlyExit(new Error(`curl client exited before the start (${code}): ${err}`))
      resolve({ code, stdout: out.startsWith(READY) ? out.slice(READY.length) : out, err })
    })
  })
  return { ready, done }
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * `sha256:<hex>` of a file, read through one buffer. A stream's fresh 4 MiB chunks left 200 MiB of
 * garbage per cold pull's check, which the bench process then collected while the next pull was
 * being measured, on the same two cores.
 */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  const buffer = Buffer.allocUnsafeSlow(4 * 1024 * 1024)
  const handle = await open(path, 'r')
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null)
      if (bytesRead === 0) break
      hash.update(buffer.subarray(0, bytesRead))
    }
  } finally {
    await handle.close()
  }
  return `sha256:${hash.digest('hex')}`
}

/** Throws unless the file at `path` hashes to `digest`. */
export async function expectDigest(path: string, digest: string, what: string): Promise<void> {
  const actual = await sha256File(path)
  if (actual !== digest) throw new Error(`${what}: body hashes to ${actual}, expected ${digest}`)
}

/** What wrk measured. */
export interface WrkResult {
  rps: number
  requests: number
  latencyAvg: string
  latencyMax: string
  /** Answers that were not 2xx/3xx: any makes the run worthless. */
  non2xx: number
  /** `connect 0, read 0, write 0, timeout 0`, when wrk reports socket errors. */
  socketErrors: string | undefined
}

/** `wrk -t1 -c<connections> -d<seconds>s` with `headers`; throws on non-2xx answers. */
export async function wrk(
  url: string,
  seconds: number,
  connections: number,
  headers: readonly string[]
): Promise<WrkResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, ...headers.flatMap((h) => ['-H', h])]
  const { stdout } = await run('wrk', [...args, url], { timeoutMs: (seconds + 60) * 1000 })
  const number = (re: RegExp): number => Number(re.exec(stdout)?.[1] ?? NaN)
  const latency = /Latency\s+(\S+)\s+(\S+)\s+(\S+)/.exec(stdout)
  const result: WrkResult = {
    rps: number(/Requests\/sec:\s+([\d.]+)/),
    requests: number(/(\d+) requests in/),
    latencyAvg: latency?.[1] ?? '?',
    latencyMax: latency?.[3] ?? '?',
    non2xx: number(/Non-2xx or 3xx responses:\s+(\d+)/) || 0,
    socketErrors: /Socket errors:\s+(.*)/.exec(stdout)?.[1]?.trim(),
  }
  if (!Number.isFinite(result.rps) || result.requests === 0 || result.non2xx > 0) {
    throw new Error(`wrk against ${url}: wrong answers or none:\n${stdout}`)
  }
  return result
}

/** One answer of {@link KeepAliveClient.get}. */
export interface Answer {
  status: number
  /** The `Docker-Content-Digest` header ('' when absent). */
  digest: string
  body: Buffer
  /** From the call until the last body byte, as the client sees it. */
  ms: number
}

/**
 * Sequential GETs over one kept-alive connection (node:http, one socket), timed from the call to
 * the last body byte: the latency a client with a warm connection sees, client overhead included.
 */
export class KeepAliveClient {
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 1 })

  get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const started = performance.now()
      const req = httpRequest(url, { agent: this.#agent, headers }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.once('error', reject)
        res.once('end', () => {
          const header = res.headers['docker-content-digest']
          resolve({
            status: res.statusCode ?? 0,
            digest: typeof header === 'string' ? header : '',
            body: Buffer.concat(chunks),
            ms: performance.now() - started,
          })
        })
      })
      req.setTimeout(60_000, () => req.destroy(new Error(`GET ${url} timed out after 60 s`)))
      req.once('error', reject)
      req.end()
    })
  }

  close(): void {
    this.#agent.destroy()
  }
}
