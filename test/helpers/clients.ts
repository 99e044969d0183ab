// Real registry clients for end-to-end tests: skopeo, and containerd driven by ctr. Each command
// has a timeout, runs with proxies pointed at a dead port, and reports its stderr when it fails.

import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { sha256Digest, type Platform } from './images.js'
import { waitFor } from './ports.js'
import {
  DEAD_END,
  isolatedEnv,
  makeTempDir,
  removeTempDir,
  run,
  spawnService,
  whileRunning,
  withLogTail,
  type RunResult,
  type ServiceProcess,
} from './processes.js'
import type { Credentials } from './registry.js'

/** Default timeout for one client command. */
export const CLIENT_TIMEOUT_MS = 120_000

// ---------------------------------------------------------------------------------------------
// skopeo

/** Options for {@link skopeoCopy}. */
export interface SkopeoCopyOptions {
  /** `--all`: copy an index with every child instead of the host platform's image. */
  all?: boolean
  /**
   * Destination transport. `dir` (default) keeps every manifest byte-for-byte. `oci` keeps OCI
   * manifests (uncompressed layers are accepted as they are) but converts Docker schema2 ones to
   * OCI, so their digests change, unless `preserveDigests` is set, which makes skopeo fail instead.
   */
  format?: 'dir' | 'oci'
  preserveDigests?: boolean
  /** Pull with these credentials; default anonymous (`--src-no-creds`). */
  credentials?: Credentials
  /** Choose this platform from an index (`--override-os/-arch/-variant`). */
  platform?: Platform
  timeoutMs?: number
}

/** What {@link skopeoCopy} copied, read back from the destination. */
export interface SkopeoCopyResult {
  /** Digest of the top-level manifest (the index with `all`, else the image manifest). */
  digest: string
  manifest: Buffer
  /** Digests of child manifests stored next to an index (only with `all`). */
  childDigests: string[]
  stdout: string
  stderr: string
}

/** The result of {@link skopeoInspect}. */
export interface SkopeoInspectResult {
  /** The raw manifest bytes as served. */
  manifest: Buffer
  digest: string
  stderr: string
}

function dockerRef(src: string): string {
  return src.startsWith('docker://') ? src : `docker://${src}`
}

/** Runs skopeo with its own policy (accept anything) and empty registries.conf and auth file. */
async function skopeo(args: readonly string[], timeoutMs: number): Promise<RunResult> {
  const dir = await makeTempDir('skopeo')
  try {
    const policy = join(dir, 'policy.json')
    const registries = join(dir, 'registries.conf')
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
    // No mirrors, no search registries: a reference means exactly what it says.
    await writeFile(registries, 'unqualified-search-registries = []\n')
    const env = isolatedEnv({
      HOME: dir,
      XDG_RUNTIME_DIR: dir,
      XDG_CONFIG_HOME: dir,
      CONTAINERS_REGISTRIES_CONF: registries,
      REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
    })
    return await run('skopeo', ['--policy', policy, '--registries-conf', registries, ...args], {
      env,
      timeoutMs,
    })
  } finally {
    await removeTempDir(dir)
  }
}

function platformArgs(platform: Platform | undefined): string[] {
  if (platform === undefined) return []
  const args = ['--override-os', platform.os, '--override-arch', platform.architecture]
  if (platform.variant !== undefined) args.push('--override-variant', platform.variant)
  return args
}

function credentialArgs(prefix: '--src-' | '--', credentials: Credentials | undefined): string[] {
  return credentials === undefined
    ? [`${prefix}no-creds`]
    : [`${prefix}creds`, `${credentials.username}:${credentials.password}`]
}

/**
 * `skopeo copy --src-tls-verify=false [--all] docker://<src> dir:<destDir>` (or `oci:`), then
 * reads the copied manifest(s) back from `destDir` (which must not exist or be empty) and returns
 * their digests for comparison with what was pushed upstream. `src` is `host:port/repo:tag` or
 * `host:port/repo@digest`, with or without `docker://`.
 */
