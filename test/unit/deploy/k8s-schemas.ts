// Zod schemas for the Kubernetes kinds deploy/kubernetes uses, as far as the tests rely on them:
// the fields must be there with the right types, and the security-relevant ones with the right
// values. Unknown fields pass (Kubernetes has many); missing or mistyped known ones do not.

import { z } from 'zod'

const labels = z.record(z.string(), z.string())
const selector = z.strictObject({ matchLabels: labels })
const quantity = z.union([z.string().regex(/^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$/), z.number()])
const port = z.union([z.number().int().min(1).max(65535), z.string().regex(/^[a-z0-9-]{1,15}$/)])

const probeTiming = {
  initialDelaySeconds: z.number().optional(),
  periodSeconds: z.number().optional(),
  timeoutSeconds: z.number().optional(),
  failureThreshold: z.number().optional(),
}
export const probeSchema = z.union([
  z.strictObject({
    httpGet: z.strictObject({
      path: z.string(),
      port,
      scheme: z.enum(['HTTP', 'HTTPS']).optional(),
    }),
    ...probeTiming,
  }),
  z.strictObject({ exec: z.strictObject({ command: z.array(z.string()).min(1) }), ...probeTiming }),
])

const envVar = z.union([
  z.strictObject({ name: z.string(), value: z.string() }),
  z.strictObject({
    name: z.string(),
    valueFrom: z.strictObject({
      secretKeyRef: z.strictObject({ name: z.string(), key: z.string() }),
    }),
  }),
])

/** No privilege, no escalation, no capability, nothing written to the image. */
export const hardenedContainerSecurity = z.looseObject({
  privileged: z.literal(false).optional(),
  allowPrivilegeEscalation: z.literal(false),
  readOnlyRootFilesystem: z.literal(true),
  capabilities: z.strictObject({ drop: z.tuple([z.literal('ALL')]) }),
})

/** The restricted Pod Security Standard, for a container: hardened, and never root. */
export const restrictedContainerSecurity = hardenedContainerSecurity.extend({
  runAsNonRoot: z.literal(true).optional(),
  runAsUser: z.number().int().min(1).optional(),
})

/** ... and for a pod. */
export const restrictedPodSecurity = z.looseObject({
  runAsNonRoot: z.literal(true),
  runAsUser: z.number().int().min(1),
  seccompProfile: z.strictObject({ type: z.literal('RuntimeDefault') }),
})

export const containerSchema = z.looseObject({
  name: z.string(),
  image: z.string(),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  env: z.array(envVar).optional(),
  ports: z
    .array(z.looseObject({ name: z.string().optional(), containerPort: z.number().int() }))
    .optional(),
  startupProbe: probeSchema.optional(),
  livenessProbe: probeSchema.optional(),
  readinessProbe: probeSchema.optional(),
  resources: z.strictObject({
    requests: z.strictObject({ cpu: quantity, memory: quantity }),
    limits: z.looseObject({ memory: quantity }),
  }),
  securityContext: z.looseObject({}),
  volumeMounts: z
    .array(
      z.strictObject({ name: z.string(), mountPath: z.string(), readOnly: z.boolean().optional() })
    )
    .optional(),
})
export type Container = z.infer<typeof containerSchema>

const keyToPath = z.array(z.strictObject({ key: z.string(), path: z.string() }))
export const volumeSchema = z.union([
  z.strictObject({
    name: z.string(),
    configMap: z.strictObject({ name: z.string(), items: keyToPath.optional() }),
  }),
  z.strictObject({
    name: z.string(),
    secret: z.strictObject({ secretName: z.string(), items: keyToPath.optional() }),
  }),
  z.strictObject({
    name: z.string(),
    persistentVolumeClaim: z.strictObject({ claimName: z.string() }),
  }),
  z.strictObject({ name: z.string(), emptyDir: z.looseObject({}) }),
  z.strictObject({
    name: z.string(),
    hostPath: z.strictObject({ path: z.string(), type: z.string().optional() }),
  }),
  z.strictObject({
    name: z.string(),
    projected: z.strictObject({
      defaultMode: z.number().optional(),
      sources: z.array(
        z.union([
          z.strictObject({ configMap: z.strictObject({ name: z.string(), items: keyToPath }) }),
          z.strictObject({ secret: z.strictObject({ name: z.string(), items: keyToPath }) }),
        ])
      ),
    }),
  }),
])
export type Volume = z.infer<typeof volumeSchema>

