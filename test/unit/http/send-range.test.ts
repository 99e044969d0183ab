// sendRange writes a blob range straight to node's response: every byte in order, at most two
// chunks ahead of the socket, pooled buffers given back once the socket took them, the source
// released however the answer ends, and a failing source cutting the connection short.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { READ_CHUNK, fileSource, rangeChunks, readBuffers, type ByteSource } from '../../../src/cache/reader.js'
import { sendRange, type SendOutcome } from '../../../src/http/send-range.js'

let root: string
let n = 0
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'customs-send-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A committed-file source of `content`, counting its releases. */
async function committed(content: Buffer): Promise<{ source: ByteSource; released: () => number }> {
  const path = join(root, `blob-${++n}`)
  await writeFile(path, content)
  let released = 0
  return { source: fileSource(await open(path, 'r'), content.byteLength, () => released++), released: () => released }
}

/** A server whose one handler sends `[start, end]` of the source; resolves the outcome it saw. */
async function serving(
  source: ByteSource,
  start: number,
  end: number,
  renderError?: (error: unknown) => Response
): Promise<{ url: string; outcome: Promise<SendOutcome>; server: Server }> {
  let settle!: (o: SendOutcome) => void
  const outcome = new Promise<SendOutcome>((resolve) => (settle = resolve))
  const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
    const headers = { 'Content-Length': String(end - start + 1) }
    void sendRange(res, 200, headers, (signal) => rangeChunks(source, start, end, signal), renderError ? { renderError } : {}).then(settle)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/`, outcome, server }
}

/** GETs `url`, reading `pace` ms apart after each chunk; resolves the bytes, or what came before an error. */
function download(url: string, options: { pace?: number; stopAfter?: number } = {}): Promise<{ bytes: Buffer; error?: Error }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let got = 0
    const req = get(url, { agent: false }, (res) => {
      res.on('data', (c: Buffer) => {
        chunks.push(c)
        got += c.byteLength
        if (options.stopAfter !== undefined && got >= options.stopAfter) {
          req.destroy()
          resolve({ bytes: Buffer.concat(chunks) })
        } else if (options.pace !== undefined) {
          res.pause()
          setTimeout(() => res.resume(), options.pace)
        }
      })
      res.on('end', () => resolve({ bytes: Buffer.concat(chunks) }))
      res.on('error', (error) => resolve({ bytes: Buffer.concat(chunks), error }))
    })
    req.on('error', (error) => resolve({ bytes: Buffer.concat(chunks), error }))
  })
}

async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/**
 * The answer of `total` bytes was cut short and reported so, its source released and every read
 * buffer it borrowed given back, the one in hand when it stopped included.
 */
async function assertCutShort(outcome: Promise<SendOutcome>, total: number, released: () => number): Promise<void> {
  const result = await outcome
  assert.equal(result.aborted, true)
  assert.ok(result.sent < total, `sent all ${result.sent} bytes to a client that had left`)
  await until(() => released() === 1, 'the source to be released')
  await until(() => readBuffers.lent === 0, 'the read buffers to be given back')
}

describe('sendRange', () => {
  describe('when the client reads the whole answer', () => {
    it('sends every byte in order, releases the source and gives the buffers back', async () => {
      const content = randomBytes(5 * READ_CHUNK + 123)
      const { source, released } = await committed(content)
      const { url, outcome, server } = await serving(source, 0, content.byteLength - 1)
      try {
        const { bytes, error } = await download(url)
        assert.equal(error, undefined)
        assert.ok(bytes.equals(content), 'the bytes differ')
        assert.deepEqual(await outcome, { sent: content.byteLength, aborted: false })
        assert.equal(released(), 1)
        assert.ok(readBuffers.free >= 1, 'no read buffer came back to the pool')
      } finally {
        server.close()
      }
    })

    it('sends a sub-range within one chunk and across chunks', async () => {
      const content = randomBytes(3 * READ_CHUNK)
      for (const [start, end] of [[5, 5], [100, 200], [READ_CHUNK - 3, 2 * READ_CHUNK + 4]] as const) {
        const { source } = await committed(content)
        const { url, outcome, server } = await serving(source, start, end)
        try {
          const { bytes } = await download(url)
          assert.ok(bytes.equals(content.subarray(start, end + 1)), `range ${start}-${end} differs`)
          assert.equal((await outcome).sent, end - start + 1)
        } finally {
          server.close()
        }
      }
    })
  })

  describe('when the client reads slowly', () => {
    it('stays at most two chunks ahead of the socket instead of reading the blob into memory', async () => {
      const content = randomBytes(64 * READ_CHUNK)
      const { source } = await committed(content)
      let read = 0
      const counting: ByteSource = {
        ...source,
        readInto: async (position, target) => {
          const got = await source.readInto(position, target)
          read += got
          return got
        },
      }
      const { url, outcome, server } = await serving(counting, 0, content.byteLength - 1)
      try {
        // The client takes a few KiB and then stops reading for a while.
        let stalled!: IncomingMessage
        const head = new Promise<void>((resolve) => {
          get(url, { agent: false }, (res) => {
            stalled = res
            res.once('data', () => {
              res.pause()
              resolve()
            })
          })
        })
        await head
        await sleep(200)
        // Two chunks in flight, plus what the kernel's socket buffers on both ends hold (loopback
        // autotuning lets them grow to several MiB each): far from all 64 MiB.
        assert.ok(read <= 20 * READ_CHUNK, `read ${read} bytes ahead of a client that stopped reading`)
        stalled.resume()
        stalled.on('data', () => {})
        assert.equal((await outcome).aborted, false)
        assert.equal(read, content.byteLength)
      } finally {
        server.close()
      }
    })
  })

  describe('when the client goes away mid-answer', () => {
    it('stops, reports the answer aborted, and releases the source', async () => {
      const content = randomBytes(32 * READ_CHUNK)
      const { source, released } = await committed(content)
      // The tests before may still have buffers in flight: their sockets give them back after
      // their answers ended. Counted from a pool at rest, so that their return is not mistaken
      // for this one's (it made the count below fall short of where it started).
      await until(() => readBuffers.lent === 0, 'earlier answers to give their buffers back')
      const { url, outcome, server } = await serving(source, 0, content.byteLength - 1)
      try {
        const { bytes } = await download(url, { stopAfter: READ_CHUNK })
        assert.ok(bytes.byteLength < content.byteLength)
        await assertCutShort(outcome, content.byteLength, released)
      } finally {
        server.close()
      }
    })
  })

  describe('when the client half-closes mid-answer and goes on reading', () => {
    it('stops at the next chunk, reports the answer aborted, and gives every buffer back', async () => {
      const content = randomBytes(64 * READ_CHUNK)
      const { source, released } = await committed(content)
      await until(() => readBuffers.lent === 0, 'earlier answers to give their buffers back')
      const { url, outcome, server } = await serving(source, 0, content.byteLength - 1)
      const { port } = new URL(url)
      try {
        // A raw client: it sends its end (FIN) after the first bytes, then reads on to the close.
        // node's server then ends its side (allowHalfOpen is off) while the answer is still going:
        // the answer must stop there and give back what it holds, whichever way the socket is
        // found at the next chunk (here it is destroyed by then; sendRange also stops on one that
        // is only no longer writable, whose writes node would park and never flush).
        const received = await new Promise<number>((resolve, reject) => {
          let got = 0
          const socket = connect(Number(port), '127.0.0.1', () => socket.write(`GET / HTTP/1.1\r\nHost: x\r\n\r\n`))
          socket.on('data', (chunk: Buffer) => {
            got += chunk.byteLength
            if (got >= READ_CHUNK && socket.writable) socket.end()
          })
          socket.on('close', () => resolve(got))
          socket.on('error', reject)
        })
        assert.ok(received < content.byteLength, 'the client got the whole blob')
        await assertCutShort(outcome, content.byteLength, released)
      } finally {
        server.close()
      }
    })
  })

  describe('when the source fails before the last byte', () => {
    it('cuts the connection, so the client sees a broken transfer, and releases the source', async () => {
      const content = randomBytes(3 * READ_CHUNK)
      const { source, released } = await committed(content)
      let calls = 0
      const failing: ByteSource = {
        ...source,
        readInto: async (position, target) => {
          if (++calls === 2) throw new Error('disk gone')
          return source.readInto(position, target)
        },
      }
      const { url, outcome, server } = await serving(failing, 0, content.byteLength - 1)
      try {
        const { bytes, error } = await download(url)
        assert.ok(error !== undefined, 'the client saw a complete answer')
        assert.ok(bytes.byteLength < content.byteLength)
        const result = await outcome
        assert.equal(result.aborted, true)
        assert.match(String(result.error), /disk gone/)
        assert.equal(released(), 1)
      } finally {
        server.close()
      }
    })
  })

  describe('when the source fails before its first byte', () => {
    it('sends the error answer instead of the blob head, and releases the source', async () => {
      const content = randomBytes(1000)
      const { source, released } = await committed(content)
      const failing: ByteSource = { ...source, failure: () => new Error('digest mismatch') }
      const renderError = (error: unknown) =>
        new Response(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: String(error) }] }), {
          status: 502,
          headers: { 'Content-Type': 'application/json' },
        })
      const { url, outcome, server } = await serving(failing, 0, content.byteLength - 1, renderError)
      try {
        const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          get(url, { agent: false }, (res) => {
            let body = ''
            res.on('data', (c: Buffer) => (body += c.toString()))
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
          }).on('error', reject)
        })
        assert.equal(answer.status, 502)
        assert.match(answer.body, /digest mismatch/)
        const result = await outcome
        assert.equal(result.errorStatus, 502)
        assert.equal(result.sent, 0)
        assert.equal(released(), 1)
      } finally {
        server.close()
      }
    })
  })
})
