// An in-process fake upstream registry, only for faults a real registry will not produce: lies,
// resets, slow drips, hostile challenges and redirects. It serves manifests and blobs put into it,
// records every request, and lets a test take over any request with an `intercept` hook.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createHash } from 'node:crypto'

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly headers: IncomingMessage['headers']
}

export type Intercept = (req: IncomingMessage, res: ServerResponse, path: string) => boolean | Promise<boolean>

export interface FakeUpstream {
  readonly url: string
  readonly host: string
  readonly requests: RecordedRequest[]
  /** Serves `bytes` as a manifest at `repo` under its digest and, when given, a tag. */
  putManifest(repo: string, bytes: Buffer, mediaType: string, tag?: string): string
  putBlob(repo: string, bytes: Buffer): string
  /** A hook that sees each request first; returning true means it answered. */
  intercept: Intercept | undefined
  count(predicate: (r: RecordedRequest) => boolean): number
  close(): Promise<void>
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  const manifests = new Map<string, { bytes: Buffer; mediaType: string }>()
  const blobs = new Map<string, Buffer>()
  const requests: RecordedRequest[] = []

  const fake: FakeUpstream = {
    url: '',
    host: '',
    requests,
    intercept: undefined,
    putManifest(repo, bytes, mediaType, tag) {
      const digest = sha256(bytes)
      manifests.set(`${repo}@${digest}`, { bytes, mediaType })
      if (tag !== undefined) manifests.set(`${repo}:${tag}`, { bytes, mediaType })
      return digest
    },
    putBlob(repo, bytes) {
      const digest = sha256(bytes)
      blobs.set(`${repo}@${digest}`, bytes)
      return digest
    },
    count(predicate) {
      return requests.filter(predicate).length
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }

  const server: Server = createServer(async (req, res) => {
    const path = req.url ?? '/'
    requests.push({ method: req.method ?? 'GET', path, headers: req.headers })
    try {
      if (fake.intercept !== undefined && (await fake.intercept(req, res, path))) return
      const pathname = path.split('?')[0] as string
      if (pathname === '/v2/' || pathname === '/v2') return send(res, 200, '{}', 'application/json')
      let m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(pathname)
      if (m !== null) {
        const [, repo, ref] = m as unknown as [string, string, string]
        const entry = manifests.get(ref.includes(':') ? `${repo}@${ref}` : `${repo}:${ref}`)
        if (entry === undefined) return send(res, 404, errorBody('MANIFEST_UNKNOWN'), 'application/json')
        res.setHeader('Docker-Content-Digest', sha256(entry.bytes))
        return send(res, 200, entry.bytes, entry.mediaType, req.method === 'HEAD')
      }
      m = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(pathname)
      if (m !== null) {
        const [, repo, digest] = m as unknown as [string, string, string]
        const bytes = blobs.get(`${repo}@${digest}`)
        if (bytes === undefined) return send(res, 404, errorBody('BLOB_UNKNOWN'), 'application/json')
        res.setHeader('Docker-Content-Digest', digest)
        return send(res, 200, bytes, 'application/octet-stream', req.method === 'HEAD')
      }
      send(res, 404, errorBody('NAME_UNKNOWN'), 'application/json')
    } catch (err) {
      res.destroy(err as Error)
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const { port } = server.address() as AddressInfo
  Object.assign(fake, { url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}` })
  return fake
}

export function send(res: ServerResponse, status: number, body: Buffer | string, type: string, head = false): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': String(bytes.byteLength) })
  res.end(head ? undefined : bytes)
}

function errorBody(code: string): string {
  return JSON.stringify({ errors: [{ code, message: code.toLowerCase() }] })
}

/** A minimal OCI image: config and layers as given, with the exact manifest bytes and digests. */
export function ociImage(layers: Buffer[], config: object = { architecture: 'amd64', os: 'linux' }) {
  const configBytes = Buffer.from(JSON.stringify(config))
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(configBytes), size: configBytes.byteLength },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(l), size: l.byteLength })),
    })
  )
  return { manifest, digest: sha256(manifest), config: configBytes, layers, mediaType: 'application/vnd.oci.image.manifest.v1+json' }
}

/** Puts an image (config, layers, manifest under `tag`) into the fake upstream. */
export function putImage(fake: FakeUpstream, repo: string, image: ReturnType<typeof ociImage>, tag?: string): void {
  fake.putBlob(repo, image.config)
  for (const l of image.layers) fake.putBlob(repo, l)
  fake.putManifest(repo, image.manifest, image.mediaType, tag)
}

/**
 * An intercept that answers GETs of one blob slowly: `chunk` bytes every `delayMs`, so that
 * tests can act (disconnect, ask another replica) while a fill is running.
 */
export function dripBlob(digest: string, bytes: Buffer, chunk: number, delayMs: number): Intercept {
  return (_req, res, path) => {
    if (!path.includes(`/blobs/${digest}`)) return false
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.byteLength) })
    let offset = 0
    const step = () => {
      if (offset >= bytes.byteLength) return res.end()
      const next = Math.min(bytes.byteLength, offset + chunk)
      res.write(bytes.subarray(offset, next))
      offset = next
      setTimeout(step, delayMs)
    }
    step()
    return true
  }
}
