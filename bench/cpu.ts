// Where a pull's CPU goes: per thread of Customs, the registry and nginx as whole processes, and
// curl as the bench's child. Read from /proc around one pull, so the cold pull's figure comes with
// its cost in CPU: on a 2-core machine the pull cannot take less wall time than that cost spread
// over both cores, whatever Customs does with the wait.

import { readFileSync, readdirSync } from 'node:fs'
import { cpus } from 'node:os'

/** Run time of each thread of `pid` in milliseconds (schedstat: nanoseconds, not 10 ms ticks). */
function threadMs(pid: number): Map<number, number> {
  const threads = new Map<number, number>()
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return threads
  }
  for (const tid of tids) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
      threads.set(Number(tid), ns / 1e6)
    } catch {
      // The thread ended between the listing and the read: its time is gone with it.
    }
  }
  return threads
}

/** CPU of the bench's children that have been waited for (curl): cutime + cstime, in ms (10 ms ticks). */
function childrenMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields 16 and 17 of stat(5), counted from 1 with pid and comm as 1 and 2.
  return (Number(fields[13]) + Number(fields[14])) * 10
}

function sum(threads: Map<number, number>): number {
  let total = 0
  for (const ms of threads.values()) total += ms
  return total
}

/** The CPU of one pull, in milliseconds. */
export interface PullCpu {
  /** curl receiving and writing its output. */
  client: number
  /** The server that sent the bytes: the registry for a Customs pull, nginx for its own. */
  server: number
  /** Customs' threads, for a Customs pull: its main thread, its busiest other (the hash worker), the rest. */
  customs?: { main: number; hasher: number; rest: number }
  /** Everything above together. */
  total: number
  /**
   * The bench process itself meanwhile (waiting on curl, sampling RSS): not part of `total`, but
   * it shares the same cores, so it is shown.
   */
  bench: number
}

export class CpuWindow {
  readonly #server: number
  readonly #customs: number | undefined
  readonly #client = childrenMs()
  readonly #bench = threadMs(process.pid)
  readonly #serverStart: Map<number, number>
  readonly #customsStart: Map<number, number>

  /** Starts counting for a pull served by `serverPid`, through Customs (`customsPid`) if given. */
  constructor(serverPid: number, customsPid?: number) {
    this.#server = serverPid
    this.#customs = customsPid
    this.#serverStart = threadMs(serverPid)
    this.#customsStart = customsPid === undefined ? new Map() : threadMs(customsPid)
  }

  /** What was spent since the start (call once the pull's child was waited for). */
  stop(): PullCpu {
    const client = childrenMs() - this.#client
    const server = sum(since(this.#serverStart, threadMs(this.#server)))
    const bench = sum(since(this.#bench, threadMs(process.pid)))
    if (this.#customs === undefined) return { client, server, total: client + server, bench }
    const spent = since(this.#customsStart, threadMs(this.#customs))
    const main = spent.get(this.#customs) ?? 0
    spent.delete(this.#customs)
    const others = [...spent.values()].sort((a, b) => b - a)
    const hasher = others[0] ?? 0
    const rest = others.slice(1).reduce((a, b) => a + b, 0)
    return { client, server, customs: { main, hasher, rest }, total: client + server + main + hasher + rest, bench }
  }
}

/** Per thread, the time spent between two readings; a thread born since counts from zero. */
function since(start: Map<number, number>, end: Map<number, number>): Map<number, number> {
  const spent = new Map<number, number>()
  for (const [tid, ms] of end) spent.set(tid, ms - (start.get(tid) ?? 0))
  return spent
}

/** The cores CPU time can be spread over. */
export const CORES = cpus().length
