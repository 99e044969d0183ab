// The signature phase of the pull benchmark: small images signed with a keyed P-256 legacy cosign
// `.sig` (no log entry, no timestamp) and as many unsigned ones; the first pull of each through
// Customs (discovery and verification included), then sequential repeats by digest over one
// kept-alive connection, and the upstream requests those repeats caused.

import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { signedSigLayer } from '../test/helpers/cosign.js'
import { buildImage, pushImage, randomBlob } from '../test/helpers/images.js'
import { createTestPki, keyPair, type TestKeyPair, type TestPki } from '../test/helpers/pki.js'
import type { RegistryHandle } from '../test/helpers/registry.js'
import { pushLegacySignature } from '../test/helpers/signed-images.js'
import { KeepAliveClient, MANIFEST_ACCEPT, type Answer } from './clients.js'
import {
  countUpstreamRequests,
  settledUpstreamRequests,
  upstreamRequests,
  type CustomsTrust,
} from './services.js'

/** The name of the trusted key in Customs' configuration. */
const KEY_NAME = 'bench-p256'

/** The test PKI, the signing key, and the `trust:` section that trusts both. */
export interface Signing {
  pki: TestPki
  key: TestKeyPair
  trust: CustomsTrust
}

/** A fresh offline test PKI (its trusted_root.json written into `dir`) and a P-256 key. */
export async function makeSigning(dir: string): Promise<Signing> {
  const pki = createTestPki()
  const key = keyPair('p256')
  const trustedRoot = await pki.writeTrustedRoot(join(dir, 'trusted_root.json'))
  return { pki, key, trust: { trustedRoot, keys: [{ name: KEY_NAME, pem: key.publicKeyPem }] } }
}

/** A pushed image, tag `v1`, alone in its repository. */
export interface SmallImage {
  repo: string
  digest: string
}

/** The images of the phase: `count` signed and `count` unsigned. */
export interface SignatureImages {
  signed: SmallImage[]
  unsigned: SmallImage[]
}

async function pushSmall(registry: RegistryHandle, repo: string): Promise<SmallImage> {
  const image = buildImage({ mediaType: 'oci', layers: [randomBlob(2048, repo)], seed: repo })
  const pushed = await pushImage(registry, repo, 'v1', image)
  return { repo, digest: pushed.digest }
}

/**
 * Pushes `count` distinct 2 KiB images, each with a keyed `.sig` (timestamps none), and `count`
 * unsigned ones, each in its own repository so the access log tells their requests apart.
 */
export async function pushSignatureImages(
  registry: RegistryHandle,
  signing: Signing,
  count: number
): Promise<SignatureImages> {
  const images: SignatureImages = { signed: [], unsigned: [] }
  for (let i = 1; i <= count; i++) {
    const signed = await pushSmall(registry, `bench/signed-${i}`)
    const sig = signedSigLayer({
      pki: signing.pki,
      imageDigest: signed.digest,
      signer: { kind: 'keyed', key: signing.key },
      timestamps: 'none',
    })
    await pushLegacySignature(registry, signed.repo, signed.digest, [sig.layer])
    images.signed.push(signed)
    images.unsigned.push(await pushSmall(registry, `bench/unsigned-${i}`))
  }
  return images
}

/** The first GET of one never-seen image, by tag. */
export interface FirstPull {
  repo: string
  ms: number
  /** Requests the registry logged under `/v2/<repo>/`: what Customs asked for this image. */
  upstream: number
  /** Those requests, `HEAD manifests/v1 200`, digests shortened, in the order logged. */
  requests: string[]
}

/** Everything the phase measured. */
export interface SignatureResults {
  first: { signed: FirstPull[]; unsigned: FirstPull[] }
  /** Per-request client latency (ms) of the timed repeats, in request order. */
  repeats: { signed: number[]; unsigned: number[]; floor: number[] }
  /** Untimed repeats of each kind before the timed ones. */
  warmup: number
  /** Registry requests from the start of the warm-up until the repeats settled. */
  upstreamDuringRepeats: number
}

/** Requests under `/v2/<repo>/` in the registry's access log. */
const requestsFor = (log: string, image: SmallImage): number =>
  countUpstreamRequests(log, `/v2/${image.repo}/`)

/** Runs `work` as a named window of the Customs CPU profile. */
export type Timed = <T>(name: string, work: () => Promise<T>) => Promise<T>

