// deploy/kubernetes: every object has the shape of its kind, everything the Deployment refers to
// exists, ports, probes, labels and selectors agree with each other and with Customs' own
// configuration, which passes Customs' validation with the pod's environment applied.

import assert from 'node:assert/strict'
import { basename, join, posix } from 'node:path'
import { describe, it } from 'node:test'
import {
  effectiveConfig,
  findObject,
  imageEnv,
  loadKustomization,
  read,
  repoPath,
  tlsFiles,
  walk,
} from './files.js'
import {
  deploymentSchema,
  networkPolicySchema,
  pdbSchema,
  pvcSchema,
  restrictedContainerSecurity,
  restrictedPodSecurity,
  SCHEMAS,
  secretSchema,
  selects,
  serviceSchema,
  statefulSetSchema,
} from './k8s-schemas.js'
import type { Container, NetworkPolicy, PodSpec } from './k8s-schemas.js'

const DIR = repoPath('deploy/kubernetes')
const k = loadKustomization(DIR)
/** Created by the operator from `customs certs init` output; docs/operating.md shows how. */
const EXTERNAL_SECRETS = new Set(['customs-tls'])

const deployment = deploymentSchema.parse(findObject(k, 'Deployment', 'customs'))
const pod = deployment.spec.template
const container = pod.spec.containers[0] as Container
const service = serviceSchema.parse(findObject(k, 'Service', 'customs'))
const redisSet = statefulSetSchema.parse(findObject(k, 'StatefulSet', 'redis'))
const redisService = serviceSchema.parse(findObject(k, 'Service', 'redis'))
const secrets = new Map(
  k.objects
    .filter((o) => o.object.kind === 'Secret')
    .map((o) => {
      const secret = secretSchema.parse(o.object)
      return [secret.metadata.name, secret.stringData] as const
    })
)

/** The container port a probe or Service names, by name or number. */
function containerPort(c: Container, ref: number | string): number | undefined {
  return c.ports?.find((p) => p.name === ref || p.containerPort === ref)?.containerPort
}

/** The value each env var will have, secrets filled in from secret.yaml. */
function containerEnv(c: Container): Record<string, string> {
  return Object.fromEntries(
    (c.env ?? []).map((e) => {
      if ('value' in e) return [e.name, e.value]
      const { name, key } = e.valueFrom.secretKeyRef
      const value = secrets.get(name)?.[key]
      assert.ok(value !== undefined, `secret ${name} has key ${key}`)
      return [e.name, value]
    })
  )
}

/** Files a volume puts in the container: mount path + item path -> [source kind, name, key]. */
function mountedFiles(spec: PodSpec, c: Container): Map<string, [string, string, string]> {
  const files = new Map<string, [string, string, string]>()
  for (const mount of c.volumeMounts ?? []) {
    const volume = spec.volumes?.find((v) => v.name === mount.name)
    if (volume === undefined || !('projected' in volume)) continue
    for (const source of volume.projected.sources) {
      const [kind, ref] =
        'configMap' in source ? ['ConfigMap', source.configMap] : ['Secret', source.secret]
      for (const item of ref.items)
        files.set(posix.join(mount.mountPath, item.path), [kind, ref.name, item.key])
    }
  }
  return files
}

const configArg = (c: Container): string => {
  const args = c.args ?? []
  return args[args.indexOf('--config') + 1] as string
}
const configFile = (): string => {
  const source = mountedFiles(pod.spec, container).get(configArg(container))
  assert.ok(source !== undefined && source[0] === 'ConfigMap', 'the --config file is mounted')
  const file = k.generated.get(source[1])?.find((f) => f.key === source[2])
  assert.ok(file !== undefined, `ConfigMap ${source[1]} is generated with key ${source[2]}`)
  return file.path
}
const config = () => effectiveConfig(configFile(), { ...imageEnv(), ...containerEnv(container) })

