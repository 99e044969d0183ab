// podman as a registry client for end-to-end tests: each pull runs with its own storage (root,
// runroot, tmpdir, vfs), its own registries.conf, policy, auth file and containers.conf, and the
// dead-end proxies, in a temp dir removed afterwards. Only pulls: `podman run` fails here.

import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CLIENT_TIMEOUT_MS } from './clients.js'
import {
  DEAD_END,
  isolatedEnv,
  makeTempDir,
  removeTempDir,
  run,
  type RunResult,
} from './processes.js'

/** Options for {@link podmanPull}. */
export interface PodmanPullOptions {
  /** `--platform`, e.g. `linux/arm64`. */
  platform?: string
  timeoutMs?: number
}

/** The result of {@link podmanPull}. */
export interface PodmanPullResult {
  /** `podman image inspect --format '{{.Digest}}'`: the manifest digest podman pulled by. */
  digest: string
  /** The image ID (config digest, without `sha256:`). */
  id: string
  /** The registries.conf the pull used, as written. */
  registriesConf: string
  stdout: string
  stderr: string
}

/** One `[[registry]]` for {@link mirrorRegistriesConf}. */
export interface MirroredRegistry {
  /** The reference prefix, e.g. `docker.io`. */
  prefix: string
  /**
   * The mirror location, `host:port[/path]`, e.g. `127.0.0.1:PORT/docker.io` (path routing: the
   * pull becomes `GET /v2/docker.io/<repo>/manifests/<tag>`).
   */
  mirror: string
  /** Plain HTTP (and no TLS verification) for the mirror. Default true. */
  insecure?: boolean
}

const q = (s: string): string => JSON.stringify(s)

/**
 * A registries.conf (containers-registries.conf(5), v2 format) where each prefix's primary
 * `location` is the dead end {@link DEAD_END} and its only mirror is the given location, with no
 * unqualified-search registries: a mirror failure shows as a refused connection to 127.0.0.1:9,
 * never as a request that leaves the machine.
 */
export function mirrorRegistriesConf(registries: readonly MirroredRegistry[]): string {
  const lines = ['unqualified-search-registries = []', '']
  for (const r of registries) {
    lines.push(
      '[[registry]]',
      `prefix = ${q(r.prefix)}`,
      `location = ${q(DEAD_END)}`,
      '',
      '[[registry.mirror]]',
      `location = ${q(r.mirror)}`,
      `insecure = ${r.insecure ?? true}`,
      ''
    )
  }
  return lines.join('\n')
}

/**
 * Runs `podman <storage flags> <args>` with everything under `dir`: `--root`, `--runroot`,
 * `--tmpdir`, `--storage-driver vfs`, `--cgroup-manager cgroupfs`, `--events-backend file`, and
 * CONTAINERS_REGISTRIES_CONF, CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, REGISTRY_AUTH_FILE, TMPDIR
 * and HOME pointing into `dir`. The files must have been written by {@link podmanPull}.
 */
function podman(dir: string, args: readonly string[], timeoutMs: number): Promise<RunResult> {
  const env = isolatedEnv({
    HOME: dir,
    XDG_RUNTIME_DIR: join(dir, 'run'),
    XDG_CONFIG_HOME: join(dir, 'config'),
    XDG_DATA_HOME: join(dir, 'data'),
    TMPDIR: join(dir, 'tmp'),
    CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'),
    CONTAINERS_CONF: join(dir, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
    REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
  })
  const global = [
    '--root',
    join(dir, 'root'),
    '--runroot',
    join(dir, 'runroot'),
    '--tmpdir',
    join(dir, 'libpod-tmp'),
    '--volumepath',
    join(dir, 'volumes'),
    '--storage-driver',
    'vfs',
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
  ]
  return run('podman', [...global, ...args], { env, timeoutMs })
}

/**
 * `podman pull <ref>` with `registriesConf` (the text of a registries.conf, e.g. from
 * {@link mirrorRegistriesConf}) as CONTAINERS_REGISTRIES_CONF, in a throwaway storage that is
 * removed afterwards; returns the pulled image's digest from `podman image inspect`. For a
 * multi-arch image that is the digest of the index, as podman records it.
 */
export async function podmanPull(
  ref: string,
  registriesConf: string,
  options: PodmanPullOptions = {}
): Promise<PodmanPullResult> {
  const timeoutMs = options.timeoutMs ?? CLIENT_TIMEOUT_MS
  const dir = await makeTempDir('podman')
  try {
    await writeFile(join(dir, 'registries.conf'), registriesConf)
    await writeFile(join(dir, 'auth.json'), '{}\n')
    await writeFile(
      join(dir, 'policy.json'),
      JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] })
    )
    // Only the storage driver: the system's storage.conf may name a mount program or options.
    const storage = [
      '[storage]',
      'driver = "vfs"',
      `graphroot = ${q(join(dir, 'root'))}`,
      `runroot = ${q(join(dir, 'runroot'))}`,
    ]
    await writeFile(join(dir, 'storage.conf'), `${storage.join('\n')}\n`)
    await writeFile(
      join(dir, 'containers.conf'),
      '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    )
    for (const sub of ['run', 'tmp', 'config', 'data']) await mkdir(join(dir, sub))
    // --signature-policy is hidden but accepted by podman 4; there is no CONTAINERS_POLICY env.
    const pullArgs = ['pull', '--signature-policy', join(dir, 'policy.json')]
    if (options.platform !== undefined) pullArgs.push('--platform', options.platform)
    pullArgs.push(ref)
    const pulled = await podman(dir, pullArgs, timeoutMs)
    const inspected = await podman(
      dir,
      ['image', 'inspect', '--format', '{{.Digest}}\t{{.ID}}', ref],
      30_000
    )
    const [digest = '', id = ''] = inspected.stdout.trim().split('\t')
    if (!digest.startsWith('sha256:')) {
      throw new Error(`podman image inspect ${ref} gave no digest: ${inspected.stdout}`)
    }
    return { digest, id, registriesConf, stdout: pulled.stdout, stderr: pulled.stderr }
  } finally {
    await removeTempDir(dir)
  }
}
