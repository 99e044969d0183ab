// The inspection step's revision: a verdict names the policy set it was reached under, even when a
// reload lands while the inspection awaits I/O (the config read, signature discovery). Reached
// under the old set, it carries the old revision, which is stale at once and judged again; it is
// never a new-set verdict filed under the old revision's name, nor the reverse.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Inspector, type ConfigReader } from '../../../src/inspection/inspector.js'
import { parseDigest } from '../../../src/oci/digest.js'
import { PolicyEngine } from '../../../src/policy/engine.js'
import type { PolicySet } from '../../../src/policy/types.js'
import type { RepoKey } from '../../../src/state/store.js'
import { NO_FACTS } from '../../../src/verify/facts.js'
import type { SignatureService } from '../../../src/verify/service.js'
import { TrustHolder } from '../../../src/verify/trust-reload.js'
import type { TrustStore } from '../../../src/verify/trust.js'
import { buildImage } from '../../helpers/images.js'
import { ANY, NON_ROOT } from './sets.js'

const REPO: RepoKey = { upstream: 'docker.io', repository: 'acme/app' }

// Sets no user, so it runs as root: NON_ROOT detains it, ANY clears it.
const image = buildImage({ mediaType: 'oci', seed: 'inspector-revision' })
const input = { repo: REPO, digest: parseDigest(image.manifestDigest), bytes: image.manifest, mediaType: image.mediaType }
const revisionOf = (set: PolicySet): string => `builtin-1:none:${set.revision}`

/** An inspector over `policies` whose config read runs `during` before it answers. */
function inspector(policies: PolicyEngine, during: () => void = () => undefined): Inspector {
  const readConfig: ConfigReader = async () => {
    await Promise.resolve()
    during()
    return image.config
  }
  return new Inspector({ policies, readConfig })
}

describe('Inspector revision', () => {
  it('names the set in force when nothing changes', async () => {
    assert.notEqual(ANY.revision, NON_ROOT.revision)
    const cleared = await inspector(new PolicyEngine(ANY)).inspect(input)
    assert.equal(cleared.verdict.outcome, 'cleared')
    assert.equal(cleared.verdict.revision, revisionOf(ANY))
    const detained = await inspector(new PolicyEngine(NON_ROOT)).inspect(input)
    assert.equal(detained.verdict.outcome, 'detained')
    assert.equal(detained.verdict.revision, revisionOf(NON_ROOT))
  })

  it('judges by the set its revision names when a stricter set lands mid-inspection', async () => {
    const policies = new PolicyEngine(ANY)
    const inspecting = inspector(policies, () => policies.replace(NON_ROOT))
    const { verdict } = await inspecting.inspect(input)
    // Reached under ANY, so cleared, and filed under ANY's revision: stale against the one in force.
    assert.equal(verdict.outcome, 'cleared')
    assert.equal(verdict.revision, revisionOf(ANY))
    assert.equal(inspecting.revision, revisionOf(NON_ROOT))
    // Judged again, it is detained under the new revision.
    const again = await inspecting.inspect(input)
    assert.equal(again.verdict.outcome, 'detained')
    assert.equal(again.verdict.revision, revisionOf(NON_ROOT))
  })

  it('never files an old-set verdict under a looser set that lands mid-inspection', async () => {
    const policies = new PolicyEngine(NON_ROOT)
    const inspecting = inspector(policies, () => policies.replace(ANY))
    const { verdict } = await inspecting.inspect(input)
    assert.equal(verdict.outcome, 'detained')
    assert.equal(verdict.revision, revisionOf(NON_ROOT))
    assert.notEqual(verdict.revision, inspecting.revision)
  })

  it('reads the image config and looks for signatures at once', async () => {
    const asked: string[] = []
    let answer!: () => void
    const gate = new Promise<void>((resolve) => (answer = resolve))
    const signatures = {
      factsFor: async () => {
        asked.push('signatures')
        await gate
        return NO_FACTS
      },
    } as unknown as SignatureService
    const readConfig: ConfigReader = async () => {
      asked.push('config')
      await gate
      return image.config
    }
    const inspecting = new Inspector({ policies: new PolicyEngine(ANY), readConfig, signatures }).inspect(input)
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(asked.sort(), ['config', 'signatures'], 'both asked before either answered')
    answer()
    const { verdict, facts } = await inspecting
    assert.equal(verdict.outcome, 'cleared')
    assert.deepEqual(facts, NO_FACTS)
  })

  it('follows a replaced trust or policy set, and is the same string while neither changes', () => {
    const policies = new PolicyEngine(ANY)
    const trust = new TrustHolder({ revision: 't1' } as TrustStore)
    const inspecting = new Inspector({ policies, readConfig: async () => image.config, trust })
    const first = inspecting.revision
    assert.equal(first, `builtin-1:t1:${ANY.revision}`)
    assert.equal(inspecting.revision, first)
    trust.replace({ revision: 't2' } as TrustStore)
    assert.equal(inspecting.revision, `builtin-1:t2:${ANY.revision}`)
    policies.replace(NON_ROOT)
    assert.equal(inspecting.revision, `builtin-1:t2:${NON_ROOT.revision}`)
  })
})