describe('deploy/kubernetes', () => {
  it('holds only kinds with a schema, each valid, with unique names', () => {
    const seen = new Set<string>()
    for (const { object, file } of k.objects) {
      const schema = SCHEMAS[object.kind]
      assert.ok(schema !== undefined, `${basename(file)}: ${object.kind} has a schema`)
      schema.parse(object)
      const id = `${object.kind}/${object.metadata.name}`
      assert.ok(!seen.has(id), `${id} is defined once`)
      seen.add(id)
      const ns = object.metadata.namespace
      assert.ok(ns === undefined || ns === k.kustomization.namespace, `${id} namespace`)
    }
  })

  it('lists every manifest in kustomization.yaml (no forgotten file)', () => {
    const listed = new Set([
      ...k.kustomization.resources.map((r) => join(DIR, r)),
      ...[...k.generated.values()].flat().map((f) => f.path),
      join(DIR, 'kustomization.yaml'),
    ])
    const yamls = walk(DIR).filter((f) => /\.ya?ml$/.test(f) && !f.startsWith(join(DIR, 'node')))
    assert.deepEqual(
      yamls.filter((f) => !listed.has(f)),
      []
    )
  })

  it('creates the namespace it deploys into, under the restricted Pod Security Standard', () => {
    const ns = findObject(k, 'Namespace', k.kustomization.namespace)
    assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted')
  })

  describe('the Deployment', () => {
    it('runs at least two replicas, spread over nodes', () => {
      assert.ok(deployment.spec.replicas >= 2)
      const spread = (pod.spec.topologySpreadConstraints ?? []) as Array<{ topologyKey: string }>
      assert.ok(spread.some((t) => t.topologyKey === 'kubernetes.io/hostname'))
    })

    it('selects its own pods', () => {
      assert.ok(selects(deployment.spec.selector.matchLabels, pod.metadata.labels))
    })

    it('runs restricted: non-root, read-only root, no capabilities, RuntimeDefault seccomp', () => {
      restrictedPodSecurity.parse(pod.spec.securityContext)
      for (const c of pod.spec.containers) restrictedContainerSecurity.parse(c.securityContext)
    })

    it('checks liveness on /healthz and readiness on /readyz, on the listening port', () => {
      const port = config().listen.port
      // HTTPS exactly when the configuration has a tls section.
      const tls = tlsFiles(read(configFile())) !== undefined
      const expected: Array<[Container['livenessProbe'], string]> = [
        [container.livenessProbe, '/healthz'],
        [container.readinessProbe, '/readyz'],
        [container.startupProbe, '/healthz'],
      ]
      for (const [probe, path] of expected) {
        assert.ok(probe !== undefined && 'httpGet' in probe, `an HTTP probe for ${path}`)
        assert.equal(probe.httpGet.path, path)
        assert.equal(containerPort(container, probe.httpGet.port), port)
        assert.equal(probe.httpGet.scheme ?? 'HTTP', tls ? 'HTTPS' : 'HTTP')
      }
    })

    it('refers only to ConfigMaps, Secrets and claims that the kustomization holds', () => {
      const known = (kind: string, name: string): boolean =>
        (kind === 'ConfigMap' && k.generated.has(name)) ||
        k.objects.some((o) => o.object.kind === kind && o.object.metadata.name === name) ||
        (kind === 'Secret' && EXTERNAL_SECRETS.has(name))
      for (const volume of pod.spec.volumes ?? []) {
        if ('persistentVolumeClaim' in volume) {
          assert.ok(known('PersistentVolumeClaim', volume.persistentVolumeClaim.claimName))
        }
        if ('configMap' in volume) assert.ok(known('ConfigMap', volume.configMap.name))
        if ('secret' in volume) assert.ok(known('Secret', volume.secret.secretName))
      }
      for (const [kind, name, key] of mountedFiles(pod.spec, container).values()) {
        assert.ok(known(kind, name), `${kind} ${name}`)
        if (kind === 'Secret' && !EXTERNAL_SECRETS.has(name)) {
          assert.ok(secrets.get(name)?.[key] !== undefined, `Secret ${name} has key ${key}`)
        }
      }
      containerEnv(container)
    })

    it('documents how to create the Secrets it does not hold', () => {
      const doc = read(repoPath('docs/operating.md'))
      for (const name of EXTERNAL_SECRETS)
        assert.match(doc, new RegExp(`create secret \\w+ ${name}\\b`))
    })

    it('sets requests and limits on every container', () => {
      for (const c of pod.spec.containers) {
        assert.ok(c.resources.requests.cpu !== undefined && c.resources.limits.memory !== undefined)
      }
    })
  })

  describe('the configuration', () => {
    it("passes Customs' validation with the pod's environment (unknown keys fail)", () => {
      const parsed = config()
      assert.equal(parsed.state.backend, 'redis')
    })

    it('is read from where the ConfigMap is mounted', () => {
      assert.ok(mountedFiles(pod.spec, container).has(configArg(container)))
    })

    it('keeps the cache on the shared claim, mounted where storage.path points', () => {
      const mount = container.volumeMounts?.find((m) => m.mountPath === config().storage.path)
      const volume = pod.spec.volumes?.find((v) => v.name === mount?.name)
      assert.ok(
        volume !== undefined && 'persistentVolumeClaim' in volume,
        'storage.path is a claim'
      )
      const pvc = pvcSchema.parse(
        findObject(k, 'PersistentVolumeClaim', volume.persistentVolumeClaim.claimName)
      )
      if (deployment.spec.replicas > 1) assert.ok(pvc.spec.accessModes.includes('ReadWriteMany'))
    })

    it('finds every file it names (secrets, TLS) in the mounted folder', () => {
      const base = posix.dirname(configArg(container))
      const files = mountedFiles(pod.spec, container)
      const parsed = config()
      const named = parsed.upstreams.flatMap((u) => {
        const password = u.credentials?.password
        return typeof password === 'object' && password.file !== undefined ? [password.file] : []
      })
      named.push(...(tlsFiles(read(configFile())) ?? []))
      assert.ok(named.length > 0)
      for (const file of named) assert.ok(files.has(posix.resolve(base, file)), file)
    })

    it('connects to the Redis of the StatefulSet, with its password', () => {
      const url = new URL(config().state.redis.url)
      assert.equal(url.hostname, redisService.metadata.name)
      assert.equal(Number(url.port || 6379), redisService.spec.ports[0]?.port)
      assert.equal(decodeURIComponent(url.password), secrets.get('customs-redis')?.password)
    })
  })

  describe('the Service', () => {
    it('selects the Customs pods and targets the port Customs listens on', () => {
      assert.ok(selects(service.spec.selector, pod.metadata.labels))
      for (const p of service.spec.ports) {
        assert.equal(containerPort(container, p.targetPort), config().listen.port)
      }
    })
  })

  it('has a PodDisruptionBudget over the Deployment pods', () => {
    const pdb = pdbSchema.parse(findObject(k, 'PodDisruptionBudget', 'customs'))
    assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels)
    assert.ok(selects(pdb.spec.selector.matchLabels, pod.metadata.labels))
  })

  describe('Redis', () => {
    const spec = redisSet.spec.template.spec
    const redis = spec.containers[0] as Container

    it('persists with append-only files on a claim', () => {
      assert.match((redis.args ?? []).join(' '), /--appendonly yes/)
      const dataMount = redis.volumeMounts?.find((m) => m.mountPath === '/data')
      assert.ok(redisSet.spec.volumeClaimTemplates.some((t) => t.metadata.name === dataMount?.name))
    })

    it('runs restricted and is found by its Service', () => {
      restrictedPodSecurity.parse(spec.securityContext)
      restrictedContainerSecurity.parse(redis.securityContext)
      assert.equal(redisSet.spec.serviceName, redisService.metadata.name)
      assert.ok(selects(redisService.spec.selector, redisSet.spec.template.metadata.labels))
      assert.equal(containerPort(redis, redisService.spec.ports[0]?.targetPort ?? ''), 6379)
      containerEnv(redis)
    })
  })

  describe('the NetworkPolicies', () => {
    const policies = k.objects
      .filter((o) => o.object.kind === 'NetworkPolicy')
      .map((o) => networkPolicySchema.parse(o.object))
    const redisLabels = redisSet.spec.template.metadata.labels
    const policyFor = (labels: Record<string, string>): NetworkPolicy => {
      const found = policies.find((p) => selects(p.spec.podSelector.matchLabels, labels))
      assert.ok(found !== undefined)
      return found
    }
    const peerSelects = (peer: object, labels: Record<string, string>): boolean =>
      'podSelector' in peer &&
      !('namespaceSelector' in peer) &&
      selects(
        (peer as { podSelector: { matchLabels: Record<string, string> } }).podSelector.matchLabels,
        labels
      )

    it('let clients reach Customs on its port only', () => {
      const policy = policyFor(pod.metadata.labels)
      const ports = (policy.spec.ingress ?? []).flatMap((r) => r.ports.map((p) => p.port))
      assert.deepEqual(ports, [config().listen.port])
    })

    it('let Customs reach DNS, Redis and HTTPS only', () => {
      const egress = policyFor(pod.metadata.labels).spec.egress ?? []
      const ports = egress.flatMap((r) => r.ports.map((p) => `${p.protocol}/${p.port}`)).sort()
      assert.deepEqual(ports, ['TCP/443', 'TCP/53', 'TCP/6379', 'UDP/53'])
      const toRedis = egress.find((r) => r.ports.some((p) => p.port === 6379))
      assert.ok(toRedis?.to.every((peer) => peerSelects(peer, redisLabels)))
    })

    it('let only Customs reach Redis, and Redis reach nothing', () => {
      const policy = policyFor(redisLabels)
      assert.deepEqual(policy.spec.policyTypes.sort(), ['Egress', 'Ingress'])
      assert.deepEqual(policy.spec.egress, [])
      const from = (policy.spec.ingress ?? []).flatMap((r) => r.from)
      assert.ok(from.length > 0 && from.every((peer) => peerSelects(peer, pod.metadata.labels)))
    })
  })
})