export async function skopeoCopy(
  src: string,
  destDir: string,
  options: SkopeoCopyOptions = {}
): Promise<SkopeoCopyResult> {
  const format = options.format ?? 'dir'
  const args = [...platformArgs(options.platform), 'copy', '--src-tls-verify=false']
  args.push('--retry-times', '0')
  args.push(...credentialArgs('--src-', options.credentials))
  if (options.all === true) args.push('--all')
  if (options.preserveDigests === true) args.push('--preserve-digests')
  // Otherwise skopeo gzips uncompressed layers for oci:, rewriting every manifest above them.
  if (format === 'oci') args.push('--dest-oci-accept-uncompressed-layers')
  args.push(dockerRef(src), `${format}:${destDir}`)
  const result = await skopeo(args, options.timeoutMs ?? CLIENT_TIMEOUT_MS)
  const read = format === 'dir' ? await readDirLayout(destDir) : await readOciLayout(destDir)
  return { ...read, stdout: result.stdout, stderr: result.stderr }
}

async function readDirLayout(dir: string): Promise<Omit<SkopeoCopyResult, 'stdout' | 'stderr'>> {
  const manifest = await readFile(join(dir, 'manifest.json'))
  // With --all the dir transport stores each instance as <hex>.manifest.json next to the index.
  const childDigests = (await readdir(dir))
    .filter((f) => /^[a-f0-9]{64}\.manifest\.json$/.test(f))
    .map((f) => `sha256:${f.slice(0, 64)}`)
    .sort()
  return { digest: sha256Digest(manifest), manifest, childDigests }
}

async function readOciLayout(dir: string): Promise<Omit<SkopeoCopyResult, 'stdout' | 'stderr'>> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as {
    manifests?: { digest: string }[]
  }
  const top = index.manifests?.[0]?.digest
  if (top === undefined) throw new Error(`no manifest in ${join(dir, 'index.json')}`)
  const blob = (digest: string): Promise<Buffer> =>
    readFile(join(dir, 'blobs', ...digest.split(':')))
  const manifest = await blob(top)
  const parsed = JSON.parse(manifest.toString('utf8')) as { manifests?: { digest: string }[] }
  const childDigests: string[] = []
  for (const child of parsed.manifests ?? []) {
    if (existsSync(join(dir, 'blobs', ...child.digest.split(':')))) childDigests.push(child.digest)
  }
  return { digest: top, manifest, childDigests: childDigests.sort() }
}

/**
 * `skopeo inspect --raw --tls-verify=false docker://<ref>`: the manifest bytes exactly as served,
 * and their digest. Anonymous unless `credentials` are given.
 */
export async function skopeoInspect(
  ref: string,
  options: { credentials?: Credentials; timeoutMs?: number } = {}
): Promise<SkopeoInspectResult> {
  const args = ['inspect', '--raw', '--tls-verify=false', '--retry-times', '0']
  args.push(...credentialArgs('--', options.credentials), dockerRef(ref))
  const result = await skopeo(args, options.timeoutMs ?? CLIENT_TIMEOUT_MS)
  const manifest = Buffer.from(result.stdout, 'utf8')
  return { manifest, digest: sha256Digest(manifest), stderr: result.stderr }
}

// ---------------------------------------------------------------------------------------------
// containerd

/** A running containerd; see {@link startContainerd}. */
export interface ContainerdHandle {
  /** The gRPC socket, for `ctr -a`. */
  readonly address: string
  /** The namespace {@link ctr} uses: `test`. */
  readonly namespace: string
  /** Temp dir holding config.toml, root/, state/, the socket and containerd.log. */
  readonly dir: string
  readonly process: ServiceProcess
  /** SIGTERM (then SIGKILL), and removal of the temp dir. Idempotent. */
  stop(): Promise<void>
  /** SIGKILL, and removal of the temp dir. */
  kill(): Promise<void>
}

/** Plugins that cannot work (or are not wanted) in a test sandbox. */
const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.aufs',
]

