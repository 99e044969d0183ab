// A real Docker daemon for end-to-end tests: dockerd with its own containerd, data and exec roots,
// socket and daemon.json in a temp dir, no networking, the vfs graph driver, proxies pointed at a
// dead port, and `registry-mirrors` set to the mirror under test. Driven by the docker CLI.

import { existsSync, readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { delimiter, dirname, join } from 'node:path'
import { CLIENT_TIMEOUT_MS, startContainerd, type ContainerdHandle } from './clients.js'
import { waitFor } from './ports.js'
import {
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

/** Options for {@link startDockerd}. */
export interface StartDockerdOptions {
  /** `registry-mirrors`, e.g. `['http://127.0.0.1:PORT']`. Default none. */
  registryMirrors?: readonly string[]
  /** `insecure-registries` (`host:port` or CIDR). Default none. */
  insecureRegistries?: readonly string[]
  /** Further daemon.json keys, merged over the generated ones. */
  config?: Record<string, unknown>
  /** How long to wait for containerd and then dockerd to answer. Default 60 s each. */
  timeoutMs?: number
}

/** A running dockerd; see {@link startDockerd}. */
export interface DockerdHandle {
  /** `unix://<dir>/docker.sock`, for `docker -H`. */
  readonly host: string
  /** Temp dir holding daemon.json, data/, exec/, the socket, dockerd.log and the CLI config. */
  readonly dir: string
  /** The daemon.json dockerd was started with. */
  readonly daemonJson: Readonly<Record<string, unknown>>
  /** The containerd dockerd uses (its own, started for it). */
  readonly containerd: ContainerdHandle
  readonly process: ServiceProcess
  /** The docker CLI used by {@link docker}: the one installed next to dockerd when present. */
  readonly cli: string
  /** Stops dockerd, then containerd; unmounts leftovers and removes the temp dirs. Idempotent. */
  stop(): Promise<void>
}

/** The result of {@link dockerPull}. */
export interface DockerPullResult {
  /** The manifest (or manifest list / index) digest dockerd recorded for the pulled name. */
  digest: string
  /** `docker image inspect --format '{{json .RepoDigests}}'`, e.g. `["alpine@sha256:…"]`. */
  repoDigests: string[]
  /** The image ID (config digest). */
  id: string
  /** The `Digest: sha256:…` line docker pull printed, if any. */
  reportedDigest: string | undefined
  stdout: string
  stderr: string
}

/** Full path of `name` on PATH, or undefined. */
function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && existsSync(join(dir, name))) return join(dir, name)
  }
  return undefined
}

/**
 * The docker CLI to drive dockerd with: the one from dockerd's own package when present (Debian's
 * `docker.io` ships /usr/sbin/dockerd and /usr/bin/docker) so client and daemon versions match,
 * else whatever `docker` is first on PATH (API version negotiation copes with a newer CLI).
 */
function dockerCli(dockerd: string): string {
  const sbin = dirname(dockerd)
  const candidates = [join(sbin, 'docker'), join(dirname(sbin), 'bin', 'docker')]
  return candidates.find((c) => existsSync(c)) ?? 'docker'
}

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo). */
function mountsUnder(dir: string): string[] {
  let text: string
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8')
  } catch {
    return []
  }
  const unescape = (s: string): string =>
    s.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(unescape)
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length)
}

/** Lazily unmounts whatever dockerd left mounted under `dir` (only without a mount namespace). */
async function unmountUnder(dir: string): Promise<void> {
  for (const mount of mountsUnder(dir)) {
    await run('umount', ['-l', mount], { timeoutMs: 10_000, allowFailure: true })
  }
}

let unshareWorks: Promise<boolean> | undefined

/** Whether `unshare --mount` works here (it needs CAP_SYS_ADMIN, as dockerd itself does). */
function canUnshareMounts(): Promise<boolean> {
  if (findOnPath('unshare') === undefined) return Promise.resolve(false)
  unshareWorks ??= run('unshare', ['--mount', '--propagation', 'private', 'true'], {
    timeoutMs: 10_000,
    allowFailure: true,
  }).then(
    (result) => result.code === 0,
    () => false
  )
  return unshareWorks
}

/**
 * Starts containerd and then dockerd as PROTOCOL §10 describes: daemon.json with its own
 * `data-root`, `exec-root`, `pidfile` and `hosts` (a unix socket in the temp dir), iptables,
 * ip6tables, ip-forward and ip-masq off, `bridge: none`, the `vfs` storage driver, the containerd
 * socket, and the given `registry-mirrors`. dockerd runs with every proxy pointed at the dead end
 * (loopback exempt), so a fallback to registry-1.docker.io fails with "connection refused"
 * instead of leaving the machine. When util-linux `unshare --mount` works, dockerd runs in a
 * private mount namespace, so the bind mount it puts on its data root vanishes with it even if it
 * is killed. Waits until `docker version` answers.
 */
