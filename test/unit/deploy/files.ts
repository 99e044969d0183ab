// Shared reading for the deploy/ tests: paths in the repository, YAML documents, kustomizations
// with their generated ConfigMaps, and the Customs configuration as Customs itself would load it.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { parseConfig } from '../../../src/config/load.js'
import type { Env } from '../../../src/config/load.js'
import type { ParsedConfig } from '../../../src/config/schema.js'
import { envOf, parseDockerfile } from './dockerfile.js'

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const DEPLOY = join(REPO, 'deploy')

export function repoPath(...parts: string[]): string {
  return join(REPO, ...parts)
}

export function read(path: string): string {
  return readFileSync(path, 'utf8')
}

export function exists(path: string): boolean {
  return existsSync(path)
}

/** Every file under dir, recursively, as absolute paths. */
export function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry)
    return statSync(path).isDirectory() ? walk(path) : [path]
  })
}

export function rel(path: string): string {
  return relative(REPO, path)
}

/** Every document of a YAML file as plain data; throws on any error or warning. */
export function yamlDocuments(path: string): unknown[] {
  const docs = parseAllDocuments(read(path), { uniqueKeys: true, prettyErrors: false })
  if (!Array.isArray(docs)) throw new Error(`${rel(path)}: not a YAML stream`)
  return docs.map((doc, i) => {
    const problems = [...doc.errors, ...doc.warnings]
    if (problems.length > 0) {
      throw new Error(
        `${rel(path)} document ${i + 1}: ${problems.map((p) => p.message).join('; ')}`
      )
    }
    return doc.toJS({ maxAliasCount: 0 }) as unknown
  })
}

/** A Kubernetes object as far as the tests need to know it before its own schema applies. */
export const objectHead = z.looseObject({
  apiVersion: z.string().min(1),
  kind: z.string().min(1),
  metadata: z.looseObject({
    name: z.string().regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, 'must be a DNS-1123 name'),
    namespace: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
  }),
})
export type K8sObject = z.infer<typeof objectHead>

const kustomizationSchema = z.strictObject({
  apiVersion: z.literal('kustomize.config.k8s.io/v1beta1'),
  kind: z.literal('Kustomization'),
  namespace: z.string().min(1),
  labels: z
    .array(
      z.strictObject({ pairs: z.record(z.string(), z.string()), includeSelectors: z.boolean() })
    )
    .optional(),
  resources: z.array(z.string().min(1)).min(1),
  configMapGenerator: z
    .array(z.strictObject({ name: z.string().min(1), files: z.array(z.string().min(1)).min(1) }))
    .optional(),
  images: z
    .array(z.strictObject({ name: z.string(), newName: z.string(), newTag: z.string() }))
    .optional(),
})
export type Kustomization = z.infer<typeof kustomizationSchema>

export interface GeneratedFile {
  /** The ConfigMap data key. */
  readonly key: string
  /** The file it is read from, absolute. */
  readonly path: string
}

export interface Kustomized {
  readonly dir: string
  readonly kustomization: Kustomization
  /** Every object of every resource file, in order, with the file it came from. */
  readonly objects: Array<{ object: K8sObject; file: string }>
  /** Generated ConfigMaps by name, with their files. */
  readonly generated: ReadonlyMap<string, GeneratedFile[]>
}

/** A kustomization and everything it lists, read without kustomize (which CI does not have). */
export function loadKustomization(dir: string): Kustomized {
  const kustomization = kustomizationSchema.parse(parseYaml(read(join(dir, 'kustomization.yaml'))))
  const objects = kustomization.resources.flatMap((resource) => {
    const file = join(dir, resource)
    return yamlDocuments(file).map((doc) => ({ object: objectHead.parse(doc), file }))
  })
  const generated = new Map<string, GeneratedFile[]>()
  for (const generator of kustomization.configMapGenerator ?? []) {
    generated.set(
      generator.name,
      generator.files.map((entry) => {
        const [key, source] = entry.includes('=') ? entry.split('=', 2) : [undefined, entry]
        const path = join(dir, source as string)
        return { key: key ?? (path.split('/').pop() as string), path }
      })
    )
  }
  return { dir, kustomization, objects, generated }
}

/** The one object of this kind and name; fails loudly when it is missing or doubled. */
export function findObject(k: Kustomized, kind: string, name: string): K8sObject {
  const found = k.objects.filter((o) => o.object.kind === kind && o.object.metadata.name === name)
  if (found.length !== 1) throw new Error(`expected one ${kind}/${name}, found ${found.length}`)
  return (found[0] as { object: K8sObject }).object
}

/** The image reference after the kustomization's `images:` rewrite. */
export function imageAfterKustomize(k: Kustomized, image: string): string {
  const name = image.split(/[:@]/)[0] as string
  const rule = k.kustomization.images?.find((i) => i.name === name)
  return rule === undefined ? image : `${rule.newName}:${rule.newTag}`
}

/** The registry host of an image reference, as containerd normalises it. */
export function registryOf(image: string): string {
  const first = image.split('/')[0] as string
  const isHost =
    image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')
  return isHost ? first : 'docker.io'
}

/** The files the `tls` section names, or undefined when there is no such section. */
export function tlsFiles(text: string): string[] | undefined {
  const data: unknown = parseYaml(text)
  if (typeof data !== 'object' || data === null || !('tls' in data)) return undefined
  const tls = (data as { tls: Record<string, unknown> }).tls
  return ['cert', 'key', 'clientCa'].flatMap((k) => (typeof tls[k] === 'string' ? [tls[k]] : []))
}

/** Validates as `customs serve` does: file plus environment, unknown keys and variables refused. */
export function effectiveConfig(path: string, env: Env): ParsedConfig {
  return parseConfig(read(path), { file: path, env })
}

/** The default listen port, from the schema itself. */
export function defaultPort(): number {
  return parseConfig('', { env: {} }).listen.port
}

/** The environment the image sets in its runtime stage (deploy/Dockerfile `ENV`). */
export function imageEnv(): Record<string, string> {
  const { stages } = parseDockerfile(read(join(DEPLOY, 'Dockerfile')))
  const runtime = stages[stages.length - 1]
  if (runtime === undefined) throw new Error('deploy/Dockerfile has no stage')
  return Object.fromEntries(envOf(runtime))
}