export const podSpecSchema = z.looseObject({
  securityContext: z.looseObject({}),
  containers: z.array(containerSchema).min(1),
  volumes: z.array(volumeSchema).optional(),
  enableServiceLinks: z.boolean().optional(),
})
export type PodSpec = z.infer<typeof podSpecSchema>

const template = z.strictObject({
  metadata: z.looseObject({ labels }),
  spec: podSpecSchema,
})
const meta = z.looseObject({ name: z.string(), labels: labels.optional() })

export const deploymentSchema = z.looseObject({
  apiVersion: z.literal('apps/v1'),
  kind: z.literal('Deployment'),
  metadata: meta,
  spec: z.looseObject({ replicas: z.number().int(), selector, template }),
})

export const statefulSetSchema = z.looseObject({
  apiVersion: z.literal('apps/v1'),
  kind: z.literal('StatefulSet'),
  metadata: meta,
  spec: z.looseObject({
    serviceName: z.string(),
    replicas: z.number().int(),
    selector,
    template,
    volumeClaimTemplates: z
      .array(z.looseObject({ metadata: z.looseObject({ name: z.string() }) }))
      .min(1),
  }),
})

export const daemonSetSchema = z.looseObject({
  apiVersion: z.literal('apps/v1'),
  kind: z.literal('DaemonSet'),
  metadata: meta,
  spec: z.looseObject({ selector, template }),
})

export const serviceSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Service'),
  metadata: meta,
  spec: z.looseObject({
    selector: labels,
    ports: z
      .array(z.looseObject({ name: z.string(), port: z.number().int(), targetPort: port }))
      .min(1),
  }),
})

export const pdbSchema = z.looseObject({
  apiVersion: z.literal('policy/v1'),
  kind: z.literal('PodDisruptionBudget'),
  metadata: meta,
  spec: z.union([
    z.strictObject({ maxUnavailable: z.union([z.number(), z.string()]), selector }),
    z.strictObject({ minAvailable: z.union([z.number(), z.string()]), selector }),
  ]),
})

export const pvcSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('PersistentVolumeClaim'),
  metadata: meta,
  spec: z.looseObject({
    accessModes: z.array(
      z.enum(['ReadWriteOnce', 'ReadWriteMany', 'ReadOnlyMany', 'ReadWriteOncePod'])
    ),
    resources: z.strictObject({ requests: z.strictObject({ storage: quantity }) }),
  }),
})

export const secretSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Secret'),
  metadata: meta,
  type: z.string(),
  stringData: z.record(z.string(), z.string()),
})

export const namespaceSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Namespace'),
  metadata: z.looseObject({ name: z.string(), labels }),
})

const peer = z.union([
  z.strictObject({
    ipBlock: z.strictObject({ cidr: z.string(), except: z.array(z.string()).optional() }),
  }),
  z.strictObject({ podSelector: selector }),
  z.strictObject({ namespaceSelector: z.union([selector, z.strictObject({})]) }),
  z.strictObject({ namespaceSelector: selector, podSelector: selector }),
])
const policyPort = z.strictObject({ protocol: z.enum(['TCP', 'UDP']), port: z.number().int() })
const ingressRule = z.strictObject({
  from: z.array(peer).min(1),
  ports: z.array(policyPort).min(1),
})
const egressRule = z.strictObject({ to: z.array(peer).min(1), ports: z.array(policyPort).min(1) })

export const networkPolicySchema = z.looseObject({
  apiVersion: z.literal('networking.k8s.io/v1'),
  kind: z.literal('NetworkPolicy'),
  metadata: meta,
  spec: z.strictObject({
    podSelector: selector,
    policyTypes: z.array(z.enum(['Ingress', 'Egress'])),
    ingress: z.array(ingressRule).optional(),
    egress: z.array(egressRule).optional(),
  }),
})
export type NetworkPolicy = z.infer<typeof networkPolicySchema>

/** Every kind the manifests may use, by kind; an object of another kind fails the tests. */
export const SCHEMAS: Readonly<Record<string, z.ZodType>> = {
  Namespace: namespaceSchema,
  Secret: secretSchema,
  PersistentVolumeClaim: pvcSchema,
  Deployment: deploymentSchema,
  StatefulSet: statefulSetSchema,
  DaemonSet: daemonSetSchema,
  Service: serviceSchema,
  PodDisruptionBudget: pdbSchema,
  NetworkPolicy: networkPolicySchema,
}

/** Whether every label of the selector is on the pod. */
export function selects(
  selector: Readonly<Record<string, string>>,
  podLabels: Readonly<Record<string, string>>
): boolean {
  const entries = Object.entries(selector)
  return entries.length > 0 && entries.every(([k, v]) => podLabels[k] === v)
}
