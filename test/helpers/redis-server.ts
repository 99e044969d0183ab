// A real redis-server for tests: free loopback port, own temp dir, killed when the test process
// exits. With REDIS_URL set that server is used instead, and stop/kill/restart refuse.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface RedisServerOptions {
  /** Turn on the append-only file (fsync on every write), so data survives kill() + restart(). */
  readonly appendonly?: boolean
}

export interface RedisServer {
  readonly url: string
  readonly port: number
  /** True when REDIS_URL points at a server this helper does not own. */
  readonly external: boolean
  /** SIGTERM, and wait for the process to exit. */
  stop(): Promise<void>
  /** SIGKILL, and wait for the process to exit: a crash, with no chance to save or say goodbye. */
  kill(): Promise<void>
  /** Starts again on the same port and directory (so the append-only file is read back). */
  restart(): Promise<void>
  /** SIGSTOP: the socket stays open but nothing answers, like a hung server or a partition. */
  pause(): void
  /** SIGCONT after pause(). */
  resume(): void
}

const BINARY = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server'
const live = new Set<ChildProcess>()
const dirs = new Set<string>()

// Synchronous on purpose: 'exit' handlers cannot wait, and a stray redis-server outlives the run.
function cleanup(): void {
  for (const child of live) child.kill('SIGKILL')
  live.clear()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  dirs.clear()
}
process.once('exit', cleanup)
// A signal skips 'exit' (the test runner cancels a file with SIGTERM): clean up, then die of it.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    cleanup()
    process.kill(process.pid, signal)
  })
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const external = process.env.REDIS_URL
  if (external !== undefined && external !== '') return externalServer(external)

  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'customs-redis-'))
  dirs.add(dir)
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '']
  args.push('--appendonly', options.appendonly === true ? 'yes' : 'no', '--appendfsync', 'always')
  args.push('--daemonize', 'no', '--loglevel', 'warning')

  let child = await launch(args, port)
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGCONT') // a paused server would hold SIGTERM until continued
    child.kill(sig)
    await exited
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    external: false,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    restart: async () => {
      await signal('SIGTERM')
      child = await launch(args, port)
    },
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
  }
}

function externalServer(url: string): RedisServer {
  const refuse = (): never => {
    throw new Error('REDIS_URL is set: this test needs its own redis-server to stop or kill it')
  }
  const port = Number(new URL(url).port || 6379)
  const refuseAsync = async (): Promise<never> => refuse()
  return {
    url,
    port,
    external: true,
    stop: refuseAsync,
    kill: refuseAsync,
    restart: refuseAsync,
    pause: refuse,
    resume: refuse,
  }
}

/** The OS hands out a free port for port 0; close it and use the number (a tiny, accepted race). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port from the OS'))))
    })
  })
}

async function launch(args: string[], port: number): Promise<ChildProcess> {
  const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  let output = ''
  const collect = (chunk: Buffer): void => void (output = (output + chunk.toString()).slice(-4000))
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  let failure: Error | null = null
  child.once('error', (err) => (failure = err))
  child.once('exit', (code, sig) => {
    live.delete(child)
    failure ??= new Error(`redis-server exited (code ${code}, signal ${sig})`)
  })

  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    if (failure !== null) break
    if (await answersPing(port)) return child
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  child.kill('SIGKILL')
  const reason = failure === null ? 'no PONG within 10 s' : (failure as Error).message
  throw new Error(`could not start ${BINARY} on port ${port}: ${reason}\n${output}`)
}

/** One raw PING on a fresh socket: no client library, so no reconnect logic muddies the check. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')))
  })
}