function containerdConfig(dir: string): string {
  const q = (s: string): string => JSON.stringify(s)
  return [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    `disabled_plugins = [${DISABLED_PLUGINS.map(q).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${q(join(dir, 'containerd.sock'))}`,
    '',
    '[ttrpc]',
    `  address = ${q(join(dir, 'containerd.sock.ttrpc'))}`,
    '',
    '[debug]',
    '  address = ""',
    '  level = "info"',
    '',
    '[metrics]',
    '  address = ""',
    '',
    '[plugins]',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${q(join(dir, 'opt'))}`,
    '',
  ].join('\n')
}

/**
 * Starts the real containerd with its own config.toml (root, state, socket in a temp dir; CRI and
 * the btrfs/zfs/devmapper/aufs snapshotters disabled) and waits until `ctr version` answers.
 */
export async function startContainerd(
  options: { timeoutMs?: number } = {}
): Promise<ContainerdHandle> {
  const timeoutMs = options.timeoutMs ?? 60_000
  const dir = await makeTempDir('containerd')
  const address = join(dir, 'containerd.sock')
  if (Buffer.byteLength(address) > 100) {
    await removeTempDir(dir)
    throw new Error(`socket path too long for a unix socket: ${address} (set TMPDIR shorter)`)
  }
  const configFile = join(dir, 'config.toml')
  await writeFile(configFile, containerdConfig(dir))
  const proc = spawnService({
    name: 'containerd',
    command: 'containerd',
    args: ['--config', configFile],
    dir,
    env: isolatedEnv(),
  })
  let stopped = false
  const teardown = async (how: 'stop' | 'kill'): Promise<void> => {
    if (stopped) return
    stopped = true
    if (how === 'stop') await proc.stop(15_000)
    else await proc.kill()
    await removeTempDir(dir)
  }
  const handle: ContainerdHandle = {
    address,
    namespace: 'test',
    dir,
    process: proc,
    stop: () => teardown('stop'),
    kill: () => teardown('kill'),
  }
  try {
    await whileRunning(
      proc,
      waitFor(
        'containerd to answer on its socket',
        async () => {
          if (!existsSync(address)) return false
          const res = await ctr(handle, ['version'], { timeoutMs: 10_000, allowFailure: true })
          return res.code === 0
        },
        timeoutMs
      )
    )
  } catch (error) {
    const failure = withLogTail('containerd did not start', error, proc)
    await teardown('kill')
    throw failure
  }
  return handle
}

/**
 * Runs `ctr -a <socket> -n test <args>` with a timeout; throws with stderr on failure unless
 * `allowFailure`.
 */
export function ctr(
  handle: ContainerdHandle,
  args: readonly string[],
  options: { timeoutMs?: number; allowFailure?: boolean } = {}
): Promise<RunResult> {
  return run('ctr', ['-a', handle.address, '-n', handle.namespace, ...args], {
    env: isolatedEnv(),
    timeoutMs: options.timeoutMs ?? CLIENT_TIMEOUT_MS,
    allowFailure: options.allowFailure,
  })
}

/** Options for {@link ctrPull}. */
export interface CtrPullOptions {
  /** `--platform`, e.g. `linux/arm64`. */
  platform?: string
  /** `--all-platforms`. */
  allPlatforms?: boolean
  /** `--user user:password`. */
  credentials?: Credentials
  /** `--plain-http`: only needed for refs whose host is not mapped by hosts.toml to an http URL. */
  plainHttp?: boolean
  /** `--snapshotter`; default containerd's own (overlayfs). */
  snapshotter?: string
  timeoutMs?: number
}

/** The result of {@link ctrPull}. */
export interface CtrPullResult {
  /** The image's target digest as containerd recorded it (`ctr image ls`). */
  digest: string
  stdout: string
  stderr: string
}

/**
 * `ctr -a SOCK -n test image pull --hosts-dir <hostsDir> [...] <ref>` (fetch and unpack), then the
 * target digest of the stored image from `ctr image ls`. `ref` must be fully qualified
 * (`docker.io/library/x:1`); `hostsDir` is what {@link writeHostsToml} wrote into.
 */
export async function ctrPull(
  handle: ContainerdHandle,
  ref: string,
  hostsDir: string,
  options: CtrPullOptions = {}
): Promise<CtrPullResult> {
  const args = ['image', 'pull', '--hosts-dir', hostsDir]
  if (options.plainHttp === true) args.push('--plain-http')
  if (options.platform !== undefined) args.push('--platform', options.platform)
  if (options.allPlatforms === true) args.push('--all-platforms')
  if (options.snapshotter !== undefined) args.push('--snapshotter', options.snapshotter)
  if (options.credentials !== undefined) {
    args.push('--user', `${options.credentials.username}:${options.credentials.password}`)
  }
  args.push(ref)
  const pulled = await ctr(handle, args, { timeoutMs: options.timeoutMs ?? CLIENT_TIMEOUT_MS })
  const digest = await ctrImageDigest(handle, ref)
  if (digest === undefined) {
    throw new Error(`ctr pull of ${ref} succeeded but the image is not listed\n${pulled.stderr}`)
  }
  return { digest, stdout: pulled.stdout, stderr: pulled.stderr }
}

/** The target digest of image `ref` in the handle's namespace, or undefined if absent. */
export async function ctrImageDigest(
  handle: ContainerdHandle,
  ref: string
): Promise<string | undefined> {
  const listed = await ctr(handle, ['image', 'ls'], { timeoutMs: 30_000 })
  for (const line of listed.stdout.split('\n').slice(1)) {
    const [name, , digest] = line.trim().split(/\s+/)
    if (name === ref && digest !== undefined && digest.startsWith('sha256:')) return digest
  }
  return undefined
}

/** Options for {@link writeHostsToml}. */
export interface HostsTomlOptions {
  /**
   * `override_path = true`: the mirror URL carries the full API path (e.g.
   * `http://127.0.0.1:PORT/v2/ghcr.io`) and containerd appends the rest without adding `/v2`.
   */
  overridePath?: boolean
  /** Default `["pull", "resolve"]`. */
  capabilities?: readonly string[]
  /** The fallback `server`; default the dead end `http://127.0.0.1:9`, so fallbacks fail loudly. */
  server?: string
  /** `[host."<mirror>".header]`: headers containerd sends with every request to the mirror. */
  headers?: Readonly<Record<string, string>>
}

/**
 * Writes `<dir>/<registryHost>/hosts.toml` mapping `registryHost` (e.g. `docker.io`) to
 * `mirrorUrl` (e.g. `http://127.0.0.1:PORT`), with `server` at a dead loopback port. The mirror
 * table is always present: a file with only `server` fails to parse in containerd 1.6.20, which
 * then silently uses the real registry. Returns the file's path.
 */
export async function writeHostsToml(
  dir: string,
  registryHost: string,
  mirrorUrl: string,
  options: HostsTomlOptions = {}
): Promise<string> {
  const q = (s: string): string => JSON.stringify(s)
  const capabilities = options.capabilities ?? ['pull', 'resolve']
  const lines = [
    `server = ${q(options.server ?? `http://${DEAD_END}`)}`,
    '',
    `[host.${q(mirrorUrl)}]`,
    `  capabilities = [${capabilities.map(q).join(', ')}]`,
  ]
  if (options.overridePath === true) lines.push('  override_path = true')
  if (options.headers !== undefined) {
    lines.push(`  [host.${q(mirrorUrl)}.header]`)
    for (const [name, value] of Object.entries(options.headers)) lines.push(`    ${name} = ${q(value)}`)
  }
  const hostDir = join(dir, registryHost)
  await mkdir(hostDir, { recursive: true })
  const file = join(hostDir, 'hosts.toml')
  await writeFile(file, `${lines.join('\n')}\n`)
  return file
}
