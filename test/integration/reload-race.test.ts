// A policy reload that lands while a first pull by digest is being inspected: the pull finishes
// under the policies it began with (its verdict says so), and the walk the reload started may
// already have passed that digest. Customs then walks again, so the blob gate does not stay as the old
// policies left it: the image's layers are refused once the walk has ended, its manifest is
// detained under the new revision, and the quarantine says it was revoked. The fake upstream is
// here only to hold the config read until the reload has landed and its walk has ended, a timing
// a real registry does not offer.

import assert from 'node:assert/strict'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { parseDigest } from '../../src/oci/digest.js'
import { ociImage, putImage, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { makeTempDir } from '../helpers/processes.js'

const ALLOW = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: race-any }
spec:
  mode: enforce
  match: [{ repository: "race/**" }]
  rules: {}
`
// The image sets no user: it runs as root, which this set refuses.
const DENY = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: race-non-root }
spec:
  mode: enforce
  match: [{ repository: "race/**" }]
  rules: { nonRoot: true }
`

const REPO = { upstream: 'docker.io', repository: 'race/app' }

let upstream: FakeUpstream
let customs: CustomsHandle
let work: string
let policyDir: string

before(async () => {
  upstream = await startFakeUpstream()
  work = await makeTempDir('reload-race-')
  policyDir = join(work, 'policies')
  await mkdir(policyDir)
  await writeFile(join(policyDir, 'race.yaml'), ALLOW)
  customs = await startCustoms({
    config: `
upstreams: [{ name: docker.io, url: "${upstream.url}", default: true }]
policy: { path: "${policyDir}", watch: false }
`,
  })
})

after(async () => {
  await customs?.stop()
  await upstream?.close()
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

/** Replaces the policies and reloads, as SIGHUP does; then waits for the walk(s) to end. */
async function reloadTo(text: string): Promise<string> {
  await writeFile(join(policyDir, 'race.yaml'), text)
  const result = await customs.services.reloadPolicies()
  assert.equal(result.ok, true, result.error)
  await customs.services.reevaluator.idle()
  return result.revision
}

describe('a reload during a first pull', () => {
  it('ends with the image detained under the new policies and its layers refused', async () => {
    const image = ociImage([Buffer.from('race layer')])
    putImage(upstream, 'race/app', image, 'v1')
    const layer = sha256(image.layers[0] as Buffer)
    let reloaded: Promise<string> | undefined
    upstream.intercept = async (_req, _res, path) => {
      // The config read of the inspection: the reload lands, and its walk ends, before it answers.
      if (path.includes('/blobs/') && reloaded === undefined) {
        reloaded = reloadTo(DENY)
        await reloaded
      }
      return false
    }
    // By digest: a pull by tag looks at the record again once it is written, and judges it anew.
    const pull = await fetch(`${customs.url}/v2/race/app/manifests/${image.digest}`, { headers: { Accept: image.mediaType } })
    await pull.arrayBuffer()
    upstream.intercept = undefined
    assert.ok(reloaded !== undefined, 'the config was read from the upstream')
    const revision = await reloaded
    // Inspected under the policies it began with: it was cleared, and answered so.
    assert.equal(pull.status, 200)
    await customs.services.reevaluator.idle()
    const blob = await fetch(`${customs.url}/v2/race/app/blobs/${layer}`)
    await blob.arrayBuffer()
    assert.notEqual(blob.status, 200, 'the layer is refused once the walk has ended')
    const manifest = await fetch(`${customs.url}/v2/race/app/manifests/${image.digest}`, { headers: { Accept: image.mediaType } })
    await manifest.arrayBuffer()
    assert.equal(manifest.status, 403)
    const record = await customs.services.state.getManifest(REPO, parseDigest(image.digest))
    assert.equal(record?.verdict.outcome, 'detained')
    assert.ok(record?.verdict.revision.endsWith(`:${revision}`))
    assert.equal((await customs.services.state.getQuarantine(REPO, parseDigest(image.digest)))?.state, 'revoked')
    // Walked again for the verdict recorded after the reload's own walk.
    const progress = customs.services.reevaluator.current()
    assert.equal(progress.trigger, 'stale-verdict')
    assert.ok(progress.revision.endsWith(`:${revision}`))
  })
})
