// Child processes for tests: long-running services with their output in a log file, and one-shot
// commands with a timeout. Every child is killed when the test process exits, however it exits.

import { spawn, type ChildProcess } from 'node:child_process'
import { appendFileSync, closeSync, openSync, readFileSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A dead loopback address: every client fallback and proxy points here, so nothing leaves. */
export const DEAD_END = '127.0.0.1:9'

const live = new Set<ChildProcess>()
const tempDirs = new Set<string>()
let cleanupRegistered = false
const keepTemp = (): boolean => process.env.CUSTOMS_KEEP_TMP === '1'

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    // Children are started detached, so the negative pid reaches their own children too.
    process.kill(-child.pid, signal)
  } catch {
    try {
      child.kill(signal)
    } catch {
      // Already gone.
    }
  }
}

/** Kills every live child and removes leftover temp dirs; synchronous, so it works at exit. */
function cleanupNow(): void {
  for (const child of live) killGroup(child, 'SIGKILL')
  if (keepTemp()) return
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {
      // Best effort at exit.
    }
  }
  tempDirs.clear()
}

function registerCleanup(): void {
  if (cleanupRegistered) return
  cleanupRegistered = true
  process.on('exit', cleanupNow)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      cleanupNow()
      process.removeListener(signal, handler)
      // Re-raise so the default action (exit) still happens once our children are gone.
      process.kill(process.pid, signal)
    }
    process.on(signal, handler)
  }
}

function track(child: ChildProcess): void {
  registerCleanup()
  live.add(child)
  child.once('exit', () => live.delete(child))
}

/**
 * The environment for client and service processes: the test's own environment with every proxy
 * variable pointed at {@link DEAD_END} (loopback exempt), so a misrouted request fails fast and
 * visibly instead of reaching the internet.
 */
export function isolatedEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const proxy = `http://${DEAD_END}`
  // The harness's own switch, not a setting: Customs refuses CUSTOMS_* variables it does not know.
  const { CUSTOMS_KEEP_TMP: _harnessOnly, ...inherited } = process.env
  return {
    ...inherited,
    HTTPS_PROXY: proxy,
    HTTP_PROXY: proxy,
    https_proxy: proxy,
    http_proxy: proxy,
    ALL_PROXY: proxy,
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
    ...extra,
  }
}

/**
 * Creates a fresh directory under the OS temp dir, named `customs-<prefix>-XXXXXX`. It is removed
 * when the test process exits if {@link removeTempDir} was not called first.
 */
export async function makeTempDir(prefix: string): Promise<string> {
  registerCleanup()
  const dir = await mkdtemp(join(tmpdir(), `customs-${prefix}-`))
  tempDirs.add(dir)
  return dir
}

/**
 * Removes a temp dir now. With CUSTOMS_KEEP_TMP=1 set, temp dirs are kept, here and at exit, to
 * look at logs and state afterwards.
 */
export async function removeTempDir(dir: string): Promise<void> {
  if (keepTemp()) return
  tempDirs.delete(dir)
  await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined)
}

/** How a process ended. */
export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
}

/** Options for {@link spawnService}. */
export interface SpawnServiceOptions {
  /** Short name used in messages and the log file name. */
  name: string
  command: string
  args: readonly string[]
  /** Directory that receives `<name>.log`; usually the service's own temp dir. */
  dir: string
  /** Defaults to {@link isolatedEnv}(). */
  env?: NodeJS.ProcessEnv
  cwd?: string
}

/** A long-running child process started by {@link spawnService}. */
export interface ServiceProcess {
  readonly name: string
  readonly pid: number
  /** stdout and stderr of the child, interleaved. */
  readonly logFile: string
  /**
   * Resolves when the process has exited (never rejects). The child is unref'd, so awaiting this
   * alone does not keep the test process alive; use stop() or kill() to wait for an exit.
   */
  readonly exited: Promise<ExitInfo>
  /** Whether the process is still running. */
  isRunning(): boolean
  /** The last `lines` lines of the log, for assertion and error messages. */
  tail(lines?: number): string
  /** SIGTERM, then SIGKILL if it has not exited after `timeoutMs` (default 10 s). */
  stop(timeoutMs?: number): Promise<ExitInfo>
  /** SIGKILL now, and wait for the exit. */
  kill(): Promise<ExitInfo>
}

/**
 * Starts a long-running child with stdout and stderr appended to `<dir>/<name>.log`. The child is
 * unref'd (a forgotten service does not keep the test process alive) and is killed, with its whole
 * process group, when the test process exits or is interrupted.
 */