const sha256 = (bytes: Buffer): string =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** Throws unless the answer is 200 and both its header and its body name `digest`. */
function expectManifest(answer: Answer, digest: string, what: string): void {
  const body = sha256(answer.body)
  if (answer.status === 200 && answer.digest === digest && body === digest) return
  const text = answer.status === 200 ? '' : `: ${answer.body.toString('utf8').slice(0, 300)}`
  throw new Error(
    `${what}: HTTP ${answer.status}, Docker-Content-Digest ${answer.digest || '(none)'}, ` +
      `body ${body}, expected ${digest}${text}`
  )
}

/**
 * Measures through Customs at `customsUrl`: the first GET by tag of every image (signed and
 * unsigned alternately, which goes first alternating too); then `repeats` GETs by digest of each
 * kind, cycling over the cleared images, and of `/v2/` (the floor), interleaved one request at a
 * time so a shared machine's load falls on all three alike, after `warmup` untimed rounds. Every
 * manifest answer must be 200 with the pushed digest in its header and body.
 */
export async function measureSignatures(
  customsUrl: string,
  registryLog: string,
  images: SignatureImages,
  options: { repeats: number; warmup: number; timed: Timed }
): Promise<SignatureResults> {
  const { repeats, warmup, timed } = options
  const headers = { accept: MANIFEST_ACCEPT }
  const client = new KeepAliveClient()
  try {
    await settledUpstreamRequests(registryLog)
    // The pushes are logged under the same paths: count from here on.
    const all = [...images.signed, ...images.unsigned]
    const pushed = new Map(all.map((image) => [image.repo, requestsFor(registryLog, image)]))
    const firstMs = new Map<string, number>()
    const first = async (image: SmallImage): Promise<void> => {
      const answer = await client.get(`${customsUrl}/v2/${image.repo}/manifests/v1`, headers)
      expectManifest(answer, image.digest, `first GET ${image.repo}:v1`)
      firstMs.set(image.repo, answer.ms)
    }
    await timed('6 signatures first pulls', async () => {
      for (const [i, signed] of images.signed.entries()) {
        const unsigned = images.unsigned[i]
        if (unsigned === undefined) throw new Error('as many unsigned images as signed ones')
        const pair = i % 2 === 0 ? [signed, unsigned] : [unsigned, signed]
        for (const image of pair) await first(image)
      }
    })
    const before = await settledUpstreamRequests(registryLog)
    const firstPulls = (list: SmallImage[]): FirstPull[] =>
      list.map((image) => {
        const prefix = `/v2/${image.repo}/`
        const requests = upstreamRequests(registryLog, prefix).slice(pushed.get(image.repo) ?? 0)
        return {
          repo: image.repo,
          ms: firstMs.get(image.repo) ?? NaN,
          upstream: requests.length,
          requests: requests.map((r) => {
            const path = r.path.slice(prefix.length).replace(/([0-9a-f]{12})[0-9a-f]{52}/g, '$1…')
            return `${r.method} ${path} ${r.status}`
          }),
        }
      })
    const firstResults = {
      signed: firstPulls(images.signed),
      unsigned: firstPulls(images.unsigned),
    }

    const byDigest = (image: SmallImage): string =>
      `${customsUrl}/v2/${image.repo}/manifests/${image.digest}`
    const repeat = async (list: SmallImage[], i: number): Promise<number> => {
      const image = list[i % list.length]
      if (image === undefined) throw new Error('no images to repeat')
      const answer = await client.get(byDigest(image), headers)
      expectManifest(answer, image.digest, `repeat GET ${image.repo}@${image.digest}`)
      return answer.ms
    }
    const floor = async (): Promise<number> => {
      const answer = await client.get(`${customsUrl}/v2/`)
      if (answer.status !== 200) throw new Error(`GET /v2/: HTTP ${answer.status}`)
      return answer.ms
    }
    for (let i = 0; i < warmup; i++) {
      await repeat(images.signed, i)
      await repeat(images.unsigned, i)
      await floor()
    }
    const measured: SignatureResults['repeats'] = { signed: [], unsigned: [], floor: [] }
    await timed('7 signatures repeats', async () => {
      for (let i = 0; i < repeats; i++) {
        measured.signed.push(await repeat(images.signed, i))
        measured.unsigned.push(await repeat(images.unsigned, i))
        measured.floor.push(await floor())
      }
    })
    const after = await settledUpstreamRequests(registryLog)
    return {
      first: firstResults,
      repeats: measured,
      warmup,
      upstreamDuringRepeats: after - before,
    }
  } finally {
    client.close()
  }
}
