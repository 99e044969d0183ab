// `npm run bench [-- --quick] [-- --profile] [-- --no-build]`: blob and manifest pulls through
// Customs (built dist) from a real docker-registry, side by side with nginx serving the same bytes
// from disk, then the cost of signature verification (first pulls of signed images, repeats), then
// the cost of evaluating a large policy set (in process).
// Prints tables with targets; exits non-zero only when a download or a service failed.

import { mkdir, open, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { buildImage, fetchManifest, pushImage, randomBlob } from '../test/helpers/images.js'
import { makeTempDir, removeTempDir, run } from '../test/helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../test/helpers/registry.js'
import {
  MANIFEST_ACCEPT,
  concurrentPulls,
  curlGet,
  expectComplete,
  expectDigest,
  wrk,
  type Pull,
} from './clients.js'
import { CpuWindow } from './cpu.js'
import { nowUs, printProfile, type Window } from './profile.js'
import { measurePolicies } from './policies.js'
import {
  MiB,
  printHeader,
  printPolicyResults,
  printResults,
  printSignatureResults,
  type ColdPull,
  type Settings,
} from './report.js'
import {
  ROOT,
  RssSampler,
  procStatusKiB,
  settledUpstreamGets,
  startCustoms,
  startNginx,
  type Service,
} from './services.js'
import { makeSigning, measureSignatures, pushSignatureImages } from './signatures.js'

const USAGE = `usage: npm run bench [-- --quick] [-- --profile] [-- --no-build]
  --quick     32 MiB and 16 MiB blobs, wrk 3 s, 5 signed images: a smoke run CI can afford
  --profile   run Customs with --cpu-prof and summarise self time per phase (slows Customs down)
  --no-build  use the existing dist/ instead of running npm run build first
CUSTOMS_KEEP_TMP=1 keeps the temp dirs (logs, storage, the .cpuprofile).`

interface Flags {
  quick?: boolean
  profile?: boolean
  'no-build'?: boolean
}

function parseFlags(): Flags {
  try {
    const { values } = parseArgs({
      options: {
        quick: { type: 'boolean' },
        profile: { type: 'boolean' },
        'no-build': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    })
    if (values.help !== true) return values
    console.log(USAGE)
    process.exit(0)
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`)
    process.exit(2)
  }
}

const flags = parseFlags()
const QUICK = flags.quick === true
const SETTINGS: Settings = {
  quick: QUICK,
  big: (QUICK ? 32 : 200) * MiB,
  warmup: (QUICK ? 8 : 64) * MiB,
  // Five: one pair caught at a bad moment of the VM (curl alone has taken 160 to 430 ms of CPU for
  // the same 200 MiB) then moves the median less than it moved a median of three.
  coldRuns: QUICK ? 1 : 5,
  // A pair allocates three blobs' worth of pages: nginx's curl output, Customs' curl output and
  // Customs' cache file. One more for the registry's and the clients' socket buffers.
  pretouch: 4 * (QUICK ? 32 : 200) * MiB,
  mid: (QUICK ? 16 : 64) * MiB,
  clients: 32,
  warmRuns: 5,
  wrkSeconds: QUICK ? 3 : 10,
  wrkConnections: 32,
  signedImages: QUICK ? 5 : 20,
  repeats: 2000,
  repeatWarmup: 200,
  policies: 200,
  evaluations: 10_000,
  evaluationWarmup: 1000,
}
const ACCEPT = `Accept: ${MANIFEST_ACCEPT}`

const progress = (message: string): void => void process.stderr.write(`bench: ${message}\n`)

/** A pushed image whose one layer is `size` deterministic bytes, also written for nginx. */
interface Prepared {
  repo: string
  digest: string
  size: number
  manifest: Buffer
  manifestDigest: string
  /** Writing the nginx copy: write() and fdatasync() seconds. */
  diskWrite: number
  diskSync: number
}

async function prepare(
  registry: RegistryHandle,
  repo: string,
  size: number,
  file: string
): Promise<Prepared> {
  const blob = randomBlob(size, `customs-bench:${repo}:${size}`)
  const image = buildImage({ mediaType: 'oci', layers: [blob], seed: repo })
  await pushImage(registry, repo, 'latest', image)
  const handle = await open(file, 'w')
  const t0 = performance.now()
  await handle.writeFile(blob)
  const t1 = performance.now()
  await handle.datasync()
  const t2 = performance.now()
  await handle.close()
  const layer = image.layers[0]
  if (layer === undefined) throw new Error('image without a layer')
  return {
    repo,
    digest: layer.digest,
    size,
    manifest: image.manifest,
    manifestDigest: image.manifestDigest,
    diskWrite: (t1 - t0) / 1000,
    diskSync: (t2 - t1) / 1000,
  }
}

async function makeDir(path: string): Promise<string> {
  await mkdir(path, { recursive: true })
  return path
}

/** A temp dir on tmpfs when there is one, for curl bodies that are hashed afterwards. */
async function scratchDir(fallback: string): Promise<string> {
  const saved = process.env.TMPDIR
  try {
    // os.tmpdir() reads TMPDIR at each call: the helper then tracks and removes this dir too.
    process.env.TMPDIR = '/dev/shm'
    return await makeTempDir('bench-scratch')
  } catch {
    return fallback
  } finally {
    if (saved === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = saved
  }
}

/**
 * Writes `bytes` of zeros to a scratch file in `dir` and removes it; returns the seconds the write
 * took. This VM backs guest memory lazily: a page the guest never touched costs several times a
 * recycled one on its first write (the 'disk' line shows it), and which kind a pull's writes land
 * on otherwise depends on what ran before. Done before each cold pair, it hands both sides (curl's
 * output on /dev/shm, Customs' cache file) recycled pages, as on a server that has been up a while.
 * The guest gives freed memory back to the host within seconds (virtio-balloon free page
 * reporting), so the touch must come right before the pair and cover all of it: at 2x the blob,
 * the first pair (whose curl outputs are both new files) ran Customs' side on fresh pages, and its
 * pull cost 1.34 s of CPU against 0.63-0.65 for the pairs after it.
 */
async function touchMemory(dir: string, bytes: number): Promise<number> {
  const file = join(dir, 'touch.scratch')
  const chunk = Buffer.alloc(8 * MiB)
  const handle = await open(file, 'w')
  const t0 = performance.now()
  try {
    for (let at = 0; at < bytes; at += chunk.byteLength) await handle.write(chunk, 0, chunk.byteLength, at)
  } finally {
    await handle.close()
    await rm(file, { force: true })
  }
  return (performance.now() - t0) / 1000
}

/** GETs the image's manifest by tag through Customs, which clears it and opens the blob gate. */
async function expectManifest(customsUrl: string, p: Prepared): Promise<void> {
  const accept = MANIFEST_ACCEPT.split(', ')
  const got = await fetchManifest({ url: customsUrl }, p.repo, 'latest', { accept })
  if (got.status !== 200 || got.digest !== p.manifestDigest) {
    throw new Error(`manifest ${p.repo}:latest through Customs: HTTP ${got.status}, ${got.digest}`)
  }
}

/** A download to `file`, checked for size and then digest (after curl's timing ended). */
async function pullChecked(
  pull: Pull | Promise<Pull>,
  size: number,
  digest: string,
  file: string,
  what: string
): Promise<Pull> {
  const done = expectComplete(await pull, size, what)
  await expectDigest(file, digest, what)
  return done
}

async function main(): Promise<number> {
  const { big: BIG, mid: MID, clients: CLIENTS, warmRuns, wrkSeconds, wrkConnections, coldRuns } = SETTINGS
  await printHeader(SETTINGS, ROOT, flags.profile === true)
  if (flags['no-build'] !== true) {
    progress('building dist (npm run build)')
    await run('npm', ['run', 'build', '--silent'], { cwd: ROOT, timeoutMs: 300_000 })
  }
  const dir = await makeTempDir('bench')
  const scratch = await scratchDir(dir)
  let registry: RegistryHandle | undefined
  let customs: Service | undefined
  let nginx: Service | undefined
  let sampler: RssSampler | undefined
  try {
    progress('starting docker-registry and pushing the images')
    registry = await startRegistry()
    const www = await makeDir(join(dir, 'www'))
    // Each cold pull takes a blob of its own: distinct repositories and bytes, one upstream fetch each.
    const colds: Prepared[] = []
    for (let i = 1; i <= coldRuns; i++) {
      colds.push(await prepare(registry, `bench/cold-${i}`, BIG, join(www, `cold-${i}.blob`)))
    }
    const big = colds[0] as Prepared
    const warmupBlob = await prepare(registry, 'bench/warmup', SETTINGS.warmup, join(www, 'warmup.blob'))
    const mid = await prepare(registry, 'bench/mid', MID, join(www, 'mid.blob'))
    await writeFile(join(www, 'manifest.json'), big.manifest)
    const signing = await makeSigning(await makeDir(join(dir, 'trust')))
    const signatureImages = await pushSignatureImages(registry, signing, SETTINGS.signedImages)
    const disk = `write ${big.diskWrite.toFixed(3)} s + fdatasync ${big.diskSync.toFixed(3)} s`
    console.log(`disk (temp dir): nginx's ${BIG / MiB} MiB copy took ${disk}`)

    progress('starting nginx and Customs')
    nginx = await startNginx(await makeDir(join(dir, 'nginx')), www)
    const profileDir = flags.profile === true ? await makeDir(join(dir, 'profile')) : undefined
    const spawnUs = nowUs()
    const proxy = await startCustoms({
      dir: await makeDir(join(dir, 'customs')),
      upstreamUrl: registry.url,
      trust: signing.trust,
      ...(profileDir !== undefined ? { profileDir } : {}),
    })
    customs = proxy
    const readyUs = nowUs()
    sampler = new RssSampler(proxy.process.pid)
    sampler.start()
    const registryLog = registry.process.logFile
    const blobUrl = (base: string, p: Prepared): string => `${base}/v2/${p.repo}/blobs/${p.digest}`
    // Spans of the Customs-side measurements, to slice its CPU profile by phase.
    const windows: Window[] = []
    const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
      const start = nowUs()
      try {
        return await work()
      } finally {
        const window = windows.find((w) => w.name === name)
        if (window === undefined) windows.push({ name, spans: [[start, nowUs()]] })
        else window.spans.push([start, nowUs()])
      }
    }
    const nginxBig = `${nginx.url}/cold-1.blob`
    const nginxMid = `${nginx.url}/mid.blob`
    const [n, c] = [join(scratch, 'n'), join(scratch, 'c')]

    progress("registry-direct pull (the upstream's own speed)")
    const direct = expectComplete(await curlGet(blobUrl(registry.url, big)), BIG, 'registry direct')

    // A running mirror, not a process just started: the first large fill after start also starts
    // the hash worker (a new isolate, 70-100 ms of CPU here) and runs the fill's code before it
    // is optimized, about 180 ms of CPU more than the pulls after it. One pull of a blob of its
    // own does that first; its times are printed, nothing else of it is counted. At 16 MiB it was
    // too short for V8 to optimize all of the path: in five runs the main thread spent 138-218 ms
    // on the first timed pull and 95-137 on the fourth and fifth; after 64 MiB, 119-128 on the
    // first and 103-138 on every later one (three runs).
    progress('warm-up: one cold pull of a blob of its own, through Customs and nginx')
    sampler.phase('1. cold pull')
    await expectManifest(proxy.url, warmupBlob)
    const warmup = {
      nginx: expectComplete(await curlGet(`${nginx.url}/warmup.blob`), SETTINGS.warmup, 'nginx warm-up'),
      customs: expectComplete(await curlGet(blobUrl(proxy.url, warmupBlob)), SETTINGS.warmup, 'Customs warm-up'),
    }

    progress(`1. cold pulls of ${coldRuns} distinct blobs`)
    const cold: ColdPull[] = []
    for (const [i, p] of colds.entries()) {
      await expectManifest(proxy.url, p)
      const pretouch = await touchMemory(dir, SETTINGS.pretouch)
      // Each pull's CPU is read as soon as its curl has exited, before the bench hashes the output.
      const cpu: Partial<ColdPull['cpu']> = {}
      const nginxCpu = new CpuWindow(nginx.process.pid)
      const nginxPull = await curlGet(`${nginx.url}/cold-${i + 1}.blob`, { output: n }).finally(() => (cpu.nginx = nginxCpu.stop()))
      const customsCpu = new CpuWindow(registry.process.pid, proxy.process.pid)
      const coldPull = await timed('1 cold pull', () => curlGet(blobUrl(proxy.url, p), { output: c })).finally(() => (cpu.customs = customsCpu.stop()))
      // Both outputs are checked after both pulls: the bench's own hashing stays out of either.
      const nginxCold = await pullChecked(nginxPull, BIG, p.digest, n, 'nginx cold')
      const customsCold = await pullChecked(coldPull, BIG, p.digest, c, 'Customs cold')
      const upstream = await settledUpstreamGets(registryLog, p.repo, p.digest)
      cold.push({ customs: customsCold, nginx: nginxCold, upstream, pretouch, cpu: cpu as ColdPull['cpu'] })
    }

    progress('2. warm pulls')
    sampler.phase('2. warm pulls')
    const warmNginx: Pull[] = []
    const warmCustoms: Pull[] = []
    for (let i = 0; i < warmRuns; i++) {
      warmNginx.push(expectComplete(await curlGet(nginxBig), BIG, 'nginx warm'))
      const pull = await timed('2 warm pulls', () => curlGet(blobUrl(proxy.url, big)))
      warmCustoms.push(expectComplete(pull, BIG, 'Customs warm'))
    }
    const bigGetsTotal = await settledUpstreamGets(registryLog, big.repo, big.digest)

    progress(`3. ${CLIENTS} concurrent pulls of the uncached ${MID / MiB} MiB blob`)
    sampler.phase('3. concurrent pulls')
    await expectManifest(proxy.url, mid)
    const nginxMany = await concurrentPulls(nginxMid, CLIENTS, MID, n, 'nginx')
    await expectDigest(n, mid.digest, 'nginx concurrent client 0')
    const customsMany = await timed('3 concurrent pulls', () =>
      concurrentPulls(blobUrl(proxy.url, mid), CLIENTS, MID, c, 'Customs')
    )
    await expectDigest(c, mid.digest, 'Customs concurrent client 0')
    const manyGets = await settledUpstreamGets(registryLog, mid.repo, mid.digest)

    progress('4. warm manifest requests per second')
    sampler.phase('4. warm manifest rps')
    const manifestUrl = `${proxy.url}/v2/${big.repo}/manifests/latest`
    const nginxManifest = `${nginx.url}/manifest.json`
    for (const [url, what] of [[manifestUrl, 'Customs'], [nginxManifest, 'nginx']] as const) {
      const get = curlGet(url, { output: c, headers: [ACCEPT] })
      await pullChecked(get, big.manifest.length, big.manifestDigest, c, `${what} manifest`)
    }
    const rpsCustoms = await timed('4 manifest rps', () =>
      wrk(manifestUrl, wrkSeconds, wrkConnections, [ACCEPT])
    )
    const rpsNginx = await wrk(nginxManifest, wrkSeconds, wrkConnections, [ACCEPT])

    const signed = SETTINGS.signedImages
    progress(`6-8. signature verification: ${signed} signed images, ${SETTINGS.repeats} repeats`)
    sampler.phase('6. signatures')
    const signatures = await measureSignatures(proxy.url, registryLog, signatureImages, {
      repeats: SETTINGS.repeats,
      warmup: SETTINGS.repeatWarmup,
      timed,
    })

    progress(`9. policy evaluation: ${SETTINGS.policies} policies, ${SETTINGS.evaluations} times`)
    const policies = measurePolicies({
      policies: SETTINGS.policies,
      evaluations: SETTINGS.evaluations,
      warmup: SETTINGS.evaluationWarmup,
    })

    printResults(
      {
        direct,
        warmup,
        cold,
        warm: { customs: warmCustoms, nginx: warmNginx, upstreamWholeRun: bigGetsTotal },
        concurrent: { customs: customsMany, nginx: nginxMany, upstream: manyGets },
        rps: { customs: rpsCustoms, nginx: rpsNginx },
        rss: sampler.stop(),
        nginxHwmKiB: procStatusKiB(nginx.process.pid, 'VmHWM') ?? 0,
      },
      SETTINGS
    )
    printSignatureResults(signatures, SETTINGS)
    printPolicyResults(policies)
    if (profileDir !== undefined) {
      progress('stopping Customs to write its CPU profile')
      await proxy.stop(60_000)
      await printProfile(profileDir, windows, spawnUs, readyUs)
    }
    return 0
  } finally {
    sampler?.stop()
    await customs?.stop().catch(() => undefined)
    await nginx?.stop().catch(() => undefined)
    await registry?.stop().catch(() => undefined)
    if (scratch !== dir) await removeTempDir(scratch)
    await removeTempDir(dir)
  }
}

const started = performance.now()
main().then(
  (code) => {
    progress(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`)
    process.exit(code)
  },
  (error: unknown) => {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
    console.error(`bench: FAILED: ${message}`)
    process.exit(1)
  }
)
