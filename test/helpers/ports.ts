// Loopback ports and readiness polling for tests that start real servers. Everything binds to
// 127.0.0.1: nothing a test starts may be reachable from outside the machine.

import { createServer } from 'node:net'
import { request } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * A TCP port that was free on 127.0.0.1 a moment ago: listens on port 0, reads the port, closes.
 * Another process can take it before the caller binds it, so starters retry on EADDRINUSE.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))))
    })
  })
}

/** Options for {@link waitFor} and {@link waitForHttp}. */
export interface WaitOptions {
  /** Delay between attempts; grows by half each time up to 500 ms. Default 25 ms. */
  intervalMs?: number
  /**
   * Called before every attempt; a returned string aborts the wait with that message. Starters use
   * it to stop waiting as soon as the child process has exited.
   */
  abortIf?: () => string | undefined
  /** For an https URL: the CA to trust, and a client certificate for a server that asks for one. */
  tls?: { ca?: string; cert?: string; key?: string }
}

/**
 * Polls `probe` until it returns a value other than `undefined`/`false`, and returns that value.
 * A probe that throws counts as "not yet"; the last error is reported if the deadline passes.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  options: WaitOptions = {}
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let interval = options.intervalMs ?? 25
  let lastError: unknown
  for (;;) {
    const aborted = options.abortIf?.()
    if (aborted !== undefined) throw new Error(`gave up waiting for ${what}: ${aborted}`)
    try {
      const value = await probe()
      if (value !== undefined && value !== false) return value
    } catch (error) {
      lastError = error
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? `: ${lastError.message}` : ''
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`)
    }
    await sleep(Math.min(interval, Math.max(1, deadline - Date.now())))
    interval = Math.min(500, Math.ceil(interval * 1.5))
  }
}

/**
 * Waits until `url` answers HTTP at all (any status: a token-protected registry answers 401),
 * and returns that status. Uses node:http, so proxy variables never apply.
 */
export function waitForHttp(
  url: string,
  timeoutMs: number,
  options: WaitOptions = {}
): Promise<number> {
  return waitFor(`HTTP answer from ${url}`, () => httpStatus(url, options.tls), timeoutMs, options)
}

function httpStatus(url: string, tls: WaitOptions['tls']): Promise<number> {
  return new Promise((resolve, reject) => {
    const secure = url.startsWith('https:')
    const send = secure ? httpsRequest : request
    const req = send(url, { method: 'GET', timeout: 2000, agent: false, ...(secure ? tls : {}) }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.once('timeout', () => req.destroy(new Error('request timed out')))
    req.once('error', reject)
    req.end()
  })
}
