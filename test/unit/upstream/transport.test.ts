// The upstream transport against a real node:http server on 127.0.0.1: headers as sent, HEAD
// without a body, small dropped bodies drained so their connection is reused, large ones cut,
// bounded reads, and the request signal bounding the body too.

import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { readBody, send } from '../../../src/upstream/transport.js'

let server: Server
let base: string
const sockets = new Set<Socket>()
let connections = 0

before(async () => {
  server = createServer((req, res) => {
    if (req.url === '/small') {
      res.writeHead(401, { 'Content-Length': '5', 'X-Twice': 'a' })
      res.end('hello')
    } else if (req.url === '/large') {
      res.writeHead(200, { 'Content-Length': String(64 * 1024 * 1024) })
      const chunk = Buffer.alloc(1024 * 1024)
      let sent = 0
      const more = () => {
        while (sent < 64 && res.write(chunk)) sent++
        if (sent < 64) res.once('drain', () => (sent++, more()))
        else res.end()
      }
      more()
    } else if (req.url === '/post') {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => res.end(JSON.stringify({ method: req.method, body, type: req.headers['content-type'] })))
    } else if (req.url === '/drip') {
      res.writeHead(200, { 'Content-Length': '100' })
      res.write('x')
    } else {
      res.setHeader('X-Twice', ['a', 'b'])
      res.end('{"ok":true}')
    }
  })
  server.on('connection', (s: Socket) => {
    connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

after(async () => {
  for (const s of sockets) s.destroy()
  await new Promise((resolve) => server.close(resolve))
})

describe('send', () => {
  it('answers status and headers, repeated headers joined as fetch joins them', async () => {
    const res = await send(new URL(`${base}/json`), { method: 'GET', headers: {} })
    assert.equal(res.status, 200)
    assert.equal(res.ok, true)
    assert.equal(res.headers.get('x-twice'), 'a, b')
    const bytes = await readBody(res, 100, { tooLarge: () => new Error('large'), broken: () => new Error('broken') })
    assert.equal(bytes.toString(), '{"ok":true}')
  })

  it('gives HEAD answers no body', async () => {
    const res = await send(new URL(`${base}/json`), { method: 'HEAD', headers: {} })
    assert.equal(res.status, 200)
    assert.equal(res.body, null)
  })

  it('sends a POST body with its length', async () => {
    const res = await send(new URL(`${base}/post`), {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'a=1&b=2',
    })
    const answer = JSON.parse((await readBody(res, 1000, { tooLarge: () => new Error('large'), broken: () => new Error('broken') })).toString())
    assert.deepEqual(answer, { method: 'POST', body: 'a=1&b=2', type: 'application/x-www-form-urlencoded' })
  })

  it('drains a small dropped body, so the next request reuses the connection', async () => {
    const first = await send(new URL(`${base}/small`), { method: 'GET', headers: {} })
    assert.equal(first.status, 401)
    await first.discard()
    await new Promise((resolve) => setTimeout(resolve, 20))
    const before = connections
    const second = await send(new URL(`${base}/small`), { method: 'GET', headers: {} })
    await second.discard()
    assert.equal(connections, before, 'a new connection was opened')
  })

  it('cuts a large dropped body instead of downloading it', async () => {
    const res = await send(new URL(`${base}/large`), { method: 'GET', headers: {} })
    await res.discard()
    assert.equal(res.body?.destroyed, true)
  })

  it('refuses a body over the limit and cuts it', async () => {
    const res = await send(new URL(`${base}/large`), { method: 'GET', headers: {} })
    await assert.rejects(
      readBody(res, 1024, { tooLarge: () => new Error('too large'), broken: () => new Error('broken') }),
      /too large/
    )
    assert.equal(res.body?.destroyed, true)
  })

  it('ends a streaming body with an error when the request signal aborts', async () => {
    const controller = new AbortController()
    const res = await send(new URL(`${base}/drip`), { method: 'GET', headers: {}, signal: controller.signal })
    const reading = readBody(res, 1000, { tooLarge: () => new Error('large'), broken: () => new Error('broken off') })
    controller.abort()
    await assert.rejects(reading, /broken off/)
  })

  it('rejects when nothing listens', async () => {
    const dead = new URL('http://127.0.0.1:9/')
    await assert.rejects(send(dead, { method: 'GET', headers: {} }), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED')
  })
})