export function spawnService(options: SpawnServiceOptions): ServiceProcess {
  const logFile = join(options.dir, `${options.name}.log`)
  const fd = openSync(logFile, 'a')
  let child: ChildProcess
  try {
    child = spawn(options.command, [...options.args], {
      cwd: options.cwd ?? options.dir,
      env: options.env ?? isolatedEnv(),
      stdio: ['ignore', fd, fd],
      detached: true,
    })
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(fd)
  }
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
    child.once('error', (error) => {
      appendNote(logFile, `spawn error: ${error.message}`)
      resolve({ code: null, signal: null })
    })
  })
  if (child.pid === undefined) {
    // spawn failed (ENOENT and the like); 'error' fires on the next tick.
    return deadService(options.name, logFile, exited)
  }
  track(child)
  child.unref()
  const pid = child.pid
  let done = false
  void exited.then(() => (done = true))

  const waitExit = async (timeoutMs: number): Promise<boolean> => {
    if (done) return true
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    const result = await Promise.race([exited.then(() => true as const), timeout])
    clearTimeout(timer)
    return result
  }

  return {
    name: options.name,
    pid,
    logFile,
    exited,
    isRunning: () => !done,
    tail: (lines = 40) => tailFile(logFile, lines),
    async stop(timeoutMs = 10_000) {
      if (!done) {
        // The child is unref'd: without this, awaiting its exit would let the event loop drain.
        child.ref()
        killGroup(child, 'SIGTERM')
        if (!(await waitExit(timeoutMs))) killGroup(child, 'SIGKILL')
      }
      return exited
    },
    async kill() {
      if (!done) child.ref()
      killGroup(child, 'SIGKILL')
      return exited
    },
  }
}

function deadService(name: string, logFile: string, exited: Promise<ExitInfo>): ServiceProcess {
  return {
    name,
    pid: -1,
    logFile,
    exited,
    isRunning: () => false,
    tail: (lines = 40) => tailFile(logFile, lines),
    stop: () => exited,
    kill: () => exited,
  }
}

function appendNote(file: string, note: string): void {
  try {
    appendFileSync(file, `${note}\n`)
  } catch {
    // Best effort: the note only helps debugging.
  }
}

/** The last `lines` lines of a text file ('' if it cannot be read). */
export function tailFile(file: string, lines = 40): string {
  try {
    const text = readFileSync(file, 'utf8')
    return text.split('\n').slice(-lines - 1).join('\n').trimEnd()
  } catch {
    return ''
  }
}

/**
 * Races `work` against the service's exit: if the service dies first, rejects with its log tail.
 * Use it around readiness waits so a crash fails in milliseconds instead of at the timeout.
 */
export async function whileRunning<T>(service: ServiceProcess, work: Promise<T>): Promise<T> {
  const died = service.exited.then((info) => {
    throw new Error(
      `${service.name} exited early (code ${info.code}, signal ${info.signal}); log tail:\n` +
        service.tail()
    )
  })
  return Promise.race([work, died])
}

/** An error whose message ends with the service's log tail (unless it already has it). */
export function withLogTail(what: string, error: unknown, service: ServiceProcess): Error {
  const message = error instanceof Error ? error.message : String(error)
  if (message.includes('log tail:')) return new Error(`${what}: ${message}`)
  return new Error(`${what}: ${message}\n${service.name} log tail:\n${service.tail()}`)
}

/** The result of {@link run}. */
export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** The command line, for messages. */
  commandLine: string
}

/** Thrown by {@link run} for a non-zero exit or a timeout; the message carries the stderr tail. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly result: RunResult,
    readonly timedOut: boolean
  ) {
    super(message)
    this.name = 'CommandError'
  }
}

/** Options for {@link run}. */
export interface RunOptions {
  /** Kill the command (whole process group) after this long. Default 120 s. */
  timeoutMs?: number
  /** Defaults to {@link isolatedEnv}(). */
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Resolve with the result instead of throwing when the exit code is not 0. */
  allowFailure?: boolean
}

const OUTPUT_LIMIT = 32 * 1024 * 1024

/**
 * Runs a command to completion with a timeout, capturing stdout and stderr as UTF-8. Throws a
 * {@link CommandError} on timeout and, unless `allowFailure`, on a non-zero exit.
 */
export function run(
  command: string,
  args: readonly string[],
  options: RunOptions = {}
): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 120_000
  const commandLine = [command, ...args].map(quoteArg).join(' ')
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: options.env ?? isolatedEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    let outSize = 0
    let errSize = 0
    child.stdout?.on('data', (chunk: Buffer) => {
      if ((outSize += chunk.length) <= OUTPUT_LIMIT) out.push(chunk)
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      if ((errSize += chunk.length) <= OUTPUT_LIMIT) err.push(chunk)
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child, 'SIGKILL')
    }, timeoutMs)
    if (child.pid !== undefined) track(child)
    child.once('error', (error) => {
      clearTimeout(timer)
      reject(new Error(`cannot run ${commandLine}: ${error.message}`))
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      const result: RunResult = {
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        commandLine,
      }
      const output = describeOutput(result)
      if (timedOut) {
        const message = `${commandLine} timed out after ${timeoutMs} ms${output}`
        reject(new CommandError(message, result, true))
      } else if (code !== 0 && options.allowFailure !== true) {
        const message = `${commandLine} exited with ${code ?? signal}${output}`
        reject(new CommandError(message, result, false))
      } else {
        resolve(result)
      }
    })
  })
}

function describeOutput(result: RunResult): string {
  const tail = (text: string): string => text.trimEnd().split('\n').slice(-30).join('\n')
  const parts: string[] = []
  if (result.stderr.trim() !== '') parts.push(`stderr:\n${tail(result.stderr)}`)
  if (result.stdout.trim() !== '') parts.push(`stdout:\n${tail(result.stdout)}`)
  return parts.length === 0 ? '' : `\n${parts.join('\n')}`
}

function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`
}
