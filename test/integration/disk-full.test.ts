// Disk full: the storage folder on a 20 MiB tmpfs (mounted by the test; it runs as root), the
// configured storage.maxSize far above it, so that the disk fills before the limit is reached.
// A fill that runs out of space fails cleanly (the client's transfer is cut, nothing partial is
// committed, the temp file is gone), eviction frees space, the same pull then succeeds, and what
// is cached keeps being served throughout.

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startCustoms, upstreamConfig, type CustomsHandle } from '../helpers/customs.js'
import { ociImage, putImage, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { waitFor } from '../helpers/ports.js'
import { makeTempDir } from '../helpers/processes.js'

const MiB = 1024 * 1024
let work: string
let mountpoint: string
let mounted = false
let upstream: FakeUpstream
let customs: CustomsHandle | undefined

before(async () => {
  work = await makeTempDir('disk-full-')
  mountpoint = join(work, 'small')
  await mkdir(mountpoint)
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mountpoint])
  mounted = true
  upstream = await startFakeUpstream()
})

after(async () => {
  await customs?.stop()
  await upstream?.close()
  if (mounted) execFileSync('umount', [mountpoint])
  await rm(work, { recursive: true, force: true })
})

function layer(n: number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes)
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(((i + 7) * 2246822519 + n * 131) >>> 0, i)
  return b
}

/** The whole body, or what arrived before the transfer was cut. */
async function pull(url: string): Promise<{ status: number; body: Buffer; cut: boolean }> {
  const res = await fetch(url)
  try {
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()), cut: false }
  } catch {
    return { status: res.status, body: Buffer.alloc(0), cut: true }
  }
}

async function committed(storage: string): Promise<string[]> {
  const names: string[] = []
  const root = join(storage, 'blobs', 'sha256')
  for (const prefix of await readdir(root).catch(() => [] as string[])) {
    for (const hex of await readdir(join(root, prefix))) {
      assert.equal(sha256(await readFile(join(root, prefix, hex))), `sha256:${hex}`, 'a committed file does not match its name')
      names.push(`sha256:${hex}`)
    }
  }
  return names
}

async function parts(storage: string): Promise<string[]> {
  const found: string[] = []
  for (const dir of await readdir(join(storage, 'tmp')).catch(() => [] as string[])) {
    for (const f of await readdir(join(storage, 'tmp', dir)).catch(() => [] as string[])) if (f.endsWith('.part')) found.push(f)
  }
  return found
}

describe('when the storage folder fills up', () => {
  it('fails the fill cleanly, commits nothing partial, evicts, recovers, and keeps serving the cache', async () => {
    const storage = join(mountpoint, 'cache')
    const images = [0, 1, 2, 3].map((n) => ociImage([layer(n, 6 * MiB)]))
    images.forEach((image, n) => putImage(upstream, `library/img${n}`, image, 'v1'))
    customs = await startCustoms({ storage, config: `storage: { maxSize: 1GiB }\n${upstreamConfig('docker.io', upstream.url)}` })
    const base = customs.url
    const blobUrl = (n: number): string => `${base}/v2/library/img${n}/blobs/${sha256((images[n] as ReturnType<typeof ociImage>).layers[0] as Buffer)}`

    // Three 6 MiB layers fit in 20 MiB.
    for (const n of [0, 1, 2]) {
      assert.equal((await fetch(`${base}/v2/library/img${n}/manifests/v1`)).status, 200)
      const res = await pull(blobUrl(n))
      assert.equal(res.status, 200)
      assert.equal(sha256(res.body), sha256((images[n] as ReturnType<typeof ociImage>).layers[0] as Buffer))
    }
    // The fourth does not: the client gets an error, never a complete body.
    assert.equal((await fetch(`${base}/v2/library/img3/manifests/v1`)).status, 200)
    const layer3 = sha256((images[3] as ReturnType<typeof ociImage>).layers[0] as Buffer)
    const full = await pull(blobUrl(3))
    assert.ok(full.status >= 500 || full.cut || full.body.byteLength < 6 * MiB, `status ${full.status}, ${full.body.byteLength} bytes`)
    assert.notEqual(sha256(full.body), layer3)
    assert.ok(!(await committed(storage)).includes(layer3), 'nothing partial is committed')
    assert.deepEqual(await parts(storage), [], 'the temp file of the failed fill is gone')
    // The fill's bookkeeping runs after its readers were cut: wait for it, bounded.
    await waitFor('eviction after the failed fill', async () => /customs_cache_evictions_total(\{[^}]*\})? [1-9]/.test(await (await fetch(`${base}/metrics`)).text()), 10_000)
    assert.match(await (await fetch(`${base}/metrics`)).text(), /customs_blob_fills_total\{result="failed"\} 1/)

    // After the eviction the same pull succeeds, and every cached layer is still served.
    const retry = await pull(blobUrl(3))
    assert.equal(retry.status, 200)
    assert.equal(sha256(retry.body), layer3)
    // The client's last byte may go out as soon as the bytes are verified, before the rename.
    const cached = await waitFor('the retried layer committed', async () => {
      const names = await committed(storage)
      return names.includes(layer3) ? names : undefined
    }, 10_000)
    // What is still cached is served from the cache; the least recently used layer (0) was
    // evicted for room and is fetched again when asked. The disk is still near full, so that fill
    // may fail once more and evict again: a client's retry then succeeds.
    for (const n of [1, 2]) {
      const digest = sha256((images[n] as ReturnType<typeof ociImage>).layers[0] as Buffer)
      assert.ok(cached.includes(digest), `layer ${n} stays cached`)
      const res = await fetch(blobUrl(n))
      assert.equal(res.headers.get('customs-cache'), 'hit')
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), digest)
    }
    const layer0 = sha256((images[0] as ReturnType<typeof ociImage>).layers[0] as Buffer)
    let again = await pull(blobUrl(0))
    for (let attempt = 1; attempt < 3 && sha256(again.body) !== layer0; attempt++) {
      await new Promise((r) => setTimeout(r, 500))
      again = await pull(blobUrl(0))
    }
    assert.equal(sha256(again.body), layer0, 'an evicted layer is fetched again within three attempts')
    await committed(storage)
    assert.deepEqual(await parts(storage), [])
    assert.equal((await fetch(`${base}/readyz`)).status, 200)
  })
})
