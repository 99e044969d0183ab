// The notifications and quarantine sections of the configuration: webhook secrets resolved like
// upstream passwords (inline, file, environment) and never printed, positioned errors for bad
// webhooks, and the defaults.

import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ConfigError, loadConfig, redactConfig } from '../../../src/config/load.js'
import { DEFAULT_WEBHOOK_EVENTS } from '../../../src/config/schema.js'

const SECRET = 'hmac-secret-do-not-print'
let dir: string

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'customs-notify-config-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function load(text: string, env: Record<string, string> = {}) {
  const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`)
  await writeFile(file, text)
  return { file, config: () => loadConfig({ file, env }) }
}

const webhook = (secret: string, extra = ''): string =>
  `notifications:\n  webhooks:\n    - name: security\n      url: https://hooks.example.com/customs?token=abc\n      secret: ${secret}\n${extra}`

describe('notifications.webhooks', () => {
  it('defaults: no webhook, a 15s expiry interval, a 5s drain', async () => {
    const config = await (await load('')).config()
    assert.deepEqual(config.notifications.webhooks, [])
    assert.equal(config.notifications.drainTimeout, 5000)
    assert.equal(config.quarantine.expiryInterval, 15_000)
  })

  it('applies the webhook defaults', async () => {
    const config = await (await load(webhook(SECRET))).config()
    const [hook] = config.notifications.webhooks
    assert.equal(hook?.secret, SECRET)
    assert.deepEqual(hook?.events, [...DEFAULT_WEBHOOK_EVENTS])
    assert.equal(hook?.timeout, 10_000)
    assert.equal(hook?.maxAttempts, 8)
    assert.equal(hook?.queueSize, 1000)
  })

  it('resolves the secret from the environment and from a file', async () => {
    const fromEnv = await (await load(webhook('{ env: HOOK_SECRET }'), { HOOK_SECRET: SECRET })).config()
    assert.equal(fromEnv.notifications.webhooks[0]?.secret, SECRET)
    await writeFile(join(dir, 'hook.secret'), `${SECRET}\n`)
    const fromFile = await (await load(webhook('{ file: hook.secret }'))).config()
    assert.equal(fromFile.notifications.webhooks[0]?.secret, SECRET)
  })

  it('says which variable is missing, positioned at the secret, without any value', async () => {
    const { config } = await load(webhook('{ env: HOOK_SECRET }'))
    await assert.rejects(config(), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.match(err.message, /:5:15 notifications\.webhooks\[0\]\.secret: environment variable HOOK_SECRET is not set/)
      return true
    })
  })

  it('never prints the secret or the URL query', async () => {
    const config = await (await load(webhook(SECRET))).config()
    const printed = JSON.stringify(redactConfig(config))
    assert.equal(printed.includes(SECRET), false)
    assert.equal(printed.includes('token=abc'), false)
    assert.equal(config.notifications.webhooks[0]?.url, 'https://hooks.example.com/customs?token=abc')
  })

  const bad: Array<[string, string, RegExp]> = [
    ['a URL that is not http(s)', webhook(SECRET).replace('https://hooks.example.com/customs?token=abc', 'ftp://x/y'), /notifications\.webhooks\[0\]\.url: must be an http\(s\) URL/],
    ['credentials in the URL', webhook(SECRET).replace('https://hooks', 'https://u:p@hooks'), /notifications\.webhooks\[0\]\.url/],
    ['an unknown event', webhook(SECRET, '      events: [detention, exploded]\n'), /notifications\.webhooks\[0\]\.events\[1\]/],
    ['zero attempts', webhook(SECRET, '      maxAttempts: 0\n'), /notifications\.webhooks\[0\]\.maxAttempts/],
    ['an unknown key', webhook(SECRET, '      retries: 3\n'), /retries/],
    [
      'two webhooks of one name',
      `${webhook(SECRET)}    - { name: security, url: "http://127.0.0.1:9/x", secret: s }\n`,
      /notifications\.webhooks\[1\]\.name: security already names notifications\.webhooks\[0\]/,
    ],
    ['an expiry interval below 100ms', 'quarantine: { expiryInterval: 10ms }\n', /quarantine\.expiryInterval: must be at least 100ms/],
  ]
  for (const [what, text, pattern] of bad) {
    it(`refuses ${what}, naming where`, async () => {
      const { config } = await load(text)
      await assert.rejects(config(), (err: unknown) => {
        assert.ok(err instanceof ConfigError)
        assert.match(err.message, pattern)
        assert.equal(err.message.includes(SECRET), false)
        return true
      })
    })
  }
})