export async function startDockerd(options: StartDockerdOptions = {}): Promise<DockerdHandle> {
  const timeoutMs = options.timeoutMs ?? 60_000
  const dockerd = findOnPath('dockerd')
  if (dockerd === undefined) {
    throw new Error('dockerd is not installed (Debian package docker.io)')
  }
  const containerd = await startContainerd({ timeoutMs })
  let dir: string
  try {
    dir = await makeTempDir('dockerd')
  } catch (error) {
    await containerd.stop()
    throw error
  }
  const socket = join(dir, 'docker.sock')
  if (Buffer.byteLength(socket) > 100) {
    await removeTempDir(dir)
    await containerd.stop()
    throw new Error(`socket path too long for a unix socket: ${socket} (set TMPDIR shorter)`)
  }
  const daemonJson: Record<string, unknown> = {
    'data-root': join(dir, 'data'),
    'exec-root': join(dir, 'exec'),
    pidfile: join(dir, 'docker.pid'),
    // The libtrust key dockerd 20.10 creates; by default it goes to /etc/docker/key.json.
    'deprecated-key-path': join(dir, 'key.json'),
    hosts: [`unix://${socket}`],
    iptables: false,
    ip6tables: false,
    'ip-forward': false,
    'ip-masq': false,
    bridge: 'none',
    'storage-driver': 'vfs',
    containerd: containerd.address,
    'registry-mirrors': [...(options.registryMirrors ?? [])],
    'insecure-registries': [...(options.insecureRegistries ?? [])],
    'log-level': 'info',
    ...options.config,
  }
  const configFile = join(dir, 'daemon.json')
  await writeFile(configFile, `${JSON.stringify(daemonJson, null, 2)}\n`)
  await mkdir(join(dir, 'cli'), { recursive: true })
  const unshare = (await canUnshareMounts()) ? findOnPath('unshare') : undefined
  const dockerdArgs = ['--config-file', configFile]
  // unshare execs dockerd in place: the pid (and process group) stays dockerd's.
  const proc = spawnService({
    name: 'dockerd',
    command: unshare ?? dockerd,
    args:
      unshare !== undefined
        ? ['--mount', '--propagation', 'private', dockerd, ...dockerdArgs]
        : dockerdArgs,
    dir,
    env: isolatedEnv({ DOCKER_CONFIG: join(dir, 'cli'), HOME: dir }),
  })
  let stopped = false
  const handle: DockerdHandle = {
    host: `unix://${socket}`,
    dir,
    daemonJson,
    containerd,
    process: proc,
    cli: dockerCli(dockerd),
    async stop() {
      if (stopped) return
      stopped = true
      // dockerd unmounts its data root and detaches from containerd on SIGTERM.
      await proc.stop(20_000)
      await containerd.stop()
      await unmountUnder(dir)
      await removeTempDir(dir)
    },
  }
  try {
    await whileRunning(
      proc,
      waitFor(
        'dockerd to answer on its socket',
        async () => {
          if (!existsSync(socket)) return false
          const res = await docker(handle, ['version', '--format', '{{.Server.Version}}'], {
            timeoutMs: 10_000,
            allowFailure: true,
          })
          return res.code === 0
        },
        timeoutMs,
        { intervalMs: 100 }
      )
    )
  } catch (error) {
    const failure = withLogTail('dockerd did not start', error, proc)
    await handle.stop()
    throw failure
  }
  return handle
}

/**
 * Runs `docker -H <socket> <args>` with the handle's own CLI config dir (no credentials, no
 * contexts) and the dead-end proxies; throws with stderr on failure unless `allowFailure`.
 */
export function docker(
  handle: DockerdHandle,
  args: readonly string[],
  options: { timeoutMs?: number; allowFailure?: boolean } = {}
): Promise<RunResult> {
  return run(handle.cli, ['-H', handle.host, ...args], {
    env: isolatedEnv({ DOCKER_CONFIG: join(handle.dir, 'cli'), HOME: handle.dir }),
    timeoutMs: options.timeoutMs ?? CLIENT_TIMEOUT_MS,
    allowFailure: options.allowFailure,
  })
}

/** The name in RepoDigests: `docker.io/library/alpine:3` → `alpine`, `org/app@…` → `org/app`. */
function familiarName(ref: string): string {
  let name = ref.replace(/@.*$/, '')
  const lastSlash = name.lastIndexOf('/')
  const colon = name.lastIndexOf(':')
  if (colon > lastSlash) name = name.slice(0, colon)
  if (name.startsWith('docker.io/')) name = name.slice('docker.io/'.length)
  else if (name.startsWith('index.docker.io/')) name = name.slice('index.docker.io/'.length)
  if (name.startsWith('library/') && name.split('/').length === 2) {
    name = name.slice('library/'.length)
  }
  return name
}

/**
 * `docker pull <ref>` through the daemon, then `docker image inspect` for the RepoDigests and ID.
 * `digest` is the manifest digest dockerd recorded for the ref's repository: for a multi-arch
 * image, the digest of the index (manifest list), as for `docker pull` against Docker Hub.
 */
export async function dockerPull(
  handle: DockerdHandle,
  ref: string,
  options: { timeoutMs?: number } = {}
): Promise<DockerPullResult> {
  const pulled = await docker(handle, ['pull', ref], {
    timeoutMs: options.timeoutMs ?? CLIENT_TIMEOUT_MS,
  })
  const inspected = await docker(
    handle,
    ['image', 'inspect', '--format', '{{json .RepoDigests}}\t{{.Id}}', ref],
    { timeoutMs: 30_000 }
  )
  const [digestsJson = '[]', id = ''] = inspected.stdout.trim().split('\t')
  const repoDigests = JSON.parse(digestsJson) as string[]
  const name = familiarName(ref)
  const mine = repoDigests.find((d) => d.startsWith(`${name}@`))
  if (mine === undefined) {
    const output = pulled.stdout.trimEnd()
    throw new Error(`docker pull ${ref}: no RepoDigest for ${name} in ${digestsJson}\n${output}`)
  }
  return {
    digest: mine.slice(name.length + 1),
    repoDigests,
    id,
    reportedDigest: /^Digest: (sha256:[a-f0-9]{64})$/m.exec(pulled.stdout)?.[1],
    stdout: pulled.stdout,
    stderr: pulled.stderr,
  }
}
