// Routing a client's `/v2/<name>/...` to a configured upstream and a repository on it
// (PROTOCOL §2.4). Only configured upstreams are ever chosen: Customs is never an open proxy.

import type { UpstreamConfig } from '../config/schema.js'
import { CustomsError } from '../errors.js'
import { assertRepositoryName } from '../oci/reference.js'
import type { RepoKey } from '../state/store.js'

/** The upstream Docker Hub answers for; one-component names get `library/` there. */
const DOCKER_HUB_NAMES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])

export interface Route extends RepoKey {
  /** The `ns` the client sent, echoed as OCI-Namespace. */
  readonly namespace?: string
}

export class UpstreamRouter {
  readonly #byName = new Map<string, UpstreamConfig>()
  readonly #default: UpstreamConfig | undefined

  constructor(upstreams: readonly UpstreamConfig[]) {
    for (const u of upstreams) {
      for (const name of [u.name, ...u.aliases]) this.#byName.set(name, u)
    }
    this.#default = upstreams.find((u) => u.default)
  }

  /** The upstream configured under this name or alias. */
  lookup(name: string): UpstreamConfig | undefined {
    return this.#byName.get(name.toLowerCase())
  }

  /**
   * Chooses the upstream for a request name: from `ns` when present; else from a first path
   * component that names a configured upstream or alias; else the default upstream.
   */
  route(name: string, namespace: string | undefined): Route {
    assertRepositoryNameOrPrefixed(name)
    const slash = name.indexOf('/')
    const first = slash === -1 ? name : name.slice(0, slash)
    const rest = slash === -1 ? '' : name.slice(slash + 1)

    if (namespace !== undefined && namespace !== '') {
      const upstream = this.lookup(namespace)
      if (upstream === undefined) {
        throw new CustomsError('NAME_UNKNOWN', `upstream ${JSON.stringify(namespace.slice(0, 100))} is not configured`)
      }
      // containerd with override_path sends both: /v2/ghcr.io/org/app?ns=ghcr.io. Only the host
      // itself is stripped: `docker/dockerfile?ns=docker.io` is Docker Hub's `docker` namespace.
      const prefixed = rest !== '' && (first === namespace || first === upstream.name)
      return this.#finish(upstream, prefixed ? rest : name, namespace)
    }

    const named = rest !== '' ? this.lookup(first) : undefined
    if (named !== undefined) return this.#finish(named, rest, undefined)
    if (rest !== '' && looksLikeHost(first)) {
      throw new CustomsError('NAME_UNKNOWN', `upstream ${JSON.stringify(first.slice(0, 100))} is not configured`)
    }
    if (this.#default === undefined) {
      throw new CustomsError('NAME_UNKNOWN', 'no default upstream is configured; prefix the name with an upstream')
    }
    return this.#finish(this.#default, name, undefined)
  }

  #finish(upstream: UpstreamConfig, repository: string, namespace: string | undefined): Route {
    let repo = assertRepositoryName(repository)
    if (isDockerHub(upstream) && !repo.includes('/')) repo = `library/${repo}`
    return { upstream: upstream.name, repository: repo, ...(namespace !== undefined ? { namespace } : {}) }
  }
}

export function isDockerHub(upstream: UpstreamConfig): boolean {
  return DOCKER_HUB_NAMES.has(upstream.name) || upstream.aliases.some((a) => DOCKER_HUB_NAMES.has(a))
}

/** Docker Hub namespaces cannot contain dots or ports, so such a first component is a host. */
function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost'
}

/** The whole name may carry a `host:port` first component; the rest must be a repository name. */
function assertRepositoryNameOrPrefixed(name: string): void {
  const slash = name.indexOf('/')
  const first = slash === -1 ? name : name.slice(0, slash)
  if (slash !== -1 && /^[a-z0-9.-]+:\d{1,5}$/.test(first)) {
    assertRepositoryName(name.slice(slash + 1))
    return
  }
  assertRepositoryName(name)
}
