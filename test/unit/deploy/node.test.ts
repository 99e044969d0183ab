// deploy/kubernetes/node: the containerd hosts.toml files send every registry to Customs with no
// upstream left to fall back to (so a deny holds), avoid the containerd traps that silently fail
// open, and the DaemonSet installs exactly these files, the CA first, where containerd reads them.

import assert from 'node:assert/strict'
import { basename, dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import {
  effectiveConfig,
  findObject,
  imageAfterKustomize,
  imageEnv,
  loadKustomization,
  read,
  registryOf,
  repoPath,
  walk,
} from './files.js'
import type { Kustomized } from './files.js'
import { daemonSetSchema, hardenedContainerSecurity, SCHEMAS } from './k8s-schemas.js'
import type { Container } from './k8s-schemas.js'
import { parseToml } from './toml.js'
import type { TomlTable, TomlValue } from './toml.js'

const DIR = repoPath('deploy/kubernetes/node')
const CERTS_D = '/etc/containerd/certs.d'
const node = loadKustomization(DIR)
const main = loadKustomization(repoPath('deploy/kubernetes'))
const daemonSet = daemonSetSchema.parse(findObject(node, 'DaemonSet', 'customs-hosts-installer'))
const installer = daemonSet.spec.template.spec.containers[0] as Container

interface HostsFile {
  readonly registry: string
  readonly path: string
  readonly toml: TomlTable
}
const hostsFiles: HostsFile[] = walk(join(DIR, 'certs.d'))
  .filter((f) => basename(f) === 'hosts.toml')
  .map((path) => ({ registry: basename(dirname(path)), path, toml: parseToml(read(path)) }))

/** Customs' address, as the docker.io file names it; every other file must agree. */
const dockerHub = hostsFiles.find((h) => h.registry === 'docker.io')
export const CUSTOMS_URL = String(dockerHub?.toml.server)
const routedToCustoms = hostsFiles.filter((h) => h.toml.server === CUSTOMS_URL)
const bypassing = hostsFiles.filter((h) => h.toml.server !== CUSTOMS_URL)

const asTable = (value: TomlValue | undefined): TomlTable => {
  assert.ok(typeof value === 'object' && !Array.isArray(value), 'a table')
  return value
}

/** Every image the manifests run, after the kustomization's rewrite. */
function images(k: Kustomized): string[] {
  return k.objects.flatMap(({ object }) => {
    const spec = (object as { spec?: { template?: { spec?: { containers?: Container[] } } } }).spec
    return (spec?.template?.spec?.containers ?? []).map((c) => imageAfterKustomize(k, c.image))
  })
}

describe('containerd hosts.toml files', () => {
  it('cover docker.io, ghcr.io, quay.io, registry.k8s.io and _default', () => {
    const registries = new Set(routedToCustoms.map((h) => h.registry))
    for (const r of ['docker.io', 'ghcr.io', 'quay.io', 'registry.k8s.io', '_default']) {
      assert.ok(registries.has(r), r)
    }
  })

  it('name Customs by an https URL with no path', () => {
    const url = new URL(CUSTOMS_URL)
    assert.equal(url.protocol, 'https:')
    assert.equal(url.pathname, '/')
  })

  for (const file of routedToCustoms) {
    describe(`${file.registry}/hosts.toml`, () => {
      it('has server = Customs, so no upstream is left to fall back to', () => {
        assert.equal(file.toml.server, CUSTOMS_URL)
      })

      it('has a [host."<Customs>"] table (containerd 1.6 rejects a file with only server)', () => {
        const hosts = asTable(file.toml.host)
        assert.deepEqual(Object.keys(hosts), [CUSTOMS_URL])
      })

      it('asks only for pull and resolve (an unknown capability invalidates the file)', () => {
        const host = asTable(asTable(file.toml.host)[CUSTOMS_URL])
        assert.deepEqual(host.capabilities, ['pull', 'resolve'])
      })

      it("trusts Customs' CA (from the DaemonSet) for the host and the server entry", () => {
        const host = asTable(asTable(file.toml.host)[CUSTOMS_URL])
        assert.equal(host.ca, `${CERTS_D}/customs-ca.pem`)
        assert.equal(file.toml.ca, host.ca)
        assert.notEqual(host.skip_verify, true)
        assert.notEqual(file.toml.skip_verify, true)
      })

      it('uses only keys containerd knows', () => {
        const known = [
          'server',
          'capabilities',
          'ca',
          'client',
          'skip_verify',
          'header',
          'override_path',
        ]
        for (const key of Object.keys(file.toml)) assert.ok([...known, 'host'].includes(key), key)
        for (const key of Object.keys(asTable(asTable(file.toml.host)[CUSTOMS_URL]))) {
          assert.ok(known.slice(1).includes(key), key)
        }
      })
    })
  }

  it('route to Customs only registries Customs is configured for', () => {
    const k8sConfig = effectiveConfig(join(main.dir, 'customs.yaml'), {
      ...imageEnv(),
      CUSTOMS_STATE_REDIS_URL: 'redis://redis:6379',
    })
    const names = new Set(k8sConfig.upstreams.flatMap((u) => [u.name, ...u.aliases]))
    for (const { registry } of routedToCustoms) {
      assert.ok(registry === '_default' || names.has(registry), registry)
    }
  })

  it('let nodes pull the images that run Customs itself directly, and nothing else', () => {
    const registries = new Set([...images(main), ...images(node)].map(registryOf))
    assert.deepEqual(bypassing.map((h) => h.registry).sort(), [...registries].sort())
    for (const h of bypassing) {
      assert.equal(new URL(String(h.toml.server)).host, h.registry)
      assert.ok(Object.hasOwn(asTable(h.toml.host), String(h.toml.server)))
    }
  })
})

describe('deploy/kubernetes/node', () => {
  it('holds only kinds with a schema, each valid', () => {
    for (const { object } of node.objects) {
      const schema = SCHEMAS[object.kind]
      assert.ok(schema !== undefined, object.kind)
      schema.parse(object)
    }
  })

  it('puts the installer in its own namespace, the only one that allows hostPath', () => {
    assert.notEqual(node.kustomization.namespace, main.kustomization.namespace)
    const ns = findObject(node, 'Namespace', node.kustomization.namespace)
    assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged')
  })

  it('generates one ConfigMap key per certs.d folder, named after it', () => {
    const entries = node.generated.get('customs-hosts') ?? []
    assert.deepEqual(
      entries.map((e) => [e.key, e.path]).sort(),
      hostsFiles.map((h) => [h.registry, h.path]).sort()
    )
  })

  describe('the DaemonSet', () => {
    const spec = daemonSet.spec.template.spec
    const mountOf = (volume: string): string | undefined =>
      installer.volumeMounts?.find((m) => m.name === volume)?.mountPath
    const script = (installer.args ?? []).join('\n')

    it("writes into the node's /etc/containerd/certs.d through a hostPath, unprivileged", () => {
      const volume = spec.volumes?.find((v) => 'hostPath' in v)
      assert.ok(volume !== undefined && 'hostPath' in volume)
      assert.equal(volume.hostPath.path, CERTS_D)
      assert.match(script, new RegExp(`dest=${mountOf(volume.name)}\\n`))
      // Root (to write a root-owned folder), but with no capability and no privilege.
      hardenedContainerSecurity.parse(installer.securityContext)
    })

    it('installs each generated file as <key>/hosts.toml and the CA as customs-ca.pem', () => {
      const hosts = spec.volumes?.find(
        (v) => 'configMap' in v && v.configMap.name === 'customs-hosts'
      )
      const ca = spec.volumes?.find((v) => 'configMap' in v && v.configMap.name === 'customs-ca')
      assert.ok(hosts !== undefined && ca !== undefined)
      assert.match(script, new RegExp(`for f in ${mountOf(hosts.name)}/\\*`))
      assert.match(script, /"\$dest\/\$\(basename "\$f"\)\/hosts\.toml"/)
      assert.match(
        script,
        new RegExp(`put ${mountOf(ca.name)}/ca\\.pem "\\$dest/customs-ca\\.pem"`)
      )
    })

    it('installs the CA before any hosts.toml that names it, each by an atomic rename', () => {
      assert.ok(script.indexOf('customs-ca.pem') < script.indexOf('hosts.toml'))
      assert.match(script, /mv -f /)
    })

    it('runs on every node, the control plane included', () => {
      const tolerations = (spec.tolerations ?? []) as Array<{ operator?: string; key?: string }>
      assert.ok(tolerations.some((t) => t.operator === 'Exists' && t.key === undefined))
    })

    it('needs the customs-ca ConfigMap, whose creation the docs show', () => {
      assert.match(read(repoPath('docs/operating.md')), /create configmap customs-ca\b/)
    })
  })
})
